"""Tool calls a model made, whether returned as structured parts or written as text.

Small local models often write their tool calls as text instead of returning structured calls,
each family in its own format. ``parse_tool_calls`` reads the formats they use and returns only
the calls a model really made: reasoning inside ``<think>``, prose that names a tool, code
answers, JSON that is not a call and truncated JSON are not calls. Nothing here raises, whatever
the text.

Reading takes time linear in the text, whatever it holds: no pattern rescans the rest of the text
from each of many starting points, a stretch is decoded once however often a degenerate answer
repeats it, and Python syntax (whose parser is costly) is read only up to a fixed budget per
message (``AST_BUDGET``).
"""

from __future__ import annotations

import ast
import bisect
import functools
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pytest_punie.tools.schema import coerce, json_value, property_types

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["AST_BUDGET", "ToolCall", "find_call_like_text", "parse_tool_calls"]

_T = TypeVar("_T")


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
    markers = [marker.start() for marker in _CALL_LIKE.finditer(visible)]
    # Is there a marker in a gap between the stretches that parsed (each gap looked up once)?
    gap_start = 0
    for group in [*found, _Found(len(visible) + 1, len(visible) + 1, ())]:
        index = bisect.bisect_left(markers, gap_start)
        if index < len(markers) and markers[index] < group.start:
            return True
        gap_start = group.end
    return False


# --- Plumbing -------------------------------------------------------------------------------


AST_BUDGET = 60_000
"""How much Python syntax one message may have parsed, in units of ``_ast_cost`` (about a
microsecond each): some 7,000 brackets, commas and ``=``. ``ast.parse`` builds a node for each
of them, a hundred times slower than the JSON decoder; past the budget, pythonic calls and
Python literals are no longer read."""

_AST_COST_CHARACTERS = "()[]{},:="


def _ast_cost(source: str) -> int:
    """Roughly what parsing ``source`` costs: a fixed part, each token that makes a node, length."""
    structural = sum(source.count(character) for character in _AST_COST_CHARACTERS)
    return 10 + 8 * structural + len(source) // 100


@dataclass
class _Context:
    """What the parsers need besides the text, and what they share while reading one message."""

    names: frozenset[str] | None
    schemas: Mapping[str, Any]
    ast_budget: int = AST_BUDGET
    memo: dict[tuple[str, str], Any] = field(default_factory=dict)

    def afford_ast(self, source: str) -> bool:
        """Whether ``source`` may still be parsed as Python; if so, its cost is spent."""
        cost = _ast_cost(source)
        if cost > self.ast_budget:
            return False
        self.ast_budget -= cost
        return True

    def cached(self, kind: str, body: str, read: Callable[[str], _T]) -> _T:
        """``read(body)``, computed once per message for each ``(kind, body)``: a degenerate
        answer that repeats one block thousands of times costs one reading, not thousands."""
        key = (kind, body)
        if key not in self.memo:
            self.memo[key] = read(body)
        result: _T = self.memo[key]
        return result


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


def _split_calls(
    text: str, opening: str, read: Callable[[str], tuple[tuple[ToolCall, ...], int]]
) -> list[_Found]:
    """The calls in each stretch of ``text`` that starts with ``opening`` and ends at or before
    the next one. ``read(piece)`` gets the text from after an opening to the next (or to the
    end) and returns the calls there and how many of its characters they span.

    Degenerate answers repeat a marker thousands of times: splitting, reading each different
    piece once and finding where the pieces that hold calls start all run in C, so a piece
    costs far less than a Python loop turn.
    """
    pieces = text.split(opening)
    if len(pieces) < 2:
        return []
    # dict.fromkeys: each different piece once, in order (the AST budget is spent in order)
    readings = {piece: read(piece) for piece in dict.fromkeys(pieces[1:])}
    if not any(calls for calls, _ in readings.values()):
        return []
    ends = list(itertools.accumulate(map(len, pieces)))  # where each piece ends, but openings
    found = []
    for index in [index for index in range(1, len(pieces)) if readings[pieces[index]][0]]:
        start = ends[index - 1] + (index - 1) * len(opening)
        calls, length = readings[pieces[index]]
        found.append(_Found(start, start + len(opening) + length, calls))
    return found


# --- JSON call objects ----------------------------------------------------------------------

