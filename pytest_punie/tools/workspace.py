"""A per-test workspace folder and the sandboxed file and shell tools a model gets to act on it.

Every path a model passes to a tool is resolved against the workspace root, symlinks included;
a path that would leave the workspace is refused. The refusal goes back to the model as the
tool's result (so the run goes on, and a scorer can judge how the model reacts) and is recorded
in ``Workspace.refusals``.

``run_command`` runs in the sandbox of ``sandbox.py`` (the same one as model code): a minimal
environment, resource limits, a deadline that kills every process it started and, with
bubblewrap installed, no network and no writes outside the workspace.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping, Sequence
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


def _tool(
    method: Callable[Concatenate[Workspace, _P], str],
) -> Callable[Concatenate[Workspace, _P], str]:
    """Turn refusals and OS errors raised by a tool method into the string the model sees."""

    @functools.wraps(method)
    def wrapper(self: Workspace, /, *args: _P.args, **kwargs: _P.kwargs) -> str:
        try:
            return method(self, *args, **kwargs)
        except SandboxViolation as exc:
            message = str(exc)
            self.refusals.append(message)
            return f"refused: {message}"
        except OSError as exc:
            return f"error: {self._describe_os_error(exc)}"
        except Exception as exc:  # a tool never raises: the model sees what went wrong
            return f"error: {type(exc).__name__}: {exc}"[:500]

    return wrapper


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

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, refusals={len(self.refusals)})"

    def resolve(self, path: str) -> Path:
        """Return the absolute, symlink-free path of ``path`` (relative to the root).

        Raises ``SandboxViolation`` if ``path`` is not a string, holds a NUL byte, is absolute,
        or ends up outside the root through ``..`` or a symlink anywhere along it.
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
        directory = self.resolve(path)
        names = []
        with os.scandir(directory) as entries:
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False) or (
                    entry.is_symlink() and self._inside_dir(Path(entry.path))
                )
                names.append(entry.name + "/" if is_dir else entry.name)
        return "\n".join(sorted(names)) if names else "(empty)"

    @_tool
    def read_file(self, path: str) -> str:
        """Read a text file in the workspace.

        Args:
            path: File to read, relative to the workspace root.
        """
        file = self.resolve(path)
        mode = file.stat().st_mode
        if stat.S_ISDIR(mode):
            return f"error: is a directory: {path}"
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            return f"error: not a regular file: {path}"
        # O_NONBLOCK: a FIFO swapped in after the check does not block the open.
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return f"error: not a regular file: {path}"
        os.set_blocking(fd, True)
        with open(fd, encoding="utf-8", errors="replace") as stream:
            text = stream.read(MAX_READ_CHARS + 1)
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
        file = self.resolve(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8", errors="replace")
        # O_NOFOLLOW: refuse a symlink planted at this name after resolve() checked it.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(file, flags, 0o644), "wb") as stream:
            stream.write(data)
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
        base = self.resolve(path)
        if not base.is_dir():
            return f"error: not a directory: {path}"
        match_name = "/" not in pattern
        matches: list[str] = []
        give_up = time.monotonic() + SEARCH_SECONDS
        stopped = False
        # followlinks=False: a symlinked directory is listed but never entered, so a link to
        # a folder outside the workspace cannot leak that folder's files.
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            dirnames.sort()
            if time.monotonic() > give_up:
                stopped = True
                break
            for name, is_dir in [(d, True) for d in dirnames] + [(f, False) for f in filenames]:
                candidate = here / name
                if candidate.is_symlink() and not self._inside(_realpath(candidate)):
                    continue
                relative = candidate.relative_to(base).as_posix()
                if matcher.fullmatch(name if match_name else relative):
                    shown = candidate.relative_to(self.root).as_posix()
                    matches.append(shown + "/" if is_dir else shown)
        note = f"[stopped: the search took more than {SEARCH_SECONDS:g}s]" if stopped else ""
        if not matches:
            return f"no matches\n{note}" if note else "no matches"
        matches.sort()
        extra = len(matches) - MAX_SEARCH_MATCHES
        lines = matches[:MAX_SEARCH_MATCHES]
        if extra > 0:
            lines.append(f"[truncated: {extra} more matches]")
        if note:
            lines.append(note)
        return "\n".join(lines)

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

    def _inside(self, resolved: Path) -> bool:
        return resolved == self.root or self.root in resolved.parents

    def _inside_dir(self, path: Path) -> bool:
        target = _realpath(path)
        return self._inside(target) and target.is_dir()

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


def _realpath(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


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

    A plain callable becomes ``Tool(func)``; it does not take a ``RunContext``.
    """
    from pydantic_ai import Tool

    built: list[Tool[Any]] = []
    for tool in tools:
        if isinstance(tool, str):
            if tool not in BUILTIN_TOOLS:
                raise ValueError(
                    f"unknown workspace tool {tool!r}; valid names: {', '.join(BUILTIN_TOOLS)}"
                )
            built.append(Tool(getattr(workspace, tool), takes_ctx=False, name=tool))
        elif isinstance(tool, Tool):  # e.g. a case file's JSON-schema tool
            built.append(tool)
        elif callable(tool):
            built.append(Tool(tool, takes_ctx=False))
        else:
            raise TypeError(f"a tool must be a name or a callable, got {tool!r}")
    names = [tool.name for tool in built]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate tool names: {', '.join(duplicates)}")
    return built
