"""Tests for reading tool calls that models write as text."""

from __future__ import annotations

import json
import keyword
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.tools.parsing import ToolCall, find_call_like_text, parse_tool_calls

HERMES_XML = (
    "<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/app.py\n</parameter>\n"
    "<parameter=limit>\n20\n</parameter>\n</function>\n</tool_call>"
)

# (id, text, tool_names, expected calls as (name, arguments))
EXAMPLES: list[tuple[str, str, list[str] | None, list[tuple[str, dict[str, Any]]]]] = [
    # Hermes / Qwen2.5
    (
        "hermes",
        '<tool_call>\n{"name": "list_dir", "arguments": {"path": "."}}\n</tool_call>',
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "hermes-two-blocks",
        'Let me look.\n<tool_call>\n{"name": "list_dir", "arguments": {"path": "src"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n'
        "</tool_call>",
        None,
        [("list_dir", {"path": "src"}), ("read_file", {"path": "a.py"})],
    ),
    (
        "hermes-identical-blocks-are-two-calls",
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call>',
        None,
        [("ping", {}), ("ping", {})],
    ),
    (
        "hermes-list-in-one-block",
        '<tool_call>[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]'
        "</tool_call>",
        None,
        [("a", {"x": 1}), ("b", {})],
    ),
    (
        "hermes-parameters-key",
        '<tool_call>{"name": "grep", "parameters": {"pattern": "TODO"}}</tool_call>',
        None,
        [("grep", {"pattern": "TODO"})],
    ),
    (
        "hermes-arguments-as-json-string",
        '<tool_call>{"name": "grep", "arguments": "{\\"pattern\\": \\"x\\"}"}</tool_call>',
        None,
        [("grep", {"pattern": "x"})],
    ),
    (
        "hermes-missing-close-at-end",
        '<tool_call>\n{"name": "list_dir", "arguments": {"path": "."}}\n',
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "hermes-raw-newline-in-string",
        '<tool_call>{"name": "write_file", "arguments": {"content": "a\nb"}}</tool_call>',
        None,
        [("write_file", {"content": "a\nb"})],
    ),
    (
        "hermes-fenced-inside-is-one-call",
        '<tool_call>\n```json\n{"name": "list_dir", "arguments": {"path": "."}}\n```\n</tool_call>',
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "hermes-python-literal",
        "<tool_call>{'name': 'run', 'arguments': {'check': True}}</tool_call>",
        None,
        [("run", {"check": True})],
    ),
    # Qwen3-Coder XML
    ("qwen-xml", HERMES_XML, None, [("read_file", {"path": "src/app.py", "limit": "20"})]),
    (
        "qwen-xml-without-wrapper",
        "<function=list_dir>\n<parameter=path>\n.\n</parameter>\n</function>",
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "qwen-xml-multiline-value",
        "<tool_call>\n<function=write_file>\n<parameter=content>\nline 1\nline 2\n</parameter>\n"
        "</function>\n</tool_call>",
        None,
        [("write_file", {"content": "line 1\nline 2"})],
    ),
    (
        "qwen-xml-two-calls",
        "<tool_call>\n<function=a>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=b>\n<parameter=x>\n1\n</parameter>\n</function>\n</tool_call>",
        None,
        [("a", {}), ("b", {"x": "1"})],
    ),
    (
        "llama31-function-tag",
        '<function=spotify_trending_songs>{"n": "5"}</function>',
        None,
        [("spotify_trending_songs", {"n": "5"})],
    ),
    (
        "qwen-xml-missing-function-close",
        "<tool_call>\n<function=list_dir>\n<parameter=path>\n.\n</parameter>\n</tool_call>",
        None,
        [("list_dir", {"path": "."})],
    ),
    # Llama 3
    (
        "llama-bare-json-type-function",
        '{"type": "function", "name": "get_time", "parameters": {}}',
        None,
        [("get_time", {})],
    ),
    (
        "llama-builtin-call",
        '<|python_tag|>brave_search.call(query="mlx")<|eom_id|>',
        ["brave_search"],
        [("brave_search", {"query": "mlx"})],
    ),
    (
        "llama-bare-json",
        '  {"name": "get_weather", "parameters": {"city": "Paris"}}\n',
        None,
        [("get_weather", {"city": "Paris"})],
    ),
    (
        "llama-bare-json-arguments",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        None,
        [("get_weather", {"city": "Paris"})],
    ),
    (
        "llama-python-tag",
        '<|python_tag|>{"name": "search", "parameters": {"q": "mlx"}}<|eom_id|>',
        None,
        [("search", {"q": "mlx"})],
    ),
    (
        "llama-python-tag-several",
        '<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"n": 2}}',
        None,
        [("a", {}), ("b", {"n": 2})],
    ),
    # Mistral
    (
        "mistral",
        '[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]</s>',
        None,
        [("a", {"x": 1}), ("b", {})],
    ),
    (
        "mistral-args-form",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}',
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
    ),
    (
        "mistral-call-id-form",
        '[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Oslo"}',
        None,
        [("get_weather", {"city": "Oslo"})],
    ),
    # Fenced JSON
    (
        "fenced-name-arguments",
        'I will list it.\n```json\n{"name": "list_dir", "arguments": {"path": "."}}\n```',
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "fenced-untagged-tool-args",
        '```\n{"tool": "list_dir", "args": {"path": "."}}\n```',
        None,
        [("list_dir", {"path": "."})],
    ),
    (
        "fenced-tool-name-list",
        '```json\n[{"tool_name": "a", "arguments": {}}, {"tool_name": "b", "arguments": {"k": '
        '"v"}}]\n```',
        None,
        [("a", {}), ("b", {"k": "v"})],
    ),
    (
        "fenced-openai-function",
        '```json\n{"type": "function", "function": {"name": "a", "arguments": "{\\"x\\": 1}"}}'
        "\n```",
        None,
        [("a", {"x": 1})],
    ),
    (
        "fenced-openai-tool-calls",
        '```json\n{"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a",'
        ' "arguments": "{}"}}]}\n```',
        None,
        [("a", {})],
    ),
    # Pythonic
    (
        "pythonic-list",
        '[list_dir(path="."), read_file(path="a.py", limit=-3)]',
        None,
        [("list_dir", {"path": "."}), ("read_file", {"path": "a.py", "limit": -3})],
    ),
    (
        "pythonic-list-in-fence",
        '```python\n[get_weather(city="Paris", units=["c"])]\n```',
        None,
        [("get_weather", {"city": "Paris", "units": ["c"]})],
    ),
    (
        "pythonic-single-known-tool",
        'list_dir(path=".")',
        ["list_dir"],
        [("list_dir", {"path": "."})],
    ),
    (
        "pythonic-python-start",
        '<|python_start|>[search(q="x")]<|python_end|>',
        None,
        [("search", {"q": "x"})],
    ),
    (
        "gemma-tool-code",
        'Checking.\n```tool_code\nget_weather(city="Paris")\n```',
        ["get_weather"],
        [("get_weather", {"city": "Paris"})],
    ),
    # Several formats in one message keep their order
    (
        "mixed-formats-in-order",
        '```json\n{"name": "a", "arguments": {}}\n```\nthen\n'
        '<tool_call>{"name": "b", "arguments": {}}</tool_call>\n'
        "<function=c>\n</function>",
        None,
        [("a", {}), ("b", {}), ("c", {})],
    ),
    # Think blocks
    (
        "think-hides-call",
        '<think>I could do <tool_call>{"name": "a", "arguments": {}}</tool_call></think>Done.',
        None,
        [],
    ),
    (
        "think-then-call",
        '<think>Need files.</think>\n<tool_call>{"name": "list_dir", "arguments": {}}</tool_call>',
        None,
        [("list_dir", {})],
    ),
    (
        "think-unclosed-hides-rest",
        'Ok <think>maybe <tool_call>{"name": "a", "arguments": {}}</tool_call>',
        None,
        [],
    ),
    (
        "think-opened-in-prompt",
        'Plan: call {"name": "a", "arguments": {}}</think><tool_call>{"name": "b", '
        '"arguments": {}}</tool_call>',
        None,
        [("b", {})],
    ),
    # tool_names filtering
    (
        "filter-drops-unknown",
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "list_dir", "arguments": {}}</tool_call>',
        ["list_dir"],
        [("list_dir", {})],
    ),
    ("filter-empty-tool-names", '{"name": "x", "parameters": {}}', [], []),
    ("filter-drops-all", '{"name": "x", "parameters": {}}', ["list_dir"], []),
    # Not calls
    ("prose-names-tool", "I would use list_dir to see the files.", ["list_dir"], []),
    ("prose-names-call", "Try list_dir(path='.') next.", ["list_dir"], []),
    ("code-print", 'print("hello")', None, []),
    ("code-print-known-name-missing", "print(end='')", ["list_dir"], []),
    ("code-single-call-no-names", 'list_dir(path=".")', None, []),
    (
        "code-block-def",
        "```python\ndef list_dir(path):\n    return os.listdir(path)\n```",
        ["list_dir"],
        [],
    ),
    ("code-list-comprehension", "[f(x) for x in xs]", None, []),
    ("pythonic-positional", "[list_dir('.')]", None, []),
    ("pythonic-non-literal", "[list_dir(path=os.getcwd())]", None, []),
    ("json-not-a-call", '```json\n{"files": ["a.py", "b.py"]}\n```', None, []),
    ("json-name-without-arguments", '{"name": "Alice"}', None, []),
    ("truncated-hermes", '<tool_call>\n{"name": "list_dir", "arguments": {"path": ', None, []),
    (
        "truncated-qwen-xml",
        "<tool_call>\n<function=list_dir>\n<parameter=path>\n.",
        None,
        [],
    ),
    ("truncated-mistral", '[TOOL_CALLS][{"name": "a", "arguments": {"x"', None, []),
    ("truncated-bare-json", '{"name": "a", "parameters": {"x": 1}', None, []),
    ("arguments-list", '<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>', None, []),
    ("arguments-bad-string", '<tool_call>{"name": "a", "arguments": "oops"}</tool_call>', None, []),
    ("empty-name", '<tool_call>{"name": "", "arguments": {}}</tool_call>', None, []),
    ("name-not-string", '<tool_call>{"name": 3, "arguments": {}}</tool_call>', None, []),
    ("bare-json-then-prose", '{"name": "a", "parameters": {}}\nHope that helps!', None, []),
    ("empty", "", None, []),
]


