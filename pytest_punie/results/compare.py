"""Compare two results files case by case: what changed, what was fixed or broken, and whether a
category's change is more than noise.

Cases are paired by nodeid. Each case's score is its mean over repeats, and it counts as passed
when most of its repeats passed. Per category, the exact McNemar test looks at paired pass/fail
flips and a paired bootstrap at paired score differences; ``significant`` follows the bootstrap,
since it tests the change the table shows (the mean score).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_punie.results.render import run_label
from pytest_punie.results.stats import (
    ALPHA,
    CaseSamples,
    case_samples,
    mcnemar_p,
    paired_bootstrap_p,
)

if TYPE_CHECKING:
    import os

__all__ = [
    "ALPHA",
    "CaseChange",
    "CategoryComparison",
    "Comparison",
    "compare",
    "document_label",
    "load_results",
    "regressions",
]

ALL_CATEGORIES = ("*", "all")  # keys of ``max_drop`` that apply to every category
OVERALL = "overall"

Change = Literal["fixed", "broken", "same", "added", "removed"]


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results JSON file written by a pytest-punie run."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read results file {path}: {error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not a pytest-punie results file: invalid JSON ({error})"
        ) from error
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise ValueError(f"{path} is not a pytest-punie results file: it has no 'cases' list")
    for index, case in enumerate(document["cases"]):
        if not isinstance(case, dict) or not isinstance(case.get("nodeid"), str):
            raise ValueError(
                f"{path} is not a pytest-punie results file: case {index} has no nodeid"
            )
        if not isinstance(case.get("score", 0.0), (int, float)):
            raise ValueError(f"{path}: case {case['nodeid']!r} has a non-numeric score")
    return document


def document_label(document: Mapping[str, Any]) -> str:
    """A results document's run label (``render.run_label``: ``model + adapter``)."""
    server = (document.get("metadata") or {}).get("server") or {}
    model = server.get("model") or server.get("model_name")
    adapter = server.get("adapter")
    return run_label(str(model) if model else None, str(adapter) if adapter else None)


@dataclass(frozen=True)
class CaseChange:
    """One case in either run; scores and pass rates are ``None`` on the side it is missing."""

    nodeid: str
    category: str
    change: Change
    baseline_score: float | None
    candidate_score: float | None
    baseline_pass_rate: float | None
    candidate_pass_rate: float | None


@dataclass(frozen=True)
class CategoryComparison:
    """A category's means in both runs and the paired tests over the cases both runs have."""

    name: str
    baseline_cases: int
    candidate_cases: int
    baseline_mean: float | None
    candidate_mean: float | None
    paired: int
    fixed: int
    broken: int
    paired_difference: float | None  # mean of candidate - baseline over paired cases
    p_mcnemar: float
    p_bootstrap: float

    @property
    def difference(self) -> float | None:
        """Candidate mean - baseline mean (each over all of its run's cases in the category)."""
        if self.baseline_mean is None or self.candidate_mean is None:
            return None
        return self.candidate_mean - self.baseline_mean

    @property
    def significant(self) -> bool:
        """Whether the paired score change is unlikely to be noise (bootstrap p < ALPHA)."""
        return self.paired > 0 and self.p_bootstrap < ALPHA


@dataclass(frozen=True)
class Comparison:
    """Everything ``compare`` finds, for the table, the HTML report and the regression gate."""

    baseline_label: str
    candidate_label: str
    categories: tuple[CategoryComparison, ...]
    overall: CategoryComparison
    cases: tuple[CaseChange, ...]

    def _with(self, change: Change) -> list[CaseChange]:
        return [case for case in self.cases if case.change == change]

    @property
    def fixed(self) -> list[CaseChange]:
        return self._with("fixed")

    @property
    def broken(self) -> list[CaseChange]:
        return self._with("broken")

    @property
    def same(self) -> list[CaseChange]:
        return self._with("same")

    @property
    def added(self) -> list[CaseChange]:
        return self._with("added")

    @property
    def removed(self) -> list[CaseChange]:
        return self._with("removed")

    def category(self, name: str) -> CategoryComparison:
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(name)


def _case_change(before: CaseSamples | None, after: CaseSamples) -> CaseChange:
    change: Change
    if before is None:
        change = "added"
    elif before.passed == after.passed:
        change = "same"
    else:
        change = "fixed" if after.passed else "broken"
    return CaseChange(
        nodeid=after.nodeid,
        category=after.category,
        change=change,
        baseline_score=before.score if before else None,
        candidate_score=after.score,
        baseline_pass_rate=before.pass_rate if before else None,
        candidate_pass_rate=after.pass_rate,
    )


