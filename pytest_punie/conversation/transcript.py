"""A pydantic-ai transcript, read in one place.

A conversation comes as pydantic-ai's message objects (a run's ``all_messages()``) or as the JSON
form pydantic-ai dumps them to (``Response.messages``, the results file). ``transcript`` reads
either into plain messages and parts; the response, the report, the judge and the export of
failed cases all read a conversation through it. Nothing here imports pydantic-ai until a
message object (not its JSON form) has to be dumped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message", "Part", "dump_messages", "first_prompt", "last_reply", "transcript"]


@dataclass(frozen=True)
class Part:
    """One part of a message, by pydantic-ai's ``part_kind``: ``system-prompt``,
    ``user-prompt``, ``tool-return`` and ``retry-prompt`` in requests; ``text``, ``tool-call``
    (and ``thinking`` ...) in responses."""

    kind: str
    content: Any = None
    tool_name: str = ""
    tool_call_id: str = ""
    args: Any = None  # a tool call's arguments as the model sent them (JSON text or an object)

    @property
    def arguments(self) -> dict[str, Any]:
        """A tool call's arguments as an object, read as pydantic-ai reads them (its
        ``INVALID_JSON`` key holds arguments that are not a JSON object)."""
        from pydantic_ai.messages import ToolCallPart  # lazy: pydantic-ai

        try:
            args = ToolCallPart(self.tool_name, self.args).args_as_dict()
        except (ValueError, TypeError):
            return {"_unparsed": self.args}
        return args if isinstance(args, dict) else {"_unparsed": args}


@dataclass(frozen=True)
class Message:
    """A request to the model or its response, with the response's usage."""

    kind: str  # "request" or "response"
    parts: tuple[Part, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    provider_details: Mapping[str, Any] = field(default_factory=dict)


def dump_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """The JSON form of ``messages`` (pydantic-ai objects are dumped; dumped ones kept)."""
    items = list(messages)
    if all(isinstance(item, Mapping) for item in items):
        return [dict(item) for item in items]
    from pydantic_ai.messages import ModelMessagesTypeAdapter  # lazy: pydantic-ai

    return [
        dict(item)
        if isinstance(item, Mapping)
        else ModelMessagesTypeAdapter.dump_python([item], mode="json")[0]
        for item in items
    ]


def _part(part: Mapping[str, Any]) -> Part:
    return Part(
        kind=str(part.get("part_kind") or ""),
        content=part.get("content"),
        tool_name=str(part.get("tool_name") or ""),
        tool_call_id=str(part.get("tool_call_id") or ""),
        args=part.get("args"),
    )


def transcript(messages: Iterable[Any]) -> list[Message]:
    """The messages of a conversation (pydantic-ai objects or their JSON form), in order."""
    read: list[Message] = []
    for message in dump_messages(messages):
        usage = message.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        details = message.get("provider_details")
        parts = message.get("parts") or ()
        read.append(
            Message(
                kind=str(message.get("kind") or ""),
                parts=tuple(_part(p) for p in parts if isinstance(p, Mapping)),
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                provider_details=details if isinstance(details, Mapping) else {},
            )
        )
    return read


def first_prompt(messages: Iterable[Any]) -> str | None:
    """The first user prompt of a conversation (None when it has none in text)."""
    for message in transcript(messages):
        for part in message.parts:
            if part.kind == "user-prompt" and isinstance(part.content, str):
                return part.content
    return None


def last_reply(messages: Iterable[Any]) -> str:
    """The text of a conversation's last response ("" when it has none)."""
    for message in reversed(transcript(messages)):
        if message.kind == "response":
            return "".join(str(p.content) for p in message.parts if p.kind == "text")
    return ""
