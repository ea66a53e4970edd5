"""The recipe loop's verdict: each trained adapter against the base model on the eval suite, the
gate it must pass, and the spread of every category over the seeds of a recipe.

The comparison is ``results.compare.compare`` (cases paired by node id, paired bootstrap and
McNemar per category) and the gate is ``results.compare.regressions`` with the README's rule
(:data:`DEFAULT_MAX_DROP`: no category drops more than 10 points; ``--punie-max-regression``
chooses another). A recipe may name a goal category as well, which must rise significantly
(paired bootstrap p < ``results.stats.ALPHA``). The text is made by ``results.render``'s tables.

Over the seeds of a recipe (:func:`recipe_gate`) the rule is the one a recipe is judged by: every
seed keeps every category within its allowed drop, and the goal category rises significantly for
the **median seed** (the seed whose change in the goal is the median; of an even number, the
lower of the two middle ones). One seed's goal figure is then shown, not failed: 47 cases
cannot call every 10-point rise significant, and a recipe is not its luckiest or unluckiest
seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_punie.results.compare import (
    ALPHA,
    CategoryComparison,
    Comparison,
    compare,
    regressions,
)
from pytest_punie.results.document import RunDocument, read_run

__all__ = [
    "DEFAULT_MAX_DROP",
    "CategorySpread",
    "RecipeGate",
    "Verdict",
    "gate_text",
    "judge",
    "recipe_gate",
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
    # one seed of several: its goal is judged over the seeds (the median seed's), not here
    over_seeds: bool = False

    @property
    def goal_row(self) -> CategoryComparison | None:
        """The goal category's row of the comparison (None without a goal or its cases)."""
        try:
            return self.comparison.category(self.goal) if self.goal else None
        except KeyError:
            return None

    @property
    def goal_failure(self) -> str | None:
        """Why the goal is not met (None when it is, or when there is no goal)."""
        if self.goal is None:
            return None
        category = self.goal_row
        if category is None:
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
        """Every reason the adapter fails its gate (empty: it passes); one seed of several
        fails on its drops only (its goal is the recipe's, judged by :func:`recipe_gate`)."""
        goal = None if self.over_seeds else self.goal_failure
        return [*self.regressions, *([goal] if goal else [])]

    def goal_change(self) -> float:
        """The goal category's change (for ordering seeds; -inf without one)."""
        row = self.goal_row
        return row.difference if row is not None and row.difference is not None else -math.inf

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
    over_seeds: bool = False,
) -> Verdict:
    """Compare the adapter's results document with the base's and apply the gate: no category
    drops more than ``max_drop`` allows (default :data:`DEFAULT_MAX_DROP`) and the ``goal``
    category, when given, rises significantly (``over_seeds``: this adapter is one seed of
    several, and the goal is judged over them by :func:`recipe_gate`)."""
    drop = dict(max_drop or DEFAULT_MAX_DROP)
    comparison = compare(_run(base), _run(adapter))
    return Verdict(
        adapter=label,
        comparison=comparison,
        max_drop=drop,
        regressions=tuple(regressions(comparison, drop)),
        goal=goal,
        seed=seed,
        over_seeds=over_seeds,
    )


@dataclass(frozen=True)
class RecipeGate:
    """A recipe's verdict over its seeds: each seed within its drops, and the goal's rise
    significant for the median seed (see the module docstring)."""

    verdicts: tuple[Verdict, ...]

    @property
    def median(self) -> Verdict | None:
        """The median seed by the goal's change (None without a goal or a seed)."""
        if not self.verdicts or self.verdicts[0].goal is None:
            return None
        ordered = sorted(self.verdicts, key=Verdict.goal_change)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def within_drops(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.regressions]

    @property
    def failures(self) -> list[str]:
        """Every reason the recipe fails (empty: it passes): each seed's drops, labelled, then
        the median seed's goal."""
        reasons = [f"{_label(v)}: {reason}" for v in self.verdicts for reason in v.regressions]
        median = self.median
        goal = median.goal_failure if median is not None else None
        if median is not None and goal:
            reasons.append(f"the median seed ({_label(median)}): {goal}")
        return reasons

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and not self.failures

    def text(self) -> str:
        """``recipe gate: PASS (...)`` or FAIL with every reason, one per line."""
        counts = f"{len(self.within_drops)} of {len(self.verdicts)} seeds within the drop limits"
        median = self.median
        if median is not None and median.goal is not None:
            counts += f"; {median.goal} for the median seed, {_label(median)}: "
            counts += _goal_figure(median)
        head = f"recipe gate: {'PASS' if self.passed else 'FAIL'} ({counts})"
        return "\n".join([head, *(f"  {reason}" for reason in self.failures)])


def recipe_gate(verdicts: Sequence[Verdict]) -> RecipeGate:
    """The recipe's verdict over ``verdicts`` (one per seed, all against the same base)."""
    return RecipeGate(tuple(verdicts))


def _label(verdict: Verdict) -> str:
    return f"seed {verdict.seed}" if verdict.seed is not None else verdict.adapter


def _goal_figure(verdict: Verdict) -> str:
    """``+11.1 pts, p 0.018`` for the verdict's goal category ("no case" without one)."""
    category = verdict.goal_row
    if category is None:
        return "no case"
    change = "-" if category.difference is None else f"{category.difference * 100:+.1f} pts"
    return f"{change}, p {category.p_bootstrap:.3f}"


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
    if verdict.goal and verdict.over_seeds:
        rule += f"; {verdict.goal} rises significantly for the median seed, judged over seeds"
    elif verdict.goal:
        rule += f"; {verdict.goal} rises significantly"
    lines = [f"gate ({rule}): {'PASS' if verdict.passed else 'FAIL'}"]
    lines += [f"  {reason}" for reason in verdict.failures]
    if verdict.goal and verdict.over_seeds:
        lines.append(f"  this seed's {verdict.goal}: {_goal_figure(verdict)}")
    return "\n".join(lines)


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
    changes), then the recipe's verdict (:func:`recipe_gate`)."""
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
    seeds = ", ".join(str(v.seed) if v.seed is not None else v.adapter for v in verdicts)
    return "\n".join(
        [f"spread over {len(verdicts)} seeds ({seeds})", text_table(rows, header), "",
         recipe_gate(verdicts).text()]
    )  # fmt: skip
