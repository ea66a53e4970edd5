"""``punie compare A B``: two results files side by side, with a regression gate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pytest_punie.results.compare import compare, regressions
from pytest_punie.results.document import load_run
from pytest_punie.results.render import comparison_text
from pytest_punie.results.thresholds import argument_type, parse_threshold

parse_max_regression = argument_type(parse_threshold)  # argparse's face of the one parser


def _run(args: argparse.Namespace) -> int:
    try:
        baseline = load_run(args.baseline)
        candidate = load_run(args.candidate)
    except (OSError, ValueError) as error:
        print(f"punie compare: {error}", file=sys.stderr)
        return 2
    comparison = compare(baseline, candidate)
    print(comparison_text(comparison))
    failures = regressions(comparison, dict(args.max_regression or []))
    if failures:
        print("\nregression gate FAILED:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie compare RESULTS_A RESULTS_B [--max-regression CATEGORY=DROP ...]``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="compare two results files: changes per category, fixed and broken cases",
        description="Compare two pytest-punie results files: the change of each category's "
        "mean with paired significance tests (exact McNemar on pass/fail flips, paired "
        "bootstrap on scores), and the cases fixed, broken, added or removed. Exits 1 when a "
        "--max-regression limit is exceeded, 2 when a file cannot be read.",
    )
    parser.add_argument("baseline", metavar="RESULTS_A", help="the baseline results JSON")
    parser.add_argument("candidate", metavar="RESULTS_B", help="the candidate results JSON")
    parser.add_argument(
        "--max-regression",
        metavar="CATEGORY=DROP",
        action="append",
        type=parse_max_regression,
        help="fail (exit 1) when CATEGORY's mean drops by more than DROP (0.05 or 5%%); "
        "CATEGORY '*' or 'all' (or none: a bare DROP) means every category, 'overall' the "
        "overall mean (repeatable)",
    )
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
