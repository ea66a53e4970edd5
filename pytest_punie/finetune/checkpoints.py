"""The best checkpoint by task score, not the last one by validation loss.

mlx_lm keeps the adapter of its last iteration, and its validation loss is not what the eval
suite measures. With ``--punie-save-every N`` (``CheckpointPlan``) the training child saves the
adapter every N iterations and at the last one into ``checkpoints/NNNNNNN/`` (mlx_lm's own
seven-digit naming, with the ``adapter_config.json``: each checkpoint is an adapter folder) and
waits while the parent evaluates it (``CheckpointWatcher``): the eval suite, or the subset
``--punie-select-cases`` names, is run on it through the response cache, and its figure
(``--punie-select-by``: a category's mean or ``overall``) decides whether training goes on
(``--punie-early-stop K``: stop when the figure has not improved for K checkpoints).
``--punie-select-by=average`` scores none and averages them all (``finetune.averaging``).

Training waits while a checkpoint is evaluated, so the two never share the CPU and the training
is the same as without checkpoints. Afterwards ``select`` writes the best checkpoint's weights as
the adapter (the earlier checkpoint wins a tie), keeps every checkpoint under ``checkpoints/``
and records them all in the adapter's manifest. The base model is evaluated first, as a
reference and to check the figure's category exists before any training is spent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.finetune.lora import MANIFEST
from pytest_punie.results.document import RunDocument, write_results
from pytest_punie.system.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "AVERAGE",
    "CHECKPOINTS",
    "OVERALL",
    "CheckpointError",
    "CheckpointPlan",
    "CheckpointScore",
    "CheckpointWatcher",
    "best",
    "checkpoint_folder",
    "checkpoint_rows",
    "checkpoint_summary",
    "figure",
    "is_checkpoint",
    "list_checkpoints",
    "score",
    "select",
    "selected_suite",
    "stalled",
]

CHECKPOINTS = "checkpoints"
OVERALL = "overall"
AVERAGE = "average"  # --punie-select-by=average: no checkpoint is chosen, all are averaged
WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_NAME = re.compile(r"[0-9]{7}")


class CheckpointError(Exception):
    """Checkpoints cannot be chosen as asked (an unknown category, a subset of no case)."""


@dataclass(frozen=True)
class CheckpointPlan:
    """What the user asked for: save every ``save_every`` iterations, choose by ``select_by``
    (a category name or ``overall``), stop after ``early_stop`` checkpoints without improvement
    (None: never), and evaluate ``cases`` (a path of the eval suite or a ``-k`` expression;
    None: the whole suite)."""

    save_every: int
    select_by: str = OVERALL
    early_stop: int | None = None
    cases: str | None = None

    @property
    def averages(self) -> bool:
        """Whether the adapter is the average of the checkpoints (``finetune.averaging``),
        none of them scored, rather than the best of them."""
        return self.select_by == AVERAGE

    def unscored_settings(self) -> tuple[str, ...]:
        """The fields given that only mean something when checkpoints are scored, when the plan
        averages them (so each front end can name its own flags); () otherwise."""
        if not self.averages:
            return ()
        return tuple(name for name in ("early_stop", "cases") if getattr(self, name) is not None)

    def check(self) -> CheckpointPlan:
        """Return self, or raise ``ValueError`` naming the first bad value."""
        if self.save_every < 1:
            raise ValueError(f"save_every must be at least 1, not {self.save_every}")
        if self.early_stop is not None and self.early_stop < 1:
            raise ValueError(f"early_stop must be at least 1, not {self.early_stop}")
        if not self.select_by.strip():
            raise ValueError(f"select_by must name a category, {OVERALL} or {AVERAGE}")
        if self.unscored_settings():
            raise ValueError(
                f"select_by={AVERAGE} scores no checkpoint, so early_stop and cases mean nothing"
            )
        return self


def is_checkpoint(iteration: int, save_every: int, iters: int) -> bool:
    """Whether training saves a checkpoint after ``iteration``: every ``save_every`` and the
    last, so the adapter of the last iteration is among the checkpoints."""
    return iteration % save_every == 0 or iteration == iters


def checkpoint_folder(adapter: Path, iteration: int) -> Path:
    """``adapter/checkpoints/0000020``: mlx_lm's seven-digit name for iteration 20."""
    return Path(adapter) / CHECKPOINTS / f"{iteration:07d}"


def list_checkpoints(adapter: Path) -> list[tuple[int, Path]]:
    """The checkpoints saved under ``adapter`` (iteration, folder), first first."""
    folder = Path(adapter) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        (int(path.name), path)
        for path in folder.iterdir()
        if _NAME.fullmatch(path.name) and (path / WEIGHTS).is_file()
    ]
    return sorted(found)


