"""The recipe loop's verdict: each trained adapter against the base model on the eval suite, the
gate it must pass, and the spread of every category over the seeds of a recipe.

The comparison is ``results.compare.compare`` (cases paired by node id, paired bootstrap and
McNemar per category) and the gate is ``results.compare.regressions`` with the README's rule
(:data:`DEFAULT_MAX_DROP`: no category drops more than 10 points; ``--punie-max-regression``
chooses another). A recipe may name a goal category as well, which must rise significantly
(paired bootstrap p < ``results.stats.ALPHA``). The text is made by ``results.render``'s tables.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_punie.results.compare import ALPHA, Comparison, compare, regressions
from pytest_punie.results.document import RunDocument, read_run

__all__ = [
    "DEFAULT_MAX_DROP",
    "CategorySpread",
    "Verdict",
    "gate_text",
    "judge",
    "seed_spread",
    "spread_text",
    "verdict_text",
]

# the README's gate, --punie-max-regression='*=0.1': no category drops more than 10 points
DEFAULT_MAX_DROP: Mapping[str, float] = {"*": 0.1}


def _run(document: Mapping[str, Any]) -> RunDocument:
    """A results document (its JSON) as the typed ``RunDocument`` that ``compare`` takes."""
    return read_run(document)


def _describe_drop(max_drop: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={drop:g}" for name, drop in sorted(max_drop.items()))


@dataclass(frozen=True)
class Verdict:
    """One adapter against the base: the comparison, the gate and the recipe's goal."""

    adapter: str
    comparison: Comparison
    max_drop: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_DROP))
    regressions: tuple[str, ...] = ()
    goal: str | None = None  # a category that must rise significantly
    seed: int | None = None

    @property
    def goal_failure(self) -> str | None:
        """Why the goal is not met (None when it is, or when there is no goal)."""
        if self.goal is None:
            return None
        try:
            category = self.comparison.category(self.goal)
        except KeyError:
            return f"the goal category {self.goal!r} has no case"
        change = category.difference
        if change is None or change <= 0 or not category.significant:
            shown = "-" if change is None else f"{change * 100:+.1f} points"
            return (
                f"the goal category {self.goal!r} did not rise significantly ({shown}, paired "
                f"bootstrap p {category.p_bootstrap:.3f}, needs p < {ALPHA})"
            )
        return None

    @property
    def failures(self) -> list[str]:
        """Every reason the adapter fails its gate (empty: it passes)."""
        goal = self.goal_failure
        return [*self.regressions, *([goal] if goal else [])]

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(
    base: Mapping[str, Any],
    adapter: Mapping[str, Any],
    *,
    label: str,
    max_drop: Mapping[str, float] | None = None,
    goal: str | None = None,
    seed: int | None = None,
) -> Verdict:
    """Compare the adapter's results document with the base's and apply the gate: no category
    drops more than ``max_drop`` allows (default :data:`DEFAULT_MAX_DROP`) and the ``goal``
    category, when given, rises significantly."""
    drop = dict(max_drop or DEFAULT_MAX_DROP)
    comparison = compare(_run(base), _run(adapter))
    return Verdict(
        adapter=label,
        comparison=comparison,
        max_drop=drop,
        regressions=tuple(regressions(comparison, drop)),
        goal=goal,
        seed=seed,
    )


@dataclass(frozen=True)
class CategorySpread:
    """One category over the adapters of several seeds: the base's score, each adapter's
    score and change, and in how many of them the change was significant."""

    name: str
    base: float | None
    scores: tuple[float, ...]
    changes: tuple[float, ...]
    significant: int

    @staticmethod
    def _summary(values: Sequence[float]) -> tuple[float, float, float] | None:
        if not values:
            return None
        return statistics.median(values), min(values), max(values)

    @property
    def score(self) -> tuple[float, float, float] | None:
        """(median, min, max) of the adapters' scores."""
        return self._summary(self.scores)

    @property
    def change(self) -> tuple[float, float, float] | None:
        """(median, min, max) of the adapters' changes from the base."""
        return self._summary(self.changes)


def seed_spread(verdicts: Sequence[Verdict]) -> list[CategorySpread]:
    """Every category's spread over ``verdicts`` (one per seed, all against the same base)."""
    names = sorted({c.name for v in verdicts for c in v.comparison.categories})
    spreads = []
    for name in names:
        rows = []
        for verdict in verdicts:
            try:
                rows.append(verdict.comparison.category(name))
            except KeyError:
                continue
        base = next((r.baseline_mean for r in rows if r.baseline_mean is not None), None)
        spreads.append(
            CategorySpread(
                name=name,
                base=base,
                scores=tuple(r.candidate_mean for r in rows if r.candidate_mean is not None),
                changes=tuple(r.difference for r in rows if r.difference is not None),
                significant=sum(r.significant for r in rows),
            )
        )
    return spreads


# -- text (the tables are results.render's) -------------------------------------------------------


def gate_text(verdict: Verdict) -> str:
    """The gate's verdict in words: PASS, or FAIL with every reason."""
    rule = f"no category drops more than {_describe_drop(verdict.max_drop)}"
    if verdict.goal:
        rule += f"; {verdict.goal} rises significantly"
    if verdict.passed:
        return f"gate ({rule}): PASS"
    return "\n".join([f"gate ({rule}): FAIL", *(f"  {reason}" for reason in verdict.failures)])


def verdict_text(verdict: Verdict) -> str:
    """The comparison (one row per category: base, adapter, change, paired p, significant or
    not; the fixed and broken cases), then the gate's verdict."""
    from pytest_punie.results.render import comparison_text

    seed = f" (seed {verdict.seed})" if verdict.seed is not None else ""
    return "\n".join(
        [f"adapter {verdict.adapter}{seed} against the base", comparison_text(verdict.comparison),
         "", gate_text(verdict)]
    )  # fmt: skip


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def spread_text(verdicts: Sequence[Verdict]) -> str:
    """Each category's spread over the seeds (median, min and max of the adapters' scores and
    changes), then the recipe's verdict: it passes when every seed passes its gate."""
    from pytest_punie.results.render import percent, text_table

    rows = []
    for spread in seed_spread(verdicts):
        score, change = spread.score, spread.change
        rows.append(
            [
                spread.name,
                percent(spread.base),
                percent(score[0]) if score else "-",
                f"{percent(score[1])}-{percent(score[2])}" if score else "-",
                _points(change[0]) if change else "-",
                f"{_points(change[1])} to {_points(change[2])}" if change else "-",
                f"{spread.significant}/{len(spread.changes)}",
            ]
        )
    header = ["category", "base", "adapter (median)", "adapter (min-max)", "change (median, pts)",
              "change (min to max)", "significant"]  # fmt: skip
    passed = [v for v in verdicts if v.passed]
    seeds = ", ".join(str(v.seed) if v.seed is not None else v.adapter for v in verdicts)
    verdict = "PASS" if len(passed) == len(verdicts) else "FAIL"
    failed = [v for v in verdicts if not v.passed]
    lines = [
        f"spread over {len(verdicts)} seeds ({seeds})",
        text_table(rows, header),
        "",
        f"recipe gate: {verdict} ({len(passed)} of {len(verdicts)} seeds pass; a recipe passes "
        "when every seed does)",
    ]
    for v in failed:
        label = f"seed {v.seed}" if v.seed is not None else v.adapter
        lines += [f"  {label}: {reason}" for reason in v.failures]
    return "\n".join(lines)
