"""Writing a file so that a crash or a concurrent reader never sees half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "cache_dir"]


def cache_dir() -> Path:
    """``$PUNIE_CACHE``, else ``$XDG_CACHE_HOME/pytest-punie``, else ``~/.cache/pytest-punie``."""
    if os.environ.get("PUNIE_CACHE"):
        return Path(os.environ["PUNIE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-punie"


@contextlib.contextmanager
def _replacing(path: Path | str, mode: str) -> Iterator[IO[Any]]:
    """A stream (text or binary, by ``mode``) whose content replaces ``path`` only when the block
    ends without error: a temporary file in the same folder, flushed to disk, then moved over
    ``path`` with ``os.replace``; on error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    binary = "b" in mode
    try:
        with os.fdopen(
            descriptor, mode, encoding=None if binary else "utf-8", newline=None if binary else "\n"
        ) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(path: Path | str) -> Iterator[IO[str]]:
    """A text stream whose content replaces ``path`` atomically when the block ends."""
    with _replacing(path, "w") as stream:
        yield stream


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace ``path``'s content with ``data`` atomically."""
    with _replacing(path, "wb") as stream:
        stream.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as stream:
        stream.write(text)
