"""Writing a file so that a crash or a concurrent reader never sees half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write_text", "atomic_writer", "cache_dir"]


def cache_dir() -> Path:
    """``$PUNIE_CACHE``, else ``$XDG_CACHE_HOME/pytest-punie``, else ``~/.cache/pytest-punie``."""
    if os.environ.get("PUNIE_CACHE"):
        return Path(os.environ["PUNIE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-punie"


@contextlib.contextmanager
def atomic_writer(path: Path | str) -> Iterator[IO[str]]:
    """A text stream whose content replaces ``path`` only when the block ends without error.

    The data goes to a temporary file in the same folder, flushed to disk, then moved over
    ``path`` with ``os.replace``; on error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as stream:
        stream.write(text)
