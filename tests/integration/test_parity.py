"""Deriving real models for ``--punie-parity``: a small trained-looking adapter on the default
model, fused and quantized to 4 bits with mlx_lm's own commands; both load, the fused model
answers as the adapter does, and a second derivation reuses the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.serving.parity import Variant, derive

pytestmark = pytest.mark.integration


def _adapter(model_path: Path, out: Path) -> Path:
    """A LoRA adapter on the last two blocks with non-zero B matrices (random, seeded): it
    changes the model as a trained one does, without training it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model = load(str(model_path))[0]
    model.freeze()
    parameters = {"rank": 4, "scale": 8.0, "dropout": 0.0}
    mx.random.seed(0)  # before the A matrices are drawn: the same adapter every run
    linear_to_lora_layers(model, 2, parameters)
    weights = {
        name: mx.random.normal(value.shape) * 0.1 if name.endswith("lora_b") else value
        for name, value in tree_flatten(model.trainable_parameters())
    }
    out.mkdir()
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    config = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": parameters}
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _logprobs(model_path: Path | str, adapter: Path | None = None) -> list[float]:
    """The next-token log-probabilities after a fixed chat prompt (one forward pass)."""
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(model_path), adapter_path=str(adapter) if adapter else None)[:2]
    tokens = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    logits = model(mx.array([tokens]))[0, -1].astype(mx.float32)
    values: list[float] = (logits - mx.logsumexp(logits)).tolist()
    return values


def _largest_change(first: list[float], second: list[float]) -> float:
    return max(abs(a - b) for a, b in zip(first, second, strict=True))


def test_fused_and_q4_are_made_once_and_load(model_path: Path, tmp_path: Path) -> None:
    adapter = _adapter(model_path, tmp_path / "adapter")
    cache = tmp_path / "cache"
    q4 = derive(str(model_path), adapter, Variant("q4"), cache)
    fused = derive(str(model_path), adapter, Variant("fused"), cache)
    assert json.loads((q4 / "config.json").read_text())["quantization"]["bits"] == 4
    assert "quantization" not in json.loads((fused / "config.json").read_text())
    manifest = json.loads((q4 / "punie-derived.json").read_text())
    assert manifest["steps"] == [
        f"mlx_lm fuse --model {model_path} --adapter-path {adapter}",
        "mlx_lm convert -q --q-bits 4",
    ]
    # a second run takes them from the cache, unchanged
    made = {p: p.stat().st_mtime_ns for p in (fused, q4)}
    assert derive(str(model_path), adapter, Variant("q4"), cache) == q4
    assert {p: p.stat().st_mtime_ns for p in (fused, q4)} == made
    # the fused model is the adapter folded in; the 4-bit one loads and is near it
    served = _logprobs(model_path, adapter)
    assert _largest_change(served, _logprobs(model_path)) > 0.1  # the adapter changes the model
    assert _largest_change(_logprobs(fused), served) < 1e-3
    quantized = _logprobs(q4)
    assert 0.0 < _largest_change(quantized, served) < 20.0
