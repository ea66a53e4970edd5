"""What ``--punie-model`` names, and the MLX model folder the server is given for it.

A model is one of: an MLX model folder, a ``.gguf`` file of a llama-architecture model (converted
once into the cache), a Hugging Face repo id (handed to mlx_lm, which needs the network), or
nothing, meaning the embedded default model.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pytest_punie.serving.default_model import default_model_path
from pytest_punie.serving.gguf import convert_gguf, is_converted_model
from pytest_punie.system.files import atomic_write_text, cache_dir

__all__ = ["ModelError", "check_model_spec", "content_hash", "resolve_model"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelError(ValueError):
    """A model or adapter that cannot be used; the message says why."""


def check_model_spec(spec: str) -> str:
    """Check a ``--punie-model`` value without loading anything; return it normalised."""
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"no GGUF file at {path}")
        return str(path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not an MLX model folder: it has no config.json")
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"{path} is not an MLX model folder: it has no *.safetensors weights")
        return str(path.resolve())
    if path.exists():
        raise ModelError(f"{path} is neither a model folder nor a .gguf file")
    if _REPO_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return spec  # a Hugging Face repo id: mlx_lm downloads it where the network allows
    raise ModelError(f"no model at {path} (and it is not a Hugging Face repo id like org/name)")


def resolve_model(spec: str | None, cache: Path | None = None) -> str:
    """The ``--model`` argument for mlx_lm server: a folder path or a repo id."""
    if spec is None:
        return str(default_model_path(cache))
    spec = check_model_spec(spec)
    if spec.endswith(".gguf"):
        gguf = Path(spec)
        digest = hashlib.sha256(str(gguf).encode()).hexdigest()[:10]
        folder = (cache or cache_dir()) / "models" / f"{gguf.stem}-{digest}"
        if not is_converted_model(folder):
            convert_gguf(gguf, folder)
        return str(folder)
    return spec


def content_hash(path: str | Path | None) -> str | None:
    """A sha256 over a folder's file names and bytes (or one file's), cached by size and mtime."""
    if path is None:
        return None
    root = Path(path)
    if not root.exists():
        return None  # a repo id: nothing local to hash
    files = sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    signature = json.dumps(
        [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files], sort_keys=True
    )
    key = hashlib.sha256(signature.encode()).hexdigest()
    memo = cache_dir() / "hashes" / key
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    value = digest.hexdigest()
    try:
        atomic_write_text(memo, value)
    except OSError:
        pass  # a read-only cache only costs the hash being computed again
    return value
