"""Leakage between training data and the eval suite: an eval prompt that is also a training
prompt (exactly, or nearly) measures recall, not generalisation.

Two prompts leak when, after :func:`normalise` (casefold, punctuation to spaces, whitespace
collapsed), they are equal, or when the Jaccard similarity of their character 5-gram sets is at
least :data:`THRESHOLD` (0.6). The threshold was chosen on this project's data: the eval suite's
prompts and the shipped recipes' prompts (same tools, other wording and arguments) stay below
0.45, while a prompt with one word or one argument changed ("What is the weather in Paris?" vs
"What's the weather in Paris?") is above 0.7.

The training pipeline fails on a leak (:func:`check_dataset`); ``pytest evals/
--punie-train-data DIR`` fails the eval run on one (:func:`check_items`). Both name the eval
case and the training file:line.

The same similarity finds the training lines nearest a prompt, whatever their score
(:class:`PromptIndex`): the report shows them beside a case that broke against the baseline.

Loaded with ``-p pytest_punie.finetune.leakage`` and ``PUNIE_DUMP_PROMPTS=FILE``, pytest writes the
collected cases' prompts to FILE: that is how the training pipeline reads the eval suite's
prompts, parametrized ones included, without importing it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "NGRAM",
    "THRESHOLD",
    "Leak",
    "LeakageError",
    "Neighbour",
    "Prompt",
    "PromptIndex",
    "check_dataset",
    "eval_prompts",
    "find_leaks",
    "normalise",
    "similarity",
    "training_prompts",
]

NGRAM = 5
THRESHOLD = 0.6
DUMP_ENV = "PUNIE_DUMP_PROMPTS"


class LeakageError(Exception):
    """Eval prompts found in training data; the message lists each pair."""


@dataclass(frozen=True)
class Prompt:
    """A prompt and where it comes from (an eval case id or a training file:line)."""

    text: str
    where: str


@dataclass(frozen=True)
class Leak:
    """An eval prompt and the training prompt it matches, with their similarity."""

    eval: Prompt
    train: Prompt
    similarity: float

    def __str__(self) -> str:
        kind = (
            "same prompt" if self.similarity >= 1.0 else f"near-duplicate ({self.similarity:.2f})"
        )
        return (
            f"{kind}: eval case {self.eval.where} {self.eval.text!r} and training line "
            f"{self.train.where} {self.train.text!r}"
        )


@dataclass(frozen=True)
class Neighbour:
    """A training prompt near a query (:meth:`PromptIndex.nearest`), with their similarity."""

    train: Prompt
    similarity: float

    @property
    def file(self) -> str:
        """The training file (``train.where`` is ``file:line``)."""
        return self.train.where.rpartition(":")[0]

    @property
    def line(self) -> int:
        """The line number in :attr:`file` (1 for the first)."""
        return int(self.train.where.rpartition(":")[2])


def normalise(text: str) -> str:
    """Casefold, punctuation to spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _grams(text: str) -> frozenset[str]:
    padded = f" {text} "
    if len(padded) <= NGRAM:
        return frozenset({padded})
    return frozenset(padded[i : i + NGRAM] for i in range(len(padded) - NGRAM + 1))


def _score(equal: bool, shared: int, size_a: int, size_b: int) -> float:
    """The one rule, from two prompts' 5-gram set sizes and how many 5-grams they share: 1.0
    when they are equal after :func:`normalise`, else the Jaccard similarity of their sets
    (:func:`similarity`, :func:`find_leaks` and :class:`PromptIndex` all use it)."""
    return 1.0 if equal else shared / (size_a + size_b - shared)


def similarity(a: str, b: str) -> float:
    """1.0 for prompts equal after :func:`normalise`, else the character 5-gram Jaccard."""
    a, b = normalise(a), normalise(b)
    grams_a, grams_b = _grams(a), _grams(b)
    return _score(a == b, len(grams_a & grams_b), len(grams_a), len(grams_b))


def find_leaks(
    evals: Sequence[Prompt], train: Iterable[Prompt], threshold: float = THRESHOLD
) -> list[Leak]:
    """Every (eval, training) pair at or above ``threshold``."""
    prepared = [(p, normalise(p.text), _grams(normalise(p.text))) for p in evals]
    exact = {norm: p for p, norm, _ in prepared}
    leaks: list[Leak] = []
    for prompt in train:
        norm = normalise(prompt.text)
        if norm in exact:
            leaks.append(Leak(exact[norm], prompt, 1.0))
            continue
        grams = _grams(norm)
        for eval_prompt, _, eval_grams in prepared:
            score = _score(False, len(grams & eval_grams), len(grams), len(eval_grams))
            if score >= threshold:
                leaks.append(Leak(eval_prompt, prompt, score))
    return leaks


