"""A per-test workspace folder and the sandboxed file and shell tools a model gets to act on it.

Every path a model passes to a file tool is opened beneath the workspace folder's file
descriptor with no symlink followed at any component: with ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS)`` where the kernel has it, else one component at a time with
``O_NOFOLLOW``. Checking a path and then opening it would leave a window in which another
process (the model's own ``run_command``) swaps a folder on the path for a symlink to somewhere
else; an open that never follows a symlink has no such window. ``..`` is read in the path's
text and may not climb above the root.

A path that leaves the workspace (absolute, ``..`` above the root, a symlink pointing outside)
is refused: the refusal goes back to the model as the tool's result (so the run goes on, and a
scorer can judge how the model reacts) and is recorded in ``Workspace.refusals``. A symlink that
points inside is not followed either; the model is told the path it points to.

Only regular files are read or written: a file is opened without blocking (a FIFO the model
made cannot hang the tool), checked with ``fstat`` and only then read or truncated.

``run_command`` runs in the sandbox of ``sandbox.py`` (the same one as model code): a minimal
environment, resource limits, a deadline that kills every process it started and, with
bubblewrap installed, no network and no writes outside the workspace. Where no isolation can
confine it and the user did not allow running without, ``sandbox.SandboxUnavailable`` goes up
to the case, which errors with its message.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import functools
import os
import platform
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from pytest_punie.system import sandbox

if TYPE_CHECKING:
    from pydantic_ai import Tool

__all__ = [
    "BUILTIN_TOOLS",
    "SandboxViolation",
    "Workspace",
    "create_workspace",
    "make_tools",
]

BUILTIN_TOOLS: tuple[str, ...] = (
    "list_dir",
    "read_file",
    "write_file",
    "search_files",
    "run_command",
)

MAX_READ_CHARS = 100_000
MAX_COMMAND_OUTPUT_CHARS = 20_000
MAX_SEARCH_MATCHES = 1_000
MAX_SEARCH_DEPTH = 100
"""search_files enters folders this deep at most (it holds one descriptor per level)."""

_P = ParamSpec("_P")

_ERROR_PHRASES: dict[int, str] = {
    errno.ENOENT: "no such file",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "already exists",
    errno.ELOOP: "too many levels of symbolic links",
}


class SandboxViolation(Exception):
    """A tool was asked to touch a path outside its workspace."""


class _ToolError(Exception):
    """A tool could not do what it was asked; the model sees ``error: <message>``."""


def _tool(
    method: Callable[Concatenate[Workspace, _P], str],
) -> Callable[Concatenate[Workspace, _P], str]:
    """Run a tool method alone, and turn refusals and errors into the string the model sees."""

    @functools.wraps(method)
    def wrapper(self: Workspace, /, *args: _P.args, **kwargs: _P.kwargs) -> str:
        # One tool call at a time on a workspace, whoever calls (pydantic-ai runs the calls of
        # one response concurrently unless they are sequential, as make_tools makes them).
        with self._busy:
            try:
                return method(self, *args, **kwargs)
            except sandbox.SandboxUnavailable:
                raise  # not the model's doing: the case errors with this message
            except SandboxViolation as exc:
                message = str(exc)
                self.refusals.append(message)
                return f"refused: {message}"
            except _ToolError as exc:
                return f"error: {exc}"
            except OSError as exc:
                return f"error: {self._describe_os_error(exc)}"
            except Exception as exc:  # a tool never raises: the model sees what went wrong
                return f"error: {type(exc).__name__}: {exc}"[:500]

    return wrapper


# --- Opening beneath a directory without following symlinks -----------------------------------

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | _NONBLOCK | _NOFOLLOW | os.O_CLOEXEC
_WRITE = os.O_WRONLY | _NONBLOCK | _NOFOLLOW | os.O_CLOEXEC

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437}  # one number on the generic table
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_AT_FDCWD = -100


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of openat2(2)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_Openat2 = Callable[[int, str, int], int]


@functools.cache
def _openat2() -> _Openat2 | None:
    """openat2(2) resolving beneath its directory and never through a symlink, where the kernel
    has it (Linux 5.6 and later, and not hidden by a seccomp filter); else None."""
    number = _SYS_OPENAT2.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    resolve = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

    def openat2(dir_fd: int, path: str, flags: int) -> int:
        how = _OpenHow(flags, 0, resolve)
        fd = syscall(
            ctypes.c_long(number),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return int(fd)

    try:  # ENOSYS: an older kernel; EPERM: a seccomp filter (some container runtimes)
        os.close(openat2(_AT_FDCWD, ".", _DIRECTORY))
    except OSError:
        return None
    return openat2


def _walk(dir_fd: int, names: Sequence[str], *, create: bool = False) -> int:
    """A new descriptor of the folder ``names`` leads to from ``dir_fd``, each name opened with
    ``O_NOFOLLOW`` (a symlink fails with ELOOP or ENOTDIR); with ``create``, missing folders are
    made on the way."""
    fd = os.open(".", _DIRECTORY, dir_fd=dir_fd)
    try:
        for name in names:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            inner = os.open(name, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_beneath(dir_fd: int, names: Sequence[str], flags: int) -> int:
    """Open ``names`` (a path split in components, no ``.`` or ``..``) beneath ``dir_fd``
    without following a symlink at any component."""
    if not names:
        return os.open(".", flags, dir_fd=dir_fd)
    openat2 = _openat2()
    if openat2 is not None:
        for _ in range(3):
            try:
                return openat2(dir_fd, "/".join(names), flags)
            except OSError as exc:  # EAGAIN: a rename raced the lookup; try again
                if exc.errno != errno.EAGAIN:
                    raise
    parent = _walk(dir_fd, names[:-1])
    try:
        return os.open(names[-1], flags | _NOFOLLOW, dir_fd=parent)
    finally:
        os.close(parent)


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Workspace:
    """A folder a model works in, and the tools that act on it.

    The public tool methods (the names in ``BUILTIN_TOOLS``) never raise: they return the text
    the model sees, ``"refused: ..."`` for a path outside the workspace and ``"error: ..."`` for
    other failures. Their docstrings are the descriptions the model is given.
    """

    def __init__(self, root: Path, *, command_timeout: float = 10.0) -> None:
        self.root: Path = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"workspace root is not a directory: {self.root}")
        if not command_timeout > 0:
            raise ValueError(f"command_timeout must be positive, got {command_timeout!r}")
        self.command_timeout = command_timeout
        self.refusals: list[str] = []
        identity = os.stat(self.root)
        self._identity = (identity.st_dev, identity.st_ino)
        self._busy = threading.Lock()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, refusals={len(self.refusals)})"

    def resolve(self, path: str) -> Path:
        """Return the absolute, symlink-free path of ``path`` (relative to the root).

        Raises ``SandboxViolation`` if ``path`` is not a string, holds a NUL byte, is absolute,
        or ends up outside the root through ``..`` or a symlink anywhere along it. (The tools
        use it to name what is wrong with a path; they open paths without following symlinks.)
        """
        if not isinstance(path, str):
            raise SandboxViolation(f"{path!r}: path must be a string, not {type(path).__name__}")
        if "\x00" in path:
            raise SandboxViolation(f"{path!r}: path contains a NUL byte")
        if os.path.isabs(path) or path.startswith(("/", "\\")):
            raise SandboxViolation(f"{path!r}: absolute paths are not allowed, use a relative one")
        joined = self.root / path
        try:
            resolved = joined.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise SandboxViolation(f"{path!r}: path cannot be resolved ({exc})") from exc
        if self._inside(resolved):
            return resolved
        if self._inside(Path(os.path.normpath(joined))):
            raise SandboxViolation(f"{path!r}: a symlink on this path points outside the workspace")
        raise SandboxViolation(f"{path!r}: path leaves the workspace")

    @_tool
    def list_dir(self, path: str = ".") -> str:
        """List the entries of a directory in the workspace; directories end with "/".

        Args:
            path: Directory to list, relative to the workspace root.
        """
        fd = self._open(path, _DIRECTORY)
        try:
            with os.scandir(fd) as entries:
                names = [
                    entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
                    for entry in entries
                ]
        finally:
            os.close(fd)
        return "\n".join(sorted(names)) if names else "(empty)"

    @_tool
    def read_file(self, path: str) -> str:
        """Read a text file in the workspace.

        Args:
            path: File to read, relative to the workspace root.
        """
        fd = self._open(path, _READ)
        try:
            self._check_regular(fd, path)
            os.set_blocking(fd, True)
            # UTF-8 takes at most 4 bytes a character (an undecodable byte is one character)
            data = _read_at_most(fd, 4 * (MAX_READ_CHARS + 1))
        finally:
            os.close(fd)
        text = data.decode("utf-8", errors="replace")
        if len(text) > MAX_READ_CHARS:
            text = (
                text[:MAX_READ_CHARS]
                + f"\n[truncated: showing the first {MAX_READ_CHARS} characters]"
            )
        return text

    @_tool
    def write_file(self, path: str, content: str) -> str:
        """Write text to a file in the workspace, replacing it and creating directories as needed.

        Args:
            path: File to write, relative to the workspace root.
            content: The complete new content of the file.
        """
        data = content.encode("utf-8", errors="replace")
        names = self._names(path)
        if not names:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        with self._root_fd() as root:
            try:
                parent = _walk(root, names[:-1], create=True)
            except OSError as exc:
                raise self._open_failure(path, names, exc) from None
            try:
                fd = self._create_or_open(parent, names[-1], path, names)
            finally:
                os.close(parent)
        try:
            self._check_regular(fd, path)
            os.ftruncate(fd, 0)  # only now: a FIFO or a device is never truncated
            os.set_blocking(fd, True)
            _write_all(fd, data)
        finally:
            os.close(fd)
        return f"wrote {len(data)} bytes to {path}"

    @_tool
    def search_files(self, pattern: str, path: str = ".") -> str:
        """Find files and directories in the workspace whose path matches a glob pattern.

        Args:
            pattern: Glob such as "*.py" (matches names at any depth) or "src/**/test_*.py"
                (matches paths relative to the searched directory).
            path: Directory to search, relative to the workspace root.
        """
        if not isinstance(pattern, str):
            return f"error: the pattern must be a string, not {type(pattern).__name__}"
        try:
            matcher = GlobPattern(pattern)
        except ValueError as exc:
            return f"error: bad pattern: {exc}"
        if not pattern:
            return "error: empty pattern"
        base = self._open(path, _DIRECTORY)
        shown_base = "".join(name + "/" for name in self._names(path))
        match_name = "/" not in pattern
        matches: list[str] = []
        give_up = time.monotonic() + SEARCH_SECONDS
        stopped = deep = False
        try:
            # Symlinks are neither listed nor entered: a link to a folder outside the workspace
            # cannot leak that folder's files, and each folder is opened with O_NOFOLLOW beneath
            # the one holding it, so a folder swapped for a symlink meanwhile is not entered.
            for relative, is_dir, depth_left in _entries(base, "", MAX_SEARCH_DEPTH):
                if time.monotonic() > give_up:
                    stopped = True
                    break
                deep = deep or depth_left < 0
                if depth_left >= 0 and matcher.fullmatch(
                    relative.rsplit("/", 1)[-1] if match_name else relative
                ):
                    matches.append(shown_base + relative + ("/" if is_dir else ""))
        finally:
            os.close(base)
        notes = []
        if stopped:
            notes.append(f"[stopped: the search took more than {SEARCH_SECONDS:g}s]")
        if deep:
            notes.append(f"[folders deeper than {MAX_SEARCH_DEPTH} levels were not searched]")
        if not matches:
            return "\n".join(["no matches", *notes])
        matches.sort()
        extra = len(matches) - MAX_SEARCH_MATCHES
        lines = matches[:MAX_SEARCH_MATCHES]
        if extra > 0:
            lines.append(f"[truncated: {extra} more matches]")
        return "\n".join([*lines, *notes])

    @_tool
    def run_command(self, command: str) -> str:
        """Run a shell command in the workspace directory; returns its exit code and output.

        Args:
            command: The shell command line to run.
        """

        if not isinstance(command, str):
            return f"error: the command must be a string, not {type(command).__name__}"
        if not command.strip():
            return "error: empty command"
        if "\x00" in command:
            return "error: cannot run command: it contains a NUL byte"
        completed = sandbox.run(
            ["/bin/sh", "-c", command],
            scratch=self.root,
            timeout=self.command_timeout,
            max_output=4 * MAX_COMMAND_OUTPUT_CHARS,  # UTF-8: at most 4 bytes a character
        )
        if completed.timed_out:
            header = f"timed out after {self.command_timeout:g}s (process killed)"
        else:
            header = f"exit code {completed.returncode}"
        text = completed.output.decode("utf-8", errors="replace")
        if len(text) > MAX_COMMAND_OUTPUT_CHARS or completed.dropped_bytes:
            text = (
                text[:MAX_COMMAND_OUTPUT_CHARS]
                + f"\n[truncated: showing the first {MAX_COMMAND_OUTPUT_CHARS} characters]"
            )
        return f"{header}\n{text}" if text else header

    # --- Opening paths -----------------------------------------------------------------------

    def _names(self, path: str) -> list[str]:
        """``path`` as folder and file names beneath the root, ``.`` and ``..`` read in its text.

        Raises ``SandboxViolation`` for a path ``resolve`` refuses, or whose ``..`` climbs
        above the root.
        """
        self.resolve(path)
        names: list[str] = []
        for name in path.split("/"):
            if name == "..":
                if not names:
                    raise SandboxViolation(f"{path!r}: path leaves the workspace")
                names.pop()
            elif name not in ("", "."):
                names.append(name)
        return names

    def _root_fd(self) -> _Descriptor:
        """The root folder, opened; it must still be the folder the workspace was made on."""
        try:
            fd = os.open(self.root, _DIRECTORY)
        except OSError as exc:
            raise SandboxViolation(
                f"the workspace folder cannot be opened ({exc.strerror})"
            ) from None
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != self._identity:
            os.close(fd)
            raise SandboxViolation("the workspace folder was moved or replaced")
        return _Descriptor(fd)

    def _open(self, path: str, flags: int) -> int:
        """A descriptor of ``path`` opened with ``flags`` beneath the root, no symlink followed."""
        names = self._names(path)
        with self._root_fd() as root:
            try:
                return _open_beneath(root, names, flags)
            except OSError as exc:
                raise self._open_failure(path, names, exc) from None

    def _create_or_open(self, parent: int, name: str, path: str, names: list[str]) -> int:
        """``name`` in ``parent`` for writing: made new (``O_EXCL``), or the file there, never
        through a symlink and never truncated here."""
        for _ in range(3):  # the file may be made or removed between the two opens
            try:
                return os.open(name, _WRITE | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as exc:
                raise self._open_failure(path, names, exc) from None
            try:
                return os.open(name, _WRITE, dir_fd=parent)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._open_failure(path, names, exc) from None
        raise _ToolError(f"{path} changed while it was being opened; try again")

    def _open_failure(self, path: str, names: list[str], exc: OSError) -> Exception:
        """What to tell the model when opening ``path`` failed with ``exc``."""
        code = exc.errno
        if code == errno.ENXIO:  # a FIFO with no reader, or a socket
            return _ToolError(f"not a regular file: {path}")
        if code in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV) and self._has_symlink(names):
            try:
                inside = self.resolve(path)  # raises SandboxViolation when it leads outside
            except SandboxViolation as violation:
                return violation
            target = inside.relative_to(self.root).as_posix() or "."
            return _ToolError(
                f"{path}: a symlink on this path is not followed; use the path it points to: "
                f"{target}"
            )
        return OSError(code, exc.strerror, path)

    def _has_symlink(self, names: list[str]) -> bool:
        """Whether a component of the path is a symlink now (for the message only)."""
        folder = self.root
        for name in names:
            folder = folder / name
            if folder.is_symlink():
                return True
        return False

    @staticmethod
    def _check_regular(fd: int, path: str) -> None:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise _ToolError(f"not a regular file: {path}")

    def _inside(self, resolved: Path) -> bool:
        return resolved == self.root or self.root in resolved.parents

    def _describe_os_error(self, exc: OSError) -> str:
        phrase = _ERROR_PHRASES.get(exc.errno or 0) or exc.strerror or type(exc).__name__
        if exc.filename is None:
            return phrase
        return f"{phrase}: {self._display(exc.filename)}"

    def _display(self, filename: object) -> str:
        """Show a path relative to the root; never show where an outside path lies."""
        if not isinstance(filename, (str, bytes, os.PathLike)):
            return "?"
        path = Path(os.fsdecode(filename))
        if not path.is_absolute():
            return path.as_posix()
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return "(outside the workspace)"


class _Descriptor:
    """A file descriptor closed at the end of a ``with`` block."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def _entries(dir_fd: int, prefix: str, depth_left: int) -> Iterator[tuple[str, bool, int]]:
    """``(path relative to the searched folder, is a folder, depth left)`` for each entry under
    ``dir_fd`` that is not a symlink, folders entered while ``depth_left`` allows (a folder below
    is reported once, with -1)."""
    with os.scandir(dir_fd) as scan:
        entries = sorted(
            (entry.name, entry.is_dir(follow_symlinks=False))
            for entry in scan
            if not entry.is_symlink()
        )
    for name, is_dir in entries:
        yield prefix + name, is_dir, depth_left
        if not is_dir:
            continue
        if depth_left == 0:
            yield prefix + name, True, -1
            continue
        try:
            inner = os.open(name, _DIRECTORY, dir_fd=dir_fd)
        except OSError:  # removed, made a symlink, or unreadable since it was listed
            continue
        try:
            yield from _entries(inner, prefix + name + "/", depth_left - 1)
        finally:
            os.close(inner)


