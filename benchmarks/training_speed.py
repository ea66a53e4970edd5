"""The training pipeline vs raw `mlx_lm lora` on the same data and config, in one run.

Both train the default model on the shipped sample data (already valid and filtered, so the
pipeline's own steps cost little) with the same LoRA settings and OpenBLAS preloaded. Wall
time and peak resident memory come from the OS for every run; seconds per iteration and
tokens/s from the pipeline's manifest (mlx_lm's own table is colour output, not an
interface). Raw mlx_lm without OpenBLAS is timed only with --with-reference-blas: it takes
about 80 s per iteration here.

    python benchmarks/training_speed.py [--iters 16]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, table

from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.default_model import default_model_path
from pytest_punie.system.blas import preload_openblas

SAMPLE = ROOT / "training" / "data" / "sample"


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and the peak resident memory (GB) of the command and its children."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], env=env, cwd=cwd, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    kib = next(
        int(line.split(":")[1]) for line in done.stderr.splitlines() if "Maximum resident" in line
    )
    return elapsed, kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=16)
    parser.add_argument(
        "--with-reference-blas",
        action="store_true",
        help="also time raw mlx_lm lora without OpenBLAS (about 80 s per iteration here)",
    )
    args = parser.parse_args()
    model = str(default_model_path())
    template = choose_template("auto", model).template
    settings = {
        "rank": 8,
        "alpha": 16.0,
        "num_layers": 4,
        "batch_size": 2,
        "learning_rate": 2e-4,
        "max_seq_length": 1024,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        yaml = work / "lora.yaml"
        yaml.write_text(
            json.dumps(
                {
                    "model": model,
                    "train": True,
                    "data": str(SAMPLE),
                    "iters": args.iters,
                    "batch_size": 2,
                    "num_layers": 4,
                    "learning_rate": 2e-4,
                    "max_seq_length": 1024,
                    "steps_per_report": 4,
                    "steps_per_eval": args.iters,
                    "val_batches": 2,
                    "save_every": args.iters,
                    "adapter_path": str(work / "raw"),
                    "lora_parameters": {"rank": 8, "scale": 2.0, "dropout": 0.0},
                }
            )
        )  # JSON is YAML
        # raw mlx_lm with the same template the pipeline trains with (mlx_lm takes none)
        raw_model = work / "model-with-template"
        raw_model.mkdir()
        for f in Path(model).iterdir():
            (raw_model / f.name).symlink_to(f)
        config = json.loads((Path(model) / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (raw_model / "tokenizer_config.json").unlink()
        (raw_model / "tokenizer_config.json").write_text(json.dumps(config))
        yaml.write_text(yaml.read_text().replace(json.dumps(model), json.dumps(str(raw_model))))

        plain = dict(os.environ, PUNIE_OPENBLAS="0")
        fast = dict(os.environ)
        preload_openblas(fast)
        raw = [sys.executable, "-m", "mlx_lm", "lora", "-c", str(yaml)]
        raw_blas = run(raw, fast, work)
        pipeline = [
            sys.executable,
            "-m",
            "pytest_punie.cli",
            "train",
            str(SAMPLE),
            "--out",
            str(work / "punie"),
            "--iters",
            str(args.iters),
            "--rank",
            "8",
            "--alpha",
            "16",
            "--num-layers",
            "4",
            "--batch-size",
            "2",
            "--learning-rate",
            "2e-4",
            "--max-seq-length",
            "1024",
        ]
        punie = run(pipeline, dict(os.environ), work)
        raw_plain = run(raw, plain, work) if args.with_reference_blas else None
        manifest = json.loads((work / "punie" / "punie-manifest.json").read_text())
    losses = manifest["losses"]
    if raw_plain is not None:
        rows.append(
            ["raw mlx_lm lora (reference BLAS)", f"{raw_plain[0]:.1f}", "", "",
             f"{raw_plain[1]:.2f}"]
        )  # fmt: skip
    rows.append(["raw mlx_lm lora (OpenBLAS)", f"{raw_blas[0]:.1f}", "", "", f"{raw_blas[1]:.2f}"])
    rows.append(
        [
            "punie train (validate, filter, train)",
            f"{punie[0]:.1f}",
            f"{losses['seconds_per_iteration']:.2f}",
            f"{losses['mean_tokens_per_second']:.0f}",
            f"{punie[1]:.2f}",
        ]
    )
    rows.append(["pipeline / raw (OpenBLAS)", f"{punie[0] / raw_blas[0]:.3f}", "", "", ""])
    print("\n".join(machine_facts()))
    print(
        f"default model, sample data, {args.iters} iters, rank 8, alpha 16 (scale 2), "
        f"4 layers, batch 2; settings {settings}\n"
    )
    print(table(["run", "wall s", "s/iter", "tok/s", "peak RSS GB"], rows))


if __name__ == "__main__":
    main()
