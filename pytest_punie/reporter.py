"""The controller's side of a run: gathers case results, gates, and reports them.

Registered by the plugin on the controller only (never on xdist workers): case results arrive
on test reports, so they are the same with or without xdist.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_punie.report import (
    bar_chart_svg,
    category_rows,
    failure_table,
    few_cases_warnings,
    html_table,
    served_lines,
    text_table,
)
from pytest_punie.results import PROPERTY, CaseResult, call_sources_line, overall_score

if TYPE_CHECKING:
    from pytest_punie.compare import Comparison
    from pytest_punie.options import Settings
    from pytest_punie.results import CategoryScore, RunResults

__all__ = ["PunieReporter"]


class PunieReporter:
    """Gathers case results, prints the tables, gates the exit status, writes JSON and history."""

    def __init__(self, config: pytest.Config, settings: Settings, results: RunResults) -> None:
        self.config = config
        self.settings = settings
        self.results = results
        self.gate: list[str] | None = None
        self.comparison: Comparison | None = None
        self.history_note: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = False
        for name, value in report.user_properties:
            if name == PROPERTY:
                found = True
                result = CaseResult.from_json(cast("dict[str, Any]", value))
                self.results.add(result)
                self.config.hook.pytest_punie_case_result(result=result)
        if not found and report.failed:
            self.results.other_failures.append(report.nodeid)

    def categories(self) -> list[CategoryScore]:
        return self.results.categories(self.settings.min_category, self.settings.min_score)

    def rows(self) -> list[list[str]]:
        categories = self.categories()
        rows = category_rows(categories, overall_score(self.results.cases))
        self.config.hook.pytest_punie_summary_rows(rows=rows, categories=categories)
        return rows

    def warnings(self) -> list[str]:
        return few_cases_warnings(self.categories(), self.settings.min_cases)

    def _document(self) -> dict[str, Any]:
        from pytest_punie.results import results_document

        return results_document(
            self.results.metadata, self.results.cases, self.categories(), self.gate
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        settings = self.settings
        self.results.metadata.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        gate: list[str] = []
        if settings.gated:
            gate += self.results.gate(settings.min_category, settings.min_score)
        if settings.baseline is not None and self.results.cases:
            from pytest_punie.compare import compare, load_results, regressions

            self.comparison = compare(load_results(settings.baseline), self._document())
            gate += regressions(self.comparison, settings.max_regression)
        if settings.gated or settings.max_regression:
            self.gate = gate
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                failed = bool(gate)
                session.exitstatus = pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK
        if not self.results.cases:
            return
        document = self._document()
        self.config.hook.pytest_punie_results(document=document)
        if settings.results is not None:
            from pytest_punie.results import write_results

            write_results(settings.results, document)
        if settings.history is not None:
            from pytest_punie.history import record_run

            try:
                run_id = record_run(settings.history, document)
                self.history_note = f"history: run {run_id} appended to {settings.history}"
            except (OSError, ValueError) as exc:  # a broken history must not hide the results
                self.history_note = f"WARNING: history not written to {settings.history}: {exc}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results.cases:
            return
        write = terminalreporter.line
        terminalreporter.section("punie: category scores")
        write(text_table(self.rows(), total_row=True))
        for warning in self.warnings():
            write(warning, yellow=True)
        header, failures = failure_table(self.categories())
        if failures:
            write("")
            write(text_table(failures, header))
        if self.comparison is not None:
            from pytest_punie.compare import format_comparison

            write("")
            write(f"compared with {self.settings.baseline}:")
            write(format_comparison(self.comparison))
        if sources := call_sources_line(self.results.cases):
            write(sources)
        for line in served_lines(self.results.metadata.server):
            write(line, red=line.startswith("WARNING"))
        if self.settings.results is not None:
            write(f"results: {self.settings.results}")
        if self.history_note:
            write(self.history_note, yellow=self.history_note.startswith("WARNING"))
        if self.gate is not None:
            if self.gate:
                write("punie gate FAILED:", red=True, bold=True)
                for message in self.gate:
                    write(f"  {message}", red=True)
            else:
                write("punie gate passed: every threshold was met", green=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        if not self.results.cases:
            return
        categories = self.categories()
        server = self.results.metadata.server
        section = html_table(
            self.rows(), server, self.gate, failure_table(categories), self.warnings()
        )
        prefix.append(section)
        if sources := call_sources_line(self.results.cases):
            prefix.append(f'<p class="punie-call-sources">{html.escape(sources)}</p>')
        baseline = None
        if self.comparison is not None:
            from pytest_punie.compare import comparison_html

            baseline = {c.name: c.baseline_mean for c in self.comparison.categories}
            prefix.append("<h3>Compared with the baseline</h3>" + comparison_html(self.comparison))
        prefix.append(bar_chart_svg(categories, baseline))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, "<th>Category</th>")
        cells.insert(3, '<th class="sortable" data-column-type="score">Score</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        value = next((v for n, v in getattr(report, "user_properties", ()) if n == PROPERTY), None)
        category = value["category"] if value else ""
        score = f"{value['score']:.2f}" if value else ""
        cells.insert(2, f"<td>{category}</td>")
        cells.insert(3, f"<td>{score}</td>")
