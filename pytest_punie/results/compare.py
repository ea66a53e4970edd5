"""Compare two results documents case by case: what changed, what was fixed or broken, and
whether a category's change is more than noise.

Cases are paired by nodeid. Each case's score is its mean over repeats, and it counts as passed
when most of its repeats passed. The category and overall means are the documents' own (one rule
for every report: ``stats.category_statistics``, judge errors left out); a sample whose judge gave
no verdict is left out of the pairs too, and a case with no scored sample on either side is not
compared. Per category, the exact McNemar test looks at paired pass/fail flips and a paired
bootstrap at paired score differences; ``significant`` follows the bootstrap, since it tests the
change the table shows (the mean score). ``detectable_change`` says how small a change the
paired cases could tell apart from noise (``stats.detectable_change`` with the observed paired
differences), so "not significant" can read "too few cases to tell".

``compare_runs`` sets any number of runs beside the first (the reference): a case-by-case matrix
and each category's figures per run, with ``compare`` against the reference for each later run.
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
    detectable_change,
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
    "MatrixCase",
    "MatrixCategory",
    "MatrixComparison",
    "RunFigures",
    "compare",
    "compare_runs",
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
    # the smallest change the paired cases could call significant (None: no paired case)
    detectable_change: float | None = None
    baseline_low: float | None = None  # each run's 95% interval of its mean (None: overall)
    baseline_high: float | None = None
    candidate_low: float | None = None
    candidate_high: float | None = None

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

    @property
    def too_few_to_tell(self) -> bool:
        """Whether a non-significant change is smaller than the paired cases could see (so
        "not significant" means "too few cases to tell", not "no change")."""
        if self.significant or self.detectable_change is None:
            return False
        return abs(self.paired_difference or 0.0) < self.detectable_change


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
    low: float | None = None
    high: float | None = None


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
    if not category.scored:
        return _Side(_scored_cases(category), None, category.judge_errors)
    return _Side(
        _scored_cases(category), category.mean, category.judge_errors, category.low, category.high
    )


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
    detectable = None
    if diffs:
        centre = math.fsum(diffs) / len(diffs)
        variance = math.fsum((d - centre) ** 2 for d in diffs) / len(diffs)
        detectable = detectable_change(len(diffs), difference_variance=variance)
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
        detectable_change=detectable,
        baseline_low=baseline.low,
        baseline_high=baseline.high,
        candidate_low=candidate.low,
        candidate_high=candidate.high,
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


# -- many runs beside a reference -----------------------------------------------------------------


@dataclass(frozen=True)
class MatrixCase:
    """One case across the runs: its score and pass/fail in each (None where the run does not
    have it, or scored none of its samples), and its change against the reference in each
    later run (``changes[k]`` is run ``k + 1``'s; None where the case is in neither)."""

    nodeid: str
    category: str
    scores: tuple[float | None, ...]
    passed: tuple[bool | None, ...]
    changes: tuple[Change | None, ...]

    @property
    def changed(self) -> bool:
        """Whether a later run fixed or broke the case."""
        return any(change in ("fixed", "broken") for change in self.changes)


@dataclass(frozen=True)
class RunFigures:
    """A category's figures in one run, as its document states them (None: not in the run)."""

    cases: int
    mean: float | None
    low: float | None
    high: float | None
    detectable_change: float | None


@dataclass(frozen=True)
class MatrixCategory:
    """A category's figures in each run, in the runs' order."""

    name: str
    runs: tuple[RunFigures, ...]


@dataclass(frozen=True)
class MatrixComparison:
    """Several runs set beside the first (the reference): every case's score in each run, each
    category's figures per run, and ``compare(reference, run)`` for each later run (its fixed
    and broken cases, paired tests and detectable changes)."""

    labels: tuple[str, ...]
    cases: tuple[MatrixCase, ...]
    categories: tuple[MatrixCategory, ...]
    overall: tuple[float | None, ...]
    pairs: tuple[Comparison, ...]  # pairs[k]: the reference against run k + 1

    @property
    def reference(self) -> str:
        return self.labels[0]

    def fixed(self, run: int) -> list[CaseChange]:
        """The cases run ``run`` (1 or later) fixed against the reference."""
        return self.pairs[run - 1].fixed

    def broken(self, run: int) -> list[CaseChange]:
        """The cases run ``run`` (1 or later) broke against the reference."""
        return self.pairs[run - 1].broken


def _figures(document: RunDocument, name: str) -> RunFigures:
    category = document.category(name)
    if category is None or not category.scored:
        return RunFigures(0, None, None, None, None)
    stats = category.stats
    detectable = stats.detectable_change if stats is not None else None
    if detectable is None:
        detectable = detectable_change(_scored_cases(category), category.mean)
    return RunFigures(
        _scored_cases(category), category.mean, category.low, category.high, detectable
    )


def compare_runs(
    documents: Sequence[RunDocument],
    labels: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> MatrixComparison:
    """Set ``documents[1:]`` beside ``documents[0]`` (the reference), case by case (paired by
    nodeid, as ``compare`` pairs them) and per category. ``labels`` name the runs (default:
    each document's label)."""
    if len(documents) < 2:
        raise ValueError(f"compare_runs needs at least two runs, got {len(documents)}")
    names = tuple(labels) if labels is not None else tuple(d.label for d in documents)
    if len(names) != len(documents):
        raise ValueError(f"{len(names)} labels for {len(documents)} runs")
    pairs = tuple(compare(documents[0], d, resamples, seed) for d in documents[1:])
    samples = [case_samples(d.cases) for d in documents]
    changes = [{c.nodeid: c.change for c in pair.cases} for pair in pairs]
    categories_of: dict[str, str] = {}
    for run in reversed(samples):  # the reference's category wins
        categories_of.update({nodeid: s.category for nodeid, s in run.items()})
    cases = tuple(
        MatrixCase(
            nodeid=nodeid,
            category=categories_of[nodeid],
            scores=tuple(
                run[nodeid].score if nodeid in run and run[nodeid].scored else None
                for run in samples
            ),
            passed=tuple(
                run[nodeid].passed if nodeid in run and run[nodeid].scored else None
                for run in samples
            ),
            changes=tuple(change.get(nodeid) for change in changes),
        )
        for nodeid in sorted(categories_of, key=lambda n: (categories_of[n], n))
    )
    category_names = sorted(
        {c.name for d in documents for c in d.categories} | set(categories_of.values())
    )
    return MatrixComparison(
        labels=names,
        cases=cases,
        categories=tuple(
            MatrixCategory(name, tuple(_figures(d, name) for d in documents))
            for name in category_names
        ),
        overall=tuple(d.overall for d in documents),
        pairs=pairs,
    )
