"""Tool calls a model made, whether returned as structured parts or written as text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ToolCall", "parse_tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool: its name and its arguments as a dict."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    source: Literal["structured", "text"] = "text"
    id: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "source": self.source}


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str, tool_names: Iterable[str] | None = None) -> list[ToolCall]:
    """Return the tool calls written in ``text`` (placeholder: Hermes format only)."""
    names = set(tool_names) if tool_names is not None else None
    calls = []
    for body in _HERMES.findall(text or ""):
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            if names is None or data["name"] in names:
                args = data.get("arguments", {})
                calls.append(ToolCall(data["name"], args if isinstance(args, dict) else {}))
    return calls
