"""Numbers to trust and compare: repeats with intervals, baselines, history, the HTML page."""

from __future__ import annotations

import json

import pytest

from pytest_punie.results.history import runs

CASES = """
import pytest
from pytest_punie import assert_keywords

@pytest.mark.punie(category="words")
@pytest.mark.parametrize("word", ["alpha", "beta", "gamma", "delta"])
def test_word(word):
    assert_keywords("alpha beta gamma {answer}", [word])
"""


def _cases(pytester, answer="delta"):
    pytester.makepyfile(test_words=CASES.replace("{answer}", answer))


def test_repeats_count_each_case_once_with_an_interval(pytester):
    _cases(pytester)
    result = pytester.runpytest("--punie-repeat=3", "--punie-results=r.json")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["words*4x3*12*0*100.0%*100%-100%*"])
    document = json.loads((pytester.path / "r.json").read_text())
    ids = {c["nodeid"] for c in document["cases"]}
    assert ids == {f"test_words.py::test_word[{w}]" for w in ("alpha", "beta", "gamma", "delta")}
    assert sorted(c["repeat"] for c in document["cases"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert document["categories"][0]["cases"] == 4
    assert document["categories"][0]["samples"] == 12


def test_small_categories_are_flagged(pytester):
    _cases(pytester, answer="omega")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*category 'words' has 4 case(s), fewer than 10: its score moves in steps of 25%"]
    )
    result.stdout.fnmatch_lines(["words*4*3*0*75.0%*25%-100%*"])
    assert "fewer than" not in pytester.runpytest("--punie-min-cases=4").stdout.str()


def test_baseline_comparison_and_regression_gate(pytester):
    _cases(pytester)
    pytester.runpytest("--punie-results=before.json").assert_outcomes(passed=4)
    _cases(pytester, answer="omega")
    result = pytester.runpytest("--punie-baseline=before.json", "--punie-max-regression=words=0.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*compared with*before.json*", "*words*100.0%*75.0%*"])
    result.stdout.fnmatch_lines(["*punie gate FAILED*", "*words*"])
    assert "test_word[delta]" in result.stdout.str()  # the broken case is named
    lenient = pytester.runpytest("--punie-baseline=before.json", "--punie-max-regression=words=0.3")
    assert lenient.ret == pytest.ExitCode.OK


def test_baseline_option_errors(pytester):
    _cases(pytester)
    result = pytester.runpytest("--punie-max-regression=words=0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-max-regression needs --punie-baseline*"])
    result = pytester.runpytest("--punie-baseline=missing.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-baseline=missing.json*"])


def test_every_run_is_appended_to_the_history(pytester):
    _cases(pytester)
    pytester.runpytest()
    _cases(pytester, answer="omega")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["history: run 2 appended to *history.db"])
    recorded = runs(pytester.path / ".punie" / "history.db")
    assert [r.overall for r in recorded] == [1.0, 0.75]


def test_history_can_be_turned_off(pytester):
    _cases(pytester)
    pytester.runpytest("--punie-history=none")
    assert not (pytester.path / ".punie").exists()


def test_html_report_has_the_chart_and_the_comparison(pytester):
    _cases(pytester)
    pytester.runpytest("--punie-results=before.json")
    _cases(pytester, answer="omega")
    pytester.runpytest("--html=report.html", "--punie-baseline=before.json")
    page = (pytester.path / "report.html").read_text()
    assert "id='punie-chart'" in page
    assert page.count("class='punie-bar'") == 1
    assert "class='punie-baseline'" in page
    assert "Compared with the baseline" in page


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str:
    """Headless Chromium's path. Without it the test skips, naming Chromium; under ``CI=true``
    it fails instead, so a CI machine never passes without having rendered the pages."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "Chromium is not installed, and CI=true requires it for the rendered checks "
                "(.ci/run installs Debian's chromium)"
            )
        pytest.skip(
            "Chromium is not installed: the rendered checks need it (apt-get install chromium)"
        )
    return found


def test_html_report_renders_in_chromium(pytester, tmp_path):
    import subprocess

    chromium = _chromium()
    _cases(pytester)
    pytester.runpytest("--punie-results=before.json")
    _cases(pytester, answer="omega")
    pytester.runpytest(
        "--html=report.html", "--punie-baseline=before.json", "--punie-min-score=0.5"
    )
    page = (pytester.path / "report.html").as_uri()
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*command, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    # the summary table, the chart and pytest-html's own rows (built by its JavaScript)
    assert '<table id="punie-categories" class="punie-table">' in dom
    assert dom.count('class="punie-bar"') == 1
    assert '<td class="num">75.0%</td>' in dom
    assert dom.count("<td>words</td>") >= 4  # the category column of each result row
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*command, f"--screenshot={screenshot}", "--window-size=1200,1400", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 10_000
