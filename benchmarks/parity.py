"""Deployed is tested: an adapter as served against its fused and 4-bit forms on the default model.

Given an adapter (``--adapter``), or else a small one trained here on the shipped sample data
(``training/data/sample``, the LoRA defaults with ``--iters`` iterations), it runs
``pytest evals/ --punie-adapter=ADAPTER --punie-parity=fused,q4`` (every case on the adapter as
``mlx_lm server --adapter-path`` serves it, on the model ``mlx_lm fuse`` makes of it, and on that
model quantized by ``mlx_lm convert -q``), and prints the parity table per category from the
results file: each model's score, the change against the adapter and the paired bootstrap p,
with the gate's verdict (``--punie-max-regression``, default 10 points).

The default run takes the 23 reasoning cases of ``evals/`` (``-k reasoning``) at
``--punie-max-tokens 192``, to stay within about 20 minutes on 2 cores: a few minutes of training
(2.4 s an iteration on a quiet machine), then three models answering 23 cases, one model after
the other. ``--select 'reasoning or test_tool_calling'`` takes 40 cases (53 minutes on a 2-core
machine at load 4-9, besides 29 minutes of training there; see ``RESULTS.md``), ``--select ''``
the whole suite.

    python benchmarks/parity.py [--adapter DIR] [--variants fused,q4] [--select EXPR]
                                [--max-tokens N] [--iters N] [--max-regression 10%]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, table

from pytest_punie.finetune.lora import LoraConfig, train_in_subprocess
from pytest_punie.results.document import load_run
from pytest_punie.results.render import percent
from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.default_model import default_model_path

SAMPLE = ROOT / "training" / "data" / "sample"
DEFAULT_SELECT = "reasoning"


def train_small_adapter(out: Path, iters: int) -> Path:
    """An adapter trained on the sample data with the suite's LoRA defaults."""
    model = str(default_model_path())
    template = choose_template("auto", model).template
    config = LoraConfig(iters=iters, steps_per_report=max(1, iters // 4), steps_per_eval=iters)
    started = time.perf_counter()
    manifest = train_in_subprocess(model, SAMPLE, out, config, chat_template=template)
    losses = manifest["losses"]["train_losses"]
    print(
        f"trained {out} in {time.perf_counter() - started:.0f} s ({iters} iterations, train loss "
        f"{losses[0][1]:.3f} -> {losses[-1][1]:.3f})",
        flush=True,
    )
    return out


def run_parity(workdir: Path, adapter: Path, args: argparse.Namespace) -> tuple[float, int, Any]:
    """``pytest evals/`` with ``--punie-parity``: its wall seconds, exit status and results."""
    results = workdir / "parity.json"
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider",
        "--punie-history=none", "--punie-cache=off", f"--punie-results={results}",
        f"--punie-adapter={adapter}", f"--punie-parity={args.variants}",
        f"--punie-max-tokens={args.max_tokens}",
        f"--punie-max-regression={args.max_regression}",
        *(["-k", args.select] if args.select else []),
    ]  # fmt: skip
    print("$ " + " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    (workdir / "pytest.log").write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not results.is_file():
        tail = done.stdout[-3000:] + done.stderr[-2000:]
        raise RuntimeError(f"pytest exited {done.returncode}:\n{tail}")
    return seconds, done.returncode, load_run(results)


def _p(value: float, paired: int) -> str:
    if not paired:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", type=Path, help="the adapter (default: train one here)")
    parser.add_argument("--variants", default="fused,q4")
    parser.add_argument("--select", default=DEFAULT_SELECT, help="-k expression ('' = all)")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--iters", type=int, default=40, help="training iterations")
    parser.add_argument("--max-regression", default="*=10%")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="punie-parity-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        adapter = args.adapter or train_small_adapter(workdir / "adapter", args.iters)
        seconds, status, document = run_parity(workdir, adapter.resolve(), args)
        parity = document.parity
        if parity is None:
            raise RuntimeError("the results file has no parity section")
        header = ["category", "cases", "adapter"]
        for variant in parity.variants:
            header += [variant.name, "change", "paired p", "verdict"]
        rows = []
        for name in parity.categories:
            found = [variant.row(name) for variant in parity.variants]
            first = next((r for r in found if r is not None), None)
            row = [
                name,
                str(first.paired if first else 0),
                percent(first.adapter if first else None),
            ]
            for r in found:
                if r is None:
                    row += ["-", "-", "-", "-"]
                    continue
                change = "-" if r.change is None else f"{r.change * 100:+.1f} pts"
                row += [percent(r.variant), change, _p(r.p_bootstrap, r.paired), r.verdict]
            rows.append(row)
        print()
        print("\n".join(machine_facts()))
        print(f"adapter: {adapter}; cases: {args.select or 'all of evals/'}; max tokens "
              f"{args.max_tokens}; pytest took {seconds:.0f} s, exit {status}")  # fmt: skip
        for variant in parity.variants:
            server = variant.server or {}
            digest = str(server.get("model_hash"))[:12]
            print(f"{variant.name}: {server.get('model')} (sha256 {digest})")
        print(table(header, rows))
        for variant in parity.variants:
            if variant.broken:
                print(f"{variant.name} broke {len(variant.broken)}: {', '.join(variant.broken)}")
            if variant.fixed:
                print(f"{variant.name} fixed {len(variant.fixed)}: {', '.join(variant.fixed)}")
        print("gate: " + ("; ".join(parity.failures) if parity.failures else "passed"))
        print(json.dumps({"seconds": round(seconds), "exit": status}))


if __name__ == "__main__":
    main()
