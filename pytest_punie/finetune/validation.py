"""Check training lines before mlx_lm sees them: every bad line, with file, line and reason.

mlx_lm loads a file with ``json.loads`` per line and picks the format from the first line, so a
blank line, a mixed-format file or a tool call in the wrong shape either crashes training or
silently teaches the wrong thing. ``validate`` turns each line into exactly one of an
``Example`` (valid) or a ``Rejection`` (with a short reason); it never raises on bad data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.finetune.datasets import (
    FORMAT_FAMILIES,
    MESSAGE_KEYS,
    ROLES,
    Example,
    Line,
    Rejection,
    dataset_files,
    detect_format,
    parse_json,
    read_lines,
    read_provenance,
    text_parts,
)
from pytest_punie.tools.schema import schema_problems, type_name

__all__ = [
    "ValidationReport",
    "chat_problems",
    "check_data",
    "token_counter",
    "validate",
    "validate_examples",
    "validate_paths",
]


def token_counter(spec: str | Path) -> Callable[[str], int]:
    """Count tokens with a model's ``tokenizer.json`` (``spec``: the file or its model folder).

    The one rule for ``max_seq_length``: the text is encoded without adding special tokens (a
    line's text is measured as the template writes it; the template's own markers are few).
    Raises ``ValueError`` naming ``spec`` when there is no tokenizer to load.
    """
    path = Path(spec)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{spec}: no tokenizer.json there")
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises its own untyped errors
        raise ValueError(f"{spec}: cannot load the tokenizer ({exc})") from exc
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


_KEYS = {
    "chat": {"messages"},
    "tools": {"messages", "tools"},
    "completions": {"prompt", "completion", "tools"},
    "text": {"text"},
}
_CALL_KEYS = frozenset({"type", "id", "function"})


@dataclass(frozen=True)
class ValidationReport:
    """The valid examples and one rejection per bad line, in input order."""

    valid: list[Example] = field(default_factory=list)
    problems: list[Rejection] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Every problem as ``path:line: reason``, then the counts."""
        lines = [str(problem) for problem in self.problems]
        sources = {ex.source for ex in self.valid} | {p.source for p in self.problems}
        lines.append(
            f"{len(self.valid)} valid, {len(self.problems)} invalid "
            f"line{'s' if len(self.problems) != 1 else ''} in {len(sources)} "
            f"file{'s' if len(sources) != 1 else ''}"
        )
        return "\n".join(lines)


