"""``punie compare A B [C ...]``: two results files side by side, with a regression gate; more
than two as a matrix against the first."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_punie.results.compare import compare, compare_runs, regressions
from pytest_punie.results.document import RunDocument, load_run
from pytest_punie.results.render import comparison_page, comparison_text, matrix_page, matrix_text
from pytest_punie.results.thresholds import argument_type, parse_threshold
from pytest_punie.system.files import atomic_write_text

parse_max_regression = argument_type(parse_threshold)  # argparse's face of the one parser


def column_labels(paths: Sequence[str]) -> list[str]:
    """The runs' column names: each file's name without ``.json``, or its whole path when two
    files share a name."""
    stems = [Path(path).name.removesuffix(".json") for path in paths]
    return stems if len(set(stems)) == len(stems) else list(paths)


def _legend(paths: Sequence[str], labels: Sequence[str], runs: Sequence[RunDocument]) -> list[str]:
    return [
        f"{label}: {path} ({run.label})" + (" [reference]" if i == 0 else "")
        for i, (label, path, run) in enumerate(zip(labels, paths, runs, strict=True))
    ]


def _run(args: argparse.Namespace) -> int:
    paths: list[str] = list(args.results)
    if len(paths) < 2:
        print("punie compare: give at least two results files", file=sys.stderr)
        return 2
    try:
        runs = [load_run(path) for path in paths]
    except (OSError, ValueError) as error:
        print(f"punie compare: {error}", file=sys.stderr)
        return 2
    page = None
    if len(runs) == 2:
        comparison = compare(runs[0], runs[1])
        print(comparison_text(comparison))
        if args.html:
            page = comparison_page(comparison)
        failures = regressions(comparison, dict(args.max_regression or []))
    else:
        labels = column_labels(paths)
        legend = _legend(paths, labels, runs)
        matrix = compare_runs(runs, labels)
        print(matrix_text(matrix, legend))
        if args.html:
            page = matrix_page(matrix, legend)
        limits = dict(args.max_regression or [])
        failures = [
            f"{label}: {message}"
            for label, pair in zip(labels[1:], matrix.pairs, strict=True)
            for message in regressions(pair, limits)
        ]
    if page is not None:
        atomic_write_text(Path(args.html), page)
        print(f"\nhtml: {args.html}")
    if failures:
        print("\nregression gate FAILED:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie compare RESULTS_A RESULTS_B [RESULTS ...] [--max-regression ...]
    [--html PATH]``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="compare results files: changes per category, fixed and broken cases",
        description="Compare two pytest-punie results files: the change of each category's "
        "mean with paired significance tests (exact McNemar on pass/fail flips, paired "
        "bootstrap on scores), the smallest change the paired cases could detect, and the "
        "cases fixed, broken, added or removed. With more than two files, a matrix against the "
        "first: every case's score in each run, each category's mean with its 95% interval "
        "per run, and the cases each later run fixed and broke. Exits 1 when a "
        "--max-regression limit is exceeded (by any later run), 2 when a file cannot be read.",
    )
    parser.add_argument(
        "results",
        metavar="RESULTS",
        nargs="+",
        help="results JSON files: the baseline (the reference) first, then one or more others",
    )
    parser.add_argument(
        "--max-regression",
        metavar="CATEGORY=DROP",
        action="append",
        type=parse_max_regression,
        help="fail (exit 1) when CATEGORY's mean drops by more than DROP (0.05 or 5%%); "
        "CATEGORY '*' or 'all' (or none: a bare DROP) means every category, 'overall' the "
        "overall mean (repeatable)",
    )
    parser.add_argument(
        "--html",
        metavar="PATH",
        help="also write the comparison (or the matrix) as a self-contained HTML page",
    )
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
