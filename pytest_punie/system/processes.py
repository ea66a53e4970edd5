"""Stopping a process and everything it started: the one way a process group is ended."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

__all__ = ["kill_process_group", "process_alive", "stop_process_group"]


def process_alive(pid: int | None) -> bool:
    """Whether a process with ``pid`` exists (one owned by another user counts)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_process_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL what is left after ``grace`` seconds."""
    if sys.platform == "win32":  # no process groups: end the one process
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    kill_process_group(pid)


def kill_process_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` at once (a deadline has passed)."""
    if sys.platform == "win32":
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
