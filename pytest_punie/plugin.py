"""pytest hooks and fixtures of pytest-punie; each delegates to a plain module."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from pytest_punie import hooks
from pytest_punie.cases.marker import (
    MARKER,
    MARKER_HELP,
    REPEAT_ID,
    REPEATS_KEY,
    Case,
    CaseError,
    case_from_marker,
    case_tool_schemas,
)
from pytest_punie.finetune.leakage import check_items
from pytest_punie.options import (
    TRAIN_DATA_OPTION,
    Settings,
    TrainingSettings,
    add_options,
    judge_settings_from_config,
    settings_from_config,
    training_settings_from_config,
)
from pytest_punie.results.report import CaseView, case_view, case_view_html, failure_text
from pytest_punie.results.run import (
    PROPERTY,
    CaseResult,
    RunResults,
    case_score,
    failure_type,
    run_metadata,
)
from pytest_punie.results.summary import PunieReporter
from pytest_punie.scoring.judge import JudgeSettings
from pytest_punie.scoring.scorers import ScoreFailure, ScoreSheet, collecting_scores
from pytest_punie.serving.server import ServerError, ServerInfo

if TYPE_CHECKING:
    from pydantic_ai import Agent

    from pytest_punie.conversation.cache import CacheUse
    from pytest_punie.conversation.response import Response
    from pytest_punie.conversation.runner import CaseRunner, SharedOutcomes
    from pytest_punie.scoring.judge import Judge
    from pytest_punie.serving.server import MlxServer

SETTINGS_KEY = pytest.StashKey[Settings]()
TRAINING_KEY = pytest.StashKey[TrainingSettings]()
JUDGE_KEY = pytest.StashKey[JudgeSettings]()
RUN_DIR_KEY = pytest.StashKey[Path]()
RESULTS_KEY = pytest.StashKey[RunResults]()
SERVER_KEY = pytest.StashKey[tuple[ServerInfo, "MlxServer | None"]]()
CASE_KEY = pytest.StashKey[Case]()
SHEET_KEY = pytest.StashKey[ScoreSheet]()
RESPONSE_KEY = pytest.StashKey["Response"]()
RUNNER_KEY = pytest.StashKey["CaseRunner"]()
SHARED_KEY = pytest.StashKey["SharedOutcomes"]()
WORKER_RUN_DIR = "punie_run_dir"
REPEAT_FIXTURE = "_punie_repeat"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[SETTINGS_KEY] = settings_from_config(config)
    config.stash[REPEATS_KEY] = config.stash[SETTINGS_KEY].repeat
    config.stash[TRAINING_KEY] = training_settings_from_config(config)
    config.stash[JUDGE_KEY] = judge_settings_from_config(config)
    if _is_worker(config):
        config.stash[RUN_DIR_KEY] = Path(config.workerinput[WORKER_RUN_DIR])  # type: ignore[attr-defined]
        return
    config.stash[RUN_DIR_KEY] = Path(tempfile.mkdtemp(prefix="punie-run-"))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sampling = config.stash[SETTINGS_KEY].sampling()
    config.stash[RESULTS_KEY] = RunResults(run_metadata(started, sampling, config.rootpath))
    cache_mode = config.stash[SETTINGS_KEY].cache
    config.stash[RESULTS_KEY].metadata.cache = {
        "mode": cache_mode,
        "path": str(_cache_path(config)),
    }
    reporter = PunieReporter(config, config.stash[SETTINGS_KEY], config.stash[RESULTS_KEY])
    config.pluginmanager.register(reporter, "punie-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give xdist workers the run folder, where the shared server is recorded."""
    node.workerinput[WORKER_RUN_DIR] = str(node.config.stash[RUN_DIR_KEY])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_worker(config) or RUN_DIR_KEY not in config.stash:
        return
    from pytest_punie.serving.shared import stop_shared

    run_dir = config.stash[RUN_DIR_KEY]
    stop_shared(run_dir)
    stop_shared(run_dir / "judge")
    shutil.rmtree(run_dir, ignore_errors=True)  # the run's temp folder, workspaces included


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``eval_*.jsonl`` case files as pytest collects ``test_*.py``."""
    from pytest_punie.cases.files import EvalFile, is_case_file

    return EvalFile.from_parent(parent, path=file_path) if is_case_file(file_path) else None


@pytest.fixture
def _punie_repeat(request: pytest.FixtureRequest) -> int:
    """Which run of a repeated case this is (``--punie-repeat``)."""
    return int(request.param)


@pytest.hookimpl(trylast=True)  # after the test's own parametrize: ids end in -repeatN
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat = metafunc.config.stash[SETTINGS_KEY].repeat
    if repeat > 1 and metafunc.definition.get_closest_marker(MARKER) is not None:
        metafunc.fixturenames.append(REPEAT_FIXTURE)
        ids = [f"{REPEAT_ID}{k}" for k in range(repeat)]
        metafunc.parametrize(REPEAT_FIXTURE, range(repeat), indirect=True, ids=ids)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_punie.cases.files import CASE_FILE_KEY, CaseLine

    for item in items:
        callspec = getattr(item, "callspec", None)
        repeat = int(callspec.params.get(REPEAT_FIXTURE, 0)) if callspec else 0
        if CASE_FILE_KEY in item.stash:  # a line of an eval_*.jsonl file
            item.stash[CASE_KEY] = item.stash[CASE_FILE_KEY]
            continue
        line = callspec.params.get("punie_case") if callspec else None
        if isinstance(line, CaseLine):  # parametrized with punie_cases(path)
            item.stash[CASE_KEY] = line.case(item.nodeid, repeat)
            continue
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            continue
        try:
            item.stash[CASE_KEY] = case_from_marker(
                item.nodeid, marker.args, marker.kwargs, item.path.parent, repeat
            )
        except CaseError as exc:
            raise pytest.UsageError(str(exc)) from None
    train_data = config.stash[TRAINING_KEY].train_data
    if train_data is not None:  # eval prompts must not be training prompts
        check_items(items, train_data, TRAIN_DATA_OPTION.flag)


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
        from pytest_punie.scoring.judge import JUDGE_ERROR, JudgeError

        if isinstance(error := call.excinfo.value, JudgeError):  # the judge failed, not the model
            scores = (*result.scores, error.record) if error.record else result.scores
            result = dataclasses.replace(
                result, outcome="error", failure=JUDGE_ERROR, scores=scores
            )
    report.user_properties.append((PROPERTY, result.to_json()))
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
    server = item.config.stash.get(SERVER_KEY, None)
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
        server=server[0].to_json() if server else None,
        failure=failure_type(outcome, scores),
        repeat=case.repeat,
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
        from pytest_punie.scoring.judge import verdict_lines

        if judged := verdict_lines(sheet.records):
            extras.append(pytest_html.extras.text(judged, name="judge"))
    report.extras = extras  # type: ignore[attr-defined]  # pytest-html reads this attribute


def _fail(exc: Exception) -> None:
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def punie_settings(request: pytest.FixtureRequest) -> Settings:
    """The run's validated ``--punie-*`` evaluation settings."""
    return request.config.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def punie_training(request: pytest.FixtureRequest) -> TrainingSettings:
    """The run's validated training settings (``--punie-train-data``, ``--punie-lora-*``...)."""
    return request.config.stash[TRAINING_KEY]


