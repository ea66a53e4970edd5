"""pytest hooks of pytest-punie (its fixtures are in ``fixtures``); each delegates to a plain
module."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_punie import fixtures, hooks
from pytest_punie.cases.files import CaseLine, EvalFile, is_case_file
from pytest_punie.cases.marker import (
    MARKER,
    MARKER_HELP,
    REPEAT_ID,
    Case,
    CaseError,
    case_from_marker,
    case_tool_schemas,
)
from pytest_punie.finetune.leakage import check_items
from pytest_punie.fixtures import served_for
from pytest_punie.options import (
    BASE_URL_OPTION,
    TRAIN_DATA_OPTION,
    add_options,
    judge_settings_from_config,
    settings_from_config,
    training_settings_from_config,
)
from pytest_punie.results.junit import set_junit_properties
from pytest_punie.results.report import CaseView, case_view, case_view_html, failure_text
from pytest_punie.results.run import (
    PROPERTY,
    CaseResult,
    RunResults,
    case_score,
    failure_type,
    run_metadata,
)
from pytest_punie.scoring.framework import ScoreFailure, collecting_scores
from pytest_punie.scoring.judge import JUDGE_ERROR, JudgeError, verdict_lines
from pytest_punie.serving.parity import variant_names
from pytest_punie.serving.pool import served_tallies
from pytest_punie.serving.server import ServerError
from pytest_punie.serving.shared import start_shared_early, stop_shared
from pytest_punie.stash import (
    CASE_FILE_KEY,
    CASE_KEY,
    JUDGE_KEY,
    REPEAT_FIXTURE,
    REPEATS_KEY,
    RESPONSE_KEY,
    RESULTS_KEY,
    RUN_DIR_KEY,
    SERVER_KEY,
    SETTINGS_KEY,
    SHEET_KEY,
    TRAINING_KEY,
    VARIANT_FIXTURE,
    VARIANTS_KEY,
    WORKER_RUN_DIR,
    cache_path,
    is_worker,
    server_log_path,
)
from pytest_punie.summary import PunieReporter
from pytest_punie.system.sandbox import NO_SANDBOX, SandboxUnavailable

if TYPE_CHECKING:
    from pytest_punie.conversation.response import Response


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)
    if not pluginmanager.is_registered(fixtures):
        pluginmanager.register(fixtures, "punie-fixtures")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[SETTINGS_KEY] = settings_from_config(config)
    config.stash[REPEATS_KEY] = config.stash[SETTINGS_KEY].repeat
    config.stash[VARIANTS_KEY] = variant_names(config.stash[SETTINGS_KEY].parity)
    config.stash[TRAINING_KEY] = training_settings_from_config(config)
    config.stash[JUDGE_KEY] = judge_settings_from_config(config)
    from pytest_punie.system import sandbox

    sandbox.set_policy(config.stash[SETTINGS_KEY].sandbox)  # on xdist workers too
    if is_worker(config):
        config.stash[RUN_DIR_KEY] = Path(config.workerinput[WORKER_RUN_DIR])  # type: ignore[attr-defined]
        return
    config.stash[RUN_DIR_KEY] = Path(tempfile.mkdtemp(prefix="punie-run-"))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sampling = config.stash[SETTINGS_KEY].sampling()
    config.stash[RESULTS_KEY] = RunResults(run_metadata(started, sampling, config.rootpath))
    cache_mode = config.stash[SETTINGS_KEY].cache
    config.stash[RESULTS_KEY].metadata.cache = {
        "mode": cache_mode,
        "path": str(cache_path(config)),
    }
    config.stash[RESULTS_KEY].metadata.sandbox = sandbox.describe()  # every report says it
    reporter = PunieReporter(config, config.stash[SETTINGS_KEY], config.stash[RESULTS_KEY])
    config.pluginmanager.register(reporter, "punie-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give xdist workers the run folder, where the shared server is recorded."""
    node.workerinput[WORKER_RUN_DIR] = str(node.config.stash[RUN_DIR_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Several ``--punie-base-url`` servers must serve the same model: checked before any case
    runs, and a server that does not stops the run naming it. Under xdist with the cache off
    (every case asks the model), the shared server starts while the workers do."""
    config = session.config
    settings = config.stash[SETTINGS_KEY]
    spec = settings.server_spec()
    if is_worker(config):
        return
    if len(spec.base_urls) > 1:
        from pytest_punie.serving.pool import connect_several

        try:
            connect_several(spec.base_urls, spec.model, spec.timeout)
        except ServerError as exc:
            raise pytest.UsageError(f"{BASE_URL_OPTION.flag}: {exc}") from None
    if settings.cache == "off" and not spec.base_url and config.pluginmanager.hasplugin("dsession"):
        spec = dataclasses.replace(spec, log_path=server_log_path(config))
        start_shared_early(spec, config.stash[RUN_DIR_KEY])


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """Before the summary and the results are written: how many requests each of several
    servers answered (summed over the processes that asked them)."""
    config = session.config
    results = config.stash.get(RESULTS_KEY, None)
    if results is not None and results.metadata.servers:
        served = config.stash.get(SERVER_KEY, None)
        if served is not None:  # this process's own requests (without xdist)
            served.pool.flush()
        members = results.metadata.servers
        results.metadata.record_servers(served_tallies(config.stash[RUN_DIR_KEY], members))
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    if is_worker(config) or RUN_DIR_KEY not in config.stash:
        return

    run_dir = config.stash[RUN_DIR_KEY]
    stop_shared(run_dir)
    stop_shared(run_dir / "judge")
    for name in config.stash[VARIANTS_KEY]:
        stop_shared(run_dir / "parity" / name)
    shutil.rmtree(run_dir, ignore_errors=True)  # the run's temp folder, workspaces included


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``eval_*.jsonl`` case files as pytest collects ``test_*.py``."""

    return EvalFile.from_parent(parent, path=file_path) if is_case_file(file_path) else None


@pytest.hookimpl(trylast=True)  # after the test's own parametrize: ids end in -repeatN-VARIANT
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not _is_case(metafunc.definition):
        return
    repeat = metafunc.config.stash[SETTINGS_KEY].repeat
    if repeat > 1:
        metafunc.fixturenames.append(REPEAT_FIXTURE)
        ids = [f"{REPEAT_ID}{k}" for k in range(repeat)]
        metafunc.parametrize(REPEAT_FIXTURE, range(repeat), indirect=True, ids=ids)
    variants = metafunc.config.stash[VARIANTS_KEY]
    if variants:  # --punie-parity: each case on the adapter and on each derived model
        metafunc.fixturenames.append(VARIANT_FIXTURE)
        metafunc.parametrize(VARIANT_FIXTURE, variants, indirect=True, ids=variants)


def _is_case(definition: pytest.Function) -> bool:
    """Whether a test function holds eval cases: marked ``punie`` itself, or in the params of
    its ``parametrize`` (``pytest.param(..., marks=pytest.mark.punie(...))``)."""
    if definition.get_closest_marker(MARKER) is not None:
        return True
    return any(
        mark.name == MARKER
        for parametrize in definition.iter_markers("parametrize")
        for values in parametrize.args[1:2]
        for value in values
        for mark in getattr(value, "marks", ())
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:

    for item in items:
        callspec = getattr(item, "callspec", None)
        repeat = int(callspec.params.get(REPEAT_FIXTURE, 0)) if callspec else 0
        variant = callspec.params.get(VARIANT_FIXTURE) if callspec else None
        if CASE_FILE_KEY in item.stash:  # a line of an eval_*.jsonl file
            item.stash[CASE_KEY] = item.stash[CASE_FILE_KEY]
            continue
        line = callspec.params.get("punie_case") if callspec else None
        if isinstance(line, CaseLine):  # parametrized with punie_cases(path)
            item.stash[CASE_KEY] = line.case(item.nodeid, repeat, variant)
            continue
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            continue
        try:
            item.stash[CASE_KEY] = case_from_marker(
                item.nodeid, marker.args, marker.kwargs, item.path.parent, repeat, variant
            )
        except CaseError as exc:
            raise pytest.UsageError(str(exc)) from None
    train_data = config.stash[TRAINING_KEY].train_data
    if train_data is not None:  # eval prompts must not be training prompts
        check_items(items, train_data, TRAIN_DATA_OPTION.flag)
    if variants := config.stash[VARIANTS_KEY]:  # --punie-parity: one model after the other
        order = {name: index for index, name in enumerate(variants)}

        def model_order(item: pytest.Item) -> int:
            case = item.stash.get(CASE_KEY, None)
            return order.get(case.variant or "", 0) if case else 0

        items.sort(key=model_order)  # stable: each model's cases in their collected order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with collecting_scores() as sheet:
        item.stash[SHEET_KEY] = sheet
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    case = item.stash.get(CASE_KEY, None)
    # a case's result is its call, or its setup when that failed (the server could not start)
    counted = report.when == "call" or (report.when == "setup" and report.failed)
    if case is None or report.skipped or not counted:
        return report
    result = _case_result(item, case, report)
    if report.when == "call" and call.excinfo is not None:
        if isinstance(error := call.excinfo.value, JudgeError):  # the judge failed, not the model
            scores = (*result.scores, error.record) if error.record else result.scores
            result = dataclasses.replace(
                result, outcome="error", failure=JUDGE_ERROR, scores=scores
            )
        elif isinstance(error, SandboxUnavailable):  # nothing may run the model's code here
            result = dataclasses.replace(result, outcome="error", failure=NO_SANDBOX, score=0.0)
    report.user_properties.append((PROPERTY, result.to_json()))
    set_junit_properties(item.user_properties, result)  # --junitxml writes the item's
    view = _case_view(item, case, result)
    _add_html_extras(item, report, view)
    if report.failed and report.when == "call" and item.config.get_verbosity() < 2:
        # a scorer's failure reads in five lines; -vv keeps pytest's whole traceback
        excinfo = call.excinfo
        if excinfo is not None and excinfo.errisinstance(ScoreFailure):
            report.longrepr = failure_text(view, str(excinfo.value))
    return report


def _response(item: pytest.Item) -> Response | None:
    """The case's response: from ``punie_result``, else the last one a scorer read."""
    sheet = item.stash.get(SHEET_KEY, None)
    return item.stash.get(RESPONSE_KEY, None) or (sheet.response if sheet else None)


def _case_result(item: pytest.Item, case: Case, report: pytest.TestReport) -> CaseResult:
    outcome = "error" if report.when != "call" else report.outcome
    sheet = item.stash.get(SHEET_KEY, None)
    response = _response(item)
    server = served_for(item.config, case)
    message = None
    if report.failed:
        message = str(getattr(report.longrepr, "reprcrash", None) or report.longreprtext)[-2000:]
    records = sheet.records if sheet else []
    scores = tuple(r.to_json() for r in records)
    return CaseResult(
        nodeid=case.case_id,
        category=case.category,
        outcome=outcome,
        score=case_score(outcome, [r.score for r in records]),
        scores=scores,
        response=response.to_json() if response is not None else None,
        duration_s=round(report.duration, 4),
        message=message,
        server=server.known().to_json() if server else None,
        failure=failure_type(outcome, scores),
        repeat=case.repeat,
        variant=case.variant,
        prompt=case.prompt,
        tools=case_tool_schemas(case),
        expected=dict(case.expected) if case.expected is not None else None,
        source=case.source,
    )


def _case_view(item: pytest.Item, case: Case, result: CaseResult) -> CaseView:
    return case_view(
        result.nodeid, result.category, result.outcome, result.score,
        prompt=case.prompt, response=_response(item), records=result.scores,
        duration_s=result.duration_s,
    )  # fmt: skip


def _add_html_extras(item: pytest.Item, report: pytest.TestReport, view: CaseView) -> None:
    """The case view (conversation, scores, timings) in the report's row."""
    if not item.config.pluginmanager.hasplugin("html"):
        return
    import pytest_html  # only with pytest-html installed and active

    extras = list(getattr(report, "extras", []))
    extras.append(pytest_html.extras.html(case_view_html(view)))
    sheet = item.stash.get(SHEET_KEY, None)
    if sheet and sheet.records:
        if judged := verdict_lines(sheet.records):
            extras.append(pytest_html.extras.text(judged, name="judge"))
    report.extras = extras  # type: ignore[attr-defined]  # pytest-html reads this attribute
