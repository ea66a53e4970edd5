"""Time a request out on lack of progress, not on the time it waits behind others.

``mlx_lm server`` batches requests: with many in flight, a request may wait its turn inside the
server for minutes on a slow CPU while the server works at full speed for the others. A fixed
per-request timeout then voids a slow run. Instead, every byte the server sends on any
connection is progress (tokens, and the ``: keepalive`` lines it streams while a prompt is
processed). A streamed request times out when

- it has had its first token and then nothing arrived on its own stream for ``timeout`` s
  (a stalled stream), or
- it has had no token yet and the server sent nothing to anybody for ``timeout`` s (the server
  is stuck or dead), counted from the request's start.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
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


class ProgressClock:
    """When the server last sent anything, to any request of one client."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def tick(self, chunk: bytes) -> None:
        now = time.monotonic()
        self.last = now
        watch = _current.get()
        if watch is not None:
            watch.last = now
            if b"data:" in chunk:
                watch.tokens = True

    def idle(self, watch: _Watch) -> float:
        """Seconds ``watch``'s request has gone without progress, by the rules above."""
        now = time.monotonic()
        if watch.tokens:
            return now - watch.last
        return now - max(watch.started, watch.last, self.last)


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
            idle = clock.idle(watch)
            if idle > timeout:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                what = "its stream stalled" if watch.tokens else "the server sent nothing"
                raise InactivityTimeout(
                    f"no progress for {idle:.0f}s ({what}; --punie-timeout={timeout:g})"
                )
    except BaseException:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        raise