@pytest.mark.parametrize(
    ("text", "tool_names", "expected"),
    [pytest.param(text, names, expected, id=case) for case, text, names, expected in EXAMPLES],
)
def test_parse_tool_calls_examples(
    text: str, tool_names: list[str] | None, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    calls = parse_tool_calls(text, tool_names)
    assert [(call.name, call.arguments) for call in calls] == expected
    assert all(call.source == "text" for call in calls)


def test_quoted_call_inside_arguments_is_not_a_second_call() -> None:
    text = json.dumps(
        {"name": "write_file", "arguments": {"content": "<function=rm>\n</function>"}}
    )
    assert parse_tool_calls(text) == [
        ToolCall("write_file", {"content": "<function=rm>\n</function>"})
    ]


def test_mistral_call_id_is_kept() -> None:
    (call,) = parse_tool_calls('[TOOL_CALLS]a[CALL_ID]abc123[ARGS]{"x": 1}')
    assert call.id == "abc123"
    assert call.to_json() == {"name": "a", "arguments": {"x": 1}, "source": "text"}


def test_tool_names_given_as_a_single_string() -> None:
    assert parse_tool_calls("list_dir(path='.')", "list_dir") == [
        ToolCall("list_dir", {"path": "."})
    ]


# --- Schemas type Qwen3-Coder XML values ----------------------------------------------------

SCHEMAS: dict[str, dict[str, Any]] = {
    "edit": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "line": {"type": "integer"},
            "ratio": {"type": "number"},
            "dry_run": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "options": {"type": "object"},
            "note": {"type": ["null", "string"]},
            "code": {"type": "string"},
        },
    }
}


