"""``punie train``: the training pipeline without a pytest session (same library code)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from pytest_punie.finetune.checkpoints import (
    OVERALL,
    CheckpointError,
    CheckpointPlan,
    checkpoint_rows,
    checkpoint_summary,
)
from pytest_punie.finetune.distributed import parse_hosts
from pytest_punie.finetune.leakage import LeakageError
from pytest_punie.finetune.lora import LoraConfig, TrainingError
from pytest_punie.finetune.pipeline import (
    TrainingJob,
    prepare_job,
    resolve_checkpoints,
    train_job,
    training_config,
)
from pytest_punie.finetune.recipes import find_recipe
from pytest_punie.results.render import text_table
from pytest_punie.results.thresholds import argument_type, parse_fraction
from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.models import ModelError, resolve_model

__all__ = ["add_parser", "checkpoint_plan_from_args", "config_from_args"]


def config_from_args(args: argparse.Namespace) -> LoraConfig:
    """The options given, over the YAML file, over the recipe's settings or ``LoraConfig()``:
    ``pipeline.training_config``, exactly as ``pytest training/`` resolves its options."""
    overrides = {f.name: getattr(args, f.name) for f in fields(LoraConfig) if hasattr(args, f.name)}
    overrides = {k: v for k, v in overrides.items() if v not in (None, False)}
    if args.keys:
        overrides["keys"] = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    base = find_recipe(args.recipe).config if args.recipe else None
    return training_config(args.config, overrides, base)


def checkpoint_plan_from_args(args: argparse.Namespace) -> CheckpointPlan | None:
    """``--save-every`` and its selection options, checked as ``pytest training/`` checks
    them; raises ``ValueError`` naming the option."""
    if args.save_every is None or args.save_every == 0:
        given = [f"--{n.replace('_', '-')}" for n in ("select_by", "early_stop", "select_cases")
                 if getattr(args, n) is not None]  # fmt: skip
        if given:
            raise ValueError(f"{', '.join(given)}: needs --save-every of at least 1")
        return None
    if args.hosts:
        raise ValueError("--save-every cannot be combined with --hosts")
    try:
        return CheckpointPlan(
            save_every=args.save_every,
            select_by=args.select_by or OVERALL,
            early_stop=args.early_stop,
            cases=args.select_cases,
        ).check()
    except ValueError as exc:
        raise ValueError(f"--save-every and its options: {exc}") from None


def _run(args: argparse.Namespace) -> int:

    try:
        hosts = parse_hosts(args.hosts) if args.hosts else ()
    except ValueError as exc:
        print(f"punie train: --hosts {args.hosts}: {exc}", file=sys.stderr)
        return 2
    try:
        plan = checkpoint_plan_from_args(args)
    except ValueError as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
        model = resolve_model(args.model)
    except (ValueError, OSError, ModelError) as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 2
    if not Path(args.data).is_dir():
        print(f"punie train: {args.data} is not a folder of train/valid.jsonl", file=sys.stderr)
        return 2
    evals = Path(args.evals) if args.evals else None
    if evals is not None and not evals.is_dir():
        print(f"punie train: --evals {evals}: no such folder", file=sys.stderr)
        return 2
    template = choose_template(args.chat_template, model)
    print(f"chat template: {template.name} ({template.reason})")
    job = TrainingJob(
        data=Path(args.data),
        out=Path(args.out),
        model=model,
        config=config,
        chat_template=template.template,
        evals=evals,
        hosts=hosts,
        checkpoints=plan,
    )
    recipe = find_recipe(args.recipe) if args.recipe else None
    job = resolve_checkpoints(job, recipe, off=args.save_every == 0)
    if job.lacks_checkpoint_suite:
        print("punie train: --save-every scores checkpoints on an eval suite: give --evals",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        prepared = prepare_job(job)
    except (FileNotFoundError, ValueError) as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 2
    except LeakageError as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 1
    if prepared.eval_prompts_checked is not None:
        print(f"leakage: {prepared.eval_prompts_checked} eval prompts of {evals}, none in the data")
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
        manifest = train_job(job, prepared, progress=print)
    except (TrainingError, CheckpointError) as exc:
        print(f"punie train: {exc}", file=sys.stderr)
        return 1
    losses = manifest["losses"]
    print(
        f"adapter: {job.out}  train loss {losses['train_losses'][0][1]:.3f} -> "
        f"{losses['train_losses'][-1][1]:.3f}, {losses['seconds_per_iteration']:.2f} s/iter, "
        f"{losses['mean_tokens_per_second']:.0f} tok/s, peak {losses['peak_memory_gb']:.2f} GB"
    )
    rows = checkpoint_rows(manifest)
    if rows:
        section = manifest["checkpoints"]
        print(text_table(rows, ["iteration", section["select_by"], "selected"]))
        print(checkpoint_summary(manifest))
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
    parser.add_argument("--recipe", help="start from a recipe's LoRA settings (e.g. tool-calling)")
    parser.add_argument(
        "--evals",
        default="evals" if Path("evals").is_dir() else None,
        help="eval suite the data must not leak into (default: ./evals when it exists)",
    )
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
    parser.add_argument(
        "--min-retention",
        type=argument_type(parse_fraction),
        default=0.5,
        metavar="FRACTION",
        help="fraction of lines each filter must keep, 0.5 or 50%% (default 0.5)",
    )
    parser.add_argument("--skip-invalid", action="store_true", help="train on the valid lines")
    parser.add_argument(
        "--hosts",
        metavar="HOSTS",
        help="train over several ranks with mlx.launch, one per host listed, e.g. "
        "127.0.0.1,127.0.0.1 (as --punie-train-hosts)",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        metavar="N",
        help="save a checkpoint every N iterations, score each on --evals (a recipe's: its "
        "selection suite), keep the best (or their average: --select-by average); 0: none, not "
        "even a recipe's (as --punie-save-every)",
    )
    parser.add_argument(
        "--select-by",
        metavar="FIGURE",
        help="a category name or overall (default: overall); average: score none, average all",
    )
    parser.add_argument(
        "--early-stop", type=int, metavar="K", help="stop after K checkpoints without improvement"
    )
    parser.add_argument(
        "--select-cases",
        metavar="CASES",
        help="score checkpoints on a file or folder of the eval suite, else a -k expression",
    )
    parser.set_defaults(handler=_run)
    return parser