# strict=False: models write raw newlines inside JSON strings (file contents, code).
_DECODER = json.JSONDecoder(strict=False)
_SEPARATOR = re.compile(r"\s*[;,]?\s*")
_NAME_KEYS = ("name", "tool_name", "tool", "function")
_ARGUMENT_KEYS = ("arguments", "parameters", "args")


_CALL_KEY_HINTS = ("name", "tool", "function", "\\")


def _may_name_a_call(body: str) -> bool:
    """Whether decoded ``body`` could hold a call object: every name key (``name``,
    ``tool_name``, ``tool``, ``function``, ``tool_calls``) holds one of these words, unless it is
    written with escapes. Checked before decoding, so text that cannot be a call costs no
    failed decode (a failed ``raw_decode`` costs a hundred times a substring search)."""
    return any(hint in body for hint in _CALL_KEY_HINTS)


def _json_calls(body: str, *, explicit: bool) -> list[ToolCall] | None:
    """The calls in ``body`` read as JSON values (one, or several separated by ``;`` or ``,``),
    each a call object, a list of them or ``{"tool_calls": [...]}``; None if it is not JSON.

    A value written exactly like one before it is not decoded again: a model stuck in a loop
    writes the same calls thousands of times. More than ``_MAX_OTHER_VALUES`` values that hold
    no call make the stretch not calls (None): text of a million tiny values (``{}{}{}...``)
    costs a thousand of them.
    """
    body = body.strip()
    if not body or not _may_name_a_call(body):
        return None
    calls: list[ToolCall] = []
    # The values read so far, by their first characters: (their text, their calls). Only a
    # value that ends with its own closing character reads the same wherever it is written:
    # "1" is also the start of "12".
    seen: dict[str, list[tuple[str, list[ToolCall]]]] = {}
    others = 0
    position = 0
    while position < len(body):
        head = body[position : position + _HEAD]
        known = next(
            (item for item in seen.get(head, ()) if body.startswith(item[0], position)), None
        )
        if known is not None:
            end = position + len(known[0])
            value_calls = known[1]
        else:
            try:
                value, end = _DECODER.raw_decode(body, position)
            except (ValueError, RecursionError):
                return None
            value_calls = _calls_from_json([value], explicit=explicit)
            same_head = seen.setdefault(head, [])
            if body[end - 1] in '}]"' and len(same_head) < _HEAD:
                same_head.append((body[position:end], value_calls))
        if not value_calls:
            others += 1
            if others > _MAX_OTHER_VALUES:
                return None
        calls.extend(value_calls)
        separator = _SEPARATOR.match(body, end)
        position = separator.end() if separator else end
    return calls


_HEAD = 16
_MAX_OTHER_VALUES = 1_000


def _single_json_value(body: str) -> list[Any]:
    """``[value]`` if ``body`` is one JSON value that could hold a call (a trailing separator
    allowed); else ``[]``."""
    body = body.strip()
    if not body or not _may_name_a_call(body):
        return []
    try:
        value, end = _DECODER.raw_decode(body)
    except (ValueError, RecursionError):
        return []
    separator = _SEPARATOR.match(body, end)
    return [value] if separator is not None and separator.end() == len(body) else []


def _literal_values(body: str, context: _Context) -> list[Any] | None:
    """``body`` read as a Python dict or list literal (single quotes, ``True``); else None."""
    body = body.strip()
    if not (body.startswith(("{", "[")) and body.endswith(("}", "]"))):
        return None
    if not _may_name_a_call(body) or not context.afford_ast(body):
        return None
    try:
        return [json_value(ast.literal_eval(body))]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


_CALL_OBJECT_KEYS = frozenset({*_NAME_KEYS, "tool_calls"})


def _call_objects(items: list[Any] | tuple[Any, ...]) -> list[dict[str, Any]]:
    """The items that could be call objects: dicts with a name key or ``tool_calls``.

    A comprehension, so a list of a hundred thousand other values costs milliseconds.
    """
    return [item for item in items if type(item) is dict and not _CALL_OBJECT_KEYS.isdisjoint(item)]


