"""``punie dataset ...``: validate, inspect, filter, merge, split and import training data.

Exit status: 0 on success, 1 when the data is invalid or a filter kept too little (every
problem is listed first), 2 for usage problems such as a missing file (told on stderr).

A command that writes never replaces a file that exists (its sidecars included) unless given
``--force``, and never an input's file even then; both are checked before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_punie.finetune.datasets import (
    HF_PREFIX,
    IMPORTERS,
    SPLITS,
    DatasetError,
    Example,
    Rejection,
    dataset_files,
    import_file,
    message_count,
    provenance_path,
    text_parts,
    write_examples,
)
from pytest_punie.finetune.filters import (
    Filter,
    FilterResult,
    duplicates,
    language,
    merge,
    python2,
    quality,
    retention,
    run_filters,
    split,
    write_rejects,
)
from pytest_punie.finetune.validation import (
    ValidationReport,
    token_counter,
    validate_examples,
    validate_paths,
)
from pytest_punie.results.thresholds import argument_type, parse_fraction

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "add_parser", "dataset_stats"]
from pytest_punie.finetune.recipes import tool_calling_spec
from pytest_punie.finetune.toolcall_data import load_spec, write_dataset

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
REJECTS_NAME = "rejects.jsonl"
_SHOWN_PROBLEMS = 50  # import lists this many rejections; its rejects file has them all


class _UsageError(Exception):
    """A problem with the command line or the paths it names (exit status 2)."""


def _fail(message: str) -> None:
    print(f"punie dataset: {message}", file=sys.stderr)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn missing paths into exit 2 and unreadable data into exit 1, each with one message."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (_UsageError, OSError) as exc:  # OSError: a path that cannot be read or written
            _fail(str(exc))
            return EXIT_USAGE
        except DatasetError as exc:
            _fail(str(exc))
            return EXIT_INVALID

    run.__doc__ = handler.__doc__
    return run


def _check_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if path.startswith(HF_PREFIX):
            continue
        try:
            dataset_files(path)
        except (FileNotFoundError, DatasetError) as exc:
            raise _UsageError(str(exc)) from exc


def _refuse_replacing_inputs(inputs: Sequence[str], out: Path, written: Sequence[Path]) -> None:
    """One rule for every command: no file it writes (or its sidecar) may be an input's file."""
    protected: dict[Path, Path] = {}
    for path in inputs:
        if path.startswith(HF_PREFIX):
            continue
        for file in dataset_files(path):
            for kept in (file, provenance_path(file)):
                protected[kept.resolve()] = file
    for target in written:
        for candidate in (target, provenance_path(target)):
            source = protected.get(candidate.resolve())
            if source is None:
                continue
            if out.is_dir() and out.resolve() == source.parent.resolve():
                raise _UsageError(
                    f"--out {out} is the input's folder: it would replace {source}; "
                    "choose another folder"
                )
            raise _UsageError(f"--out {out} would replace the input {source}; choose another path")


def _outputs(*files: Path) -> list[Path]:
    """``files`` and the provenance sidecar ``write_examples`` writes next to each."""
    return [path for file in files for path in (file, provenance_path(file))]


def _refuse_replacing(written: Sequence[Path], *, force: bool) -> None:
    """One rule for every command that writes: an existing file is replaced only with --force.

    All the files a command writes are checked before it writes any, so a refusal leaves
    everything as it was.
    """
    if force:
        return
    existing = [str(path) for path in dict.fromkeys(written) if os.path.lexists(path)]
    if existing:
        them = "it" if len(existing) == 1 else "them"
        raise _UsageError(
            f"--out would replace {', '.join(existing)}; pass --force to replace {them}"
        )


def _print_problems(problems: Sequence[Rejection], limit: int | None = None) -> None:
    shown = problems if limit is None else problems[:limit]
    for problem in shown:
        print(problem)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more")


def _file_counts(examples: Sequence[Example]) -> str:
    counts = Counter(example.source.name for example in examples)
    return ", ".join(f"{name} {count}" for name, count in counts.items())


# validate --------------------------------------------------------------------------------------


