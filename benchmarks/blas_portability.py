"""Does each OpenBLAS pass the plugin's own proof on CPUs without AVX-512? (qemu-user emulation)

For each library (the pip OpenBLAS the plugin would preload, and the one-CPU ``cmeel-openblas``
wheel it replaced, fetched with ``pip download`` when PyPI answers), the plugin's proof
(``blas._PROBE``: ``openblas_get_config()`` and MLX matmuls checked without BLAS) runs natively
and under ``qemu-x86_64 -cpu MODEL`` for CPU models without AVX-512. Needs Debian's qemu-user.

    python benchmarks/blas_portability.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, table

from pytest_punie.system import blas

CPUS = ["native", "EPYC-Rome", "Haswell"]  # EPYC-Rome: Zen 2, AVX2 but no AVX-512


def _cmeel(folder: Path) -> Path | None:
    """cmeel-openblas 0.3.31's library (built for SKYLAKEX), from PyPI."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "cmeel-openblas==0.3.31",
         "-d", str(folder)],
        capture_output=True, check=False,
    )  # fmt: skip
    wheels = sorted(folder.glob("cmeel_openblas-*.whl"))
    if done.returncode != 0 or not wheels:
        return None
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(folder / "cmeel")
    found = sorted((folder / "cmeel").rglob("libopenblas.so.0"))
    return found[0] if found else None


def _verdict(library: Path, cpu: str, cache: Path, probe: Path) -> tuple[str, str, float]:
    env = blas._with_preload(dict(os.environ), library, cache)
    env["PUNIE_BLAS_PROBE"] = str(library)
    python = os.path.realpath(sys.executable)
    argv = [python, str(probe)]
    if cpu != "native":
        env["LD_LIBRARY_PATH"] += ":" + str(Path(python).parent.parent / "lib")
        argv = ["qemu-x86_64", "-cpu", cpu, *argv]
    start = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - start
    config = next((ln[7:] for ln in done.stdout.splitlines() if ln.startswith("CONFIG ")), "-")
    code = done.returncode
    if code == 0 and "OK" in done.stdout:
        return "passes", config, seconds
    if code < 0 or code > 128:  # qemu reports a signal as 128 + its number
        return f"dies ({blas.signal_name(-(code - 128) if code > 128 else code)})", config, seconds
    return f"fails (exit {code})", config, seconds


def main() -> None:
    if shutil.which("qemu-x86_64") is None:
        raise SystemExit("needs qemu-user (apt-get install qemu-user)")
    print("\n".join(machine_facts()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        probe = folder / "probe.py"
        probe.write_text(blas._PROBE)
        libraries = {}
        found = blas.find_openblas()
        if found is not None:
            libraries[found[1]] = found[0]
        cmeel = _cmeel(folder)
        if cmeel is not None:
            libraries["pip cmeel-openblas 0.3.31 (before)"] = cmeel
        rows = []
        for origin, library in libraries.items():
            for cpu in CPUS:
                verdict, config, seconds = _verdict(library, cpu, folder / "cache", probe)
                rows.append([origin, cpu, config, verdict, f"{seconds:.1f}"])
        print(table(["library", "CPU", "openblas_get_config()", "the plugin's proof", "s"], rows))


if __name__ == "__main__":
    main()
