"""Tests for loading, validating, importing and writing training data, and the sample dataset."""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.finetune.datasets import (
    DatasetError,
    Example,
    Line,
    dataset_hash,
    detect_format,
    import_alpaca,
    import_file,
    import_openai,
    import_sharegpt,
    load_dataset,
    provenance_path,
    read_lines,
    read_provenance,
    write_examples,
    write_jsonl,
)
from pytest_punie.finetune.filters import duplicates, language, python2, run_filters
from pytest_punie.finetune.validation import check_data, validate, validate_examples, validate_paths
from pytest_punie.serving.chat_template import hermes_template, render
from pytest_punie.tools.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "training" / "data" / "sample"


def fn(name: str, required: list[str], **properties: str) -> dict[str, Any]:
    """An OpenAI tool schema with string-or-given-type properties."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": kind} for key, kind in properties.items()},
                "required": required,
                "additionalProperties": False,
            },
        },
    }


READ_FILE = fn("read_file", ["path"], path="string")
BOOK = fn("book", ["seats"], seats="integer", cabin="string")
USER = {"role": "user", "content": "Read a.py"}
ANSWER = {"role": "assistant", "content": "Done."}


def calls(*pairs: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    tool_calls = [
        {"type": "function", "function": {"name": name, "arguments": arguments}}
        for name, arguments in pairs
    ]
    return {"role": "assistant", "content": "", "tool_calls": tool_calls, **extra}


def result(content: str = "print('hi')", **extra: Any) -> dict[str, Any]:
    return {"role": "tool", "content": content, **extra}


def tools_line(*messages: dict[str, Any], tools: list[Any] | None = None) -> dict[str, Any]:
    return {"messages": list(messages), "tools": [READ_FILE] if tools is None else tools}


def j(value: Any) -> str:
    return json.dumps(value)


def lines_of(*texts: str, source: str = "data.jsonl") -> list[Line]:
    return [Line(Path(source), number, text) for number, text in enumerate(texts, start=1)]


# Format detection and reading ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"messages": []}, "chat"),
        ({"messages": [], "tools": []}, "tools"),
        ({"prompt": "a", "completion": "b"}, "completions"),
        ({"prompt": "a", "completion": "b", "messages": []}, "completions"),  # mlx_lm's order
        ({"text": "a"}, "text"),
        ({"messages": [], "text": "a"}, "chat"),
        ({"prompt": "a"}, None),
        ({}, None),
    ],
)
def test_detect_format(data: dict[str, Any], expected: str | None) -> None:
    assert detect_format(data) == expected


def test_read_lines_numbers_every_line(tmp_path: Path) -> None:
    file = tmp_path / "train.jsonl"
    file.write_bytes(b'{"text": "a"}\r\n\n{"text": "\xff"}\n{"text": "c"}')
    lines = list(read_lines(file))
    assert [(line.number, line.source) for line in lines] == [(n, file) for n in (1, 2, 3, 4)]
    assert lines[0].text == '{"text": "a"}'
    assert lines[1].text == ""
    assert lines[3].text == '{"text": "c"}'
    report = validate(lines)
    assert [(p.line, p.reason) for p in report.problems] == [
        (2, "empty line (mlx_lm cannot parse it)"),
        (3, "not valid UTF-8"),
    ]
    assert "\ufffd" in report.problems[1].raw


def test_load_dataset_folder_and_file(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    (tmp_path / "test.jsonl").write_text('{"text": "c"}\n')
    (tmp_path / "notes.jsonl").write_text("ignored\n")
    loaded = load_dataset(tmp_path)
    assert list(loaded) == ["train", "test"]
    assert [line.text for line in loaded["train"]] == ['{"text": "a"}', '{"text": "b"}']
    assert list(load_dataset(tmp_path / "notes.jsonl")) == ["notes"]


def test_load_dataset_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"no train\.jsonl, valid\.jsonl or test\.jsonl"):
        load_dataset(tmp_path)


# Writing, provenance, hashing ------------------------------------------------------------------


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    file = tmp_path / "out" / "train.jsonl"
    assert write_jsonl(file, [{"text": "é"}, {"text": "b"}]) == 2
    assert file.read_text(encoding="utf-8") == '{"text": "é"}\n{"text": "b"}\n'

    def rows() -> Any:
        yield {"text": "new"}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(file, rows())
    assert file.read_text(encoding="utf-8") == '{"text": "é"}\n{"text": "b"}\n'
    assert sorted(p.name for p in file.parent.iterdir()) == ["train.jsonl"]


def test_provenance_survives_a_round_trip(tmp_path: Path) -> None:
    imported = Example({"text": "a"}, "text", Path("raw.json"), 7, "alpaca:raw.json:7")
    plain = Example({"text": "b"}, "text", Path("old/train.jsonl"), 3)
    file = tmp_path / "train.jsonl"
    write_examples(file, [imported, plain])
    assert provenance_path(file) == tmp_path / "train.provenance.jsonl"
    assert read_provenance(file) == {1: "alpaca:raw.json:7", 2: "old/train.jsonl:3"}
    report = validate_paths([tmp_path])
    assert [(ex.location, ex.provenance) for ex in report.valid] == [
        (f"{file}:1", "alpaca:raw.json:7"),
        (f"{file}:2", "old/train.jsonl:3"),
    ]


def test_unreadable_provenance_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "train.provenance.jsonl").write_text("not json\n")
    assert read_provenance(tmp_path / "train.jsonl") == {}
    assert validate_paths([tmp_path]).valid[0].origin is None


def test_dataset_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "train.jsonl").write_text('{"text": "x"}\n')
        (folder / "valid.jsonl").write_text('{"text": "y"}\n')
    first = dataset_hash([a])
    assert first == dataset_hash([b])
    assert len(first) == 64
    (a / "train.provenance.jsonl").write_text("{}\n")
    assert dataset_hash([a]) == first
    assert dataset_hash([a / "valid.jsonl", a / "train.jsonl"]) == first
    (b / "valid.jsonl").write_text('{"text": "z"}\n')
    assert dataset_hash([b]) != first
    (b / "valid.jsonl").rename(b / "test.jsonl")
    assert dataset_hash([b]) != dataset_hash([a])


# Validation: every reason ----------------------------------------------------------------------

BAD_LINES: list[tuple[str, str, str]] = [
    ("broken-json", '{"messages": [', "broken JSON: Expecting value (column 15)"),
    ("empty-line", "   ", "empty line (mlx_lm cannot parse it)"),
    ("not-an-object", "[1, 2]", "line is a JSON list, not an object"),
    ("unknown-format", j({"question": "q", "answer": "a"}), "unknown format: keys 'answer',"),
    ("unknown-top-key", j({"text": "a", "id": 3}), "unknown key 'id' for the text format"),
    ("messages-not-list", j({"messages": "hi"}), "'messages' must be a list, not string"),
    ("messages-empty", j({"messages": []}), "'messages' is empty"),
    ("message-not-object", j({"messages": ["hi", ANSWER]}), "message 1 must be an object"),
    ("no-role", j({"messages": [{"content": "hi"}, ANSWER]}), "message 1 has no role"),
    (
        "role-not-string",
        j({"messages": [{"role": 1, "content": "hi"}, ANSWER]}),
        "role of message 1 must be a string, not int",
    ),
    (
        "unknown-role",
        j({"messages": [USER, ANSWER, {"role": "bot", "content": "x"}, ANSWER]}),
        "unknown role 'bot' in message 3",
    ),
    (
        "unknown-message-key",
        j({"messages": [{**USER, "weight": 1}, ANSWER]}),
        "unknown key 'weight' in message 1",
    ),
    (
        "content-not-string",
        j({"messages": [{"role": "user", "content": [{"type": "text"}]}, ANSWER]}),
        "content of message 1 must be a string, not list",
    ),
    ("no-content", j({"messages": [{"role": "user"}, ANSWER]}), "message 1 has no content"),
    (
        "empty-content",
        j({"messages": [USER, {"role": "assistant", "content": "  "}]}),
        "content of message 2 is empty",
    ),
    ("no-assistant", j({"messages": [USER]}), "no assistant message to learn from"),
    (
        "ends-with-user",
        j({"messages": [USER, ANSWER, USER]}),
        "last message is from 'user'; it must be the assistant's",
    ),
    (
        "tool-calls-on-user",
        j({"messages": [{**USER, "tool_calls": []}, ANSWER]}),
        "tool_calls in a 'user' message 1; only the assistant calls",
    ),
    (
        "tool-calls-not-list",
        j(tools_line(USER, {"role": "assistant", "tool_calls": {}}, result(), ANSWER)),
        "tool_calls of message 2 must be a list, not object",
    ),
    (
        "tool-call-wrong-shape",
        j(
            tools_line(
                USER, {"role": "assistant", "tool_calls": [{"name": "read_file"}]}, result(), ANSWER
            )
        ),
        'tool call 1 in message 2 is not {"type": "function", "function": {...}}',
    ),
    (
        "undeclared-tool",
        j(tools_line(USER, calls(("open_file", {"path": "a.py"})), result(), ANSWER)),
        "call to 'open_file' in message 2 does not match a declared tool",
    ),
    (
        "no-tools-declared",
        j({"messages": [USER, calls(("read_file", {"path": "a.py"})), result(), ANSWER]}),
        "call to 'read_file' in message 2 but the line declares no tools",
    ),
    (
        "arguments-not-object",
        j(tools_line(USER, calls(("read_file", ["a.py"])), result(), ANSWER)),
        "arguments of call to 'read_file' in message 2 must be a JSON object",
    ),
    (
        "arguments-bad-json-string",
        j(tools_line(USER, calls(("read_file", "{path: a.py}")), result(), ANSWER)),
        "arguments of call to 'read_file' in message 2 are not valid JSON",
    ),
    (
        "arguments-json-string-not-object",
        j(tools_line(USER, calls(("read_file", '"a.py"')), result(), ANSWER)),
        "arguments of call to 'read_file' in message 2 must be a JSON object",
    ),
    (
        "missing-required-argument",
        j(tools_line(USER, calls(("read_file", {})), result(), ANSWER)),
        "call to 'read_file' in message 2: missing required argument 'path'",
    ),
    (
        "unknown-argument",
        j(tools_line(USER, calls(("read_file", {"path": "a", "mode": "r"})), result(), ANSWER)),
        "call to 'read_file' in message 2: unknown argument 'mode'",
    ),
    (
        "wrong-argument-type",
        j(tools_line(USER, calls(("book", {"seats": "2"})), result(), ANSWER, tools=[BOOK])),
        "call to 'book' in message 2: seats='2' must be integer, not string",
    ),
    (
        "boolean-is-not-integer",
        j(tools_line(USER, calls(("book", {"seats": True})), result(), ANSWER, tools=[BOOK])),
        "call to 'book' in message 2: seats=True must be integer, not boolean",
    ),
    (
        "call-without-arguments",
        j(
            tools_line(
                USER,
                {"role": "assistant", "tool_calls": [{"function": {"name": "read_file"}}]},
                result(),
                ANSWER,
            )
        ),
        "call to 'read_file' in message 2 has no arguments",
    ),
    (
        "tool-message-without-call",
        j(tools_line(USER, result(), ANSWER)),
        "tool message 2 has no preceding tool call",
    ),
    (
        "tool-message-after-user",
        j(tools_line(USER, calls(("read_file", {"path": "a"})), USER, result(), ANSWER)),
        "tool message 4 has no preceding tool call",
    ),
    (
        "more-results-than-calls",
        j(tools_line(USER, calls(("read_file", {"path": "a"})), result(), result(), ANSWER)),
        "tool message 4 has no preceding tool call",
    ),
    (
        "unknown-call-id",
        j(
            tools_line(
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "read_file", "arguments": {"path": "a"}}}
                    ],
                },
                result(tool_call_id="c9"),
                ANSWER,
            )
        ),
        "tool message 3 answers unknown call id 'c9'",
    ),
    ("tools-not-list", j(tools_line(USER, ANSWER, tools={})), "'tools' must be a list, not object"),
    ("tools-empty", j(tools_line(USER, ANSWER, tools=[])), "'tools' is empty"),
    (
        "tool-not-openai-form",
        j(tools_line(USER, ANSWER, tools=[{"name": "read_file"}])),
        'tool 1 is not {"type": "function", "function": {...}} (OpenAI form)',
    ),
    (
        "tool-without-name",
        j(tools_line(USER, ANSWER, tools=[{"type": "function", "function": {}}])),
        "tool 1 has no function name",
    ),
    (
        "tool-declared-twice",
        j(tools_line(USER, ANSWER, tools=[READ_FILE, READ_FILE])),
        "tool 'read_file' is declared twice",
    ),
    (
        "tool-requires-unknown-property",
        j(tools_line(USER, ANSWER, tools=[fn("ls", ["path"], dir="string")])),
        "tool 'ls' requires 'path' but has no such property",
    ),
    (
        "prompt-not-string",
        j({"prompt": 1, "completion": "b"}),
        "'prompt' must be a string, not int",
    ),
    ("completion-empty", j({"prompt": "a", "completion": ""}), "'completion' is empty"),
    ("text-empty", j({"text": ""}), "'text' is empty"),
    ("lone-surrogate", '{"text": "a\\ud800"}', "text holds a lone surrogate escape"),
]


@pytest.mark.parametrize(
    ("text", "reason"), [pytest.param(t, r, id=name) for name, t, r in BAD_LINES]
)
def test_each_bad_line_is_reported_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    file = tmp_path / "train.jsonl"
    good = j({"messages": [USER, ANSWER]})
    file.write_text(f"{good}\n{text}\n{good}\n", encoding="utf-8")
    report = validate(read_lines(file))
    assert len(report.valid) == 2
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert (problem.source, problem.line) == (file, 2)
    assert problem.reason.startswith(reason), problem.reason
    assert problem.raw == text
    assert str(problem) == f"{file}:2: {problem.reason}"


def test_all_problems_are_listed_not_just_the_first(tmp_path: Path) -> None:
    valid_dir = tmp_path / "data"
    valid_dir.mkdir()
    (valid_dir / "train.jsonl").write_text(
        "\n".join(text for _, text, _ in BAD_LINES) + "\n", encoding="utf-8"
    )
    (valid_dir / "valid.jsonl").write_text(j({"text": "ok"}) + "\n{oops\n")
    report = validate_paths([valid_dir])
    assert [(p.source.name, p.line) for p in report.problems] == [
        *[("train.jsonl", n) for n in range(1, len(BAD_LINES) + 1)],
        ("valid.jsonl", 2),
    ]
    summary = report.summary().splitlines()
    assert summary[0] == f"{valid_dir / 'train.jsonl'}:1: {report.problems[0].reason}"
    assert summary[-1] == f"1 valid, {len(BAD_LINES) + 1} invalid lines in 2 files"


def test_several_problems_of_one_line_share_its_rejection() -> None:
    line = j({"messages": [{"role": "bot", "content": ""}, {"role": "user", "content": 3}]})
    report = validate(lines_of(line))
    (problem,) = report.problems
    assert problem.reason == (
        "unknown role 'bot' in message 1; content of message 1 is empty; "
        "content of message 2 must be a string, not int; no assistant message to learn from"
    )


def test_a_file_keeps_one_format() -> None:
    report = validate(
        lines_of(
            j({"messages": [USER, ANSWER]}),
            j(tools_line(USER, ANSWER)),  # tools lines load like chat lines in mlx_lm
            j({"text": "plain"}),
        )
        + lines_of(j({"text": "other file"}), source="other.jsonl")
    )
    assert [ex.format for ex in report.valid] == ["chat", "tools", "text"]
    (problem,) = report.problems
    assert (problem.line, problem.reason) == (
        3,
        "text line in a chat file (line 1); mlx_lm reads a whole file in its first line's format",
    )


VALID_LINES: list[tuple[str, dict[str, Any], str]] = [
    ("chat", {"messages": [{"role": "system", "content": "Be brief."}, USER, ANSWER]}, "chat"),
    (
        "tool-call-then-answer",
        tools_line(USER, calls(("read_file", {"path": "a.py"})), result(), ANSWER),
        "tools",
    ),
    (
        "arguments-as-json-string",
        tools_line(USER, calls(("read_file", '{"path": "a.py"}')), result(), ANSWER),
        "tools",
    ),
    (
        "content-null-with-calls",
        tools_line(
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": calls(("read_file", {"path": "a"}))["tool_calls"],
            },
            result(),
            ANSWER,
        ),
        "tools",
    ),
    (
        "parallel-calls-with-ids",
        tools_line(
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": {"path": "x"}},
                    },
                    {
                        "id": "b",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": {"path": "y"}},
                    },
                ],
            },
            result(tool_call_id="b"),
            result(tool_call_id="a", name="read_file"),
            ANSWER,
        ),
        "tools",
    ),
    ("tools-declared-no-call", tools_line(USER, ANSWER), "tools"),
    (
        "optional-argument",
        tools_line(USER, calls(("book", {"seats": 2})), result(), ANSWER, tools=[BOOK]),
        "tools",
    ),
    ("completions", {"prompt": "2 + 2?", "completion": "4"}, "completions"),
    (
        "completions-with-tools",
        {"prompt": "a", "completion": "b", "tools": [READ_FILE]},
        "completions",
    ),
    ("text", {"text": "Once upon a time."}, "text"),
]


@pytest.mark.parametrize(
    ("data", "fmt"), [pytest.param(d, f, id=name) for name, d, f in VALID_LINES]
)
def test_valid_lines(data: dict[str, Any], fmt: str) -> None:
    assert check_data(data) == (fmt, [])
    report = validate(lines_of(j(data)))
    assert report.ok
    assert report.valid[0].data == data
    assert report.valid[0].format == fmt
    assert report.valid[0].location == "data.jsonl:1"


def test_max_seq_length_counts_contents_and_tools() -> None:
    def count_words(text: str) -> int:
        return len(text.split())

    long_line = j({"messages": [USER, {"role": "assistant", "content": "word " * 20}]})
    short_line = j({"messages": [USER, ANSWER]})
    report = validate(lines_of(short_line, long_line), max_seq_length=10, count_tokens=count_words)
    assert [ex.line for ex in report.valid] == [1]
    assert report.problems[0].line == 2
    assert report.problems[0].reason == (
        "22 tokens, longer than max_seq_length 10 (mlx_lm would cut it off)"
    )
    seen: list[str] = []

    def remember(text: str) -> int:
        seen.append(text)
        return 0

    validate(lines_of(j(tools_line(USER, ANSWER))), max_seq_length=10, count_tokens=remember)
    assert "read_file" in seen[0]  # the tool schemas take room in the prompt too


def test_max_seq_length_needs_a_counter() -> None:
    with pytest.raises(ValueError, match="count_tokens"):
        validate([], max_seq_length=5)


def test_validate_examples_keeps_provenance() -> None:
    examples = [
        Example({"text": "a"}, "text", Path("raw.json"), 4, "alpaca:raw.json:4"),
        Example({"text": ""}, "text", Path("raw.json"), 5, "alpaca:raw.json:5"),
    ]
    report = validate_examples(examples)
    assert report.valid[0].origin == "alpaca:raw.json:4"
    assert str(report.problems[0]) == "raw.json:5: 'text' is empty"


ROLES = st.one_of(
    st.sampled_from(["user", "assistant", "tool", "system"]), st.sampled_from(["bot", "", 3])
)
TEXT = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["", " ", None, 1, ["x"]]))
ARGUMENTS = st.one_of(
    st.dictionaries(
        st.sampled_from(["path", "seats", "cabin", "x"]),
        st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
        max_size=3,
    ),
    st.sampled_from(['{"path": "a"}', "{bad", '"a"', 3]),
)
CALL = st.one_of(
    st.fixed_dictionaries(
        {
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["read_file", "book", "nope", "", 5])},
                optional={"arguments": ARGUMENTS},
            )
        },
        optional={"type": st.sampled_from(["function", "other"]), "id": st.sampled_from("ab")},
    ),
    st.sampled_from([{}, "call", {"name": "read_file"}]),
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": ROLES, "content": TEXT},
        optional={
            "tool_calls": st.one_of(st.lists(CALL, max_size=3), st.just("x")),
            "tool_call_id": st.sampled_from(["a", "b", "c"]),
            "extra": st.integers(),
        },
    ),
    st.fixed_dictionaries({}, optional={"role": ROLES, "content": TEXT}),
    TEXT,
)
TOOLS = st.one_of(
    st.lists(st.sampled_from([READ_FILE, BOOK, {"name": "x"}, "tool"]), max_size=3), TEXT
)
TOOL_TURN = st.builds(
    lambda calls, results, tools: {
        "messages": [USER, {"role": "assistant", "tool_calls": calls}, *results, ANSWER],
        "tools": tools,
    },
    st.lists(CALL, max_size=3),
    st.lists(st.builds(result, tool_call_id=st.sampled_from(["a", "b", "c"])), max_size=3),
    st.one_of(st.just([READ_FILE, BOOK]), TOOLS),
)
LINE_DATA = st.one_of(
    TOOL_TURN,
    st.fixed_dictionaries(
        {"messages": st.one_of(st.lists(MESSAGE, max_size=6), TEXT)},
        optional={"tools": TOOLS, "id": st.integers()},
    ),
    st.fixed_dictionaries({"prompt": TEXT, "completion": TEXT}, optional={"tools": TOOLS}),
    st.fixed_dictionaries({"text": TEXT}),
    st.fixed_dictionaries(
        {}, optional={key: TEXT for key in ("messages", "prompt", "completion", "text", "id")}
    ),
)
LINE_TEXT = st.one_of(
    LINE_DATA.map(json.dumps),
    st.text(max_size=40),
    st.recursive(st.none() | st.integers() | st.text(max_size=5), st.lists).map(json.dumps),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(LINE_TEXT, max_size=12), st.booleans())
def test_every_line_is_valid_or_rejected_once(texts: list[str], limit: bool) -> None:
    lines = lines_of(*texts)
    report = validate(
        lines,
        max_seq_length=30 if limit else None,
        count_tokens=len if limit else None,
    )
    valid = [ex.line for ex in report.valid]
    rejected = [problem.line for problem in report.problems]
    assert sorted(valid + rejected) == list(range(1, len(texts) + 1))
    assert all(problem.reason for problem in report.problems)
    for example in report.valid:
        assert check_data(example.data) == (example.format, [])


# Importers -------------------------------------------------------------------------------------


def test_import_sharegpt_json_list(tmp_path: Path) -> None:
    file = tmp_path / "chats.json"
    records = [
        {
            "system": "Be brief.",
            "conversations": [
                {"from": "human", "value": "Weather in Rome?"},
                {"from": "function_call", "value": j({"name": "w", "arguments": {"city": "Rome"}})},
                {"from": "observation", "value": "sunny"},
                {"from": "gpt", "value": "Sunny."},
            ],
            "tools": j([{"name": "w", "parameters": {"properties": {"city": {"type": "string"}}}}]),
        },
        {"conversations": [{"from": "bing", "value": "hi"}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        ["not", "a", "record"],
    ]
    file.write_text(json.dumps(records))
    imported = import_sharegpt(file)
    first, second = imported.examples
    assert first.format == "tools"
    assert [m["role"] for m in first.data["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert first.data["messages"][2]["tool_calls"] == [
        {"type": "function", "function": {"name": "w", "arguments": {"city": "Rome"}}}
    ]
    assert first.data["tools"][0]["type"] == "function"
    assert (first.source, first.line, first.origin) == (file, 1, f"sharegpt:{file}:1")
    assert second.data == {"messages": [USER | {"content": "hi"}, ANSWER | {"content": "hello"}]}
    assert second.line == 3
    assert [(r.line, r.reason, r.stage) for r in imported.rejections] == [
        (2, "unknown speaker 'bing' in turn 1", "import sharegpt"),
        (4, "record is a list, not an object", "import sharegpt"),
    ]
    assert validate_examples(imported.examples).ok


def test_import_sharegpt_jsonl(tmp_path: Path) -> None:
    file = tmp_path / "chats.jsonl"
    record = {
        "conversations": [{"from": "user", "value": "a"}, {"from": "assistant", "value": "b"}]
    }
    file.write_text(f"{j(record)}\n\n{{broken\n")
    imported = import_sharegpt(file)
    assert [ex.line for ex in imported.examples] == [1]
    assert [(r.line, r.reason) for r in imported.rejections] == [
        (3, "broken JSON: Expecting property name enclosed in double quotes (column 2)")
    ]


def test_import_alpaca(tmp_path: Path) -> None:
    file = tmp_path / "alpaca.json"
    records = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        {"instruction": "No answer."},
        {"instruction": "Q2", "output": "A2", "history": [["Q1", "A1"]], "system": "Be kind."},
    ]
    file.write_text(json.dumps(records))
    imported = import_file(file, "alpaca")
    assert [ex.data["messages"] for ex in imported.examples[:2]] == [
        [
            {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
            {"role": "assistant", "content": "5"},
        ],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
    ]
    assert [m["content"] for m in imported.examples[2].data["messages"]] == [
        "Be kind.",
        "Q1",
        "A1",
        "Q2",
        "A2",
    ]
    assert [(r.line, r.reason) for r in imported.rejections] == [(3, "no 'output'")]
    assert imported.examples[2].origin == f"alpaca:{file}:4"


def test_import_openai_normalises_arguments_and_drops_extras(tmp_path: Path) -> None:
    file = tmp_path / "openai.jsonl"
    record = {
        "messages": [
            {"role": "user", "content": "Read a.py"},
            {
                "role": "assistant",
                "content": None,
                "weight": 1,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "x = 1"},
            {"role": "assistant", "content": "It sets x."},
        ],
        "tools": [READ_FILE],
        "parallel_tool_calls": False,
    }
    file.write_text(j(record) + "\n")
    (example,) = import_openai(file).examples
    assistant = example.data["messages"][1]
    assert assistant == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "read_file", "arguments": {"path": "a.py"}},
            }
        ],
    }
    assert set(example.data) == {"messages", "tools"}
    assert validate_examples([example]).ok


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "not valid JSON"), ('{"a": 1}', "expected a JSON list of records, got dict")],
)
def test_import_rejects_unusable_files(tmp_path: Path, content: str, match: str) -> None:
    file = tmp_path / "data.json"
    file.write_text(content)
    with pytest.raises(DatasetError, match=match):
        import_alpaca(file)


def test_import_json_named_file_holding_jsonl(tmp_path: Path) -> None:
    file = tmp_path / "data.json"
    file.write_text(j({"instruction": "a", "output": "b"}) + "\n" + j({"instruction": "c"}) + "\n")
    imported = import_alpaca(file)
    assert len(imported.examples) == 1
    assert imported.rejections[0].line == 2


def test_import_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown import format 'csv'"):
        import_file(tmp_path / "a.json", "csv")
    with pytest.raises(FileNotFoundError):
        import_sharegpt(tmp_path / "missing.json")


def test_hugging_face_path_without_datasets_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetError, match="needs the 'datasets' package"):
        import_sharegpt("hf://org/name")


# The shipped sample dataset --------------------------------------------------------------------

EVAL_TOOLS = {"list_dir", "read_file", "write_file", "search_files", "get_weather"}


def sample_examples() -> list[Example]:
    report = validate_paths([SAMPLE])
    assert report.ok, report.summary()
    return report.valid


def category(example: Example) -> str:
    if example.format == "tools":
        return "tool_calling"
    answer = example.data["messages"][-1]["content"]
    return "code_generation" if "```python" in answer else "reasoning"


def test_sample_dataset_validates_cleanly() -> None:
    examples = sample_examples()
    sizes = {
        split: sum(ex.source.stem == split for ex in examples) for split in load_dataset(SAMPLE)
    }
    assert sizes == {"train": 48, "valid": 8, "test": 8}
    for split in sizes:
        categories = {category(ex) for ex in examples if ex.source.stem == split}
        assert categories == {"reasoning", "code_generation", "tool_calling"}, split


def test_sample_dataset_passes_the_filters() -> None:
    examples = sample_examples()
    results = run_filters(examples, [language(), python2(), duplicates()])
    assert [len(result.removed) for result in results] == [0, 0, 0]


def test_sample_tools_match_the_eval_tools() -> None:
    def get_weather(city: str) -> str:
        """Stand-in with the eval suite's signature."""
        return city

    signatures = {
        name: inspect.signature(getattr(Workspace, name)) for name in EVAL_TOOLS - {"get_weather"}
    }
    signatures["get_weather"] = inspect.signature(get_weather)
    calls_seen = 0
    for example in sample_examples():
        for tool in example.data.get("tools", []):
            name = tool["function"]["name"]
            parameters = [p for p in signatures[name].parameters.values() if p.name != "self"]
            schema = tool["function"]["parameters"]
            assert list(schema["properties"]) == [p.name for p in parameters], name
            required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
            assert schema.get("required", []) == required, name
        for message in example.data["messages"]:
            for call in message.get("tool_calls", []):
                assert isinstance(call["function"]["arguments"], dict)
                calls_seen += 1
    assert calls_seen >= 15


