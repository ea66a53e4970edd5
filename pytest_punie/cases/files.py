"""Eval cases as data: ``eval_*.jsonl`` files, one case per line, in mlx_lm's chat format.

A line is ``{"id": ..., "category": ..., "messages": [...], "tools": [...], "tool_results": {...},
"expected": {...}, "marks": [...]}``; the last user turn is the prompt, earlier turns are the
conversation so far (turns after it, such as a training line's reference answer, are not sent).
``expected`` maps onto the scorers: ``number`` (+ ``tolerance``), ``keywords`` (+
``min_fraction``), ``regex``, ``tool_calls`` (+ ``ordered``), ``no_tool_call``, ``python_tests``
and ``scorer`` ("module:function", the user's own). Tools are JSON schemas the model sees; its
calls are recorded and answered with the line's ``tool_results`` entry, else a stub.

One parser and validator serve pytest's collection (``pytest_collect_file``: node ids
``eval_x.jsonl::<id>``, the line number without an id) and ``punie_cases(path)`` for
``pytest.mark.parametrize``. A bad line is an error naming ``file:line``, never a skipped case.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_punie.cases.marker import MARKER, REPEAT_ID, Case
from pytest_punie.finetune.validation import chat_problems
from pytest_punie.scoring import code as code_scorers
from pytest_punie.scoring import framework
from pytest_punie.scoring import text as text_scorers
from pytest_punie.scoring import tool_calls as tool_scorers
from pytest_punie.scoring.bfcl import ExpectedCall
from pytest_punie.stash import CASE_FILE_KEY, REPEATS_KEY, VARIANTS_KEY

if TYPE_CHECKING:
    from pytest_punie.conversation.response import Response

__all__ = [
    "CaseFileError",
    "CaseLine",
    "EvalFile",
    "is_case_file",
    "punie_cases",
    "read_case_file",
    "score_case",
    "to_model_messages",
]

FILE_PATTERN = re.compile(r"^eval_.*\.jsonl$")
LINE_KEYS = frozenset(
    {"id", "category", "messages", "tools", "tool_results", "expected", "marks", "description"}
)
EXPECTED_KEYS = frozenset(
    {
        "number",
        "tolerance",
        "keywords",
        "min_fraction",
        "regex",
        "tool_calls",
        "ordered",
        "no_tool_call",
        "python_tests",
        "scorer",
    }
)
CHECK_KEYS = ("number", "keywords", "regex", "tool_calls", "no_tool_call", "python_tests", "scorer")
STUB_RESULT = "ok"  # what a tool call gets when the line gives no tool_results entry for it
_ID = re.compile(r"^[\w.-]+$")


class CaseFileError(ValueError):
    """A case file line that cannot be a case; the message starts with ``file:line``."""


@dataclass(frozen=True)
class CaseLine:
    """One valid line of a case file."""

    source: Path
    line: int
    id: str  # the line's id, or its line number
    category: str
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()
    tool_results: Mapping[str, Any] = field(default_factory=dict)
    expected: Mapping[str, Any] = field(default_factory=dict)
    marks: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def prompt_index(self) -> int:
        return max(i for i, m in enumerate(self.messages) if m["role"] == "user")

    @property
    def prompt(self) -> str:
        return str(self.messages[self.prompt_index]["content"])

    @property
    def history(self) -> tuple[dict[str, Any], ...]:
        """The turns before the prompt; a lone leading system turn is the system prompt."""
        before = self.messages[: self.prompt_index]
        return () if len(before) <= 1 and all(m["role"] == "system" for m in before) else before

    @property
    def system_prompt(self) -> str | None:
        before = self.messages[: self.prompt_index]
        if len(before) == 1 and before[0]["role"] == "system":
            return str(before[0]["content"])
        return None

    def score(self, response: Response) -> None:
        """Run the line's checks on ``response`` (see ``score_case``)."""
        score_case(self.expected, response, self.source.parent)

    def case(self, nodeid: str, repeat: int = 0, variant: str | None = None) -> Case:
        """The ``Case`` the runner runs for this line."""
        return Case(
            nodeid=nodeid,
            category=self.category,
            prompt=self.prompt,
            tools=tuple(self._tools()),
            system_prompt=self.system_prompt,
            repeat=repeat,
            variant=variant,
            history=self.history,
            tool_schemas=self.tools,
            expected=dict(self.expected),
            # the file as the node id names it (relative to the rootdir), else as it was read
            source=f"{nodeid.partition('::')[0]}:{self.line}" if "::" in nodeid else self.location,
        )

    def _tools(self) -> Iterator[Any]:
        from pydantic_ai import Tool

        for schema in self.tools:
            function = _function_of(schema)
            name = str(function["name"])
            result = self.tool_results.get(name, STUB_RESULT)
            yield Tool.from_schema(
                _stub(result),
                name=name,
                description=function.get("description") or "",
                json_schema=function.get("parameters") or {"type": "object", "properties": {}},
            )


