"""An asyncio event loop in a background thread, for synchronous code that waits on coroutines.

pytest runs tests synchronously, but the cases' conversations (``runner.py``) and the judge's
verdicts (``scoring/judge.py``) are coroutines that must go on while a test waits for its own.
Each owns a ``BackgroundLoop``; closing it ends the loop as ``asyncio.run`` does.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from concurrent.futures import Future

__all__ = ["BackgroundLoop"]

T = TypeVar("T")

_CANCEL_ROUNDS = 20
_JOIN_TIMEOUT_S = 30.0


class BackgroundLoop:
    """An event loop running in a daemon thread named ``name``, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop's thread (once) and return the loop."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=self.name, daemon=True
                )
                self._thread.start()
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coroutine`` in the loop; wait on the returned future from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.start())

    def close(self, cleanup: Callable[[], Awaitable[None] | None] | None = None) -> None:
        """End the loop as ``asyncio.run`` does, then stop its thread and close it.

        In the loop: cancel every task left, again while cancelling starts more (pydantic-graph's
        task groups do), so none is pending when the loop closes (a pending task's coroutine
        would raise, as an "unraisable" exception, in whatever test the garbage collector
        happens to run in); then await ``cleanup()`` (closing an HTTP client that belongs to the
        loop) and shut down async generators. A loop never started is left alone; after
        ``close`` the next ``submit`` starts a new one.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def shutdown() -> None:
            for _ in range(_CANCEL_ROUNDS):
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            closing = cleanup() if cleanup is not None else None
            if closing is not None:
                await closing
            await asyncio.get_running_loop().shutdown_asyncgens()

        if loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=_JOIN_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=_JOIN_TIMEOUT_S)
        loop.close()
