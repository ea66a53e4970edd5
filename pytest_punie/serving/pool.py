"""Several servers of one model behind one run: the same model checked on each, requests spread
by least outstanding, a server that dies taken out of rotation and its requests sent elsewhere.

Routing is done at the HTTP level (``RoutingTransport``, under the OpenAI client), so the
pydantic-ai models and the response cache above it are the same as with one server. A request
is sent again to another server only when the one it went to failed without answering it (a
refused or broken connection, a 5xx status, a stream cut before its end): an answer is never
read twice into a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.serving.models import content_hash
from pytest_punie.serving.server import (
    SERVED_MODEL_NAME,
    ServerError,
    ServerInfo,
    connect,
    listed_models,
)
from pytest_punie.system.files import atomic_write_text
from pytest_punie.system.processes import process_alive

__all__ = [
    "Member",
    "RoutingTransport",
    "ServedModel",
    "ServerPool",
    "check_same_model",
    "connect_several",
    "served_tallies",
]

TALLY_FOLDER = "served-by"  # in the run folder: one file per process that sent requests
HEALTH_TIMEOUT = 5.0  # seconds a failed server gets to accept a connection before it is out
TALLY_EVERY = 1.0  # seconds between two writes of a process's tally while answers arrive


@dataclass(frozen=True)
class ServedModel:
    """What one server serves, as far as it can be known from outside: the name ``/v1/models``
    reports (for ``mlx_lm server``, the folder it was started on) and, where that is a local
    folder, its content hash; the adapter when known (a server started here)."""

    name: str
    model_hash: str | None = None
    adapter: str | None = None
    adapter_hash: str | None = None

    def same_as(self, other: ServedModel) -> bool:
        """The same model (by content where both hashes are known, else by name) and adapter."""
        if self.model_hash and other.model_hash:
            same_model = self.model_hash == other.model_hash
        else:
            same_model = self.name == other.name
        if self.adapter_hash and other.adapter_hash:
            return same_model and self.adapter_hash == other.adapter_hash
        return same_model and bool(self.adapter) == bool(other.adapter)

    def describe(self) -> str:
        text = repr(self.name)
        if self.model_hash:
            text += f" (sha256 {self.model_hash[:12]})"
        if self.adapter:
            text += f" with adapter {self.adapter!r}"
        return text


def served_model(
    base_url: str, model_name: str, requested: str | None, timeout: float
) -> ServedModel:
    """What the server at ``base_url`` serves when asked for ``model_name``.

    A requested model (``--punie-model``) is what every server is asked for. Otherwise an
    ``mlx_lm server`` answering ``default_model`` lists the folder it serves last (after the
    Hugging Face cache's repos); another server is known by the name it is asked for."""
    name = requested or model_name
    if not requested and model_name == SERVED_MODEL_NAME:
        ids = listed_models(base_url, timeout=timeout)
        folders = [i for i in ids if i.startswith("/")]
        name = folders[-1] if folders else (ids[-1] if ids else model_name)
    local = Path(name)
    return ServedModel(name, content_hash(local) if local.is_dir() else None)


def check_same_model(served: Sequence[tuple[str, ServedModel]]) -> None:
    """Raise ``ServerError`` naming the first server that serves another model than the first."""
    (first_url, first), *rest = served
    for url, model in rest:
        if not model.same_as(first):
            raise ServerError(
                f"the server at {url} serves {model.describe()}, not "
                f"{first.describe()} as {first_url} does; every server of a run must serve "
                "the same model (or their answers could not be compared or cached together)"
            )


def connect_several(base_urls: Sequence[str], model: str | None, timeout: float) -> ServerInfo:
    """Check running servers (each must answer and serve the same model) and describe them as
    one: the first one's URL, what they serve, and every member in ``servers``."""
    infos: list[ServerInfo] = []
    served: list[tuple[str, ServedModel]] = []
    for url in base_urls:
        info = connect(url, model, timeout=timeout)
        if infos and info.model_name != infos[0].model_name:
            raise ServerError(
                f"the server at {info.base_url} answers model name "
                f"{info.model_name!r}, {infos[0].base_url} answers {infos[0].model_name!r}: "
                "every server of a run must serve the same model"
            )
        infos.append(info)
        try:
            served.append(
                (info.base_url, served_model(info.base_url, info.model_name, model, timeout))
            )
        except (OSError, TimeoutError) as exc:
            raise ServerError(f"{info.base_url}/models did not answer: {exc}") from exc
    check_same_model(served)
    first = served[0][1]
    return ServerInfo(
        base_url=infos[0].base_url,
        model_name=infos[0].model_name,
        model=first.name,
        model_hash=first.model_hash,
        servers=[member_json(info) for info in infos],
    )


def member_json(info: ServerInfo) -> dict[str, Any]:
    """One member of a pool as ``ServerInfo.servers`` lists it."""
    return {
        "base_url": info.base_url,
        "pid": info.pid,
        "log_path": info.log_path,
        "answered": 0,
        "failed": False,
    }


@dataclass
class Member:
    """One server of the pool and what this process has seen of it."""

    base_url: str
    pid: int | None = None
    outstanding: int = 0
    answered: int = 0
    failed: str | None = None  # why it was taken out of rotation


@dataclass
class ServerPool:
    """The servers of a run in this process: which are in rotation, how many requests each has
    in flight and has answered. Thread-safe: every event loop of the process shares it."""

    members: list[Member] = field(default_factory=list)
    tally_path: Path | None = None  # where this process's answered counts are written
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _written: float = 0.0  # when the tally was last written

    def set_members(self, servers: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self.members = [Member(str(s["base_url"]), s.get("pid")) for s in servers]

    def __len__(self) -> int:
        return len(self.members)

    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.pid is not None and m.failed is None]

    def choose(self, tried: set[str]) -> Member | None:
        """The server in rotation with the fewest requests in flight (not one in ``tried``),
        counted as busy from now on; None when there is none."""
        with self._lock:
            live = [m for m in self.members if m.failed is None and m.base_url not in tried]
            if not live:
                return None
            chosen = min(live, key=lambda m: m.outstanding)
            chosen.outstanding += 1
            return chosen

    def done(self, member: Member, answered: bool) -> None:
        with self._lock:
            member.outstanding -= 1
            if answered:
                member.answered += 1
        if answered:
            self.flush(at_most_every=TALLY_EVERY)

    def fail(self, member: Member, reason: str) -> None:
        """Take ``member`` out of rotation (for the rest of the run)."""
        with self._lock:
            if member.failed is None:
                member.failed = reason
        self.flush()

    def alive(self) -> bool:
        """False once every server is out of rotation or its process has died."""
        return any(
            m.failed is None and (m.pid is None or process_alive(m.pid)) for m in self.members
        )

    def out_of_rotation(self) -> str:
        return "; ".join(f"{m.base_url} ({m.failed})" for m in self.members if m.failed)

    async def check(self, member: Member, error: BaseException | str) -> bool:
        """After a failed request: take ``member`` out of rotation when it is gone (its process
        died, or it accepts no connection within ``HEALTH_TIMEOUT``); True when it was. A
        server that still accepts connections stays (mlx_lm resets connections when a burst
        overflows its listen backlog; the request is then sent again)."""
        reason = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        if member.failed is not None:
            return True
        if member.pid is not None and not process_alive(member.pid):
            self.fail(member, f"its process {member.pid} died ({reason})")
            return True
        url = urllib.parse.urlsplit(member.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(url.hostname, port), HEALTH_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self.fail(member, f"{reason}; then no connection: {exc or type(exc).__name__}")
            return True
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return False

    def tallies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"base_url": m.base_url, "answered": m.answered, "failed": m.failed is not None}
                | ({"failure": m.failed} if m.failed else {})
                for m in self.members
            ]

    def flush(self, at_most_every: float = 0.0) -> None:
        """Write this process's tally for the controller (``served_tallies``); at most once
        every ``at_most_every`` seconds (it is called as answers arrive)."""
        now = time.monotonic()
        if self.tally_path is None or not self.members or now - self._written < at_most_every:
            return
        self._written = now
        with contextlib.suppress(OSError):
            atomic_write_text(self.tally_path, json.dumps(self.tallies()))


