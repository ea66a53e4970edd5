"""LoRA training with mlx_lm, with its losses captured and the adapter written atomically.

Facts from mlx_lm 0.32 this module is built around: its LoRA config takes ``scale``, not
``alpha`` (so a user's alpha becomes scale = alpha / rank, and both are recorded);
``lora.run`` replaces the callback it is given, so training goes through ``lora.train_model``
with a ``TrainingCallback`` that records every train and validation loss report.

With ``save_every`` (``--punie-save-every``, see ``finetune.checkpoints``) the child saves a
checkpoint folder every N iterations and at the last, tells the parent, and waits for its answer
(``continue`` or ``stop``) on stdin: the parent evaluates the checkpoint meanwhile and may stop
training there.

With hosts (``--punie-train-hosts``) the same child runs once per rank under ``mlx.launch``
(see ``finetune.distributed``): mlx_lm averages the gradients over the ranks, rank 0 alone
reports progress and writes the adapter folder and its manifest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_punie.system.versions import package_version

__all__ = [
    "MANIFEST",
    "LoraConfig",
    "TrainingError",
    "TrainingReport",
    "load_config",
    "sweep_configs",
    "train_adapter",
    "train_in_subprocess",
]
from pytest_punie.system import blas

MANIFEST = "punie-manifest.json"
PROGRESS_PREFIX = "[punie train] "
CHECKPOINT_PREFIX = "[punie checkpoint] "
CHILD = ("-m", "pytest_punie.finetune.lora")  # the training child, after sys.executable
CHILD_EXIT_TIMEOUT_S = 60.0  # for a child told to abort at a checkpoint to clean up and exit
RING_PREFIX = "[punie ring] "


class TrainingError(Exception):
    """Training could not run or produced no usable adapter; the message says why."""


class StopTraining(Exception):
    """Raised inside mlx_lm's training loop (from its callback) to end training early."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped at iteration {iteration}")
        self.iteration = iteration


@dataclass(frozen=True)
class LoraConfig:
    """What a LoRA run is given. ``keys`` None trains every linear layer of the last
    ``num_layers`` blocks (-1: all blocks).

    The defaults are the one set both ``pytest training/`` and ``punie train`` start from:
    small enough to train the sample dataset in a few minutes on 2 CPU cores."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    keys: tuple[str, ...] | None = None
    num_layers: int = 4
    iters: int = 16
    batch_size: int = 2
    learning_rate: float = 2e-4
    max_seq_length: int = 1024
    mask_prompt: bool = False
    grad_checkpoint: bool = False
    steps_per_report: int = 4
    steps_per_eval: int = 8
    val_batches: int = 2
    seed: int = 0

    @property
    def scale(self) -> float:
        """mlx_lm's LoRA ``scale``: alpha / rank."""
        return self.alpha / self.rank

    def check(self) -> LoraConfig:
        """Return self, or raise ``ValueError`` naming the first bad value."""
        positive = ("rank", "iters", "batch_size", "max_seq_length", "steps_per_report")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not self.alpha > 0 or not self.learning_rate > 0:
            raise ValueError("alpha and learning_rate must be positive")
        if self.num_layers == 0 or self.num_layers < -1:
            raise ValueError(f"num_layers must be -1 (all) or at least 1, not {self.num_layers}")
        return self

    def mlx_args(self, model: str, data: Path, adapter_path: Path, layers: int) -> Any:
        """The argument namespace ``mlx_lm.lora.train_model`` expects."""
        from types import SimpleNamespace

        from mlx_lm.lora import CONFIG_DEFAULTS

        lora_parameters: dict[str, Any] = {
            "rank": self.rank,
            "scale": self.scale,
            "dropout": self.dropout,
        }
        if self.keys is not None:
            lora_parameters["keys"] = list(self.keys)
        values = {
            **CONFIG_DEFAULTS,
            "model": model,
            "train": True,
            "data": str(data),
            "adapter_path": str(adapter_path),
            "num_layers": layers if self.num_layers == -1 else self.num_layers,
            "iters": self.iters,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "max_seq_length": self.max_seq_length,
            "mask_prompt": self.mask_prompt,
            "grad_checkpoint": self.grad_checkpoint,
            "steps_per_report": self.steps_per_report,
            "steps_per_eval": self.steps_per_eval,
            "val_batches": self.val_batches,
            "save_every": self.iters,
            "seed": self.seed,
            "lora_parameters": lora_parameters,
        }
        return SimpleNamespace(**values)


