"""pydantic-ai models and agents pointed at the server under evaluation."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_punie.conversation.progress import ProgressClock, WatchedTransport
from pytest_punie.timeouts import DEFAULT_TIMEOUT_S
from pytest_punie.tools.workspace import make_tools

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from pydantic_ai import Agent
    from pydantic_ai.settings import ModelSettings

    from pytest_punie.conversation.cache import CacheUse
    from pytest_punie.conversation.text_calls import TextToolCallModel
    from pytest_punie.serving.pool import ServerPool
    from pytest_punie.serving.server import ServerInfo
    from pytest_punie.serving.shared import OnDemandServer
    from pytest_punie.tools.workspace import Workspace

__all__ = ["Sampling", "close_model", "make_agent", "make_model", "model_settings"]

NOT_STARTED_URL = "http://127.0.0.1:9/v1/"  # stands in until an on-demand server has started


@dataclass(frozen=True)
class Sampling:
    """How each request is sampled and how long it may go without progress."""

    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    timeout: float = DEFAULT_TIMEOUT_S


def model_settings(settings: Sampling) -> ModelSettings:
    """Sampling settings sent with every request (no seed unless asked: mlx_lm does not batch
    seeded requests, and greedy decoding at temperature 0 needs none)."""
    from pydantic_ai.settings import ModelSettings

    values = ModelSettings(temperature=settings.temperature, max_tokens=settings.max_tokens)
    if settings.seed is not None:
        values["seed"] = settings.seed
    return values


class PoolClock(ProgressClock):
    """A progress clock over several local servers: any of them computing is progress."""

    def __init__(self, pool: ServerPool) -> None:
        super().__init__(None)
        self._pool = pool
        self._clocks: dict[int, ProgressClock] = {}

    def _computing(self, now: float) -> None:
        for pid in self._pool.pids():
            clock = self._clocks.get(pid)
            if clock is None:
                clock = self._clocks[pid] = ProgressClock(pid)
                clock.last = float("-inf")  # only its CPU time counts
            clock._computing(now)
            self.last = max(self.last, clock.last)


def make_model(
    info: ServerInfo,
    settings: Sampling,
    cache: CacheUse | None = None,
    server: OnDemandServer | None = None,
    pool: ServerPool | None = None,
) -> TextToolCallModel:
    """An OpenAI-compatible chat model on the server ``info`` describes, requesting the name it
    serves, whose tool calls written as text are executed like structured ones; with ``cache``,
    each request is answered from the response cache when it can be (the server's raw answer is
    cached). With ``server`` (not started yet), the first request the cache cannot answer
    starts it and the model then talks to it.

    The client itself does not retry: a timeout or a dead server should fail the case at once
    (``TextToolCallModel`` sends again only what a reset connection lost). Requests are streamed
    and time out after ``settings.timeout`` seconds without progress, never while they wait
    their turn inside the server (``pytest_punie.conversation.progress``).

    With a ``pool`` of several servers of the model, each request goes to the one with the
    fewest requests in flight, and to another when it fails without answering
    (``pytest_punie.serving.pool``).
    """
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from pytest_punie.conversation.text_calls import TextToolCallModel  # lazy: pydantic-ai
    from pytest_punie.serving.pool import RoutingTransport

    # a local server's CPU time is progress too
    clock = PoolClock(pool) if pool is not None else ProgressClock(info.pid)
    http = DefaultAsyncHttpxClient()
    # every chunk the server sends ticks the clock (the SDK's own transport, wrapped)
    transport: Any = WatchedTransport(http._transport, clock)
    if pool is not None:  # each request sent to a server of the pool
        library = sys.modules[type(http._transport).__module__.split(".")[0]]  # httpx or httpx2
        transport = RoutingTransport(transport, pool, library)
    http._transport = transport
    client = AsyncOpenAI(
        base_url=info.base_url or NOT_STARTED_URL,
        api_key="punie",
        max_retries=0,
        # connecting may time out; reading is watched for progress instead (queueing is fine)
        timeout=_timeout(settings.timeout),
        http_client=http,
    )
    chat_model = OpenAIChatModel(
        info.model_name,
        provider=OpenAIProvider(openai_client=client),
        settings=model_settings(settings),
    )

    async def connect() -> None:
        if server is not None and not info.base_url and str(client.base_url) == NOT_STARTED_URL:
            started = await server.start_async()
            client.base_url = started.base_url  # the SDK parses it into a URL
            if pool is None:
                clock.pid = started.pid

    return TextToolCallModel(
        cache.wrap(chat_model, before_miss=connect) if cache is not None else chat_model,
        clock=clock,
        timeout=settings.timeout,
    )


def _timeout(seconds: float) -> Any:
    """The HTTP client's timeout: ``seconds`` to connect, none on reading (see ``progress``)."""
    import openai

    return openai.Timeout(None, connect=seconds, write=seconds, pool=None)


def close_model(model: Any) -> Awaitable[None] | None:
    """Close the HTTP client under ``model`` (wrapped or not); None when it has none."""
    inner = getattr(model, "wrapped", model)
    client = getattr(inner, "client", None)
    return client.close() if client is not None and hasattr(client, "close") else None


def make_agent(
    model: Any,
    tools: Sequence[str | Callable[..., Any]] = (),
    workspace: Workspace | None = None,
    system_prompt: str | None = None,
) -> Agent[None, str]:
    """An agent on ``model`` with the case's tools bound to its workspace."""
    from pydantic_ai import Agent

    tool_list: list[Any] = []
    if tools:
        if workspace is None:
            raise ValueError("tools need a workspace")
        tool_list = make_tools(workspace, tools)
    return Agent(model, tools=tool_list, system_prompt=system_prompt or ())
