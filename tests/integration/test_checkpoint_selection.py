"""Checkpoints of a real training run on the default model: saved while training waits, scored
(here by a stand-in for the eval suite), training stopped early, the best one made the adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_punie.finetune.checkpoints import CheckpointPlan, list_checkpoints
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
