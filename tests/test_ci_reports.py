"""What a CI reviewer reads: the job summary (``GITHUB_STEP_SUMMARY``) and ``--junitxml``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.options import BASELINE_OPTION, MIN_SCORE_OPTION, RESULTS_OPTION
from pytest_punie.results.compare import compare
from pytest_punie.results.junit import JUNIT_CATEGORY, JUNIT_SCORE
from pytest_punie.results.markdown import (
    STEP_SUMMARY_VARIABLE,
    append_step_summary,
    category_table,
    escape_markdown,
    markdown_table,
    run_markdown,
)
from pytest_punie.results.run import PROPERTY
from pytest_punie.results.table import Cell, Table

from .test_compare import case, clear_regression, document
from .test_plugin import LITERAL_CASES

# -- the Markdown ---------------------------------------------------------------------------------


@given(st.text())
def test_an_escaped_string_is_one_literal_line(text: str) -> None:
    escaped = escape_markdown(text)
    assert len(escaped.splitlines()) <= 1
    unescaped_pipes = escaped.replace("\\\\", "").replace("\\|", "")
    assert "|" not in unescaped_pipes
    assert "<" not in escaped
    assert ">" not in escaped


@given(st.lists(st.lists(st.text(), min_size=3, max_size=3), max_size=5))
def test_a_table_keeps_its_shape_whatever_its_cells_hold(rows: list[list[str]]) -> None:
    text = markdown_table(Table.of(["a|b", "c\nd", "e"], rows))
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    for line in lines:
        cells = line.replace("\\\\", "").replace("\\|", "")
        assert cells.count("|") == 4  # three cells


def test_markdown_table() -> None:
    table = Table.of(["category", "score"], [["a|b", Cell("90.0%", 0.9, best=True)]])
    assert markdown_table(table) == ("| category | score |\n| --- | ---: |\n| a\\|b | **90.0%** |")


def test_run_markdown_states_the_table_the_gate_and_the_comparison() -> None:
    before, after = clear_regression()
    text = run_markdown(after.with_gate(["category 'tools' | dropped\n75 points"]),
                        compare(before, after), "base.json")  # fmt: skip
    assert text.startswith("## pytest-punie: Qwen2.5-Coder-1.5B-Instruct-4bit + glaive")
    assert (
        "| category | cases | passed | score | 95% CI | detectable | threshold | result |" in text
    )
    assert "| tools | 20 | 5 | 25.0% |" in text
    assert "**Gate: FAILED**\n\n- category 'tools' \\| dropped 75 points" in text
    assert "### Compared with base.json" in text
    assert (
        "| tools | 100.0% (100%-100%) | 25.0% (5%-45%) | -75.0 pts | 20 |" in text
    )  # intervals on both sides
    assert "±30.0 pts | yes |" in text
    assert "Fixed: 0, broken: 15." in text
    assert "<details><summary>Broken (15)</summary>" in text
    assert "- evals/test\\_tools.py::test\\_0: 100.0% -> 0.0%" in text
    assert "Too few cases to tell:\n\n- code: +0.0 pts is not significant" in text


def test_run_markdown_gate_states() -> None:
    before, _ = clear_regression()
    assert "**Gate:** none" in run_markdown(before.with_gate(None))
    assert "**Gate: passed**" in run_markdown(before.with_gate([]))
    assert "Compared with" not in run_markdown(before)


def test_category_table_marks_an_unscored_category() -> None:
    table = category_table(document([case("t::a"), case("t::b", "code", passed=False)]))
    assert [row[0].text for row in table.rows] == ["code", "tools", "overall"]


def test_append_step_summary_appends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.md"
    target.write_text("# earlier step\n")
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, str(target))
    assert append_step_summary("one\n") == target
    assert append_step_summary("two\n") == target
    assert target.read_text() == "# earlier step\n\none\n\ntwo\n"
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, "")
    assert append_step_summary("three\n") is None


# -- end to end -----------------------------------------------------------------------------------


@pytest.fixture
def step_summary(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = pytester.path / "step-summary.md"
    target.write_text("earlier step\n")
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, str(target))
    return target


def test_a_run_appends_its_summary(pytester: pytest.Pytester, step_summary: Path) -> None:
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.6")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"step summary: appended to {step_summary}"])
    text = step_summary.read_text()
    assert text.startswith("earlier step\n\n## pytest-punie: ")
    assert "| math | 2 | 2 | 100.0% |" in text
    assert "| words | 2 | 1 | 50.0% | " in text
    assert "**Gate: FAILED**" in text
    assert "- category 'words' scored 0.500 &lt; threshold 0.600" in text
    pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.4")
    again = step_summary.read_text()
    assert again.startswith(text)  # appended, never overwritten
    assert "**Gate: passed**" in again[len(text) :]


def test_a_run_with_a_baseline_appends_the_comparison(
    pytester: pytest.Pytester, step_summary: Path
) -> None:
    pytester.makepyfile(LITERAL_CASES)
    pytester.runpytest(f"{RESULTS_OPTION.flag}=base.json")
    result = pytester.runpytest(f"{BASELINE_OPTION.flag}=base.json")
    result.stdout.fnmatch_lines(["detectable change (paired test*math ±100.0 pts with 2 case(s)*"])
    text = step_summary.read_text()
    assert text.count("## pytest-punie: ") == 2
    assert "### Compared with base.json" in text
    assert "| words | 50.0% (0%-100%) | 50.0% (0%-100%) | +0.0 pts | 2 |" in text


def test_no_summary_without_the_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STEP_SUMMARY_VARIABLE, raising=False)
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest()
    result.stdout.no_fnmatch_line("*step summary*")


def test_an_unwritable_summary_is_a_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, str(pytester.path / "no" / "such" / "dir.md"))
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.1")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"WARNING: {STEP_SUMMARY_VARIABLE} not written: *"])


def _testcases(path: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(path).getroot()
    return {
        testcase.attrib["name"]: {
            prop.attrib["name"]: prop.attrib["value"] for prop in testcase.iter("property")
        }
        for testcase in root.iter("testcase")
    }


@pytest.mark.parametrize(
    ("family", "xdist"),
    [("xunit2", []), ("xunit1", []), ("legacy", []), ("xunit2", ["-n", "2"])],
    ids=["xunit2", "xunit1", "legacy", "xunit2-xdist"],
)
def test_junitxml_carries_category_and_score(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    xdist: list[str],
) -> None:
    monkeypatch.delenv(STEP_SUMMARY_VARIABLE, raising=False)
    pytester.makepyfile(LITERAL_CASES)
    run = pytester.runpytest_subprocess if xdist else pytester.runpytest
    result = run("--junitxml=junit.xml", "-o", f"junit_family={family}", *xdist)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.no_fnmatch_line("*incompatible with junit_family*")
    cases = _testcases(pytester.path / "junit.xml")
    assert cases["test_mult"] == {JUNIT_CATEGORY: "math", JUNIT_SCORE: "1"}
    assert cases["test_missing"] == {JUNIT_CATEGORY: "words", JUNIT_SCORE: "0"}
    assert cases["test_paris"][JUNIT_CATEGORY] == "words"
    assert cases["test_not_a_case"] == {}  # not a case: no property
    xml = (pytester.path / "junit.xml").read_text()
    assert f'name="{PROPERTY}"' not in xml  # the whole result (transcript) stays out
    assert "15 * 23 = 345" not in xml


def test_junitxml_with_repeats_and_a_partial_score(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_keywords

        @pytest.mark.punie(category="a|b<c>")
        def test_half():
            assert_keywords("Paris only", ["Paris", "France"], min_fraction=0.5)
        """
    )
    result = pytester.runpytest("--junitxml=junit.xml", "--punie-repeat=2")
    result.assert_outcomes(passed=2)
    cases = _testcases(pytester.path / "junit.xml")
    assert len(cases) == 2
    for properties in cases.values():
        assert properties == {JUNIT_CATEGORY: "a|b<c>", JUNIT_SCORE: "0.5"}
    results = json.loads(json.dumps(cases))  # plain strings, as any XML reader gets them
    assert results == cases
