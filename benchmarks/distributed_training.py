"""One process vs two local ranks (``--punie-train-hosts 127.0.0.1,127.0.0.1``) for LoRA training.

Each round trains the default model on the shipped sample data (the same LoRA settings, global
batch 2: one line per rank with two ranks) once per setting, in turn, so the machine's load
falls on every setting alike; the table gives each setting's median seconds per iteration and
tokens per second (from the manifest: mlx_lm's figures, summed over the ranks) and wall time
(loading the model and validation included). With hosts, the batches come in one order seeded
by the config's seed, so the rank settings train on the same batches and their seconds per
iteration compare directly; one process without hosts (what users get without the option) draws
a new order each run, so for it tokens per second is the fairer figure. ``one rank, 1 BLAS
thread`` tells the effect of OpenBLAS's thread count apart from that of the ranks: two ranks on
two cores run one OpenBLAS thread each.

    python benchmarks/distributed_training.py [--rounds 3] [--iters 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, table

from pytest_punie.finetune.lora import LoraConfig, train_in_subprocess
from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.default_model import default_model_path

SAMPLE = ROOT / "training" / "data" / "sample"
SETTINGS = {
    "one process (default)": ((), {}),
    "one rank (2 BLAS threads)": (("127.0.0.1",), {}),
    "one rank, 1 BLAS thread": (("127.0.0.1",), {"OPENBLAS_NUM_THREADS": "1"}),
    "two local ranks (1 BLAS thread each)": (("127.0.0.1", "127.0.0.1"), {}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=8)
    args = parser.parse_args()
    model = str(default_model_path())
    template = choose_template("auto", model).template
    config = LoraConfig(iters=args.iters, steps_per_report=2, steps_per_eval=args.iters)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETTINGS}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, (hosts, env) in SETTINGS.items():
                loads.append(os.getloadavg()[0])
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                started = time.perf_counter()
                try:
                    manifest = train_in_subprocess(
                        model, SAMPLE, Path(tmp) / f"{round_}-{len(results[name])}-{hosts}",
                        config, chat_template=template, hosts=hosts, progress=lambda _: None,
                    )  # fmt: skip
                finally:
                    for key, value in saved.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
                wall = time.perf_counter() - started
                losses = manifest["losses"]
                row = (losses["seconds_per_iteration"], losses["mean_tokens_per_second"], wall)
                results[name].append(row)
                print(f"round {round_ + 1} {name}: {row[0]:.2f} s/iter, {row[1]:.0f} tok/s, "
                      f"{wall:.0f} s wall, world {manifest['world_size']}", flush=True)  # fmt: skip
    base = statistics.median(r[1] for r in results["one process (default)"])
    rows = []
    for name, runs in results.items():
        per_iter = statistics.median(r[0] for r in runs)
        spread = f"{min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}"
        rows.append(
            [name, f"{per_iter:.2f}", spread,
             f"{statistics.median(r[1] for r in runs):.0f}",
             f"{statistics.median(r[2] for r in runs):.0f}",
             f"{statistics.median(r[1] for r in runs) / base:.2f}"]
        )  # fmt: skip
    print("\n".join(machine_facts()))
    print(f"{args.rounds} rounds, {args.iters} iterations each, load average (1 min) before the "
          f"runs {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")  # fmt: skip
    header = ["setting", "s/iter (median)", "range", "tok/s", "wall s", "tok/s vs default"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
