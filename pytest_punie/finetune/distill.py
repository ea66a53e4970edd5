"""Self-distillation: the base model's own answers to prompts that need no tool, as training
lines, so that a fine-tune keeps what the model knew (code, arithmetic, chat).

A :class:`BasePrompt` is a prompt with a check (``python_tests``, ``number``, ``keywords`` or
``regex``, as in an ``eval_*.jsonl`` line). :func:`distill` runs the prompts as eval cases
through the plugin, so the base model answers them exactly as it answers the eval suite: the
same server, chat template, greedy sampling and ``--punie-max-tokens``. Each answer is kept
with whether it passed its check and whether it was cut at the token limit. A recipe trains on
the usable ones (:attr:`BaseAnswer.usable`: complete, no tool call, not a loop of repeated
words), right or wrong: they are the model's own greedy text, so training on them holds the
model where it was (what keeps a fine-tune from forgetting is the breadth of these anchors, not
their correctness), while the answers that passed their check are drawn more often, so the
mix leans towards what the model got right.

The answers are model-specific and slow to make (a few hundred generations), so a recipe ships
them as a file (:func:`write_answers`, :func:`read_answers`) made once with its model:
training then needs no server, every seed and every machine trains on the same lines, and the
leakage check and validation see them before training.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.system.files import atomic_write_text

__all__ = [
    "CASE_FILE",
    "BaseAnswer",
    "BasePrompt",
    "case_lines",
    "distill",
    "read_answers",
    "write_answers",
]

CASE_FILE = "eval_base_prompts.jsonl"
CATEGORY = "base"


@dataclass(frozen=True)
class BasePrompt:
    """A prompt that needs no tool, and how to check its answer (an ``expected`` object of a
    case file line). ``kind`` groups prompts: code, arithmetic, chat."""

    id: str
    kind: str
    prompt: str
    expected: Mapping[str, Any] = field(default_factory=lambda: {"regex": r"\w"})

    def case_line(self) -> dict[str, Any]:
        """The prompt as one line of an ``eval_*.jsonl`` case file."""
        return {
            "id": self.id,
            "category": CATEGORY,
            "messages": [{"role": "user", "content": self.prompt}],
            "expected": dict(self.expected),
        }


@dataclass(frozen=True)
class BaseAnswer:
    """The base model's answer to a :class:`BasePrompt`."""

    id: str
    kind: str
    prompt: str
    answer: str
    passed: bool
    truncated: bool
    called_tool: bool = False

    @property
    def usable(self) -> bool:
        """Ended before the token limit, called no tool and is no loop of repeated words
        (right or wrong: see the module docstring)."""
        words = self.answer.split()
        looping = len(words) >= 20 and len(set(words)) < 0.3 * len(words)
        return (
            bool(words)
            and not self.truncated
            and not self.called_tool
            and not looping
            and "<tool_call>" not in self.answer
        )


def case_lines(prompts: Iterable[BasePrompt]) -> list[dict[str, Any]]:
    """The prompts as case file lines; ``ValueError`` on a repeated id."""
    lines, seen = [], set()
    for prompt in prompts:
        if prompt.id in seen:
            raise ValueError(f"two base prompts have the id {prompt.id!r}")
        seen.add(prompt.id)
        lines.append(prompt.case_line())
    return lines


def answers_from_results(
    prompts: Sequence[BasePrompt], document: Mapping[str, Any], max_tokens: int
) -> list[BaseAnswer]:
    """The answers in a results document of :func:`distill`'s run, in the prompts' order."""
    by_id = {str(c["nodeid"]).rpartition("::")[2]: c for c in document.get("cases", ())}
    answers = []
    for prompt in prompts:
        case = by_id.get(prompt.id)
        if case is None or case.get("outcome") == "error":
            continue
        response = case.get("response") or {}
        answers.append(
            BaseAnswer(
                id=prompt.id,
                kind=prompt.kind,
                prompt=prompt.prompt,
                answer=str(response.get("text", "")).strip(),
                passed=case.get("outcome") == "passed",
                truncated=int(response.get("output_tokens") or 0) >= max_tokens,
                called_tool=bool(response.get("tool_calls")),
            )
        )
    return answers


def distill(
    prompts: Sequence[BasePrompt],
    *,
    model: str | None = None,
    max_tokens: int = 256,
    folder: Path | None = None,
    extra: Sequence[str] = (),
) -> list[BaseAnswer]:
    """The base model's greedy answers to ``prompts``, generated through the plugin's server as
    an eval run (``folder`` keeps the case file, the results and the response cache, so an
    interrupted run resumes; default: a temporary folder)."""
    from pytest_punie.finetune.pipeline import evaluate  # lazy: pipeline imports mlx helpers

    lines = case_lines(prompts)
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(folder) if folder is not None else Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        atomic_write_text(where / CASE_FILE, "".join(json.dumps(line) + "\n" for line in lines))
        document = evaluate(
            where / CASE_FILE,
            where / "base-answers-results.json",
            model=model,
            cwd=where,
            extra=[f"--punie-max-tokens={max_tokens}", "--punie-temperature=0", *extra],
        )
    return answers_from_results(prompts, document, max_tokens)


def write_answers(path: Path, answers: Iterable[BaseAnswer], model: str) -> int:
    """Write the answers as JSON lines (each naming the model that gave it); return how many."""
    rows = [json.dumps({**asdict(a), "model": model}, ensure_ascii=False) for a in answers]
    atomic_write_text(Path(path), "".join(row + "\n" for row in rows))
    return len(rows)


def read_answers(path: Path) -> list[BaseAnswer]:
    """The answers :func:`write_answers` wrote; ``ValueError`` naming file:line otherwise."""
    answers = []
    known = set(BaseAnswer.__dataclass_fields__)
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            answers.append(BaseAnswer(**{k: v for k, v in data.items() if k in known}))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a base answer: {exc}") from None
    return answers
