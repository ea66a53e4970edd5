"""The lifecycle of an ``mlx_lm server`` process: start, readiness, checks, stop.

Facts from mlx_lm 0.32 this module is built around:

- ``/health`` answers before the model has loaded, so readiness is a real one-token chat
  completion, not an open port.
- A model that cannot be loaded does not stop the server: its generation thread dies and every
  completion answers 404 ``{"error": "generation thread died"}``. That is detected and reported.
- ``/v1/models`` scans the Hugging Face cache and sends an empty body when the cache folder does
  not exist, so ``HF_HUB_CACHE`` is pointed at a folder that does.
- Only the model name ``"default_model"`` is served with the server's ``--model`` and
  ``--adapter-path``; any other name makes the server load that name instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.system import blas as blas_choice
from pytest_punie.system.processes import stop_process_group

__all__ = [
    "SERVED_MODEL_NAME",
    "MlxServer",
    "ServerError",
    "ServerInfo",
    "check_base_url",
    "connect",
    "free_port",
]
from pytest_punie.system.files import cache_dir

SERVED_MODEL_NAME = "default_model"
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """The model server could not be started, did not serve the model, or died."""


@dataclass(frozen=True)
class ServerInfo:
    """Where the server is and what it serves; JSON-serialisable for reports and xdist."""

    base_url: str
    model_name: str
    model: str | None
    adapter: str | None = None
    model_hash: str | None = None
    adapter_hash: str | None = None
    log_path: str | None = None
    pid: int | None = None
    started_here: bool = False
    blas: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)
    start_error: str | None = None  # why the server could not start (it then has no URL)
    # several servers of one model (``serving.pool``): each one's base_url, pid, log_path, and
    # at the end of a run how many requests it answered and whether it failed; empty for one
    servers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerInfo:
        return cls(**data)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def request_json(
    url: str, payload: dict[str, Any] | None = None, timeout: float = 30.0
) -> tuple[int, str]:
    """POST ``payload`` as JSON (GET when None); return status and body; HTTP errors too."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


def probe_completion(base_url: str, model_name: str, timeout: float = 60.0) -> tuple[int, str]:
    """Send a one-token chat completion; the only honest readiness check."""
    payload = {
        "model": model_name,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
        "temperature": 0.0,
    }
    return request_json(f"{base_url}/chat/completions", payload, timeout=timeout)


