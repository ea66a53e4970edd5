"""Run eval cases' conversations concurrently, so the server can batch them.

pytest runs one test at a time, but ``mlx_lm server`` decodes many requests together (about
5x the tokens/s with 8 streams than with one). The runner owns an event loop in a background
thread: the plugin submits every selected case that has a prompt when the first one is needed,
at most ``concurrency`` conversations are in flight, and each test waits only for its own.
Multi-turn tool conversations run whole inside the runner, tools acting on the case's workspace.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_punie.conversation.agent import close_model, make_agent
from pytest_punie.conversation.loop import BackgroundLoop
from pytest_punie.conversation.response import Response, from_messages
from pytest_punie.system.files import atomic_write_bytes
from pytest_punie.tools.workspace import create_workspace

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from pytest_punie.cases.marker import Case

__all__ = ["CaseOutcome", "CaseRunner", "RemoteCaseError", "SharedOutcomes"]


@dataclass(frozen=True)
class CaseOutcome:
    """A finished conversation: the response and the workspace it acted on."""

    response: Response
    workspace: Path


class CaseRunner:
    """Runs cases' conversations in a background event loop, ``concurrency`` at a time."""

    def __init__(
        self,
        model_factory: Callable[[], Any],
        workspaces: Path,
        *,
        concurrency: int = 16,
        command_timeout: float = 10.0,
        max_requests: int = 10,
        repeat_seed: int | None = None,
        case_timeout: float | None = None,
    ) -> None:
        self._max_requests = max_requests
        self._case_timeout = case_timeout
        # With repeats above temperature 0, repeat k is sent seed repeat_seed + k, so repeats
        # differ yet a run can be reproduced (seeded requests are not batched by mlx_lm).
        self._repeat_seed = repeat_seed
        self._model_factory = model_factory
        self._workspaces = Path(workspaces)
        self._concurrency = concurrency
        self._command_timeout = command_timeout
        self._futures: dict[str, Future[CaseOutcome]] = {}
        self._lock = threading.Lock()
        self._loop = BackgroundLoop("punie-runner")
        self._loop.start()
        self._semaphore: asyncio.Semaphore | None = None
        self._model: Any = None

    def submit(self, case: Case) -> Future[CaseOutcome]:
        """Start ``case`` (once); later calls return the same future."""
        if not case.prompt:
            raise ValueError(f"{case.nodeid}: a case the runner runs needs punie(prompt=...)")
        with self._lock:
            future = self._futures.get(case.nodeid)
            if future is None:
                future = self._schedule(self._run(case))
                self._futures[case.nodeid] = future
            return future

    def _schedule(self, coroutine: Coroutine[Any, Any, CaseOutcome]) -> Future[CaseOutcome]:
        return self._loop.submit(coroutine)

    def workspace_for(self, nodeid: str) -> Path:
        """The folder a case's tools act on: a readable name plus a hash of the whole test id,
        so two ids that read the same once cleaned (``q[2+2?]``, ``q[2+2=]``) never share one."""
        safe = re.sub(r"[^\w.-]+", "_", nodeid).strip("_.")[-80:] or "case"
        digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self._workspaces / f"{safe}-{digest}"

    async def _run(self, case: Case) -> CaseOutcome:
        from pydantic_ai import capture_run_messages
        from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded
        from pydantic_ai.settings import ModelSettings
        from pydantic_ai.usage import UsageLimits

        from pytest_punie.conversation.cache import cache_context  # lazy: pydantic-ai

        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
            self._model = self._model_factory()
        async with self._semaphore:
            workspace = create_workspace(
                case.workspace,
                self.workspace_for(case.nodeid),
                command_timeout=self._command_timeout,
            )
            agent = make_agent(self._model, case.tools, workspace, case.system_prompt)
            started = time.perf_counter()
            stopped = None
            with capture_run_messages() as messages:
                try:
                    limits = UsageLimits(request_limit=self._max_requests)
                    seed = None if self._repeat_seed is None else self._repeat_seed + case.repeat
                    with cache_context(case.repeat):  # the repeat is part of the cache key
                        result = await asyncio.wait_for(
                            agent.run(
                                case.prompt or "",
                                message_history=case.message_history(),
                                usage_limits=limits,
                                model_settings=(
                                    ModelSettings(seed=seed) if seed is not None else None
                                ),
                            ),
                            self._case_timeout,
                        )
                    messages, output = result.all_messages(), result.output
                except TimeoutError:
                    # Score what the conversation did before its deadline (--punie-case-timeout).
                    stopped = f"the conversation took more than {self._case_timeout:g}s"
                    output = ""
                except (UsageLimitExceeded, UnexpectedModelBehavior) as exc:
                    # The conversation went round in circles (or the model kept sending tool
                    # calls it could not get right): score what it did, say why it stopped.
                    stopped, output = f"{type(exc).__name__}: {exc}", ""
            response = from_messages(
                messages,
                output,
                tool_names=case.tool_names,
                latency_s=time.perf_counter() - started,
                sandbox_refusals=workspace.refusals,
                stopped=stopped,
            )
            return CaseOutcome(response=response, workspace=workspace.root)

    def wait_all(self) -> None:
        """Wait until every submitted conversation has finished (or failed)."""
        import concurrent.futures

        with self._lock:
            futures = list(self._futures.values())
        concurrent.futures.wait(futures)

    def close(self) -> None:
        """Cancel what has not finished and stop the loop."""
        with self._lock:
            for future in self._futures.values():
                future.cancel()

        # as asyncio.run ends (no task left pending), closing the model's HTTP client last
        self._loop.close(lambda: close_model(self._model))
        self._collect_cancelled()

    def _collect_cancelled(self) -> None:
        """Finalise now what the cancelled conversations left, so nothing of this run is
        collected during some later test.

        A task an anyio task group spawned and that was cancelled before its first step (as
        pydantic-graph's are when a conversation is cancelled: ``-x``, ``--punie-case-timeout``)
        never awaits the coroutine it wraps; collected later, that coroutine warns "was never
        awaited" in whatever code the garbage collector happens to run in (with
        ``filterwarnings = error``, a test that has nothing to do with it fails).
        """
        import gc
        import warnings

        with self._lock:
            self._futures.clear()  # their errors' tracebacks hold the conversations' frames
        self._model = None
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", r"coroutine '.*' was never awaited", category=RuntimeWarning
            )
            gc.collect()