def load_config(
    path: Path, overrides: Mapping[str, Any] | None = None, base: LoraConfig | None = None
) -> LoraConfig:
    """``base`` (default: ``LoraConfig()``), then a YAML file (mlx_lm's own keys are accepted
    too), then ``overrides``."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config must be a mapping of names to values")
    lora = data.pop("lora_parameters", {}) or {}
    if "scale" in lora and "alpha" not in lora and "rank" in lora:
        lora["alpha"] = lora["scale"] * lora["rank"]
    data = {**{k: v for k, v in lora.items() if k != "scale"}, **data}
    known = {f.name for f in fields(LoraConfig)}
    values = {k: v for k, v in data.items() if k in known}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if values.get("keys") is not None:
        values["keys"] = tuple(values["keys"])
    try:
        return replace(base or LoraConfig(), **values).check()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


@dataclass
class TrainingReport:
    """What happened during training: losses per report step and speed."""

    train_losses: list[tuple[int, float]] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    iterations_per_second: list[float] = field(default_factory=list)
    tokens_per_second: list[float] = field(default_factory=list)
    peak_memory_gb: float = 0.0
    trained_tokens: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_iteration(self) -> float | None:
        speeds = [s for s in self.iterations_per_second if s > 0]
        return len(speeds) / sum(speeds) if speeds else None

    @property
    def mean_tokens_per_second(self) -> float | None:
        speeds = self.tokens_per_second
        return sum(speeds) / len(speeds) if speeds else None

    @property
    def loss_went_down(self) -> bool:
        return len(self.train_losses) >= 2 and self.train_losses[-1][1] < self.train_losses[0][1]

    @property
    def validation_rose(self) -> bool:
        """True when the last validation loss is above the lowest one (overfitting)."""
        losses = [loss for _, loss in self.val_losses]
        return len(losses) >= 2 and losses[-1] > min(losses) + 1e-6

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds_per_iteration": self.seconds_per_iteration,
            "mean_tokens_per_second": self.mean_tokens_per_second,
        }


def progress_line(
    iteration: int, iters: int, loss: float, tokens_per_second: float, seconds_per_iteration: float
) -> str:
    """``iter 20/150: loss 1.234, 410 tok/s, 3.1 s/iter, 6m43s left``."""
    left = int(seconds_per_iteration * max(iters - iteration, 0))
    speed = f"{tokens_per_second:.0f}" if tokens_per_second >= 10 else f"{tokens_per_second:.1f}"
    return (
        f"iter {iteration}/{iters}: loss {loss:.3f}, {speed} tok/s, "
        f"{seconds_per_iteration:.1f} s/iter, {left // 60}m{left % 60:02d}s left"
    )


def _callback(
    report: TrainingReport,
    progress: Callable[[str], None] | None,
    iters: int = 0,
    checkpoint: Callable[[int], None] | None = None,
) -> Any:
    from mlx_lm.tuner.callbacks import TrainingCallback

    class Recorder(TrainingCallback):
        def on_train_loss_report(self, info: dict[str, Any]) -> None:
            report.train_losses.append((int(info["iteration"]), float(info["train_loss"])))
            report.iterations_per_second.append(float(info["iterations_per_second"]))
            report.tokens_per_second.append(float(info["tokens_per_second"]))
            report.peak_memory_gb = max(report.peak_memory_gb, float(info["peak_memory"]))
            report.trained_tokens = int(info["trained_tokens"])
            if progress:
                progress(
                    progress_line(
                        int(info["iteration"]), iters or int(info["iteration"]),
                        float(info["train_loss"]), float(info["tokens_per_second"]),
                        1 / max(float(info["iterations_per_second"]), 1e-9),
                    )
                )  # fmt: skip
            if checkpoint is not None:
                checkpoint(int(info["iteration"]))

        def on_val_loss_report(self, info: dict[str, Any]) -> None:
            report.val_losses.append((int(info["iteration"]), float(info["val_loss"])))
            if progress:
                progress(f"iter {info['iteration']}: validation loss {info['val_loss']:.3f}")

    return Recorder()


def train_adapter(
    model: str,
    data_dir: Path,
    out_dir: Path,
    config: LoraConfig,
    *,
    chat_template: str | None = None,
    dataset_hash: str | None = None,
    progress: Callable[[str], None] | None = None,
    hosts: Sequence[str] = (),
    save_every: int | None = None,
    on_checkpoint: Callable[[int, Path], bool] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train a LoRA adapter on ``data_dir`` (train.jsonl, valid.jsonl) and write it to
    ``out_dir`` with a manifest; return the folder and the manifest.

    ``chat_template`` (the same one the eval server uses) renders the training examples, so
    tool calls are trained in the format the evaluation reads. The folder appears atomically; an
    adapter already at ``out_dir`` is moved aside to ``out_dir.previous-<time>``, never deleted.

    In a world of several ranks (``mx.distributed``, started by ``mlx.launch`` on ``hosts``),
    every rank trains and only rank 0 writes ``out_dir``; the others return an empty manifest.

    With ``save_every``, the adapter of every ``save_every``-th iteration and of the last is saved
    to ``out_dir/checkpoints/NNNNNNN/`` and handed to ``on_checkpoint`` (iteration, folder), which
    returns False to end training there (the adapter is then that checkpoint's weights).
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.lora import train_model
    from mlx_lm.tuner.datasets import load_local_dataset

    from pytest_punie.finetune import checkpoints

    config.check()
    if save_every is not None:
        # the callback saves the checkpoints at loss reports: one must fall on every save
        config = replace(config, steps_per_report=math.gcd(config.steps_per_report, save_every))
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    for split in ("train.jsonl", "valid.jsonl"):
        if not (data_dir / split).is_file():
            raise TrainingError(f"{data_dir} has no {split}: mlx_lm trains on train and valid")
    tokenizer_config = {"chat_template": chat_template} if chat_template else {}
    world = mx.distributed.init()
    writes = world.rank() == 0
    if hosts:  # mlx_lm's batch order: the same on every rank, and for any number of ranks
        import numpy as np

        np.random.seed(config.seed)
    loaded = load(model, tokenizer_config=tokenizer_config)
    net, tokenizer = loaded[0], loaded[1]
    if writes:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
        staging.chmod(0o755)
    else:  # mlx_lm writes its adapter_config.json on every rank: not next to rank 0's
        staging = Path(tempfile.mkdtemp(prefix="punie-rank-"))
    args = config.mlx_args(model, data_dir, staging, len(net.layers))
    report = TrainingReport()
    stopped_at: int | None = None

    def weights() -> dict[str, Any]:
        return dict(tree_flatten(net.trainable_parameters()))

    def checkpoint(iteration: int) -> None:
        """mlx_lm saves its checkpoints after this callback; saving here lets the parent score
        the checkpoint before training goes on."""
        if save_every is None or not checkpoints.is_checkpoint(iteration, save_every, config.iters):
            return
        folder = checkpoints.checkpoint_folder(staging, iteration)
        if writes:
            folder.mkdir(parents=True)
            mx.save_safetensors(str(folder / checkpoints.WEIGHTS), weights())
            shutil.copy2(staging / checkpoints.ADAPTER_CONFIG, folder / checkpoints.ADAPTER_CONFIG)
        if on_checkpoint is not None and not on_checkpoint(iteration, folder):
            raise StopTraining(iteration)

    try:
        train_set, valid_set, _ = load_local_dataset(data_dir, tokenizer, args)  # type: ignore[arg-type]
        if len(train_set) == 0 or len(valid_set) == 0:
            raise TrainingError(f"{data_dir}: train.jsonl and valid.jsonl must not be empty")
        if len(train_set) < config.batch_size or len(valid_set) < config.batch_size:
            raise TrainingError(
                f"{data_dir}: batch size {config.batch_size} is larger than the data "
                f"({len(train_set)} train, {len(valid_set)} valid lines)"
            )
        mx.reset_peak_memory()
        started = time.perf_counter()
        try:
            train_model(
                args,
                net,
                train_set,
                valid_set,
                training_callback=_callback(report, progress, config.iters, checkpoint),
            )
        except StopTraining as stop:
            stopped_at = stop.iteration
            if writes:  # mlx_lm writes the adapter when its loop ends, not when it is left
                mx.save_safetensors(str(staging / checkpoints.WEIGHTS), weights())
        report.seconds = time.perf_counter() - started
        if not report.train_losses or any(math.isnan(loss) for _, loss in report.train_losses):
            raise TrainingError("training reported no usable loss (NaN or nothing)")
        if not writes:
            shutil.rmtree(staging, ignore_errors=True)
            return out_dir, {}
        manifest = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": model,
            "data": str(data_dir),
            "dataset_hash": dataset_hash,
            "config": {**asdict(config), "scale": config.scale},
            "chat_template": "given" if chat_template else "model",
            "losses": report.to_json(),
            **({"save_every": save_every, "stopped_at": stopped_at} if save_every else {}),
            "world_size": world.size(),
            "hosts": list(hosts) or None,
            "versions": {n: package_version(n) for n in ("mlx", "mlx-lm", "pytest-punie")},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = out_dir.with_name(f"{out_dir.name}.previous-{stamp}")
            os.replace(out_dir, aside)
            manifest["replaced"] = str(aside)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir, manifest


def sweep_configs(base: LoraConfig, spec: str) -> list[LoraConfig]:
    """Every combination of ``"rank=8,16 lr=1e-5,1e-4"`` applied to ``base``."""
    import itertools

    aliases = {"lr": "learning_rate", "layers": "num_layers"}
    known = {f.name: f.type for f in fields(LoraConfig)}
    axes: list[list[tuple[str, Any]]] = []
    for part in spec.split():
        name, sep, values = part.partition("=")
        name = aliases.get(name, name)
        if not sep or name not in known or name == "keys":
            raise ValueError(f"sweep: {part!r} is not NAME=V1,V2 with a LoRA setting as NAME")
        kind = type(getattr(base, name))
        try:
            axes.append([(name, kind(v)) for v in values.split(",") if v])
        except ValueError as exc:
            raise ValueError(f"sweep: {part!r}: {exc}") from None
    return [replace(base, **dict(combo)).check() for combo in itertools.product(*axes)]


def train_in_subprocess(
    model: str,
    data_dir: Path,
    out_dir: Path,
    config: LoraConfig,
    *,
    chat_template: str | None = None,
    dataset_hash: str | None = None,
    openblas: bool = True,
    progress: Callable[[str], None] | None = None,
    hosts: Sequence[str] = (),
    save_every: int | None = None,
    on_checkpoint: Callable[[int, Path], bool] | None = None,
) -> dict[str, Any]:
    """``train_adapter`` in a fresh Python with OpenBLAS preloaded (as the eval server has it):
    MLX's Linux CPU wheel links reference BLAS, far slower for training's matmuls. Progress lines
    go to ``progress`` as they come (default: this process's stdout); the manifest is returned.

    With ``hosts`` (one entry per rank, see ``distributed.parse_hosts``) the child runs once per
    rank under ``mlx.launch``: the progress shown is rank 0's, and a rank that fails, or a ring
    that stops making progress, stops every rank and raises ``TrainingError`` saying which.

    With ``save_every`` the child waits at each checkpoint for ``on_checkpoint`` (iteration,
    folder; in the child's staging folder, moved into ``out_dir`` when training ends) to say
    whether training goes on (one process only: the ranks of a ring cannot wait)."""

    if hosts and save_every is not None:
        raise TrainingError(
            "checkpoints (save_every) are scored in one training process, not ranks"
        )
    if hosts and config.batch_size % len(hosts):
        raise TrainingError(
            f"batch size {config.batch_size} does not divide among {len(hosts)} ranks: mlx_lm "
            "gives every rank an equal share of each batch"
        )
    job = {
        "model": model,
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "config": {**asdict(config), "keys": list(config.keys) if config.keys else None},
        "chat_template": chat_template,
        "dataset_hash": dataset_hash,
        "save_every": save_every,
    }
    env = dict(os.environ)
    from pytest_punie.finetune.distributed import ranks_per_host

    # each rank on this host its share of the cores (choose_blas sets OPENBLAS_NUM_THREADS)
    choice = blas.choose_blas(env, processes=ranks_per_host(hosts or ())) if openblas else None

    def run(
        job: dict[str, Any], env: dict[str, str], progress: Callable[[str], None] | None
    ) -> tuple[int, str, bool]:
        if hosts:
            return _run_ranks(job, env, progress)
        return _run_training(job, env, progress, on_checkpoint)

    if hosts:
        job = _ranks_job(job, hosts)
    returncode, stderr, answered = run(job, env, progress)
    if returncode < 0 and not answered and choice is not None and choice.library is not None:
        # A native library must not void the run: train once more without it.
        reason = f"killed the training process with {blas.signal_name(returncode)}"
        blas.record_crash(choice.library, reason)
        (progress or print)(f"{choice.library.name} {reason}: training again with reference BLAS")
        env = blas.without_preload(env, choice.library)
        returncode, stderr, answered = run(job, env, progress)
    if returncode != 0:
        message = f"training failed (exit {returncode}):\n{stderr[-4000:]}"
        raise TrainingError(stderr if hosts else message)
    manifest: dict[str, Any] = json.loads((Path(out_dir) / MANIFEST).read_text())
    return manifest


def _ranks_job(job: dict[str, Any], hosts: Sequence[str]) -> dict[str, Any]:
    """The job every rank is given: absolute paths (ranks on other hosts start in the same
    folder, if it exists there) and the hosts."""
    absolute = {k: str(Path(job[k]).resolve()) for k in ("data_dir", "out_dir")}
    if Path(job["model"]).exists():
        absolute["model"] = str(Path(job["model"]).resolve())
    return {**job, **absolute, "hosts": list(hosts)}


def _show(line: str, progress: Callable[[str], None] | None) -> bool | None:
    """Pass a line of the training child on; True for a loss report, False for another
    progress line, None for anything else."""
    for prefix in (PROGRESS_PREFIX, RING_PREFIX):
        if line.startswith(prefix):
            (progress or print)(line[len(prefix) :].rstrip())
            return prefix == PROGRESS_PREFIX
    if progress is None:
        print(line, end="")
    return None


def _run_ranks(
    job: dict[str, Any], env: dict[str, str], progress: Callable[[str], None] | None
) -> tuple[int, str, bool]:
    """Run the training child once per rank of ``job["hosts"]``; like ``_run_training``, but a
    failure's stderr is the launch's explanation (``distributed.failure_text``) and a rank
    killed by a signal gives the negative exit code."""
    import sys

    from pytest_punie.finetune import distributed

    answered = False

    def on_line(line: str) -> bool:
        nonlocal answered
        shown = _show(line, progress)
        answered = answered or bool(shown)
        return shown is not None

    command = [sys.executable, *CHILD, "--job", json.dumps(job)]
    try:
        result = distributed.launch(job["hosts"], command, env=env, on_line=on_line)
    except OSError as exc:
        return 1, f"training on {', '.join(job['hosts'])} could not start: {exc}", False
    if result.ok:
        return 0, result.stderr, answered
    signalled = result.killed_by_signal
    returncode = signalled.code if signalled is not None and signalled.code else 1
    return returncode, distributed.failure_text(result), answered


def _run_training(
    job: dict[str, Any],
    env: dict[str, str],
    progress: Callable[[str], None] | None,
    on_checkpoint: Callable[[int, Path], bool] | None = None,
) -> tuple[int, str, bool]:
    """Run the training child on ``job``; its exit code, its stderr, and whether it printed a
    progress line (it got past loading the model). A checkpoint the child announces is handed
    to ``on_checkpoint`` while the child waits; its answer goes back on the child's stdin. When
    ``on_checkpoint`` raises, the child is killed and the error raised."""
    import subprocess
    import sys

    answered = False
    with (
        tempfile.TemporaryFile("w+") as errors,
        subprocess.Popen(
            [sys.executable, *CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
        ) as process,
    ):
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(job) + "\n")
        process.stdin.flush()
        if on_checkpoint is None:
            process.stdin.close()
        try:
            for line in process.stdout:
                if on_checkpoint is not None and line.startswith(CHECKPOINT_PREFIX):
                    iteration, _, folder = line[len(CHECKPOINT_PREFIX) :].strip().partition(" ")
                    try:
                        go_on = on_checkpoint(int(iteration), Path(folder))
                    except BaseException:
                        # the waiting child removes its staging folder and exits
                        _answer(process.stdin, "abort")
                        try:
                            process.wait(timeout=CHILD_EXIT_TIMEOUT_S)
                        except subprocess.TimeoutExpired:
                            pass  # killed below
                        raise
                    _answer(process.stdin, "continue" if go_on else "stop")
                    continue
                answered = bool(_show(line, progress)) or answered
        except BaseException:
            process.kill()
            raise
        process.stdin.close()
        returncode = process.wait()
        errors.seek(0)
        stderr = errors.read()
    return returncode, stderr, answered


def _answer(stdin: Any, word: str) -> None:
    """Tell the waiting child ``continue`` or ``stop`` (a child that died hears nothing: its
    exit code says why)."""
    try:
        stdin.write(word + "\n")
        stdin.flush()
    except (BrokenPipeError, ValueError):
        pass


def _main(argv: Sequence[str]) -> int:
    """The training child: the job as one line of JSON on stdin, or (a rank) after ``--job``."""
    import sys

    job = json.loads(argv[1] if argv[:1] == ["--job"] else sys.stdin.readline())
    if len(job.get("hosts") or ()) > 1:
        return _main_rank(job)
    # mlx.launch gives a lone rank an empty hostfile, which mx.distributed.init() cannot parse
    os.environ.pop("MLX_HOSTFILE", None)
    try:
        _train_job(job, _say)
    except (TrainingError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def _say(line: str) -> None:
    """A progress line, marked for the parent to show."""
    print(f"{PROGRESS_PREFIX}{line}", flush=True)


def _ask_parent(iteration: int, folder: Path) -> bool:
    """Announce a checkpoint and wait for the parent's answer: True to go on, False to stop
    there. ``abort`` (the checkpoint could not be scored) or a parent that is gone raises
    ``TrainingError``: no adapter is written, the staging folder is removed."""
    import sys

    print(f"{CHECKPOINT_PREFIX}{iteration} {folder}", flush=True)
    answer = sys.stdin.readline().strip()
    if answer not in ("continue", "stop"):
        raise TrainingError(f"checkpoint {iteration} was not scored: training stops, no adapter")
    return answer == "continue"


def _train_job(job: dict[str, Any], progress: Callable[[str], None] | None) -> None:
    values = dict(job["config"])
    values["keys"] = tuple(values["keys"]) if values.get("keys") else None
    train_adapter(
        job["model"],
        Path(job["data_dir"]),
        Path(job["out_dir"]),
        LoraConfig(**values),
        chat_template=job["chat_template"],
        dataset_hash=job["dataset_hash"],
        progress=progress,
        hosts=job.get("hosts") or (),
        save_every=job.get("save_every"),
        on_checkpoint=_ask_parent if job.get("save_every") else None,
    )


def _main_rank(job: dict[str, Any]) -> int:
    """One rank of a ring: join the ring, then train. Rank 0 alone writes to stdout (the
    launcher interleaves the ranks' output); every error line names its rank on stderr."""
    import sys
    import traceback

    import mlx.core as mx

    from pytest_punie.finetune.distributed import RANK_PREFIX

    hosts = job["hosts"]
    prefix = RANK_PREFIX.format(rank=os.environ.get("MLX_RANK", "?"))
    try:
        world = mx.distributed.init(strict=True, backend="ring")
        prefix = RANK_PREFIX.format(rank=world.rank())
        if world.size() != len(hosts):
            raise TrainingError(f"the ring has {world.size()} ranks, not {len(hosts)}")
        if world.rank() == 0:
            print(f"{RING_PREFIX}{len(hosts)} ranks connected: {', '.join(hosts)}", flush=True)
        else:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _train_job(job, _say if world.rank() == 0 else None)
    except (TrainingError, ValueError) as exc:
        text = str(exc)
    except Exception:
        text = traceback.format_exc()
    else:
        return 0
    print("\n".join(prefix + line for line in text.rstrip().splitlines()), file=sys.stderr)
    sys.stderr.flush()
    return 1


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