def _removed(before: CaseSamples) -> CaseChange:
    return CaseChange(
        nodeid=before.nodeid,
        category=before.category,
        change="removed",
        baseline_score=before.score,
        candidate_score=None,
        baseline_pass_rate=before.pass_rate,
        candidate_pass_rate=None,
    )


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _category(
    name: str,
    baseline: Sequence[CaseSamples],
    candidate: Sequence[CaseSamples],
    changes: Sequence[CaseChange],
    resamples: int,
    seed: int,
) -> CategoryComparison:
    paired = [c for c in changes if c.change in ("fixed", "broken", "same")]
    diffs = [
        c.candidate_score - c.baseline_score
        for c in paired
        if c.candidate_score is not None and c.baseline_score is not None
    ]
    fixed = sum(c.change == "fixed" for c in paired)
    broken = sum(c.change == "broken" for c in paired)
    return CategoryComparison(
        name=name,
        baseline_cases=len(baseline),
        candidate_cases=len(candidate),
        baseline_mean=_mean([c.score for c in baseline]),
        candidate_mean=_mean([c.score for c in candidate]),
        paired=len(paired),
        fixed=fixed,
        broken=broken,
        paired_difference=_mean(diffs),
        p_mcnemar=mcnemar_p(broken, fixed),
        p_bootstrap=paired_bootstrap_p(diffs, resamples=resamples, seed=seed),
    )


def compare(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Pair the two runs' cases by nodeid and compare them per category and overall."""
    before = case_samples(baseline.get("cases") or [])
    after = case_samples(candidate.get("cases") or [])
    changes = [
        _case_change(before.get(n), after[n]) if n in after else _removed(before[n])
        for n in sorted(before.keys() | after.keys())
    ]

    def members(samples: Mapping[str, CaseSamples], name: str) -> list[CaseSamples]:
        return [s for s in samples.values() if s.category == name]

    names = sorted({s.category for s in before.values()} | {s.category for s in after.values()})
    categories = tuple(
        _category(
            name,
            members(before, name),
            members(after, name),
            [c for c in changes if c.category == name],
            resamples,
            seed,
        )
        for name in names
    )
    overall = _category(
        OVERALL, list(before.values()), list(after.values()), changes, resamples, seed
    )
    return Comparison(
        baseline_label=document_label(baseline),
        candidate_label=document_label(candidate),
        categories=categories,
        overall=overall,
        cases=tuple(changes),
    )


def _allowed_drop(name: str, max_drop: Mapping[str, float]) -> float | None:
    if name in max_drop:
        return max_drop[name]
    if name == OVERALL:  # the overall mean is gated only when named
        return None
    for key in ALL_CATEGORIES:
        if key in max_drop:
            return max_drop[key]
    return None


def regressions(comparison: Comparison, max_drop: Mapping[str, float]) -> list[str]:
    """One message per category whose mean dropped by more than its allowed amount.

    ``max_drop`` maps a category (or ``"*"``/``"all"`` for every category, or ``"overall"`` for
    the overall mean) to the largest allowed drop, as a fraction: 0.05 allows 5 points. A gated
    category that the candidate no longer has counts as a regression.
    """
    messages = []
    for category in (*comparison.categories, comparison.overall):
        allowed = _allowed_drop(category.name, max_drop)
        if allowed is None:
            continue
        if category.candidate_mean is None:
            messages.append(
                f"category {category.name!r} has no case in the candidate "
                f"({category.baseline_cases} in the baseline)"
            )
            continue
        if category.baseline_mean is None:
            continue
        drop = category.baseline_mean - category.candidate_mean
        if drop > allowed + 1e-9:
            p = "< 0.001" if category.p_bootstrap < 0.001 else f"= {category.p_bootstrap:.3f}"
            messages.append(
                f"category {category.name!r} dropped {drop * 100:.1f} points "
                f"({category.baseline_mean:.1%} -> {category.candidate_mean:.1%}), "
                f"more than the allowed {allowed * 100:.1f} points "
                f"(paired cases: {category.paired}, bootstrap p {p})"
            )
    known = {c.name for c in comparison.categories} | {OVERALL, *ALL_CATEGORIES}
    messages += [
        f"category {name!r} has a maximum regression but no case in either run"
        for name in max_drop
        if name not in known
    ]
    return messages


# -- the ``punie compare`` command ----------------------------------------------------------------
