"""Several runs beside a reference (``compare.compare_runs``) and ``punie compare A B C ...``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.cli.compare import column_labels
from pytest_punie.results.compare import MatrixComparison, compare, compare_runs
from pytest_punie.results.document import RunDocument, load_run
from pytest_punie.results.render import (
    matrix_case_table,
    matrix_category_table,
    matrix_page,
    matrix_text,
)

from .test_compare import (
    assert_well_formed,
    case,
    clear_regression,
    document,
    run_cli,
    runs_of_cases,
    write,
)


def three_runs() -> list[RunDocument]:
    """A reference where t0..t3 pass and t4..t7 fail; adapter a fixes t4 and breaks t0, adapter
    b fixes t4, t5 and t6; adapter c drops t7 and adds t8."""
    reference = [case(f"t.py::t{i}", "tools" if i < 4 else "code", passed=i < 4) for i in range(8)]

    def run(fixed: set[int], broken: set[int], adapter: str) -> RunDocument:
        return document(
            [
                case(f"t.py::t{i}", "tools" if i < 4 else "code", passed=(i < 4 or i in fixed))
                if i not in broken
                else case(f"t.py::t{i}", "tools" if i < 4 else "code", passed=False)
                for i in range(8)
            ],
            adapter=adapter,
        )

    c = document([*reference[:7], case("t.py::t8", "code", passed=True)], adapter="adapters/c")
    return [
        document(reference),
        run({4}, {0}, "adapters/a"),
        run({4, 5, 6}, set(), "adapters/b"),
        c,
    ]


def test_the_matrix_has_every_case_in_every_run() -> None:
    matrix = compare_runs(three_runs(), ["base", "a", "b", "c"])
    assert matrix.labels == ("base", "a", "b", "c")
    assert matrix.reference == "base"
    rows = {c.nodeid: c for c in matrix.cases}
    assert set(rows) == {f"t.py::t{i}" for i in range(9)}
    assert rows["t.py::t0"].scores == (1.0, 0.0, 1.0, 1.0)
    assert rows["t.py::t0"].changes == ("broken", "same", "same")
    assert rows["t.py::t4"].passed == (False, True, True, False)
    assert rows["t.py::t4"].changes == ("fixed", "fixed", "same")
    assert rows["t.py::t7"].scores == (0.0, 0.0, 0.0, None)
    assert rows["t.py::t7"].changes == ("same", "same", "removed")
    assert rows["t.py::t8"].scores == (None, None, None, 1.0)
    assert rows["t.py::t8"].changes == (None, None, "added")
    assert [c.nodeid for c in matrix.fixed(1)] == ["t.py::t4"]
    assert [c.nodeid for c in matrix.broken(1)] == ["t.py::t0"]
    assert [c.nodeid for c in matrix.fixed(2)] == ["t.py::t4", "t.py::t5", "t.py::t6"]
    assert matrix.broken(2) == []


def test_the_matrix_reads_each_runs_figures_from_its_document() -> None:
    runs = three_runs()
    matrix = compare_runs(runs)
    assert matrix.labels == tuple(run.label for run in runs)
    for category in matrix.categories:
        for run, figures in zip(runs, category.runs, strict=True):
            stated = run.category(category.name)
            assert stated is not None
            assert stated.stats is not None
            assert (figures.mean, figures.low, figures.high) == (
                stated.mean,
                stated.low,
                stated.high,
            )
            assert figures.detectable_change == stated.stats.detectable_change
    assert matrix.overall == tuple(run.overall for run in runs)


def test_each_later_run_is_compared_with_the_reference_by_the_one_rule() -> None:
    runs = three_runs()
    matrix = compare_runs(runs)
    assert matrix.pairs == tuple(compare(runs[0], run) for run in runs[1:])


def test_two_runs_make_a_matrix_too_and_one_does_not() -> None:
    before, after = clear_regression()
    matrix = compare_runs([before, after])
    assert len(matrix.broken(1)) == 15
    with pytest.raises(ValueError, match="at least two runs"):
        compare_runs([before])
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        compare_runs([before, after], ["x"])


@settings(max_examples=30, deadline=None)
@given(st.lists(runs_of_cases(), min_size=2, max_size=4))
def test_every_case_of_every_run_is_in_the_matrix(runs: list[list[dict[str, Any]]]) -> None:
    documents = [document(cases) for cases in runs]
    matrix = compare_runs(documents)
    seen = {c.nodeid for c in matrix.cases}
    for k, run in enumerate(documents):
        scored = {c.nodeid for c in run.cases if not c.judge_error}
        assert scored <= seen
        for row in matrix.cases:
            assert (row.scores[k] is not None) == (row.nodeid in scored)
    for row in matrix.cases:
        assert len(row.scores) == len(documents)
        assert len(row.changes) == len(documents) - 1


def test_matrix_tables() -> None:
    matrix = compare_runs(three_runs(), ["base", "a", "b", "c"])
    cases = matrix_case_table(matrix)
    assert cases.header == ("case", "category", "base", "a", "b", "c")
    t0 = next(row for row in cases.rows if row[0].text == "t.py::t0")
    assert [cell.text for cell in t0] == [
        "t.py::t0", "tools", "100.0%", "0.0% BROKEN", "100.0%", "100.0%",
    ]  # fmt: skip
    assert cases.row_classes[[r[0].text for r in cases.rows].index("t.py::t0")] == "changed"
    categories = matrix_category_table(matrix)
    assert categories.header == ("category", "base", "a", "b", "c")
    code = next(row for row in categories.rows if row[0].text == "code")
    assert code[1].text.startswith("0.0% (")
    assert "detectable change" in code[1].note
    assert categories.rows[-1][0].text == "overall"


def test_matrix_text() -> None:
    matrix = compare_runs(three_runs(), ["base", "a", "b", "c"])
    text = matrix_text(matrix, ["base: base.json"])
    lines = text.splitlines()
    assert lines[0] == "base: base.json"
    assert "categories (mean, 95% interval):" in lines
    assert "a against base: fixed 1, broken 1" in lines
    assert "b against base: fixed 3, broken 0" in lines
    assert "  fixed    t.py::t4  0.0% -> 100.0%" in lines
    assert "  broken   t.py::t0  100.0% -> 0.0%" in lines


def test_matrix_page_is_self_contained_and_escaped() -> None:
    runs = three_runs()
    hostile = document([case("t.py::test_x[<b>&|]", "a<i>b"), case("t.py::t1")])
    matrix = compare_runs([*runs, hostile], ["base", "a", "b", "c", "<script>"])
    page = matrix_page(matrix, ["<script>: evil.json"])
    tags = assert_well_formed(page.removeprefix("<!DOCTYPE html>\n"))
    assert "script" not in tags
    assert "b" not in tags
    assert "i" not in tags
    assert "&lt;script&gt;" in page
    assert "t.py::test_x[&lt;b&gt;&amp;|]" in page
    assert "<style>" in page
    assert "<link" not in page
    assert tags.count("table") == 2


# -- punie compare with several files ------------------------------------------------------------


@pytest.fixture
def matrix_files(tmp_path: Path) -> list[str]:
    return [
        str(write(tmp_path / f"{name}.json", run))
        for name, run in zip(["base", "a", "b", "c"], three_runs(), strict=True)
    ]


def test_cli_compare_several_files_prints_the_matrix(
    matrix_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("compare", *matrix_files) == 0
    out, err = capsys.readouterr()
    runs = [load_run(path) for path in matrix_files]
    legend = [
        f"{name}: {path} ({run.label})" + (" [reference]" if name == "base" else "")
        for name, path, run in zip(["base", "a", "b", "c"], matrix_files, runs, strict=True)
    ]
    assert out == matrix_text(compare_runs(runs, ["base", "a", "b", "c"]), legend) + "\n"
    assert err == ""


def test_cli_compare_several_files_gates_every_later_run(
    matrix_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("compare", *matrix_files, "--max-regression", "tools=0.1") == 1
    err = capsys.readouterr().err
    assert "regression gate FAILED" in err
    assert "a: category 'tools' dropped 25.0 points" in err
    assert "b: " not in err


def test_cli_compare_html_with_several_files(
    matrix_files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.html"
    assert run_cli("compare", *matrix_files, "--html", str(out)) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "a against base: fixed 1, broken 1" in page
    assert f"html: {out}" in capsys.readouterr().out


def test_cli_compare_html_with_two_files(
    matrix_files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "two.html"
    assert run_cli("compare", *matrix_files[:2], "--html", str(out)) == 0
    page = out.read_text(encoding="utf-8")
    assert_well_formed(page.removeprefix("<!DOCTYPE html>\n"))
    assert "punie-comparison-table" in page
    assert "detectable" in page
    text = capsys.readouterr().out
    assert text.startswith("baseline:  ")  # today's two-file output, then the page's path
    assert text.endswith(f"html: {out}\n")


def test_cli_compare_needs_two_files(
    matrix_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("compare", matrix_files[0]) == 2
    assert "at least two results files" in capsys.readouterr().err


def test_column_labels() -> None:
    assert column_labels(["runs/base.json", "runs/a.json"]) == ["base", "a"]
    assert column_labels(["x/r.json", "y/r.json"]) == ["x/r.json", "y/r.json"]


def test_matrix_is_frozen() -> None:
    matrix = compare_runs(three_runs())
    assert isinstance(matrix, MatrixComparison)
    with pytest.raises(dataclasses.FrozenInstanceError):
        matrix.labels = ()  # type: ignore[misc]
