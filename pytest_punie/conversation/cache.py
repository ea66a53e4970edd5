"""The response cache: every model request's answer, keyed by the content that produced it.

The key is a sha256 over what decides the answer: the served model's and adapter's content hashes
(an adapter retrained in place under the same path gets a new key), the chat template, the
sampling settings, the repeat index, and the full request (messages and tool definitions),
serialised canonically: timestamps, usage and tool-call ids (random on some servers) are left
out, ids are numbered in order of appearance. Each request of a multi-turn conversation is its
own entry, so a changed tool result asks the model again from that turn on.

Entries live in SQLite (``.punie/cache.db``) in WAL mode with a busy timeout, so xdist workers
and concurrent runs share it; each entry is written in its own transaction as its request
completes, so an interrupted run keeps what it got (resume). Errors, and responses that did not
complete (an interrupted stream, an error finish), are never stored.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_ai.models.wrapper import WrapperModel

from pytest_punie.serving.chat_template import CHOICES, hermes_template
from pytest_punie.serving.models import content_hash

if TYPE_CHECKING:
    from pydantic_ai._run_context import RunContext
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models import ModelRequestParameters, StreamedResponse
    from pydantic_ai.settings import ModelSettings

    from pytest_punie.conversation.transcript import Message
    from pytest_punie.serving.server import ServerInfo

__all__ = [
    "CACHED_DETAIL",
    "DEFAULT_CACHE_PATH",
    "MODES",
    "CacheStats",
    "CacheUse",
    "CachedModel",
    "ResponseCache",
    "cache_context",
    "is_cached",
    "repeat_index",
    "request_key",
    "served_content",
]

MODES = ("on", "off", "read", "refresh")
DEFAULT_CACHE_PATH = ".punie/cache.db"
CACHED_DETAIL = "punie_cache"  # provider_details key marking a response served from the cache
KEY_VERSION = 1  # bump when the key's content changes, so old entries are never read
# which finish reasons are the model's complete answer (max_tokens is in the key, so an answer
# cut at the limit is what the same request gets again)
_COMPLETE_FINISH = {None, "stop", "length", "tool_call"}
_SETTINGS_NOT_IN_KEY = {"timeout", "request_timeout", "first_event_timeout", "parallel_tool_calls"}

repeat_index: contextvars.ContextVar[int] = contextvars.ContextVar("punie_repeat", default=0)


@contextmanager
def cache_context(repeat: int) -> Iterator[None]:
    """Requests made inside belong to repeat ``repeat`` of their case (part of the key)."""
    token = repeat_index.set(repeat)
    try:
        yield
    finally:
        repeat_index.reset(token)


def served_content(server: ServerInfo) -> dict[str, Any]:
    """What the server serves, by content: model and adapter hashes and the chat template's.

    A server reached with ``--punie-base-url`` cannot be hashed unless its model is a local
    folder; its name and URL stand in (use ``--punie-cache=refresh`` after changing it).
    """

    model = server.model_hash or content_hash(server.model)
    template = str(server.extra.get("chat_template") or "model")
    if template == "hermes":
        template_hash = _sha256(hermes_template())
    elif template in CHOICES:
        template_hash = template  # the model's own: part of the model's content hash
    else:
        path = Path(template)
        template_hash = _sha256(path.read_text()) if path.is_file() else template
    adapter = server.adapter_hash or content_hash(server.adapter)
    return {
        "model": model or f"name:{server.model_name}@{server.base_url}",
        "adapter": adapter or (f"path:{server.adapter}" if server.adapter else None),
        "chat_template": template_hash,
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical_messages(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """The messages as the model sees them: no timestamps, usage or provider ids; tool-call ids
    numbered in order of appearance."""
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    ids: dict[str, str] = {}
    canonical: list[dict[str, Any]] = []
    for message in ModelMessagesTypeAdapter.dump_python(messages, mode="json"):
        parts = []
        for part in message.get("parts", []):
            kept = {
                k: part[k]
                for k in ("part_kind", "content", "tool_name", "args")
                if part.get(k) is not None
            }
            if isinstance(kept.get("args"), str):
                try:
                    kept["args"] = json.loads(kept["args"])
                except ValueError:
                    pass  # unparseable arguments are part of the request as written
            call_id = part.get("tool_call_id")
            if call_id is not None:
                kept["tool_call_id"] = ids.setdefault(call_id, f"call-{len(ids)}")
            parts.append(kept)
        entry: dict[str, Any] = {"kind": message.get("kind"), "parts": parts}
        if message.get("instructions"):
            entry["instructions"] = message["instructions"]
        canonical.append(entry)
    return canonical


def _canonical_tools(parameters: ModelRequestParameters) -> dict[str, Any]:
    def tools(definitions: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters_json_schema,
                "strict": t.strict,
            }
            for t in definitions
        ]

    return {
        "function_tools": tools(parameters.function_tools),
        "output_tools": tools(parameters.output_tools),
        "output_mode": parameters.output_mode,
        "allow_text_output": parameters.allow_text_output,
    }


def request_key(
    served: Mapping[str, Any],
    messages: list[ModelMessage],
    settings: Mapping[str, Any] | None,
    parameters: ModelRequestParameters,
    repeat: int = 0,
) -> str:
    """The cache key of one request: sha256 over its canonical JSON."""
    sampling = {k: v for k, v in sorted((settings or {}).items()) if k not in _SETTINGS_NOT_IN_KEY}
    document = {
        "version": KEY_VERSION,
        "served": dict(served),
        "sampling": sampling,
        "repeat": repeat,
        "messages": _canonical_messages(messages),
        "tools": _canonical_tools(parameters),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return _sha256(text)


def is_cached(response: ModelResponse | Message) -> bool:
    """True when ``response`` (a pydantic-ai one or a transcript's) was served from the cache
    rather than the model."""
    return bool((response.provider_details or {}).get(CACHED_DETAIL))


def _complete(response: ModelResponse) -> bool:
    return (
        getattr(response, "state", "complete") == "complete"
        and response.finish_reason in _COMPLETE_FINISH
        and bool(response.parts)
    )


@dataclass(frozen=True)
class CacheStats:
    """What ``punie cache stats`` prints."""

    path: str
    entries: int
    size_bytes: int
    models: dict[str, int]
    oldest: float | None
    newest: float | None


def _use_wal(db: sqlite3.Connection, wait_s: float = 60.0) -> None:
    """Put the cache in WAL mode (it stays so on disk). Switching needs the database to itself
    and SQLite answers "locked" at once, without its busy wait, when another process (an xdist
    worker opening the same cache) holds it: retry until ``wait_s``."""
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class ResponseCache:
    """SQLite store of model responses; safe to share between threads and processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout = 60000")
        _use_wal(self._db)
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, response TEXT NOT NULL, model TEXT, adapter TEXT,"
            " latency_s REAL, created REAL NOT NULL)"
        )
        self.hits = 0
        self.misses = 0
        self.stored = 0

    def get(self, key: str) -> ModelResponse | None:
        """The stored response for ``key``, or None."""
        from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelResponse

        with self._lock:
            row = self._db.execute(
                "SELECT response, latency_s FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        try:
            (response,) = ModelMessagesTypeAdapter.validate_json(row[0])
        except ValueError:
            return None  # an entry this version cannot read counts as a miss
        if not isinstance(response, ModelResponse):
            return None
        details = {**(response.provider_details or {}), CACHED_DETAIL: True}
        details["punie_cached_latency_s"] = row[1]
        return replace(response, provider_details=details)

    def put(
        self,
        key: str,
        response: ModelResponse,
        served: Mapping[str, Any],
        latency_s: float,
    ) -> bool:
        """Store a complete response (atomically, replacing an older one); False if not stored."""
        from pydantic_ai.messages import ModelMessagesTypeAdapter

        if not _complete(response):
            return False
        text = ModelMessagesTypeAdapter.dump_json([response]).decode()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (key, text, served.get("model"), served.get("adapter"), latency_s, time.time()),
            )
            self.stored += 1
        return True

    def stats(self) -> CacheStats:
        with self._lock:
            entries, oldest, newest = self._db.execute(
                "SELECT count(*), min(created), max(created) FROM responses"
            ).fetchone()
            rows = self._db.execute(
                "SELECT coalesce(model, '?') || coalesce(' + ' || adapter, ''), count(*)"
                " FROM responses GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.is_file()
        )
        return CacheStats(str(self.path), int(entries), size, dict(rows), oldest, newest)

    def clear(self) -> int:
        """Delete every entry; return how many there were."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM responses").fetchone()
            self._db.execute("DELETE FROM responses")
        with self._lock:
            self._db.execute("VACUUM")
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class CacheUse:
    """A run's cache: the store, what the server serves, and the ``--punie-cache`` mode."""

    cache: ResponseCache
    served: dict[str, Any]
    mode: str
    repeat: int | None = None

    @classmethod
    def open(
        cls, path: Path | str, server: ServerInfo, mode: str, repeat: int | None = None
    ) -> CacheUse:
        return cls(ResponseCache(path), served_content(server), mode, repeat)

    def wrap(
        self, model: Any, before_miss: Callable[[], Awaitable[None]] | None = None
    ) -> CachedModel:
        """``model`` answering from (and filling) this cache; ``before_miss`` is awaited before
        a request goes to ``model`` (it starts an on-demand server)."""
        return CachedModel(
            model, self.cache, self.served, self.mode, repeat=self.repeat, before_miss=before_miss
        )

    def close(self) -> None:
        self.cache.close()


