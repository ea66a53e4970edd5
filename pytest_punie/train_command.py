"""``punie train``: the training pipeline without a pytest session (same library code)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    from pytest_punie.chat_template import choose_template
    from pytest_punie.lora import LoraConfig, TrainingError, load_config, train_in_subprocess
    from pytest_punie.models import ModelError, resolve_model
    from pytest_punie.pipeline import prepare, token_counter

    overrides = {f.name: getattr(args, f.name) for f in fields(LoraConfig) if hasattr(args, f.name)}
    overrides = {k: v for k, v in overrides.items() if v not in (None, False)}
    if args.keys:
        overrides["keys"] = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    try:
        config = (
            load_config(args.config, overrides)
            if args.config
            else replace(LoraConfig(), **overrides).check()
        )
        model = resolve_model(args.model)
    except (ValueError, OSError, ModelError) as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 2
    if not Path(args.data).is_dir():
        print(f"punie train: {args.data} is not a folder of train/valid.jsonl", file=sys.stderr)
        return 2
    template = choose_template(args.chat_template, model)
    print(f"chat template: {template.name} ({template.reason})")
    out = Path(args.out)
    try:
        prepared = prepare(
            Path(args.data),
            out.parent / f"{out.name}.data",
            max_seq_length=config.max_seq_length,
            count_tokens=token_counter(model, template.template),
        )
    except FileNotFoundError as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 2
    for split, name, kept, removed, fraction in prepared.retention_rows():
        print(f"{split:6} {name:40} kept {kept:5}  removed {removed:5}  ({fraction:.0%})")
    problems = [p for report in prepared.validation.values() for p in report.problems]
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems and not args.skip_invalid:
        print(
            f"punie train: {len(problems)} invalid line(s), listed above and in "
            f"{prepared.rejects}; fix them or pass --skip-invalid",
            file=sys.stderr,
        )
        return 1
    low = [r for r in prepared.retention_rows() if r[4] < args.min_retention]
    if low:
        print(
            f"punie train: filters kept less than {args.min_retention:.0%}: {low}", file=sys.stderr
        )
        return 1
    try:
        manifest = train_in_subprocess(
            model, prepared.folder, out, config,
            chat_template=template.template, dataset_hash=prepared.source_hash,
        )  # fmt: skip
    except TrainingError as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 1
    losses = manifest["losses"]
    print(
        f"adapter: {out}  train loss {losses['train_losses'][0][1]:.3f} -> "
        f"{losses['train_losses'][-1][1]:.3f}, {losses['seconds_per_iteration']:.2f} s/iter, "
        f"{losses['mean_tokens_per_second']:.0f} tok/s, peak {losses['peak_memory_gb']:.2f} GB"
    )
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie train DATA --out DIR``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="validate, filter and LoRA-train an adapter", description=__doc__
    )
    parser.add_argument("data", help="folder with train.jsonl and valid.jsonl (test.jsonl)")
    parser.add_argument("--out", required=True, help="adapter folder to write")
    parser.add_argument("--model", help="base model (default: the embedded default model)")
    parser.add_argument("--config", type=Path, help="YAML file of LoRA settings")
    parser.add_argument("--chat-template", default="auto", help="auto, model, hermes or a file")
    parser.add_argument("--rank", type=int)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--keys", help="comma-separated layer keys (default: all linear layers)")
    parser.add_argument("--num-layers", type=int)
    parser.add_argument("--iters", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--mask-prompt", action="store_true")
    parser.add_argument("--grad-checkpoint", action="store_true")
    parser.add_argument("--min-retention", type=float, default=0.5)
    parser.add_argument("--skip-invalid", action="store_true", help="train on the valid lines")
    parser.set_defaults(handler=_run)
    return parser
