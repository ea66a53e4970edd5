"""The models derived from an adapter as they are deployed: fused into the base model
(``mlx_lm fuse``) and the fused model quantized (``mlx_lm convert -q``), for ``--punie-parity``.

A variant is named ``fused`` or ``qN`` (the fused model at N bits per weight), optionally with
the URL of a server that already serves it (``q4=http://host:8080/v1``: nothing is derived
here). Derived models are made with mlx_lm's own commands, the ones users run, in a child
process, and kept in the cache (``$PUNIE_CACHE/derived``) keyed by the base model's and the
adapter's contents and the mlx-lm version, so a second run reuses them. Each is written to a
temporary folder and renamed into place, under a file lock (xdist workers and two terminals make
it once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_punie.results.run import ADAPTER_VARIANT
from pytest_punie.serving.models import content_hash
from pytest_punie.serving.server import check_base_url
from pytest_punie.system.files import atomic_write_text, cache_dir
from pytest_punie.system.versions import package_version

__all__ = [
    "ADAPTER_VARIANT",
    "FUSED",
    "QUANT_BITS",
    "DerivedModelError",
    "Variant",
    "derive",
    "derived_folder",
    "parse_variants",
    "valid_names",
    "variant_names",
]

FUSED = "fused"
QUANT_BITS = (2, 3, 4, 5, 6, 8)  # what mlx's affine quantization supports
MANIFEST = "punie-derived.json"
_QUANT = re.compile(r"q(\d+)")


class DerivedModelError(RuntimeError):
    """A derived model could not be made; the message says which and why (mlx_lm's words)."""


def variant_names(variants: tuple[Variant, ...]) -> tuple[str, ...]:
    """The models each case runs on: the adapter first, then ``variants`` (none without)."""
    return (ADAPTER_VARIANT, *(v.name for v in variants)) if variants else ()


def valid_names() -> tuple[str, ...]:
    """The variant names ``--punie-parity`` takes."""
    return (FUSED, *(f"q{bits}" for bits in QUANT_BITS))


@dataclass(frozen=True)
class Variant:
    """A model derived from the adapter: ``fused``, or ``qN`` (the fused model at N bits), and
    the URL of a server already serving it (None: derived and served here)."""

    name: str
    base_url: str | None = None

    @property
    def bits(self) -> int | None:
        """Bits per weight of a quantized variant (None: ``fused``)."""
        found = _QUANT.fullmatch(self.name)
        return int(found.group(1)) if found else None

    @property
    def label(self) -> str:
        """How reports name it: ``fused (mlx_lm fuse)``, ``q4 (fused, 4-bit)``."""
        bits = self.bits
        return f"{self.name} (mlx_lm fuse)" if bits is None else f"{self.name} (fused, {bits}-bit)"


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``fused,q4`` or ``fused=URL,q4``: the variants in the order given, each once.

    Raises ValueError naming the bad entry and the valid names.
    """
    variants: list[Variant] = []
    for entry in (part.strip() for part in str(text).split(",")):
        name, _, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        valid = ", ".join(valid_names())
        if not name:
            raise ValueError(f"an empty variant (give names such as fused,q4; valid: {valid})")
        if name == ADAPTER_VARIANT:
            raise ValueError(
                f"{name!r} always runs (the adapter as served); name the derived models: {valid}"
            )
        if name not in valid_names():
            raise ValueError(f"unknown variant {name!r}; valid: {valid}")
        base_url = None
        if "=" in entry:
            try:
                base_url = check_base_url(url)
            except ValueError as exc:
                raise ValueError(f"{entry!r}: the server of {name} {exc}") from None
        if any(v.name == name for v in variants):
            raise ValueError(f"variant {name!r} is given twice")
        variants.append(Variant(name, base_url))
    return tuple(variants)


def derived_folder(model: str, adapter: Path, variant: str, cache: Path | None = None) -> Path:
    """Where ``variant`` of ``model`` + ``adapter`` is kept: keyed by both contents (and the
    mlx-lm version, whose fuse and quantization make it)."""
    key = json.dumps(
        [content_hash(model) or model, content_hash(adapter), package_version("mlx-lm")]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return (cache or cache_dir()) / "derived" / f"{Path(adapter).name[:40]}-{digest}" / variant


def _is_made(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / "config.json").is_file()


def _quantized(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return "quantization" in config


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise DerivedModelError(
            f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{tail}"
        )


def _fuse(model: str, adapter: Path, out: Path, *, dequantize: bool = False) -> None:
    command = [
        sys.executable, "-m", "mlx_lm", "fuse", "--model", model,
        "--adapter-path", str(adapter), "--save-path", str(out),
    ]  # fmt: skip
    _run([*command, "--dequantize"] if dequantize else command, "mlx_lm fuse")


def _quantize(source: Path, out: Path, bits: int) -> None:
    command = [
        sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(source),
        "--mlx-path", str(out), "-q", "--q-bits", str(bits),
    ]  # fmt: skip
    _run(command, f"mlx_lm convert -q --q-bits {bits}")


def _make(model: str, adapter: Path, variant: Variant, target: Path, cache: Path | None) -> None:
    """Make ``variant`` into a temporary folder beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        made = work / "model"
        bits = variant.bits
        if bits is None:
            _fuse(model, adapter, made)
            steps = [f"mlx_lm fuse --model {model} --adapter-path {adapter}"]
        else:
            fused = derive(model, adapter, Variant(FUSED), cache)
            source = fused
            steps = [f"mlx_lm fuse --model {model} --adapter-path {adapter}"]
            if _quantized(fused):  # a quantized base: quantize the float fused model again
                source = work / "fused-float"
                _fuse(model, adapter, source, dequantize=True)
                steps[0] += " --dequantize"
            _quantize(source, made, bits)
            steps.append(f"mlx_lm convert -q --q-bits {bits}")
        manifest = {
            "variant": variant.name,
            "base_model": model,
            "base_model_hash": content_hash(model),
            "adapter": str(adapter),
            "adapter_hash": content_hash(adapter),
            "mlx_lm": package_version("mlx-lm"),
            "steps": steps,
        }
        atomic_write_text(made / MANIFEST, json.dumps(manifest, indent=2))
        os.replace(made, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def derive(model: str, adapter: Path, variant: Variant, cache: Path | None = None) -> Path:
    """The folder of ``variant`` (made now unless the cache has it): ``model`` is the base
    model's MLX folder (``serving.models.resolve_model``), ``adapter`` the LoRA adapter."""
    from filelock import FileLock

    target = derived_folder(model, adapter, variant.name, cache)
    if _is_made(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"{variant.name}.lock")):
        if not _is_made(target):
            shutil.rmtree(target, ignore_errors=True)  # a half-made folder of an older version
            _make(model, adapter, variant, target, cache)
    return target
