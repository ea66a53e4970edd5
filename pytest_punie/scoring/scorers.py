"""Assertion-style scorers: check a model's response, record a score, fail below the pass mark.

A scorer computes a score in [0, 1] for a response, records it on the current case's
``ScoreSheet`` (when one is being collected) and raises ``AssertionError`` when the score is
below its pass mark, so it reads like an ``assert`` in a test::

    def test_capital(punie_agent):
        result = punie_agent.run_sync("What is the capital of France?")
        assert_keywords(result, ["Paris"])

Several scorers in one case each record a score; the case's score is their mean. Nothing here
needs pytest: ``collecting_scores()`` collects the scores of any block of code.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import hmac
import json
import math
import numbers
import re
import secrets
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeAlias, overload

from pytest_punie.conversation.response import Response, as_response
from pytest_punie.scoring.arguments import argument_problems
from pytest_punie.scoring.bfcl import (
    EXTRA_CALL,
    NO_CALL,
    REFUSED,
    UNPARSEABLE,
    WRONG_ARGUMENTS,
    WRONG_TOOL,
    ExpectedCall,
    check_tool_calls,
)
from pytest_punie.tools.parsing import ToolCall, find_call_like_text

__all__ = [
    "ScoreFailure",
    "ScoreRecord",
    "ScoreSheet",
    "ScoreValue",
    "Scorer",
    "assert_keywords",
    "assert_no_tool_call",
    "assert_number",
    "assert_python_code",
    "assert_regex",
    "assert_tool_called",
    "assert_tool_calls",
    "collecting_scores",
    "current_sheet",
    "scorer",
]

P = ParamSpec("P")

ScoreValue: TypeAlias = float | bool | tuple[float, Mapping[str, Any]]
"""What a scorer function returns: a score, a pass/fail, or a score with JSON-able details."""

EXCERPT_CHARS = 300
"""How much of the response a failure message shows."""


@dataclass(frozen=True)
class ScoreRecord:
    """One scorer's verdict on one response; ``details`` is JSON-serialisable."""

    scorer: str
    score: float
    passed: bool
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "score": self.score,
            "passed": self.passed,
            "details": dict(self.details),
        }


@dataclass
class ScoreSheet:
    """The scores recorded for one case, and the response the latest scorer read."""

    records: list[ScoreRecord] = field(default_factory=list)
    response: Response | None = None

    def record(self, record: ScoreRecord) -> None:
        self.records.append(record)

    @property
    def mean(self) -> float | None:
        """The case's score: the mean of its records, or ``None`` when nothing was recorded."""
        if not self.records:
            return None
        return math.fsum(record.score for record in self.records) / len(self.records)


class ScoreFailure(AssertionError):
    """A score below its pass mark; ``record`` is what was recorded."""

    def __init__(self, message: str, record: ScoreRecord) -> None:
        super().__init__(message)
        self.record = record

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.record))


_current_sheet: ContextVar[ScoreSheet | None] = ContextVar("punie_score_sheet", default=None)


@contextmanager
def collecting_scores() -> Iterator[ScoreSheet]:
    """Record the scores of every scorer called in the block on a fresh ``ScoreSheet``.

    The previous sheet (usually none) is restored afterwards. Tasks started inside the block copy
    the context, so they record on the same sheet.
    """
    sheet = ScoreSheet()
    token = _current_sheet.set(sheet)
    try:
        yield sheet
    finally:
        _current_sheet.reset(token)


def current_sheet() -> ScoreSheet | None:
    """The sheet scores are being recorded on, or ``None`` outside ``collecting_scores()``."""
    return _current_sheet.get()


