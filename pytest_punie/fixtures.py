"""The fixtures pytest-punie gives tests: the server, the runner, each case's result, the
workspace, pydantic-ai models and agents, the judge."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from pytest_punie.cases.marker import (
    Case,
)
from pytest_punie.conversation.agent import close_model, make_agent, make_model
from pytest_punie.conversation.runner import CaseRunner, SharedOutcomes
from pytest_punie.options import (
    JUDGE_MIN_AGREEMENT_OPTION,
    Settings,
    TrainingSettings,
)
from pytest_punie.scoring.judge import JudgeContext, judge_context, start_judge
from pytest_punie.scoring.judge_calibration import gate_decision
from pytest_punie.serving.parity import ADAPTER_VARIANT, DerivedModelError, Variant, derive
from pytest_punie.serving.server import ServerError, ServerInfo, log_tail
from pytest_punie.serving.shared import OnDemandServer, ServerSpec
from pytest_punie.stash import (
    CASE_KEY,
    INFRA_KEY,
    JUDGE_KEY,
    LANES_KEY,
    RESPONSE_KEY,
    RUN_DIR_KEY,
    RUNNER_KEY,
    SERVER_KEY,
    SETTINGS_KEY,
    SHARED_KEY,
    TRAINING_KEY,
    cache_path,
    is_worker,
    server_log_path,
)
from pytest_punie.system.processes import process_alive
from pytest_punie.tools.workspace import Workspace, create_workspace

if TYPE_CHECKING:
    from pydantic_ai import Agent

    from pytest_punie.conversation.cache import CacheUse
    from pytest_punie.conversation.response import Response
    from pytest_punie.conversation.runner import CaseRunner, SharedOutcomes
    from pytest_punie.scoring.judge import Judge


@pytest.fixture
def _punie_repeat(request: pytest.FixtureRequest) -> int:
    """Which run of a repeated case this is (``--punie-repeat``)."""
    return int(request.param)


def _fail(exc: Exception) -> None:
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def _punie_variant(request: pytest.FixtureRequest) -> str:
    """Which model the case runs on (``--punie-parity``): adapter, fused, q4..."""
    return str(request.param)


def served_for(config: pytest.Config, case: Case) -> OnDemandServer | None:
    """The server a case ran on: its derived model's (``--punie-parity``), else the run's."""
    name = _lane_name(case)
    if name is not None:
        lane = config.stash.get(LANES_KEY, {}).get(name)
        return lane.served if lane is not None else None
    return config.stash.get(SERVER_KEY, None)


@pytest.fixture(scope="session")
def punie_settings(request: pytest.FixtureRequest) -> Settings:
    """The run's validated ``--punie-*`` evaluation settings."""
    return request.config.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def punie_training(request: pytest.FixtureRequest) -> TrainingSettings:
    """The run's validated training settings (``--punie-train-data``, ``--punie-lora-*``...)."""
    return request.config.stash[TRAINING_KEY]


@pytest.fixture(scope="session")
def _punie_served(request: pytest.FixtureRequest) -> Iterator[OnDemandServer]:
    """The run's server, started at the first request the response cache cannot answer (or
    when a test asks for ``punie_server``); stopped at session end."""

    config = request.config
    try:
        served = OnDemandServer(
            dataclasses.replace(
                config.stash[SETTINGS_KEY].server_spec(), log_path=server_log_path(config)
            ),
            config.stash[RUN_DIR_KEY],
            shared=is_worker(config),
        )
    except ServerError as exc:
        _fail(exc)
    config.stash[SERVER_KEY] = served
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="session")
def punie_server(_punie_served: OnDemandServer) -> ServerInfo:
    """The server under evaluation: started on the model (and adapter) of the options, shared
    between xdist workers, or the one ``--punie-base-url`` names."""

    try:
        return _punie_served.start()
    except ServerError as exc:
        _fail(exc)
        raise  # unreachable: pytest.fail raises