def _xml(**values: str) -> str:
    parameters = "".join(
        f"<parameter={key}>\n{value}\n</parameter>\n" for key, value in values.items()
    )
    return f"<tool_call>\n<function=edit>\n{parameters}</function>\n</tool_call>"


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        pytest.param("12", "line", 12, id="integer"),
        pytest.param("-3", "line", -3, id="negative-integer"),
        pytest.param("0.5", "ratio", 0.5, id="number"),
        pytest.param("2", "ratio", 2, id="integral-number"),
        pytest.param("1e3", "ratio", 1000.0, id="exponent-number"),
        pytest.param("true", "dry_run", True, id="boolean"),
        pytest.param("False", "dry_run", False, id="boolean-capitalised"),
        pytest.param('["a", "b"]', "tags", ["a", "b"], id="array-json"),
        pytest.param("['a', 'b']", "tags", ["a", "b"], id="array-python"),
        pytest.param('{"force": true}', "options", {"force": True}, id="object"),
        pytest.param("null", "note", None, id="nullable-null"),
        pytest.param("hi", "note", "hi", id="nullable-string"),
        pytest.param("42", "code", "42", id="string-stays-string"),
        pytest.param("twelve", "line", "twelve", id="bad-integer-stays-string"),
        pytest.param("1.5", "line", "1.5", id="float-for-integer-stays-string"),
        pytest.param("nan", "ratio", "nan", id="nan-stays-string"),
        pytest.param("1e999", "ratio", "1e999", id="infinite-stays-string"),
        pytest.param("yes", "dry_run", "yes", id="bad-boolean-stays-string"),
        pytest.param("[1, 2", "tags", "[1, 2", id="broken-array-stays-string"),
        pytest.param('["a"]', "options", '["a"]', id="array-for-object-stays-string"),
        pytest.param("9" * 5000, "line", "9" * 5000, id="huge-integer-stays-string"),
        pytest.param("7", "unknown", "7", id="no-schema-stays-string"),
    ],
)
def test_schema_types_xml_values(raw: str, key: str, expected: Any) -> None:
    (call,) = parse_tool_calls(_xml(**{key: raw}), schemas=SCHEMAS)
    assert call.arguments == {key: expected}
    assert type(call.arguments[key]) is type(expected)


