"""The training pipeline's steps as plain functions: dataset -> validation -> filters ->
leakage check against the eval suite -> training data for mlx_lm -> LoRA adapter ->
evaluation against the base. With a ``CheckpointPlan`` (``--punie-save-every``, or a recipe's
own: :func:`resolve_checkpoints`), training keeps the checkpoint the eval suite, or the recipe's
selection suite, scores best (``finetune.checkpoints``), or the average of them all
(``finetune.averaging``: the tool-calling recipe's choice).

The pipeline is assembled once: :func:`training_config` (one set of defaults, ``LoraConfig()``,
or a recipe's settings; then a YAML file; then the options given), :func:`prepare_job` and
:func:`train_job`. The ``training/`` suite calls them from session fixtures, one visible test
per step; the ``punie train`` command calls the same functions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from pytest_punie.finetune.averaging import average_checkpoints
from pytest_punie.finetune.checkpoints import (
    CheckpointError,
    CheckpointPlan,
    CheckpointWatcher,
    select,
    selected_suite,
)
from pytest_punie.finetune.datasets import (
    Example,
    Rejection,
    dataset_hash,
    load_dataset,
    write_examples,
)
from pytest_punie.finetune.distill import BasePrompt
from pytest_punie.finetune.filters import (
    Filter,
    FilterResult,
    duplicates,
    language,
    python2,
    quality,
    retention,
    run_filters,
    write_rejects,
)
from pytest_punie.finetune.held_out import write_selection_suite
from pytest_punie.finetune.leakage import check_dataset
from pytest_punie.finetune.lora import LoraConfig, load_config, train_in_subprocess
from pytest_punie.finetune.recipes import Recipe
from pytest_punie.finetune.validation import ValidationReport, token_counter, validate
from pytest_punie.results.document import RunDocument, read_run

__all__ = [
    "PreparedData",
    "TrainingJob",
    "checkpoint_scorer",
    "default_filters",
    "evaluate",
    "mode_differences",
    "prepare",
    "prepare_job",
    "resolve_checkpoints",
    "text_parsing_template",
    "token_counter",
    "train_job",
    "training_config",
]

TRAINING_SPLITS = ("train", "valid", "test")


def default_filters() -> list[Filter]:
    """The filters the pipeline runs unless told otherwise."""
    return [language(), python2(), quality(min_messages=2, max_chars=20_000), duplicates()]


def training_config(
    yaml: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: LoraConfig | None = None,
) -> LoraConfig:
    """The one way both entry points configure training: ``base`` (``LoraConfig()`` unless a
    recipe's), then the YAML file, then ``overrides`` (the options given); a run shorter than
    the report interval still reports often enough to see the loss go down."""
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    if yaml is not None:
        config = load_config(yaml, values, base)
    else:
        config = replace(base or LoraConfig(), **values)
    return replace(
        config,
        steps_per_report=max(1, min(config.steps_per_report, config.iters // 4)),
        steps_per_eval=max(1, min(config.steps_per_eval, config.iters // 2)),
    ).check()


@dataclass
class PreparedData:
    """The data mlx_lm trains on, and what became of every input line."""

    folder: Path
    validation: dict[str, ValidationReport]
    filters: dict[str, list[FilterResult]]
    rejects: Path
    source_hash: str
    kept: dict[str, list[Example]] = field(default_factory=dict)
    eval_prompts_checked: int | None = None  # None: no eval suite to check for leakage

    @property
    def rejections(self) -> list[Rejection]:
        found = [p for report in self.validation.values() for p in report.problems]
        return found + [r for results in self.filters.values() for f in results for r in f.removed]

    def retention_rows(self) -> list[tuple[str, str, int, int, float]]:
        """(split, filter, kept, removed, fraction kept) for every split and filter."""
        return [
            (split, row.name, row.kept, row.removed, row.fraction)
            for split, results in self.filters.items()
            for row in retention(results)
        ]


def prepare(
    source: Path,
    out: Path,
    *,
    filters: Callable[[], Sequence[Filter]] = default_filters,
    max_seq_length: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> PreparedData:
    """Validate and filter ``source`` (train/valid/test.jsonl) into ``out`` for mlx_lm.

    Every line ends up in ``out`` or in ``out/rejects.jsonl`` with its reason, never neither.
    """
    source, out = Path(source), Path(out)
    splits = load_dataset(source)
    missing = [s for s in ("train", "valid") if s not in splits]
    if missing:
        raise FileNotFoundError(f"{source} has no {' or '.join(m + '.jsonl' for m in missing)}")
    validation = {
        split: validate(lines, max_seq_length=max_seq_length, count_tokens=count_tokens)
        for split, lines in splits.items()
        if split in TRAINING_SPLITS
    }
    results: dict[str, list[FilterResult]] = {}
    kept: dict[str, list[Example]] = {}
    for split, report in validation.items():
        results[split] = run_filters(report.valid, filters())
        kept[split] = results[split][-1].kept if results[split] else list(report.valid)
        write_examples(out / f"{split}.jsonl", kept[split])
    prepared = PreparedData(
        folder=out,
        validation=validation,
        filters=results,
        rejects=out / "rejects.jsonl",
        source_hash=dataset_hash(sorted(source.glob("*.jsonl"))),
        kept=kept,
    )
    write_rejects(prepared.rejects, prepared.rejections)
    return prepared


def evaluate(
    evals: Path,
    results: Path,
    *,
    model: str | None = None,
    adapter: Path | None = None,
    extra: Sequence[str] = (),
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run the eval suite in a fresh pytest and return its results document.

    The pytest runs in ``cwd`` (where its response cache is), so the paths given here are made
    absolute first: they are relative to where this process runs (``--punie-adapter-out
    adapters/x`` names a folder here, not in ``cwd``). Paths in ``extra`` must be absolute."""
    results = Path(results).absolute()
    command = [sys.executable, "-m", "pytest", str(Path(evals).absolute()), "-q",
               "-p", "no:cacheprovider", f"--punie-results={results}", "--punie-history=none",
               *extra]  # fmt: skip
    if model:
        local = Path(model).expanduser()
        command.append(f"--punie-model={local.absolute() if local.exists() else model}")
    if adapter:
        command.append(f"--punie-adapter={Path(adapter).absolute()}")
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
    if not results.is_file():
        said = "\n".join(text[-3000:] for text in (done.stdout, done.stderr) if text.strip())
        raise RuntimeError(f"the eval suite wrote no results (exit {done.returncode}):\n{said}")
    document: dict[str, Any] = json.loads(results.read_text())
    return document


@dataclass(frozen=True)
class TrainingJob:
    """Everything a training run is given, resolved once by either entry point."""

    data: Path
    out: Path
    model: str
    config: LoraConfig
    chat_template: str | None = None
    evals: Path | None = None  # the eval suite the data must not leak into
    hosts: tuple[str, ...] = ()  # one per rank of the LoRA step (mlx.launch); () one process
    checkpoints: CheckpointPlan | None = None  # score checkpoints on ``evals``, keep the best
    selection: tuple[BasePrompt, ...] = ()  # a recipe's selection prompts: see resolve_checkpoints

    @property
    def data_folder(self) -> Path:
        """Where the validated, filtered lines mlx_lm trains on are written."""
        return self.out.parent / f"{self.out.name}.data"

    @property
    def selection_folder(self) -> Path:
        """Where ``prepare_job`` writes the selection suite (with ``selection`` prompts)."""
        return (self.data_folder / SELECTION).absolute()

    @property
    def lacks_checkpoint_suite(self) -> bool:
        """Whether checkpoints are to be scored with nothing to score them on: no eval suite,
        and no folder of cases of their own (an absolute path, such as the selection suite)."""
        cases = self.checkpoints.cases if self.checkpoints is not None else None
        return (
            self.checkpoints is not None
            and not self.checkpoints.averages
            and self.evals is None
            and not (cases and Path(cases).is_absolute())
        )


SELECTION = "selection"


def resolve_checkpoints(
    job: TrainingJob, recipe: Recipe | None, *, off: bool = False
) -> TrainingJob:
    """The job with its checkpoint plan settled: none when ``off`` (``--punie-save-every=0``);
    else the user's plan, or the recipe's (every ``recipe.save_every`` iterations, chosen by
    ``recipe.select_by``: the tool-calling recipe averages them; not over several hosts, where
    the training cannot wait at a checkpoint). A recipe with
    selection prompts scores checkpoints on its selection suite
    (written by :func:`prepare_job` into ``job.selection_folder``) unless the user's plan names
    its own cases: cases the eval suite and the test split do not hold, so the choice does not
    flatter the figures that judge the adapter afterwards."""
    if off:
        return replace(job, checkpoints=None, selection=())
    plan = job.checkpoints
    if plan is None and recipe is not None and recipe.save_every is not None and not job.hosts:
        plan = CheckpointPlan(save_every=recipe.save_every, select_by=recipe.select_by)
    if (
        plan is None
        or plan.averages
        or plan.cases is not None
        or recipe is None
        or recipe.selection is None
    ):
        return replace(job, checkpoints=plan)
    plan = replace(plan, cases=str(job.selection_folder))
    return replace(job, checkpoints=plan, selection=tuple(recipe.selection()))


def prepare_job(job: TrainingJob) -> PreparedData:
    """Validate and filter the job's data (lines measured with the model's tokenizer against
    the config's ``max_seq_length``), then check it against the eval suite: raise
    ``LeakageError`` naming each eval case and training file:line that match."""
    prepared = prepare(
        job.data,
        job.data_folder,
        max_seq_length=job.config.max_seq_length,
        count_tokens=token_counter(job.model),
    )
    if job.evals is not None:
        prepared.eval_prompts_checked = len(check_dataset(job.data, job.evals))
    if job.selection:
        valid = [example.data for example in prepared.kept["valid"]]
        write_selection_suite(valid, job.selection, job.selection_folder)
    return prepared


def train_job(
    job: TrainingJob,
    prepared: PreparedData,
    *,
    config: LoraConfig | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
    score: Callable[[Path | None], RunDocument] | None = None,
) -> dict[str, Any]:
    """Train on the prepared data (``config``/``out`` for one point of a sweep); return the
    adapter's manifest.

    With ``job.checkpoints``, the base model and then every checkpoint are scored with ``score``
    (given an adapter folder, None for the base; default :func:`checkpoint_scorer`), training
    stops early when the plan says so, and the best checkpoint becomes the adapter; with a plan
    that averages, none is scored and their average becomes the adapter."""
    plan = job.checkpoints
    watcher = None
    if plan is not None and not plan.averages:
        watcher = CheckpointWatcher(plan, score or checkpoint_scorer(job), progress)
        watcher.score_base()  # an unknown category fails here, before any training
    manifest = train_in_subprocess(
        job.model,
        prepared.folder,
        out or job.out,
        config or job.config,
        chat_template=job.chat_template,
        dataset_hash=prepared.source_hash,
        progress=progress,
        hosts=job.hosts,
        save_every=plan.save_every if plan is not None else None,
        on_checkpoint=watcher if watcher is not None else _go_on,
    )
    if plan is None:
        return manifest
    if watcher is None:
        return average_checkpoints(out or job.out, manifest, plan)
    return select(out or job.out, manifest, watcher)


def _go_on(iteration: int, folder: Path) -> bool:
    """The answer to a checkpoint nobody scores: train on."""
    return True


def checkpoint_scorer(
    job: TrainingJob, *, extra: Sequence[str] = (), cwd: Path | None = None
) -> Callable[[Path | None], RunDocument]:
    """Score an adapter folder (None: the base model) on the job's eval suite, or the subset
    its plan names, with :func:`evaluate` (the ``--punie-eval-after`` path): a fresh pytest
    whose response cache is ``cwd``'s (default: where this process runs)."""
    plan = job.checkpoints
    cases = plan.cases if plan is not None else None
    if plan is None or job.lacks_checkpoint_suite:
        raise CheckpointError("checkpoints are scored on an eval suite, and the job has none")
    suite, selection = selected_suite(job.evals or Path(str(cases)), cases)

    def run(adapter: Path | None) -> RunDocument:
        with tempfile.TemporaryDirectory(prefix="punie-checkpoint-") as folder:
            results = Path(folder) / "results.json"
            # the run starts where the cache is: an HTML report the suite's ini asks for must
            # not replace the user's there
            html = [f"--html={Path(folder) / 'report.html'}"] if find_spec("pytest_html") else []
            try:
                document = evaluate(suite, results, model=job.model, adapter=adapter,
                                    extra=[*extra, *selection, *html], cwd=cwd)  # fmt: skip
            except RuntimeError as exc:
                what = f"--punie-select-cases={plan.cases}: " if plan and plan.cases else ""
                raise CheckpointError(f"{what}{exc}") from None
        return read_run(document, f"the eval run on {adapter or 'the base model'}")

    return run


_TEMPLATE_VARIABLE = re.compile(r"\btool_call\b(?!>)")


def text_parsing_template(template: str) -> str:
    """The same template with its loop variable renamed, so it renders the same text but no
    longer holds ``tool_call.name``: mlx_lm then picks no tool parser, the server returns the
    model's ``<tool_call>`` text as text, and the plugin parses it (``ToolCall.source`` text)."""
    body = re.sub(r"\{#.*?#\}", "", template, flags=re.DOTALL)  # comments name the markers
    return _TEMPLATE_VARIABLE.sub("call", body)


def mode_differences(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """Cases whose model text is the same in two results documents but whose score differs:
    two ways of parsing calls must score the same output the same way."""
    seconds = {c["nodeid"]: c for c in second["cases"]}
    found = []
    for case in first["cases"]:
        other = seconds.get(case["nodeid"])
        if other is None or case.get("repeat") != other.get("repeat"):
            continue
        same_text = _model_text(case) == _model_text(other)
        if same_text and case["score"] != other["score"]:
            found.append(f"{case['nodeid']}: {case['score']} vs {other['score']}")
    return found


def _model_text(case: Mapping[str, Any]) -> str:
    """What the model wrote: its text, or its calls written the way the template writes them."""
    response = case.get("response") or {}
    calls = [
        json.dumps({"name": c["name"], "arguments": c["arguments"]}, sort_keys=True)
        for c in response.get("tool_calls", ())
    ]
    return "\n".join(calls) or str(response.get("text", ""))
