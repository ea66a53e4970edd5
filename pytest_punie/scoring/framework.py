"""Assertion-style scorers: check a model's response, record a score, fail below the pass mark.

A scorer computes a score in [0, 1] for a response, records it on the current case's
``ScoreSheet`` (when one is being collected) and raises ``AssertionError`` when the score is
below its pass mark, so it reads like an ``assert`` in a test::

    def test_capital(punie_agent):
        result = punie_agent.run_sync("What is the capital of France?")
        assert_keywords(result, ["Paris"])

Several scorers in one case each record a score; the case's score is their mean. Nothing here
needs pytest: ``collecting_scores()`` collects the scores of any block of code."""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeAlias, overload

from pytest_punie.conversation.response import Response, as_response
from pytest_punie.tools.parsing import ToolCall

__all__ = [
    "ScoreFailure",
    "ScoreRecord",
    "ScoreSheet",
    "ScoreValue",
    "Scorer",
    "calls_json",
    "check_pass_mark",
    "collecting_scores",
    "current_sheet",
    "excerpt",
    "format_calls",
    "jsonable",
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
        self.pass_mark = check_pass_mark(name, pass_mark)

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
            pass_mark = check_pass_mark(self.name, override)
        else:
            pass_mark = check_pass_mark(self.name, details.get("pass_mark", self.pass_mark))
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


def check_pass_mark(name: str, pass_mark: Any) -> float:
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
        f"  response: {excerpt(response.text)!r}\n"
        f"  tool calls: {format_calls(response.tool_calls)}"
    )


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def format_calls(calls: Sequence[ToolCall], limit: int = 10) -> str:
    if not calls:
        return "none"
    shown = [
        f"{call.name}({', '.join(f'{key}={value!r}' for key, value in call.arguments.items())})"
        for call in calls[:limit]
    ]
    more = f" and {len(calls) - limit} more" if len(calls) > limit else ""
    return ", ".join(shown) + more


def calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [jsonable(call.to_json()) for call in calls]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data; anything JSON cannot hold becomes its repr."""
    return json.loads(json.dumps(value, default=repr))
