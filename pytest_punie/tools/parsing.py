"""Tool calls a model made, whether returned as structured parts or written as text.

Small local models often write their tool calls as text instead of returning structured calls,
each family in its own format. ``parse_tool_calls`` reads the formats they use and returns only
the calls a model really made: reasoning inside ``<think>``, prose that names a tool, code
answers, JSON that is not a call and truncated JSON are not calls. Nothing here raises, whatever
the text.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pytest_punie.tools.schema import coerce, json_value

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["ToolCall", "find_call_like_text", "parse_tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool: its name and its arguments as a dict."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    source: Literal["structured", "text"] = "text"
    id: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "source": self.source}


def parse_tool_calls(
    text: str,
    tool_names: Iterable[str] | None = None,
    *,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ToolCall]:
    """Return the tool calls written in ``text``, in order of appearance.

    With ``tool_names``, calls of other tools are dropped (and a lone pythonic call such as
    ``list_dir(path=".")`` counts only if its name is one of them). ``schemas`` maps a tool name
    to the JSON schema of its parameters; it types the string values of Qwen3-Coder XML calls.
    """
    if not isinstance(text, str):
        return []
    names = _name_set(tool_names)
    context = _Context(names, schemas if isinstance(schemas, Mapping) else {})
    found = _find_calls(_strip_thinking(text), context)
    return [call for group in found for call in group.calls if names is None or call.name in names]


def find_call_like_text(text: str) -> bool:
    """Whether ``text`` holds what looks like an attempted tool call that did not parse.

    A scorer uses it to tell "the model tried to call a tool but wrote it wrong" from "the model
    called no tool". Markers inside calls that did parse do not count.
    """
    if not isinstance(text, str):
        return False
    visible = _strip_thinking(text)
    found = _find_calls(visible, _Context(None, {}))
    starts = [group.start for group in found]
    for marker in _CALL_LIKE.finditer(visible):
        index = bisect.bisect_right(starts, marker.start()) - 1
        if index < 0 or marker.start() >= found[index].end:
            return True
    return False


# --- Plumbing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What the parsers need besides the text."""

    names: frozenset[str] | None
    schemas: Mapping[str, Any]


@dataclass(frozen=True)
class _Found:
    """Calls read from one stretch of the text (one block, one fence, the whole message)."""

    start: int
    end: int
    calls: tuple[ToolCall, ...]


def _name_set(tool_names: Iterable[str] | None) -> frozenset[str] | None:
    if tool_names is None:
        return None
    if isinstance(tool_names, str):
        return frozenset({tool_names})
    try:
        return frozenset(name for name in tool_names if isinstance(name, str))
    except TypeError:
        return None


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def _strip_thinking(text: str) -> str:
    """Remove reasoning: everything from the first ``<think>`` to the last ``</think>``.

    A ``</think>`` before any ``<think>`` ends reasoning whose opening tag was in the prompt (as
    Qwen3 chat templates do), so the text before it goes too; an unclosed ``<think>`` hides the
    rest of the text.
    """
    first_open = text.find(_THINK_OPEN)
    orphan_close = text.rfind(_THINK_CLOSE, 0, first_open if first_open != -1 else len(text))
    if orphan_close != -1:
        text = text[orphan_close + len(_THINK_CLOSE) :]
        first_open = text.find(_THINK_OPEN)
    if first_open == -1:
        return text
    last_close = text.rfind(_THINK_CLOSE)
    if last_close < first_open:
        return text[:first_open]
    rest = text[last_close + len(_THINK_CLOSE) :]
    reopened = rest.find(_THINK_OPEN)
    return text[:first_open] + (rest if reopened == -1 else rest[:reopened])


def _find_calls(text: str, context: _Context) -> list[_Found]:
    """Run every format's parser and keep the outermost reading of each stretch of text.

    A fenced block inside a ``<tool_call>``, or a call quoted inside another call's arguments,
    overlaps a reading that starts earlier, so it is not counted twice.
    """
    candidates = [found for parser in _PARSERS for found in parser(text, context) if found.calls]
    candidates.sort(key=lambda found: (found.start, -found.end))
    kept: list[_Found] = []
    for found in candidates:
        if not kept or found.start >= kept[-1].end:
            kept.append(found)
    return kept


# --- JSON call objects ----------------------------------------------------------------------

# strict=False: models write raw newlines inside JSON strings (file contents, code).
_DECODER = json.JSONDecoder(strict=False)
_SEPARATOR = re.compile(r"\s*[;,]?\s*")
_NAME_KEYS = ("name", "tool_name", "tool", "function")
_ARGUMENT_KEYS = ("arguments", "parameters", "args")


