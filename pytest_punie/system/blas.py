"""Which BLAS serves the model: OpenBLAS from pip on Linux, preloaded into MLX processes.

MLX's Linux CPU wheel links reference BLAS (about 30x slower for a 1024 matmul). The project
depends on ``cmeel-openblas`` on Linux (x86_64 and aarch64 wheels), whose
``cmeel.prefix/lib/libopenblas.so.0`` exports the unprefixed ``cblas_*`` symbols MLX calls. It
needs ``libgfortran.so.5``, which MLX's CPU wheel already bundles under a hashed name in
``mlx_cpu.libs``: a folder of symlinks in the cache (``libgfortran.so.5`` and the hashed
libquadmath it names) goes on ``LD_LIBRARY_PATH`` and the library on ``LD_PRELOAD`` of the
server and the training subprocess. Debian's ``libopenblas0-pthread`` is used only when the pip
one is missing. ``PUNIE_OPENBLAS=0`` opts out; macOS uses Accelerate and needs nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = [
    "DEBIAN_OPENBLAS",
    "blas_in_process",
    "find_openblas",
    "gfortran_folder",
    "matmul_gflops",
    "preload_openblas",
]
from pytest_punie.system.files import cache_dir

PIP_OPENBLAS = "cmeel-openblas"
DEBIAN_OPENBLAS = "/usr/lib/{arch}-linux-gnu/openblas-pthread/libblas.so.3"
_OFF = {"0", "false", "no", "off"}


def opted_out() -> bool:
    return os.environ.get("PUNIE_OPENBLAS", "1").strip().lower() in _OFF


def _pip_openblas() -> Path | None:
    try:
        dist = metadata.distribution(PIP_OPENBLAS)
    except metadata.PackageNotFoundError:
        return None
    library = Path(str(dist.locate_file("cmeel.prefix/lib/libopenblas.so.0")))
    return library if library.is_file() else None


def find_openblas() -> tuple[Path, str] | None:
    """The OpenBLAS library to preload and where it comes from, or None."""
    pip = _pip_openblas()
    if pip is not None:
        return pip, f"pip {PIP_OPENBLAS} {metadata.version(PIP_OPENBLAS)}"
    debian = Path(DEBIAN_OPENBLAS.format(arch=platform.machine()))
    if debian.is_file():
        return debian, "Debian libopenblas0-pthread"
    return None


def _mlx_libs() -> Path | None:
    """``mlx_cpu.libs``, the folder of libraries bundled with MLX's Linux CPU wheel."""
    try:
        dist = metadata.distribution("mlx-cpu")
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("mlx_cpu.libs")))
    return folder if folder.is_dir() else None


def gfortran_folder(cache: Path) -> Path | None:
    """A folder in ``cache`` where ``libgfortran.so.5`` (and the hashed libquadmath it needs)
    resolve to MLX's bundled copies; None when MLX bundles no libgfortran."""
    libs = _mlx_libs()
    if libs is None:
        return None
    gfortran = sorted(libs.glob("libgfortran-*.so.5*"))
    if not gfortran:
        return None
    links = {"libgfortran.so.5": gfortran[0]}
    links.update({p.name: p for p in libs.iterdir() if p.name.startswith("libquadmath-")})
    key = hashlib.sha256(str(libs.resolve()).encode()).hexdigest()[:12]
    folder = cache / "blas" / f"gfortran-{key}"
    if all((folder / name).resolve() == target.resolve() for name, target in links.items()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, folder / name)  # atomic: a concurrent process sees the old or new link
    return folder


def _prepend(env: dict[str, str], key: str, value: str, sep: str) -> None:
    env[key] = sep.join(v for v in (value, env.get(key, "")) if v)


def preload_openblas(env: dict[str, str], cache: Path | None = None) -> str:
    """Set ``env`` up so an MLX process started with it uses OpenBLAS; return what it uses."""
    if not sys.platform.startswith("linux"):
        return "Accelerate (macOS)" if sys.platform == "darwin" else "platform default"
    if opted_out():
        return "reference (PUNIE_OPENBLAS=0)"
    found = find_openblas()
    if found is None:
        return (
            f"reference: no OpenBLAS found for {platform.machine()} "
            f"(pip install {PIP_OPENBLAS}); expect a slow run"
        )
    library, origin = found
    if origin.startswith("pip"):
        folder = gfortran_folder(cache or cache_dir())
        if folder is None:
            return f"reference: MLX bundles no libgfortran, which {library} needs"
        _prepend(env, "LD_LIBRARY_PATH", str(folder), ":")
    _prepend(env, "LD_PRELOAD", str(library), " ")
    return f"OpenBLAS ({origin}: {library})"


def blas_in_process(pid: int, described: str) -> str:
    """``described``, checked against the libraries mapped in process ``pid`` (Linux)."""
    if not described.startswith("OpenBLAS"):
        return described
    maps = Path(f"/proc/{pid}/maps")
    try:
        mapped = maps.read_text()
    except OSError:
        return described
    library = described.rsplit(": ", 1)[-1].rstrip(")")
    if library in mapped or os.path.realpath(library) in mapped:
        return described
    return f"reference: {library} was preloaded but is not loaded in the server"


_MATMUL = """
import time, mlx.core as mx
a = mx.random.normal((1024, 1024)); b = mx.random.normal((1024, 1024))
mx.eval(a @ b)
n, start = 0, time.perf_counter()
while n < 3 or time.perf_counter() - start < 0.5:
    mx.eval(a @ b); n += 1
print(2 * 1024**3 * n / (time.perf_counter() - start) / 1e9)
"""


def matmul_gflops(env: dict[str, str] | None = None, timeout: float = 300.0) -> float:
    """GFLOP/s of a float32 1024x1024 matmul in MLX, in a fresh process started with ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", _MATMUL],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    match = re.search(r"[\d.]+(?:e[+-]?\d+)?\s*$", done.stdout.strip())
    if match is None:
        raise RuntimeError(f"no GFLOP/s figure in {done.stdout!r}")
    return float(match.group(0))
