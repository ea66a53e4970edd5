"""JSON-schema rules for tool arguments, written once: a value's type, a call's arguments against
its tool's parameters, and a string typed by its property (for calls written as XML text).

Used by dataset validation (training lines), the BFCL-style checker (scoring) and the tool-call
parser (typing Qwen3-Coder parameters), so the three agree on what ``"integer"`` means.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "JSON_TYPES",
    "coerce",
    "fits",
    "json_value",
    "property_types",
    "schema_problems",
    "type_name",
    "type_problem",
]

JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    # an int is accepted where a number is expected (JSON has one number type)
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, (list, tuple)),
    "object": lambda v: isinstance(v, Mapping),
    "null": lambda v: v is None,
}


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def property_types(spec: Any) -> list[str]:
    """The ``type`` of a property schema as a list (``"integer"`` or ``["integer", "null"]``)."""
    types = spec.get("type") if isinstance(spec, Mapping) else None
    if isinstance(types, str):
        return [types]
    if isinstance(types, list):
        return [name for name in types if isinstance(name, str)]
    return []


def fits(value: Any, spec: Any) -> bool:
    """Whether ``value`` has one of the known types of ``spec`` (true when none is known)."""
    known = [t for t in property_types(spec) if t in JSON_TYPES]
    return not known or any(JSON_TYPES[t](value) for t in known)


def type_problem(name: str, value: Any, spec: Any) -> str | None:
    """Why argument ``name=value`` does not fit its property ``spec`` (type, then enum)."""
    if not fits(value, spec):
        known = [t for t in property_types(spec) if t in JSON_TYPES]
        return f"{name}={value!r} must be {' or '.join(known)}, not {type_name(value)}"
    enum = spec.get("enum") if isinstance(spec, Mapping) else None
    if isinstance(enum, list) and value not in enum:
        return f"{name}={value!r} is not one of {enum!r}"
    return None


def schema_problems(arguments: Mapping[str, Any], parameters: Any) -> list[str]:
    """How a call's ``arguments`` do not conform to its tool's JSON schema ``parameters``:
    a missing required argument, an unknown one (unless ``additionalProperties`` is true), a
    value of the wrong type or outside its enum. Empty when nothing is."""
    if not isinstance(parameters, Mapping):
        return []
    properties = parameters.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = parameters.get("required")
    problems = [
        f"missing required argument {name!r}"
        for name in (required if isinstance(required, list) else [])
        if isinstance(name, str) and name not in arguments
    ]
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            if parameters.get("additionalProperties") is not True:
                problems.append(f"unknown argument {name!r}")
            continue
        problem = type_problem(name, value, spec)
        if problem:
            problems.append(problem)
    return problems


# --- Typing a string by its property (calls written as text) ----------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_DIGITS = 4000  # int() refuses more than 4300 digits; such a value stays a string


def _to_integer(value: str) -> int:
    text = value.strip()
    if not _INTEGER.fullmatch(text) or len(text) > _MAX_DIGITS:
        raise ValueError(value)
    return int(text)


def _to_number(value: str) -> int | float:
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return _to_integer(text)
    if not _NUMBER.fullmatch(text):
        raise ValueError(value)
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _to_boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(value)
    return lowered == "true"


def _to_null(value: str) -> None:
    if value.strip().lower() not in ("null", "none"):
        raise ValueError(value)


def json_value(value: Any) -> Any:
    """``value`` as JSON data (tuples become lists); ValueError if it has no JSON form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: json_value(item) for key, item in value.items()}
    raise ValueError(f"not JSON data: {type(value).__name__}")


def _structured(value: str) -> Any:
    """JSON, or failing that a Python literal, as models write lists and dicts both ways."""
    try:
        return json.loads(value, strict=False)
    except ValueError:
        return json_value(ast.literal_eval(value.strip()))


def _to_array(value: str) -> list[Any]:
    parsed = _structured(value)
    if not isinstance(parsed, list):
        raise ValueError(value)
    return parsed


def _to_object(value: str) -> dict[str, Any]:
    parsed = _structured(value)
    if not isinstance(parsed, dict):
        raise ValueError(value)
    return parsed


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "null": _to_null,
    "array": _to_array,
    "object": _to_object,
}


def coerce(value: str, spec: Any) -> Any:
    """``value`` converted to the first type of its property ``spec`` it fits; else the string."""
    for name in property_types(spec):
        if name == "string":
            return value
        convert = _CONVERTERS.get(name)
        if convert is None:
            continue
        try:
            return convert(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return value