def _json_values(body: str) -> list[Any] | None:
    """The JSON values in ``body``, one or several separated by ``;`` or ``,``; else None."""
    body = body.strip()
    if not body:
        return None
    values: list[Any] = []
    position = 0
    while position < len(body):
        try:
            value, position = _DECODER.raw_decode(body, position)
        except (ValueError, RecursionError):
            return None
        values.append(value)
        separator = _SEPARATOR.match(body, position)
        position = separator.end() if separator else position
    return values


def _literal_values(body: str) -> list[Any] | None:
    """``body`` read as a Python dict or list literal (single quotes, ``True``); else None."""
    body = body.strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        return [json_value(ast.literal_eval(body))]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _calls_from_json(values: list[Any], *, explicit: bool) -> list[ToolCall]:
    """The calls in decoded JSON: call objects, lists of them, or ``{"tool_calls": [...]}``.

    ``explicit`` is true behind a tool-call marker, where ``{"name": ...}`` alone is a call
    without arguments; elsewhere an object needs an arguments key to count as a call.
    """
    calls: list[ToolCall] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            nested = item.get("tool_calls") if isinstance(item, dict) else None
            for candidate in nested if isinstance(nested, list) else [item]:
                call = _call_from_object(candidate, explicit=explicit)
                if call is not None:
                    calls.append(call)
    return calls


def _call_from_object(value: Any, *, explicit: bool) -> ToolCall | None:
    """One call object in any of the shapes models use, including OpenAI's ``function``."""
    if not isinstance(value, dict):
        return None
    call_id = value.get("id")
    function = value.get("function")
    if isinstance(function, dict):
        value = function
    name = next((value[key] for key in _NAME_KEYS if key in value), None)
    if not isinstance(name, str) or not name.strip():
        return None
    arguments_key = next((key for key in _ARGUMENT_KEYS if key in value), None)
    if arguments_key is None:
        if not explicit:
            return None
        arguments: dict[str, Any] | None = {}
    else:
        arguments = _as_arguments(value[arguments_key])
    if arguments is None:
        return None
    return ToolCall(
        name=name.strip(),
        arguments=arguments,
        id=call_id if isinstance(call_id, str) else None,
    )


