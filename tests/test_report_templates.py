"""The report's views as the templates render them: every untrusted string (model answers, case
ids, category names, tool arguments, labels) escaped in every view, the numbers the charts are
drawn from, the templates' environment, and the direction of the imports (data modules import
no renderer). No browser needed."""

from __future__ import annotations

import ast
from pathlib import Path

import markupsafe
import pytest
from jinja2 import UndefinedError

import pytest_punie.results
from pytest_punie.conversation.response import Response
from pytest_punie.results import report
from pytest_punie.results.compare import compare
from pytest_punie.results.history import format_history, hidden_runs, record_run, runs
from pytest_punie.results.render import comparison_html, render_html, to_html
from pytest_punie.results.run import CategoryScore
from pytest_punie.results.table import Cell, Table
from pytest_punie.tools.parsing import ToolCall

from .test_compare import assert_well_formed, case, document
from .test_trust import _chromium

UNTRUSTED = ["<script>alert(1)</script>", "\"'&", "<b a='1\"'>&amp;</b>"]


def assert_escaped(markup: str, value: str) -> None:
    """``value`` is in ``markup`` only as text: escaped, never as markup or a bare quote."""
    assert value not in markup
    assert "<script" not in markup
    assert str(markupsafe.escape(value)) in markup


@pytest.mark.parametrize("value", UNTRUSTED)
def test_summary_escapes_categories_lines_gate_and_warnings(value: str) -> None:
    rows = [[value, "1", "1", "0", "100.0%", "-", "", ""], ["overall", "1", "1", "0", "100.0%"]]
    failures = Table.of(["failures", f"kind {value}"], [[value, "1"]])
    markup = report.summary_html(
        rows, [f"model: {value}"], [f"category {value} failed"], failures, [f"warn {value}"]
    )
    assert_well_formed(markup)
    for shown in (value, f"model: {value}", f"category {value} failed", f"warn {value}"):
        assert_escaped(markup, shown)
    assert markup.startswith("<div id='punie-summary'><style>")
    assert "<h3>Failures by type</h3>" in markup


@pytest.mark.parametrize("value", UNTRUSTED)
def test_bar_chart_escapes_category_names(value: str) -> None:
    scores = [CategoryScore(value, 4, 3, 0, 0.75, 0.5, low=0.25, high=1.0)]
    markup = report.bar_chart_svg(scores, {value: 0.5})
    assert_well_formed(markup)
    assert_escaped(markup, value)
    assert markup.count("class='punie-bar'") == 1


@pytest.mark.parametrize("value", UNTRUSTED)
def test_case_view_escapes_answers_prompts_tool_arguments_and_results(value: str) -> None:
    messages = (
        {"parts": [{"part_kind": "user-prompt", "content": f"prompt {value}"}]},
        {"parts": [{"part_kind": "tool-call", "tool_name": f"tool{value}",
                    "args": {"path": value}, "tool_call_id": "c1"}]},
        {"parts": [{"part_kind": "tool-return", "tool_name": "read_file",
                    "content": f"result {value}", "tool_call_id": "c1"}]},
        {"parts": [{"part_kind": "text", "content": f"answer {value}"}]},
    )  # fmt: skip
    response = Response(
        f"answer {value}", (ToolCall("read_file", {"path": value}, "structured", "c1"),),
        1, 1, 1, 0.1, messages, sandbox_refusals=(f"refused {value}",),
    )  # fmt: skip
    details = {"missing": [value], "found": [], "reason": f"missing {value}"}
    record = {"scorer": "assert_keywords", "score": 0.0, "passed": False, "details": details}
    view = report.case_view(f"t.py::test[{value}]", value, "failed", 0.0, prompt=None,
                            response=response, records=[record])  # fmt: skip
    markup = report.case_view_html(view)
    assert_well_formed(markup)
    for shown in (f"answer {value}", f"prompt {value}", f"result {value}", f"refused {value}",
                  f"missing {value}"):  # fmt: skip
        assert_escaped(markup, shown)
    assert_escaped(markup, report.call_text(f"tool{value}", {"path": value}))  # the turn


@pytest.mark.parametrize("value", UNTRUSTED)
def test_comparison_and_side_by_side_escape_case_ids_categories_and_answers(value: str) -> None:
    nodeid = f"t.py::test_x[{value}]"
    before = document([case(nodeid, value), case("t.py::test_y", value)])
    after = document([case(nodeid, value, passed=False), case("t.py::test_y", value)])
    comparison = compare(before, after)
    tables = comparison_html(comparison)
    assert_well_formed(tables)
    assert_escaped(tables, value)
    answers = [
        {"nodeid": nodeid, "response": {"text": f"before {value}"}},
        {"nodeid": "t.py::test_y", "outcome": "error", "message": f"died {value}"},
    ]
    candidate = [{"nodeid": nodeid, "response": {"text": f"after {value}" * 50}}]
    markup = report.side_by_side_html(comparison, answers, candidate)
    assert_well_formed(markup)
    for shown in (nodeid, value, f"before {value}", f"[error] died {value}", f"after {value}"):
        assert_escaped(markup, shown)
    assert '<tr class="broken">' in markup
    assert "show the rest" in markup  # the long answer is trimmed, the rest one click away


