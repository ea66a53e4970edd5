"""``punie judge calibrate LABELLED.jsonl``: how far a judge agrees with human scores."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]
from pytest_punie.scoring.judge import JudgeSettings, start_judge
from pytest_punie.scoring.judge_calibration import calibrate, load_labels, record_calibration
from pytest_punie.serving.models import ModelError, resolve_model
from pytest_punie.serving.server import ServerError
from pytest_punie.serving.shared import ServerSpec


def _calibrate(args: argparse.Namespace) -> int:

    labels_path = Path(args.labels)
    try:
        labels = load_labels(labels_path)
    except (OSError, ValueError) as exc:
        print(f"punie judge calibrate: {exc}", file=sys.stderr)
        return 2
    if not 0.0 <= args.pass_mark <= 1.0:
        print(
            f"punie judge calibrate: --pass-mark={args.pass_mark}: must be from 0 to 1",
            file=sys.stderr,
        )
        return 2
    settings = ServerSpec(timeout=args.timeout)
    server = None
    with tempfile.TemporaryDirectory(prefix="punie-judge-") as run_dir:
        try:
            # no judge named: the embedded default model, which is the plugin's default judge
            model = args.model or (None if args.base_url else resolve_model(None))
            judge, server = start_judge(
                JudgeSettings(model=model, base_url=args.base_url), settings, Path(run_dir)
            )
        except (ServerError, ModelError, ValueError, OSError) as exc:
            print(f"punie judge calibrate: the judge could not be started: {exc}", file=sys.stderr)
            return 2
        try:
            print(f"judge: {judge.identity.name} (hash {judge.identity.hash})")
            print(f"grading {len(labels)} labelled answers from {labels_path} ...")
            result, scores = calibrate(
                judge, labels, pass_mark=args.pass_mark, concurrency=args.concurrency
            )
        finally:
            judge.close()
            if server is not None:
                server.stop()
    if args.verbose:
        for label, score in zip(labels, scores, strict=True):
            shown = f"{score:.2f}" if isinstance(score, float) else f"error: {score[:300]}"
            print(f"  line {label.line}: human {label.score:.2f}  judge {shown}")
    for line in result.lines_of_text():
        print(line)
    out = Path(args.calibration)
    record_calibration(out, judge.identity, result, labels_path)
    print(f"recorded under judge hash {judge.identity.hash} in {out}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie judge calibrate LABELLED.jsonl [--model M] [--base-url URL] ...``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "judge", help="check an LLM judge against human scores", description=__doc__
    )
    commands = parser.add_subparsers(dest="judge_command", required=True, metavar="COMMAND")
    calibrate = commands.add_parser(
        "calibrate",
        help="grade a labelled set with the judge and record its agreement with the human scores",
        description="Grade every line of LABELLED.jsonl ({prompt, answer, score, reference?, "
        "rubric?}) with the judge; print Cohen's kappa and accuracy at the pass mark, Spearman's "
        "rank correlation and the confusion table; append them to the calibration file under "
        "the judge's hash, where --punie-judge-min-agreement reads them.",
    )
    calibrate.add_argument("labels", metavar="LABELLED.jsonl")
    calibrate.add_argument(
        "--model",
        help="judge model: MLX folder, .gguf or repo id (default: the embedded default model, "
        "which is the plugin's default judge); with --base-url, the model name to request",
    )
    calibrate.add_argument("--base-url", help="an OpenAI-compatible server to use as the judge")
    calibrate.add_argument("--pass-mark", type=float, default=0.5, help="default 0.5")
    calibrate.add_argument(
        "--calibration",
        default=".punie/judge-calibration.json",
        help="the calibration file (default .punie/judge-calibration.json)",
    )
    calibrate.add_argument("--concurrency", type=int, default=8, help="judge calls at once")
    calibrate.add_argument("--timeout", type=float, default=300.0, help="seconds per judge call")
    calibrate.add_argument("-v", "--verbose", action="store_true", help="list every line's scores")
    handler: Callable[[argparse.Namespace], int] = _calibrate
    calibrate.set_defaults(handler=handler)
    return parser