def test_sample_tool_examples_call_then_answer() -> None:
    tool_examples = [ex for ex in sample_examples() if ex.format == "tools"]
    with_calls = [ex for ex in tool_examples if "tool_calls" in ex.data["messages"][1]]
    assert len(with_calls) >= len(tool_examples) - 2  # the rest: tools offered, none needed
    for example in with_calls:
        roles = [m["role"] for m in example.data["messages"]]
        assert roles[:3] == ["user", "assistant", "tool"]
        assert roles[-1] == "assistant"
        rendered = render(hermes_template(), example.data["messages"], example.data["tools"], False)
        assert '<tool_call>\n{"name": "' in rendered
        assert '"arguments": {"' in rendered  # an object, not a quoted JSON string


def test_sample_reasoning_states_the_answer_and_code_runs() -> None:
    for example in sample_examples():
        answer = example.data["messages"][-1]["content"]
        kind = category(example)
        if kind == "reasoning":
            assert "=" in answer or answer.rstrip(".").endswith(("Yes", "No"))
        elif kind == "code_generation":
            code = answer.split("```python\n", 1)[1].split("```", 1)[0]
            exec(compile(code, str(example.location), "exec"), {})


def test_sample_loads_with_mlx_lm() -> None:
    tuner = pytest.importorskip("mlx_lm.tuner.datasets")
    rendered: list[tuple[int, bool]] = []

    class Tokenizer:
        def apply_chat_template(
            self, messages: list[Any], tools: Any = None, **kwargs: Any
        ) -> list[int]:
            rendered.append((len(messages), bool(tools)))
            return [0] * len(messages)

    splits = tuner.load_local_dataset(SAMPLE, Tokenizer(), SimpleNamespace())
    assert [(type(s).__name__, len(s)) for s in splits] == [
        ("ChatDataset", 48),
        ("ChatDataset", 8),
        ("ChatDataset", 8),
    ]
    for dataset in splits:
        for index in range(len(dataset)):
            dataset.process(dataset[index])
    assert sum(with_tools for _, with_tools in rendered) == 21


def eval_prompts() -> set[str]:
    prompts: set[str] = set()
    for file in (ROOT / "evals").glob("test_*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                prompts.add(node.value.strip().lower())  # adjacent literals are one constant
    return prompts


def test_sample_does_not_copy_eval_prompts() -> None:
    prompts = eval_prompts()
    assert "what is 15 * 23?" in prompts
    for example in sample_examples():
        for message in example.data["messages"]:
            if message["role"] == "user":
                assert message["content"].strip().lower() not in prompts, example.location
