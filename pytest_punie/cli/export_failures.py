"""``punie export-failures RESULTS --out DIR``: failed cases as training lines for review."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_punie.finetune.datasets import provenance_path
from pytest_punie.finetune.failures import (
    OUTPUT_NAME,
    ExportError,
    export_failures,
)


def _run(args: argparse.Namespace) -> int:
    try:
        target, count, unanswered = export_failures(Path(args.results), Path(args.out))
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"punie export-failures: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} failed case(s) to {target} (provenance: {provenance_path(target)})")
    if unanswered:
        print(f"{unanswered} line(s) state no expected answer: write the assistant turn to train")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie export-failures RESULTS.json --out DIR``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export-failures",
        help="write a run's failed cases as training lines for review",
        description="Write the failed cases of a results JSON as mlx_lm training lines (prompt, "
        "tools, and the expected answer or call where the case states one) to "
        f"DIR/{OUTPUT_NAME}, with run and case ids in the provenance sidecar. Never overwrites.",
    )
    parser.add_argument("results", metavar="RESULTS.json", help="a --punie-results file")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
