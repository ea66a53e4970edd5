"""Convert a llama-architecture GGUF file into an MLX model folder that ``mlx_lm`` loads.

``mlx.core.load`` reads GGUF natively: Q4_0, Q4_1 and Q8_0 tensors come back already in MLX's
quantized layout (``weight``/``scales``/``biases``, group size 32), so a converted model keeps
the file's quantization unless a ``dtype`` asks for dequantized weights. The tokenizer is rebuilt
from the GGUF's byte-level BPE vocabulary with ``tokenizers`` (no torch, no network).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, cast

__all__ = ["GGUFConversionError", "convert_gguf", "is_converted_model"]

SUPPORTED_ARCHITECTURES = frozenset({"llama"})
SUPPORTED_TOKENIZERS = frozenset({"gpt2"})
DTYPES = ("float32", "float16", "bfloat16")
GROUP_SIZE = 32  # every quantized type mlx reads from GGUF uses blocks of 32

# GGUF `general.file_type` values (llama.cpp's LLAMA_FTYPE), for readable errors.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip

READABLE = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0")

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_MARKER = "punie-conversion.json"


class GGUFConversionError(Exception):
    """A GGUF file that cannot be turned into an MLX model; the message says why."""


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def header_file_type(path: Path) -> int | None:
    """``general.file_type`` read straight from a GGUF header (no tensor is loaded), so a
    file mlx cannot read can still be described; None when the header does not say."""
    import struct

    def read(handle: Any, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = handle.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def skip(handle: Any, kind: int) -> None:
        if kind == _STRING:
            handle.seek(read(handle, "<Q"), 1)
        elif kind == _ARRAY:
            item_kind, count = read(handle, "<I"), read(handle, "<Q")
            if item_kind in _SCALAR_SIZES:
                handle.seek(_SCALAR_SIZES[item_kind] * count, 1)
            else:
                for _ in range(count):
                    skip(handle, item_kind)
        else:
            handle.seek(_SCALAR_SIZES[kind], 1)

    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                return None
            read(handle, "<I")  # version
            read(handle, "<Q")  # tensor count
            for _ in range(read(handle, "<Q")):
                key = handle.read(read(handle, "<Q")).decode("utf-8", "replace")
                kind = read(handle, "<I")
                if key == "general.file_type" and kind in (4, 5):
                    return int(read(handle, "<I" if kind == 4 else "<i"))
                skip(handle, kind)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return None


def mlx_name(gguf_name: str) -> str:
    """Map a GGUF tensor name (``blk.3.attn_q.weight``) to its mlx_lm llama name."""
    stem, _, suffix = gguf_name.rpartition(".")
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}.{suffix}"
    if stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{suffix}"
    raise GGUFConversionError(f"unknown tensor {gguf_name!r} for the llama architecture")


def _scalar(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    if key not in metadata:
        if default is None:
            raise GGUFConversionError(f"the GGUF metadata has no {key!r}")
        return default
    value = metadata[key]
    return value.item() if hasattr(value, "item") else value


def _config(metadata: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
    arch = "llama"
    heads = int(_scalar(metadata, f"{arch}.attention.head_count"))
    hidden = int(_scalar(metadata, f"{arch}.embedding_length"))
    vocab = metadata.get(f"{arch}.vocab_size")
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(_scalar(metadata, f"{arch}.block_count")),
        "intermediate_size": int(_scalar(metadata, f"{arch}.feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_scalar(metadata, f"{arch}.attention.head_count_kv", heads)),
        "head_dim": int(_scalar(metadata, f"{arch}.rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(_scalar(metadata, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_scalar(metadata, f"{arch}.rope.freq_base", 10000.0)),
        # llama.cpp's converter permutes the Q and K projections so that RoPE rotates
        # interleaved pairs; mlx's "traditional" RoPE is that interleaved form.
        "rope_traditional": True,
        "max_position_embeddings": int(_scalar(metadata, f"{arch}.context_length", 2048)),
        "vocab_size": int(
            vocab.item() if vocab is not None else len(metadata["tokenizer.ggml.tokens"])
        ),
        "tie_word_embeddings": "output.weight" not in weights,
        "bos_token_id": int(_scalar(metadata, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_scalar(metadata, "tokenizer.ggml.eos_token_id", 2)),
    }
    return config


def _quantization(weights: dict[str, Any]) -> dict[str, Any] | None:
    """The mlx_lm ``quantization`` config for the quantized layers in ``weights``."""
    bits_by_layer = {
        name.removesuffix(".scales"): weights[name.removesuffix(".scales") + ".weight"].shape[-1]
        * 32
        // (weights[name].shape[-1] * GROUP_SIZE)
        for name in weights
        if name.endswith(".scales")
    }
    if not bits_by_layer:
        return None
    common_bits = Counter(bits_by_layer.values()).most_common(1)[0][0]
    quantization: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": common_bits}
    for layer, bits in bits_by_layer.items():
        if bits != common_bits:
            quantization[layer] = {"group_size": GROUP_SIZE, "bits": bits}
    return quantization


def _dequantize(weights: dict[str, Any], dtype: str) -> dict[str, Any]:
    import mlx.core as mx

    target = getattr(mx, dtype)
    out: dict[str, Any] = {}
    for name, value in weights.items():
        if name.endswith((".scales", ".biases")) and name.rsplit(".", 1)[0] + ".weight" in weights:
            continue
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and f"{layer}.scales" in weights:
            scales = weights[f"{layer}.scales"]
            bits = value.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
            value = mx.dequantize(
                value, scales, weights[f"{layer}.biases"], group_size=GROUP_SIZE, bits=bits
            )
        out[name] = value.astype(target)
    return out


def _tokenizer_files(metadata: dict[str, Any], folder: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    model = str(_scalar(metadata, "tokenizer.ggml.model", "gpt2"))
    if model not in SUPPORTED_TOKENIZERS:
        raise GGUFConversionError(
            f"tokenizer model {model!r} is not supported (only byte-level BPE, 'gpt2')"
        )
    tokens: list[str] = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    token_types = [int(t) for t in metadata.get("tokenizer.ggml.token_type", [])]
    specials = [tokens[i] for i, kind in enumerate(token_types) if kind == 3]  # 3 = CONTROL
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.save(str(folder / "tokenizer.json"))

    def token(key: str, default: int) -> str:
        return tokens[int(_scalar(metadata, key, default))]

    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id", 1),
        "eos_token": token("tokenizer.ggml.eos_token_id", 2),
        "unk_token": token("tokenizer.ggml.unknown_token_id", 0),
        "pad_token": token("tokenizer.ggml.padding_token_id", 2),
        "additional_special_tokens": specials,
        "add_bos_token": bool(_scalar(metadata, "tokenizer.ggml.add_bos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_scalar(metadata, "llama.context_length", 2048)),
    }
    if "tokenizer.chat_template" in metadata:
        tokenizer_config["chat_template"] = str(metadata["tokenizer.chat_template"])
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))


def is_converted_model(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion (written last, atomically)."""
    return (folder / _MARKER).is_file()


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Convert ``gguf_path`` into an MLX model folder at ``out_dir`` and return it.

    ``dtype`` None keeps the file's quantization; ``float32``, ``float16`` or ``bfloat16``
    dequantizes every weight. The folder appears atomically: a crash leaves no half model.
    """
    import mlx.core as mx

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if dtype is not None and dtype not in DTYPES:
        raise GGUFConversionError(
            f"dtype must be one of {', '.join(DTYPES)} or None, not {dtype!r}"
        )
    if not gguf_path.is_file():
        raise GGUFConversionError(f"no GGUF file at {gguf_path}")
    try:
        loaded = mx.load(str(gguf_path), return_metadata=True)
    except Exception as exc:  # mlx raises RuntimeError/ValueError for unreadable files
        kind = header_file_type(gguf_path)
        if kind is not None and FILE_TYPES.get(kind) not in (None, *READABLE):
            raise GGUFConversionError(
                f"{gguf_path.name}: quantization type {FILE_TYPES[kind]} is not supported by mlx "
                f"(supported: {', '.join(READABLE)}); mlx said: {exc}"
            ) from exc
        raise GGUFConversionError(f"mlx cannot read {gguf_path}: {exc}") from exc
    weights, metadata = cast("tuple[dict[str, Any], dict[str, Any]]", loaded)
    architecture = str(_scalar(metadata, "general.architecture", "unknown"))
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise GGUFConversionError(
            f"{gguf_path.name}: architecture {architecture!r} is not supported "
            f"(supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))})"
        )
    file_type = metadata.get("general.file_type")
    unconverted = [n for n, w in weights.items() if w.dtype == mx.uint8]
    if unconverted:
        name = FILE_TYPES.get(int(file_type.item()), "unknown") if file_type is not None else "?"
        raise GGUFConversionError(
            f"{gguf_path.name}: quantization type {name} is not supported by mlx "
            f"(supported: {', '.join(READABLE)})"
        )

    config = _config(metadata, weights)
    renamed = {mlx_name(name): value for name, value in weights.items()}
    if dtype is None:
        quantization = _quantization(renamed)
        if quantization is not None:
            config["quantization"] = quantization
            config["quantization_config"] = quantization
    else:
        renamed = _dequantize(renamed, dtype)
        config["torch_dtype"] = dtype

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    staging.chmod(0o755)
    try:
        mx.save_safetensors(str(staging / "model.safetensors"), renamed, metadata={"format": "mlx"})
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        _tokenizer_files(metadata, staging)
        (staging / _MARKER).write_text(
            json.dumps({"source": str(gguf_path), "dtype": dtype or "as-in-file"}, indent=2)
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
