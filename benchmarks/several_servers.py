"""One mlx_lm server against two (``--punie-start-servers``) on the same cases, cache off.

Each round runs ``pytest evals/`` once with one server and once with two, in alternating order
(the machine may be shared: alternating pairs keep a drift in load from favouring one side).
The table gives each run's wall time (server start-up included), the requests each server
answered, output tokens per second, and the cases' mean latency.

    python benchmarks/several_servers.py [--rounds 2] [-k EXPRESSION] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, run_evals, table


def _figures(seconds: float, document: dict[str, Any]) -> dict[str, Any]:
    cases = document["cases"]
    tokens = sum((c.get("response") or {}).get("output_tokens", 0) for c in cases)
    latency = [(c.get("response") or {}).get("latency_s", 0.0) for c in cases]
    server = document["metadata"].get("server") or {}
    answered = [str(s["answered"]) for s in server.get("servers", [])] or ["all"]
    return {
        "seconds": seconds,
        "cases": len(cases),
        "tokens": tokens,
        "tps": tokens / seconds,
        "latency": statistics.mean(latency) if latency else 0.0,
        "answered": " / ".join(answered),
        "score": statistics.mean(c["score"] for c in cases) if cases else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    parser.add_argument("--concurrency", type=int, default=16, help="per server")
    args = parser.parse_args()
    extra = [f"--punie-concurrency={args.concurrency}"]
    if args.select:
        extra += ["-k", args.select]
    print("\n".join(machine_facts()))
    rows = []
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            for count in order:
                name = f"servers{count}-round{round_}"
                seconds, document = run_evals(
                    Path(tmp), name, *extra, f"--punie-start-servers={count}"
                )
                figures = _figures(seconds, document)
                runs[count].append(figures)
                rows.append(
                    [round_ + 1, count, figures["cases"], f"{figures['seconds']:.0f}",
                     figures["answered"], f"{figures['tps']:.1f}", f"{figures['latency']:.1f}",
                     f"{figures['score']:.3f}"]
                )  # fmt: skip
                print(f"  round {round_ + 1}, {count} server(s): {figures['seconds']:.0f} s")
    print()
    header = ["round", "servers", "cases", "wall s", "answered", "out tok/s", "latency s", "score"]
    print(table(header, rows))
    one = statistics.mean(r["seconds"] for r in runs[1])
    two = statistics.mean(r["seconds"] for r in runs[2])
    print(f"\nmean wall time: one server {one:.0f} s, two servers {two:.0f} s ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
