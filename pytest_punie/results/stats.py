"""Uncertainty for eval scores: confidence intervals and paired significance tests.

Pure Python (``math``, ``random``, ``statistics``) so that reports and the ``punie`` command need
nothing beyond the standard library. Every resampling function takes a seed, so the same results
file always gives the same numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from statistics import NormalDist
from typing import Any, Protocol

__all__ = [
    "ALPHA",
    "POWER",
    "CaseSamples",
    "CategoryStats",
    "Sample",
    "bootstrap_mean_interval",
    "case_samples",
    "category_statistics",
    "detectable_change",
    "fewest_significant_cases",
    "mcnemar_p",
    "overall_mean",
    "paired_bootstrap_p",
    "wilson_interval",
]

ALPHA = 0.05  # the significance level a comparison calls "significant"
POWER = 0.8  # the chance of seeing a real change that `detectable_change` plans for
_EPSILON = 1e-12  # resampled means this close to 0 count as 0 (float sums of +x and -x)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is not zero-width at 0/n or n/n,
    which matters for the few cases an eval category has. ``n == 0`` gives ``(0.0, 1.0)``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    z = _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp rounding: the interval always holds the observed proportion and stays in [0, 1].
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _resampled_means(values: Sequence[float], resamples: int, seed: int) -> list[float]:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = random.Random(seed)
    n = len(values)
    return [math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples)]


def bootstrap_mean_interval(
    values: Iterable[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap interval for the mean of ``values`` (one value per case).

    Deterministic for a given seed. One value (or identical values) gives ``(v, v)``: with a
    single case the bootstrap cannot see any spread, which is why `CategoryStats.step` exists.
    """
    values = list(values)
    if not values:
        raise ValueError("bootstrap_mean_interval needs at least one value")
    _check_confidence(confidence)
    mean = _mean(values)
    if min(values) == max(values):
        return mean, mean
    means = sorted(_resampled_means(values, resamples, seed))
    tail = (1 - confidence) / 2
    low, high = _quantile(means, tail), _quantile(means, 1 - tail)
    return min(low, mean), max(high, mean)


