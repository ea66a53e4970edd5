"""How a tool call's argument compares with the expected one: the one rule every scorer uses.

Free text is compared the way BFCL's checker does (case-folded, without spaces and common
punctuation), so ``"New York"`` matches ``"new-york"``. A path, a glob or an identifier is not
free text: ``src_utils.py`` is not ``src/utils.py`` and ``py`` is not ``*.py``. Those compare
exactly, after path normalisation (``./src/`` is ``src``). The mode of a string is chosen from the
expected value unless the case says it with :func:`text`, :func:`path` or :func:`exact`.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_punie.tools.schema import type_problem

__all__ = [
    "AnyOf",
    "Expected",
    "Mode",
    "any_of",
    "argument_mismatches",
    "exact",
    "path",
    "same_value",
    "string_mode",
    "text",
]

Mode = Literal["text", "path", "exact"]

_PUNCTUATION = re.compile(r"[\s,./\-_*^'\"`]")
# A string without spaces that holds one of these is a path, glob, file name or identifier.
_NOT_PROSE = re.compile(r"[/\\.*?\[\]_:=<>|~$@#%]")
_GLOB = re.compile(r"[*?\[]")
_FILE_NAME = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")


@dataclass(frozen=True)
class AnyOf:
    """Several acceptable values for one argument."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Expected:
    """An expected string with the mode it is compared in."""

    value: str
    mode: Mode


def any_of(*values: Any) -> AnyOf:
    """Accept any of ``values`` for an argument: ``{"unit": any_of("celsius", "C")}``."""
    if not values:
        raise ValueError("any_of() needs at least one value")
    return AnyOf(values)


def text(value: str) -> Expected:
    """Compare as free text: case, spaces and punctuation do not count."""
    return Expected(value, "text")


def path(value: str) -> Expected:
    """Compare as a path or glob: exactly, after normalisation (``./a//b/`` is ``a/b``)."""
    return Expected(value, "path")


def exact(value: str) -> Expected:
    """Compare exactly (surrounding whitespace aside)."""
    return Expected(value, "exact")


def string_mode(expected: str) -> Mode:
    """The mode an expected string is compared in when the case does not say."""
    stripped = expected.strip()
    if _GLOB.search(stripped) or "/" in stripped or "\\" in stripped:
        return "path"
    if _FILE_NAME.search(stripped):
        return "path"
    if stripped and not re.search(r"\s", stripped) and _NOT_PROSE.search(stripped):
        return "exact"
    return "text"


def _normalise_text(value: str) -> str:
    return _PUNCTUATION.sub("", value).casefold()


def _normalise_path(value: str) -> str:
    value = value.strip().replace("\\", "/")
    if not value:
        return value
    return posixpath.normpath(value)


def _same_string(expected: str, actual: str, mode: Mode) -> bool:
    if mode == "text":
        return _normalise_text(expected) == _normalise_text(actual)
    if mode == "path":
        return _normalise_path(expected) == _normalise_path(actual)
    return expected.strip() == actual.strip()


def same_value(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` is an acceptable value for ``expected``.

    Strings by their mode (see the module); numbers within float rounding, an int equal to a float
    only when the float is integral; booleans only equal booleans; lists item by item; objects
    key by key; :func:`any_of` accepts any of its values.
    """
    if isinstance(expected, AnyOf):
        return any(same_value(value, actual) for value in expected.values)
    if isinstance(expected, Expected):
        return isinstance(actual, str) and _same_string(expected.value, actual, expected.mode)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, int) and isinstance(actual, float) and not actual.is_integer():
            return False
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(actual, str) and _same_string(expected, actual, string_mode(expected))
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and set(expected) == set(actual)
            and all(same_value(expected[key], actual[key]) for key in expected)
        )
    if isinstance(expected, Sequence) and not isinstance(actual, (str, bytes)):
        return (
            isinstance(actual, Sequence)
            and len(expected) == len(actual)
            and all(map(same_value, expected, actual))
        )
    return bool(expected == actual)


def _shown(value: Any) -> Any:
    if isinstance(value, Expected):
        return value.value
    if isinstance(value, AnyOf):
        return f"any of {[_shown(v) for v in value.values]!r}"
    return value


def argument_mismatches(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    *,
    optional: frozenset[str] | set[str] = frozenset(),
    schema: Mapping[str, Any] | None = None,
    allow_unknown: bool = False,
) -> list[str]:
    """How a call's ``actual`` arguments differ from the ``expected`` ones (empty: they match).

    Every argument of ``expected`` not in ``optional`` must be present with an acceptable value;
    an argument outside both is unknown unless ``allow_unknown``; with the tool's ``schema``,
    each value must fit its property's type.
    """
    problems = []
    allowed = set(expected) | set(optional)
    required = set(expected) - set(optional)
    for name in sorted(required - set(actual)):
        problems.append(f"missing argument {name!r}")
    if not allow_unknown:
        for name in sorted(set(actual) - allowed):
            problems.append(f"unknown argument {name!r}")
    properties = (schema or {}).get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    for name, value in actual.items():
        problem = type_problem(name, value, properties[name]) if name in properties else None
        if problem:
            problems.append(problem)
        elif name in expected and not same_value(expected[name], value):
            problems.append(f"{name}={value!r}, expected {_shown(expected[name])!r}")
    return problems
