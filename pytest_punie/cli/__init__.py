"""The ``punie`` command: data work, comparisons and history without a pytest session."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]
from pytest_punie.cli.cache import add_parser as add_cache
from pytest_punie.cli.compare import add_parser as add_compare
from pytest_punie.cli.dataset import add_parser as add_dataset
from pytest_punie.cli.export_failures import add_parser as add_export
from pytest_punie.cli.history import add_parser as add_history
from pytest_punie.cli.judge import add_parser as add_judge
from pytest_punie.cli.train import add_parser as add_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="punie", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_dataset(commands)
    add_train(commands)
    add_compare(commands)
    add_history(commands)
    add_cache(commands)
    add_export(commands)
    add_judge(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``punie`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)
