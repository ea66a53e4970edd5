"""Scorers of a conversation's tool calls: one named call, no call, or BFCL-style every call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_punie.conversation.response import Response
from pytest_punie.scoring.arguments import argument_mismatches
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
from pytest_punie.scoring.framework import calls_json, jsonable, scorer
from pytest_punie.tools.parsing import find_call_like_text

__all__ = ["assert_no_tool_call", "assert_tool_called", "assert_tool_calls"]

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
        "expected": jsonable({"name": name, "arguments": dict(arguments or {})}),
        "calls": calls_json(calls),
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
        (argument_mismatches(arguments, call.arguments, allow_unknown=True) for call in named),
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
    details: dict[str, Any] = {"calls": calls_json(response.tool_calls)}
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
        "expected": [jsonable({"name": e.name, "arguments": dict(e.arguments)}) for e in expected],
        "calls": calls_json(response.tool_calls),
        "reason": check.reason,
        "matched": check.matched,
    }
    if check.failure is not None:
        details["failure"] = check.failure
    return check.score, details