def _stub(result: Any) -> Callable[..., Any]:
    def answer(**_: Any) -> Any:
        return result

    return answer


def _function_of(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    function = schema.get("function", schema)
    return function if isinstance(function, Mapping) else {}


def is_case_file(path: Path) -> bool:
    return bool(FILE_PATTERN.match(path.name))


def _check_chat(messages: Any, tools: Any, where: str) -> None:
    """The line's turns and tools by the one rule of chat lines (``chat_problems``), and what a
    case needs besides: a prompt (a user turn) and tool names pydantic-ai accepts."""
    problems = chat_problems(messages, tools or None)
    if not problems and not any(m["role"] == "user" for m in messages):
        problems.append("'messages' has no user turn (the last one is the prompt)")
    for n, tool in enumerate(tools if isinstance(tools, list) else [], start=1):
        name = _function_of(tool).get("name") if isinstance(tool, Mapping) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", name):
            problems.append(f"tool {n} needs a 'name' (letters, digits, _ or -)")
    if problems:
        raise CaseFileError(f"{where}: {'; '.join(problems)}")


def _check_expected(expected: Any, tool_names: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(expected, dict) or not any(k in expected for k in CHECK_KEYS):
        raise CaseFileError(
            f"{where}: 'expected' must be an object with at least one of {', '.join(CHECK_KEYS)}"
        )
    unknown = sorted(set(expected) - EXPECTED_KEYS)
    if unknown:
        raise CaseFileError(f"{where}: unknown key(s) in 'expected': {', '.join(unknown)}")

    def fail(message: str) -> CaseFileError:
        return CaseFileError(f"{where}: expected {message}")

    number = expected.get("number")
    if "number" in expected and (isinstance(number, bool) or not isinstance(number, (int, float))):
        raise fail("'number' must be a number")
    if "tolerance" in expected and not isinstance(expected["tolerance"], (int, float)):
        raise fail("'tolerance' must be a number")
    keywords = expected.get("keywords")
    if "keywords" in expected and (
        not isinstance(keywords, list)
        or not keywords
        or not all(isinstance(k, str) for k in keywords)
    ):
        raise fail("'keywords' must be a non-empty list of strings")
    if "regex" in expected:
        try:
            re.compile(expected["regex"])
        except (re.error, TypeError) as exc:
            raise fail(f"'regex' does not compile: {exc}") from None
    if "tool_calls" in expected:
        calls = expected["tool_calls"]
        if not isinstance(calls, list):
            raise fail("'tool_calls' must be a list of {name, arguments}")
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise fail("'tool_calls' entries need a 'name'")
            if not isinstance(call.get("arguments", {}), dict):
                raise fail(f"tool call {call['name']!r}: 'arguments' must be an object")
            if tool_names and call["name"] not in tool_names:
                raise fail(f"a call of {call['name']!r}, which is not one of the line's tools")
    if "no_tool_call" in expected and expected["no_tool_call"] is not True:
        raise fail("'no_tool_call' can only be true")
    tests = expected.get("python_tests")
    if "python_tests" in expected and (
        not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests)
    ):
        raise fail("'python_tests' must be a non-empty list of test statements")
    if "scorer" in expected:
        try:
            load_scorer(expected["scorer"], Path(where.rpartition(":")[0]).parent)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise fail(f"'scorer': {exc}") from None
    return dict(expected)


def load_scorer(spec: Any, folder: Path | None = None) -> Callable[..., Any]:
    """The function ``module:function`` names (the case file's folder is tried as well)."""
    if not isinstance(spec, str) or not re.fullmatch(r"[\w.]+:[\w.]+", spec):
        raise ValueError(f"{spec!r} is not 'module:function'")
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if folder is None or not (folder / f"{module_name.split('.')[0]}.py").exists():
            raise
        sys.path.insert(0, str(folder))
        try:
            module = importlib.import_module(module_name)
        finally:
            sys.path.remove(str(folder))
    value: Any = module
    for name in attribute.split("."):
        value = getattr(value, name)
    if not callable(value):
        raise TypeError(f"{spec} is not a function")
    return value  # type: ignore[no-any-return]


def parse_line(text: str, source: Path, number: int) -> CaseLine | None:
    """Validate one line; None for a blank line. Raises ``CaseFileError`` naming file:line."""
    where = f"{source}:{number}"
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CaseFileError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CaseFileError(f"{where}: a case is a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - LINE_KEYS)
    if unknown:
        raise CaseFileError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(LINE_KEYS))})"
        )
    case_id = data.get("id", str(number))
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise CaseFileError(
            f"{where}: 'id' must be letters, digits, '_', '-' or '.', not {case_id!r}"
        )
    category = data.get("category", "general")
    if not isinstance(category, str) or not category.strip():
        raise CaseFileError(f"{where}: 'category' must be a non-empty string")
    messages, tools = data.get("messages", []), data.get("tools", [])
    if not isinstance(tools, list):
        raise CaseFileError(f"{where}: 'tools' must be a list of tool schemas, not {tools!r:.40}")
    _check_chat(messages, tools, where)
    tool_names = [str(_function_of(t)["name"]) for t in tools]
    tool_results = data.get("tool_results", {})
    if not isinstance(tool_results, dict):
        raise CaseFileError(f"{where}: 'tool_results' must map tool names to results")
    stray = sorted(set(tool_results) - set(tool_names))
    if stray:
        raise CaseFileError(f"{where}: 'tool_results' names unknown tool(s) {', '.join(stray)}")
    if "expected" not in data:
        raise CaseFileError(f"{where}: no 'expected': a case without a check would always pass")
    expected = _check_expected(data["expected"], tool_names, where)
    marks = data.get("marks", [])
    if not isinstance(marks, list) or not all(
        isinstance(m, str) and m.isidentifier() for m in marks
    ):
        raise CaseFileError(f"{where}: 'marks' must be a list of marker names")
    return CaseLine(
        source=source,
        line=number,
        id=case_id,
        category=category.strip(),
        messages=tuple(messages),
        tools=tuple(tools),
        tool_results=dict(tool_results),
        expected=expected,
        marks=tuple(marks),
    )


