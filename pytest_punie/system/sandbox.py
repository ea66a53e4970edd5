"""Run untrusted commands (model code, a model's shell commands) confined and bounded.

One runner serves both ``assert_python_code`` and the ``run_command`` tool. Every run gets:

- a minimal environment (``HOME`` is the scratch folder; no tokens or keys from the test process);
- resource limits set in the child (CPU time, address space, file size, open files and, for
  a user other than root, processes);
- its own session and process group; at the deadline the whole group is killed and the pipe is
  closed, so a child that escaped cannot keep the caller waiting;
- output read in bounded chunks: at most ``max_output`` bytes are kept, the rest is drained;
- where the machine allows it, isolation: with bubblewrap (``bwrap``) no network, a read-only
  file system except the scratch folder and an empty ``/tmp``, the home folder hidden, its own
  process namespace (nothing outlives the run); with util-linux ``unshare`` no network and its
  own process namespace, but writes outside the scratch folder are not blocked. Without either,
  limits only, and one ``SandboxWarning`` per run says what is not isolated.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_punie.system.processes import kill_process_group

__all__ = [
    "Completed",
    "Isolation",
    "Limits",
    "SandboxUnavailable",
    "SandboxWarning",
    "isolation",
    "minimal_env",
    "run",
]

Isolation = Literal["bwrap", "unshare", "none"]

_CHUNK = 65_536
_EXIT_GRACE_S = 0.2
"""How long output is still read after the process exited (a child may hold the pipe)."""


class SandboxUnavailable(RuntimeError):
    """No isolation that confines untrusted code is available, and weaker was not allowed."""


class SandboxWarning(UserWarning):
    """Untrusted code runs with less isolation than pytest-punie would like on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits set in the child (``setrlimit``); ``None`` leaves one unset."""

    cpu_seconds: int | None = 60
    address_space_bytes: int | None = 2 * 1024**3
    file_size_bytes: int | None = 64 * 1024**2
    open_files: int | None = 256
    processes: int | None = 64
    """Processes (and threads) beyond those the user already runs; root is not bound by it."""

    def for_timeout(self, timeout: float) -> Limits:
        """These limits with the CPU time no longer than the wall-clock ``timeout`` needs."""
        cpu = int(timeout) + 1
        if self.cpu_seconds is not None:
            cpu = min(cpu, self.cpu_seconds)
        return Limits(cpu, self.address_space_bytes, self.file_size_bytes, self.open_files,
                      self.processes)  # fmt: skip


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Completed:
    """What a sandboxed run did: its output (at most ``max_output`` bytes) and how it ended."""

    output: bytes
    returncode: int | None
    timed_out: bool
    dropped_bytes: int
    isolation: Isolation


def minimal_env(home: Path) -> dict[str, str]:
    """The environment untrusted code gets: ``HOME`` and ``PWD`` at ``home``, a PATH, the locale."""
    env = {"HOME": str(home), "PWD": str(home), "PATH": os.defpath}
    for name in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


_warned = False


def isolation() -> Isolation:
    """The strongest isolation this machine offers (checked once per process)."""
    mode = _detect_isolation()
    global _warned
    if mode != "bwrap" and not _warned:
        _warned = True
        if mode == "unshare":
            missing = (
                "writes outside the scratch folder are NOT blocked and the home folder is "
                "readable (network and other processes are cut off with unshare)"
            )
        else:
            missing = (
                "the network, writes outside the scratch folder, the home folder and other "
                "processes are NOT isolated (resource limits only)"
            )
        warnings.warn(
            SandboxWarning(
                f"pytest-punie runs model code and run_command without bubblewrap: {missing}. "
                "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) to confine them."
            ),
            stacklevel=2,
        )
    return mode


@functools.cache
def _detect_isolation() -> Isolation:
    if sys.platform != "linux":
        return "none"
    with tempfile.TemporaryDirectory(prefix="punie-probe-") as scratch:
        for mode in ("bwrap", "unshare"):
            argv = _wrap(mode, ["true"], Path(scratch))
            if argv is None:
                continue
            try:
                probe = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.returncode == 0:
                return mode
    return "none"


def _hidden_folders(scratch: Path) -> list[str]:
    """bwrap arguments hiding ``/tmp`` and the home folder behind empty ones, except the Python
    installation(s) inside them (a virtual environment may live in either)."""
    hidden = [Path("/tmp")]
    home = Path(os.path.expanduser("~")).resolve()
    if home != Path("/") and home.is_dir():
        hidden.append(home)
    keep = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    keep.add(Path(sys.executable).resolve().parent.parent)
    args: list[str] = []
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    for path in sorted(keep):
        inside = any(folder in path.parents for folder in hidden)
        if inside and path not in hidden and path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _wrap(mode: Isolation, argv: Sequence[str], scratch: Path) -> list[str] | None:
    """``argv`` inside the isolation ``mode``; None when its tool is not installed."""
    if mode == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return None
        where = str(scratch)
        return [
            bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            *_hidden_folders(scratch), "--bind", where, where, "--chdir", where,
            "--unshare-all", "--die-with-parent", "--new-session", "--", *argv,
        ]  # fmt: skip
    if mode == "unshare":
        unshare = shutil.which("unshare")
        if unshare is None:
            return None
        return [
            unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child",
            "--mount-proc", "--", *argv,
        ]  # fmt: skip
    return list(argv)


def _process_count(uid: int) -> int:
    """How many processes and threads ``uid`` runs (what RLIMIT_NPROC counts)."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _rlimits(limits: Limits) -> list[tuple[int, int]]:
    pairs = [
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.address_space_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
    ]
    uid = os.getuid()
    # RLIMIT_NPROC counts every process of the user, so the limit is on top of what runs now.
    # It does not bind root (nor CAP_SYS_RESOURCE): there, the deadline and the process
    # namespace are what stop a fork bomb.
    if limits.processes is not None and uid != 0 and hasattr(resource, "RLIMIT_NPROC"):
        pairs.append((resource.RLIMIT_NPROC, _process_count(uid) + limits.processes))
    return [(kind, value) for kind, value in pairs if value is not None]