def tally_file(run_dir: Path) -> Path:
    """Where this process writes what each server answered it."""
    return run_dir / TALLY_FOLDER / f"{os.getpid()}.json"


def served_tallies(run_dir: Path, members: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every server of the run with how many requests it answered (summed over the processes
    that sent requests, xdist workers included) and whether it was taken out of rotation."""
    total = {str(m["base_url"]): {**m, "answered": 0, "failed": False} for m in members}
    for path in sorted((run_dir / TALLY_FOLDER).glob("*.json")):
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for row in rows:
            entry = total.setdefault(
                str(row["base_url"]), {"base_url": row["base_url"], "answered": 0, "failed": False}
            )
            entry["answered"] += int(row.get("answered", 0))
            if row.get("failed"):
                entry["failed"] = True
                entry.setdefault("failure", row.get("failure"))
    return list(total.values())


class RoutingTransport:
    """An HTTP transport (httpx-style) that sends each request to the pool's least busy server
    in rotation, and to another one when that server fails without answering.

    Requests are addressed to the first server's URL (the client's ``base_url``); the path
    below it is kept, the server in front of it is chosen here.
    """

    def __init__(self, transport: Any, pool: ServerPool, library: Any) -> None:
        self._transport = transport
        self.pool = pool
        self._library = library  # the HTTP library of ``transport`` (httpx or httpx2)

    def _routed(self, request: Any, home: str, member: Member) -> Any:
        base = urllib.parse.urlsplit(home).path.rstrip("/")
        path = request.url.raw_path.decode("ascii")
        rest = path[len(base) :] if path.startswith(base) else path
        url = self._library.URL(member.base_url.rstrip("/") + rest)
        headers = [(b"Host", url.netloc)]  # the client sets it from its own URL
        headers += [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        return self._library.Request(
            request.method, url, headers=headers, stream=request.stream,
            extensions=request.extensions,
        )  # fmt: skip

    async def handle_async_request(self, request: Any) -> Any:
        library = self._library
        if not self.pool.members:  # nothing started yet: the client's own URL
            return await self._transport.handle_async_request(request)
        home = self.pool.members[0].base_url
        tried: set[str] = set()
        while True:
            member = self.pool.choose(tried)
            if member is None:
                raise library.ConnectError(
                    "every server is out of rotation: " + self.pool.out_of_rotation(),
                    request=request,
                )
            tried.add(member.base_url)
            try:
                response = await self._transport.handle_async_request(
                    self._routed(request, home, member)
                )
            except library.TransportError as exc:
                self.pool.done(member, answered=False)
                # no answer came (a read that timed out may still be answered: never resent)
                unanswered = isinstance(exc, library.ConnectTimeout) or not isinstance(
                    exc, library.TimeoutException
                )
                if unanswered and await self.pool.check(member, exc):
                    continue  # it died before answering: another server is asked
                raise
            if response.status_code >= 500 and self._others(member):
                await response.aclose()  # its error is not an answer: another server is asked
                self.pool.done(member, answered=False)
                self.pool.fail(member, f"answered HTTP {response.status_code}")
                continue
            response.stream = self._counted(response, member)
            return response

    def _others(self, member: Member) -> bool:
        return any(m is not member and m.failed is None for m in self.pool.members)

    def _counted(self, response: Any, member: Member) -> Any:
        """The response's stream, telling the pool when it ends (answered or not)."""
        stream, pool, library = response.stream, self.pool, self._library
        ok = 200 <= response.status_code < 300
        # an event stream ends with "data: [DONE]"; a server that dies mid-answer may just
        # close its connection, which reads as an end (mlx_lm sends no length): not an answer
        events = "text/event-stream" in response.headers.get("content-type", "")
        state = {"open": True, "done": False}

        def finish(answered: bool) -> None:
            if state["open"]:
                state["open"] = False
                pool.done(member, answered)

        base: type = self._library.AsyncByteStream  # the client checks the stream's type

        class CountedStream(base):  # type: ignore[misc]
            async def __aiter__(self) -> AsyncIterator[bytes]:
                seen = b""
                try:
                    async for chunk in stream:
                        seen = seen[-8:] + chunk
                        if events and b"[DONE]" in seen:
                            state["done"] = True  # the SDK may stop reading here
                        yield chunk
                    if events and ok and not state["done"]:
                        raise library.RemoteProtocolError(
                            f"{member.base_url} closed the stream before its end"
                        )
                except Exception as exc:
                    finish(False)
                    await pool.check(member, exc)  # the retry goes elsewhere if it is gone
                    raise
                finish(ok)

            async def aclose(self) -> None:
                finish(ok and state["done"])
                await stream.aclose()

        return CountedStream()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> RoutingTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
