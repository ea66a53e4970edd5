"""How small a change a suite can see: ``stats.detectable_change`` and where it is shown."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.results.compare import compare
from pytest_punie.results.render import comparison_text, detectable_line
from pytest_punie.results.run import category_scores
from pytest_punie.results.stats import (
    CategoryStats,
    category_statistics,
    detectable_change,
    fewest_significant_cases,
)

from .test_compare import case, document, noise
from .test_stats import entry

Z = 1.959963984540054 + 0.8416212335729143  # z[0.975] + z[0.8]

means = st.floats(0.0, 1.0)
variances = st.floats(0.0, 1.0)
counts = st.integers(0, 5000)


def test_known_values() -> None:
    assert fewest_significant_cases(0.05) == 6  # 2 / 2**5 = 0.0625 >= 0.05 > 2 / 2**6
    assert fewest_significant_cases(0.01) == 8
    assert detectable_change(100, 0.5) == pytest.approx(Z * math.sqrt(0.5 / 100))
    # 47 cases at 70%: about 26 points without a baseline
    assert detectable_change(47, 0.7) == pytest.approx(0.2648, abs=1e-4)
    # a baseline whose cases mostly agree (10% discordant, balanced) sees far less
    assert detectable_change(47, difference_variance=0.1) == pytest.approx(0.1292, abs=1e-4)


def test_at_zero_or_full_score_the_fewest_cases_that_can_be_significant_bound_it() -> None:
    for p in (0.0, 1.0):
        assert detectable_change(47, p) == pytest.approx(6 / 47)
    assert detectable_change(3, 0.5) == 1.0  # three cases can never be significant
    assert detectable_change(0, 0.5) == 1.0


@given(counts, means, st.integers(1, 500))
def test_more_cases_never_make_the_detectable_change_larger(n: int, p: float, more: int) -> None:
    assert detectable_change(n + more, p) <= detectable_change(n, p)


@given(counts, variances, st.integers(1, 500))
def test_more_paired_cases_never_make_it_larger(n: int, variance: float, more: int) -> None:
    larger = detectable_change(n + more, difference_variance=variance)
    assert larger <= detectable_change(n, difference_variance=variance)


@given(counts, st.one_of(st.none(), means), st.one_of(st.none(), variances))
def test_bounded_in_the_unit_interval(n: int, p: float | None, variance: float | None) -> None:
    assert 0.0 <= detectable_change(n, p, difference_variance=variance) <= 1.0


@given(st.integers(1, 5000), means)
def test_the_spread_at_one_half_is_the_largest(n: int, p: float) -> None:
    assert detectable_change(n, p) <= detectable_change(n, 0.5) + 1e-12


def test_bad_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        detectable_change(10, 0.5, alpha=0.0)
    with pytest.raises(ValueError, match="power"):
        detectable_change(10, 0.5, power=1.0)


# -- in the statistics, the results file and the comparison ---------------------------------------


def test_category_statistics_state_it() -> None:
    cases = [entry(f"t::{i}", "tools", float(i % 3 == 0)) for i in range(30)]
    stats = category_statistics(cases, resamples=50)["tools"]
    assert stats.detectable_change == detectable_change(30, stats.mean)


def test_the_results_file_holds_it_and_an_older_one_gets_it() -> None:
    run = document([case(f"t::{i}", passed=i % 2 == 0) for i in range(20)])
    data = json.loads(json.dumps(run.to_json()))
    stated = data["categories"][0]["stats"]["detectable_change"]
    assert stated == pytest.approx(detectable_change(20, 0.5))
    older = {k: v for k, v in data["categories"][0]["stats"].items() if k != "detectable_change"}
    assert CategoryStats.from_json(older).detectable_change == stated


def test_the_comparison_uses_the_paired_differences() -> None:
    comparison = compare(*noise())
    tools = comparison.category("tools")
    diffs = [1.0] * 3 + [-1.0] * 3 + [0.0] * 14  # 3 fixed, 3 broken, 14 the same
    variance = sum(d * d for d in diffs) / 20
    assert tools.detectable_change == pytest.approx(
        detectable_change(20, difference_variance=variance)
    )
    assert tools.too_few_to_tell
    text = comparison_text(comparison)
    assert "too few cases to tell:" in text
    assert "tools: +0.0 pts is not significant, and 20 paired case(s) cannot tell" in text


def test_a_significant_change_is_not_too_few_to_tell() -> None:
    before = document([case(f"t::{i}") for i in range(30)])
    after = document([case(f"t::{i}", passed=i >= 20) for i in range(30)])
    tools = compare(before, after).category("tools")
    assert tools.significant
    assert not tools.too_few_to_tell


def test_the_line_under_the_category_table() -> None:
    cases = [entry(f"t::{i}", "tools", float(i % 2)) for i in range(47)]
    cases += [entry(f"c::{i}", "code", 1.0) for i in range(12)]
    line = detectable_line(category_scores(cases))
    assert line.startswith("detectable change (paired test, p < 0.05, 80% power): ")
    assert "code ±50.0 pts with 12 case(s)" in line
    assert "tools ±28.9 pts with 47 case(s)" in line
    assert detectable_line([]) == ""
