"""Wall time of `pytest evals/` with and without `-n 2`, per OpenBLAS thread count of the server.

The plugin gives the model server the cores less one (``system.blas.threads``); this measures
that choice against a thread for every core (what OpenBLAS does by itself), with and without
xdist, in alternating order so each setting meets the same load. The answers must be the same
in every run (the thread count changes no token); the load average is printed beside each run,
because a busy machine is where a thread per core hurts.

    python benchmarks/blas_threads.py [--rounds N] [-k EXPRESSION] [--max-tokens N]
        [--threads both|default]

``--threads default -k '' --max-tokens 0`` is issue 22's check: the whole suite as a user runs it
(``pytest evals/`` against ``pytest -n 2 evals/``), two pairs in both orders.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, run_evals, table

from pytest_punie.system.blas import THREADS_ENV, threads, usable_cores

HEADER = ["round", "setting", "cases", "wall s", "load", "same answers"]


def answers(document: dict) -> dict[str, str]:
    return {c["nodeid"]: c.get("response", {}).get("text", "") for c in document["cases"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-k", default="reasoning", help="which cases (pytest -k); '' for all")
    parser.add_argument("--max-tokens", type=int, default=96, help="0: the suite's own")
    parser.add_argument("--threads", choices=("both", "default"), default="both",
                        help="default: only the plugin's thread count")  # fmt: skip
    args = parser.parse_args()
    cores = usable_cores()
    default = str(threads(spare=1))
    settings = [
        (f"{default} thread(s) (plugin default)", default, ()),
        (f"{default} thread(s) (plugin default), -n 2", default, ("-n", "2")),
        (f"{cores} threads (one per core)", str(cores), ()),
        (f"{cores} threads (one per core), -n 2", str(cores), ("-n", "2")),
    ]
    if args.threads == "default":
        settings = settings[:2]
    extra = ["-p", "no:randomly"]
    if args.max_tokens:
        extra.append(f"--punie-max-tokens={args.max_tokens}")
    if args.k:
        extra += ["-k", args.k]
    rows: list[list[object]] = []
    reference: dict[str, str] | None = None
    with tempfile.TemporaryDirectory(prefix="punie-blas-threads-") as folder:
        for round_ in range(1, args.rounds + 1):
            order = settings if round_ % 2 else settings[::-1]
            for name, count, flags in order:
                os.environ[THREADS_ENV] = count
                seconds, document = run_evals(Path(folder), f"r{round_}-{count}-{len(flags)}",
                                              *extra, *flags)  # fmt: skip
                load = os.getloadavg()[0]
                got = answers(document)
                reference = reference or got
                same = sum(got.get(k) == v for k, v in reference.items())
                rows.append([round_, name, len(got), f"{seconds:.1f}", f"{load:.1f}",
                             f"{same}/{len(reference)}"])  # fmt: skip
                print(
                    table(
                        ["round", "setting", "cases", "wall s", "load", "same answers"], rows[-1:]
                    )
                )
    print("\n".join(machine_facts()))
    print(table(HEADER, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