def read_case_file(path: Path | str) -> list[CaseLine]:
    """Every case of a file, validated; the first bad line raises ``CaseFileError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read the case file: {exc}") from None
    cases: list[CaseLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        case = parse_line(raw, path, number)
        if case is None:
            continue
        if case.id in seen:
            raise CaseFileError(
                f"{path}:{number}: id {case.id!r} is already used on line {seen[case.id]}"
            )
        seen[case.id] = number
        cases.append(case)
    return cases


def to_model_messages(history: Sequence[Mapping[str, Any]]) -> list[Any]:
    """mlx_lm chat turns as pydantic-ai messages (consecutive request turns share a request)."""
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelRequestPart,
        ModelResponse,
        ModelResponsePart,
        SystemPromptPart,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )

    messages: list[ModelMessage] = []
    pending: list[ModelRequestPart] = []
    call_names: dict[str, str] = {}
    for n, turn in enumerate(history):
        role, content = turn["role"], turn.get("content") or ""
        if role == "assistant":
            if pending:
                messages.append(ModelRequest(parts=pending))
                pending = []
            parts: list[ModelResponsePart] = [TextPart(content)] if content else []
            for k, call in enumerate(turn.get("tool_calls") or []):
                function = call.get("function", call)
                call_id = str(call.get("id") or f"history-{n}-{k}")
                call_names[call_id] = function["name"]
                parts.append(ToolCallPart(function["name"], function.get("arguments"), call_id))
            messages.append(ModelResponse(parts=parts))
        elif role == "tool":
            call_id = str(turn.get("tool_call_id") or next(reversed(call_names), "history"))
            name = turn.get("name") or call_names.get(call_id, "tool")
            pending.append(ToolReturnPart(name, content, tool_call_id=call_id))
        elif role == "system":
            pending.append(SystemPromptPart(content))
        else:
            pending.append(UserPromptPart(content))
    if pending:
        messages.append(ModelRequest(parts=pending))
    return messages


def score_case(expected: Mapping[str, Any], response: Response, folder: Path | None = None) -> None:
    """Run every check ``expected`` names (each one's score is recorded), then raise the first
    failure."""

    checks: list[Callable[[], Any]] = []
    if "number" in expected:
        tolerance = float(expected.get("tolerance", 0.0))
        checks.append(lambda: text_scorers.assert_number(response, expected["number"], tolerance))
    if "keywords" in expected:
        fraction = float(expected.get("min_fraction", 1.0))
        checks.append(
            lambda: text_scorers.assert_keywords(response, expected["keywords"], fraction)
        )
    if "regex" in expected:
        checks.append(lambda: text_scorers.assert_regex(response, expected["regex"]))
    if "tool_calls" in expected:
        calls = [ExpectedCall(c["name"], c.get("arguments", {})) for c in expected["tool_calls"]]
        ordered = bool(expected.get("ordered", False))
        checks.append(lambda: tool_scorers.assert_tool_calls(response, calls, ordered=ordered))
    if expected.get("no_tool_call"):
        checks.append(lambda: tool_scorers.assert_no_tool_call(response))
    if "python_tests" in expected:
        checks.append(lambda: code_scorers.assert_python_code(response, expected["python_tests"]))
    if "scorer" in expected:
        function = load_scorer(expected["scorer"], folder)
        own = function if isinstance(function, framework.Scorer) else framework.scorer(function)
        checks.append(lambda: own(response))
    failures: list[AssertionError] = []
    for check in checks:
        try:
            check()
        except AssertionError as failure:
            failures.append(failure)
    if failures:
        raise failures[0]


class EvalFile(pytest.File):
    """An ``eval_*.jsonl`` file: one test per line."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            lines = read_case_file(self.path)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        repeat = self.config.stash.get(REPEATS_KEY, 1)
        variants: tuple[str | None, ...] = (*self.config.stash.get(VARIANTS_KEY, ()),) or (None,)
        runs = [(k, variant) for k in range(repeat) for variant in variants]
        for line in lines:
            for k, variant in runs:
                parts = [f"{REPEAT_ID}{k}"] if repeat > 1 else []
                parts += [variant] if variant else []  # the variant's part last, as for tests
                name = f"{line.id}[{'-'.join(parts)}]" if parts else line.id
                item = pytest.Function.from_parent(self, name=name, callobj=_case_test(line))
                item.add_marker(getattr(pytest.mark, MARKER)(line.category))
                for mark in line.marks:
                    item.add_marker(getattr(pytest.mark, mark))
                item.extra_keyword_matches.add(line.category)
                item.stash[CASE_FILE_KEY] = line.case(
                    item.nodeid, repeat=k if repeat > 1 else 0, variant=variant
                )
                yield item


def _case_test(line: CaseLine) -> Callable[..., None]:
    def test_case(punie_result: Response) -> None:
        line.score(punie_result)

    test_case.__doc__ = f"{line.location}: {line.prompt[:80]}"
    return test_case


def punie_cases(path: Path | str) -> list[Any]:
    """The cases of a case file as ``pytest.param`` objects, for
    ``@pytest.mark.parametrize("case", punie_cases("eval_x.jsonl"))``: each param is a
    ``CaseLine`` with the line's id and marks; score it with ``score_case(case.expected, ...)``."""
    path = Path(path)
    if not path.is_absolute():
        caller = Path(sys._getframe(1).f_globals.get("__file__", ".")).parent
        if (caller / path).is_file():
            path = caller / path
    try:
        lines = read_case_file(path)
    except CaseFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    return [
        pytest.param(line, id=line.id, marks=[getattr(pytest.mark, m) for m in line.marks])
        for line in lines
    ]
