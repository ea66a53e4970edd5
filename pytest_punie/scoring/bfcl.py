"""Check a response's tool calls against the expected ones, like BFCL's AST checker.

The Berkeley Function Calling Leaderboard's rules: the function name must match; every required
argument is present; no unknown argument; types are checked (an int is accepted for a float);
strings are compared by ``arguments.same_value`` (free text normalised; paths, globs and
identifiers exactly); an argument may have several acceptable values; parallel calls
match in any order, a sequence in its order; a case that must call nothing fails on any call.
A failure is classified, so a report can count what went wrong per category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_punie.scoring.arguments import AnyOf, any_of, argument_mismatches
from pytest_punie.tools.parsing import ToolCall, find_call_like_text

__all__ = [
    "FAILURE_TYPES",
    "AnyOf",
    "CallCheck",
    "ExpectedCall",
    "any_of",
    "check_tool_calls",
]

NO_CALL = "no call"
UNPARSEABLE = "unparseable call"
WRONG_TOOL = "wrong tool"
WRONG_ARGUMENTS = "wrong arguments"
EXTRA_CALL = "extra call"
REFUSED = "refused by sandbox"
FAILURE_TYPES = (NO_CALL, UNPARSEABLE, WRONG_TOOL, WRONG_ARGUMENTS, EXTRA_CALL, REFUSED)


@dataclass(frozen=True)
class ExpectedCall:
    """A call the model should make: its name, the arguments that must have given values, the
    arguments that may be given (any value), and optionally the tool's JSON schema for types."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    schema: Mapping[str, Any] | None = None

    def mismatches(self, call: ToolCall) -> list[str]:
        """How ``call``'s arguments differ from this call's (``arguments.argument_mismatches``);
        empty when they match."""
        return argument_mismatches(
            self.arguments, call.arguments, optional=self.optional, schema=self.schema
        )


@dataclass(frozen=True)
class CallCheck:
    """The verdict: a score in [0, 1], the failure type (None when every call matched), why."""

    score: float
    failure: str | None
    reason: str
    matched: int = 0

    @property
    def passed(self) -> bool:
        return self.failure is None


def _match_unordered(expected: Sequence[ExpectedCall], calls: Sequence[ToolCall]) -> int:
    """The largest number of expected calls matched one-to-one (bipartite matching)."""
    fits = [[i for i, c in enumerate(calls) if c.name == e.name and not e.mismatches(c)]
            for e in expected]  # fmt: skip
    owner: dict[int, int] = {}

    def place(e: int, seen: set[int]) -> bool:
        for c in fits[e]:
            if c not in seen:
                seen.add(c)
                if c not in owner or place(owner[c], seen):
                    owner[c] = e
                    return True
        return False

    return sum(place(e, set()) for e in range(len(expected)))


def _match_ordered(expected: Sequence[ExpectedCall], calls: Sequence[ToolCall]) -> int:
    """How many expected calls match the calls position by position, from the start."""
    matched = 0
    for e, c in zip(expected, calls, strict=False):  # stops at the shorter
        if c.name != e.name or e.mismatches(c):
            break
        matched += 1
    return matched


def check_tool_calls(
    calls: Sequence[ToolCall],
    expected: Sequence[ExpectedCall],
    *,
    ordered: bool = False,
    text: str = "",
    refusals: Sequence[str] = (),
) -> CallCheck:
    """Check ``calls`` against ``expected`` (empty: the model must call no tool)."""
    calls, expected = list(calls), list(expected)
    if not expected:
        if calls:
            names = [c.name for c in calls]
            return CallCheck(0.0, EXTRA_CALL, f"no tool should be called, got {names}")
        return CallCheck(1.0, None, "no tool called, as expected")
    if not calls:
        if find_call_like_text(text):
            reason = "the text holds what looks like a tool call that could not be parsed"
            return CallCheck(0.0, UNPARSEABLE, reason)
        return CallCheck(0.0, NO_CALL, "no tool was called")
    matched = (_match_ordered if ordered else _match_unordered)(expected, calls)
    score = matched / max(len(expected), len(calls))
    if matched == len(expected) == len(calls):
        return CallCheck(1.0, None, "every expected call was made", matched)
    if refusals:
        return CallCheck(score, REFUSED, f"the sandbox refused: {refusals[0]}", matched)
    called = {c.name for c in calls}
    missing = [e.name for e in expected if e.name not in called]
    if missing:
        got = [c.name for c in calls]
        return CallCheck(score, WRONG_TOOL, f"expected {missing}, got {got}", matched)
    if matched == len(expected):
        extra = [c.name for c in calls][matched:] if ordered else [c.name for c in calls]
        return CallCheck(
            score, EXTRA_CALL, f"{len(calls) - matched} call(s) too many: {extra}", matched
        )
    if ordered and [c.name for c in calls[: len(expected)]] != [e.name for e in expected]:
        order = [c.name for c in calls]
        return CallCheck(score, WRONG_TOOL, f"calls out of order: {order}", matched)
    problems: list[str] = []
    for e in expected:
        candidates = [c for c in calls if c.name == e.name]
        best = min((e.mismatches(c) for c in candidates), key=len, default=[])
        problems.extend(f"{e.name}: {p}" for p in best)
    return CallCheck(score, WRONG_ARGUMENTS, "; ".join(problems) or "arguments differ", matched)
