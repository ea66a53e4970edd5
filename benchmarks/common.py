"""Shared pieces of the benchmark scripts: machine facts, a table printer, timed requests."""

from __future__ import annotations

import json
import os
import platform
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_punie.serving.default_model import default_model_path
from pytest_punie.serving.server import MlxServer

ROOT = Path(__file__).resolve().parent.parent


def machine_facts() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("mlx", "mlx-lm", "pydantic-ai-slim")
    )
    return [
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{memory:.0f} GiB",
        f"python {platform.python_version()}, {versions}",
    ]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (readable in a terminal and pasteable into RESULTS.md)."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


@contextmanager
def server(
    model: str | None = None,
    openblas: bool = True,
    log: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[MlxServer]:
    """An mlx_lm server on ``model`` (default: the default model), with or without OpenBLAS."""
    previous = os.environ.get("PUNIE_OPENBLAS")
    os.environ["PUNIE_OPENBLAS"] = "1" if openblas else "0"
    log = log or Path("/tmp") / f"punie-bench-{os.getpid()}-{time.monotonic_ns()}.log"
    instance = MlxServer(model or str(default_model_path()), log_path=log, extra_args=extra_args)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        if previous is None:
            os.environ.pop("PUNIE_OPENBLAS", None)
        else:
            os.environ["PUNIE_OPENBLAS"] = previous


def run_evals(
    workdir: Path, name: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[float, dict[str, Any]]:
    """`pytest evals/` in a fresh process (``env``: its environment, default this one's): its
    wall seconds and its results document."""
    import subprocess
    import sys

    results = workdir / f"{name}.json"
    command = [sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider",
               "--punie-history=none", "--punie-cache=off",  # every run asks the server
               f"--punie-results={results}", *extra]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    # exit 1 is failed cases (a weak model fails many): fine. Errors, or no results, are not.
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    if done.returncode not in (0, 1) or not results.is_file():
        raise RuntimeError(f"{name}: pytest exited {done.returncode}:\n{tail}")
    document: dict[str, Any] = json.loads(results.read_text())
    errors = [c["nodeid"] for c in document.get("cases", []) if c.get("outcome") == "error"]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} cases errored ({errors[:3]}...):\n{tail}")
    return seconds, document


def stream_completion(base_url: str, prompt: str, max_tokens: int = 128) -> dict[str, float | str]:
    """One streamed chat completion: prompt tok/s until the first token, then generation tok/s."""
    body = {
        "model": "default_model",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    first = None
    text = []
    usage: dict[str, int] = {}
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter()
                    text.append(piece)
    ended = time.perf_counter()
    first = first or ended
    generated = usage.get("completion_tokens", len(text))
    return {
        "text": "".join(text),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": generated,
        "prompt_tps": usage.get("prompt_tokens", 0) / max(first - started, 1e-9),
        "generation_tps": max(generated - 1, 0) / max(ended - first, 1e-9),
        "seconds": ended - started,
    }
