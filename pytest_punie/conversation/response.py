"""The model's response to one eval case, in a form scorers read and reports serialise.

A ``Response`` is made from a pydantic-ai run result (or from plain text). Its tool calls come
from the structured tool-call parts of the conversation *and* from tool calls the model wrote as
text, because small local models often write ``<tool_call>{...}</tool_call>`` instead of
returning a structured call, and an evaluation that ignores those never sees them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pytest_punie.conversation.transcript import dump_messages, transcript
from pytest_punie.tools.parsing import ToolCall, parse_tool_calls

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Response", "as_response"]


@dataclass(frozen=True, repr=False)
class Response:
    """What came back for one case: final text, every tool call, usage and timing."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    latency_s: float = 0.0
    messages: tuple[dict[str, Any], ...] = ()
    sandbox_refusals: tuple[str, ...] = ()
    tool_names: tuple[str, ...] = field(default=(), compare=False)
    stopped: str | None = None  # why the conversation was cut short, if it was
    cached_requests: int = 0  # how many of ``requests`` were answered by the response cache

    @property
    def cached(self) -> bool:
        """True when every request of the conversation came from the cache (none reached the
        model); token counts are those the responses were generated with."""
        return self.requests > 0 and self.cached_requests == self.requests

    def __repr__(self) -> str:
        """Short (pytest prints it in tracebacks): the text's start, the calls, the usage."""
        text = self.text if len(self.text) <= 60 else self.text[:60] + "..."
        calls = ", ".join(call.name for call in self.tool_calls[:3])
        if len(self.tool_calls) > 3:
            calls += f", +{len(self.tool_calls) - 3}"
        return (
            f"Response({text!r} [{len(self.text)} chars], tool_calls=[{calls}], "
            f"requests={self.requests}, tokens={self.input_tokens}+{self.output_tokens})"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form for the results file and the test report."""
        return {
            "text": self.text,
            "tool_calls": [call.to_json() for call in self.tool_calls],
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "latency_s": round(self.latency_s, 4),
            "sandbox_refusals": list(self.sandbox_refusals),
            "stopped": self.stopped,
            "cached_requests": self.cached_requests,
            "cached": self.cached,
            "messages": list(self.messages),  # the whole transcript, as pydantic-ai dumps it
        }


def _text_of(output: Any) -> str:
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output, default=str)
    except (TypeError, ValueError):
        return str(output)


def from_messages(
    messages: Iterable[Any],
    output: Any,
    *,
    tool_names: Iterable[str] | None = None,
    latency_s: float = 0.0,
    sandbox_refusals: Iterable[str] = (),
    stopped: str | None = None,
) -> Response:
    """Build a ``Response`` from pydantic-ai messages (``result.all_messages()``)."""
    from pytest_punie.conversation.cache import is_cached  # lazy: pydantic-ai
    from pytest_punie.conversation.text_calls import TEXT_CALL_PREFIX  # lazy: pydantic-ai

    dumped = dump_messages(messages)
    names = tuple(tool_names) if tool_names is not None else ()
    calls: list[ToolCall] = []
    input_tokens = output_tokens = requests = cached = 0
    for message in transcript(dumped):
        if message.kind != "response":
            continue
        requests += 1
        cached += is_cached(message)
        input_tokens += message.input_tokens
        output_tokens += message.output_tokens
        for part in message.parts:
            if part.kind == "tool-call":
                from_text = part.tool_call_id.startswith(TEXT_CALL_PREFIX)
                source: Literal["structured", "text"] = "text" if from_text else "structured"
                calls.append(ToolCall(part.tool_name, part.arguments, source, part.tool_call_id))
            elif part.kind == "text":
                calls.extend(parse_tool_calls(str(part.content), tool_names=names or None))
    return Response(
        text=_text_of(output),
        tool_calls=tuple(calls),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        requests=requests,
        latency_s=latency_s,
        messages=tuple(dumped),
        sandbox_refusals=tuple(sandbox_refusals),
        tool_names=names,
        stopped=stopped,
        cached_requests=cached,
    )


def as_response(result: Any) -> Response:
    """Accept a ``Response``, a pydantic-ai run result or plain text, and return a ``Response``."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(text=result, tool_calls=tuple(parse_tool_calls(result)))
    if hasattr(result, "all_messages") and hasattr(result, "output"):
        return from_messages(result.all_messages(), result.output)
    raise TypeError(
        f"expected a pytest_punie Response, a pydantic-ai run result or a str, "
        f"not {type(result).__name__}"
    )