def selected_suite(evals: Path, cases: str | None) -> tuple[Path, list[str]]:
    """What pytest runs to score a checkpoint: the suite, or the subset ``cases`` names (a file
    or folder, relative to the suite or to where the run started, else a ``-k`` expression)."""
    if cases is None:
        return Path(evals), []
    for candidate in (Path(cases), Path(evals) / cases, Path(evals).parent / cases):
        if candidate.exists():
            return candidate.resolve(), []
    return Path(evals), ["-k", cases]


@dataclass(frozen=True)
class CheckpointScore:
    """A checkpoint's evaluation: its figure (``select_by``'s), the overall mean and every
    category's mean, over ``cases`` cases. Iteration 0 is the base model."""

    iteration: int
    figure: float
    overall: float | None
    categories: Mapping[str, float] = field(default_factory=dict)
    cases: int = 0
    errors: int = 0  # samples that errored (scored 0 in the figure)

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "figure": self.figure,
            "overall": self.overall,
            "categories": dict(self.categories),
            "cases": self.cases,
            "errors": self.errors,
        }


def figure(document: RunDocument, select_by: str) -> float:
    """The figure checkpoints are chosen by: the document's overall mean or a category's mean
    (the document's own figures, never computed again). Raises ``CheckpointError`` naming the
    categories the run has when ``select_by`` is none of them."""
    names = [c.name for c in document.categories]
    if not document.cases:
        raise CheckpointError("the eval run selected no case to score checkpoints with")
    if select_by == OVERALL:
        if document.overall is None:
            raise CheckpointError("the eval run has no overall figure (no case was scored)")
        return document.overall
    category = document.category(select_by)
    if category is None:
        raise CheckpointError(
            f"--punie-select-by={select_by}: the eval suite has no category {select_by!r}; "
            f"it has {', '.join(names) or 'none'} (or choose {OVERALL})"
        )
    return category.mean


def score(iteration: int, document: RunDocument, select_by: str) -> CheckpointScore:
    """A checkpoint's score from its eval run's document. Raises ``CheckpointError`` when every
    case errored: the model was not reached, and a 0 would read as a score."""
    errored = [c for c in document.cases if c.outcome == "error"]
    if document.cases and len(errored) == len(document.cases):
        what = "the base model" if iteration == 0 else f"checkpoint {iteration}"
        first = errored[0]
        raise CheckpointError(
            f"every case of the eval run on {what} errored; {first.nodeid}: "
            f"{(first.message or 'no message')[:500]}"
        )
    return CheckpointScore(
        iteration=iteration,
        figure=figure(document, select_by),
        overall=document.overall,
        categories={c.name: c.mean for c in document.categories},
        cases=len({c.nodeid for c in document.cases}),
        errors=len(errored),
    )


def best(scores: Sequence[CheckpointScore]) -> CheckpointScore:
    """The checkpoint with the highest figure; of equal figures, the earliest (the shorter
    training reached it, and a later equal one is no improvement)."""
    if not scores:
        raise CheckpointError("no checkpoint was evaluated")
    chosen = scores[0]
    for candidate in scores[1:]:
        if candidate.figure > chosen.figure:
            chosen = candidate
    return chosen


def stalled(scores: Sequence[CheckpointScore], patience: int) -> bool:
    """Whether the figure has not improved for ``patience`` checkpoints: the best so far is
    ``patience`` or more checkpoints back (an equal figure is no improvement)."""
    if not scores:
        return False
    position = next(i for i, s in enumerate(scores) if s is best(scores))
    return len(scores) - 1 - position >= patience


