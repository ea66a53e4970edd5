"""The controller's side of a run: gathers case results, gates, and reports them.

Registered by the plugin on the controller only (never on xdist workers): case results arrive
on test reports, so they are the same with or without xdist.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_punie.results.compare import compare, regressions
from pytest_punie.results.document import RunDocument, load_run, run_document, write_results
from pytest_punie.results.history import record_run
from pytest_punie.results.markdown import STEP_SUMMARY_VARIABLE, append_step_summary, run_markdown
from pytest_punie.results.parity import Parity, parity
from pytest_punie.results.regression_data import (
    RegressionData,
    TrainingData,
    find_training_data,
    regression_data,
)
from pytest_punie.results.render import (
    category_rows,
    comparison_html,
    comparison_text,
    detectable_line,
    escape,
    failure_table,
    nearest_lines_text,
    parity_heading,
    parity_table,
    parity_text,
    text_table,
    to_html,
    to_text,
)
from pytest_punie.results.report import (
    bar_chart_svg,
    few_cases_warnings,
    served_lines,
    side_by_side_html,
    summary_html,
)
from pytest_punie.results.run import PROPERTY, CaseResult, call_sources_line
from pytest_punie.stash import TRAINING_KEY

if TYPE_CHECKING:
    from pytest_punie.options import Settings
    from pytest_punie.results.compare import Comparison
    from pytest_punie.results.run import RunResults

__all__ = ["PunieReporter"]


class PunieReporter:
    """Gathers case results, prints the tables, gates the exit status, writes JSON and history."""

    def __init__(self, config: pytest.Config, settings: Settings, results: RunResults) -> None:
        self.config = config
        self.settings = settings
        self.results = results
        self._document: RunDocument | None = None
        self.baseline: RunDocument | None = None
        self.comparison: Comparison | None = None
        self.regression: RegressionData | None = None  # the broken cases' nearest training lines
        self.history_note: str | None = None
        self.step_summary_note: str | None = None

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

    @property
    def document(self) -> RunDocument:
        """The run's results document: built once, when the session finishes, and read by the
        table, the gate, the comparison, the results file, the history and the HTML report."""
        if self._document is None:
            settings = self.settings
            self._document = run_document(
                self.results.metadata, self.results.cases, settings.min_category, settings.min_score
            )
        return self._document

    def rows(self) -> list[list[str]]:
        document = self.document
        categories = list(document.categories)
        rows = category_rows(categories, document.overall)
        self.config.hook.pytest_punie_summary_rows(rows=rows, categories=categories)
        return rows

    def cache_line(self) -> str:
        """How many cases the response cache answered (``--punie-cache``)."""
        cache = self.results.metadata.cache
        if cache.get("mode") == "off":
            return "cache: off"
        cached = sum(c.cached for c in self.results.cases)
        return (
            f"cache: {cached} of {len(self.results.cases)} case(s) answered from the cache "
            f"(mode {cache.get('mode')}, {cache.get('path')})"
        )

    def warnings(self) -> list[str]:
        """Few-case warnings, and a void/partial run's error count."""
        found = few_cases_warnings(self.document.categories, self.settings.min_cases)
        errors = sum(c.outcome == "error" for c in self.results.cases)
        if errors:
            total = len(self.results.cases)
            kind = "void" if errors * 2 >= total else "partial"
            found.append(
                f"WARNING: {errors} of {total} case(s) errored (timeouts, a dead server...): "
                f"this run is {kind}; the history marks it and never ranks it"
            )
        return found

    def summary_lines(self) -> list[str]:
        """The lines under the tables, in the terminal and in the HTML report alike: what was
        served (append a line here to show it in both)."""
        sources = call_sources_line(self.results.cases)
        cases = self.results.cases
        all_cached = bool(cases) and all(c.cached for c in cases)
        sandbox = self.results.metadata.sandbox
        return [
            *served_lines(self.results.metadata.server, all_cached),
            *([sources] if sources else []),
            self.cache_line(),
            *([f"sandbox: {sandbox}"] if sandbox else []),
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        settings = self.settings
        self.results.metadata.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        document = self.document
        gate: list[str] = []
        if settings.gated:
            gate += self.results.gate(
                document.categories, settings.min_category, settings.min_score
            )
        if settings.baseline is not None and self.results.cases:
            self.baseline = load_run(settings.baseline)
            self.comparison = compare(self.baseline, document)
            gate += regressions(self.comparison, settings.max_regression)
            self.regression = self.find_regression_data()
        if settings.parity and self.results.cases:
            self._document = document = document.with_parity(self.parity(document))
            gate += document.parity.failures if document.parity else []
        if settings.gated or settings.max_regression or settings.parity:
            self._document = document = document.with_gate(gate)
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                failed = bool(gate)
                session.exitstatus = pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK
        if not self.results.cases:
            return
        data = document.to_json()  # the results file: a hook may add fields to it
        self.config.hook.pytest_punie_results(document=data)
        if settings.results is not None:
            write_results(settings.results, data)
        if settings.history is not None:
            try:
                run_id = record_run(settings.history, document)
                self.history_note = f"history: run {run_id} appended to {settings.history}"
            except (OSError, ValueError, sqlite3.Error) as exc:  # must not hide the results
                self.history_note = f"WARNING: history not written to {settings.history}: {exc}"
        self.write_step_summary()

    def parity(self, document: RunDocument) -> Parity:
        """The derived models' cases against the adapter's (``--punie-parity``), gated with
        ``--punie-max-regression`` or, without it, the fine-tuning gate's default drop."""
        from pytest_punie.finetune.verdict import DEFAULT_MAX_DROP

        given = self.settings.max_regression
        return parity(
            document,
            self.results.derived,
            given or DEFAULT_MAX_DROP,
            default_max_drop=not given,
            order=[variant.name for variant in self.settings.parity],
        )

    def find_regression_data(self) -> RegressionData | None:
        """The training lines nearest each broken case, when the adapter's training data is
        known (``results.regression_data``); a failure to read it is a note, never the run's
        end."""
        if self.comparison is None or self.baseline is None or not self.comparison.broken:
            return None
        training = self.config.stash.get(TRAINING_KEY, None)
        server = self.results.metadata.server or {}
        adapter = self.settings.adapter or (
            Path(server["adapter"]) if server.get("adapter") else None
        )
        data = find_training_data(
            training.train_data if training is not None else None,
            adapter,
            self.config.invocation_params.dir,
        )
        if data is None:
            return None
        try:
            return regression_data(self.comparison, self.document.cases, self.baseline.cases, data)
        except (OSError, UnicodeDecodeError) as exc:
            unread = TrainingData(None, f"{data.path} cannot be read: {exc}")
            return regression_data(self.comparison, (), (), unread)

    def write_step_summary(self) -> None:
        """Append the run's Markdown to the file ``GITHUB_STEP_SUMMARY`` names (GitHub Actions
        shows it on the job's page); a failure to write is a warning, never the run's end."""
        baseline = Path(self.settings.baseline).name if self.settings.baseline else None
        markdown = run_markdown(self.document, self.comparison, baseline)
        try:
            written = append_step_summary(markdown)
        except OSError as exc:
            self.step_summary_note = f"WARNING: {STEP_SUMMARY_VARIABLE} not written: {exc}"
            return
        if written is not None:
            self.step_summary_note = f"step summary: appended to {written}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results.cases:
            return
        write = terminalreporter.line
        terminalreporter.section("punie: category scores")
        write(text_table(self.rows(), total_row=True))
        if detectable := detectable_line(self.document.categories):
            write(detectable)
        for warning in self.warnings():
            write(warning, yellow=True)
        failures = failure_table(self.document.categories)
        if failures.rows:
            write("")
            write(to_text(failures))
        if self.comparison is not None:
            write("")
            write(f"compared with {self.settings.baseline}:")
            write(comparison_text(self.comparison))
            nearest = nearest_lines_text(self.regression) if self.regression else []
            for line in ["", *nearest] if nearest else []:
                write(line)
        if self.document.parity is not None:
            write("")
            for line in parity_text(self.document.parity).splitlines():
                write(line, red=line.startswith("WARNING"))
            write("")
        for line in self.summary_lines():
            write(line, red=line.startswith("WARNING"))
        if self.settings.results is not None:
            write(f"results: {self.settings.results}")
        if self.history_note:
            write(self.history_note, yellow=self.history_note.startswith("WARNING"))
        if self.step_summary_note:
            write(self.step_summary_note, yellow=self.step_summary_note.startswith("WARNING"))
        for note in self.results.judge_notes():
            write(note, yellow=True)
        gate = self.document.gate
        if gate is not None:
            if gate:
                write("punie gate FAILED:", red=True, bold=True)
                for message in gate:
                    write(f"  {message}", red=True)
            else:
                write("punie gate passed: every threshold was met", green=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        if not self.results.cases:
            return
        document = self.document
        categories = document.categories
        detectable = detectable_line(categories)
        section = summary_html(
            self.rows(), [*([detectable] if detectable else []), *self.summary_lines()],
            document.gate, failure_table(categories), self.warnings(),
        )  # fmt: skip
        prefix.append(section)
        baseline = None
        if self.comparison is not None:
            baseline = {c.name: c.baseline_mean for c in self.comparison.categories}
            prefix.append("<h3>Compared with the baseline</h3>" + comparison_html(self.comparison))
        if document.parity is not None:
            heading = escape(parity_heading(document.parity))
            table = to_html(parity_table(document.parity), "punie-parity")
            prefix.append(f"<h3>Deployed is tested</h3><p>{heading}</p>{table}")
        prefix.append(bar_chart_svg(categories, baseline))
        if self.comparison is not None and self.baseline is not None:
            before = [case.to_json() for case in self.baseline.cases]
            after = [case.to_json() for case in document.cases]
            prefix.append(side_by_side_html(self.comparison, before, after, self.regression))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, "<th>Category</th>")
        cells.insert(3, '<th class="sortable" data-column-type="score">Score</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        value = next((v for n, v in getattr(report, "user_properties", ()) if n == PROPERTY), None)
        category = escape(value["category"]) if value else ""  # a user's string: escaped
        score = f"{value['score']:.2f}" if value else ""
        cells.insert(2, f"<td>{category}</td>")
        cells.insert(3, f"<td>{score}</td>")
