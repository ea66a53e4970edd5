"""Compare two results documents case by case: what changed, what was fixed or broken, and
whether a category's change is more than noise.

Cases are paired by nodeid. Each case's score is its mean over repeats, and it counts as passed
when most of its repeats passed. The category and overall means are the documents' own (one rule
for every report: ``stats.category_statistics``, judge errors left out); a sample whose judge gave
no verdict is left out of the pairs too, and a case with no scored sample on either side is not
compared. Per category, the exact McNemar test looks at paired pass/fail flips and a paired
bootstrap at paired score differences; ``significant`` follows the bootstrap, since it tests the
change the table shows (the mean score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_punie.results.document import RunDocument
from pytest_punie.results.run import CategoryScore
from pytest_punie.results.stats import (
    ALPHA,
    CaseSamples,
    case_samples,
    mcnemar_p,
    paired_bootstrap_p,
)
from pytest_punie.results.thresholds import EVERY_CATEGORY, threshold_for

__all__ = [
    "ALPHA",
    "OVERALL",
    "CaseChange",
    "CategoryComparison",
    "Comparison",
    "compare",
    "regressions",
]

OVERALL = "overall"

Change = Literal["fixed", "broken", "same", "added", "removed"]


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
    baseline_judge_errors: int = 0  # samples whose judge gave no verdict (not in the mean)
    candidate_judge_errors: int = 0

    @property
    def difference(self) -> float | None:
        """Candidate mean - baseline mean (each over its run's scored cases in the category)."""
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


@dataclass(frozen=True)
class _Side:
    """One run's figures for a category (or overall), as its document states them."""

    cases: int = 0
    mean: float | None = None
    judge_errors: int = 0


def _side(document: RunDocument, name: str) -> _Side:
    if name == OVERALL:
        return _Side(
            sum(_scored_cases(c) for c in document.categories),
            document.overall,
            sum(c.judge_errors for c in document.categories),
        )
    category = document.category(name)
    if category is None:
        return _Side()
    mean = category.mean if category.scored else None
    return _Side(_scored_cases(category), mean, category.judge_errors)


def _scored_cases(category: CategoryScore) -> int:
    if category.stats is not None:
        return category.stats.cases
    return category.cases if category.scored else 0


def _category(
    name: str,
    baseline: _Side,
    candidate: _Side,
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
        baseline_cases=baseline.cases,
        candidate_cases=candidate.cases,
        baseline_mean=baseline.mean,
        candidate_mean=candidate.mean,
        paired=len(paired),
        fixed=fixed,
        broken=broken,
        paired_difference=_mean(diffs),
        p_mcnemar=mcnemar_p(broken, fixed),
        p_bootstrap=paired_bootstrap_p(diffs, resamples=resamples, seed=seed),
        baseline_judge_errors=baseline.judge_errors,
        candidate_judge_errors=candidate.judge_errors,
    )


def compare(
    baseline: RunDocument,
    candidate: RunDocument,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Pair the two runs' cases by nodeid and compare them per category and overall."""
    before = case_samples(baseline.cases)
    after = case_samples(candidate.cases)
    unscored = {n for n, s in (*before.items(), *after.items()) if not s.scored}
    changes = [
        _case_change(before.get(n), after[n]) if n in after else _removed(before[n])
        for n in sorted((before.keys() | after.keys()) - unscored)
    ]
    names = sorted(
        {c.name for c in baseline.categories}
        | {c.name for c in candidate.categories}
        | {s.category for s in (*before.values(), *after.values())}
    )
    categories = tuple(
        _category(
            name,
            _side(baseline, name),
            _side(candidate, name),
            [c for c in changes if c.category == name],
            resamples,
            seed,
        )
        for name in names
    )
    overall = _category(
        OVERALL, _side(baseline, OVERALL), _side(candidate, OVERALL), changes, resamples, seed
    )
    return Comparison(
        baseline_label=baseline.label,
        candidate_label=candidate.label,
        categories=categories,
        overall=overall,
        cases=tuple(changes),
    )


def _allowed_drop(name: str, max_drop: Mapping[str, float]) -> float | None:
    if name == OVERALL:  # the overall mean is gated only when named
        return max_drop.get(OVERALL)
    return threshold_for(name, max_drop)


def regressions(comparison: Comparison, max_drop: Mapping[str, float]) -> list[str]:
    """One message per category whose mean dropped by more than its allowed amount.

    ``max_drop`` maps a category (or ``"*"`` for every category, or ``"overall"`` for the
    overall mean) to the largest allowed drop, as a fraction: 0.05 allows 5 points; parse it
    with ``thresholds.parse_thresholds``. A gated category that the candidate no longer has (or
    in which no case was scored) counts as a regression.
    """
    messages = []
    for category in (*comparison.categories, comparison.overall):
        allowed = _allowed_drop(category.name, max_drop)
        if allowed is None:
            continue
        if category.candidate_mean is None:
            if category.candidate_judge_errors:
                messages.append(
                    f"category {category.name!r} has no scored case in the candidate (the judge "
                    f"gave no verdict on {category.candidate_judge_errors} sample(s))"
                )
            else:
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
    known = {c.name for c in comparison.categories} | {OVERALL, EVERY_CATEGORY}
    messages += [
        f"category {name!r} has a maximum regression but no case in either run"
        for name in max_drop
        if name not in known
    ]
    return messages
