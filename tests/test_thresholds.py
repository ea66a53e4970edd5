"""CATEGORY=VALUE is parsed by one rule for the plugin's options and ``punie compare``."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.cli.compare import parse_max_regression
from pytest_punie.results.run import CaseResult, category_scores, gate_failures
from pytest_punie.results.thresholds import parse_fraction, parse_threshold, parse_thresholds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tool_calling=0.05", ("tool_calling", 0.05)),
        ("tool_calling=5%", ("tool_calling", 0.05)),
        ("*=10%", ("*", 0.1)),
        ("all=10%", ("*", 0.1)),
        (" all = 0.1", ("*", 0.1)),
        ("0.2", ("*", 0.2)),
        ("20%", ("*", 0.2)),
        (" reasoning = 1 ", ("reasoning", 1.0)),
        ("a=b=0.5", ("a=b", 0.5)),
    ],
)
def test_thresholds_parse(text: str, expected: tuple[str, float]) -> None:
    name, value = parse_threshold(text)
    assert name == expected[0]
    assert value == pytest.approx(expected[1])
    assert parse_max_regression(text) == (name, value)  # the CLI agrees with the plugin


@pytest.mark.parametrize("text", ["tools", "tools=1.5", "tools=-1%", "=0.5", "tools=", "x=nan"])
def test_bad_thresholds_are_refused_by_both(text: str) -> None:
    with pytest.raises(ValueError, match=r"fraction|names no category"):
        parse_threshold(text)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_max_regression(text)


def test_later_entries_win() -> None:
    assert parse_thresholds(["a=0.1", "a=20%", "b=0.3"]) == {"a": 0.2, "b": 0.3}


def test_percent_is_accepted_by_the_pytest_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-max-regression=tool_calling=5%")
    # the value parses; what is missing is the baseline to compare with
    result.stderr.fnmatch_lines(["*--punie-max-regression needs --punie-baseline*"])
    assert "fraction" not in result.stderr.str()


def test_a_threshold_for_every_category_gates_each_one() -> None:
    cases = [
        CaseResult(nodeid="a", category="reasoning", outcome="passed", score=1.0),
        CaseResult(nodeid="b", category="tools", outcome="failed", score=0.0),
    ]
    thresholds = parse_thresholds(["50%"])
    categories = category_scores(cases, thresholds)
    assert {c.name: c.threshold for c in categories} == {"reasoning": 0.5, "tools": 0.5}
    assert gate_failures(categories, thresholds) == [
        "category 'tools' scored 0.000 < threshold 0.500"
    ]


def test_a_fraction_is_written_the_same_way_everywhere() -> None:
    assert parse_fraction("5%") == pytest.approx(0.05)
    assert parse_fraction(" 0.05 ") == 0.05
    for bad in ("1.5", "-0.1", "150%", "half", "", "nan", "inf"):
        with pytest.raises(ValueError, match="is not a fraction from 0 to 1"):
            parse_fraction(bad)


@pytest.mark.parametrize("every", ["*", "all"])
def test_every_category_gates_each_one_in_a_run(pytester: pytest.Pytester, every: str) -> None:
    """``all`` means every category for --punie-min-category too (it never is a category that
    "no case ran" in), and the pytest options take percentages."""
    from .test_plugin import LITERAL_CASES

    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(f"--punie-min-category={every}=60%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*category 'words' scored 0.500 < threshold 0.600*"])
    assert "no case ran" not in result.stdout.str()
    assert pytester.runpytest(f"--punie-min-category={every}=50%").ret == pytest.ExitCode.OK
    assert pytester.runpytest("--punie-min-score=50%").ret == pytest.ExitCode.OK


def test_min_retention_is_a_fraction_for_the_option_and_punie_train(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_punie.cli import build_parser

    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-min-retention=150%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-min-retention=150%: '150%' is not a fraction from 0*"])
    assert pytester.runpytest("--punie-min-retention=80%").ret == pytest.ExitCode.OK
    parser = build_parser()
    args = parser.parse_args(["train", "data", "--out", "a", "--min-retention", "80%"])
    assert args.min_retention == pytest.approx(0.8)
    assert parser.parse_args(["train", "data", "--out", "a"]).min_retention == 0.5
    for bad in ("1.5", "-0.2", "lots"):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "data", "--out", "a", "--min-retention", bad])
        assert "is not a fraction from 0 to 1" in capsys.readouterr().err


@given(st.text(max_size=12))
def test_any_fraction_text_is_a_fraction_or_refused(text: str) -> None:
    try:
        value = parse_fraction(text)
    except ValueError as error:
        message = str(error)
        value = None
    if value is None:
        assert "is not a fraction from 0 to 1" in message
    else:
        assert 0.0 <= value <= 1.0


@given(st.sampled_from(["*", "all", " all ", "tools", "a=b"]), st.floats(0.0, 1.0))
def test_every_category_is_one_key_whatever_it_is_called(name: str, value: float) -> None:
    parsed_name, parsed = parse_threshold(f"{name}={value!r}")
    assert parsed == pytest.approx(value)
    assert parsed_name == ("*" if name.strip() in ("*", "all") else name.strip())