MAX_PATTERN_CHARS = 256
SEARCH_SECONDS = 5.0
"""How long one search_files call may walk the workspace before it stops and says so."""


class GlobPattern:
    """A glob matched in linear time: ``*`` and ``?`` stay within one path segment, ``**/``
    spans any number of folders, ``**`` anything, ``[abc]``/``[a-z]``/``[!a]`` one character.

    A backtracking regex takes exponential time on patterns like ``*a*a*a*a*b``; this runs the
    pattern as a set of positions (a Thompson NFA), O(len(name) * len(pattern)) at worst.
    """

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
        self.pattern = pattern
        # Steps: ("lit", c), ("one", None), ("class", (negate, ranges)), ("star", None),
        # ("any", None) for "**", ("dirs", None) + ("dirs_in", None) for "**/".
        steps: list[tuple[str, Any]] = []
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**/", i):
                steps += [("dirs", None), ("dirs_in", None)]
                i += 3
            elif pattern.startswith("**", i):
                steps.append(("any", None))
                i += 2
            elif char == "*":
                steps.append(("star", None))
                i += 1
            elif char == "?":
                steps.append(("one", None))
                i += 1
            elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                ranges: list[tuple[str, str]] = []
                j = 0
                while j < len(body):
                    if j + 2 < len(body) and body[j + 1] == "-":
                        ranges.append((body[j], body[j + 2]))  # "z-a" is empty, not an error
                        j += 3
                    else:
                        ranges.append((body[j], body[j]))
                        j += 1
                steps.append(("class", (negate, tuple(ranges))))
                i = end + 1
            else:
                steps.append(("lit", char))
                i += 1
        self._steps = steps

    def _closure(self, states: set[int]) -> set[int]:
        """``states`` plus every position reachable without reading a character."""
        todo = list(states)
        while todo:
            state = todo.pop()
            if state >= len(self._steps):
                continue
            kind = self._steps[state][0]
            skips = {"star": (1,), "any": (1,), "dirs": (1, 2)}.get(kind, ())
            for skip in skips:
                if state + skip not in states:
                    states.add(state + skip)
                    todo.append(state + skip)
        return states

    def fullmatch(self, name: str) -> bool:
        """Whether the whole of ``name`` matches the pattern."""
        final = len(self._steps)
        states = self._closure({0})
        for char in name:
            following: set[int] = set()
            for state in states:
                if state == final:
                    continue
                kind, arg = self._steps[state]
                if kind == "lit":
                    if char == arg:
                        following.add(state + 1)
                elif kind == "one":
                    if char != "/":
                        following.add(state + 1)
                elif kind == "class":
                    negate, ranges = arg
                    inside = any(low <= char <= high for low, high in ranges)
                    if inside != negate and char != "/":
                        following.add(state + 1)
                elif kind == "star":
                    if char != "/":
                        following.add(state)
                elif kind == "any":
                    following.add(state)
                elif kind == "dirs_in":
                    following.add(state)
                    if char == "/":
                        following.add(state + 1)
            if not following:
                return False
            states = self._closure(following)
        return final in states