class PromptIndex:
    """Training prompts indexed by their 5-grams, built once, so the nearest lines to many
    prompts are found without comparing each prompt with every line: a query counts, for the
    lines each of its 5-grams occurs in, the 5-grams they share (about 0.15 s for 50 prompts
    against 5,000 lines; pure Python, so no native library is loaded for it).

    Only lines that share a 5-gram with the query count: the similarity of the others is 0.
    """

    def __init__(self, prompts: Iterable[Prompt]) -> None:
        self.prompts = list(prompts)
        self._normalised = [normalise(p.text) for p in self.prompts]
        self._sizes: list[int] = []
        self._postings: dict[str, list[int]] = {}
        for index, text in enumerate(self._normalised):
            grams = _grams(text)
            self._sizes.append(len(grams))
            for gram in grams:
                self._postings.setdefault(gram, []).append(index)

    def __len__(self) -> int:
        return len(self.prompts)

    def nearest(self, text: str, k: int = 3) -> list[Neighbour]:
        """The ``k`` training lines (``Prompt.where``: one entry per file:line, its best
        prompt) most similar to ``text`` by :func:`similarity`, most similar first; on a tie,
        the earlier line first. Lines with no 5-gram in common are left out."""
        if k <= 0 or not self.prompts:
            return []
        query = normalise(text)
        grams = _grams(query)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._postings.get(gram, ()))  # counted in C
        scores = {
            index: _score(self._normalised[index] == query, count, len(grams), self._sizes[index])
            for index, count in shared.items()
        }
        found: list[Neighbour] = []
        seen: set[str] = set()
        for index in sorted(scores, key=lambda i: (-scores[i], i)):
            prompt = self.prompts[index]
            if prompt.where not in seen:
                seen.add(prompt.where)
                found.append(Neighbour(prompt, scores[index]))
                if len(found) == k:
                    break
        return found


def training_prompts(folder: Path) -> list[Prompt]:
    """The user turns (and completions' prompts) of every JSONL file in ``folder``."""
    prompts: list[Prompt] = []
    files = sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else [Path(folder)]
    for file in files:
        with file.open(encoding="utf-8") as stream:
            for number, raw in enumerate(stream, 1):
                try:
                    data = json.loads(raw)
                except ValueError:
                    continue  # validation reports broken lines
                if not isinstance(data, dict):
                    continue
                where = f"{file}:{number}"
                for message in data.get("messages") or data.get("conversations") or ():
                    if isinstance(message, dict) and message.get("role") == "user":
                        content = message.get("content")
                        if isinstance(content, str):
                            prompts.append(Prompt(content, where))
                if isinstance(data.get("prompt"), str):
                    prompts.append(Prompt(data["prompt"], where))
    return prompts


def eval_prompts(evals: Path) -> list[Prompt]:
    """The prompts of every case pytest collects in ``evals`` (a subprocess, collection only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "prompts.json"
        env = {**os.environ, DUMP_ENV: str(dump)}
        command = [sys.executable, "-m", "pytest", str(evals), "--collect-only", "-q",
                   "-p", "pytest_punie.finetune.leakage", "-p", "no:cacheprovider"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if not dump.is_file():
            raise LeakageError(
                f"could not collect the eval suite {evals} (exit {done.returncode}):\n"
                + done.stdout[-2000:]
            )
        return [Prompt(**p) for p in json.loads(dump.read_text())]


def check_dataset(folder: Path, evals: Path) -> list[Prompt]:
    """Raise ``LeakageError`` naming every leak between ``folder`` and the suite ``evals``;
    return the eval prompts checked."""
    prompts = eval_prompts(evals)
    leaks = find_leaks(prompts, training_prompts(folder))
    if leaks:
        raise LeakageError(_message(leaks))
    return prompts


def _message(leaks: Sequence[Leak]) -> str:
    shown = "\n".join(f"  {leak}" for leak in leaks[:20])
    more = f"\n  ... and {len(leaks) - 20} more" if len(leaks) > 20 else ""
    return (
        f"{len(leaks)} eval prompt(s) also in the training data (exact or similarity >= "
        f"{THRESHOLD}): the evals would measure recall, not generalisation:\n{shown}{more}"
    )


def item_prompts(items: Iterable[pytest.Item]) -> list[Prompt]:
    """The prompts of collected eval cases: a ``punie(prompt=...)`` marker's prompt, and every
    user turn of an ``eval_*.jsonl`` line (its prompt and the conversation before it)."""
    from pytest_punie.stash import CASE_FILE_KEY  # lazy: collection-time import only

    prompts = []
    for item in items:
        texts: list[object] = []
        case = item.stash.get(CASE_FILE_KEY, None)
        if case is not None:
            texts += [m.get("content") for m in case.history if m.get("role") == "user"]
            texts.append(case.prompt)
        else:
            marker = item.get_closest_marker("punie")
            texts.append(marker.kwargs.get("prompt") if marker else None)
        prompts += [Prompt(t, item.nodeid) for t in texts if isinstance(t, str) and t.strip()]
    return prompts


def check_items(items: Sequence[pytest.Item], train_data: Path, flag: str) -> None:
    """``--punie-train-data`` on an eval run: raise ``pytest.UsageError`` on a leak."""
    prompts = item_prompts(items)
    if not prompts:
        return
    leaks = find_leaks(prompts, training_prompts(train_data))
    if leaks:
        raise pytest.UsageError(f"{flag}={train_data}: {_message(leaks)}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """With ``PUNIE_DUMP_PROMPTS`` set, write the collected prompts there (see module doc)."""
    target = os.environ.get(DUMP_ENV)
    if target:
        rows = [{"text": p.text, "where": p.where} for p in item_prompts(session.items)]
        Path(target).write_text(json.dumps(rows))