@pytest.fixture(scope="session")
def punie_server(request: pytest.FixtureRequest) -> Iterator[ServerInfo]:
    """The server under evaluation: started on the model (and adapter) of the options, shared
    between xdist workers, or the one ``--punie-base-url`` names."""
    from pytest_punie.serving.shared import serve

    config = request.config
    try:
        info, server = serve(
            config.stash[SETTINGS_KEY].server_spec(),
            config.stash[RUN_DIR_KEY],
            shared=_is_worker(config),
        )
    except ServerError as exc:
        _fail(exc)
    config.stash[SERVER_KEY] = (info, server)
    try:
        yield info
    finally:
        if server is not None:
            server.stop()


def check_server_alive(config: pytest.Config, session: pytest.Session | None = None) -> None:
    """Fail the current test with the server log's tail when the server has died."""
    from pytest_punie.serving.server import log_tail
    from pytest_punie.system.processes import process_alive

    info, server = config.stash[SERVER_KEY]
    alive = server.alive() if server is not None else (not info.pid or process_alive(info.pid))
    if not alive:
        if session is not None:  # nothing more can be answered: stop with one message
            session.shouldstop = (
                f"pytest-punie stopped the run: the mlx_lm server died (log: {info.log_path})"
            )
        pytest.fail(
            f"the mlx_lm server died during the run. Last lines of {info.log_path}:\n"
            + log_tail(info.log_path),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def punie_runner(request: pytest.FixtureRequest, punie_server: ServerInfo) -> Iterator[CaseRunner]:
    """Runs the conversations of cases with a prompt, concurrently; the server batches them.

    Under xdist one worker submits every selected case and publishes the outcomes; the others
    read theirs (``SharedOutcomes``), so ``-n`` keeps as many conversations in flight as a run
    without it."""
    from pytest_punie.conversation.agent import make_model
    from pytest_punie.conversation.runner import CaseRunner, SharedOutcomes

    config = request.config
    settings = config.stash[SETTINGS_KEY]
    cache = _response_cache(config, punie_server)
    runner = CaseRunner(
        lambda: make_model(punie_server, settings.request_spec(), cache=cache),
        config.stash[RUN_DIR_KEY] / "workspaces",
        concurrency=settings.concurrency,
        case_timeout=settings.case_timeout,
        repeat_seed=(settings.seed or 0) if settings.repeat > 1 and settings.temperature else None,
    )
    shared = SharedOutcomes(config.stash[RUN_DIR_KEY]) if _is_worker(config) else None
    leader = shared is None or shared.become_leader()
    if shared is not None and not leader:
        config.stash[SHARED_KEY] = shared
    if leader:
        for item in request.session.items:
            if case := _prompt_case(item):
                future = runner.submit(case)
                if shared is not None:
                    future.add_done_callback(functools.partial(_publish, shared, case.nodeid))
    config.stash[RUNNER_KEY] = runner
    try:
        yield runner
    finally:
        del config.stash[RUNNER_KEY]
        if shared is not None and leader and not request.session.shouldstop:
            runner.wait_all()  # the other workers wait for the conversations this one runs
        runner.close()
        if cache is not None:
            cache.close()


def _response_cache(
    config: pytest.Config, server: ServerInfo, repeat: int | None = None
) -> CacheUse | None:
    """The run's response cache (``--punie-cache``) for what ``server`` serves, or None;
    ``repeat`` fixes the repeat index of the key (else the runner sets it per case)."""
    settings = config.stash[SETTINGS_KEY]
    if settings.cache == "off":
        return None
    from pytest_punie.conversation.cache import CacheUse

    return CacheUse.open(_cache_path(config), server, settings.cache, repeat)


def _cache_path(config: pytest.Config) -> Path:
    from pytest_punie.conversation.cache import DEFAULT_CACHE_PATH

    return config.invocation_params.dir / DEFAULT_CACHE_PATH


def _publish(shared: SharedOutcomes, nodeid: str, future: Future[Any]) -> None:
    shared.publish(nodeid, future, _infrastructure_error)


def _prompt_case(item: pytest.Item) -> Case | None:
    """The item's case when the plugin runs its conversation (a prompt and ``punie_result``)."""
    case = item.stash.get(CASE_KEY, None)
    if case and case.prompt and "punie_result" in getattr(item, "fixturenames", ()):
        return case
    return None


def _case(request: pytest.FixtureRequest) -> Case:
    case: Case | None = request.node.stash.get(CASE_KEY, None)
    if case is None:
        pytest.fail(f"{request.node.nodeid} needs @pytest.mark.punie(...)", pytrace=False)
    return case


@pytest.fixture
def punie_result(request: pytest.FixtureRequest, punie_runner: CaseRunner) -> Response:
    """The model's response to the case's ``prompt``, run concurrently with other cases."""
    case = _case(request)
    if not case.prompt:
        pytest.fail(
            f"{case.nodeid}: punie_result needs @pytest.mark.punie(prompt=...)", pytrace=False
        )
    shared = request.config.stash.get(SHARED_KEY, None)
    future = punie_runner.submit(case) if shared is None else None
    while True:
        try:
            if future is not None:
                outcome = future.result(timeout=1.0)
                break
            published = shared.read(case.nodeid) if shared is not None else None
            if published is not None:
                outcome = published
                break
            time.sleep(0.1)
            _check_leader_alive(shared)
            check_server_alive(request.config, request.session)
        except TimeoutError:
            # a dead server must not leave the test waiting
            check_server_alive(request.config, request.session)
        except Exception as exc:
            check_server_alive(request.config, request.session)
            _stop_on_repeated_infrastructure_errors(request, exc)
            pytest.fail(f"the model request failed: {_causes(exc)}", pytrace=False)
    request.node.stash[RESPONSE_KEY] = outcome.response
    return outcome.response


def _check_leader_alive(shared: SharedOutcomes | None) -> None:
    """Fail the test when the xdist worker running the conversations has gone."""
    from pytest_punie.system.processes import process_alive

    if shared is not None and not process_alive(shared.leader_pid()):
        pytest.fail(
            "the xdist worker running the conversations has stopped before this case's answer",
            pytrace=False,
        )


INFRASTRUCTURE_ERRORS_TO_STOP = 3
INFRA_KEY = pytest.StashKey[list[str]]()


def _infrastructure_error(exc: BaseException) -> bool:
    """A timeout, a refused or broken connection: the server, not the model, failed."""
    from pydantic_ai.exceptions import ModelConnectionError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ModelConnectionError, ConnectionError, TimeoutError, ServerError)):
            return True
        if getattr(seen, "infrastructure", False):  # failed so in another xdist worker
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _stop_on_repeated_infrastructure_errors(
    request: pytest.FixtureRequest, exc: BaseException
) -> None:
    """After a few cases failed the same infrastructure way, stop the run with one message
    naming the cause, rather than a wall of errors that says nothing about the model."""
    if not _infrastructure_error(exc):
        return
    seen = request.config.stash.setdefault(INFRA_KEY, [])
    seen.append(_causes(exc).split(" <- ")[-1])
    if len(seen) >= INFRASTRUCTURE_ERRORS_TO_STOP:
        request.session.shouldstop = (
            f"pytest-punie stopped the run: {len(seen)} cases failed to get an answer from the "
            f"model server ({seen[-1]}). The results would mean nothing. Is the server "
            "overloaded or gone? Try a larger --punie-timeout or a lower --punie-concurrency."
        )


