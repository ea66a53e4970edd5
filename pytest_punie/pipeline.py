"""The training pipeline's steps as plain functions: dataset -> validation -> filters ->
training data for mlx_lm -> LoRA adapter -> evaluation against the base.

The ``training/`` suite calls these from session fixtures, one visible test per step; the
``punie train`` command calls the same functions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.datasets import Example, Rejection, dataset_hash, load_dataset, write_examples
from pytest_punie.filters import (
    Filter,
    FilterResult,
    duplicates,
    language,
    python2,
    quality,
    retention,
    run_filters,
    write_rejects,
)
from pytest_punie.validation import ValidationReport, validate

__all__ = [
    "PreparedData",
    "default_filters",
    "evaluate",
    "prepare",
    "token_counter",
]

TRAINING_SPLITS = ("train", "valid", "test")


def default_filters() -> list[Filter]:
    """The filters the pipeline runs unless told otherwise."""
    return [language(), python2(), quality(min_messages=2, max_chars=20_000), duplicates()]


def token_counter(model: str, chat_template: str | None = None) -> Callable[[str], int]:
    """Count tokens with the model's own tokenizer (what ``max_seq_length`` is measured in)."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    tokenizer = load_tokenizer(
        Path(model), {"chat_template": chat_template} if chat_template else {}
    )

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    return count


@dataclass
class PreparedData:
    """The data mlx_lm trains on, and what became of every input line."""

    folder: Path
    validation: dict[str, ValidationReport]
    filters: dict[str, list[FilterResult]]
    rejects: Path
    source_hash: str
    kept: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def rejections(self) -> list[Rejection]:
        found = [p for report in self.validation.values() for p in report.problems]
        return found + [r for results in self.filters.values() for f in results for r in f.removed]

    def retention_rows(self) -> list[tuple[str, str, int, int, float]]:
        """(split, filter, kept, removed, fraction kept) for every split and filter."""
        return [
            (split, row.name, row.kept, row.removed, row.fraction)
            for split, results in self.filters.items()
            for row in retention(results)
        ]


def prepare(
    source: Path,
    out: Path,
    *,
    filters: Callable[[], Sequence[Filter]] = default_filters,
    max_seq_length: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> PreparedData:
    """Validate and filter ``source`` (train/valid/test.jsonl) into ``out`` for mlx_lm.

    Every line ends up in ``out`` or in ``out/rejects.jsonl`` with its reason, never neither.
    """
    source, out = Path(source), Path(out)
    splits = load_dataset(source)
    missing = [s for s in ("train", "valid") if s not in splits]
    if missing:
        raise FileNotFoundError(f"{source} has no {' or '.join(m + '.jsonl' for m in missing)}")
    validation = {
        split: validate(lines, max_seq_length=max_seq_length, count_tokens=count_tokens)
        for split, lines in splits.items()
        if split in TRAINING_SPLITS
    }
    results: dict[str, list[FilterResult]] = {}
    kept: dict[str, list[Example]] = {}
    for split, report in validation.items():
        results[split] = run_filters(report.valid, filters())
        kept[split] = results[split][-1].kept if results[split] else list(report.valid)
        write_examples(out / f"{split}.jsonl", kept[split])
    prepared = PreparedData(
        folder=out,
        validation=validation,
        filters=results,
        rejects=out / "rejects.jsonl",
        source_hash=dataset_hash(sorted(source.glob("*.jsonl"))),
        kept=kept,
    )
    write_rejects(prepared.rejects, prepared.rejections)
    return prepared


def evaluate(
    evals: Path,
    results: Path,
    *,
    model: str | None = None,
    adapter: Path | None = None,
    extra: Sequence[str] = (),
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run the eval suite in a fresh pytest and return its results document."""
    command = [sys.executable, "-m", "pytest", str(evals), "-q", "-p", "no:cacheprovider",
               f"--punie-results={results}", "--punie-history=none", *extra]  # fmt: skip
    if model:
        command.append(f"--punie-model={model}")
    if adapter:
        command.append(f"--punie-adapter={adapter}")
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
    if not Path(results).is_file():
        raise RuntimeError(
            f"the eval suite wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}"
        )
    document: dict[str, Any] = json.loads(Path(results).read_text())
    return document
