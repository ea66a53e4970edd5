"""The OpenBLAS the plugin preloads runs on every CPU, is proven before use, and a library that
dies or computes wrong numbers leaves the run on reference BLAS, saying why."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_punie.system import blas

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="OpenBLAS is preloaded on Linux only")
needs_cc = pytest.mark.skipif(
    not LINUX or shutil.which("cc") is None, reason="needs Linux and a C compiler (cc)"
)

# A library that plays a one-CPU OpenBLAS on a CPU it was not built for: its matmul traps.
CRASHING = """
#include <signal.h>
char *openblas_get_config(void) { return "OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4"; }
void cblas_sgemm(void) { raise(SIGILL); }
"""
# A library whose matmul does nothing: wrong numbers, no crash.
WRONG = """
char *openblas_get_config(void) { return "OpenBLAS 0.0 WRONG"; }
void cblas_sgemm(void) { }
"""


def _library(tmp_path: Path, name: str, source: str) -> Path:
    (tmp_path / f"{name}.c").write_text(source)
    library = tmp_path / f"lib{name}.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(library), str(tmp_path / f"{name}.c")], check=True
    )
    return library


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """Each test proves libraries afresh, in its own cache, with OpenBLAS not opted out."""
    monkeypatch.delenv(blas.ENV, raising=False)
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))


@pytest.mark.skipif(
    not LINUX or platform.machine() != "x86_64", reason="the pip OpenBLAS is an x86_64 dependency"
)
def test_the_library_the_plugin_preloads_runs_on_every_cpu():
    """Fails on any machine, whatever its CPU, when the OpenBLAS is built for one CPU."""
    found = blas.find_openblas()
    assert found is not None, f"no OpenBLAS: is {blas.PIP_OPENBLAS} installed?"
    library, origin = found
    assert origin.startswith(f"pip {blas.PIP_OPENBLAS}")
    proof = blas.prove(library)
    assert proof.ok, proof.reason
    assert proof.config is not None
    assert proof.config.startswith("OpenBLAS ")
    # openblas_get_config() of a one-CPU build lacks DYNAMIC_ARCH (cmeel's: "... SKYLAKEX")
    assert "DYNAMIC_ARCH" in proof.config, proof.config


@linux_only
def test_proven_openblas_is_preloaded_and_loads(tmp_path):
    if blas.find_openblas() is None:
        pytest.skip("no OpenBLAS on this machine")
    env = dict(os.environ)
    choice = blas.choose_blas(env, cache=tmp_path)
    assert choice.library is not None, choice.description
    assert choice.description.startswith("OpenBLAS ")
    assert str(choice.library) in choice.description
    assert env["LD_PRELOAD"].split()[0] == str(choice.library)
    code = "import mlx.core as mx; print(open('/proc/self/maps').read())"
    maps = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert str(choice.library) in maps
    assert "libgfortran" in maps


@linux_only
def test_openblas_is_faster_than_reference_blas(tmp_path):
    fast_env = dict(os.environ)
    if blas.choose_blas(fast_env, cache=tmp_path).library is None:
        pytest.skip("no OpenBLAS on this machine")
    reference = blas.matmul_gflops(dict(os.environ))
    fast = blas.matmul_gflops(fast_env)
    assert fast > 2 * reference, (fast, reference)


@needs_cc
def test_a_library_that_dies_on_this_cpu_leaves_reference_blas_and_says_why(tmp_path, monkeypatch):
    library = _library(tmp_path, "crash", CRASHING)
    monkeypatch.setenv(blas.ENV, str(library))
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    choice = blas.choose_blas(env, cache=tmp_path)
    assert choice.library is None
    assert choice.description == (
        f"reference (OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4 from "
        f"{blas.ENV}={library} died with SIGILL on this CPU)"
    )
    assert "LD_PRELOAD" not in env  # the process is started without it
    # the verdict is remembered per library and CPU: the next run does not start a child
    monkeypatch.setattr(blas.subprocess, "run", _no_child)
    assert blas.choose_blas({}, cache=tmp_path).description == choice.description


@needs_cc
def test_a_library_that_computes_wrong_numbers_is_not_used(tmp_path, monkeypatch):
    library = _library(tmp_path, "wrong", WRONG)
    monkeypatch.setenv(blas.ENV, str(library))
    choice = blas.choose_blas({}, cache=tmp_path)
    assert choice.library is None
    assert "computed wrong numbers on this CPU" in choice.description


@linux_only
def test_a_good_proof_is_remembered(tmp_path, monkeypatch):
    found = blas.find_openblas()
    if found is None:
        pytest.skip("no OpenBLAS on this machine")
    first = blas.prove(found[0], cache=tmp_path)
    assert first.ok
    proofs = json.loads((tmp_path / "blas" / "proofs.json").read_text())
    assert [entry["ok"] for entry in proofs.values()] == [True]
    monkeypatch.setattr(blas.subprocess, "run", _no_child)
    assert blas.prove(found[0], cache=tmp_path) == first


def _no_child(*args, **kwargs):
    raise AssertionError("a remembered verdict must not start a child process")


def test_a_crash_in_a_real_process_is_remembered(tmp_path, monkeypatch):
    library = tmp_path / "libopenblas.so"
    library.write_bytes(b"not a library")
    blas.record_crash(library, "killed the server with SIGILL", cache=tmp_path)
    monkeypatch.setattr(blas.subprocess, "run", _no_child)
    proof = blas.prove(library, cache=tmp_path)
    assert not proof.ok
    assert proof.reason == "killed the server with SIGILL"


def test_without_preload_takes_only_that_library_off():
    env = {"LD_PRELOAD": "/a/libopenblas.so /b/other.so", "X": "1"}
    assert blas.without_preload(env, Path("/a/libopenblas.so")) == {
        "LD_PRELOAD": "/b/other.so", "X": "1"
    }  # fmt: skip
    assert blas.without_preload({"LD_PRELOAD": "/a/x.so"}, Path("/a/x.so")) == {}


def test_opting_out_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv(blas.ENV, "0")
    env = {"LD_PRELOAD": "x.so"}
    used = blas.preload_openblas(env)
    if LINUX:
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


def test_a_library_named_in_the_environment_comes_first(monkeypatch, tmp_path):
    mine = tmp_path / "libopenblas-mine.so"
    monkeypatch.setenv(blas.ENV, str(mine))
    assert blas.find_openblas() == (mine, f"{blas.ENV}={mine}")
    if LINUX:  # a path that is no file is named as such, and nothing is preloaded
        env: dict[str, str] = {}
        assert "no such file" in blas.preload_openblas(env)
        assert env == {}


@linux_only
def test_no_openblas_anywhere_says_reference_and_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(blas, "_pip_openblas", lambda: None)
    monkeypatch.setattr(blas, "DEBIAN_OPENBLAS", str(tmp_path / "missing-{arch}"))
    env: dict[str, str] = {}
    used = blas.preload_openblas(env)
    assert used.startswith("reference: no OpenBLAS found")
    assert f"pip install {blas.PIP_OPENBLAS}" in used
    assert env == {}


def test_macos_needs_nothing(monkeypatch):
    monkeypatch.setattr(blas.sys, "platform", "darwin")
    env: dict[str, str] = {}
    assert blas.preload_openblas(env) == "Accelerate (macOS)"
    assert env == {}


@linux_only
def test_a_preload_that_did_not_load_is_reported_as_reference():
    nowhere = Path("/nowhere/libopenblas.so")
    said = f"OpenBLAS 0.3.33 DYNAMIC_ARCH (pip ngsolve-openblas 0.3.33: {nowhere}), 1 thread"
    assert blas.blas_in_process(os.getpid(), said, nowhere) == (
        f"reference: {nowhere} was preloaded but is not loaded in the server"
    )
    assert blas.blas_in_process(os.getpid(), "reference (PUNIE_OPENBLAS=0)", None) == (
        "reference (PUNIE_OPENBLAS=0)"
    )


@linux_only
def test_a_preload_that_loaded_is_reported_as_it_was_described(tmp_path):
    """What a real server start checks: the library the description names, with its threads."""
    env = dict(os.environ)
    choice = blas.choose_blas(env, cache=tmp_path, spare=1)
    if choice.library is None:
        pytest.skip("no OpenBLAS on this machine")
    code = "import mlx.core, sys; print(1, flush=True); sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "1"
        said = blas.blas_in_process(child.pid, choice.description, choice.library)
        child.kill()
    assert said == choice.description
    assert "thread" in said


def test_threads_leave_the_spare_cores_and_share_the_rest(monkeypatch):
    assert blas.threads(cores=2) == 2  # training has the machine to itself
    assert blas.threads(spare=1, cores=2) == 1  # a server leaves pytest a core
    assert blas.threads(spare=1, cores=8) == 7
    assert blas.threads(2, spare=1, cores=8) == 3  # two servers share the rest
    assert blas.threads(8, cores=4) == 1  # never none
    assert blas.threads(spare=4, cores=1) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 3, 5}, raising=False)
    assert blas.usable_cores() == 3
    assert blas.threads(spare=1) == 2


@linux_only
def test_a_preloaded_openblas_gets_its_threads_unless_the_user_set_them(tmp_path, monkeypatch):
    if blas.find_openblas() is None:
        pytest.skip("no OpenBLAS on this machine")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    env = {k: v for k, v in os.environ.items() if k != blas.THREADS_ENV}
    choice = blas.choose_blas(env, cache=tmp_path, spare=1)
    assert env[blas.THREADS_ENV] == "3"
    assert choice.description.endswith(", 3 threads")
    mine = {**env, blas.THREADS_ENV: "1"}
    choice = blas.choose_blas(mine, cache=tmp_path, spare=1)
    assert mine[blas.THREADS_ENV] == "1"
    assert choice.description.endswith(f", 1 thread ({blas.THREADS_ENV})")