class Scorer(Generic[P]):
    """An assertion-style scorer made by :func:`scorer` from a scoring function.

    Calling it with a response (a ``Response``, a pydantic-ai run result or a str) and the
    function's other arguments returns the ``ScoreRecord``, or raises ``ScoreFailure`` (an
    ``AssertionError``) when the score is below the pass mark. ``pass_mark=`` overrides the pass
    mark for one call; otherwise a scoring function may set it in its details (``assert_keywords``
    does, from ``min_fraction``); otherwise the scorer's own applies.
    """

    def __init__(
        self, func: Callable[Concatenate[Response, P], ScoreValue], *, name: str, pass_mark: float
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name
        self.pass_mark = _check_pass_mark(name, pass_mark)

    def __repr__(self) -> str:
        return f"<scorer {self.name} pass_mark={self.pass_mark}>"

    @overload
    def __call__(self, result: Any, /, *args: P.args, **kwargs: P.kwargs) -> ScoreRecord: ...

    @overload
    def __call__(
        self, result: Any, /, *args: Any, pass_mark: float, **kwargs: Any
    ) -> ScoreRecord: ...

    def __call__(self, result: Any, /, *args: Any, **kwargs: Any) -> ScoreRecord:
        __tracebackhide__ = True  # pytest shows the test's line and this message, not our frame
        override = kwargs.pop("pass_mark", None)
        response = as_response(result)
        score, details = _normalise(self.name, self.func(response, *args, **kwargs))
        if override is not None:
            pass_mark = _check_pass_mark(self.name, override)
        else:
            pass_mark = _check_pass_mark(self.name, details.get("pass_mark", self.pass_mark))
        details["pass_mark"] = pass_mark
        record = ScoreRecord(self.name, score, score >= pass_mark, details)
        sheet = current_sheet()
        if sheet is not None:
            sheet.response = response
            sheet.record(record)
        if not record.passed:
            raise ScoreFailure(_failure_message(record, pass_mark, response), record)
        return record


@overload
def scorer(func: Callable[Concatenate[Response, P], ScoreValue], /) -> Scorer[P]: ...


@overload
def scorer(
    func: None = None, /, *, name: str | None = None, pass_mark: float = 1.0
) -> Callable[[Callable[Concatenate[Response, P], ScoreValue]], Scorer[P]]: ...


def scorer(
    func: Callable[Concatenate[Response, P], ScoreValue] | None = None,
    /,
    *,
    name: str | None = None,
    pass_mark: float = 1.0,
) -> Scorer[P] | Callable[[Callable[Concatenate[Response, P], ScoreValue]], Scorer[P]]:
    """Turn ``fn(response, ...) -> float | bool | (float, details)`` into an assertion scorer.

    Use as ``@scorer`` or ``@scorer(name=..., pass_mark=...)``. The function receives a
    ``Response``; a ``details["reason"]`` it returns is shown when the score fails.
    """

    def decorate(func: Callable[Concatenate[Response, P], ScoreValue]) -> Scorer[P]:
        return Scorer(func, name=name or func.__name__, pass_mark=pass_mark)

    return decorate if func is None else decorate(func)


def _check_pass_mark(name: str, pass_mark: Any) -> float:
    if isinstance(pass_mark, bool) or not isinstance(pass_mark, numbers.Real):
        raise TypeError(f"{name}: pass mark must be a number, not {pass_mark!r}")
    if not 0.0 <= float(pass_mark) <= 1.0:
        raise ValueError(f"{name}: pass mark must be between 0 and 1, not {pass_mark!r}")
    return float(pass_mark)


def _normalise(name: str, value: Any) -> tuple[float, dict[str, Any]]:
    """Check a scoring function's return value and split it into a score and details."""
    details: Mapping[str, Any] = {}
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[1], Mapping):
            raise TypeError(f"{name}: a scorer returns a score or (score, details), not {value!r}")
        value, details = value
    if isinstance(value, bool):
        score = 1.0 if value else 0.0
    elif isinstance(value, numbers.Real):
        score = float(value)
    else:
        raise TypeError(f"{name}: a score must be a number or a bool, not {value!r}")
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"{name}: score must be between 0 and 1, not {score!r}")
    try:
        json.dumps(details)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: details must be JSON-serialisable: {error}") from None
    return score, dict(details)


