"""The data behind a regression: for each case that passed in the baseline and fails now, the
training lines nearest its prompt, by the leakage check's similarity
(``finetune.leakage.PromptIndex``), so the line to fix is named by file:line.

The training data is found once per run (:func:`find_training_data`): ``--punie-train-data``
when given, else the ``data`` folder the adapter's manifest (``punie-manifest.json``) records,
read as given, from where pytest was started, or next to the adapter (the training pipeline
writes it beside the adapter, ``<adapter>.data``). In a folder with a ``train.jsonl``, that file
is searched (the lines the adapter trained on); otherwise every JSONL file of the folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_punie.finetune.leakage import Neighbour, PromptIndex, training_prompts
from pytest_punie.results.compare import Comparison
from pytest_punie.results.run import CaseResult

__all__ = [
    "NEAREST",
    "BrokenCase",
    "RegressionData",
    "TrainingData",
    "find_training_data",
    "regression_data",
]

NEAREST = 3
"""How many training lines are shown for each broken case."""


@dataclass(frozen=True)
class TrainingData:
    """Where the adapter's training data was looked for: the path searched (None: not found)
    and how it was known, or why it was not."""

    path: Path | None
    source: str


@dataclass(frozen=True)
class BrokenCase:
    """A case that passed in the baseline and fails now, its prompt and the training lines
    nearest it, most similar first (none when it has no prompt or shares nothing)."""

    nodeid: str
    prompt: str | None
    lines: tuple[Neighbour, ...]


@dataclass(frozen=True)
class RegressionData:
    """The nearest training lines of every broken case, from ``data``."""

    data: TrainingData
    lines_searched: int
    cases: tuple[BrokenCase, ...]

    def of(self, nodeid: str) -> BrokenCase | None:
        return next((case for case in self.cases if case.nodeid == nodeid), None)


def _manifest_data(adapter: Path) -> str | None:
    from pytest_punie.finetune.lora import MANIFEST  # lazy: the manifest's name, nothing else

    try:
        manifest = json.loads((adapter / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = manifest.get("data") if isinstance(manifest, Mapping) else None
    return data if isinstance(data, str) and data else None


def find_training_data(
    explicit: Path | None, adapter: Path | None, started_in: Path
) -> TrainingData | None:
    """The training data of this run's adapter (see the module doc); None when nothing says
    what it was (no ``--punie-train-data``, no adapter, or no ``data`` in its manifest)."""
    if explicit is not None:
        return TrainingData(_searched(explicit), f"--punie-train-data {explicit}")
    if adapter is None:
        return None
    recorded = _manifest_data(adapter)
    if recorded is None:
        return None
    source = f"the manifest of {adapter}"
    given = Path(recorded).expanduser()
    places = [given] if given.is_absolute() else [started_in / given, adapter.parent / given.name]
    for place in places:
        if place.exists():
            return TrainingData(_searched(place), source)
    return TrainingData(None, f"{source} names {recorded}, which does not exist")


def _searched(path: Path) -> Path:
    """``train.jsonl`` in a folder that has one (what the adapter trained on), else ``path``."""
    train = path / "train.jsonl"
    return train if path.is_dir() and train.is_file() else path


def _prompts(cases: Iterable[CaseResult]) -> dict[str, str]:
    prompts: dict[str, str] = {}
    for case in cases:
        if case.prompt and case.prompt.strip():
            prompts.setdefault(case.nodeid, case.prompt)
    return prompts


def regression_data(
    comparison: Comparison,
    candidate: Iterable[CaseResult],
    baseline: Iterable[CaseResult],
    data: TrainingData,
    k: int = NEAREST,
) -> RegressionData:
    """The ``k`` nearest training lines of each broken case's prompt (this run's, else the
    baseline's), the data read and indexed once."""
    broken = comparison.broken
    if data.path is None or not broken:
        return RegressionData(data, 0, tuple(BrokenCase(c.nodeid, None, ()) for c in broken))
    prompts = {**_prompts(baseline), **_prompts(candidate)}
    index = PromptIndex(training_prompts(data.path))
    cases = []
    for case in broken:
        prompt = prompts.get(case.nodeid)
        lines = tuple(index.nearest(prompt, k)) if prompt else ()
        cases.append(BrokenCase(case.nodeid, prompt, lines))
    return RegressionData(data, len(index), tuple(cases))
