"""Checkpoints of a real training run on the default model: saved while training waits, scored
(here by a stand-in for the eval suite), training stopped early, the best one made the adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_punie.finetune.checkpoints import AVERAGE, CheckpointPlan, list_checkpoints
from pytest_punie.finetune.lora import MANIFEST, LoraConfig
from pytest_punie.finetune.pipeline import PreparedData, TrainingJob, train_job
from pytest_punie.results.document import RunDocument, read_run

from .test_distributed_training import _tiny_data

pytestmark = pytest.mark.integration

# the stand-in's figure per checkpoint: best at 4, then no improvement for two checkpoints
FIGURES = {2: 0.25, 4: 0.75, 6: 0.5, 8: 0.75, 10: 1.0, 12: 1.0}


def test_training_keeps_the_best_checkpoint_and_stops_early(model_path, tmp_path):
    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "adapter"
    seen: dict[int, str] = {}  # iteration -> sha256 of the weights the scorer was given

    def score(adapter: Path | None) -> RunDocument:
        """Scores what it is given, at the moment training waits for it."""
        value = 0.0
        if adapter is not None:
            assert json.loads((adapter / "adapter_config.json").read_text())["lora_parameters"]
            weights = (adapter / "adapters.safetensors").read_bytes()
            seen[int(adapter.name)] = hashlib.sha256(weights).hexdigest()
            value = FIGURES[int(adapter.name)]
        case = {"nodeid": "t::c", "category": "tool_calling", "outcome": "passed", "score": value}
        return read_run({"cases": [case]})

    config = LoraConfig(iters=12, batch_size=2, num_layers=2, rank=4, alpha=32,
                        learning_rate=1e-3, steps_per_report=4)  # fmt: skip
    job = TrainingJob(data=data, out=out, model=str(model_path), config=config, evals=tmp_path,
                      checkpoints=CheckpointPlan(2, "tool_calling", early_stop=2))  # fmt: skip
    prepared = PreparedData(data, {}, {}, data / "rejects.jsonl", "hash")
    lines: list[str] = []
    manifest = train_job(job, prepared, progress=lines.append, score=score)

    # training really stopped after checkpoint 8: 6 and 8 did not beat 4 (8 only equals it)
    assert sorted(seen) == [2, 4, 6, 8]
    assert manifest["stopped_at"] == 8
    assert max(i for i, _ in manifest["losses"]["train_losses"]) == 8
    assert not any(line.startswith("iter 9/") for line in lines), lines
    # every checkpoint kept, as the scorer saw it, each different (training went on between)
    kept = dict(list_checkpoints(out))
    assert sorted(kept) == [2, 4, 6, 8]
    digests = {i: hashlib.sha256((f / "adapters.safetensors").read_bytes()).hexdigest()
               for i, f in kept.items()}  # fmt: skip
    assert digests == seen
    assert len(set(digests.values())) == 4
    # the best (the earlier of the tie 4 / 8) is the adapter, and the manifest says why
    assert hashlib.sha256((out / "adapters.safetensors").read_bytes()).hexdigest() == seen[4]
    section = json.loads((out / MANIFEST).read_text())["checkpoints"]
    assert section["selected"] == 4
    assert section["stopped_early_at"] == 8
    assert [(e["iteration"], e["selected"]) for e in section["checkpoints"]] == [
        (2, False), (4, True), (6, False), (8, False)
    ]  # fmt: skip
    assert "8 tie with it: the earlier is kept" in section["reason"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adapter-")]


def test_training_averages_its_checkpoints_into_an_adapter_mlx_lm_serves(model_path, tmp_path):
    """--punie-select-by=average on a real run: nothing is scored, and mlx_lm loads the averaged
    adapter (rank 3 x 4) whose layers add exactly the mean of what the checkpoints' layers add,
    and which answers differently from the base model."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "adapter"
    config = LoraConfig(iters=6, batch_size=2, num_layers=2, rank=4, alpha=32,
                        learning_rate=1e-3, steps_per_report=2)  # fmt: skip
    job = TrainingJob(data=data, out=out, model=str(model_path), config=config,
                      checkpoints=CheckpointPlan(2, AVERAGE))  # fmt: skip
    prepared = PreparedData(data, {}, {}, data / "rejects.jsonl", "hash")

    def no_scoring(adapter: Path | None) -> RunDocument:
        raise AssertionError("an averaging plan scores nothing")

    manifest = train_job(job, prepared, progress=lambda _: None, score=no_scoring)
    assert manifest["checkpoints"]["averaged"] == [2, 4, 6]
    saved = [mx.load(str(folder / "adapters.safetensors")) for _, folder in list_checkpoints(out)]
    model, tokenizer = load(str(model_path), adapter_path=str(out))
    layer = model.model.layers[-1].self_attn.q_proj
    assert layer.lora_a.shape[1] == 12
    name = f"model.layers.{len(model.model.layers) - 1}.self_attn.q_proj"
    x = mx.array(np.random.default_rng(0).normal(size=(3, layer.lora_a.shape[0])), mx.float32)
    expected = np.mean(
        [np.array(x @ w[f"{name}.lora_a"] @ w[f"{name}.lora_b"]) for w in saved], axis=0
    )
    np.testing.assert_allclose(
        np.array(x @ layer.lora_a @ layer.lora_b), expected, rtol=1e-4, atol=1e-6
    )
    tokens = mx.array([tokenizer.encode("Say the word pumpkin three times.")])
    base = load(str(model_path))[0]
    assert not np.allclose(np.array(model(tokens)), np.array(base(tokens)), atol=1e-3)