def mcnemar_p(b: int, c: int) -> float:
    """The exact two-sided McNemar test on paired pass/fail outcomes.

    ``b`` counts cases that went pass -> fail, ``c`` fail -> pass; cases with the same outcome
    in both runs carry no information. Under no change each discordant case is a fair coin.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must not be negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / (1 << n))


def paired_bootstrap_p(diffs: Iterable[float], resamples: int = 2000, seed: int = 0) -> float:
    """A two-sided bootstrap p-value for "the mean paired difference is not 0".

    Resamples the differences (candidate - baseline per case) and doubles the share of resampled
    means on the far side of 0 (add-one smoothed, so p is never 0). A bootstrap of a handful of
    same-signed differences sees no spread and would report p ~ 0, so the result is floored at
    ``2 / 2**m`` for ``m`` non-zero differences: the smallest p an exact sign-flip test can give.
    Three cases that all improved are therefore never significant (p >= 0.25).
    """
    diffs = list(diffs)
    nonzero = sum(d != 0 for d in diffs)
    if nonzero == 0:
        return 1.0
    means = _resampled_means(diffs, resamples, seed)
    at_or_below = sum(m <= _EPSILON for m in means)
    at_or_above = sum(m >= -_EPSILON for m in means)
    p = 2 * (min(at_or_below, at_or_above) + 1) / (resamples + 1)
    return min(1.0, max(p, 2.0 ** (1 - nonzero)))


def fewest_significant_cases(alpha: float = ALPHA) -> int:
    """The fewest changed cases a paired test here can call significant at ``alpha``: the
    smallest ``m`` with ``2 / 2**m < alpha`` (the exact sign-flip floor of
    `paired_bootstrap_p`, and McNemar's with every change the same way): 6 at 0.05."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    m = 1
    while 2.0 ** (1 - m) >= alpha:
        m += 1
    return m


def detectable_change(
    cases: int,
    mean: float | None = None,
    *,
    difference_variance: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """The smallest change of a category's mean score that a paired comparison of ``cases``
    cases would call significant (two-sided ``alpha``) with probability ``power``; in [0, 1].

    Normal approximation for a paired comparison of per-case scores (repeats averaged first)::

        delta = max((z[1 - alpha/2] + z[power]) * sigma / sqrt(n),  m / n)

    ``sigma**2`` is the variance of the per-case differences (candidate - baseline):

    * with a baseline, ``difference_variance``: the observed variance of the paired
      differences. For pass/fail cases that is ``psi - d**2`` with ``psi = (b + c) / n`` the
      observed discordance (McNemar's cases that flipped either way) and ``d = (c - b) / n``;
    * without one, ``2 * p * (1 - p)`` at the mean ``p``: two runs whose cases agree no more
      than chance (pairing gains nothing, the conservative case), each case's score varying at
      most ``p * (1 - p)`` (the largest variance of a score in [0, 1] with mean ``p``).

    ``m`` is `fewest_significant_cases` (6 at 0.05): with pass/fail cases a change is never
    significant before that many cases moved the same way, each moving the mean by ``1 / n``;
    so a category at 0% or 100% still cannot see a change smaller than ``6 / n``. No case:
    1.0 (nothing can be seen).
    """
    if cases < 1:
        return 1.0
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be between 0 and 1 (exclusive), got {power!r}")
    floor = fewest_significant_cases(alpha) / cases
    if difference_variance is not None:
        variance = max(0.0, difference_variance)
    elif mean is not None:
        p = min(1.0, max(0.0, mean))
        variance = 2 * p * (1 - p)
    else:
        variance = 0.5  # the largest 2p(1 - p): at p = 0.5
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return min(1.0, max(z * math.sqrt(variance / cases), floor))


class Sample(Protocol):
    """One scored run of a case, as the statistics read it (``run.CaseResult`` is one)."""

    @property
    def nodeid(self) -> str: ...

    @property
    def category(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def judge_error(self) -> bool:
        """True when the judge gave no verdict: an error of the judge, not a score of the model."""
        ...


@dataclass(frozen=True)
class CaseSamples:
    """One case's repeated samples (a single sample without repeats).

    ``scores`` and ``outcomes`` hold the samples the model was scored on; a sample whose judge
    gave no verdict is counted in ``judge_errors`` instead (never as a 0 for the model).
    """

    nodeid: str
    category: str
    scores: tuple[float, ...]
    outcomes: tuple[str, ...]
    judge_errors: int = 0

    @property
    def scored(self) -> bool:
        """Whether at least one sample was scored (not every judge failed)."""
        return bool(self.scores)

    @property
    def score(self) -> float:
        """The case's score: the mean over its scored repeats."""
        return _mean(self.scores)

    @property
    def passes(self) -> int:
        return sum(outcome == "passed" for outcome in self.outcomes)

    @property
    def pass_rate(self) -> float:
        return self.passes / len(self.outcomes)

    @property
    def passed(self) -> bool:
        """Whether most repeats passed (a case that passes one time in two does not)."""
        return self.passes * 2 > len(self.outcomes)


def case_samples(cases: Iterable[Sample]) -> dict[str, CaseSamples]:
    """Group a run's case results by nodeid: repeats of a case are its samples; judge errors
    are counted beside the scored samples."""
    grouped: dict[str, tuple[str, list[float], list[str], list[bool]]] = {}
    for case in cases:
        entry = grouped.setdefault(case.nodeid, (case.category, [], [], []))
        if case.judge_error:
            entry[3].append(True)
        else:
            entry[1].append(float(case.score))
            entry[2].append(case.outcome)
    return {
        nodeid: CaseSamples(nodeid, category, tuple(scores), tuple(outcomes), len(errors))
        for nodeid, (category, scores, outcomes, errors) in grouped.items()
    }


def overall_mean(cases: Iterable[Sample]) -> float | None:
    """The overall figure: the mean score over the scored cases (each case's repeats averaged
    first; judge errors left out, as in ``category_statistics``), or None."""
    scores = [s.score for s in case_samples(cases).values() if s.scored]
    return _mean(scores) if scores else None


@dataclass(frozen=True)
class CategoryStats:
    """A category's score and pass rate with confidence intervals, over its scored cases.

    ``step`` is how far one case moves the mean (1 / cases): a 3-case category moves in steps of
    33%, so differences smaller than a step or two are not evidence of anything.
    ``judge_errors`` counts the samples whose judge gave no verdict: beside the mean, not in it.
    ``detectable_change`` is the smallest change of the mean a paired comparison with as many
    cases could call significant (`detectable_change`, no baseline: the conservative case);
    None only for a value built by hand (``from_json`` computes it for an older file).
    """

    name: str
    cases: int
    samples: int
    mean: float
    low: float
    high: float
    pass_rate: float
    pass_low: float
    pass_high: float
    step: float
    judge_errors: int = 0
    detectable_change: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CategoryStats:
        """Read what ``to_json`` wrote (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("detectable_change") is None and "cases" in values and "mean" in values:
            values["detectable_change"] = detectable_change(values["cases"], values["mean"])
        return cls(**values)


def category_statistics(
    cases: Iterable[Sample],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, CategoryStats]:
    """THE rule for a category's figures, read by every report (summary, results file,
    comparison, history): per category (sorted by name), the mean case score with a bootstrap
    interval over cases, and the pass rate with a Wilson interval over all scored samples (every
    repeat of every case). Samples whose judge gave no verdict are left out of both and counted
    in ``judge_errors``; a category in which no sample was scored has no statistics.
    """
    by_category: dict[str, list[CaseSamples]] = {}
    for samples in case_samples(cases).values():
        by_category.setdefault(samples.category, []).append(samples)
    result = {}
    for name, members in sorted(by_category.items()):
        # by nodeid: the interval does not depend on the order results arrived in (xdist)
        scored = sorted((m for m in members if m.scored), key=lambda m: m.nodeid)
        if not scored:
            continue
        scores = [m.score for m in scored]
        low, high = bootstrap_mean_interval(scores, confidence, resamples, seed)
        passes = sum(m.passes for m in scored)
        total = sum(len(m.outcomes) for m in scored)
        pass_low, pass_high = wilson_interval(passes, total, confidence)
        result[name] = CategoryStats(
            name=name,
            cases=len(scored),
            samples=total,
            mean=_mean(scores),
            low=low,
            high=high,
            pass_rate=passes / total,
            pass_low=pass_low,
            pass_high=pass_high,
            step=1 / len(scored),
            judge_errors=sum(m.judge_errors for m in members),
            detectable_change=detectable_change(len(scored), _mean(scores)),
        )
    return result