def check_server_alive(
    config: pytest.Config,
    session: pytest.Session | None = None,
    served: OnDemandServer | None = None,
) -> None:
    """Fail the current test with the server log's tail when the server (``served``, default:
    the run's) has died."""

    served = served or config.stash.get(SERVER_KEY, None)
    if served is None or served.alive():
        return
    info = served.info
    if served.several:  # a server that died is out of rotation; here every one has
        died = served.pool.out_of_rotation() or "their processes died"
        if session is not None:
            session.shouldstop = f"pytest-punie stopped the run: every server died ({died})"
        pytest.fail(f"every server of the run died: {died}", pytrace=False)
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
def punie_runner(
    request: pytest.FixtureRequest, _punie_served: OnDemandServer
) -> Iterator[CaseRunner]:
    """Runs the conversations of cases with a prompt, concurrently; the server batches them.

    With the response cache on, the server starts at the first request the cache cannot
    answer: a run answered entirely from the cache never loads the model.

    Under xdist one worker submits every selected case and publishes the outcomes; the others
    read theirs (``SharedOutcomes``), so ``-n`` keeps as many conversations in flight as a run
    without it."""

    config = request.config
    lane = _open_lane(request, _punie_served, config.stash[RUN_DIR_KEY], None)
    if lane.shared is not None:
        config.stash[SHARED_KEY] = lane.shared
    config.stash[RUNNER_KEY] = lane.runner
    try:
        yield lane.runner
    finally:
        del config.stash[RUNNER_KEY]
        lane.close(request.session)


@dataclass
class Lane:
    """One model's conversations: its server, the runner of its cases, and (on an xdist worker
    that does not run them) the outcomes the worker running them publishes."""

    served: OnDemandServer
    runner: CaseRunner
    outcomes: SharedOutcomes | None = None  # under xdist: where the outcomes are published
    leader: bool = True  # this process runs the conversations
    cache: CacheUse | None = None
    # held while cases are submitted late (``_submit_after``); set once the lane is closed
    closing: tuple[threading.Lock, threading.Event] = dataclasses.field(
        default_factory=lambda: (threading.Lock(), threading.Event())
    )

    @property
    def shared(self) -> SharedOutcomes | None:
        """Where this worker reads its outcomes (None: it runs the conversations itself)."""
        return None if self.leader else self.outcomes

    def close(self, session: pytest.Session) -> None:
        if self.outcomes is not None and self.leader and not session.shouldstop:
            self.runner.wait_all()  # the other workers wait for the conversations this one runs
        lock, closed = self.closing
        with lock:  # no case is submitted after this
            closed.set()
        self.runner.close()
        if self.cache is not None:
            self.cache.close()


def _open_lane(
    request: pytest.FixtureRequest,
    served: OnDemandServer,
    run_dir: Path,
    variant: str | None,
    after: CaseRunner | None = None,
) -> Lane:
    """A runner on ``served`` that submits every selected prompt case of ``variant`` (None: the
    adapter's, or the model's without --punie-parity); with ``after``, once that runner's
    conversations have finished."""
    config = request.config
    settings = config.stash[SETTINGS_KEY]
    cache = _response_cache(config, served.cache_identity())
    if cache is None:  # every request goes to the server
        if variant is None:
            request.getfixturevalue("punie_server")
        else:
            served.start()
    pool = served.pool if served.several else None
    runner = CaseRunner(
        lambda: make_model(
            served.info, settings.request_spec(), cache=cache, server=served, pool=pool
        ),
        run_dir / "workspaces",
        # each server keeps --punie-concurrency in flight; the pool spreads them
        concurrency=settings.concurrency * (settings.servers if variant is None else 1),
        case_timeout=settings.case_timeout,
        repeat_seed=(settings.seed or 0) if settings.repeat > 1 and settings.temperature else None,
    )
    shared = SharedOutcomes(run_dir) if is_worker(config) else None
    leader = shared is None or shared.become_leader()
    lane = Lane(served, runner, shared, leader, cache)
    if leader:
        cases = [
            case
            for item in request.session.items
            if (case := _prompt_case(item)) and _lane_name(case) == variant
        ]
        if after is None or shared is not None:  # under xdist every worker waits on the leader
            _submit(runner, cases, shared)
        else:
            threading.Thread(
                target=_submit_after,
                args=(after, lane, cases),
                name=f"punie-parity-{variant}",
                daemon=True,
            ).start()
    return lane


def _submit(runner: CaseRunner, cases: list[Case], shared: SharedOutcomes | None) -> None:
    for case in cases:
        future = runner.submit(case)
        if shared is not None:
            future.add_done_callback(functools.partial(_publish, shared, case.nodeid))


