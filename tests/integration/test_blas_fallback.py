"""A native library can never void a run: with an OpenBLAS that dies on this CPU forced, the real
server still answers on reference BLAS, and the terminal, the results and the report say why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_punie.serving.server import MlxServer, probe_completion
from pytest_punie.system import blas

from .conftest import TWO_CASES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or shutil.which("cc") is None,
        reason="needs Linux (LD_PRELOAD) and a C compiler (cc) for the crashing library",
    ),
]

CRASHING = """
#include <signal.h>
char *openblas_get_config(void) { return "OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4"; }
void cblas_sgemm(void) { raise(SIGILL); }
"""


@pytest.fixture
def crashing_openblas(tmp_path, monkeypatch):
    source = tmp_path / "crash.c"
    source.write_text(CRASHING)
    library = tmp_path / "libopenblas-crash.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    monkeypatch.setenv(blas.ENV, str(library))
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    return library


def test_a_server_killed_by_its_preload_is_started_again_without_it(
    model_path, tmp_path, crashing_openblas, monkeypatch
):
    # The proof passes (as it could for a library that fails only on the server's shapes).
    monkeypatch.setattr(blas, "prove", lambda *a, **k: blas.Proof(True, "OpenBLAS FAKE"))
    server = MlxServer(str(model_path), log_path=tmp_path / "server.log")
    server.start()
    try:
        assert probe_completion(server.base_url, "default_model")[0] == 200
        assert server.blas == (
            f"reference ({crashing_openblas.name} killed the server with SIGILL before its "
            "first answer: started again without it)"
        )
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert str(crashing_openblas) not in maps
    finally:
        server.stop()
    monkeypatch.undo()  # the real prove: the crash is remembered, no child is started
    monkeypatch.setenv(blas.ENV, str(crashing_openblas))
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(blas.subprocess, "run", None)
    assert "killed the server with SIGILL" in blas.preload_openblas({})


def test_an_eval_run_with_a_crashing_openblas_completes_and_says_why(
    pytester, model_path, crashing_openblas
):
    pytester.makepyfile(TWO_CASES)
    result = pytester.runpytest_subprocess(
        f"--punie-model={model_path}", "--punie-results=r.json", "--html=report.html",
        "--punie-cache=off",
    )  # fmt: skip
    said = (
        "reference (OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4 from "
        f"{blas.ENV}={crashing_openblas} died with SIGILL on this CPU)"
    )
    document = json.loads((pytester.path / "r.json").read_text())
    assert [c["outcome"] for c in document["cases"]].count("error") == 0, result.stdout.str()
    assert document["metadata"]["server"]["blas"] == said
    result.stdout.fnmatch_lines([f"BLAS: {said}"])
    assert "died with SIGILL on this CPU" in (pytester.path / "report.html").read_text()
