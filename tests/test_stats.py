"""Tests for the confidence intervals and paired tests in ``pytest_punie.results.stats``."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.results.run import CaseResult
from pytest_punie.results.stats import (
    CategoryStats,
    bootstrap_mean_interval,
    case_samples,
    category_statistics,
    mcnemar_p,
    overall_mean,
    paired_bootstrap_p,
    wilson_interval,
)

unit_scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
counts = st.integers(min_value=0, max_value=200)


@st.composite
def proportions(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=0, max_value=500))
    return draw(st.integers(min_value=0, max_value=n)), n


def entry(nodeid: str, category: str, score: float, repeat: int = 0) -> CaseResult:
    outcome = "passed" if score >= 0.5 else "failed"
    return CaseResult(nodeid, category, outcome, score, repeat=repeat)


def no_verdict(nodeid: str, category: str, repeat: int = 0) -> CaseResult:
    """A sample whose judge gave no verdict (the case errored, scored 0 by ``case_score``)."""
    return CaseResult(nodeid, category, "error", 0.0, failure="judge error", repeat=repeat)


# -- Wilson ---------------------------------------------------------------------------------------


def test_wilson_known_value() -> None:
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4)
    assert high == pytest.approx(0.7634, abs=1e-4)


def test_wilson_known_value_matches_the_textbook_formula_at_90_percent() -> None:
    # z = 1.6449 for 90%: centre and half-width by hand for 3/20.
    z = 1.6448536269514722
    p, n = 0.15, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(3, 20, confidence=0.9) == pytest.approx((centre - half, centre + half))


def test_wilson_without_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_is_not_zero_width_at_the_extremes() -> None:
    low, high = wilson_interval(3, 3)
    assert high == 1.0
    assert low < 0.5  # three out of three is weak evidence
    assert wilson_interval(0, 3)[1] > 0.5


@pytest.mark.parametrize(("successes", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(successes, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_wilson_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence)


@given(proportions())
def test_wilson_contains_the_proportion_within_unit_interval(counts_: tuple[int, int]) -> None:
    successes, n = counts_
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= successes / n <= high


@given(proportions(), st.integers(min_value=2, max_value=20))
def test_wilson_narrows_with_more_cases_at_the_same_proportion(
    counts_: tuple[int, int], factor: int
) -> None:
    successes, n = counts_
    low, high = wilson_interval(successes, n)
    more_low, more_high = wilson_interval(successes * factor, n * factor)
    assert more_high - more_low <= high - low + 1e-12


@given(proportions())
def test_wilson_wider_at_higher_confidence(counts_: tuple[int, int]) -> None:
    low90, high90 = wilson_interval(*counts_, confidence=0.9)
    low99, high99 = wilson_interval(*counts_, confidence=0.99)
    assert low99 <= low90 + 1e-12
    assert high90 <= high99 + 1e-12


# -- bootstrap interval ---------------------------------------------------------------------------


def test_bootstrap_single_value_is_a_point() -> None:
    assert bootstrap_mean_interval([0.7]) == (0.7, 0.7)


def test_bootstrap_needs_values() -> None:
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_mean_interval([])


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = [0.013, 0.29, 0.57, 0.61, 0.97, 0.33, 0.08, 0.72]
    first = bootstrap_mean_interval(values, resamples=200, seed=3)
    assert bootstrap_mean_interval(values, resamples=200, seed=3) == first
    assert bootstrap_mean_interval(values, resamples=200, seed=4) != first


def test_bootstrap_interval_narrows_with_more_cases() -> None:
    few = bootstrap_mean_interval([1.0, 0.0] * 3)
    many = bootstrap_mean_interval([1.0, 0.0] * 50)
    assert many[1] - many[0] < few[1] - few[0]
    assert many[0] == pytest.approx(0.4, abs=0.05)
    assert many[1] == pytest.approx(0.6, abs=0.05)


@settings(max_examples=60)
@given(st.lists(unit_scores, min_size=1, max_size=40), st.integers(0, 2**32))
def test_bootstrap_contains_the_mean_within_unit_interval(values: list[float], seed: int) -> None:
    low, high = bootstrap_mean_interval(values, resamples=300, seed=seed)
    mean = math.fsum(values) / len(values)
    assert 0.0 <= low <= mean <= high <= 1.0


# -- McNemar --------------------------------------------------------------------------------------


def test_mcnemar_known_values() -> None:
    assert mcnemar_p(0, 10) == pytest.approx(0.00195, abs=1e-5)
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(1, 0) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(0.0625)  # five flips are never significant
    assert mcnemar_p(2, 8) == pytest.approx(0.109375)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        mcnemar_p(-1, 2)


@given(counts, counts)
def test_mcnemar_is_a_symmetric_probability(b: int, c: int) -> None:
    p = mcnemar_p(b, c)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_p(c, b)


@given(st.integers(0, 100), st.integers(1, 50))
def test_mcnemar_more_lopsided_is_more_significant(b: int, extra: int) -> None:
    assert mcnemar_p(b, b + extra + 1) <= mcnemar_p(b, b + extra)


# -- paired bootstrap -----------------------------------------------------------------------------


def test_paired_bootstrap_no_difference() -> None:
    assert paired_bootstrap_p([0.0] * 10) == 1.0
    assert paired_bootstrap_p([]) == 1.0


def test_paired_bootstrap_clear_change_is_significant() -> None:
    assert paired_bootstrap_p([-1.0] * 15 + [0.0] * 5) < 0.01
    assert paired_bootstrap_p([0.5] * 12 + [-0.1] * 2) < 0.01


def test_paired_bootstrap_noise_is_not_significant() -> None:
    assert paired_bootstrap_p([1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, -1.0]) > 0.5


def test_paired_bootstrap_few_cases_are_never_significant() -> None:
    # Three cases that all improved: a bootstrap alone would say p ~ 0.
    assert paired_bootstrap_p([1.0, 1.0, 1.0]) >= 0.25
    assert paired_bootstrap_p([-1.0]) == 1.0


def test_paired_bootstrap_is_deterministic_for_a_seed() -> None:
    diffs = [1.0, -1.0, 1.0, 0.5, 0.0, 1.0, -0.5, 1.0, 1.0, 0.0]
    assert paired_bootstrap_p(diffs, seed=1) == paired_bootstrap_p(diffs, seed=1)


@settings(max_examples=60)
@given(st.lists(st.floats(-1.0, 1.0), max_size=30), st.integers(0, 2**32))
def test_paired_bootstrap_p_is_a_probability(diffs: list[float], seed: int) -> None:
    p = paired_bootstrap_p(diffs, resamples=200, seed=seed)
    assert 0.0 <= p <= 1.0
    assert paired_bootstrap_p([-d for d in diffs], resamples=200, seed=seed) == pytest.approx(p)


# -- categories -----------------------------------------------------------------------------------


def test_category_intervals_step_and_means() -> None:
    cases = [
        entry("t::a", "tools", 1.0),
        entry("t::b", "tools", 0.0),
        entry("t::c", "tools", 1.0),
        *(entry(f"t::code{i}", "code", 1.0) for i in range(8)),
    ]
    stats = category_statistics(cases)
    assert list(stats) == ["code", "tools"]
    tools = stats["tools"]
    assert isinstance(tools, CategoryStats)
    assert (tools.cases, tools.samples) == (3, 3)
    assert tools.step == pytest.approx(1 / 3)
    assert tools.mean == pytest.approx(2 / 3)
    assert tools.low <= tools.mean <= tools.high
    assert tools.pass_rate == pytest.approx(2 / 3)
    assert (tools.pass_low, tools.pass_high) == wilson_interval(2, 3)
    assert stats["code"].step == 0.125
    assert (stats["code"].low, stats["code"].high) == (1.0, 1.0)
    assert stats["code"].pass_low < 1.0  # 8/8 passes still leaves room below


def test_category_intervals_average_repeats_per_case() -> None:
    cases = [
        entry("t::a", "tools", 1.0, repeat=0),
        entry("t::a", "tools", 0.0, repeat=1),
        entry("t::a", "tools", 1.0, repeat=2),
        entry("t::a", "tools", 1.0, repeat=3),
        entry("t::b", "tools", 0.0, repeat=0),
        entry("t::b", "tools", 0.0, repeat=1),
        entry("t::b", "tools", 0.0, repeat=2),
        entry("t::b", "tools", 1.0, repeat=3),
    ]
    tools = category_statistics(cases)["tools"]
    assert (tools.cases, tools.samples) == (2, 8)
    assert tools.mean == pytest.approx((0.75 + 0.25) / 2)
    assert tools.step == 0.5
    assert tools.pass_rate == pytest.approx(4 / 8)
    assert (tools.pass_low, tools.pass_high) == wilson_interval(4, 8)
    assert CategoryStats.from_json(tools.to_json()) == tools


def test_case_samples_majority_passes() -> None:
    samples = case_samples(
        [entry("t::a", "x", 1.0, 0), entry("t::a", "x", 0.0, 1), entry("t::b", "x", 1.0)]
    )
    assert samples["t::a"].pass_rate == 0.5
    assert not samples["t::a"].passed  # a coin flip does not pass
    assert samples["t::b"].passed


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5), unit_scores),
        min_size=1,
        max_size=30,
    )
)
def test_category_intervals_hold_their_estimates(rows: list[tuple[str, int, float]]) -> None:
    cases = [entry(f"t::{category}{case}", category, score) for category, case, score in rows]
    for stats in category_statistics(cases, resamples=200).values():
        assert 0.0 <= stats.low <= stats.mean <= stats.high <= 1.0
        assert 0.0 <= stats.pass_low <= stats.pass_rate <= stats.pass_high <= 1.0
        assert stats.step == pytest.approx(1 / stats.cases)
        assert stats.samples >= stats.cases


def test_judge_errors_are_counted_beside_the_mean_not_in_it() -> None:
    cases = [
        entry("t::a", "tools", 1.0),
        entry("t::b", "tools", 0.0),
        no_verdict("t::c", "tools"),
        entry("t::d", "tools", 1.0, repeat=0),
        no_verdict("t::d", "tools", repeat=1),
        no_verdict("t::e", "judged"),
    ]
    stats = category_statistics(cases)
    assert list(stats) == ["tools"]  # no sample of "judged" was scored: it has no figures
    tools = stats["tools"]
    assert (tools.cases, tools.samples, tools.judge_errors) == (3, 3, 2)
    assert tools.mean == pytest.approx(2 / 3)
    assert tools.pass_rate == pytest.approx(2 / 3)
    assert overall_mean(cases) == pytest.approx(2 / 3)
    samples = case_samples(cases)
    assert (samples["t::c"].scored, samples["t::c"].judge_errors) == (False, 1)
    assert (samples["t::d"].scores, samples["t::d"].judge_errors) == ((1.0,), 1)


def test_statistics_of_an_older_history_row_read_without_judge_errors() -> None:
    stats = category_statistics([entry("t::a", "tools", 1.0)])["tools"]
    older = {k: v for k, v in stats.to_json().items() if k != "judge_errors"}
    assert CategoryStats.from_json({**older, "new_field": 1}) == stats


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 4), unit_scores, st.booleans()),
        min_size=1,
        max_size=20,
    )
)
def test_a_judge_error_never_moves_a_mean(rows: list[tuple[str, int, float, bool]]) -> None:
    """Whatever the judge errors, the figures are those of the scored samples alone."""
    cases = [
        no_verdict(f"t::{c}{n}", c, repeat=i) if failed else entry(f"t::{c}{n}", c, s, repeat=i)
        for i, (c, n, s, failed) in enumerate(rows)
    ]
    scored = [case for case in cases if not case.judge_error]
    with_errors = category_statistics(cases, resamples=100)
    without = category_statistics(scored, resamples=100)
    assert list(with_errors) == list(without)
    for name, stats in with_errors.items():
        assert stats.judge_errors == sum(c.judge_error and c.category == name for c in cases)
        assert stats == CategoryStats(
            **{**without[name].to_json(), "judge_errors": stats.judge_errors}
        )
    assert overall_mean(cases) == overall_mean(scored)