class CheckpointWatcher:
    """Called by the training loop at each checkpoint: evaluates it (``evaluate``, given the
    adapter folder, or None for the base model), records its score and says whether training
    goes on. ``progress`` gets one line per checkpoint."""

    def __init__(
        self,
        plan: CheckpointPlan,
        evaluate: Callable[[Path | None], RunDocument],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.evaluate = evaluate
        self.progress = progress or print
        self.scores: list[CheckpointScore] = []
        self.documents: dict[int, RunDocument] = {}
        self.base: CheckpointScore | None = None
        self.stopped_at: int | None = None

    def score_base(self) -> CheckpointScore:
        """Evaluate the base model: the reference, and the check that the figure exists."""
        document = self.evaluate(None)
        self.base = score(0, document, self.plan.select_by)
        self.documents[0] = document
        self.progress(
            f"base model: {self.plan.select_by} {self.base.figure:.1%} "
            f"({self.base.cases} cases score the checkpoints)"
        )
        return self.base

    def __call__(self, iteration: int, folder: Path) -> bool:
        document = self.evaluate(folder)
        checkpoint = score(iteration, document, self.plan.select_by)
        self.scores.append(checkpoint)
        self.documents[iteration] = document
        leader = best(self.scores)
        self.progress(
            f"checkpoint {iteration}: {self.plan.select_by} {checkpoint.figure:.1%} "
            f"(best: {leader.figure:.1%} at iteration {leader.iteration})"
        )
        patience = self.plan.early_stop
        if patience is not None and stalled(self.scores, patience):
            self.stopped_at = iteration
            self.progress(
                f"early stop at iteration {iteration}: {self.plan.select_by} has not improved "
                f"for {patience} checkpoint(s)"
            )
            return False
        return True


def select(
    adapter: Path,
    manifest: Mapping[str, Any],
    watcher: CheckpointWatcher,
) -> dict[str, Any]:
    """Make the best checkpoint the adapter: its weights become ``adapter/adapters.safetensors``
    (the last weights stay in their checkpoint folder, nothing is lost), each evaluation's results
    are written next to its checkpoint, and the manifest records every checkpoint with its scores,
    which was selected and why. Returns the manifest written."""
    plan = watcher.plan
    adapter = Path(adapter)
    saved = dict(list_checkpoints(adapter))
    scores = [s for s in watcher.scores if s.iteration in saved]
    if not scores:
        raise CheckpointError(f"{adapter}: no evaluated checkpoint under {CHECKPOINTS}/")
    chosen = best(scores)
    atomic_write_bytes(adapter / WEIGHTS, (saved[chosen.iteration] / WEIGHTS).read_bytes())
    for iteration, document in watcher.documents.items():
        name = "base" if iteration == 0 else f"{iteration:07d}"
        write_results(adapter / CHECKPOINTS / f"{name}-results.json", document)
    ties = [s.iteration for s in scores if s.figure == chosen.figure and s is not chosen]
    reason = (
        f"the highest {plan.select_by} ({chosen.figure:.1%}) of {len(scores)} checkpoint(s)"
        + (
            f"; iteration(s) {', '.join(map(str, ties))} tie with it: the earlier is kept"
            if ties
            else ""
        )
        + (
            f"; training stopped early at iteration {watcher.stopped_at}, {plan.select_by} not "
            f"improved for {plan.early_stop} checkpoint(s)"
            if watcher.stopped_at is not None
            else ""
        )
    )
    section = {
        "save_every": plan.save_every,
        "select_by": plan.select_by,
        "cases": plan.cases,
        "early_stop": plan.early_stop,
        "stopped_early_at": watcher.stopped_at,
        "selected": chosen.iteration,
        "reason": reason,
        "base": watcher.base.to_json() if watcher.base is not None else None,
        "checkpoints": [
            {
                **s.to_json(),
                "folder": f"{CHECKPOINTS}/{s.iteration:07d}",
                "selected": s is chosen,
            }
            for s in scores
        ],
    }
    written = {**manifest, "checkpoints": section}
    atomic_write_text(adapter / MANIFEST, json.dumps(written, indent=2))
    return written


def checkpoint_rows(manifest: Mapping[str, Any]) -> list[list[str]]:
    """Rows of (iteration, figure, selected) from a manifest's ``checkpoints`` section, the base
    model first when it was evaluated (an averaged checkpoint has no figure and is "averaged");
    empty when the adapter was trained without checkpoints."""
    section = manifest.get("checkpoints")
    if not section:
        return []
    rows = []
    if section.get("base"):
        rows.append(["0 (base)", f"{section['base']['figure']:.1%}", ""])
    for entry in section["checkpoints"]:
        figure = entry.get("figure")
        chosen = "averaged" if entry.get("averaged") else "selected" if entry["selected"] else ""
        rows.append([str(entry["iteration"]), "-" if figure is None else f"{figure:.1%}", chosen])
    return rows


def checkpoint_summary(manifest: Mapping[str, Any]) -> str:
    """One line saying what became the adapter, and why (empty without checkpoints)."""
    section = manifest.get("checkpoints")
    if not section:
        return ""
    if section.get("averaged"):
        return f"averaged: {section['reason']}"
    entries = section["checkpoints"]
    cases = entries[0].get("cases") if entries else None
    scored = f"scored on {cases} eval cases" if cases is not None else "scored"
    return (
        scored
        + (f" ({section['cases']})" if section.get("cases") else "")
        + f"; selected: iteration {section['selected']}, {section['reason']}"
    )
