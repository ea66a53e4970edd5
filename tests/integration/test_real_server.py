"""The real mlx_lm server on the default model: serving, faults, and a small eval run.

Each pytester run starts its own server (a few seconds for the 135M default model once it is
converted; the first run of a machine also downloads and converts it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_punie.serving.server import MlxServer, ServerError, probe_completion

from .conftest import TWO_CASES

pytestmark = pytest.mark.integration

CASES = TWO_CASES


def _pytest_in_background(pytester, model_path) -> subprocess.Popen[str]:
    """pytest on the pytester folder in its own process, its output readable line by line."""
    command = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider"]
    process = subprocess.Popen(
        [*command, f"--punie-model={model_path}"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Ctrl-C as a terminal sends it: a test suite started in the background (`cmd &` in a
        # script) runs with SIGINT ignored, and its children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout is not None
    return process


def _server_processes(places: tuple[Path, ...]) -> set[str]:
    """The mlx_lm servers working in one of ``places`` (or below): this suite's, not another
    run's on the same machine. A server works where the pytest that started it does."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    found = set()
    for line in out.stdout.splitlines():
        if "mlx_lm server" not in line:
            continue
        try:
            cwd = Path(f"/proc/{line.split()[0]}/cwd").resolve(strict=True)
        except OSError:  # gone, or not ours to read
            continue
        if any(cwd == place or place in cwd.parents for place in places):
            found.add(line)
    return found


@pytest.fixture(autouse=True)
def _no_server_left_behind(tmp_path_factory):
    places = (Path.cwd().resolve(), tmp_path_factory.getbasetemp().resolve())
    before = _server_processes(places)
    yield
    deadline = time.monotonic() + 15
    while _server_processes(places) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _server_processes(places) - before, "an mlx_lm server was left running"


def test_server_starts_serves_and_stops(model_path, tmp_path):
    server = MlxServer(str(model_path), log_path=tmp_path / "server.log")
    server.start()
    try:
        status, body = probe_completion(server.base_url, "default_model")
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] is not None
        pid = server.process.pid
        if sys.platform.startswith("linux") and os.environ.get("PUNIE_OPENBLAS", "1") != "0":
            # the portable OpenBLAS is really loaded in the server process
            assert server.blas.startswith("OpenBLAS "), server.blas
            assert "DYNAMIC_ARCH" in server.blas
            found = re.search(r": (/\S+?)\), \d+ threads?", server.blas)
            assert found is not None, server.blas
            library = found.group(1)
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert library in maps
            assert "libgfortran" in maps
    finally:
        server.stop()
    assert not server.alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert "Starting httpd" in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("dtype", ["float32", None])
def test_converted_default_model_answers_paris(dtype, tmp_path):
    """The GGUF's known greedy answer, from the default float32 and the kept 4-bit weights."""
    from mlx_lm import generate, load

    from pytest_punie.serving.default_model import default_gguf
    from pytest_punie.serving.gguf import convert_gguf

    folder = convert_gguf(default_gguf(), tmp_path / "model", dtype=dtype)
    config = json.loads((folder / "config.json").read_text())
    assert ("quantization" in config) is (dtype is None)
    model, tokenizer = load(str(folder))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    text = generate(model, tokenizer, prompt=prompt, max_tokens=20)
    assert "The capital of France is Paris." in text