def _causes(exc: BaseException) -> str:
    """``exc`` and what caused it, down to the root (the HTTP or socket error)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 6:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


@pytest.fixture
def punie_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The case's workspace folder: after its conversation for a prompt case, else a fresh copy."""
    case = _case(request)
    if case.prompt and "punie_result" in request.fixturenames:
        request.getfixturevalue("punie_result")
        runner: CaseRunner = request.getfixturevalue("punie_runner")
        return runner.workspace_for(case.nodeid)
    from pytest_punie.tools.workspace import create_workspace

    return create_workspace(case.workspace, tmp_path / "workspace").root


@pytest_asyncio.fixture
async def punie_model(
    request: pytest.FixtureRequest, punie_server: ServerInfo
) -> AsyncIterator[Any]:
    """The pydantic-ai model on the server, with the run's sampling settings."""
    from pytest_punie.conversation.agent import close_model, make_model

    check_server_alive(request.config, request.session)
    case = request.node.stash.get(CASE_KEY, None)
    cache = _response_cache(request.config, punie_server, case.repeat if case else 0)
    model = make_model(punie_server, request.config.stash[SETTINGS_KEY].request_spec(), cache=cache)
    try:
        yield model
    finally:
        closing = close_model(model)
        if closing is not None:
            await closing
        if cache is not None:
            cache.close()