def test_xml_values_are_strings_without_schemas() -> None:
    (call,) = parse_tool_calls(_xml(line="12", dry_run="true"))
    assert call.arguments == {"line": "12", "dry_run": "true"}


@pytest.mark.parametrize(
    "schemas",
    [
        pytest.param({"edit": "not a schema"}, id="schema-not-a-mapping"),
        pytest.param({"edit": {"properties": []}}, id="properties-not-a-mapping"),
        pytest.param({"edit": {"properties": {"line": {"type": 7}}}}, id="type-not-a-string"),
        pytest.param({"edit": {"properties": {"line": {"type": {"a": 1}}}}}, id="type-a-dict"),
        pytest.param({"edit": {"properties": {"line": {"type": "weird"}}}}, id="unknown-type"),
    ],
)
def test_malformed_schemas_leave_strings(schemas: Any) -> None:
    (call,) = parse_tool_calls(_xml(line="12"), schemas=schemas)
    assert call.arguments == {"line": "12"}


# --- find_call_like_text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('<tool_call>{"name": "a", "arguments": {"x": </tool_call>', True, id="hermes"),
        pytest.param('<tool_call>{"name": "a", "arguments": [1]}</tool_call>', True, id="bad-args"),
        pytest.param('[TOOL_CALLS][{"name": "a", "arguments": {"x', True, id="mistral"),
        pytest.param("<|python_tag|>{'name': ", True, id="python-tag"),
        pytest.param("<function=list_dir>\n<parameter=path>\n.", True, id="xml-unclosed"),
        pytest.param('{"name": "a", "arguments": {"x": 1}', True, id="truncated-json"),
        pytest.param('```json\n{"name": "a", "arguments": {"x": 1\n```', True, id="fenced"),
        pytest.param(
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_call>{"name": ',
            True,
            id="second-call-broken",
        ),
        pytest.param('<tool_call>{"name": "a", "arguments": {}}</tool_call>', False, id="parsed"),
        pytest.param(
            json.dumps({"name": "a", "arguments": {"text": '"name": "b", "arguments": {'}}),
            False,
            id="marker-inside-parsed-call",
        ),
        pytest.param("I would use list_dir here.", False, id="prose"),
        pytest.param('{"name": "Alice", "age": 3}', False, id="json-data"),
        pytest.param('<think><tool_call>{"name": </think>No call.', False, id="in-think"),
        pytest.param("", False, id="empty"),
    ],
)
def test_find_call_like_text(text: str, expected: bool) -> None:
    assert find_call_like_text(text) is expected