def listed_models(base_url: str, timeout: float = 30.0) -> list[str]:
    """The ids ``/v1/models`` reports."""
    status, body = request_json(f"{base_url}/models", timeout=timeout)
    if status != 200:
        raise ServerError(f"{base_url}/models answered {status}: {body[:300]}")
    try:
        return [str(entry["id"]) for entry in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(f"{base_url}/models sent no model list ({body[:200]!r})") from exc


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the server when the pytest process that started it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class MlxServer:
    """One ``python -m mlx_lm server`` process in its own process group, with its log in a file."""

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        chat_template: str | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 600.0,
        die_with_parent: bool = True,
        hf_cache: Path | None = None,
        on_spawn: Callable[[int], None] | None = None,
        beside: int = 1,
    ) -> None:
        self.on_spawn = on_spawn  # told the pid before readiness (xdist records it)
        self.beside = beside  # servers started on this machine at once: they share its cores
        self.model = model
        self.adapter = adapter
        self.log_path = Path(log_path)
        self.host = host
        self.port = port
        self.chat_template = chat_template
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.hf_cache = hf_cache
        self.process: subprocess.Popen[bytes] | None = None
        self.blas = "unknown"
        self._preloaded: Path | None = None  # the OpenBLAS preloaded into the running process
        self._without_openblas: str | None = None  # why it is started without OpenBLAS

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "mlx_lm", "server", "--model", self.model]
        if self.adapter:
            command += ["--adapter-path", self.adapter]
        command += ["--host", self.host, "--port", str(self.port)]
        if self.chat_template:
            command += ["--chat-template", self.chat_template]
        return command + list(self.extra_args)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # A persistent cache, so a hub model is downloaded once, not once per run.
        hub = Path(env.get("HF_HUB_CACHE") or self.hf_cache or hub_cache())
        hub.mkdir(parents=True, exist_ok=True)  # /v1/models sends nothing when it is missing
        env["HF_HUB_CACHE"] = str(hub)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self._without_openblas is not None:
            self.blas, self._preloaded = self._without_openblas, None
            return env
        # one core is left to pytest, which talks to the server and scores beside it
        choice = blas_choice.choose_blas(env, processes=self.beside, spare=1)
        self.blas, self._preloaded = choice.description, choice.library
        return env

    def start(self) -> None:
        """Start the process and return once a real completion succeeded.

        With a port chosen here, a port another process took between the choice and the
        server's bind is given up for a fresh one (up to three times)."""
        chosen_here = self.port is None
        for attempt in range(4):
            try:
                self._start_once()
                return
            except _PreloadCrashed as crash:
                # A native library must not void the run: start once more without it (a
                # process without a preload never raises this, so this happens once).
                blas_choice.record_crash(crash.library, crash.reason)
                self._without_openblas = (
                    f"reference ({crash.library.name} {crash.reason}: started again without it)"
                )
                if chosen_here:  # the dead server's connections may still hold its port
                    self.port = None
            except _PortTaken:
                if not chosen_here or attempt == 3:
                    raise ServerError(
                        f"port {self.port} on {self.host} is taken by another process: "
                        "pick another --punie-port"
                    ) from None
                self.port = None
        raise ServerError(f"mlx_lm server could not be started; see {self.log_path}")

    def _start_once(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.port, self.host):
            raise ServerError(f"port {self.port} on {self.host} is busy: pick another --punie-port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        if self.on_spawn is not None:
            self.on_spawn(self.process.pid)
        try:
            self.wait_ready()
            self.check_serves_model()

            self.blas = blas_choice.blas_in_process(self.process.pid, self.blas, self._preloaded)
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def wait_ready(self) -> None:
        """Poll one-token completions until one succeeds, the process dies or time runs out."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self.alive():
                code = self.process.returncode if self.process else None
                if "Address already in use" in self.log_tail(5):
                    raise _PortTaken
                if code is not None and code < 0 and self._preloaded is not None:
                    raise _PreloadCrashed(
                        self._preloaded,
                        f"killed the server with {blas_choice.signal_name(code)} before its "
                        "first answer",
                        self.log_tail(),
                    )
                raise ServerError(
                    f"mlx_lm server exited with code {code} before it was ready.\n"
                    f"Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                status, body = probe_completion(self.base_url, SERVED_MODEL_NAME)
            except (OSError, TimeoutError):
                status, body = 0, ""
            if status == 200 and self.process is not None:
                owner = port_owner_is(self.process.pid, self.port or 0)
                if owner is not False:  # True, or None where /proc cannot tell
                    return
                status, body = 0, "another process answers on this port"
            if status == 404 and "generation thread died" in body:
                raise ServerError(
                    f"mlx_lm server could not load the model {self.model!r}"
                    + (f" with adapter {self.adapter!r}" if self.adapter else "")
                    + f": its generation thread died.\nLast lines of {self.log_path}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"mlx_lm server was not ready after {self.startup_timeout:.0f}s "
                    f"(last answer: {status} {body[:200]!r}).\n"
                    f"Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def check_serves_model(self) -> None:
        """Check ``/v1/models`` reports the model this server was asked to load."""
        expected = self.model
        if Path(expected).exists():
            expected = str(Path(expected).resolve())
        else:
            return  # a repo id is listed only once it sits in the Hugging Face cache
        ids = listed_models(self.base_url)
        if expected not in ids:
            raise ServerError(
                f"the server does not report the model it was asked to load: expected "
                f"{expected!r}, /v1/models lists {ids}"
            )

    def stop(self, grace: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.process is None:
            return
        stop_process_group(self.process.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self.process = None

    def info(self, model_hash: str | None, adapter_hash: str | None) -> ServerInfo:
        return ServerInfo(
            base_url=self.base_url,
            model_name=SERVED_MODEL_NAME,
            model=self.model,
            adapter=self.adapter,
            model_hash=model_hash,
            adapter_hash=adapter_hash,
            log_path=str(self.log_path),
            pid=self.process.pid if self.process else None,
            started_here=True,
            blas=self.blas,
        )


class _PortTaken(ServerError):
    """Another process holds the port the server was to listen on."""


class _PreloadCrashed(ServerError):
    """The server died by a signal before its first answer with an OpenBLAS preloaded."""

    def __init__(self, library: Path, reason: str, log: str) -> None:
        super().__init__(f"mlx_lm server with {library} preloaded {reason}.\n{log}")
        self.library = library
        self.reason = reason


def hub_cache() -> Path:
    """The persistent Hugging Face hub cache of served models, under ``$PUNIE_CACHE``."""

    return cache_dir() / "hf-hub"


def port_owner_is(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on TCP ``port`` (None: cannot tell)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    if not inodes:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    links = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any(f"socket:[{inode}]" in links for inode in inodes)


def log_tail(path: Path | str | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    if path is None or not Path(path).is_file():
        return ""
    text = Path(path).read_bytes()[-20000:].decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def check_base_url(text: str) -> str:
    """A server's URL as the options take it (``http://127.0.0.1:8080/v1``), without a trailing
    slash; raises ValueError for anything else."""
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError("must be an http(s) URL such as http://127.0.0.1:8080/v1")
    return text.rstrip("/")


def connect(base_url: str, model: str | None = None, timeout: float = 60.0) -> ServerInfo:
    """Check a running OpenAI-compatible server and choose the model name to request.

    An mlx_lm server answers ``"default_model"`` with what it was started with; other servers
    (vLLM, llama.cpp) get ``model`` or the first id ``/v1/models`` lists.
    """
    base_url = base_url.rstrip("/")
    try:
        ids = listed_models(base_url, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ServerError(f"no OpenAI-compatible server answers at {base_url}: {exc}") from exc
    names = [model] if model else [SERVED_MODEL_NAME, *ids[:1]]
    answers = []
    for name in names:
        try:
            status, body = probe_completion(base_url, name, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            status, body = 0, str(exc)
        if status == 200:
            return ServerInfo(base_url=base_url, model_name=name, model=model or name)
        answers.append(f"{name!r}: {status} {body[:200]}")
    raise ServerError(f"the server at {base_url} completes no chat for " + "; ".join(answers))