@pytest.fixture
def punie_agent(
    request: pytest.FixtureRequest, punie_model: Any, punie_workspace: Path
) -> Agent[None, str]:
    """A pydantic-ai agent on the server with the case's tools bound to its workspace."""
    from pytest_punie.conversation.agent import make_agent
    from pytest_punie.tools.workspace import Workspace

    case = _case(request)
    return make_agent(punie_model, case.tools, Workspace(punie_workspace), case.system_prompt)


@pytest.fixture(scope="session")
def punie_judge(request: pytest.FixtureRequest) -> Iterator[Judge]:
    """The judge of ``assert_judge``: the options' judge model, or the model under test's base."""
    from pytest_punie.options import JUDGE_MIN_AGREEMENT_OPTION
    from pytest_punie.scoring.judge import start_judge
    from pytest_punie.scoring.judge_calibration import gate_decision

    config = request.config
    judge_settings = config.stash[JUDGE_KEY]
    under_test = None
    if judge_settings.uses_server_under_test:
        under_test = request.getfixturevalue("punie_server")
    try:
        judge, server = start_judge(
            judge_settings,
            config.stash[SETTINGS_KEY].server_spec(),
            config.stash[RUN_DIR_KEY],
            under_test=under_test,
            shared=_is_worker(config),
        )
    except ServerError as exc:
        _fail(exc)
    judge.gate = gate_decision(
        judge.identity,
        judge_settings.min_agreement,
        judge_settings.calibration,
        JUDGE_MIN_AGREEMENT_OPTION.flag,
    )
    try:
        yield judge
    finally:
        judge.close()
        if server is not None:
            server.stop()


@pytest.fixture(autouse=True)
def _punie_judge_context(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tell ``assert_judge`` the case's prompt and reference and how to get the judge."""
    from pytest_punie.scoring.judge import JudgeContext, judge_context

    case = request.node.stash.get(CASE_KEY, None)
    context = JudgeContext(
        case.prompt if case else None,
        case.reference if case else None,
        lambda: request.getfixturevalue("punie_judge"),
    )
    with judge_context(context):
        yield
