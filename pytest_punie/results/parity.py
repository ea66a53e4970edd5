"""Parity: the adapter as served against the models derived from it (``--punie-parity``), case
by case.

Each derived model (fused, q4...) ran every case the adapter ran; its cases are paired with the
adapter's by case id and compared with ``compare.compare`` (the adapter is the baseline, the
derived model the candidate), and ``compare.regressions`` gates it with the allowed drop of
``--punie-max-regression``. The figures are computed here, once, and kept in the results file
(``RunDocument.parity``), from which every report reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_punie.results.compare import (
    OVERALL,
    CategoryComparison,
    Comparison,
    compare,
    regressions,
)
from pytest_punie.results.document import RunDocument, run_document
from pytest_punie.results.run import CaseResult, CategoryScore
from pytest_punie.results.thresholds import threshold_for

__all__ = ["Parity", "ParityRow", "VariantResult", "parity"]

Verdict = Literal["same", "ok", "worse", "missing"]


@dataclass(frozen=True)
class ParityRow:
    """One category (or ``overall``) of one derived model against the adapter."""

    category: str
    adapter: float | None  # the adapter's mean score
    variant: float | None  # the derived model's
    paired: int  # cases both ran
    fixed: int  # failed on the adapter, passed on the derived model
    broken: int  # passed on the adapter, failed on the derived model
    p_bootstrap: float  # paired bootstrap p of the score change
    p_mcnemar: float
    allowed_drop: float | None  # None: not gated (the overall row unless named)
    verdict: Verdict  # same: every paired case scored the same; worse: beyond the allowed drop

    @property
    def change(self) -> float | None:
        """The derived model's mean minus the adapter's."""
        if self.adapter is None or self.variant is None:
            return None
        return self.variant - self.adapter

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "change": self.change}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParityRow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class VariantResult:
    """A derived model's run: what served it, its own figures and cases, and its rows against
    the adapter (categories, then ``overall``) with the gate's messages."""

    name: str
    server: Mapping[str, Any] | None
    overall: float | None
    categories: tuple[CategoryScore, ...]
    cases: tuple[CaseResult, ...]
    rows: tuple[ParityRow, ...]
    failures: tuple[str, ...] = ()
    broken: tuple[str, ...] = ()  # case ids that passed on the adapter and fail here
    fixed: tuple[str, ...] = ()  # case ids that failed on the adapter and pass here

    def row(self, category: str) -> ParityRow | None:
        return next((r for r in self.rows if r.category == category), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": dict(self.server) if self.server else None,
            "overall": self.overall,
            "categories": [c.to_json() for c in self.categories],
            "rows": [r.to_json() for r in self.rows],
            "failures": list(self.failures),
            "broken": list(self.broken),
            "fixed": list(self.fixed),
            "cases": [c.to_json() for c in self.cases],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantResult:
        overall = data.get("overall")
        return cls(
            name=str(data["name"]),
            server=data.get("server"),
            overall=float(overall) if isinstance(overall, (int, float)) else None,
            categories=tuple(CategoryScore.from_json(c) for c in data.get("categories") or ()),
            cases=tuple(CaseResult.from_json(c) for c in data.get("cases") or ()),
            rows=tuple(ParityRow.from_json(r) for r in data.get("rows") or ()),
            failures=tuple(str(f) for f in data.get("failures") or ()),
            broken=tuple(str(n) for n in data.get("broken") or ()),
            fixed=tuple(str(n) for n in data.get("fixed") or ()),
        )


@dataclass(frozen=True)
class Parity:
    """Every derived model against the adapter, and the allowed drop that gated them
    (``default_max_drop``: the gate's default, no ``--punie-max-regression`` was given)."""

    variants: tuple[VariantResult, ...]
    max_drop: Mapping[str, float] = field(default_factory=dict)
    default_max_drop: bool = False

    @property
    def failures(self) -> list[str]:
        """Why the derived models fail parity (empty: every one matches the adapter)."""
        return [message for variant in self.variants for message in variant.failures]

    @property
    def categories(self) -> list[str]:
        """Every category any model ran, in order, ``overall`` last."""
        names = {r.category for v in self.variants for r in v.rows if r.category != OVERALL}
        return [*sorted(names), OVERALL]

    def to_json(self) -> dict[str, Any]:
        return {
            "max_drop": dict(self.max_drop),
            "default_max_drop": self.default_max_drop,
            "failures": self.failures,
            "variants": [v.to_json() for v in self.variants],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Parity:
        return cls(
            variants=tuple(VariantResult.from_json(v) for v in data.get("variants") or ()),
            max_drop={str(k): float(v) for k, v in (data.get("max_drop") or {}).items()},
            default_max_drop=bool(data.get("default_max_drop", False)),
        )


def _allowed(name: str, max_drop: Mapping[str, float]) -> float | None:
    return max_drop.get(OVERALL) if name == OVERALL else threshold_for(name, max_drop)


def _verdict(
    category: CategoryComparison, comparison: Comparison, allowed: float | None
) -> Verdict:
    if category.candidate_mean is None:
        return "missing"
    drop = (category.baseline_mean or 0.0) - category.candidate_mean
    if allowed is not None and category.baseline_mean is not None and drop > allowed + 1e-9:
        return "worse"
    paired = [
        c
        for c in comparison.cases
        if c.change in ("fixed", "broken", "same")
        and (category.name == OVERALL or c.category == category.name)
    ]
    every_case_paired = category.baseline_cases == category.candidate_cases == category.paired
    if paired and every_case_paired and all(c.baseline_score == c.candidate_score for c in paired):
        return "same"
    return "ok"


def _row(
    category: CategoryComparison, comparison: Comparison, max_drop: Mapping[str, float]
) -> ParityRow:
    allowed = _allowed(category.name, max_drop)
    return ParityRow(
        category=category.name,
        adapter=category.baseline_mean,
        variant=category.candidate_mean,
        paired=category.paired,
        fixed=category.fixed,
        broken=category.broken,
        p_bootstrap=category.p_bootstrap,
        p_mcnemar=category.p_mcnemar,
        allowed_drop=allowed,
        verdict=_verdict(category, comparison, allowed),
    )


def _server(cases: Sequence[CaseResult]) -> dict[str, Any] | None:
    """The server the cases ran on: a started (or failed) one's, else the first known."""
    known = [c.server for c in cases if c.server]
    started = [s for s in known if s.get("base_url") or s.get("start_error")]
    chosen = started or known
    return dict(chosen[0]) if chosen else None


def parity(
    adapter: RunDocument,
    derived: Mapping[str, Sequence[CaseResult]],
    max_drop: Mapping[str, float],
    *,
    default_max_drop: bool = False,
    order: Sequence[str] = (),
) -> Parity:
    """Compare each derived model's cases (``derived``: by variant name) with the adapter's
    run, and gate each with ``max_drop`` (``thresholds.parse_thresholds``'s mapping). A variant
    in ``order`` that ran no case is reported missing in every category."""
    names = [*order, *(n for n in derived if n not in order)]
    variants = []
    for name in names:
        cases = tuple(derived.get(name, ()))
        metadata = dataclasses.replace(adapter.metadata, server=_server(cases))
        document = run_document(metadata, cases)
        comparison = compare(adapter, document)
        rows = tuple(
            _row(c, comparison, max_drop) for c in (*comparison.categories, comparison.overall)
        )
        messages = regressions(comparison, max_drop)
        errors = [c.nodeid for c in cases if c.outcome == "error"]
        if errors:  # no answer is no parity: the model could not be made, served or reached
            messages.append(f"{len(errors)} case(s) errored: {', '.join(errors[:5])}")
        failures = tuple(f"{name}: {message}" for message in messages)
        variants.append(
            VariantResult(
                name=name,
                server=document.metadata.server,
                overall=document.overall,
                categories=document.categories,
                cases=cases,
                rows=rows,
                failures=failures,
                broken=tuple(c.nodeid for c in comparison.broken),
                fixed=tuple(c.nodeid for c in comparison.fixed),
            )
        )
    return Parity(tuple(variants), dict(max_drop), default_max_drop)
