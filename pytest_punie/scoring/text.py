"""Scorers of an answer's text: keywords, a regular expression, the final number."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_punie.conversation.response import Response
from pytest_punie.scoring.framework import check_pass_mark, excerpt, scorer

__all__ = ["assert_keywords", "assert_number", "assert_regex"]

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
    check_pass_mark("assert_keywords: min_fraction", min_fraction)
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
    details["match"] = excerpt(match.group(0), 200)
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