# --- Properties -----------------------------------------------------------------------------

FRAGMENTS = [
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<|python_tag|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|eom_id|>",
    "<function=",
    "</function>",
    "<parameter=",
    "</parameter>",
    "```",
    "```json\n",
    "```python\n",
    "```tool_code\n",
    '{"name": "list_dir", "arguments": {"path": "."}}',
    '{"name": ',
    '"arguments": ',
    '"parameters": ',
    '{"function": {"name": "a", "arguments": "{}"}}',
    '"tool_calls": [',
    "list_dir(path='.')",
    "[f(a=1), g(b=[1, {'c': None}])]",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    '"',
    "'",
    ",",
    ";",
    ":",
    "=",
    "\n",
    "1e999",
    "9" * 5000,
    "[" * 2000,
    "{" * 2000,
    "-" * 300,
    "\\u",
    "\ud7ff\U0010ffff\u2028\x00",
]

ANY_TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=25).map("".join),
)
TOOL_NAMES = st.lists(st.sampled_from(["list_dir", "read_file", "a", "f", "g", "name"]))

SAFE_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="<`"), max_size=12)
IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(SAFE_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
JSON_ARGUMENTS = st.dictionaries(SAFE_TEXT, JSON_VALUES, max_size=4)
KEYWORD_ARGUMENTS = st.dictionaries(IDENTIFIER, JSON_VALUES, max_size=4)


def _dumps(value: Any) -> str:
    return json.dumps(value)


def _xml_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _xml_function(name: str, arguments: dict[str, Any]) -> str:
    parameters = "".join(
        f"<parameter={key}>\n{_xml_value(value)}\n</parameter>\n"
        for key, value in arguments.items()
    )
    return f"<function={name}>\n{parameters}</function>"


def _pythonic(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"


# id -> (render(name, arguments), keys must be identifiers, needs tool_names)
Renderer = Callable[[str, dict[str, Any]], str]
FORMATS: dict[str, tuple[Renderer, bool, bool]] = {
    "hermes": (
        lambda n, a: f"<tool_call>\n{_dumps({'name': n, 'arguments': a})}\n</tool_call>",
        False,
        False,
    ),
    "hermes-parameters": (
        lambda n, a: f"<tool_call>{_dumps({'name': n, 'parameters': a})}</tool_call>",
        False,
        False,
    ),
    "hermes-string-arguments": (
        lambda n, a: f"<tool_call>{_dumps({'name': n, 'arguments': _dumps(a)})}</tool_call>",
        False,
        False,
    ),
    "hermes-list": (
        lambda n, a: f"<tool_call>{_dumps([{'name': n, 'arguments': a}])}</tool_call>",
        False,
        False,
    ),
    "qwen-xml": (
        lambda n, a: f"<tool_call>\n{_xml_function(n, a)}\n</tool_call>",
        True,
        False,
    ),
    "qwen-xml-bare": (_xml_function, True, False),
    "llama-json": (lambda n, a: f"\n{_dumps({'name': n, 'parameters': a})}\n", False, False),
    "llama-python-tag": (
        lambda n, a: f"<|python_tag|>{_dumps({'name': n, 'parameters': a})}<|eom_id|>",
        False,
        False,
    ),
    "mistral": (
        lambda n, a: f"[TOOL_CALLS]{_dumps([{'name': n, 'arguments': a}])}",
        False,
        False,
    ),
    "mistral-args": (lambda n, a: f"[TOOL_CALLS]{n}[ARGS]{_dumps(a)}", False, False),
    "fenced-json": (
        lambda n, a: f"Calling:\n```json\n{_dumps({'name': n, 'arguments': a})}\n```\n",
        False,
        False,
    ),
    "fenced-tool-args": (
        lambda n, a: f"```\n{_dumps({'tool': n, 'args': a})}\n```",
        False,
        False,
    ),
    "fenced-tool-name": (
        lambda n, a: f"```json\n{_dumps([{'tool_name': n, 'arguments': a}])}\n```",
        False,
        False,
    ),
    "fenced-openai": (
        lambda n, a: (
            "```json\n"
            + _dumps({"type": "function", "function": {"name": n, "arguments": _dumps(a)}})
            + "\n```"
        ),
        False,
        False,
    ),
    "fenced-openai-tool-calls": (
        lambda n, a: (
            "```json\n"
            + _dumps({"tool_calls": [{"function": {"name": n, "arguments": _dumps(a)}}]})
            + "\n```"
        ),
        False,
        False,
    ),
    "pythonic-list": (lambda n, a: f"[{_pythonic(n, a)}]", True, False),
    "pythonic-fenced": (lambda n, a: f"```python\n[{_pythonic(n, a)}]\n```", True, False),
    "pythonic-single": (_pythonic, True, True),
    "python-start": (
        lambda n, a: f"<|python_start|>[{_pythonic(n, a)}]<|python_end|>",
        True,
        False,
    ),
}


def _schema_type(value: Any) -> str:
    for kind, name in [
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ]:
        if isinstance(value, kind):
            return name
    return "null"


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT, tool_names=st.none() | TOOL_NAMES)
def test_any_text_parses_without_error(text: str, tool_names: list[str] | None) -> None:
    calls = parse_tool_calls(text, tool_names)
    assert isinstance(calls, list)
    for call in calls:
        assert isinstance(call, ToolCall)
        assert isinstance(call.name, str)
        assert call.name
        assert isinstance(call.arguments, dict)
        assert call.source == "text"
    assert isinstance(find_call_like_text(text), bool)


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT, tool_names=TOOL_NAMES)
def test_calls_are_only_of_given_tools(text: str, tool_names: list[str]) -> None:
    assert {call.name for call in parse_tool_calls(text, tool_names)} <= set(tool_names)