def create_workspace(
    source: Path | Mapping[str, str] | None,
    dest: Path,
    *,
    command_timeout: float = 10.0,
) -> Workspace:
    """Make ``dest`` a workspace: a copy of a folder, files from a mapping, or empty.

    A folder is copied with its symlinks kept as symlinks, so a fixture holding an escaping
    link keeps it. Mapping keys are paths relative to ``dest`` and must stay inside it.
    ``dest`` must not exist yet or be empty.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"workspace destination exists and is not empty: {dest}")
    if source is None:
        dest.mkdir(parents=True, exist_ok=True)
    elif isinstance(source, Mapping):
        dest.mkdir(parents=True, exist_ok=True)
        workspace = Workspace(dest, command_timeout=command_timeout)
        files: list[tuple[Path, str]] = []
        for name, text in source.items():
            try:
                target = workspace.resolve(name)
            except SandboxViolation as exc:
                raise ValueError(
                    f"workspace file {name!r} is outside the workspace: {exc}"
                ) from exc
            if target == workspace.root:
                raise ValueError(f"workspace file {name!r} names the workspace root itself")
            files.append((target, text))
        for target, text in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return workspace
    else:
        source = Path(source)
        if not source.is_dir():
            raise NotADirectoryError(f"workspace source is not a directory: {source}")
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    return Workspace(dest, command_timeout=command_timeout)


def make_tools(workspace: Workspace, tools: Sequence[str | Callable[..., Any]]) -> list[Tool[Any]]:
    """Build pydantic-ai tools: names from ``BUILTIN_TOOLS`` bound to ``workspace``, plus callables.

    A plain callable becomes ``Tool(func)``; it does not take a ``RunContext``. Every tool is
    ``sequential``: a case's tool calls run one at a time, in the order the model wrote them
    (pydantic-ai would run the calls of one response concurrently, and a write racing a read of
    the same workspace makes a case's result depend on timing).
    """
    from pydantic_ai import Tool

    built: list[Tool[Any]] = []
    for tool in tools:
        if isinstance(tool, str):
            if tool not in BUILTIN_TOOLS:
                raise ValueError(
                    f"unknown workspace tool {tool!r}; valid names: {', '.join(BUILTIN_TOOLS)}"
                )
            method = getattr(workspace, tool)
            built.append(Tool(method, takes_ctx=False, name=tool, sequential=True))
        elif isinstance(tool, Tool):  # e.g. a case file's JSON-schema tool, shared by its cases
            own = copy.copy(tool)
            own.sequential = True
            built.append(own)
        elif callable(tool):
            built.append(Tool(tool, takes_ctx=False, sequential=True))
        else:
            raise TypeError(f"a tool must be a name or a callable, got {tool!r}")
    names = [tool.name for tool in built]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate tool names: {', '.join(duplicates)}")
    return built
