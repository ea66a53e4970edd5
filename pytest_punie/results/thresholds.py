"""``CATEGORY=VALUE`` thresholds, parsed by one rule for every option and command that takes them
(``--punie-min-category``, ``--punie-max-regression``, ``punie compare --max-regression``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["EVERY_CATEGORY", "parse_fraction", "parse_threshold", "parse_thresholds"]

EVERY_CATEGORY = "*"


def parse_fraction(text: str) -> float:
    """A value from 0 to 1, written as a fraction (``0.05``) or a percentage (``5%``)."""
    value = text.strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError(
            f"{text.strip()!r} is not a fraction from 0 to 1 (0.05) or a percentage (5%)"
        )
    return number


def parse_threshold(text: str) -> tuple[str, float]:
    """``CATEGORY=0.05``, ``CATEGORY=5%``, or a bare value for every category (``*``)."""
    name, separator, value = text.rpartition("=")
    name = name.strip()
    if separator and not name:
        raise ValueError(f"{text!r} names no category (CATEGORY=VALUE, or '*=VALUE' for all)")
    try:
        return (name or EVERY_CATEGORY), parse_fraction(value)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None


def parse_thresholds(entries: Iterable[str]) -> dict[str, float]:
    """Several ``CATEGORY=VALUE`` entries; a category given twice keeps its last value."""
    return dict(parse_threshold(entry) for entry in entries)