@pytest.mark.parametrize("format_id", FORMATS)
@settings(max_examples=200, deadline=None)
@given(name=IDENTIFIER, data=st.data())
def test_rendered_call_parses_back(format_id: str, name: str, data: st.DataObject) -> None:
    render, identifier_keys, needs_names = FORMATS[format_id]
    arguments = data.draw(KEYWORD_ARGUMENTS if identifier_keys else JSON_ARGUMENTS)
    schemas = {
        name: {"properties": {key: {"type": _schema_type(v)} for key, v in arguments.items()}}
    }
    text = render(name, arguments)
    calls = parse_tool_calls(text, [name] if needs_names else None, schemas=schemas)
    assert [(call.name, call.arguments) for call in calls] == [(name, arguments)]
    assert not find_call_like_text(text)


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT, tool_names=st.none() | TOOL_NAMES)
def test_nothing_inside_think_is_a_call(text: str, tool_names: list[str] | None) -> None:
    wrapped = f"<think>{text}</think>"
    assert parse_tool_calls(wrapped, tool_names) == []
    assert not find_call_like_text(wrapped)


# --- Reading time is linear in the text -------------------------------------------------------

MEGABYTE = 1_000_000
SECONDS_PER_MEGABYTE = 0.5  # about 0.1 s of CPU on the slow CI machine; quadratic code took minutes