def _calls_from_json(values: list[Any], *, explicit: bool) -> list[ToolCall]:
    """The calls in decoded JSON: call objects, lists of them, or ``{"tool_calls": [...]}``.

    ``explicit`` is true behind a tool-call marker, where ``{"name": ...}`` alone is a call
    without arguments; elsewhere an object needs an arguments key to count as a call.
    """
    calls: list[ToolCall] = []
    for value in values:
        for item in _call_objects(value if isinstance(value, list) else (value,)):
            nested = item.get("tool_calls")
            for candidate in _call_objects(nested) if isinstance(nested, list) else (item,):
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
    name = None
    for key in _NAME_KEYS:  # loops, not next(generator): this runs once per call in the text
        if key in value:
            name = value[key]
            break
    if not isinstance(name, str) or not name.strip():
        return None
    arguments: dict[str, Any] | None = {} if explicit else None
    for key in _ARGUMENT_KEYS:
        if key in value:
            arguments = _as_arguments(value[key])
            break
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

    def read(body: str) -> list[ToolCall]:
        # Valid JSON is never pythonic-shaped, so skipping JSON that names no call is exact.
        calls = _json_calls(body, explicit=True)
        return calls if calls is not None else _pythonic_calls(body, context)

    return context.cached("marker", body, read)


# --- Hermes / Qwen2.5: <tool_call>{...}</tool_call> ----------------------------------------

_TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_CLOSE = "</tool_call>"
_FENCE_OPENING = re.compile(r"```[\w+-]*[ \t]*\n?")


def _unfence(text: str, opening: re.Pattern[str]) -> str | None:
    """The inside of ``text`` if all of it is one fenced block whose first line ``opening``
    matches, without the newline and blanks before the closing fence; else None.

    Written out rather than as one ``fullmatch`` with a lazy group: that tries each end of the
    group against the blanks after it, quadratic in a long run of blanks.
    """
    if len(text) < 6 or not text.endswith("```"):
        return None
    opened = opening.match(text)
    if opened is None or opened.end() > len(text) - 3:
        return None
    inside = text[opened.end() : len(text) - 3].rstrip(" \t")
    return inside.removesuffix("\n")


def _hermes_calls(text: str, context: _Context) -> list[_Found]:
    """Hermes / Qwen2.5: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

    The block may hold a list of calls, a fenced block, Qwen3-Coder XML, or a Python literal;
    a missing ``</tool_call>`` at the end of the text is tolerated (truncated JSON still fails).
    """
    return _split_calls(text, _TOOL_CALL_OPEN, functools.partial(_hermes_block, context=context))


def _hermes_block(piece: str, context: _Context) -> tuple[tuple[ToolCall, ...], int]:
    """The calls in the text after a ``<tool_call>``, up to its ``</tool_call>`` if any."""
    close = piece.find(_TOOL_CALL_CLOSE)
    if close == -1:
        return tuple(_calls_in_block(piece, context, closed=False)), len(piece)
    calls = _calls_in_block(piece[:close], context, closed=True)
    return tuple(calls), close + len(_TOOL_CALL_CLOSE)


def _calls_in_block(body: str, context: _Context, *, closed: bool) -> list[ToolCall]:
    body = body.strip()
    fenced = _unfence(body, _FENCE_OPENING)
    if fenced is not None:
        body = fenced.strip()
    if "<function=" in body:
        if closed and "</function>" not in body:
            body += "</function>"
        return [call for _, _, call in _xml_functions(body, context)]
    calls = _json_calls(body, explicit=True)
    if calls is not None:
        return calls
    values = _literal_values(body, context)
    if values is not None:
        return _calls_from_json(values, explicit=True)
    return _pythonic_calls(body, context)


# --- Qwen3-Coder XML: <function=NAME><parameter=KEY>value</parameter></function> -------------

_XML_CLOSE = "</function>"
# A name stops at the next "<": otherwise each of many unclosed "<function=a" would scan on to
# the far end of the text, and reading would take time quadratic in its length.
_XML_FUNCTION = re.compile(r"<function=([^<>\n]*)>(.*?)</function>", re.DOTALL)
_XML_PARAMETER_OPEN = "<parameter="
_XML_PARAMETER_CLOSE = "</parameter>"
_XML_NAME = re.compile(r"([^<>\n]*)>")


