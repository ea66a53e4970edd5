"""The average of an adapter's checkpoints (a uniform "soup"), in place of choosing one.

With ``--punie-select-by=average`` (the ``tool-calling`` recipe's own choice) no checkpoint is
scored: training saves one every ``--punie-save-every`` iterations and at the last, and the
adapter becomes the average of them all. Neighbouring checkpoints of a small model on a small
batch differ by 10-15 points on the eval suite (``benchmarks/RESULTS.md``, issue 23); their
average keeps what they share and is no single step's luck, and it costs no eval run.

The average is exact, not an average of the factors. A LoRA layer adds ``scale * x @ A @ B``;
the mean of ``n`` such terms is one LoRA layer whose ``A`` is the checkpoints' ``A`` side by side
and whose ``B`` is their ``B`` stacked and divided by ``n``. So the averaged adapter has ``n``
times the rank (``adapter_config.json`` says so, and mlx_lm loads, serves and fuses it as any
adapter); ``n * rank`` stays far below a layer's width for the recipe's checkpoints (5 x 8 =
40 against 576). Only LoRA adapters are averaged: DoRA's and full fine-tuning's weights do
not add up this way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_punie.finetune.checkpoints import (
    ADAPTER_CONFIG,
    CHECKPOINTS,
    WEIGHTS,
    CheckpointPlan,
    list_checkpoints,
)
from pytest_punie.finetune.lora import MANIFEST
from pytest_punie.system.files import atomic_write_text

__all__ = ["AveragingError", "average_adapter", "average_checkpoints", "average_weights"]

_A, _B = ".lora_a", ".lora_b"


class AveragingError(Exception):
    """Checkpoints that cannot be averaged: none, or of different shapes or layers."""


def average_weights(checkpoints: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The one set of weights whose every LoRA layer adds the mean of what the checkpoints'
    layers add (see the module docstring). Raises ``AveragingError`` when the checkpoints do
    not hold the same weights of the same shapes."""
    import mlx.core as mx

    if not checkpoints:
        raise AveragingError("no checkpoint to average")
    names = sorted(checkpoints[0])
    for number, weights in enumerate(checkpoints[1:], start=2):
        if sorted(weights) != names:
            raise AveragingError(f"checkpoint {number} holds other weights than the first")
        for name in names:
            if weights[name].shape != checkpoints[0][name].shape:
                raise AveragingError(
                    f"checkpoint {number}: {name} is {tuple(weights[name].shape)}, "
                    f"the first's is {tuple(checkpoints[0][name].shape)}"
                )
    count = len(checkpoints)
    averaged: dict[str, Any] = {}
    for name in names:
        parts = [weights[name] for weights in checkpoints]
        if name.endswith(_A):  # (input, rank): side by side
            averaged[name] = mx.concatenate(parts, axis=1)
        elif name.endswith(_B):  # (rank, output): stacked, each 1/n
            averaged[name] = mx.concatenate([p / count for p in parts], axis=0)
        else:
            raise AveragingError(f"{name} is no LoRA factor: only LoRA adapters are averaged")
    return averaged


def average_adapter(adapter: Path, folders: Sequence[Path]) -> int:
    """Write the average of the checkpoint ``folders`` (adapter folders) as ``adapter``'s weights
    and ``adapter_config.json`` (the first checkpoint's, with the rank the average has); both are
    replaced atomically. Returns that rank."""
    import mlx.core as mx

    if not folders:
        raise AveragingError(f"{adapter}: no checkpoint to average")
    config = json.loads((Path(folders[0]) / ADAPTER_CONFIG).read_text())
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise AveragingError(f"{adapter}: a {kind} adapter; only LoRA adapters are averaged")
    loaded: list[Mapping[str, Any]] = []
    for folder in folders:
        weights = mx.load(str(Path(folder) / WEIGHTS))
        if not isinstance(weights, dict):
            raise AveragingError(f"{folder}/{WEIGHTS}: not a file of named weights")
        loaded.append(weights)
    averaged = average_weights(loaded)
    lora = config.get("lora_parameters") or {}
    rank = int(lora.get("rank", 8)) * len(folders)
    config["lora_parameters"] = {**lora, "rank": rank}
    staging = Path(adapter) / f".{WEIGHTS}.averaging.safetensors"
    mx.save_safetensors(str(staging), averaged)
    os.replace(staging, Path(adapter) / WEIGHTS)
    atomic_write_text(Path(adapter) / ADAPTER_CONFIG, json.dumps(config, indent=4))
    return rank


def average_checkpoints(
    adapter: Path, manifest: Mapping[str, Any], plan: CheckpointPlan
) -> dict[str, Any]:
    """Make the average of every checkpoint saved under ``adapter`` the adapter (the checkpoints
    stay, the last iteration's weights among them) and record which were averaged, and why, in
    the manifest. Returns the manifest written."""
    adapter = Path(adapter)
    saved = list_checkpoints(adapter)
    if not saved:
        raise AveragingError(f"{adapter}: no checkpoint under {CHECKPOINTS}/ to average")
    rank = average_adapter(adapter, [folder for _, folder in saved])
    iterations = [iteration for iteration, _ in saved]
    section = {
        "save_every": plan.save_every,
        "select_by": plan.select_by,
        "cases": None,
        "early_stop": None,
        "stopped_early_at": None,
        "selected": None,
        "averaged": iterations,
        "reason": (
            f"the average of {len(saved)} checkpoint(s) (iterations "
            f"{', '.join(map(str, iterations))}), one LoRA of rank {rank}; none was scored"
        ),
        "base": None,
        "checkpoints": [
            {"iteration": i, "folder": f"{CHECKPOINTS}/{i:07d}", "averaged": True}
            for i in iterations
        ],
    }
    written = {**manifest, "checkpoints": section}
    atomic_write_text(adapter / MANIFEST, json.dumps(written, indent=2))
    return written