def test_eval_run_end_to_end(pytester, model_path):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess(
        f"--punie-model={model_path}", "--punie-results=r.json", "--punie-min-score=0.5",
        "--html=report.html",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*punie: category scores*", "knowledge*1*1*0*100.0%*"])
    document = json.loads((pytester.path / "r.json").read_text())
    server = document["metadata"]["server"]
    assert server["model"] == str(model_path)
    assert len(server["model_hash"]) == 64
    assert server["started_here"] is True
    capital = next(c for c in document["cases"] if c["nodeid"].endswith("test_capital"))
    assert "Paris" in capital["response"]["text"]
    assert capital["response"]["output_tokens"] > 0
    html = (pytester.path / "report.html").read_text()
    assert "punie-categories" in html
    # the server log the summary names is still there after the run
    (log_line,) = [line for line in result.outlines if line.startswith("server log: ")]
    log = Path(log_line.removeprefix("server log: "))
    assert log.parent == pytester.path / ".punie" / "logs"
    assert log.stat().st_size > 0
    if sys.platform.startswith("linux") and os.environ.get("PUNIE_OPENBLAS", "1") != "0":
        # the terminal, the results and the HTML report name the BLAS library that served
        assert server["blas"].startswith("OpenBLAS "), server["blas"]
        result.stdout.fnmatch_lines(["BLAS: OpenBLAS *DYNAMIC_ARCH*libopenblas*"])
        assert server["blas"] in html


def test_wrong_model_fails_at_once(pytester, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (broken / "model.safetensors").write_bytes(b"")
    pytester.makepyfile(CASES)
    started = time.monotonic()
    result = pytester.runpytest_subprocess(f"--punie-model={broken}")
    assert time.monotonic() - started < 120
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*mlx_lm server*"])
    assert result.ret != 0


def test_busy_port_is_reported(pytester, model_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        pytester.makepyfile(CASES)
        result = pytester.runpytest_subprocess(
            f"--punie-model={model_path}", f"--punie-port={port}"
        )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*port {port} on 127.0.0.1 is busy*"])


def test_server_dying_mid_run_errors_the_remaining_cases(pytester, model_path):
    pytester.makepyfile(
        """
import os, signal
import pytest
from pytest_punie import assert_keywords, assert_number

@pytest.mark.punie(category="knowledge")
def test_kill_server(punie_server):
    os.killpg(punie_server.pid, signal.SIGKILL)
"""
        + CASES.split("\n", 3)[3]  # the cases, after their imports, run once the server is dead
    )
    result = pytester.runpytest_subprocess(f"--punie-model={model_path}")
    # the first case that meets the dead server errors and the run stops with one message
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the mlx_lm server died during the run*",
            "*Interrupted: pytest-punie stopped the run: the mlx_lm server died*",
        ]
    )
    assert result.ret != 0


def test_request_timeout_is_reported(pytester, model_path):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess(
        f"--punie-model={model_path}", "--punie-timeout=0.001", "--punie-max-tokens=64"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*the model request failed*Timeout*"])


def test_interrupt_stops_the_server(pytester, model_path):
    pytester.makepyfile(
        """
        import pytest, time

        @pytest.mark.punie(category="x", prompt="Hi")
        def test_slow(punie_result):
            print("SERVER-READY", flush=True)
            time.sleep(120)
        """
    )
    process = _pytest_in_background(pytester, model_path)
    for line in process.stdout:
        if "SERVER-READY" in line:
            break
    process.send_signal(signal.SIGINT)
    try:  # on a loaded 2-core machine the session's teardown can take a while
        rest = process.communicate(timeout=180)[0]
    except subprocess.TimeoutExpired:
        process.kill()  # not left running into the next test
        process.communicate()
        raise
    assert "KeyboardInterrupt" in rest
    assert process.returncode == pytest.ExitCode.INTERRUPTED
    # the autouse fixture checks that no mlx_lm server is left running


def test_mlx_server_reports_dead_generation_thread(tmp_path):
    server = MlxServer(str(tmp_path / "missing"), log_path=tmp_path / "s.log", startup_timeout=120)
    with pytest.raises(ServerError, match=r"generation thread died|exited with code"):
        server.start()
    assert not server.alive()


def test_xdist_workers_share_one_server(pytester, model_path):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess(
        "-n", "2", f"--punie-model={model_path}", "--punie-results=r.json"
    )
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    pids = {case["server"]["pid"] for case in document["cases"]}
    assert len(pids) == 1
    result.stdout.fnmatch_lines(["*2 workers*"])  # the run really was distributed


def test_base_url_uses_a_server_started_elsewhere(pytester, model_path, tmp_path):
    server = MlxServer(str(model_path), log_path=tmp_path / "external.log")
    server.start()
    try:
        pytester.makepyfile(CASES)
        result = pytester.runpytest_subprocess(
            f"--punie-base-url={server.base_url}", "--punie-results=r.json"
        )
    finally:
        server.stop()
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    served = document["metadata"]["server"]
    assert served["started_here"] is False
    assert served["model_name"] == "default_model"
    assert served["base_url"] == server.base_url


def test_killed_pytest_takes_its_server_along(pytester, model_path):
    pytester.makepyfile(
        """
        def test_hold(punie_server):
            print("SERVER-PID", punie_server.pid, flush=True)
            import time
            time.sleep(120)
        """
    )
    process = _pytest_in_background(pytester, model_path)
    server_pid = None
    for line in process.stdout:
        if "SERVER-PID" in line:  # pytest -s prints it after the test file's name
            server_pid = int(line.split("SERVER-PID")[1].split()[0])
            break
    assert server_pid is not None
    process.kill()
    process.wait(timeout=30)
    process.stdout.close()
    _expect_gone(server_pid, 20, "the server outlived the pytest process that started it")


def test_killed_pytest_under_xdist_takes_the_shared_server_along(pytester, model_path):
    # The shared server outlives the worker that started it, so it cannot die with its parent;
    # a watchdog stops it once the controller is gone.
    pid_file = pytester.path / "server.pid"
    pytester.makepyfile(
        f"""
        import time
        def test_hold(punie_server):
            open({str(pid_file)!r}, "w").write(str(punie_server.pid))
            time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
         f"--punie-model={model_path}"],
        cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the shared server never started"
        assert process.poll() is None, "pytest ended before the server started"
        time.sleep(0.5)
    server_pid = int(pid_file.read_text())
    process.kill()
    process.wait(timeout=30)
    _expect_gone(server_pid, 30, "the shared server outlived the killed pytest controller")


def _expect_gone(pid: int, seconds: float, message: str) -> None:
    """Wait for ``pid`` to end; else kill its group and fail with ``message``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    pytest.fail(message)