def _prlimit_args(rlimits: list[tuple[int, int]]) -> list[str] | None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return None
    names = {
        resource.RLIMIT_CPU: "--cpu",
        resource.RLIMIT_AS: "--as",
        resource.RLIMIT_FSIZE: "--fsize",
        resource.RLIMIT_NOFILE: "--nofile",
    }
    if hasattr(resource, "RLIMIT_NPROC"):
        names[resource.RLIMIT_NPROC] = "--nproc"
    return [prlimit, *(f"{names[kind]}={value}" for kind, value in rlimits), "--"]


def run(
    argv: Sequence[str],
    *,
    scratch: Path,
    timeout: float,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_output: int = 1_000_000,
    merge_stderr: bool = True,
    keep_tail: bool = False,
    mode: Isolation | None = None,
) -> Completed:
    """Run ``argv`` in ``scratch`` (the only folder it may write), confined and bounded.

    Returns within about ``timeout`` seconds whatever the command does. ``stdin`` is given to
    the command through an unnamed file. The first ``max_output`` bytes of output are kept, or
    the last ones with ``keep_tail``. ``mode`` forces an isolation (tests, benchmarks).
    """
    scratch = Path(scratch).resolve()
    chosen: Isolation = isolation() if mode is None else mode
    wrapped = _wrap(chosen, argv, scratch)
    if wrapped is None:
        raise RuntimeError(f"isolation {chosen!r} is not available on this machine")
    rlimits = _rlimits(limits.for_timeout(timeout))
    prefix = _prlimit_args(rlimits)
    preexec = None
    if prefix is None:  # no util-linux prlimit: set the limits between fork and exec

        def preexec() -> None:
            for kind, value in rlimits:
                resource.setrlimit(kind, (value, value))

        prefix = []
    with contextlib.ExitStack() as stack:
        stdin_file = stack.enter_context(tempfile.TemporaryFile()) if stdin is not None else None
        if stdin_file is not None:
            stdin_file.write(stdin or b"")
            stdin_file.seek(0)
        process = subprocess.Popen(
            [*prefix, *wrapped],
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL,
            cwd=scratch,
            env=dict(minimal_env(scratch) if env is None else env),
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
        try:
            output, dropped, timed_out = _read_bounded(
                process, time.monotonic() + timeout, max_output, keep_tail
            )
        finally:
            _kill_group(process)
            if process.stdout is not None:
                process.stdout.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
    return Completed(output, process.returncode, timed_out, dropped, chosen)


class _Kept:
    """At most ``limit`` bytes of a stream: its head, or its tail; counts what was dropped."""

    def __init__(self, limit: int, tail: bool) -> None:
        self.limit, self.tail = limit, tail
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        if not self.tail:
            room = max(0, self.limit - self.size)
            self.chunks.append(chunk[:room])
            self.size += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - room)
            return
        self.chunks.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks[0])
            self.dropped += len(self.chunks.popleft())

    def data(self) -> bytes:
        joined = b"".join(self.chunks)
        if self.tail and len(joined) > self.limit:
            self.dropped += len(joined) - self.limit
            return joined[-self.limit :]
        return joined


def _read_bounded(
    process: subprocess.Popen[bytes], deadline: float, max_output: int, keep_tail: bool
) -> tuple[bytes, int, bool]:
    """Read the process's output until EOF (or exit plus a grace) or the deadline."""
    kept = _Kept(max_output, keep_tail)
    timed_out = _read_into(process, deadline, kept)
    data = kept.data()
    return data, kept.dropped, timed_out


def _read_into(process: subprocess.Popen[bytes], deadline: float, kept: _Kept) -> bool:
    """Feed the output to ``kept``; whether the deadline passed with the process still running."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if process.poll() is not None:
                exited_at = exited_at if exited_at is not None else now
                if now - exited_at >= _EXIT_GRACE_S:
                    return False  # a child escaped with the pipe: stop reading
            if now >= deadline:
                return process.poll() is None
            wait = min(deadline - now, 0.05 if exited_at is not None else 0.25)
            if not selector.select(wait):
                continue
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:  # EOF: wait for the exit
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return True
                return False
            kept.add(chunk)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the process's group (it leads its own session), then the process itself."""
    kill_process_group(process.pid)
    with contextlib.suppress(ProcessLookupError, OSError):
        process.kill()