def _check_text(value: Any, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, not {type_name(value)}"
    if not value.strip():
        return f"{what} is empty"
    return None


def _openai_function(
    item: Any, what: str, problems: list[str], note: str = ""
) -> dict[str, Any] | None:
    """The ``function`` of an OpenAI ``{"type": "function", "function": {...}}`` object (a tool
    or a tool call); None, with a problem naming ``what``, when ``item`` is not one."""
    function = item.get("function") if isinstance(item, dict) else None
    if not isinstance(function, dict) or item.get("type", "function") != "function":
        problems.append(f'{what} is not {{"type": "function", "function": {{...}}}}{note}')
        return None
    return function


def _function_name(function: dict[str, Any] | None, what: str, problems: list[str]) -> str | None:
    """The function's name; None, with a problem naming ``what``, when it has none."""
    if function is None:
        return None
    name = function.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{what} has no function name")
        return None
    return name


def _declared_tools(tools: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    """Name -> parameters schema of each well-formed tool; problems for the others."""
    declared: dict[str, dict[str, Any]] = {}
    if not isinstance(tools, list):
        problems.append(f"'tools' must be a list, not {type_name(tools)}")
        return declared
    if not tools:
        problems.append("'tools' is empty")
    for number, tool in enumerate(tools, start=1):
        function = _openai_function(tool, f"tool {number}", problems, " (OpenAI form)")
        name = _function_name(function, f"tool {number}", problems)
        if function is None or name is None:
            continue
        if name in declared:
            problems.append(f"tool {name!r} is declared twice")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            problems.append(f"parameters of tool {name!r} must be an object schema")
            continue
        properties = parameters.get("properties", {})
        required = parameters.get("required", [])
        if not isinstance(properties, dict):
            problems.append(f"properties of tool {name!r} must be an object")
            continue
        if not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
            problems.append(f"required of tool {name!r} must be a list of names")
            continue
        for missing in [r for r in required if r not in properties]:
            problems.append(f"tool {name!r} requires {missing!r} but has no such property")
        declared[name] = parameters
    return declared


def _check_arguments(
    arguments: dict[str, Any], name: str, schema: dict[str, Any], where: str
) -> list[str]:
    """The arguments against the tool's JSON schema (``schema.schema_problems``)."""
    return [f"call to {name!r} {where}: {p}" for p in schema_problems(arguments, schema)]


def _check_tool_calls(
    calls: Any, number: int, declared: dict[str, dict[str, Any]] | None, problems: list[str]
) -> list[str]:
    """Check one assistant message's calls; return their ids ("" for calls without one)."""
    ids: list[str] = []
    if not isinstance(calls, list):
        problems.append(f"tool_calls of message {number} must be a list, not {type_name(calls)}")
        return ids
    if not calls:
        problems.append(f"tool_calls of message {number} is empty")
    for index, call in enumerate(calls, start=1):
        where = f"in message {number}"
        function = _openai_function(call, f"tool call {index} {where}", problems)
        if function is None:
            continue
        if unknown := sorted(set(call) - _CALL_KEYS):
            problems.append(f"tool call {index} {where} has unknown key {unknown[0]!r}")
        ids.append(call["id"] if isinstance(call.get("id"), str) else "")
        name = _function_name(function, f"tool call {index} {where}", problems)
        if name is None:
            continue
        if declared is None:
            problems.append(f"call to {name!r} {where} but the line declares no tools")
            continue
        if name not in declared:
            problems.append(f"call to {name!r} {where} does not match a declared tool")
            continue
        if "arguments" not in function:
            problems.append(f"call to {name!r} {where} has no arguments")
            continue
        arguments = function["arguments"]
        if isinstance(arguments, str):
            try:
                arguments = parse_json(arguments)
            except json.JSONDecodeError:
                problems.append(f"arguments of call to {name!r} {where} are not valid JSON")
                continue
        if not isinstance(arguments, dict):
            problems.append(f"arguments of call to {name!r} {where} must be a JSON object")
            continue
        problems.extend(_check_arguments(arguments, name, declared[name], where))
    return ids


def chat_problems(messages: Any, tools: Any = None) -> list[str]:
    """What is wrong with a conversation in mlx_lm's chat format, ``tools`` its OpenAI tool
    schemas (None: the line has none); empty when nothing is.

    The one check of chat turns, for training lines and eval case files alike: roles, keys,
    text content, tool calls of declared tools with arguments that fit their schemas, tool
    results that answer a call. What a line is for (a training line ends with the answer to
    learn, a case with its prompt) is checked by its reader.
    """
    problems: list[str] = []
    declared = _declared_tools(tools, problems) if tools is not None else None
    if not isinstance(messages, list):
        return [*problems, f"'messages' must be a list, not {type_name(messages)}"]
    if not messages:
        return [*problems, "'messages' is empty"]
    pending_ids: list[str] | None = None  # the calls that tool messages may still answer
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            problems.append(f"message {number} must be an object, not {type_name(message)}")
            pending_ids = None
            continue
        role = message.get("role")
        if role is None:
            problems.append(f"message {number} has no role")
        elif not isinstance(role, str):
            problems.append(f"role of message {number} must be a string, not {type_name(role)}")
        elif role not in ROLES:
            problems.append(f"unknown role {role!r} in message {number}")
        if unknown := sorted(set(message) - MESSAGE_KEYS):
            problems.append(f"unknown key {unknown[0]!r} in message {number}")
        calls = message.get("tool_calls")
        if calls is not None and role != "assistant":
            problems.append(f"tool_calls in a {role!r} message {number}; only the assistant calls")
        has_calls = role == "assistant" and calls is not None
        content = message.get("content")
        if has_calls and (content is None or content == ""):
            pass  # an assistant turn may be only its tool calls
        elif "content" not in message:
            problems.append(f"message {number} has no content")
        elif problem := _check_text(content, f"content of message {number}"):
            problems.append(problem)
        if has_calls:
            pending_ids = _check_tool_calls(calls, number, declared, problems)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not pending_ids:
                problems.append(f"tool message {number} has no preceding tool call")
            elif isinstance(call_id, str) and call_id in pending_ids:
                pending_ids.remove(call_id)
            elif isinstance(call_id, str) and call_id and any(pending_ids):
                problems.append(f"tool message {number} answers unknown call id {call_id!r}")
            else:
                pending_ids.pop(0)
        else:
            pending_ids = None
    return problems


def _check_messages(data: dict[str, Any], fmt: str) -> list[str]:
    """A chat or tools line: its turns, and an answer to learn from at the end."""
    messages = data["messages"]
    problems = chat_problems(messages, data["tools"] if fmt == "tools" else None)
    if not isinstance(messages, list) or not messages:
        return problems
    roles = [message.get("role") for message in messages if isinstance(message, dict)]
    if "assistant" not in roles:
        problems.append("no assistant message to learn from")
    elif isinstance(last := messages[-1], dict) and last.get("role") in ("system", "user", "tool"):
        problems.append(f"last message is from {last['role']!r}; it must be the assistant's")
    return problems


def check_data(data: Any) -> tuple[str | None, list[str]]:
    """The format of one parsed line and its problems (none: the line is valid)."""
    if not isinstance(data, dict):
        return None, [f"line is a JSON {type_name(data)}, not an object"]
    fmt = detect_format(data)
    if fmt is None:
        keys = ", ".join(repr(k) for k in sorted(data)[:5]) or "none"
        return None, [
            f"unknown format: keys {keys} (expected messages, prompt and completion, or text)"
        ]
    problems = [f"unknown key {k!r} for the {fmt} format" for k in sorted(set(data) - _KEYS[fmt])]
    if fmt in ("chat", "tools"):
        problems.extend(_check_messages(data, fmt))
    elif fmt == "completions":
        for key in ("prompt", "completion"):
            if problem := _check_text(data[key], repr(key)):
                problems.append(problem)
        if "tools" in data:
            _declared_tools(data["tools"], problems)
    elif problem := _check_text(data["text"], "'text'"):
        problems.append(problem)
    try:  # a lone surrogate (a "\ud800" escape) cannot be written back or tokenized
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        problems.append("text holds a lone surrogate escape (not valid Unicode)")
    return fmt, problems


class _Checker:
    """Validation state across lines: each file's format family, the token limit."""

    def __init__(self, max_seq_length: int | None, count_tokens: Callable[[str], int] | None):
        if max_seq_length is not None and count_tokens is None:
            raise ValueError("max_seq_length needs count_tokens to measure lines with")
        self.max_seq_length = max_seq_length
        self.count_tokens = count_tokens
        self.families: dict[Path, tuple[str, int]] = {}
        self.report = ValidationReport()

    def check(self, data: Any, source: Path, number: int, raw: str, origin: str | None) -> None:
        fmt, problems = check_data(data)
        if fmt is not None and not problems:
            family, first = self.families.setdefault(source, (FORMAT_FAMILIES[fmt], number))
            if family != FORMAT_FAMILIES[fmt]:
                problems.append(
                    f"{fmt} line in a {family} file (line {first}); "
                    "mlx_lm reads a whole file in its first line's format"
                )
        if fmt is not None and not problems:
            example = Example(data, fmt, source, number, origin)
            if self.max_seq_length is not None and self.count_tokens is not None:
                text = "\n".join(part for _, part in text_parts(example))
                if "tools" in data:  # the template lists the tools in the prompt too
                    text += "\n" + json.dumps(data["tools"], ensure_ascii=False)
                tokens = self.count_tokens(text)
                if tokens > self.max_seq_length:
                    problems.append(
                        f"{tokens} tokens, longer than max_seq_length {self.max_seq_length} "
                        "(mlx_lm would cut it off)"
                    )
            if not problems:
                self.report.valid.append(example)
                return
        self.report.problems.append(Rejection(source, number, "; ".join(problems), raw))

    def check_line(self, line: Line, origin: str | None = None) -> None:
        source, number, text = line
        if not text.strip():
            reason = "empty line (mlx_lm cannot parse it)"
        else:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                reason = "not valid UTF-8"
            else:
                try:
                    data = parse_json(text)
                except json.JSONDecodeError as exc:
                    reason = f"broken JSON: {exc.msg} (column {exc.colno})"
                except RecursionError:
                    reason = "broken JSON: nested too deeply"
                else:
                    self.check(data, source, number, text, origin)
                    return
        raw = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        self.report.problems.append(Rejection(source, number, reason, raw))


def validate(
    lines: Iterable[Line | tuple[Path, int, str]],
    *,
    max_seq_length: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> ValidationReport:
    """Check ``(source, line number, text)`` lines; each becomes one example or one problem.

    With ``max_seq_length``, ``count_tokens(text)`` measures the concatenated contents (and the
    tools' schemas, which the chat template renders into the prompt).
    """
    checker = _Checker(max_seq_length, count_tokens)
    for line in lines:
        checker.check_line(Line(*line))
    return checker.report


def validate_examples(
    examples: Iterable[Example],
    *,
    max_seq_length: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> ValidationReport:
    """Check examples built in memory (an importer's), keeping their provenance."""
    checker = _Checker(max_seq_length, count_tokens)
    for example in examples:
        checker.check(example.data, example.source, example.line, example.to_json(), example.origin)
    return checker.report


def validate_paths(
    paths: Sequence[Path | str],
    *,
    max_seq_length: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> ValidationReport:
    """Validate JSONL files and dataset folders; examples get origins from provenance sidecars.

    Raises ``FileNotFoundError`` or ``DatasetError`` for paths that hold no dataset.
    """
    files = [file for path in paths for file in dataset_files(path)]
    checker = _Checker(max_seq_length, count_tokens)
    for file in files:
        origins = read_provenance(file)
        for line in read_lines(file):
            checker.check_line(line, origins.get(line.number))
    return checker.report