# (id, head, unit repeated to a megabyte, tail)
ADVERSARIAL_SHAPES: list[tuple[str, str, str, str]] = [
    ("function-unclosed", "", "<function=a", "</function>"),
    ("function-gt", "", "<function=a>", "</function>"),
    ("function-parameter", "", "<function=a><parameter=b>", "</function>"),
    ("parameter", "<function=a>", "<parameter=", "</function>"),
    ("parameter-named", "<tool_call><function=a>", "<parameter=a>", "</function></tool_call>"),
    ("tool-call-unclosed", "", "<tool_call>", ""),
    ("tool-call-brace", "", "<tool_call>{", "</tool_call>"),
    ("tool-call-fence", "<tool_call>", "```", ")]"),
    ("tool-call-bad-json", "", '<tool_call>{"name": x}', ""),
    ("tool-call-empty-values", '<tool_call>{"name": "a"}', "{}", "</tool_call>"),
    ("tool-call-strings", "<tool_call>", '"', "</function>"),
    ("mistral", "", "[TOOL_CALLS]", ""),
    ("mistral-brace", "", "[TOOL_CALLS]{", "]"),
    ("mistral-args", "", "[TOOL_CALLS]a[ARGS]{", ""),
    ("brace-nesting", "", "{", "}"),
    ("bracket-nesting", "", "[", "]"),
    ("pythonic-open", "", "[f(", ")]"),
    ("pythonic-list", "[", "f(a=1), ", "f(a=1)]"),
    ("python-tag", "", "<|python_tag|>", ""),
    ("python-tag-brace", "", "<|python_tag|>{", "}"),
    ("python-start", "", "<|python_start|>[f(", ")]"),
    ("json-fence-unclosed", "", "```json\n{", ""),
    ("fence-newline", "", "```\n", "```"),
    ("fence-blanks", "```\n", " ", "x"),
    ("python-fence-blanks", "```python\n[f(a=1)]\n", " ", "```"),
    ("think", "", "<think>", "</think>"),
    ("call-like-name", "", '"name": "a', ""),
    ("quotes", "", '"', "```"),
    ("json-calls", "", '{"name": "a", "arguments": {}}; {"tool": "b", "args": {"x": 1}}\n', ""),
    ("letters", "", "a", "()"),
]


