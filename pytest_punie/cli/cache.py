"""``punie cache stats|clear``: look into and empty the response cache (``.punie/cache.db``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_punie.conversation.cache import DEFAULT_CACHE_PATH, ResponseCache

__all__ = ["add_parser"]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def _run(args: argparse.Namespace) -> int:
    path = Path(args.db)
    if not path.is_file():
        print(f"punie cache: no cache at {path}", file=sys.stderr)
        return 2
    cache = ResponseCache(path)
    try:
        if args.action == "clear":
            print(f"removed {cache.clear()} cached response(s) from {path}")
            return 0
        stats = cache.stats()
    finally:
        cache.close()
    print(f"cache: {stats.path}")
    print(f"responses: {stats.entries} ({stats.size_bytes / 1e6:.2f} MB)")
    print(f"oldest: {_when(stats.oldest)}  newest: {_when(stats.newest)}")
    for served, count in stats.models.items():
        print(f"  {count:6d}  {served}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie cache {stats,clear} [--db PATH]``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cache",
        help="statistics of the response cache, or empty it",
        description="The response cache of eval runs (--punie-cache): 'stats' counts the "
        "responses per model (sha256) and adapter, 'clear' deletes them all. Exits 2 when "
        "there is no cache.",
    )
    parser.add_argument("action", choices=("stats", "clear"))
    parser.add_argument(
        "--db",
        default=DEFAULT_CACHE_PATH,
        metavar="PATH",
        help=f"the cache file (default {DEFAULT_CACHE_PATH})",
    )
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
