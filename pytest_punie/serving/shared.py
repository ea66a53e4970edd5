"""The server a run uses: started here, shared between xdist workers, or already running; or
several of them serving one model (``--punie-start-servers``, several ``--punie-base-url``),
whose requests ``serving.pool`` spreads.

Without xdist, the session fixture starts the server(s) and stops them at session end. Under
xdist, the first worker that needs them starts them under a file lock and records them in the
run's state folder; the others reuse them; the controller stops them when the whole run ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_punie.serving.adapter_check import check_adapter_changes_model
from pytest_punie.serving.chat_template import TemplateChoice, choose_template
from pytest_punie.serving.models import content_hash, resolve_model
from pytest_punie.serving.pool import ServerPool, connect_several, member_json, tally_file
from pytest_punie.serving.server import (
    SERVED_MODEL_NAME,
    MlxServer,
    ServerError,
    ServerInfo,
    connect,
    probe_completion,
)
from pytest_punie.system.files import atomic_write_text
from pytest_punie.system.processes import process_alive, stop_process_group
from pytest_punie.timeouts import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "OnDemandServer",
    "ServerSpec",
    "planned",
    "serve",
    "serve_several",
    "start_shared_early",
    "stop_shared",
]


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how: the model (path, GGUF or repo id; None: the default model), the
    adapter, the chat template choice, the port; or an already running server's URL."""

    model: str | None = None
    adapter: Path | None = None
    base_url: str | None = None
    port: int | None = None  # with several servers started, the first's (the next ones +1...)
    chat_template: str = "auto"
    startup_timeout: float = 600.0
    timeout: float = DEFAULT_TIMEOUT_S
    log_path: Path | None = None  # where the server's output goes (default: the run folder)
    extra_base_urls: tuple[str, ...] = ()  # more running servers of the same model
    servers: int = 1  # how many mlx_lm servers to start, each on its own port with its own log

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every running server to use (none: start them)."""
        return (self.base_url, *self.extra_base_urls) if self.base_url else ()

    @property
    def count(self) -> int:
        """How many servers the run uses."""
        return len(self.base_urls) or self.servers


STATE_FILE = "server.json"
STARTING_FILE = "server.starting.json"
"""The pid of a shared server still starting, so the controller can stop it if its worker dies."""
FAILED_FILE = "server.failed.json"
"""Why the shared server could not start: the other workers fail at once with the same words."""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data))


def _prepare(settings: ServerSpec) -> tuple[str, TemplateChoice]:
    """The model to serve (converted or downloaded if need be) and its chat template."""
    try:
        model = resolve_model(settings.model)
    except Exception as exc:  # conversion and download errors carry their own explanation
        raise ServerError(f"could not prepare the model: {exc}") from exc
    return model, choose_template(settings.chat_template, model)


def _template_facts(template: TemplateChoice) -> dict[str, Any]:
    """What the served info says of the chat template (the cache key reads ``chat_template``)."""
    return {
        "chat_template": template.name,
        "tools_visible": template.tools_visible,
        "chat_template_reason": template.reason,
    }


def _log_path(settings: ServerSpec, run_dir: Path, index: int) -> Path:
    """The log of the ``index``-th server started (``-2``, ``-3``... after the first's name)."""
    path = settings.log_path or run_dir / "mlx-server.log"
    return path if index == 0 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _start(
    settings: ServerSpec,
    run_dir: Path,
    *,
    die_with_parent: bool,
    on_spawn: Callable[[int], None] | None = None,
    prepared: tuple[str, TemplateChoice] | None = None,
    index: int = 0,
) -> tuple[ServerInfo, MlxServer]:
    """Prepare the model and its chat template, start the server, describe what it serves
    (the ``index``-th of several: its own port and log; the adapter is checked on the first)."""
    model, template = prepared or _prepare(settings)
    server = MlxServer(
        model,
        str(settings.adapter) if settings.adapter else None,
        log_path=_log_path(settings, run_dir, index),
        port=settings.port + index if settings.port else None,
        chat_template=template.template,
        startup_timeout=settings.startup_timeout,
        die_with_parent=die_with_parent,
        on_spawn=on_spawn,
        beside=settings.servers,
    )
    server.start()
    extra = _template_facts(template)
    if server.adapter and index == 0:
        try:
            effect = check_adapter_changes_model(server.base_url, model, server.adapter)
        except BaseException:
            server.stop()
            raise
        extra["adapter_effect"] = effect if effect != float("inf") else "greedy text differs"
    info = server.info(content_hash(server.model), content_hash(server.adapter))
    return dataclasses.replace(info, extra=extra), server


def _start_several(
    settings: ServerSpec,
    run_dir: Path,
    *,
    die_with_parent: bool,
    on_spawn: Callable[[int], None] | None = None,
) -> tuple[ServerInfo, list[MlxServer]]:
    """Start ``settings.servers`` servers of the same model one after the other (a child asked
    to die with its parent dies with the thread that started it: they share this one), and
    describe them as one: the first's URL, and every member in ``servers``."""
    prepared = _prepare(settings)
    started: list[tuple[ServerInfo, MlxServer]] = []
    try:
        for index in range(settings.servers):
            started.append(
                _start(
                    settings,
                    run_dir,
                    die_with_parent=die_with_parent,
                    on_spawn=on_spawn,
                    prepared=prepared,
                    index=index,
                )
            )
    except BaseException:
        for _, process in started:
            process.stop()
        raise
    info = dataclasses.replace(started[0][0], servers=[member_json(i) for i, _ in started])
    return info, [process for _, process in started]


def planned(settings: ServerSpec) -> ServerInfo:
    """What a server started from ``settings`` will serve, known before it starts: the model,
    the adapter, their hashes and the chat template (all a cache key needs), no URL yet."""
    model, template = _prepare(settings)
    adapter = str(settings.adapter) if settings.adapter else None
    return ServerInfo(
        base_url="",
        model_name=SERVED_MODEL_NAME,
        model=model,
        adapter=adapter,
        model_hash=content_hash(model),
        adapter_hash=content_hash(adapter),
        extra=_template_facts(template),
    )


class OnDemandServer:
    """The run's server(s), started the first time something needs them (thread-safe), so a run
    answered entirely from the response cache never loads the model.

    ``info`` is the started server's description, or until then ``planned(settings)``; servers
    reached with URLs are connected at once (there is nothing to start). With several, ``pool``
    is the process's view of them (``serving.pool``).
    """

    def __init__(self, settings: ServerSpec, run_dir: Path, *, shared: bool = False) -> None:
        self._settings = settings
        self._run_dir = run_dir
        self._shared = shared
        self._lock = threading.Lock()
        # A child asked to die with its parent dies with the *thread* that started it: a start
        # from an event loop runs in this one thread, which lives until the server is stopped.
        self._starter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="punie-server")
        self._failure: ServerError | None = None
        self.processes: list[MlxServer] = []
        self.started = False
        self.pool = ServerPool(tally_path=tally_file(run_dir))
        if len(settings.base_urls) > 1:
            self.info = connect_several(settings.base_urls, settings.model, settings.timeout)
            self.started = True
        elif settings.base_url:
            self.info = connect(settings.base_url, settings.model, timeout=settings.timeout)
            self.started = True
        else:
            self.info = planned(settings)
        self.pool.set_members(self.info.servers)

    @property
    def several(self) -> bool:
        """True when the run spreads its requests over several servers."""
        return self._settings.count > 1

    @property
    def process(self) -> MlxServer | None:
        """The (first) server process started here, if any."""
        return self.processes[0] if self.processes else None

    def start(self) -> ServerInfo:
        """The running server (started now if it was not); a failed start raises every time."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if not self.started:
                try:
                    if self.several:
                        self.info, self.processes = serve_several(
                            self._settings, self._run_dir, shared=self._shared
                        )
                    else:
                        self.info, process = serve(
                            self._settings, self._run_dir, shared=self._shared
                        )
                        self.processes = [process] if process is not None else []
                except ServerError as exc:
                    self._failure = exc
                    raise
                self.pool.set_members(self.info.servers)
                self.started = True
            return self.info

    async def start_async(self) -> ServerInfo:
        """``start`` from an event loop, without blocking it while the model loads."""
        if self.started:
            return self.info
        return await asyncio.wrap_future(self._starter.submit(self.start))

    def stop(self) -> None:
        self.pool.flush()
        with self._lock:
            for process in self.processes:
                process.stop()
            self.processes = []
        self._starter.shutdown(wait=False)

    def alive(self) -> bool:
        """False once the server has died (with several: every one of them)."""
        if not self.started:
            return True
        if self.pool.members:
            return self.pool.alive()
        if self.processes:
            return self.processes[0].alive()
        return not self.info.pid or process_alive(self.info.pid)

    def known(self) -> ServerInfo:
        """What is known of the server without starting it: under xdist, the shared server
        another worker started (read from the run folder), else ``info``."""
        if self._failure is not None:
            return dataclasses.replace(self.info, start_error=str(self._failure))
        if not self.started and self._shared:
            state = self._run_dir / STATE_FILE
            with contextlib.suppress(OSError, ValueError, TypeError):
                if state.is_file():
                    return ServerInfo.from_json(json.loads(state.read_text()))
        return self.info

    def cache_identity(self) -> ServerInfo:
        """What the response cache keys on: ``info``, except that several running servers
        (checked to serve the same model) are known by the model they serve, not by a URL."""
        if len(self._settings.base_urls) > 1 and not self.info.model_hash:
            return dataclasses.replace(
                self.info, base_url="", model_name=self.info.model or self.info.model_name
            )
        return self.info


def serve(
    settings: ServerSpec, run_dir: Path, *, shared: bool = False
) -> tuple[ServerInfo, MlxServer | None]:
    """The server to evaluate against, and the process to stop afterwards (None: not ours)."""
    info, processes = serve_several(
        dataclasses.replace(settings, servers=1), run_dir, shared=shared
    )
    return info, processes[0] if processes else None


def serve_several(
    settings: ServerSpec, run_dir: Path, *, shared: bool = False, controller: int | None = None
) -> tuple[ServerInfo, list[MlxServer]]:
    """The server(s) to evaluate against (``settings.servers`` started, or the running ones),
    and the processes to stop afterwards (none: not ours). Shared ones are stopped by the
    xdist controller, ``controller`` (default: this worker's parent), or when it dies."""
    if len(settings.base_urls) > 1:
        return connect_several(settings.base_urls, settings.model, settings.timeout), []
    if settings.base_url:
        return connect(settings.base_url, settings.model, timeout=settings.timeout), []
    if not shared:
        return _launch(settings, run_dir, die_with_parent=True)

    from filelock import FileLock

    run_dir.mkdir(parents=True, exist_ok=True)
    state = run_dir / STATE_FILE
    with FileLock(str(run_dir / "server.lock")):
        failed = run_dir / FAILED_FILE
        if failed.is_file():
            raise ServerError(json.loads(failed.read_text())["message"])
        if state.is_file():
            info = ServerInfo.from_json(json.loads(state.read_text()))
            members = info.servers or [member_json(info)]
            for member in members:
                pid, url = member.get("pid"), str(member["base_url"])
                if not (process_alive(pid) and probe_completion(url, info.model_name)[0] == 200):
                    raise ServerError(
                        f"the shared mlx_lm server (pid {pid}) has died; see {member['log_path']}"
                    )
            return info, []
        starting = run_dir / STARTING_FILE
        if starting.is_file():  # the worker that held the lock died while the server started
            for orphan in _starting_pids(starting):
                if process_alive(orphan):
                    stop_process_group(orphan)
            message = (
                "the xdist worker starting the shared mlx_lm server died during start-up; "
                f"see {settings.log_path or run_dir / 'mlx-server.log'}"
            )
            _write_json(failed, {"message": message})
            raise ServerError(message)
        # The controller, not this worker, stops it: the worker may finish before the others.
        # Its pid is recorded before it is ready, so the controller can stop it even if this
        # worker is killed during start-up; a watchdog stops it if the controller is killed.
        if controller is None:
            controller = os.getppid()  # xdist workers are the controller's children
        owner = controller
        spawned_pids: list[int] = []

        def spawned(pid: int) -> None:
            spawned_pids.append(pid)
            _write_json(starting, {"pid": spawned_pids[0], "pids": spawned_pids})
            _watch(owner, pid)

        try:
            info, _ = _launch(settings, run_dir, die_with_parent=False, on_spawn=spawned)
        except ServerError as exc:
            _write_json(failed, {"message": str(exc)})
            starting.unlink(missing_ok=True)
            raise
        _write_json(state, info.to_json())
        starting.unlink(missing_ok=True)
        return info, []


def _launch(
    settings: ServerSpec,
    run_dir: Path,
    *,
    die_with_parent: bool,
    on_spawn: Callable[[int], None] | None = None,
) -> tuple[ServerInfo, list[MlxServer]]:
    if settings.servers > 1:
        return _start_several(settings, run_dir, die_with_parent=die_with_parent, on_spawn=on_spawn)
    info, process = _start(settings, run_dir, die_with_parent=die_with_parent, on_spawn=on_spawn)
    return info, [process]


def _starting_pids(starting: Path) -> list[int]:
    """The pids a worker recorded while it started the shared server(s)."""
    try:
        data = json.loads(starting.read_text())
    except (OSError, ValueError):
        return []
    pids = data.get("pids") or [data.get("pid")]
    return [pid for pid in pids if isinstance(pid, int)]


_WATCHDOG = (
    'while kill -0 "$0" 2>/dev/null && kill -0 "-$1" 2>/dev/null; do sleep 1; done; '
    'if kill -0 "-$1" 2>/dev/null; then '  # the controller is gone, the server is not
    'kill -TERM "-$1"; sleep 10; kill -KILL "-$1" 2>/dev/null; fi'
)


def _watch(controller: int, server: int) -> None:
    """A detached shell that stops the server's process group once ``controller`` is gone (a
    shared server outlives the worker that started it, so it cannot die with its parent),
    and ends by itself once the server has been stopped."""
    subprocess.Popen(
        ["sh", "-c", _WATCHDOG, str(controller), str(server)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_shared_early(settings: ServerSpec, run_dir: Path) -> threading.Thread:
    """Start the server(s) xdist workers will share from the controller, in the background,
    while the workers start and collect (a few seconds on a small machine that the model's
    load would otherwise wait for). The workers find them as if one of them had started them
    (the same lock and state files); a failed start is theirs to report."""

    def start() -> None:
        with contextlib.suppress(Exception):  # recorded in the run folder for the workers
            serve_several(settings, run_dir, shared=True, controller=os.getpid())

    thread = threading.Thread(target=start, name="punie-server-early", daemon=True)
    thread.start()
    return thread


def stop_shared(run_dir: Path) -> None:
    """Stop the server(s) xdist workers shared, if started (the controller calls this)."""
    starting = run_dir / STARTING_FILE
    if starting.is_file():  # its worker died during start-up
        for pid in _starting_pids(starting):
            if process_alive(pid):
                stop_process_group(pid)
        starting.unlink(missing_ok=True)
    state = run_dir / STATE_FILE
    if not state.is_file():
        return
    info = ServerInfo.from_json(json.loads(state.read_text()))
    for member in info.servers or [member_json(info)]:
        if isinstance(member.get("pid"), int):
            stop_process_group(member["pid"])
    state.unlink(missing_ok=True)