def _failure_message(record: ScoreRecord, pass_mark: float, response: Response) -> str:
    reason = record.details.get("reason") or "the response did not meet the check"
    return (
        f"{record.scorer}: score {record.score:.2f} < pass mark {pass_mark:.2f}: {reason}\n"
        f"  response: {_excerpt(response.text)!r}\n"
        f"  tool calls: {_format_calls(response.tool_calls)}"
    )


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _format_calls(calls: Sequence[ToolCall], limit: int = 10) -> str:
    if not calls:
        return "none"
    shown = [
        f"{call.name}({', '.join(f'{key}={value!r}' for key, value in call.arguments.items())})"
        for call in calls[:limit]
    ]
    more = f" and {len(calls) - limit} more" if len(calls) > limit else ""
    return ", ".join(shown) + more


def _calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [_jsonable(call.to_json()) for call in calls]


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data; anything JSON cannot hold becomes its repr."""
    return json.loads(json.dumps(value, default=repr))


# Keywords ---------------------------------------------------------------------------------------


@scorer
def assert_keywords(
    response: Response,
    words: Sequence[str],
    min_fraction: float = 1.0,
    case_sensitive: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Score the fraction of ``words`` found in the text; pass when it is at least ``min_fraction``.

    A word's alphanumeric ends must sit on word boundaries ("cat" is not found in "concatenate",
    "C++" is not found in "ABC++"); ends that are symbols match anywhere.
    """
    if isinstance(words, str):
        raise TypeError("assert_keywords: words must be a sequence of str, not one str")
    if not words:
        raise ValueError("assert_keywords: words must not be empty")
    if any(not isinstance(word, str) or not word.strip() for word in words):
        raise ValueError(f"assert_keywords: every word must be a non-blank str, got {words!r}")
    _check_pass_mark("assert_keywords: min_fraction", min_fraction)
    flags = 0 if case_sensitive else re.IGNORECASE
    found = [word for word in words if re.search(_keyword_pattern(word), response.text, flags)]
    missing = [word for word in words if word not in found]
    details: dict[str, Any] = {"found": found, "missing": missing, "pass_mark": min_fraction}
    if missing:
        details["reason"] = f"missing keywords: {', '.join(map(repr, missing))}"
    return len(found) / len(words), details


def _keyword_pattern(word: str) -> str:
    before = r"(?<!\w)" if re.match(r"\w", word) else ""
    after = r"(?!\w)" if re.search(r"\w\Z", word) else ""
    return before + re.escape(word) + after


# Regex ------------------------------------------------------------------------------------------


@scorer
def assert_regex(
    response: Response, pattern: str | re.Pattern[str], flags: int = 0
) -> tuple[float, dict[str, Any]]:
    """1.0 when ``re.search(pattern, text, flags)`` matches."""
    if isinstance(pattern, re.Pattern) and flags:
        raise ValueError("assert_regex: give flags with a str pattern, not a compiled one")
    compiled = re.compile(pattern, flags)
    match = compiled.search(response.text)
    details: dict[str, Any] = {"pattern": compiled.pattern}
    if match is None:
        details["reason"] = f"no match for {compiled.pattern!r}"
        return 0.0, details
    details["match"] = _excerpt(match.group(0), 200)
    return 1.0, details