def _qwen_xml_calls(text: str, context: _Context) -> list[_Found]:
    """Qwen3-Coder XML without the ``<tool_call>`` wrapper (also Llama 3.1's JSON body)."""
    return [_Found(start, end, (call,)) for start, end, call in _xml_functions(text, context)]


def _xml_functions(text: str, context: _Context) -> list[tuple[int, int, ToolCall]]:
    """Each ``<function=NAME>...</function>`` in ``text`` that reads as a call, with its span."""
    # Search only up to the last closing tag: an unclosed <function= must not rescan the rest.
    last_close = text.rfind(_XML_CLOSE)
    if last_close == -1:
        return []
    functions = [
        (function.start(), function.end(), (function.group(1), function.group(2)))
        for function in _XML_FUNCTION.finditer(text, 0, last_close + len(_XML_CLOSE))
    ]
    readings = {
        (name, body): _xml_call(name, body, context)
        for name, body in dict.fromkeys(parts for _, _, parts in functions)
    }
    return [
        (start, end, call)
        for start, end, parts in functions
        if (call := readings[parts]) is not None
    ]


def _xml_call(raw_name: str, body: str, context: _Context) -> ToolCall | None:
    name = raw_name.strip()
    if not name:
        return None
    # A value runs to its </parameter>, or to the next <parameter= (split on here), or to the end.
    pieces = body.split(_XML_PARAMETER_OPEN)
    readings = {piece: _xml_parameter(piece) for piece in dict.fromkeys(pieces[1:])}
    parameters = [reading for piece in pieces[1:] if (reading := readings[piece]) is not None]
    if not parameters:
        # Llama 3.1 writes <function=NAME>{"key": "value"}</function>.
        arguments = _as_arguments(body) if body.strip() else {}
        return None if arguments is None else ToolCall(name=name, arguments=arguments)
    if not all(key for key, _ in parameters):
        return None
    properties = _properties(context.schemas.get(name))
    # dict(): a key given twice keeps its first place and its last value
    arguments = {
        key: coerce(value, _affordable_spec(value, properties.get(key), context))
        for key, value in dict(parameters).items()
    }
    return ToolCall(name=name, arguments=arguments)


def _xml_parameter(piece: str) -> tuple[str, str] | None:
    """The key and value of the text after a ``<parameter=``; None if no ``NAME>`` follows."""
    named = _XML_NAME.match(piece)
    if named is None:
        return None
    close = piece.find(_XML_PARAMETER_CLOSE, named.end())
    value = piece[named.end() : close if close != -1 else len(piece)]
    return named.group(1).strip(), _trim_newline(value)


def _affordable_spec(value: str, spec: Any, context: _Context) -> Any:
    """``spec``, or None (the value stays a string) when converting ``value`` to the array or
    object it asks for would parse Python syntax beyond the message's ``AST_BUDGET``."""
    if not isinstance(spec, Mapping) or not {"array", "object"} & set(property_types(spec)):
        return spec
    try:
        json.loads(value, strict=False)
    except (ValueError, RecursionError):
        return spec if context.afford_ast(value) else None
    return spec


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
    return _split_calls(text, _MISTRAL_MARKER, _mistral_payload)


def _mistral_payload(payload: str) -> tuple[tuple[ToolCall, ...], int]:
    """The calls at the start of the text after a ``[TOOL_CALLS]`` marker, and their length."""
    named = _MISTRAL_NAMED.match(payload)
    if named is None and not _may_name_a_call(payload):
        return (), 0
    json_start = named.end() if named else len(payload) - len(payload.lstrip())
    try:
        value, end = _DECODER.raw_decode(payload, json_start)
    except (ValueError, RecursionError):
        return (), 0
    if named is None:
        return tuple(_calls_from_json([value], explicit=True)), end
    arguments = _as_arguments(value)
    if arguments is None:
        return (), end
    return (ToolCall(name=named.group(1), arguments=arguments, id=named.group(2) or None),), end


# --- Llama: <|python_tag|>{...}; {...} and <|python_start|>[f(a=1)]<|python_end|> -------------

_PYTHON_TAG = "<|python_tag|>"
_PYTHON_TAG_ENDS = ("<|eom_id|>", "<|eot_id|>")
_PYTHON_START = "<|python_start|>"
_PYTHON_END = "<|python_end|>"


