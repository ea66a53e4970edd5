"""--punie-results is checked at configure time (issue 11, point 10)."""

from __future__ import annotations

import json

import pytest


def test_results_pointing_at_a_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.mkdir("out")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-results=out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-results=out: is a folder*"])


def test_results_cannot_replace_the_baseline(pytester: pytest.Pytester) -> None:
    baseline = pytester.path / "baseline.json"
    text = json.dumps({"cases": [{"nodeid": "t.py::test_a", "score": 1.0}]})
    baseline.write_text(text)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--punie-baseline={baseline}", "--punie-results=./baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-results=*baseline.json is the --punie-baseline file*"])
    assert baseline.read_text() == text


def test_case_timeout_must_be_positive(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-case-timeout=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-case-timeout=0: must be a positive number*"])


def test_a_baseline_from_a_newer_pytest_punie_is_a_usage_error(pytester: pytest.Pytester) -> None:
    from pytest_punie.results.document import FORMAT_VERSION

    baseline = pytester.path / "newer.json"
    baseline.write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "cases": []}))
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--punie-baseline={baseline}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--punie-baseline=*newer.json: *written by a newer pytest-punie*"]
    )
