"""Fractions and ``CATEGORY=VALUE`` thresholds, parsed by one rule for every option, ini key and
command that takes them (``--punie-min-score``, ``--punie-min-category``,
``--punie-max-regression``, ``--punie-min-retention``, ``punie compare --max-regression``,
``punie train --min-retention``).

A fraction is ``0.05`` or ``5%``. A threshold is ``CATEGORY=FRACTION``; ``*`` (or its alias
``all``) and a bare fraction mean every category that has no threshold of its own.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

__all__ = [
    "EVERY_CATEGORY",
    "EVERY_CATEGORY_NAMES",
    "argument_type",
    "parse_fraction",
    "parse_threshold",
    "parse_thresholds",
    "threshold_for",
]

EVERY_CATEGORY = "*"
EVERY_CATEGORY_NAMES = (EVERY_CATEGORY, "all")  # what a user may write; parsed to ``*``

T = TypeVar("T")


def parse_fraction(text: str) -> float:
    """A value from 0 to 1, written as a fraction (``0.05``) or a percentage (``5%``)."""
    value = str(text).strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a fraction from 0 to 1 (0.05) or a percentage (5%)")
    return number


def parse_threshold(text: str) -> tuple[str, float]:
    """``CATEGORY=0.05``, ``CATEGORY=5%``, or a bare value for every category (``*``).

    ``all=VALUE`` is ``*=VALUE``: every category (a category named "all" cannot have its own).
    """
    name, separator, value = text.rpartition("=")
    name = name.strip()
    if separator and not name:
        raise ValueError(f"{text!r} names no category (CATEGORY=VALUE, or '*=VALUE' for all)")
    try:
        number = parse_fraction(value)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    return (EVERY_CATEGORY if not name or name in EVERY_CATEGORY_NAMES else name), number


def parse_thresholds(entries: Iterable[str]) -> dict[str, float]:
    """Several ``CATEGORY=VALUE`` entries; a category given twice keeps its last value."""
    return dict(parse_threshold(entry) for entry in entries)


def threshold_for(
    name: str, thresholds: Mapping[str, float], default: float | None = None
) -> float | None:
    """A category's threshold: its own, else the one for every category, else ``default``."""
    if name in thresholds:
        return thresholds[name]
    return thresholds.get(EVERY_CATEGORY, default)


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """argparse's face of a parser here: its ValueError becomes an ArgumentTypeError, so the
    ``punie`` commands refuse a value with the same message as the pytest options."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its "invalid ..." message
    return convert