class CachedModel(WrapperModel):
    """A model that answers from ``cache`` when it can and stores what the model answers.

    ``mode``: ``on`` reads and writes, ``read`` only reads, ``refresh`` only writes (replacing
    old entries). A response from the cache carries ``provider_details["punie_cache"] = True``
    and the token counts it was generated with.
    """

    def __init__(
        self,
        wrapped: Any,
        cache: ResponseCache,
        served: Mapping[str, Any],
        mode: str = "on",
        *,
        repeat: int | None = None,
        before_miss: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.repeat = repeat  # None: the repeat ``cache_context`` sets
        self.before_miss = before_miss
        if mode not in ("on", "read", "refresh"):
            raise ValueError(f"cache mode must be on, read or refresh, not {mode!r}")
        self.cache = cache
        self.served = dict(served)
        self.mode = mode

    def _key(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        parameters: ModelRequestParameters,
    ) -> str:
        settings = {**(self.wrapped.settings or {}), **(model_settings or {})}
        repeat = self.repeat if self.repeat is not None else repeat_index.get()
        return request_key(self.served, messages, settings, parameters, repeat)

    def _lookup(self, key: str) -> ModelResponse | None:
        found = self.cache.get(key) if self.mode in ("on", "read") else None
        if found is None:
            self.cache.misses += 1
        else:
            self.cache.hits += 1
        return found

    def _store(self, key: str, response: ModelResponse, started: float) -> None:
        if self.mode in ("on", "refresh"):
            self.cache.put(key, response, self.served, time.perf_counter() - started)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        key = self._key(messages, model_settings, model_request_parameters)
        found = self._lookup(key)
        if found is not None:
            return found
        if self.before_miss is not None:
            await self.before_miss()
        started = time.perf_counter()
        response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        self._store(key, response, started)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        from pydantic_ai.models import CompletedStreamedResponse

        key = self._key(messages, model_settings, model_request_parameters)
        found = self._lookup(key)
        if found is not None:
            yield CompletedStreamedResponse(
                found, model_request_parameters=model_request_parameters, replay_events=True
            )
            return
        if self.before_miss is not None:
            await self.before_miss()
        started = time.perf_counter()
        async with self.wrapped.request_stream(
            messages, model_settings, model_request_parameters, run_context
        ) as stream:
            yield stream
        # only a stream read to its end is stored (get() says "complete"); an exception or a
        # cancellation while it was read skips this line
        self._store(key, stream.get(), started)
