"""A run's results as one typed document: built once per session, written as the results JSON,
read back by one loader, and taken by every consumer (the summary, the gate, ``compare``, the
history, ``export-failures``).

A dict appears only where JSON is read or written (``to_json``, ``from_json``). The JSON keys
keep their names across versions (``cases[i]["outcome"]`` and friends), and ``format_version``
says which rules wrote the figures: a file without it is version 1, whose category figures are
computed again from its cases by today's rule (``stats.category_statistics``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_punie.results.labels import run_label
from pytest_punie.results.run import CaseResult, CategoryScore, RunMetadata, category_scores
from pytest_punie.results.stats import overall_mean
from pytest_punie.system.files import atomic_write_text

if TYPE_CHECKING:
    from pytest_punie.results.parity import Parity

__all__ = [
    "FORMAT_VERSION",
    "RunDocument",
    "load_run",
    "read_run",
    "run_document",
    "write_results",
]

FORMAT_VERSION = 2
"""The results format this version writes. 1: no ``format_version`` key, judge errors were not
counted beside the category figures. 2: ``format_version``, ``judge_errors`` and each category's
``stats`` (the figures, by ``stats.category_statistics``)."""

_KEYS = ("format_version", "metadata", "overall", "categories", "gate", "cases", "parity")


@dataclass(frozen=True)
class RunDocument:
    """A run's results: what ran on what (``metadata``), the overall and per-category figures,
    the gate's verdict (None when nothing gated the run) and every case sample.

    ``extra`` holds top-level keys this version does not know (a ``pytest_punie_results`` hook
    may add some): kept when a file is read and written again.
    """

    metadata: RunMetadata
    overall: float | None
    categories: tuple[CategoryScore, ...]
    cases: tuple[CaseResult, ...]
    gate: tuple[str, ...] | None = None  # why the gate failed (empty: passed)
    format_version: int = FORMAT_VERSION  # of the file it was read from; written: the current
    extra: Mapping[str, Any] = field(default_factory=dict)
    parity: Parity | None = None  # --punie-parity: the derived models against the adapter

    @property
    def label(self) -> str:
        """The run's label (``labels.run_label``: ``model + adapter``)."""
        server = self.metadata.server or {}
        model = server.get("model") or server.get("model_name")
        adapter = server.get("adapter")
        return run_label(str(model) if model else None, str(adapter) if adapter else None)

    def category(self, name: str) -> CategoryScore | None:
        return next((c for c in self.categories if c.name == name), None)

    def with_parity(self, parity: Parity | None) -> RunDocument:
        """The same document with the derived models' cases and figures (``results.parity``)."""
        return replace(self, parity=parity)

    def with_gate(self, gate: Sequence[str] | None) -> RunDocument:
        """The same document with the gate's verdict (the figures are not computed again)."""
        return replace(self, gate=None if gate is None else tuple(gate))

    def to_json(self) -> dict[str, Any]:
        """The results file's JSON (the cases' transcripts are shared, not copied)."""
        return {
            **self.extra,
            "format_version": FORMAT_VERSION,  # the figures are always today's (see read_run)
            "metadata": self.metadata.to_json(),
            "overall": self.overall,
            "categories": [c.to_json() for c in self.categories],
            "gate": {"failures": list(self.gate)} if self.gate is not None else None,
            "cases": [c.to_json() for c in self.cases],
            **({"parity": self.parity.to_json()} if self.parity is not None else {}),
        }


def run_document(
    metadata: RunMetadata,
    cases: Iterable[CaseResult],
    thresholds: Mapping[str, float] | None = None,
    default_threshold: float | None = None,
    gate: Sequence[str] | None = None,
) -> RunDocument:
    """Build a run's document: its figures computed here, once, by the one rule."""
    cases = tuple(cases)
    cache = {**metadata.cache, "cached_cases": sum(c.cached for c in cases)}
    return RunDocument(
        metadata=replace(metadata, cache=cache),
        overall=overall_mean(cases),
        categories=tuple(category_scores(cases, thresholds, default_threshold)),
        cases=cases,
        gate=None if gate is None else tuple(gate),
    )


def read_run(data: Any, source: str = "the document") -> RunDocument:
    """A results document from its JSON (any version up to ``FORMAT_VERSION``).

    Raises ValueError naming ``source`` when it is not a results document or comes from a
    newer pytest-punie.
    """
    where = f"{source} is not a pytest-punie results file"
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise ValueError(f"{where}: it has no 'cases' list")
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{where}: format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{source} was written by a newer pytest-punie (results format {version}; this "
            f"version reads up to {FORMAT_VERSION}): upgrade pytest-punie to read it"
        )
    cases = tuple(_case(entry, index, source, where) for index, entry in enumerate(data["cases"]))
    metadata = data.get("metadata")
    meta = RunMetadata.from_json(metadata if isinstance(metadata, Mapping) else {})
    stored = [c for c in data.get("categories") or () if isinstance(c, Mapping) and "name" in c]
    gate = data.get("gate")
    failures = gate.get("failures") if isinstance(gate, Mapping) else None
    extra = {k: v for k, v in data.items() if k not in _KEYS}
    if version == 1:  # figures of an older rule: computed again from the cases, by today's
        thresholds = {
            str(c["name"]): float(c["threshold"])
            for c in stored
            if isinstance(c.get("threshold"), (int, float))
        }
        document = run_document(meta, cases, thresholds)
        return replace(
            document,
            metadata=meta,  # as the file has it
            gate=None if failures is None else tuple(str(f) for f in failures),
            format_version=version,
            extra=extra,
        )
    overall = data.get("overall")
    try:
        categories = tuple(CategoryScore.from_json(c) for c in stored)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: a category cannot be read ({error})") from None
    parity = None
    if isinstance(data.get("parity"), Mapping):
        from pytest_punie.results.parity import Parity  # it builds documents: imported here

        try:
            parity = Parity.from_json(data["parity"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: its parity section cannot be read ({error})") from None
    return RunDocument(
        metadata=meta,
        overall=float(overall) if isinstance(overall, (int, float)) else None,
        categories=categories,
        cases=cases,
        gate=None if failures is None else tuple(str(f) for f in failures),
        format_version=version,
        extra=extra,
        parity=parity,
    )


def _case(entry: Any, index: int, source: str, where: str) -> CaseResult:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("nodeid"), str):
        raise ValueError(f"{where}: case {index} has no nodeid")
    score = entry.get("score", 0.0)
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise ValueError(f"{source}: case {entry['nodeid']!r} has a non-numeric score")
    try:
        return CaseResult.from_json(entry)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: case {entry['nodeid']!r} cannot be read ({error})") from None


def load_run(path: str | os.PathLike[str]) -> RunDocument:
    """Read a results file written by any pytest-punie run (the one loader).

    Raises FileNotFoundError when there is none, ValueError when it is not a results file or
    comes from a newer pytest-punie.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read results file {path}: {error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not a pytest-punie results file: invalid JSON ({error})"
        ) from error
    return read_run(data, str(path))


def write_results(path: Path, document: RunDocument | Mapping[str, Any]) -> None:
    """Write the results JSON atomically (a crash leaves the previous file whole); a mapping is
    a document's JSON that a ``pytest_punie_results`` hook may have added fields to."""
    data = document.to_json() if isinstance(document, RunDocument) else document
    atomic_write_text(path, json.dumps(data, indent=2, default=str))
