"""Time a request out on lack of progress, not on the time it waits behind others.

``mlx_lm server`` batches requests: with many in flight, a request may wait its turn inside the
server for minutes on a slow CPU while the server works at full speed for the others. A fixed
per-request timeout then voids a slow run. Instead, every byte the server sends on any
connection is progress (tokens, and the ``: keepalive`` lines it streams while a prompt is
processed). A streamed request times out when

- the server made no progress for ``timeout`` s: it sent nothing to anybody and, when it is a
  local process, did not compute either (its CPU time did not grow): a prompt batch on a slow
  CPU (reference BLAS) can take minutes before any byte comes out; or
- it has had its first token and then nothing arrived on its own stream for
  ``STALL_FACTOR * timeout`` s while the server worked for others (a stalled stream).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["InactivityTimeout", "ProgressClock", "WatchedTransport", "watched"]

T = TypeVar("T")


class InactivityTimeout(TimeoutError):
    """A request made no progress for the allowed time."""


@dataclass
class _Watch:
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    tokens: bool = False


_current: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "punie_watch", default=None
)


STALL_FACTOR = 5
_BUSY = 0.05  # a server using 5% of a core (an idle one polls at ~0.1%) is computing


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and its threads (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProgressClock:
    """When the server last made progress: sent anything to any request of one client, or
    (a local server process ``pid``) computed."""

    def __init__(self, pid: int | None = None) -> None:
        self.last = time.monotonic()
        self.pid = pid
        self._sample: tuple[float, float] | None = None

    def _computing(self, now: float) -> None:
        if self.pid is None:
            return
        cpu = _cpu_seconds(self.pid)
        if cpu is None:
            return
        if self._sample is not None:
            then, cpu_then = self._sample
            if now - then < 1.0:
                return
            if (cpu - cpu_then) / (now - then) >= _BUSY:
                self.last = max(self.last, now)
        self._sample = (now, cpu)

    def tick(self, chunk: bytes) -> None:
        now = time.monotonic()
        self.last = now
        watch = _current.get()
        if watch is not None:
            watch.last = now
            if b"data:" in chunk:
                watch.tokens = True

    def idle(self, watch: _Watch) -> tuple[float, bool]:
        """Seconds ``watch``'s request has gone without progress (scaled to ``timeout`` units
        for a started stream), and whether its own stream stalled."""
        now = time.monotonic()
        self._computing(now)
        server_idle = now - max(watch.started, watch.last, self.last)
        own_idle = now - watch.last
        if watch.tokens and own_idle / STALL_FACTOR > server_idle:
            return own_idle / STALL_FACTOR, True
        return server_idle, False


def _watched_stream(stream: Any, clock: ProgressClock, base: type) -> Any:
    """``stream`` (an httpx ``AsyncByteStream``) ticking ``clock`` on each chunk."""

    class WatchedStream(base):  # type: ignore[misc]  # the client's own stream type
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in stream:
                clock.tick(chunk)
                yield chunk

        async def aclose(self) -> None:
            await stream.aclose()

    return WatchedStream()


class WatchedTransport:
    """An HTTP transport (httpx-style) that ticks ``clock`` on every chunk the server sends."""

    def __init__(self, transport: Any, clock: ProgressClock) -> None:
        self._transport = transport
        self.clock = clock
        # the HTTP library the transport belongs to (httpx or httpx2) checks the stream's type
        library = sys.modules[type(transport).__module__.split(".")[0]]
        self._stream_type: type = library.AsyncByteStream

    async def handle_async_request(self, request: Any) -> Any:
        response = await self._transport.handle_async_request(request)
        self.clock.tick(b"")  # headers arrived
        response.stream = _watched_stream(response.stream, self.clock, self._stream_type)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> WatchedTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def watched(work: Awaitable[T], clock: ProgressClock, timeout: float) -> T:
    """Await ``work`` (made in this task's context), cancelling it with ``InactivityTimeout``
    when it makes no progress for ``timeout`` seconds."""
    watch = _Watch()
    token = _current.set(watch)
    try:
        task = asyncio.ensure_future(work)  # copies the context: the transport sees ``watch``
    finally:
        _current.reset(token)
    poll = min(1.0, timeout / 4)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            idle, stalled = clock.idle(watch)
            if idle > timeout:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                if stalled:
                    what = f"its stream stalled for {idle * STALL_FACTOR:.0f}s"
                else:
                    what = f"the server sent nothing and computed nothing for {idle:.0f}s"
                raise InactivityTimeout(f"no progress: {what} (--punie-timeout={timeout:g})")
    except BaseException:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        raise
