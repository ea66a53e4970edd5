"""Start-up: `pytest evals/ -k <one case>` vs a bare `mlx_lm server` start plus one request.

The model cache is warm (converted once before timing). Each is measured ``--repeat`` times,
alternating, and the medians are compared.

    python benchmarks/startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, table

from pytest_punie.serving.default_model import default_model_path
from pytest_punie.serving.server import free_port, probe_completion
from pytest_punie.system.blas import preload_openblas

PROMPT = "What is 15 * 23?"


def bare_server(model: str) -> float:
    """Seconds from launching a plain mlx_lm server to the answer of one real request."""
    port = free_port()
    env = dict(os.environ)
    preload_openblas(env)  # the same BLAS as the plugin's server, to be fair
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx_lm", "server", "--model", model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        while True:
            try:
                if probe_completion(url, "default_model")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        import json
        import urllib.request

        body = {
            "model": "default_model",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 256,
            "temperature": 0.0,
        }
        request = urllib.request.Request(
            f"{url}/chat/completions",
            json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=300).read()
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait()


def through_plugin(workdir: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "evals"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "multiply",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or " passed" not in done.stdout:
        raise SystemExit(
            f"the timed pytest run failed (exit {done.returncode}):\n{done.stdout[-3000:]}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = str(default_model_path())  # warm cache
    bare, plugin = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            bare.append(bare_server(model))
            plugin.append(through_plugin(Path(tmp)))
    b, p = statistics.median(bare), statistics.median(plugin)
    print("\n".join(machine_facts()))
    print(f"median of {args.repeat} alternating runs, warm model cache, OpenBLAS in both\n")
    print(
        table(
            ["run", "seconds (median)", "all runs"],
            [
                [
                    "bare mlx_lm server start + one request",
                    f"{b:.2f}",
                    " ".join(f"{x:.2f}" for x in bare),
                ],
                ["pytest evals/ -k multiply", f"{p:.2f}", " ".join(f"{x:.2f}" for x in plugin)],
                ["ratio (goal <= 1.5)", f"{p / b:.2f}", ""],
            ],
        )
    )


if __name__ == "__main__":
    main()