@pytest.mark.parametrize("value", UNTRUSTED)
def test_history_page_escapes_labels_and_categories(tmp_path: Path, value: str) -> None:
    path = tmp_path / "history.db"
    record_run(path, document([case("t.py::test_a", value)]), label=f"label {value}")
    page = report.history_html(path, title=f"title {value}")
    assert_well_formed(page.removeprefix("<!DOCTYPE html>\n"))
    for shown in (value, f"label {value}", f"title {value}"):
        assert_escaped(page, shown)
    assert f"data-category='{markupsafe.escape(value)}'" in page


def test_table_cells_never_render_markup() -> None:
    table = Table.of(["a"], [[Cell("<i>x</i>", html="<i>x</i>", note="<n>")]])
    markup = to_html(table)
    assert "<i>" not in markup
    assert 'title="&lt;n&gt;"' in markup


# -- the numbers the charts are drawn from --------------------------------------------------------


def test_bar_chart_positions() -> None:
    scores = [
        CategoryScore("a", 4, 2, 0, 0.5, 0.6, low=0.25, high=0.75),
        CategoryScore("b", 4, 4, 0, 1.0),
    ]
    chart = report.bar_chart(scores, {"a": 0.25})
    first, second = chart.bars
    assert (first.top, first.width, first.score, first.score_x) == (10, 210.0, "50%", 366.0)
    assert first.interval == (255.0, 465.0)
    assert (first.threshold_x, first.baseline_x) == (402.0, 255.0)
    assert second.top == 42
    assert (second.interval, second.threshold_x, second.baseline_x) == (None, None, None)
    assert [t.label for t in chart.ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert (chart.width, chart.height) == (640, 94)
    assert chart.legend.endswith("dashed orange: baseline")
    assert "baseline" not in report.bar_chart(scores).legend


def test_trend_chart_points_lines_and_void_runs(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    for started, passed in (("09", 2), ("10", 3)):
        cases = [case(f"t.py::test_{i}", "tools", i < passed) for i in range(4)]
        record_run(path, document(cases, started=f"2026-02-11T{started}:00:00+00:00"))
    broken = [case(f"t.py::test_{i}", "tools") for i in range(4)]
    for entry in broken[1:]:
        entry.update(outcome="error", score=0.0, failure="error")
    record_run(path, document(broken, started="2026-02-11T11:00:00+00:00"))
    chart = report.trend_chart("tools", runs(path))
    assert [p.status for p in chart.points] == ["complete", "complete", "void"]
    assert [p.y for p in chart.points[:2]] == [87.0, 49.5]  # 50% and 75% of 150 px, from 12
    assert chart.points[2].cross.startswith("M")
    assert all(p.interval is not None for p in chart.points)
    (line,) = chart.lines  # the void run is not joined
    assert line.points == " ".join(f"{p.x:.1f},{p.y:.1f}" for p in chart.points[:2])
    assert [t.label for t in chart.runs] == ["#1", "#2", "#3"]


def test_history_text_is_the_history_for_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, document([case("t.py::test_a")]), label="first")
    recorded = runs(path)
    assert report.history_text(recorded, path, all_runs=True) == format_history(path, True)
    kept = [tmp_path / "history.db.pending" / "a.json"]
    assert report.history_text(recorded, path, kept).endswith(
        f"1 run(s) kept while the history was locked wait in {kept[0].parent} "
        "(added by the next run)."
    )
    assert report.history_text([], path) == f"no runs recorded in {path}"
    assert hidden_runs(recorded) == []


# -- the templates' environment -------------------------------------------------------------------


def test_templates_escape_and_refuse_missing_names() -> None:
    with pytest.raises(UndefinedError):
        render_html("summary.html")
    markup = render_html(
        "summary.html", categories=Table.of(["c"], [["<x>"]]), failures=None, warnings=[],
        gate=None, lines=["<y>"],
    )  # fmt: skip
    assert "&lt;x&gt;" in markup
    assert "&lt;y&gt;" in markup


def test_one_stylesheet_and_no_external_resources() -> None:
    templates = Path(pytest_punie.results.__file__).parent / "templates"
    names = sorted(p.name for p in templates.iterdir())
    assert [n for n in names if n.endswith(".css")] == ["punie.css"]
    for template in templates.iterdir():
        text = template.read_text(encoding="utf-8")
        if template.suffix != ".css":
            assert "<style" not in text or '{% include "punie.css" %}' in text, template.name
        assert "<script" not in text
        assert "href=" not in text
        assert "src=" not in text


# -- the direction of the imports -----------------------------------------------------------------

RENDERERS = {"pytest_punie.results.render", "pytest_punie.results.report"}


def _module_level_imports(module: str) -> set[str]:
    """The modules ``module`` imports when it is imported (not in functions, not for typing)."""
    source = Path(pytest_punie.results.__file__).parent / f"{module}.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    "module",
    [
        "labels",
        "table",
        "stats",
        "run",
        "thresholds",
        "compare",
        "history",
        "document",
    ],
)
def test_data_modules_import_no_renderer(module: str) -> None:
    assert not _module_level_imports(module) & RENDERERS


# -- Chromium: skipped naming it, failed under CI=true ---------------------------------------------


def test_a_missing_chromium_skips_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        _chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="Chromium"):
        _chromium()


def test_a_missing_chromium_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"Chromium is not installed.*CI=true"):
        _chromium()
