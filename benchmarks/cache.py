"""The response cache on the eval suite: a first run, the unchanged suite again, and a run after
changing only a scorer.

Each run is ``pytest evals/`` on the default model in a fresh copy of the suite (so the cache
starts empty and the repository is left alone), the plugin starting its own server. Model
requests are counted twice: on the client (each case's requests minus those the cache answered,
from the results JSON) and on the server (``POST /v1/chat/completions`` lines in its log, which
also hold the plugin's one-token readiness probe).

Goals: the re-run takes < 10% of the first run's wall time with identical scores; the run after
a scorer change sends no model request.

Extra arguments go to each pytest run, e.g. ``python cache.py -k reasoning
--punie-max-tokens=64 --punie-timeout=1200`` on a slow machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, machine_facts, table

SCORER_CHANGE = (
    "test_reasoning.py",
    'assert_keywords(punie_result, ["yes"])',
    'assert_keywords(punie_result, ["no"])',
)


def run_suite(workdir: Path, label: str, extra: list[str]) -> dict[str, Any]:
    results = workdir / f"results-{label}.json"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider",
         f"--punie-results={results}", "-o", "addopts=", *extra],
        cwd=workdir, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if not results.is_file():
        raise SystemExit(f"{label}: no results (exit {done.returncode}):\n{done.stdout[-3000:]}")
    document = json.loads(results.read_text())
    cases = document["cases"]
    sent = sum(
        (c["response"] or {}).get("requests", 0) - (c["response"] or {}).get("cached_requests", 0)
        for c in cases
    )
    server = document["metadata"]["server"] or {}
    log = Path(server.get("log_path") or "/nonexistent")
    posts: int | str = log.read_text().count('"POST /v1/chat/completions') if log.is_file() else -1
    if not server.get("base_url"):
        posts = "not started"  # the cache answered every request: no server was started
    return {
        "label": label,
        "wall": wall,
        "cases": len(cases),
        "cached": sum(bool(c.get("cached")) for c in cases),
        "sent": sent,
        "posts": posts,
        "scores": {c["nodeid"] + f"#{c['repeat']}": c["score"] for c in cases},
        "texts": {c["nodeid"]: (c["response"] or {}).get("text") for c in cases},
        "overall": document["overall"],
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="punie-cache-bench-"))
    try:
        shutil.copytree(ROOT / "evals", workdir / "evals", ignore=shutil.ignore_patterns(
            "report.html", "punie-results.json", "__pycache__", ".punie"))  # fmt: skip
        extra = sys.argv[1:]
        first = run_suite(workdir, "first", extra)
        again = run_suite(workdir, "again", extra)
        name, old, new = SCORER_CHANGE
        test_file = workdir / "evals" / name
        text = test_file.read_text()
        if old not in text:
            raise SystemExit(f"{name} no longer holds {old!r}: update SCORER_CHANGE")
        test_file.write_text(text.replace(old, new))
        rescored = run_suite(workdir, "scorer changed", extra)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for run in (first, again, rescored):
        rows.append(
            [
                run["label"],
                run["cases"],
                f"{run['wall']:.1f}",
                f"{run['wall'] / first['wall']:.3f}",
                run["cached"],
                run["sent"],
                run["posts"],
                f"{run['overall']:.3f}",
            ]
        )
    print("\n".join(machine_facts()))
    print(f"pytest evals {' '.join(extra)}")
    print(
        table(
            ["run", "cases", "wall s", "vs first", "cases cached", "model requests",
             "server POSTs", "overall"],
            rows,
        )
    )  # fmt: skip
    same = first["scores"] == again["scores"] and first["texts"] == again["texts"]
    changed = [k for k in first["scores"] if first["scores"][k] != rescored["scores"].get(k)]
    print(f"re-run: identical scores and texts: {same}")
    print(f"after the scorer change: {len(changed)} score(s) changed: {', '.join(changed)}")


if __name__ == "__main__":
    main()
