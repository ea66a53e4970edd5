"""``punie history``: the cumulative table of every run, or a page with trend charts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_punie.results.history import (
    DEFAULT_DB,
    format_history,
    history_html,
)


def _run(args: argparse.Namespace) -> int:
    db_path = Path(args.db)
    if not db_path.is_file():
        print(
            f"punie history: no run history at {db_path} (record a run first, or pass --db)",
            file=sys.stderr,
        )
        return 2
    try:
        print(format_history(db_path, all_runs=args.all))
        page = history_html(db_path) if args.html else None
    except (OSError, ValueError) as error:
        print(f"punie history: {error}", file=sys.stderr)
        return 2
    if page is not None:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        print(f"wrote {out}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie history [--db PATH] [--html OUT.html] [--all]``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "history",
        help="the cumulative results table of the recorded runs",
        description="Show the cumulative results table of the recorded runs: the latest run "
        "of each model/adapter, the best value of each score column marked with '*'. Exits 2 "
        "when there is no history.",
    )
    parser.add_argument(
        "--db", default=str(DEFAULT_DB), metavar="PATH", help=f"the history (default {DEFAULT_DB})"
    )
    parser.add_argument(
        "--html",
        metavar="OUT.html",
        help="also write the history as an HTML page (trend charts per category, tables)",
    )
    parser.add_argument("--all", action="store_true", help="also list every recorded run")
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