def _as_arguments(raw: Any) -> dict[str, Any] | None:
    """Arguments as a dict: given as one, or as a JSON string of one; else None."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return None
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw, strict=False)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _json_or_pythonic(body: str, context: _Context) -> list[ToolCall]:
    """Calls behind an explicit marker: JSON call objects, else pythonic calls."""
    values = _json_values(body)
    if values is not None:
        return _calls_from_json(values, explicit=True)
    return _pythonic_calls(body, context)


# --- Hermes / Qwen2.5: <tool_call>{...}</tool_call> ----------------------------------------

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
_WHOLE_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


def _hermes_calls(text: str, context: _Context) -> list[_Found]:
    """Hermes / Qwen2.5: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

    The block may hold a list of calls, a fenced block, Qwen3-Coder XML, or a Python literal;
    a missing ``</tool_call>`` at the end of the text is tolerated (truncated JSON still fails).
    """
    found = []
    for block in _TOOL_CALL_BLOCK.finditer(text):
        calls = _calls_in_block(block.group(1), context, closed=bool(block.group(2)))
        found.append(_Found(block.start(), block.end(), tuple(calls)))
    return found


def _calls_in_block(body: str, context: _Context, *, closed: bool) -> list[ToolCall]:
    body = body.strip()
    fenced = _WHOLE_FENCE.fullmatch(body)
    if fenced:
        body = fenced.group(1).strip()
    if "<function=" in body:
        if closed and "</function>" not in body:
            body += "</function>"
        return [call for _, _, call in _xml_functions(body, context)]
    values = _json_values(body)
    if values is None:
        values = _literal_values(body)
    if values is not None:
        return _calls_from_json(values, explicit=True)
    return _pythonic_calls(body, context)


# --- Qwen3-Coder XML: <function=NAME><parameter=KEY>value</parameter></function> -------------

_XML_CLOSE = "</function>"
_XML_FUNCTION = re.compile(r"<function=([^>\n]*)>(.*?)</function>", re.DOTALL)
_XML_PARAMETER = re.compile(
    r"<parameter=([^>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL
)


def _qwen_xml_calls(text: str, context: _Context) -> list[_Found]:
    """Qwen3-Coder XML without the ``<tool_call>`` wrapper (also Llama 3.1's JSON body)."""
    return [_Found(start, end, (call,)) for start, end, call in _xml_functions(text, context)]


def _xml_functions(text: str, context: _Context) -> list[tuple[int, int, ToolCall]]:
    """Each ``<function=NAME>...</function>`` in ``text`` that reads as a call, with its span."""
    # Search only up to the last closing tag: an unclosed <function= must not rescan the rest.
    last_close = text.rfind(_XML_CLOSE)
    if last_close == -1:
        return []
    calls = []
    for function in _XML_FUNCTION.finditer(text, 0, last_close + len(_XML_CLOSE)):
        call = _xml_call(function.group(1), function.group(2), context)
        if call is not None:
            calls.append((function.start(), function.end(), call))
    return calls


def _xml_call(raw_name: str, body: str, context: _Context) -> ToolCall | None:
    name = raw_name.strip()
    if not name:
        return None
    parameters = list(_XML_PARAMETER.finditer(body))
    if not parameters:
        # Llama 3.1 writes <function=NAME>{"key": "value"}</function>.
        arguments = _as_arguments(body) if body.strip() else {}
        return None if arguments is None else ToolCall(name=name, arguments=arguments)
    properties = _properties(context.schemas.get(name))
    arguments = {}
    for parameter in parameters:
        key = parameter.group(1).strip()
        if not key:
            return None
        arguments[key] = coerce(_trim_newline(parameter.group(2)), properties.get(key))
    return ToolCall(name=name, arguments=arguments)


def _trim_newline(value: str) -> str:
    """Drop the one newline the Qwen3-Coder template puts on each side of a value."""
    value = value.removeprefix("\n")
    return value.removesuffix("\n")


def _properties(schema: Any) -> Mapping[str, Any]:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


# --- Mistral: [TOOL_CALLS][{...}] and [TOOL_CALLS]name[ARGS]{...} -----------------------------

_MISTRAL_MARKER = "[TOOL_CALLS]"
_MISTRAL_NAMED = re.compile(r"\s*([^\s\[\]{}]+)\s*(?:\[CALL_ID\]\s*([^\s\[]*)\s*)?\[ARGS\]\s*")


def _mistral_calls(text: str, context: _Context) -> list[_Found]:
    """Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}]`` or ``name[ARGS]{...}``.

    A payload is read only up to the next marker, which keeps degenerate output that repeats
    the marker thousands of times fast.
    """
    found = []
    start = text.find(_MISTRAL_MARKER)
    while start != -1:
        after = start + len(_MISTRAL_MARKER)
        next_start = text.find(_MISTRAL_MARKER, after)
        calls, length = _mistral_payload(
            text[after : len(text) if next_start == -1 else next_start]
        )
        found.append(_Found(start, after + length, tuple(calls)))
        start = next_start
    return found


def _mistral_payload(payload: str) -> tuple[list[ToolCall], int]:
    """The calls at the start of the text after a ``[TOOL_CALLS]`` marker, and their length."""
    named = _MISTRAL_NAMED.match(payload)
    json_start = named.end() if named else len(payload) - len(payload.lstrip())
    try:
        value, end = _DECODER.raw_decode(payload, json_start)
    except (ValueError, RecursionError):
        return [], 0
    if named is None:
        return _calls_from_json([value], explicit=True), end
    arguments = _as_arguments(value)
    if arguments is None:
        return [], end
    call = ToolCall(name=named.group(1), arguments=arguments, id=named.group(2) or None)
    return [call], end


# --- Llama: <|python_tag|>{...}; {...} and <|python_start|>[f(a=1)]<|python_end|> -------------

_PYTHON_TAG = re.compile(
    r"<\|python_tag\|>(.*?)(?=<\|eom_id\|>|<\|eot_id\|>|<\|python_tag\|>|\Z)", re.DOTALL
)
_PYTHON_START = re.compile(r"<\|python_start\|>(.*?)(?:<\|python_end\|>|\Z)", re.DOTALL)


def _python_tag_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 3.1: ``<|python_tag|>`` then JSON calls separated by ``;``."""
    return [
        _Found(tag.start(), tag.end(), tuple(_json_or_pythonic(tag.group(1), context)))
        for tag in _PYTHON_TAG.finditer(text)
    ]


def _python_start_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 4: ``<|python_start|>[f(a=1)]<|python_end|>`` (JSON calls are read too)."""
    return [
        _Found(block.start(), block.end(), tuple(_json_or_pythonic(block.group(1), context)))
        for block in _PYTHON_START.finditer(text)
    ]


# --- Whole-message formats: bare JSON (Llama 3) and pythonic lists (Llama 3.2/4) -------------


def _bare_json_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 3: the whole message is ``{"name": ..., "parameters": {...}}`` (``;`` between)."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return []
    values = _json_values(stripped)
    if values is None:
        return []
    return [_Found(0, len(text), tuple(_calls_from_json(values, explicit=False)))]


_PYTHON_FENCE = re.compile(
    r"```[ \t]*(?:python|py|tool_code)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE
)


def _pythonic_message_calls(text: str, context: _Context) -> list[_Found]:
    """The whole message (maybe in a ```python fence) is ``[f(a=1), g(b="x")]`` or ``f(a=1)``."""
    stripped = text.strip()
    fenced = _PYTHON_FENCE.fullmatch(stripped)
    source = fenced.group(1) if fenced else stripped
    return [_Found(0, len(text), tuple(_pythonic_calls(source, context)))]


_LOOKS_PYTHONIC = re.compile(r"\[?\s*[A-Za-z_][\w.]*\s*\(.*\)\s*\]?", re.DOTALL)


def _pythonic_calls(source: str, context: _Context) -> list[ToolCall]:
    """Calls written as Python: a bracketed list of calls, or one call of a known tool.

    Every argument is a keyword with a literal value, read with ``ast.literal_eval``; a single
    call counts only if its name is in ``tool_names``, so ``print(x)`` is never a call.
    """
    source = source.strip()
    if not _LOOKS_PYTHONIC.fullmatch(source):
        return []
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    nodes: list[ast.expr]
    if isinstance(node, ast.List):
        nodes, listed = node.elts, True
    elif isinstance(node, ast.Call):
        nodes, listed = [node], False
    else:
        return []
    calls = []
    for call_node in nodes:
        call = _call_from_ast(call_node)
        if call is None:
            return []
        calls.append(call)
    if not listed and (context.names is None or calls[0].name not in context.names):
        return []
    return calls


def _call_from_ast(node: ast.expr) -> ToolCall | None:
    """``f(a=1, b="x")`` as a call; Llama's built-in ``brave_search.call(...)`` names the tool."""
    if not isinstance(node, ast.Call) or node.args:
        return None
    if isinstance(node.func, ast.Name):
        name = node.func.id
    elif (
        isinstance(node.func, ast.Attribute)
        and node.func.attr == "call"
        and isinstance(node.func.value, ast.Name)
    ):
        name = node.func.value.id
    else:
        return None
    arguments = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            return None
        try:
            arguments[keyword.arg] = json_value(ast.literal_eval(keyword.value))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return ToolCall(name=name, arguments=arguments)


# --- Fenced blocks: ```json {...} ``` and Gemma's ```tool_code f(a=1) ``` --------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_JSON_FENCE_TAGS = frozenset({"", "json", "jsonc", "json5", "tool_call", "tool_calls"})


def _fenced_calls(text: str, context: _Context) -> list[_Found]:
    """Fenced JSON call objects (or lists of them), and pythonic calls in ``tool_code`` fences."""
    found = []
    for fence in _FENCE.finditer(text):
        tag = fence.group(1).lower()
        if tag in _JSON_FENCE_TAGS:
            values = _json_values(fence.group(2)) or []
            calls = _calls_from_json(values, explicit=False) if len(values) == 1 else []
        elif tag == "tool_code":
            calls = _pythonic_calls(fence.group(2), context)
        else:
            continue
        found.append(_Found(fence.start(), fence.end(), tuple(calls)))
    return found


# Order breaks ties between readings of the same stretch of text: earlier wins.
_PARSERS: tuple[Callable[[str, _Context], list[_Found]], ...] = (
    _bare_json_calls,
    _pythonic_message_calls,
    _hermes_calls,
    _mistral_calls,
    _python_tag_calls,
    _python_start_calls,
    _fenced_calls,
    _qwen_xml_calls,
)

_CALL_LIKE = re.compile(
    r"<tool_call>|\[TOOL_CALLS\]|<\|python_tag\|>|<\|python_start\|>|<function="
    r'|"(?:name|tool_name|tool)"\s*:\s*"[^"\n]*"\s*,\s*"(?:arguments|parameters|args)"\s*:'
    r'|"function"\s*:\s*\{\s*"name"\s*:'
    r'|"tool_calls"\s*:\s*\['
)