class RemoteCaseError(Exception):
    """A case's conversation failed in the xdist worker that ran it."""

    def __init__(self, message: str, infrastructure: bool) -> None:
        super().__init__(message)
        self.infrastructure = infrastructure


class SharedOutcomes:
    """Conversations under xdist: one worker (the first to ask) runs every selected case, as a
    run without xdist does, and publishes each outcome in the run folder; the others read theirs.

    A worker learns its items a few at a time, so each submitting only its own cases would keep
    few conversations in flight; every worker collects the same items, so one can submit all.
    """

    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / "outcomes"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._leader_file = self.folder / "leader"

    def become_leader(self) -> bool:
        """True for the first worker that asks (it runs the conversations)."""
        import os

        try:
            fd = os.open(self._leader_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    def leader_pid(self) -> int | None:
        try:
            return int(self._leader_file.read_text() or 0) or None
        except (OSError, ValueError):
            return None

    def _path(self, nodeid: str) -> Path:
        import hashlib

        return self.folder / (hashlib.sha256(nodeid.encode()).hexdigest()[:24] + ".pickle")

    def publish(self, nodeid: str, future: Future[CaseOutcome], infrastructure: Any) -> None:
        """Write ``future``'s outcome (or its error) for the worker that runs ``nodeid``."""
        import pickle

        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            payload: Any = future.result()
        else:
            payload = RemoteCaseError(
                f"{type(error).__name__}: {error}", bool(infrastructure(error))
            )
        atomic_write_bytes(self._path(nodeid), pickle.dumps(payload))

    def read(self, nodeid: str) -> CaseOutcome | None:
        """The published outcome of ``nodeid``; None while it runs; raises its error."""
        import pickle

        path = self._path(nodeid)
        if not path.is_file():
            return None
        # written by a worker of this run into its private run folder
        payload = pickle.loads(path.read_bytes())
        if isinstance(payload, RemoteCaseError):
            raise payload
        outcome: CaseOutcome = payload
        return outcome
