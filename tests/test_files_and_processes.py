"""The one atomic write and the one process-group stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_punie.system.files import atomic_write_text, atomic_writer
from pytest_punie.system.processes import kill_process_group, process_alive, stop_process_group


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("kept")

    def crash() -> None:
        with atomic_writer(target) as stream:
            stream.write("half")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash()
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
@pytest.mark.parametrize(
    "stop", [lambda pid: stop_process_group(pid, grace=0.5), kill_process_group]
)
def test_the_whole_group_goes(tmp_path: Path, stop: object) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import os, subprocess, sys, time, signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    stop(leader.pid)  # type: ignore[operator]
    leader.wait(timeout=10)
    deadline = time.monotonic() + 10
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(grandchild)


def test_atomic_bytes_write(tmp_path: Path) -> None:
    from pytest_punie.system.files import atomic_write_bytes

    target = tmp_path / "outcome.pickle"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["outcome.pickle"]