# Numbers ----------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?<![0-9])(?<![0-9]\.)                      # not the tail of a longer number ("3.14.15")
    (?:(?<![\w)\]])(?P<sign>[-+\u2212]))?       # a sign, but not a binary minus ("5-3")
    (?P<digits>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)   # "1,234" or "1234"
    (?P<fraction>\.[0-9]+)?
    (?P<exponent>[eE][-+]?[0-9]+)?
    """,
    re.VERBOSE,
)

# Text just before a number that marks it as the final answer ...
_ANSWER_BEFORE = re.compile(
    r"""
    (?: \banswer(?:\s+is|\s+would\s+be|\s+will\s+be)?\s*[:=]?   # "the answer is", "Answer:"
      | =                                                       # "x = 345"
      | \\boxed\{                                               # "\boxed{345}"
    )
    (?:\s|\*\*|\$|\\\(|\\\[)*\Z                                # "**", "$", "\(" between
    """,
    re.IGNORECASE | re.VERBOSE,
)
# ... or a bold number: an opening "**" right before it and a closing one soon after.
_BOLD_OPEN = re.compile(r"(?:\A|[\s(:])\*\*\$?\Z")
_BOLD_CLOSE = re.compile(r"[^*\n]{0,30}\*\*")
# A number followed by an operator is the start of an expression ("= 3*4 = 12"), not an answer.
_EXPRESSION_GOES_ON = re.compile(r"\s*[-+*/^\u00d7\u00f7]\s*[0-9(]")


@dataclass(frozen=True)
class _Number:
    value: float
    is_answer: bool


def _numbers_in(text: str) -> list[_Number]:
    """The finite numbers in ``text``, each flagged if it sits in a final-answer pattern."""
    numbers_found = []
    for match in _NUMBER.finditer(text):
        sign = "-" if match["sign"] in ("-", "\u2212") else ""
        literal = sign + match["digits"].replace(",", "")
        value = float(literal + (match["fraction"] or "") + (match["exponent"] or ""))
        if math.isfinite(value):
            numbers_found.append(_Number(value, _is_answer(text, match)))
    return numbers_found


def _is_answer(text: str, match: re.Match[str]) -> bool:
    window = max(0, match.start() - 40), match.start()
    if _EXPRESSION_GOES_ON.match(text, match.end()):
        return False
    if _ANSWER_BEFORE.search(text, *window):
        return True
    return bool(_BOLD_OPEN.search(text, *window) and _BOLD_CLOSE.match(text, match.end()))


@scorer
def assert_number(
    response: Response, expected: float, tolerance: float = 0.0
) -> tuple[float, dict[str, Any]]:
    """1.0 when the final answer is ``expected`` (within ``tolerance``), 0.5 when it only appears.

    The final answer is the last number in the text or any number in a final-answer pattern
    ("the answer is X", "Answer: X", "= X", "**X**", "\\boxed{X}"). Numbers may carry a sign,
    commas between thousands, decimals and an exponent, and may be glued to words ("=345.").
    """
    expected, tolerance = _check_expected(expected, tolerance)

    def close(value: float) -> bool:
        return abs(value - expected) <= tolerance or math.isclose(value, expected, rel_tol=1e-9)

    found = _numbers_in(response.text)
    details: dict[str, Any] = {
        "expected": expected,
        "tolerance": tolerance,
        "numbers": [number.value for number in found],
        "final_answer": None,
    }
    if not found:
        details["reason"] = f"expected {_show(expected)}, found no number"
        return 0.0, details
    answers = [number.value for number in found if number.is_answer]
    matching = [value for value in [*answers, found[-1].value] if close(value)]
    if matching:
        details["final_answer"] = matching[0]
        return 1.0, details
    final = details["final_answer"] = answers[-1] if answers else found[-1].value
    shown = f"expected {_show(expected)}, final answer {_show(final)}"
    if any(close(number.value) for number in found):
        details["reason"] = f"{shown} ({_show(expected)} appears elsewhere in the text)"
        return 0.5, details
    details["reason"] = shown
    return 0.0, details


def _show(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def _check_expected(expected: Any, tolerance: Any) -> tuple[float, float]:
    if isinstance(expected, bool) or not isinstance(expected, numbers.Real):
        raise TypeError(f"assert_number: expected must be a number, not {expected!r}")
    if not math.isfinite(expected):
        raise ValueError(f"assert_number: expected must be finite, not {expected!r}")
    if not isinstance(tolerance, numbers.Real) or not 0 <= float(tolerance) < math.inf:
        raise ValueError(
            f"assert_number: tolerance must be a finite number >= 0, not {tolerance!r}"
        )
    return float(expected), float(tolerance)


# Tool calls -------------------------------------------------------------------------------------


@scorer
def assert_tool_called(
    response: Response, name: str, arguments: Mapping[str, Any] | None = None
) -> tuple[float, dict[str, Any]]:
    """1.0 when ``name`` was called with ``arguments``; 0.5 when called with other arguments.

    Only the given arguments are checked (extra ones are fine); values compare by the one rule
    of ``arguments.same_value`` (free text normalised; paths, globs and identifiers exactly).
    """
    calls = response.tool_calls
    details: dict[str, Any] = {
        "expected": _jsonable({"name": name, "arguments": dict(arguments or {})}),
        "calls": _calls_json(calls),
    }
    if not calls:
        unparseable = find_call_like_text(response.text)
        details["failure"] = UNPARSEABLE if unparseable else NO_CALL
        details["reason"] = "no tool call" + _call_like_note(response)
        return 0.0, details
    named = [call for call in calls if call.name == name]
    if not named:
        got = [call.name for call in calls]
        details["failure"] = REFUSED if response.sandbox_refusals else WRONG_TOOL
        details["reason"] = f"wrong tool: got {got!r}" + _call_like_note(response)
        return 0.0, details
    if arguments is None:
        return 1.0, details
    problems = min(
        (argument_problems(arguments, call.arguments, allow_unknown=True) for call in named),
        key=len,
    )
    if not problems:
        return 1.0, details
    details["failure"] = REFUSED if response.sandbox_refusals else WRONG_ARGUMENTS
    details["reason"] = f"wrong arguments: {'; '.join(problems)}"
    return 0.5, details


def _call_like_note(response: Response) -> str:
    if find_call_like_text(response.text):
        return " (the text holds what looks like a tool call that could not be parsed)"
    return ""


@scorer
def assert_no_tool_call(response: Response) -> tuple[float, dict[str, Any]]:
    """1.0 when the response made no tool call."""
    details: dict[str, Any] = {"calls": _calls_json(response.tool_calls)}
    if response.tool_calls:
        names = [call.name for call in response.tool_calls]
        details["failure"] = EXTRA_CALL
        details["reason"] = f"expected no tool call, got {names!r}"
        return 0.0, details
    return 1.0, details


@scorer
def assert_tool_calls(
    response: Response, expected: Sequence[ExpectedCall], ordered: bool = False
) -> tuple[float, dict[str, Any]]:
    """BFCL-style check of every call: names, required and unknown arguments, types, normalised
    strings, acceptable values; parallel calls in any order, or in order with ``ordered``.
    An empty ``expected`` means no tool may be called. Score: calls matched over calls made or
    expected, whichever is more; the failure is classified (see ``tool_checker.FAILURE_TYPES``).
    """
    check = check_tool_calls(
        response.tool_calls,
        expected,
        ordered=ordered,
        text=response.text,
        refusals=response.sandbox_refusals,
    )
    details: dict[str, Any] = {
        "expected": [_jsonable({"name": e.name, "arguments": dict(e.arguments)}) for e in expected],
        "calls": _calls_json(response.tool_calls),
        "reason": check.reason,
        "matched": check.matched,
    }
    if check.failure is not None:
        details["failure"] = check.failure
    return check.score, details


# Python code ------------------------------------------------------------------------------------

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[\w+.#-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*```[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_LANGS = frozenset({"python", "py", "python3", "py3"})

# Runs in a fresh, sandboxed interpreter (see sandbox.py): executes each code block, then each
# test, in one namespace (not named "__main__", so `if __name__ == "__main__":` demos stay quiet).
# The verdicts go out on a copy of stdout, each line authenticated with a per-call random key
# that the harness reads from stdin before any model code runs and keeps only in a closure:
# model code that prints fake lines, writes to any inherited descriptor, or exits early cannot
# produce a valid line. The code's own output goes to /dev/null.
_RUNNER = r"""
def _punie_main():
    import ast, hashlib, hmac, json, os, sys, traceback
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def make_report(key):
        def report(kind, index, error):
            body = json.dumps({"kind": kind, "index": index, "error": error})
            mac = hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()
            line = (mac + " " + body + "\n").encode("utf-8")
            while line:
                line = line[os.write(out, line):]
        return report

    report = make_report(bytes.fromhex(payload.pop("key")))

    def describe(error):
        where = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<")]
        text = type(error).__name__ + (f": {error}" if str(error) else "")
        if where:
            text += f" ({where[-1].filename} line {where[-1].lineno})"
        return text[:300]

    def left_side(test, namespace):
        node = ast.parse(test).body[0]
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            try:
                value = eval(compile(ast.Expression(node.test.left), "<test>", "eval"), namespace)
            except BaseException:
                return ""
            return f"; {ast.unparse(node.test.left)} is {value!r}"[:200]
        return ""

    namespace = {"__name__": "__solution__"}
    for index, block in payload["blocks"]:
        try:
            exec(compile(block, f"<block {index}>", "exec"), namespace)
            report("block", index, None)
        except BaseException as error:
            report("block", index, describe(error))
    for index, test in enumerate(payload["tests"]):
        try:
            exec(compile(test, f"<test {index}>", "exec"), namespace)
            report("test", index, None)
        except AssertionError as error:
            if str(error):
                report("test", index, describe(error))
            else:
                report("test", index, "AssertionError" + left_side(test, namespace))
        except BaseException as error:
            report("test", index, describe(error))

_punie_main()
"""

MAX_CODE_OUTPUT_BYTES = 1_000_000
"""How much of the runner's output is kept (model code cannot write to it, but may try)."""


@scorer
def assert_python_code(
    response: Response, tests: str | Sequence[str] | None = None, timeout: float = 10.0
) -> tuple[float, dict[str, Any]]:
    """Score Python code in the response: it must parse, and pass ``tests`` when given.

    The code is the ```` ```python ```` blocks, else the untagged ```` ``` ```` blocks, else the
    whole text if it parses. Blocks that do not parse (a REPL transcript, say) are skipped; the
    rest run in order in one namespace, so a later definition replaces an earlier one and helpers
    from other blocks are available. ``tests`` is a str of statements (each top-level statement is
    one test) or a sequence of tests; they run in a fresh interpreter in a temporary directory,
    killed after ``timeout`` seconds, and the score is the fraction that pass.
    """
    test_list, invalid_tests = _split_tests(tests)
    if not timeout > 0:
        raise ValueError(f"assert_python_code: timeout must be > 0, not {timeout!r}")
    blocks, syntax_errors = _code_blocks(response.text)
    details: dict[str, Any] = {"code": "\n\n".join(block for _, block in blocks)}
    if syntax_errors:
        details["skipped_blocks"] = syntax_errors
    if not blocks:
        details["reason"] = syntax_errors[0] if syntax_errors else "no Python code found"
        return 0.0, details
    if not test_list:
        return 1.0, details
    results, block_errors = _run_tests(blocks, test_list, invalid_tests, timeout)
    details["tests"] = results
    if block_errors:
        details["block_errors"] = block_errors
    failed = [result for result in results if not result["passed"]]
    if failed:
        first = failed[0]
        details["reason"] = (
            f"{len(failed)} of {len(results)} tests failed; first: {first['test']!r}: "
            f"{first['error']}"
        )
    return (len(results) - len(failed)) / len(results), details


def _split_tests(tests: str | Sequence[str] | None) -> tuple[list[str], dict[int, str]]:
    """The tests to run, and the ones that cannot run (not a string, not Python) with why."""
    if tests is None:
        return [], {}
    if isinstance(tests, str):
        source = textwrap.dedent(tests)
        error = _test_error(source)
        if error is not None:
            return [tests], {0: error}
        tree = ast.parse(source)
        return [ast.get_source_segment(source, node) or ast.unparse(node) for node in tree.body], {}
    shown: list[str] = []
    invalid: dict[int, str] = {}
    for index, test in enumerate(tests):
        if not isinstance(test, str):
            shown.append(repr(test))
            invalid[index] = f"a test must be a string of Python, not {type(test).__name__}"
            continue
        shown.append(test)
        error = _test_error(textwrap.dedent(test))
        if error is not None:
            invalid[index] = error
    return shown, invalid


def _test_error(test: str) -> str | None:
    try:
        ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        return f"the test is not valid Python: {error}"
    return None


def _code_blocks(text: str) -> tuple[list[tuple[int, str]], list[str]]:
    """The numbered candidate code blocks that parse, and the syntax errors of the others."""
    fenced = [(m["lang"].lower(), textwrap.dedent(m["body"])) for m in _FENCE.finditer(text)]
    if not fenced:
        error = _syntax_error(text)
        if error is not None:
            return [], [f"no code block, and the text is not Python: {error}"]
        return ([(0, text)] if text.strip() else []), []
    candidates = [body for lang, body in fenced if lang in _PYTHON_LANGS]
    candidates = candidates or [body for lang, body in fenced if not lang]
    blocks, errors = [], []
    for index, block in enumerate(candidates):
        error = _syntax_error(block)
        if error is not None:
            errors.append(f"block {index}: {error}")
        elif block.strip():
            blocks.append((index, block))
    return blocks, errors


def _syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as error:
        return f"syntax error: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return f"syntax error: {error}"
    return None


def _run_tests(
    blocks: list[tuple[int, str]], tests: list[str], invalid: Mapping[int, str], timeout: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``blocks`` then each test in a fresh interpreter; per-test results and block errors."""
    key = secrets.token_bytes(32)
    runnable = [test if index not in invalid else "pass" for index, test in enumerate(tests)]
    payload = json.dumps({"key": key.hex(), "blocks": blocks, "tests": runnable})
    output, timed_out = _run_isolated(payload.encode("utf-8"), timeout)
    test_errors: dict[int, str | None] = {}
    block_errors = []
    for entry in _verified_entries(output, key):
        if entry["kind"] == "test":
            test_errors[entry["index"]] = entry["error"]
        elif entry["error"] is not None:
            block_errors.append(f"block {entry['index']}: {entry['error']}")
    missing = f"timed out after {timeout:g}s" if timed_out else "did not run (the code exited)"
    results = []
    for index, test in enumerate(tests):
        error = invalid.get(index) or test_errors.get(index, missing)
        passed = index not in invalid and index in test_errors and error is None
        results.append({"test": test, "passed": passed, "error": error})
    return results, block_errors


def _verified_entries(output: bytes, key: bytes) -> Iterator[dict[str, Any]]:
    """The runner's verdict lines that carry a valid authentication code; anything else is noise."""
    for line in output.split(b"\n"):
        mac, _, body = line.partition(b" ")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        if not body or not hmac.compare_digest(mac, expected):
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(body)
            if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                yield entry


def _run_isolated(payload: bytes, timeout: float) -> tuple[bytes, bool]:
    """Run the test runner on ``payload`` in the sandbox; its output, and whether it timed out."""
    from pytest_punie.system import sandbox

    with tempfile.TemporaryDirectory(prefix="punie-code-") as workdir:
        completed = sandbox.run(
            [sys.executable, "-I", "-c", _RUNNER],
            scratch=Path(workdir),
            timeout=timeout,
            stdin=payload,
            max_output=MAX_CODE_OUTPUT_BYTES,
            merge_stderr=False,
            keep_tail=True,  # the verdicts come last, after anything the code wrote
        )
    return completed.output, completed.timed_out
