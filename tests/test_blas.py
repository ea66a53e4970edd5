"""OpenBLAS from pip is found and preloaded into MLX processes on Linux, and the run says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_punie.system import blas

linux_with_pip_openblas = pytest.mark.skipif(
    not sys.platform.startswith("linux") or blas._pip_openblas() is None,
    reason="needs Linux and the cmeel-openblas wheel (a Linux dependency)",
)


@pytest.fixture(autouse=True)
def _openblas_on(monkeypatch):
    monkeypatch.delenv("PUNIE_OPENBLAS", raising=False)


@linux_with_pip_openblas
def test_pip_openblas_is_preloaded_and_loads(tmp_path):
    env = dict(os.environ)
    used = blas.preload_openblas(env, cache=tmp_path)
    library = blas._pip_openblas()
    assert used.startswith("OpenBLAS (pip cmeel-openblas")
    assert str(library) in used
    assert env["LD_PRELOAD"].split()[0] == str(library)
    folder = Path(env["LD_LIBRARY_PATH"].split(":")[0])
    assert (folder / "libgfortran.so.5").resolve().parent.name == "mlx_cpu.libs"
    # a process started with this environment really maps it, and resolves libgfortran
    code = "import mlx.core as mx; print(open('/proc/self/maps').read())"
    maps = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert str(library) in maps
    assert "libgfortran" in maps


@linux_with_pip_openblas
def test_openblas_is_faster_than_reference_blas(tmp_path):
    fast_env = dict(os.environ)
    blas.preload_openblas(fast_env, cache=tmp_path)
    reference = blas.matmul_gflops(dict(os.environ))
    fast = blas.matmul_gflops(fast_env)
    assert fast > 2 * reference, (fast, reference)


def test_opting_out_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv("PUNIE_OPENBLAS", "0")
    env = {"LD_PRELOAD": "x.so"}
    used = blas.preload_openblas(env)
    if sys.platform.startswith("linux"):
        assert used == "reference (PUNIE_OPENBLAS=0)"
    assert env == {"LD_PRELOAD": "x.so"}


def test_debian_openblas_is_only_a_fallback(monkeypatch, tmp_path):
    debian = tmp_path / "{arch}-libblas.so.3"
    monkeypatch.setattr(blas, "DEBIAN_OPENBLAS", str(debian))
    fake = Path(str(debian).format(arch=blas.platform.machine()))
    fake.write_bytes(b"")
    pip = tmp_path / "libopenblas.so.0"
    pip.write_bytes(b"")
    monkeypatch.setattr(blas, "_pip_openblas", lambda: pip)
    assert blas.find_openblas()[0] == pip
    monkeypatch.setattr(blas, "_pip_openblas", lambda: None)
    assert blas.find_openblas() == (fake, "Debian libopenblas0-pthread")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_no_openblas_anywhere_says_reference_and_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(blas, "_pip_openblas", lambda: None)
    monkeypatch.setattr(blas, "DEBIAN_OPENBLAS", str(tmp_path / "missing-{arch}"))
    env: dict[str, str] = {}
    used = blas.preload_openblas(env)
    assert used.startswith("reference: no OpenBLAS found")
    assert "pip install cmeel-openblas" in used
    assert env == {}


def test_macos_needs_nothing(monkeypatch):
    monkeypatch.setattr(blas.sys, "platform", "darwin")
    env: dict[str, str] = {}
    assert blas.preload_openblas(env) == "Accelerate (macOS)"
    assert env == {}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux")
def test_a_preload_that_did_not_load_is_reported_as_reference():
    said = "OpenBLAS (pip cmeel-openblas 0.3.31: /nowhere/libopenblas.so.0)"
    assert blas.blas_in_process(os.getpid(), said).startswith("reference: /nowhere")
    assert blas.blas_in_process(os.getpid(), "reference (PUNIE_OPENBLAS=0)") == (
        "reference (PUNIE_OPENBLAS=0)"
    )