def _fastest(read: Callable[[str], object], text: str) -> float:
    """The fastest of up to three readings (the machine is shared: one slow run is not ours)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        read(text)
        best = min(best, time.perf_counter() - start)
        if best < SECONDS_PER_MEGABYTE:
            break
    return best


def _megabyte(head: str, unit: str, tail: str) -> str:
    return head + unit * ((MEGABYTE - len(head) - len(tail)) // len(unit) + 1) + tail


@pytest.mark.parametrize(
    ("head", "unit", "tail"),
    [pytest.param(*shape[1:], id=shape[0]) for shape in ADVERSARIAL_SHAPES],
)
def test_adversarial_megabyte_reads_fast(head: str, unit: str, tail: str) -> None:
    text = _megabyte(head, unit, tail)
    assert len(text) >= MEGABYTE
    assert _fastest(parse_tool_calls, text) < SECONDS_PER_MEGABYTE
    assert _fastest(find_call_like_text, text) < SECONDS_PER_MEGABYTE


ADVERSARIAL_FRAGMENTS = [
    *FRAGMENTS[:40],  # the markers and punctuation above, without the long runs
    "<function=a",
    "<function=a>",
    "<parameter=a>",
    "<tool_call>{",
    "[TOOL_CALLS]{",
    "[TOOL_CALLS]a[ARGS]{",
    "[f(",
    "f(a=1), ",
    "<|python_tag|>{",
    "```json\n{",
    "```\n",
    " ",
    "\t",
    '"name": "a',
    '{"name": "a", "arguments": {}}',
    "{'name': 'a', 'arguments': {}}",
    "{}",
    "1",
]


@settings(max_examples=20, deadline=None)
@given(
    head=st.lists(st.sampled_from(ADVERSARIAL_FRAGMENTS), max_size=4).map("".join),
    unit=st.lists(
        st.one_of(st.sampled_from(ADVERSARIAL_FRAGMENTS), st.text(min_size=1, max_size=3)),
        min_size=1,
        max_size=6,
    ).map("".join),
    tail=st.lists(st.sampled_from(ADVERSARIAL_FRAGMENTS), max_size=4).map("".join),
)
def test_any_adversarial_megabyte_reads_fast(head: str, unit: str, tail: str) -> None:
    text = _megabyte(head, unit, tail)
    assert _fastest(parse_tool_calls, text) < SECONDS_PER_MEGABYTE
    assert _fastest(find_call_like_text, text) < SECONDS_PER_MEGABYTE


def test_calls_repeated_a_thousand_times_are_all_read() -> None:
    call = '<tool_call>{"name": "ping", "arguments": {"n": 1}}</tool_call>'
    assert parse_tool_calls(call * 1000) == [ToolCall("ping", {"n": 1})] * 1000
    bare = '{"name": "a", "arguments": {}}; {"name": "b", "arguments": {"x": [1]}}\n'
    calls = parse_tool_calls(bare * 500)
    assert [call.name for call in calls] == ["a", "b"] * 500
    xml = "<function=f><parameter=x>\n1\n</parameter></function>\n"
    assert parse_tool_calls(xml * 500) == [ToolCall("f", {"x": "1"})] * 500


def test_a_call_after_degenerate_markers_is_read() -> None:
    call = '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
    for junk in ["<function=a" * 5000, "<tool_call>" * 5000, "[TOOL_CALLS]" * 5000, "```\n" * 5000]:
        assert parse_tool_calls(junk + call) == [ToolCall("a", {})], junk[:20]
    assert parse_tool_calls("<function=a" * 5000 + "<function=b>{}</function>") == [ToolCall("b")]


def test_xml_repeated_parameter_keeps_its_first_place_and_last_value() -> None:
    text = "<function=f><parameter=a>1</parameter><parameter=b>2</parameter><parameter=a>3"
    assert parse_tool_calls(text + "</function>") == [ToolCall("f", {"a": "3", "b": "2"})]
    assert list(parse_tool_calls(text + "</function>")[0].arguments) == ["a", "b"]


def test_json_with_thousands_of_other_values_is_not_calls() -> None:
    call = '{"name": "a", "arguments": {}}'
    assert parse_tool_calls(f"<tool_call>{call}; {{}}</tool_call>") == [ToolCall("a")]
    assert parse_tool_calls(f"<tool_call>{call}{'{}' * 2000}</tool_call>") == []


def test_python_syntax_is_read_up_to_a_budget() -> None:
    one = "<tool_call>[f(a=1)]</tool_call>"
    assert parse_tool_calls(one) == [ToolCall("f", {"a": 1})]
    # Each block costs about 40 units; the budget reads about AST_BUDGET / 40 of them.
    calls = parse_tool_calls("".join(f"<tool_call>[f(a={n})]</tool_call>" for n in range(5000)))
    assert 500 < len(calls) < 5000
    assert calls[:3] == [ToolCall("f", {"a": n}) for n in range(3)]