def _token_counter(spec: str) -> Callable[[str], int]:
    """The pipeline's token counter (``validation.token_counter``) with a usage error."""
    try:
        return token_counter(spec)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _validate(args: argparse.Namespace) -> int:
    """List every invalid line as path:line: reason."""
    _check_paths(args.paths)
    if args.max_seq_length is not None and args.tokenizer is None:
        raise _UsageError("--max-seq-length needs --tokenizer to count tokens with")
    count_tokens = _token_counter(args.tokenizer) if args.tokenizer else None
    report = validate_paths(
        args.paths, max_seq_length=args.max_seq_length, count_tokens=count_tokens
    )
    if report.problems:
        print(report.summary())
        return EXIT_INVALID
    files = dict.fromkeys(file for path in args.paths for file in dataset_files(path))
    for file in files:
        formats = Counter(ex.format for ex in report.valid if ex.source == file)
        shown = ", ".join(f"{fmt} {count}" for fmt, count in sorted(formats.items()))
        print(f"{file}: {sum(formats.values())} valid lines ({shown or 'empty'})")
    print(report.summary())
    return EXIT_OK


# stats -----------------------------------------------------------------------------------------


def _spread(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


def dataset_stats(report: ValidationReport) -> dict[str, Any]:
    """Counts over a validated dataset: lines per file and format, messages, roles, tool calls,
    characters per example."""
    examples = report.valid
    per_file: dict[str, dict[str, int]] = {}
    for example in examples:
        formats = per_file.setdefault(str(example.source), {})
        formats[example.format] = formats.get(example.format, 0) + 1
    roles: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    examples_with_calls = 0
    for example in examples:
        parts = text_parts(example)
        if example.format in ("chat", "tools"):
            roles.update(message["role"] for message in example.data["messages"])
        elif example.format == "completions":
            roles.update(("user", "assistant"))
        calls = [json.loads(text).get("name", "?") for role, text in parts if role == "tool_call"]
        tools.update(calls)
        examples_with_calls += bool(calls)
    return {
        "examples": len(examples),
        "invalid_lines": len(report.problems),
        "files": per_file,
        "formats": dict(Counter(example.format for example in examples)),
        "messages_per_example": _spread([message_count(example) for example in examples]),
        "roles": dict(roles),
        "tool_calls": {
            "total": sum(tools.values()),
            "examples_with_calls": examples_with_calls,
            "by_tool": dict(tools.most_common()),
        },
        "chars_per_example": _spread(
            [sum(len(text) for _, text in text_parts(example)) for example in examples]
        ),
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def _stats(args: argparse.Namespace) -> int:
    """Print lines per file and format, messages, roles, tool calls and lengths."""
    _check_paths(args.paths)
    report = validate_paths(args.paths)
    stats = dataset_stats(report)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for file, formats in stats["files"].items():
            print(f"{file}: {sum(formats.values())} lines ({_counts(formats)})")
        print(f"examples: {stats['examples']} ({_counts(stats['formats'])})")
        spread = stats["messages_per_example"]
        print(
            f"messages per example: min {spread['min']}, median {spread['median']}, "
            f"mean {spread['mean']}, max {spread['max']}"
        )
        print(f"roles: {_counts(stats['roles'])}")
        calls = stats["tool_calls"]
        print(
            f"tool calls: {calls['total']} in {calls['examples_with_calls']} examples "
            f"({_counts(calls['by_tool'])})"
        )
        spread = stats["chars_per_example"]
        print(
            f"characters per example: min {spread['min']}, median {spread['median']}, "
            f"mean {spread['mean']}, max {spread['max']}"
        )
    if report.problems:
        print(
            f"{len(report.problems)} invalid lines not counted (punie dataset validate lists them)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return EXIT_OK


# filter ----------------------------------------------------------------------------------------


def _chosen_filters(args: argparse.Namespace) -> list[Filter]:
    filters: list[Filter] = []
    if args.language:
        filters.append(language(args.language))
    if args.no_python2:
        filters.append(python2())
    bounds = {
        "min_messages": args.min_messages,
        "max_messages": args.max_messages,
        "min_chars": args.min_chars,
        "max_chars": args.max_chars,
    }
    if any(value is not None for value in bounds.values()):
        filters.append(quality(**bounds))
    if args.dedupe:
        filters.append(duplicates())
    return filters


def _filter(args: argparse.Namespace) -> int:
    """Validate, run the chosen filters, write the kept lines and rejects.jsonl to --out."""
    _check_paths([args.path])
    inputs = dataset_files(args.path)
    out = Path(args.out)
    written = [*_outputs(*(out / file.name for file in inputs)), out / REJECTS_NAME]
    _refuse_replacing_inputs([args.path], out, written)
    _refuse_replacing(written, force=args.force)
    report = validate_paths(inputs)
    total = len(report.valid) + len(report.problems)
    results = [FilterResult("validate", report.valid, report.problems)]
    results.extend(run_filters(report.valid, _chosen_filters(args)))
    kept = results[-1].kept
    for file in inputs:
        write_examples(out / file.name, [ex for ex in kept if ex.source == file])
    rejections = [rejection for result in results for rejection in result.removed]
    write_rejects(out / REJECTS_NAME, rejections)

    print(f"{'step':<40} {'kept':>7} {'removed':>8} {'retention':>10}")
    for row in retention(results):
        print(f"{row.name:<40} {row.kept:>7} {row.removed:>8} {row.fraction:>10.1%}")
    overall = len(kept) / total if total else 1.0
    print(f"{'total':<40} {len(kept):>7} {total - len(kept):>8} {overall:>10.1%}")
    print(f"wrote {len(kept)} lines to {out} ({_file_counts(kept) or 'none'})")
    print(f"wrote {len(rejections)} rejects to {out / REJECTS_NAME}")
    if args.min_retention is not None and overall < args.min_retention:
        _fail(
            f"kept {overall:.1%} of the lines, less than --min-retention {args.min_retention:.1%}"
        )
        return EXIT_INVALID
    return EXIT_OK


# merge, split ----------------------------------------------------------------------------------


def _valid_or_report(paths: Sequence[str]) -> list[list[Example]] | None:
    """The examples of each path, or None after listing the problems (the caller exits 1)."""
    reports = [validate_paths([path]) for path in paths]
    problems = [problem for report in reports for problem in report.problems]
    if problems:
        _print_problems(problems)
        _fail(f"{len(problems)} invalid lines; nothing written")
        return None
    return [report.valid for report in reports]


def _merge(args: argparse.Namespace) -> int:
    """Concatenate datasets into one file; provenance goes to its sidecar."""
    _check_paths(args.paths)
    written = _outputs(Path(args.out))
    _refuse_replacing_inputs(args.paths, Path(args.out), written)
    _refuse_replacing(written, force=args.force)
    datasets = _valid_or_report(args.paths)
    if datasets is None:
        return EXIT_INVALID
    try:
        merged = merge(datasets)
    except ValueError as exc:  # formats mlx_lm cannot read from one file
        _fail(str(exc))
        return EXIT_INVALID
    write_examples(args.out, merged)
    print(f"merged {len(merged)} examples from {len(args.paths)} inputs into {args.out}")
    return EXIT_OK


def _split(args: argparse.Namespace) -> int:
    """Divide a dataset into train, valid and test files by a seeded shuffle."""
    _check_paths([args.path])
    out = Path(args.out)
    written = _outputs(*(out / f"{name}.jsonl" for name in SPLITS))
    _refuse_replacing_inputs([args.path], out, written)
    _refuse_replacing(written, force=args.force)
    fractions = (1 - args.valid - args.test, args.valid, args.test)
    if min(fractions) < 0 or max(fractions) > 1:
        raise _UsageError(f"--valid {args.valid} and --test {args.test} must sum to at most 1")
    datasets = _valid_or_report([args.path])
    if datasets is None:
        return EXIT_INVALID
    try:
        examples = merge(datasets)
    except ValueError as exc:
        _fail(str(exc))
        return EXIT_INVALID
    splits = split(examples, fractions, seed=args.seed)
    for name, chosen in splits.items():
        write_examples(out / f"{name}.jsonl", chosen)
    sizes = ", ".join(f"{name} {len(chosen)}" for name, chosen in splits.items())
    print(f"split {sum(map(len, splits.values()))} examples into {out} ({sizes})")
    return EXIT_OK


# import ----------------------------------------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    """Convert ShareGPT, Alpaca or OpenAI data to mlx_lm chat/tools lines; rejects alongside."""
    _check_paths(args.paths)
    out = Path(args.out)
    written = [*_outputs(out), out.with_name(f"{out.stem}.rejects.jsonl")]
    _refuse_replacing_inputs(args.paths, out, written)
    _refuse_replacing(written, force=args.force)
    examples: list[Example] = []
    rejections: list[Rejection] = []
    records = 0
    for path in args.paths:
        imported = import_file(path, args.format)
        checked = validate_examples(imported.examples)
        examples.extend(checked.valid)
        rejections.extend([*imported.rejections, *checked.problems])
        records += len(imported.examples) + len(imported.rejections)
    write_examples(out, examples)
    rejects = out.with_name(f"{out.stem}.rejects.jsonl")
    write_rejects(rejects, rejections)
    print(f"imported {len(examples)} of {records} records into {out}")
    if rejections:
        _print_problems(rejections, _SHOWN_PROBLEMS)
        print(f"{len(rejections)} records not imported; see {rejects}")
        return EXIT_INVALID
    return EXIT_OK


# The parser ------------------------------------------------------------------------------------


_fraction = argument_type(parse_fraction)  # 0.05 or 5%, as the pytest options take it


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _generate_tools(args: argparse.Namespace) -> int:
    """Write train/valid/test.jsonl of tool calls; never over a dataset without --force."""

    out = Path(args.out)
    # Any JSONL in the folder, not only the three it writes: a new split among the files of
    # another dataset would mix the two.
    existing = sorted(out.glob("*.jsonl")) if out.is_dir() else []
    _refuse_replacing([*existing, *(out / f"{name}.jsonl" for name in SPLITS)], force=args.force)
    try:
        spec = load_spec(Path(args.spec)) if args.spec else tool_calling_spec()
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    counts = write_dataset(
        spec, out, train=args.train, valid=args.valid, test=args.test, seed=args.seed
    )
    for name, count in counts.items():
        print(f"{out / (name + '.jsonl')}: {count} lines")
    return EXIT_OK


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dataset`` and its subcommands on the ``punie`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dataset",
        help="validate, inspect, filter, merge, split and import training data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")
    paths_help = "JSONL files or dataset folders (train/valid/test.jsonl)"

    command = commands.add_parser("validate", help="list every invalid line with its reason")
    command.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    command.add_argument("--max-seq-length", type=int, help="reject lines longer than this")
    command.add_argument("--tokenizer", help="tokenizer.json (or its model folder) for tokens")
    command.set_defaults(handler=_guarded(_validate))

    command = commands.add_parser("stats", help="lines, formats, messages, roles, tool calls")
    command.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    command.add_argument("--json", action="store_true", help="print the statistics as JSON")
    command.set_defaults(handler=_guarded(_stats))

    command = commands.add_parser("filter", help="filter a dataset; write kept lines and rejects")
    command.add_argument("path", metavar="PATH", help=paths_help)
    command.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    command.add_argument("--language", choices=["en"], help="keep lines in this language")
    command.add_argument("--no-python2", action="store_true", help="remove Python 2 code")
    command.add_argument("--min-messages", type=_count, metavar="N")
    command.add_argument("--max-messages", type=_count, metavar="N")
    command.add_argument("--min-chars", type=_count, metavar="N")
    command.add_argument("--max-chars", type=_count, metavar="N")
    command.add_argument("--dedupe", action="store_true", help="remove duplicate conversations")
    command.add_argument(
        "--min-retention",
        type=_fraction,
        metavar="F",
        help="exit 1 when less than this fraction of the lines is kept",
    )
    _add_force(command)
    command.set_defaults(handler=_guarded(_filter))

    command = commands.add_parser("merge", help="concatenate datasets into one JSONL file")
    command.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    command.add_argument("--out", required=True, metavar="FILE")
    _add_force(command)
    command.set_defaults(handler=_guarded(_merge))

    command = commands.add_parser("split", help="write train/valid/test.jsonl from one dataset")
    command.add_argument("path", metavar="PATH", help=paths_help)
    command.add_argument("--out", required=True, metavar="DIR")
    command.add_argument("--valid", type=_fraction, default=0.1, metavar="F")
    command.add_argument("--test", type=_fraction, default=0.1, metavar="F")
    command.add_argument("--seed", type=int, default=0)
    _add_force(command)
    command.set_defaults(handler=_guarded(_split))

    command = commands.add_parser("import", help="convert ShareGPT, Alpaca or OpenAI data")
    command.add_argument(
        "paths", nargs="+", metavar="PATH", help="JSON lists, JSONL files, or hf://org/name"
    )
    command.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    command.add_argument("--out", required=True, metavar="FILE")
    _add_force(command)
    command.set_defaults(handler=_guarded(_import))

    command = commands.add_parser(
        "generate-tools", help="write tool-calling training data from tool schemas and templates"
    )
    command.add_argument(
        "spec", nargs="?", metavar="SPEC", help="JSON spec (default: the tool-calling recipe's)"
    )
    command.add_argument("--out", required=True, metavar="DIR")
    command.add_argument("--train", type=_count, default=600, metavar="N")
    command.add_argument("--valid", type=_count, default=40, metavar="N")
    command.add_argument("--test", type=_count, default=40, metavar="N", help="held-out tools")
    command.add_argument("--seed", type=int, default=0)
    _add_force(command)
    command.set_defaults(handler=_guarded(_generate_tools))
    return parser


def _add_force(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--force", action="store_true", help="replace files that exist in --out (never an input)"
    )