def _submit_after(after: CaseRunner, lane: Lane, cases: list[Case]) -> None:
    """Submit ``cases`` to ``lane`` once ``after``'s conversations have finished: the models
    answer one after the other, each with the whole machine (servers computing at once on a few
    cores slow each other down). A case whose test is reached earlier is submitted by its test;
    nothing is submitted once the lane is closed."""
    after.wait_all()
    lock, closed = lane.closing
    with lock:
        if not closed.is_set():
            _submit(lane.runner, cases, lane.outcomes)


def _lane_name(case: Case) -> str | None:
    """The derived model a case runs on (None: the adapter as served, or the one model)."""
    return None if case.variant in (None, ADAPTER_VARIANT) else case.variant


def _variant_spec(config: pytest.Config, variant: Variant) -> ServerSpec:
    """What serves ``variant``: its server's URL, or its derived model, started here (made
    from the base model and the adapter, or taken from the cache)."""
    from pytest_punie.serving.models import resolve_model

    settings = config.stash[SETTINGS_KEY]
    log = server_log_path(config)
    spec = dataclasses.replace(
        settings.server_spec(),
        adapter=None,
        extra_base_urls=(),
        servers=1,
        port=None,
        log_path=log.with_name(f"{log.stem}-{variant.name}{log.suffix}"),
    )
    if variant.base_url is not None:
        return dataclasses.replace(spec, model=None, base_url=variant.base_url)
    if settings.adapter is None:  # options.py refuses --punie-parity without it
        raise DerivedModelError(f"{variant.name}: no adapter to derive it from")
    try:
        base = resolve_model(settings.model)
    except Exception as exc:  # conversion and download errors carry their own explanation
        raise DerivedModelError(f"could not prepare the base model: {exc}") from exc
    folder = derive(base, settings.adapter, variant)
    return dataclasses.replace(spec, model=str(folder), base_url=None)


@pytest.fixture(scope="session")
def _punie_lanes(request: pytest.FixtureRequest) -> Iterator[dict[str, Lane | Exception]]:
    """The derived models of ``--punie-parity`` (made, or taken from the cache, at the first
    case that needs them), each served by its own server with its own runner; a variant that
    could not be made or reached is its error, which fails its cases."""
    config = request.config
    lanes: dict[str, Lane | Exception] = {}
    previous: CaseRunner | None = config.stash.get(RUNNER_KEY, None)  # the adapter's
    for variant in config.stash[SETTINGS_KEY].parity:
        try:
            run_dir = config.stash[RUN_DIR_KEY] / "parity" / variant.name
            served = OnDemandServer(
                _variant_spec(config, variant), run_dir, shared=is_worker(config)
            )
            lane = _open_lane(request, served, run_dir, variant.name, after=previous)
        except (DerivedModelError, ServerError) as exc:
            lanes[variant.name] = exc
            continue
        lanes[variant.name] = lane
        previous = lane.runner
    config.stash[LANES_KEY] = {k: v for k, v in lanes.items() if isinstance(v, Lane)}
    try:
        yield lanes
    finally:
        for opened in lanes.values():
            if isinstance(opened, Lane):
                opened.close(request.session)
                opened.served.stop()


def _lane(request: pytest.FixtureRequest, case: Case) -> Lane | None:
    """The lane of a derived model's case (None: the adapter's, or the one model's)."""
    name = _lane_name(case)
    if name is None:
        return None
    lane = request.getfixturevalue("_punie_lanes")[name]
    if isinstance(lane, Exception):
        pytest.fail(f"--punie-parity={name}: {lane}", pytrace=False)
    return lane  # type: ignore[no-any-return]


def _response_cache(
    config: pytest.Config, server: ServerInfo, repeat: int | None = None
) -> CacheUse | None:
    """The run's response cache (``--punie-cache``) for what ``server`` serves, or None;
    ``repeat`` fixes the repeat index of the key (else the runner sets it per case)."""
    settings = config.stash[SETTINGS_KEY]
    if settings.cache == "off":
        return None
    from pytest_punie.conversation.cache import CacheUse  # lazy: pydantic-ai

    return CacheUse.open(cache_path(config), server, settings.cache, repeat)


def _publish(shared: SharedOutcomes, nodeid: str, future: Future[Any]) -> None:
    shared.publish(nodeid, future, _infrastructure_error)


