"""The average of an adapter's checkpoints (``finetune.averaging``): exact for LoRA layers, a
checked error for anything else, written as the adapter with its rank, and what the pipeline
does with ``--punie-select-by=average`` (no checkpoint scored)."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from pytest_punie.finetune import pipeline
from pytest_punie.finetune.averaging import (
    AveragingError,
    average_checkpoints,
    average_weights,
)
from pytest_punie.finetune.checkpoints import (
    AVERAGE,
    CheckpointPlan,
    checkpoint_folder,
    checkpoint_rows,
    checkpoint_summary,
)
from pytest_punie.finetune.lora import MANIFEST, LoraConfig
from pytest_punie.finetune.pipeline import PreparedData, TrainingJob, train_job

LAYER = "model.layers.0.self_attn.q_proj"


def lora(seed: int, rank: int = 2, width: int = 12) -> dict[str, mx.array]:
    rng = np.random.default_rng(seed)
    return {
        f"{LAYER}.lora_a": mx.array(rng.normal(size=(width, rank)).astype(np.float32)),
        f"{LAYER}.lora_b": mx.array(rng.normal(size=(rank, width)).astype(np.float32)),
    }


def added(weights: dict[str, mx.array], x: mx.array) -> np.ndarray:
    """What the LoRA layer adds to its input (the scale aside)."""
    return np.array((x @ weights[f"{LAYER}.lora_a"]) @ weights[f"{LAYER}.lora_b"])


def test_the_average_adds_the_mean_of_what_the_checkpoints_add():
    checkpoints = [lora(seed) for seed in range(3)]
    averaged = average_weights(checkpoints)
    assert averaged[f"{LAYER}.lora_a"].shape == (12, 6)  # three times the rank
    assert averaged[f"{LAYER}.lora_b"].shape == (6, 12)
    x = mx.array(np.random.default_rng(9).normal(size=(4, 12)).astype(np.float32))
    expected = np.mean([added(w, x) for w in checkpoints], axis=0)
    np.testing.assert_allclose(added(averaged, x), expected, rtol=1e-4, atol=1e-5)
    # not the product of averaged factors, which adds something else
    naive = {k: sum(w[k] for w in checkpoints) / 3 for k in checkpoints[0]}
    assert not np.allclose(added(naive, x), expected, atol=1e-3)


def test_checkpoints_that_do_not_match_are_an_error_not_a_guess():
    with pytest.raises(AveragingError, match="no checkpoint"):
        average_weights([])
    narrow = {**lora(1, width=10), f"{LAYER}.lora_b": lora(1)[f"{LAYER}.lora_b"]}
    with pytest.raises(AveragingError, match=r"checkpoint 2: .*lora_a is \(10, 2\)"):
        average_weights([lora(0), narrow])
    with pytest.raises(AveragingError, match="other weights"):
        average_weights([lora(0), {f"{LAYER}.lora_a": lora(1)[f"{LAYER}.lora_a"]}])
    with pytest.raises(AveragingError, match="no LoRA factor"):
        average_weights([{"model.norm.weight": mx.ones((4,))}] * 2)


def saved_adapter(folder: Path, iterations: list[int], kind: str = "lora") -> Path:
    """An adapter folder as training leaves it, with real weights in each checkpoint."""
    config = {"fine_tune_type": kind, "lora_parameters": {"rank": 2, "scale": 2.0}}
    for iteration in iterations:
        checkpoint = checkpoint_folder(folder, iteration)
        checkpoint.mkdir(parents=True)
        mx.save_safetensors(str(checkpoint / "adapters.safetensors"), lora(iteration))
        (checkpoint / "adapter_config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(folder / "adapters.safetensors"), lora(iterations[-1]))
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / MANIFEST).write_text(json.dumps({"config": {"rank": 2}}))
    return folder


def test_the_average_becomes_the_adapter_and_every_checkpoint_stays(tmp_path):
    adapter = saved_adapter(tmp_path / "adapter", [10, 20, 30])
    last = (checkpoint_folder(adapter, 30) / "adapters.safetensors").read_bytes()
    manifest = average_checkpoints(adapter, {"config": {"rank": 2}}, CheckpointPlan(10, AVERAGE))
    weights = mx.load(str(adapter / "adapters.safetensors"))
    expected = average_weights([lora(10), lora(20), lora(30)])
    for name, value in expected.items():
        np.testing.assert_array_equal(np.array(weights[name]), np.array(value))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["lora_parameters"] == {"rank": 6, "scale": 2.0}  # the scale is kept
    assert (checkpoint_folder(adapter, 30) / "adapters.safetensors").read_bytes() == last
    section = manifest["checkpoints"]
    assert section["averaged"] == [10, 20, 30]
    assert section["selected"] is None
    assert json.loads((adapter / MANIFEST).read_text()) == manifest
    assert checkpoint_rows(manifest) == [[str(i), "-", "averaged"] for i in (10, 20, 30)]
    assert checkpoint_summary(manifest).startswith("averaged: the average of 3 checkpoint(s)")
    assert "rank 6" in checkpoint_summary(manifest)
    assert not list(adapter.glob(".*"))  # no staging file left behind


def test_an_adapter_that_is_not_lora_or_has_no_checkpoint_is_not_averaged(tmp_path):
    dora = saved_adapter(tmp_path / "dora", [10, 20], kind="dora")
    before = (dora / "adapters.safetensors").read_bytes()
    with pytest.raises(AveragingError, match="a dora adapter; only LoRA"):
        average_checkpoints(dora, {}, CheckpointPlan(10, AVERAGE))
    assert (dora / "adapters.safetensors").read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AveragingError, match="no checkpoint under checkpoints/"):
        average_checkpoints(empty, {}, CheckpointPlan(10, AVERAGE))


def test_train_job_averages_without_scoring_anything(tmp_path, monkeypatch):
    """The pipeline with an averaging plan: the child is told to go on at every checkpoint, no
    eval run is started (there is no eval suite), and the average is the adapter."""
    answers = []

    def fake_training(model, data, out_dir, config, *, save_every, on_checkpoint, **kwargs):
        saved_adapter(out_dir, [5, 10, 15])
        for iteration in (5, 10, 15):
            answers.append(on_checkpoint(iteration, checkpoint_folder(out_dir, iteration)))
        return json.loads((out_dir / MANIFEST).read_text())

    def no_scoring(adapter):
        raise AssertionError("an averaging plan scores nothing")

    monkeypatch.setattr(pipeline, "train_in_subprocess", fake_training)
    out = tmp_path / "adapter"
    job = TrainingJob(data=tmp_path, out=out, model="m", config=LoraConfig(iters=15),
                      checkpoints=CheckpointPlan(5, AVERAGE))  # fmt: skip
    assert not job.lacks_checkpoint_suite
    prepared = PreparedData(tmp_path, {}, {}, tmp_path / "rejects.jsonl", "hash")
    manifest = train_job(job, prepared, progress=lambda _: None, score=no_scoring)
    assert answers == [True, True, True]
    assert manifest["checkpoints"]["averaged"] == [5, 10, 15]
    assert json.loads((out / "adapter_config.json").read_text())["lora_parameters"]["rank"] == 6


def test_average_with_options_that_score_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    for extra, named in (
        (["--punie-early-stop=2"], "--punie-early-stop"),
        (["--punie-select-cases=x.py"], "--punie-select-cases"),
    ):
        result = pytester.runpytest(
            "--punie-save-every=5", "--punie-select-by=average", *extra, "-p", "pytest_punie"
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--punie-select-by=average scores no checkpoint*{named}*"])


def test_punie_train_refuses_average_with_scoring_options(tmp_path, capsys):
    from pytest_punie.cli import main

    data = tmp_path / "data"
    data.mkdir()
    code = main(["train", str(data), "--out", str(tmp_path / "a"), "--save-every", "5",
                 "--select-by", "average", "--early-stop", "2"])  # fmt: skip
    assert code == 2
    assert "early_stop and cases mean nothing" in capsys.readouterr().err