def _python_tag_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 3.1: ``<|python_tag|>`` then JSON calls separated by ``;``."""

    def read(piece: str) -> tuple[tuple[ToolCall, ...], int]:
        end = min((at for at in map(piece.find, _PYTHON_TAG_ENDS) if at != -1), default=len(piece))
        return tuple(_json_or_pythonic(piece[:end], context)), end

    return _split_calls(text, _PYTHON_TAG, read)


def _python_start_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 4: ``<|python_start|>[f(a=1)]<|python_end|>`` (JSON calls are read too)."""
    found = []
    start = text.find(_PYTHON_START)
    while start != -1:
        body = start + len(_PYTHON_START)
        close = text.find(_PYTHON_END, body)  # none: the block runs to the end, and is the last
        body_end, end = (close, close + len(_PYTHON_END)) if close != -1 else (len(text),) * 2
        calls = _json_or_pythonic(text[body:body_end], context)
        if calls:
            found.append(_Found(start, end, tuple(calls)))
        start = text.find(_PYTHON_START, end)
    return found


# --- Whole-message formats: bare JSON (Llama 3) and pythonic lists (Llama 3.2/4) -------------


def _bare_json_calls(text: str, context: _Context) -> list[_Found]:
    """Llama 3: the whole message is ``{"name": ..., "parameters": {...}}`` (``;`` between)."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return []
    calls = _json_calls(stripped, explicit=False)
    return [] if calls is None else [_Found(0, len(text), tuple(calls))]


_PYTHON_FENCE_OPENING = re.compile(r"```[ \t]*(?:python|py|tool_code)?[ \t]*\n", re.IGNORECASE)


def _pythonic_message_calls(text: str, context: _Context) -> list[_Found]:
    """The whole message (maybe in a ```python fence) is ``[f(a=1), g(b="x")]`` or ``f(a=1)``."""
    stripped = text.strip()
    fenced = _unfence(stripped, _PYTHON_FENCE_OPENING)
    source = fenced if fenced is not None else stripped
    return [_Found(0, len(text), tuple(_pythonic_calls(source, context)))]


_LOOKS_PYTHONIC = re.compile(r"\[?\s*[A-Za-z_][\w.]*\s*\(.*\)\s*\]?", re.DOTALL)


def _pythonic_calls(source: str, context: _Context) -> list[ToolCall]:
    """Calls written as Python: a bracketed list of calls, or one call of a known tool.

    Every argument is a keyword with a literal value, read with ``ast.literal_eval``; a single
    call counts only if its name is in ``tool_names``, so ``print(x)`` is never a call.
    """
    source = source.strip()
    if "(" not in source or not source.endswith((")", "]")):  # what the pattern needs, cheaply
        return []
    if not _LOOKS_PYTHONIC.fullmatch(source) or not context.afford_ast(source):
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
    fences = [
        (fence.start(), fence.end(), (fence.group(1), fence.group(2)))
        for fence in _FENCE.finditer(text)
    ]
    readings = {
        (tag, body): _fence_calls(tag, body, context)
        for tag, body in dict.fromkeys(parts for _, _, parts in fences)
    }
    return [_Found(start, end, calls) for start, end, parts in fences if (calls := readings[parts])]


def _fence_calls(tag: str, body: str, context: _Context) -> tuple[ToolCall, ...]:
    tag = tag.lower()
    if tag in _JSON_FENCE_TAGS:
        return tuple(_fenced_json_calls(body))
    if tag == "tool_code":
        return tuple(_pythonic_calls(body, context))
    return ()


def _fenced_json_calls(body: str) -> list[ToolCall]:
    """A fence holding one JSON value: the calls in it."""
    return _calls_from_json(_single_json_value(body), explicit=False)


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

# Alternatives grouped by their first character, so each "<" or '"' is tried once, not once
# per alternative (five times faster on text made of quotes).
_CALL_LIKE = re.compile(
    r"<(?:tool_call>|\|python_tag\|>|\|python_start\|>|function=)|\[TOOL_CALLS\]"
    r'|"(?:(?:name|tool_name|tool)"\s*:\s*"[^"\n]*"\s*,\s*"(?:arguments|parameters|args)"\s*:'
    r'|function"\s*:\s*\{\s*"name"\s*:'
    r'|tool_calls"\s*:\s*\[)'
)