def _prompt_case(item: pytest.Item) -> Case | None:
    """The item's case when the plugin runs its conversation (a prompt and ``punie_result``)."""
    case = item.stash.get(CASE_KEY, None)
    if item.get_closest_marker("skip") is not None:  # never run: nothing to ask
        return None
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
    lane = _lane(request, case)
    served = lane.served if lane is not None else None
    runner = lane.runner if lane is not None else punie_runner
    shared = lane.shared if lane is not None else request.config.stash.get(SHARED_KEY, None)
    future = runner.submit(case) if shared is None else None
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
            check_server_alive(request.config, request.session, served)
        except TimeoutError:
            # a dead server must not leave the test waiting
            check_server_alive(request.config, request.session, served)
        except ServerError as exc:  # the server could not start: every case fails so
            pytest.fail(str(exc), pytrace=False)
        except Exception as exc:
            check_server_alive(request.config, request.session, served)
            _stop_on_repeated_infrastructure_errors(request, exc)
            pytest.fail(f"the model request failed: {_causes(exc)}", pytrace=False)
    request.node.stash[RESPONSE_KEY] = outcome.response
    return outcome.response


def _check_leader_alive(shared: SharedOutcomes | None) -> None:
    """Fail the test when the xdist worker running the conversations has gone."""

    if shared is not None and not process_alive(shared.leader_pid()):
        pytest.fail(
            "the xdist worker running the conversations has stopped before this case's answer",
            pytrace=False,
        )


INFRASTRUCTURE_ERRORS_TO_STOP = 3


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
        lane = _lane(request, case)
        runner: CaseRunner = lane.runner if lane else request.getfixturevalue("punie_runner")
        return runner.workspace_for(case.nodeid)

    return create_workspace(case.workspace, tmp_path / "workspace").root


@pytest_asyncio.fixture
async def punie_model(
    request: pytest.FixtureRequest, _punie_served: OnDemandServer
) -> AsyncIterator[Any]:
    """The pydantic-ai model on the server(s), with the run's sampling settings (with
    ``--punie-parity``, on the model the case runs on)."""

    case = request.node.stash.get(CASE_KEY, None)
    lane = _lane(request, case) if case is not None else None
    if lane is None:
        served = _punie_served
        info: ServerInfo = request.getfixturevalue("punie_server")
    else:
        served = lane.served
        try:
            info = await served.start_async()
        except ServerError as exc:
            _fail(exc)
    check_server_alive(request.config, request.session, served)
    cache = _response_cache(request.config, served.cache_identity(), case.repeat if case else 0)
    model = make_model(
        info,
        request.config.stash[SETTINGS_KEY].request_spec(),
        cache=cache,
        pool=served.pool if served.several else None,
    )
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

    case = _case(request)
    return make_agent(punie_model, case.tools, Workspace(punie_workspace), case.system_prompt)


@pytest.fixture(scope="session")
def punie_judge(request: pytest.FixtureRequest) -> Iterator[Judge]:
    """The judge of ``assert_judge``: the options' judge model, or the model under test's base."""

    config = request.config
    judge_settings = config.stash[JUDGE_KEY]
    under_test = None
    if judge_settings.uses_server_under_test:
        under_test = request.getfixturevalue("punie_server")
    caches: list[CacheUse] = []

    def cached(info: ServerInfo, model: Any) -> Any:
        cache = _response_cache(config, info, repeat=0)  # a verdict does not depend on repeats
        if cache is None:
            return model
        caches.append(cache)
        return cache.wrap(model)

    try:
        judge, server = start_judge(
            judge_settings,
            dataclasses.replace(
                config.stash[SETTINGS_KEY].server_spec(), log_path=server_log_path(config)
            ),
            config.stash[RUN_DIR_KEY],
            under_test=under_test,
            shared=is_worker(config),
            wrap=cached,
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
        for cache in caches:
            cache.close()
        if server is not None:
            server.stop()


@pytest.fixture(autouse=True)
def _punie_judge_context(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tell ``assert_judge`` the case's prompt and reference and how to get the judge."""

    case = request.node.stash.get(CASE_KEY, None)
    context = JudgeContext(
        case.prompt if case else None,
        case.reference if case else None,
        lambda: request.getfixturevalue("punie_judge"),
    )
    with judge_context(context):
        yield
