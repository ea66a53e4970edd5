"""The server's start-up cannot be fooled or orphaned, and caches what it downloads (issue 11,
points 6, 12 and 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_punie.serving import server as server_module
from pytest_punie.serving import shared as serving
from pytest_punie.serving.server import MlxServer, ServerError, port_owner_is
from pytest_punie.serving.shared import ServerSpec
from pytest_punie.system.processes import process_alive
from pytest_punie.testing import FakeOpenAI


def test_port_owner_is_told_apart() -> None:
    with FakeOpenAI({}) as fake:
        port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
        other = subprocess.Popen(["sleep", "5"])
        try:
            assert port_owner_is(os.getpid(), port) is True
            assert port_owner_is(other.pid, port) is False
        finally:
            other.kill()
            other.wait()


class _BindsThePort(MlxServer):
    """A 'server' that only tries to bind its port, as mlx_lm does after loading the model."""

    def command(self) -> list[str]:
        script = (
            "import socket, time; s = socket.socket(); "
            f"s.bind(('127.0.0.1', {self.port})); s.listen(); time.sleep(30)"
        )
        return [sys.executable, "-c", script]


def test_readiness_does_not_accept_another_process_on_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI({}, default="I am another model") as impostor:
        taken = int(impostor.base_url.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setattr(server_module, "free_port", lambda host="127.0.0.1": taken)
        server = _BindsThePort("org/model", log_path=tmp_path / "log", startup_timeout=20)
        with pytest.raises(ServerError, match=f"port {taken} .* taken by another process"):
            server.start()
        assert server.process is None


def test_hub_models_go_to_a_persistent_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    server = MlxServer("org/model", log_path=tmp_path / "run" / "log")
    env = server._environment()
    assert env["HF_HUB_CACHE"] == str(tmp_path / "cache" / "hf-hub")
    assert Path(env["HF_HUB_CACHE"]).is_dir()


def _orphan() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_a_worker_dying_during_start_up_orphans_nothing(tmp_path: Path) -> None:
    orphan = _orphan()
    (tmp_path / serving.STARTING_FILE).write_text(json.dumps({"pid": orphan.pid}))
    started = time.monotonic()
    with pytest.raises(ServerError, match="died during start-up") as first:
        serving.serve(ServerSpec(), tmp_path, shared=True)
    orphan.wait(timeout=15)
    # Every other worker fails at once, with the same message.
    with pytest.raises(ServerError) as second:
        serving.serve(ServerSpec(), tmp_path, shared=True)
    assert str(second.value) == str(first.value)
    assert time.monotonic() - started < 15


def test_the_controller_stops_a_server_still_starting(tmp_path: Path) -> None:
    orphan = _orphan()
    (tmp_path / serving.STARTING_FILE).write_text(json.dumps({"pid": orphan.pid}))
    serving.stop_shared(tmp_path)
    orphan.wait(timeout=15)
    assert not process_alive(orphan.pid)
    assert not (tmp_path / serving.STARTING_FILE).exists()


def test_a_failed_start_is_recorded_for_the_other_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_start(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise ServerError("mlx_lm server could not load the model")

    monkeypatch.setattr(serving, "_start", failing_start)
    for _ in range(3):
        with pytest.raises(ServerError, match="could not load the model"):
            serving.serve(ServerSpec(), tmp_path, shared=True)
    assert calls == [1]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_run_folder_is_removed_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    temp = pytester.path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*workers)
    result.assert_outcomes(passed=1)
    assert not list(temp.glob("punie-run-*"))
