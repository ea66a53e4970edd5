"""The best checkpoint by task score on a real run: the ``tool-calling`` recipe trained with a
checkpoint every ``--save-every`` iterations, each scored on part of the eval suite, the best
one kept.

Runs ``pytest training/ --punie-recipe=tool-calling --punie-save-every=N
--punie-select-by=FIGURE --punie-select-cases=CASES`` (what a user runs) in a temporary folder,
with the recipe's settings except the iterations, and the validation loss measured at every
checkpoint (``steps_per_eval`` = N: mlx_lm reports it before the checkpoint's iteration, on the
weights of the one before). Then prints, from the adapter's manifest, one row per checkpoint:
its iteration, the training and validation loss near it, the figure it was chosen by, the
overall mean of the cases scored, and which was selected. The base model's row comes first.

Its defaults (60 iterations, a checkpoint every 20, the 17 cases of
``evals/test_tool_calling.py``) cost 60 training iterations and four eval runs of 17 cases. On
an idle 2-core CPU that is about 20 minutes (estimated: the recipe trains at about 9 s/iter, see
"Tool-calling recipe" in RESULTS.md). On a busy one it is far more: at load average 6-10 the
first attempt trained at 41-67 s/iter and each eval run took 7-9 minutes, so it did not finish
within an hour; there, ``OPENBLAS_NUM_THREADS=1`` (inherited by the training process and the
servers) trains 4-5x faster ("Training over two local ranks" in RESULTS.md), and
``--iters 40`` keeps two checkpoints. The eval runs use the response cache of the folder this
is started from (a re-run asks the base model nothing again; its checkpoints are new).

    python benchmarks/checkpoint_selection.py [--iters 60] [--save-every 20]
        [--select-by tool_calling] [--select-cases test_tool_calling.py] [--early-stop K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, table


def loss_near(losses: list[list[float]], iteration: int) -> str:
    """The last loss reported at or before ``iteration``, with the iteration it was reported at."""
    before = [(int(i), loss) for i, loss in losses if i <= iteration]
    if not before:
        return "-"
    at, loss = before[-1]
    return f"{loss:.3f}" if at == iteration else f"{loss:.3f} (it {at})"


def rows(manifest: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table's header and one row per checkpoint (the base model first): the losses near it,
    the figure it was chosen by (when that is not ``overall``), each category's mean, the
    overall mean and whether it was selected."""
    section = manifest["checkpoints"]
    train = manifest["losses"]["train_losses"]
    valid = manifest["losses"]["val_losses"]
    base = section["base"]
    categories = sorted(base.get("categories", {}))
    figure = section["select_by"]
    own_column = figure not in (*categories, "overall")  # else its column is already there
    header = ["iteration", "train loss", "val loss", *([figure] if own_column else [])]
    header += [*categories, "overall", "selected"]

    def scores(entry: dict[str, Any]) -> list[str]:
        found = [f"{entry['figure']:.1%}"] if own_column else []
        found += [f"{entry.get('categories', {}).get(c, float('nan')):.1%}" for c in categories]
        return [*found, f"{entry['overall']:.1%}"]

    found = [["0 (base)", "-", loss_near(valid, 0), *scores(base), ""]]
    for entry in section["checkpoints"]:
        iteration = entry["iteration"]
        found.append(
            [str(iteration), loss_near(train, iteration), loss_near(valid, iteration),
             *scores(entry), "selected" if entry["selected"] else ""]
        )  # fmt: skip
    return header, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--select-by", default="tool_calling")
    parser.add_argument("--select-cases", default="test_tool_calling.py")
    parser.add_argument("--early-stop", type=int)
    parser.add_argument("--keep", type=Path, help="write the adapter here instead of a temp dir")
    args = parser.parse_args()
    if args.select_by == "average":
        parser.error("--select-by average scores no checkpoint: nothing to tabulate here")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.keep or Path(tmp) / "adapter"
        config = Path(tmp) / "eval-at-checkpoints.yaml"
        config.write_text(f"steps_per_eval: {args.save_every}\n")
        command = [
            sys.executable, "-m", "pytest", str(ROOT / "training"), "-p", "no:cacheprovider",
            "-q", "--punie-recipe=tool-calling", f"--punie-iters={args.iters}",
            f"--punie-train-config={config}", f"--punie-adapter-out={adapter}",
            f"--punie-save-every={args.save_every}", f"--punie-select-by={args.select_by}",
            f"--punie-select-cases={args.select_cases}",
            *([f"--punie-early-stop={args.early_stop}"] if args.early_stop else []),
        ]  # fmt: skip
        print(" ".join(command[2:]), flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=Path.cwd(), check=False)
        wall = time.perf_counter() - started
        manifest_path = adapter / "punie-manifest.json"
        if done.returncode != 0 or not manifest_path.is_file():
            raise SystemExit(f"the training run failed (exit {done.returncode}); see above")
        manifest = json.loads(manifest_path.read_text())
    section = manifest["checkpoints"]
    losses = manifest["losses"]
    print()
    print("\n".join(machine_facts()))
    print(
        f"tool-calling recipe, {args.iters} iterations, a checkpoint every {args.save_every}, "
        f"scored by {args.select_by} on {section['checkpoints'][0]['cases']} cases "
        f"({args.select_cases}); {losses['seconds_per_iteration']:.1f} s/iter, "
        f"{wall / 60:.1f} min in all; load average before: {load:.1f} on {os.cpu_count()} cores"
    )
    print(table(*rows(manifest)))
    print(f"selected: iteration {section['selected']}, {section['reason']}")


if __name__ == "__main__":
    main()
