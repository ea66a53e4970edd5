"""Tokens/s of a plain mlx_lm server vs the plugin's server (OpenBLAS preloaded on Linux).

Both serve the default model; each gets the same prompts one at a time (streamed, so prompt
and generation speed are measured apart), and their greedy answers are compared.

    python benchmarks/blas_speed.py [--matmul-only]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, server, stream_completion, table

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function to calculate factorial.",
    "Explain in two sentences why the sky is blue.",
    "List three uses of a hash map. " * 20,  # a long prompt, for prompt speed
]


def measure(openblas: bool) -> list[dict]:
    with server(openblas=openblas) as srv:
        stream_completion(srv.base_url, "Hi", max_tokens=4)  # warm-up
        return [stream_completion(srv.base_url, p, max_tokens=128) for p in PROMPTS]


def matmul() -> None:
    """GFLOP/s of a 1024 float32 matmul in MLX, reference BLAS vs the preloaded OpenBLAS,
    alternating rounds in fresh processes."""
    import os

    from pytest_punie.system.blas import matmul_gflops, preload_openblas

    fast = dict(os.environ)
    used = preload_openblas(fast)
    reference, openblas = [], []
    for _ in range(3):
        reference.append(matmul_gflops(dict(os.environ, PUNIE_OPENBLAS="0")))
        openblas.append(matmul_gflops(fast))
    print(f"BLAS: {used}")
    rows = [
        ["reference (MLX's wheel)", f"{max(reference):.1f}"],
        ["OpenBLAS (preloaded)", f"{max(openblas):.1f}"],
        ["ratio", f"{max(openblas) / max(reference):.1f}x"],
    ]
    print(table(["1024x1024 float32 matmul, best of 3", "GFLOP/s"], rows) + "\n")


def main() -> None:
    matmul()
    if "--matmul-only" in sys.argv:
        return
    plain = measure(openblas=False)
    punie = measure(openblas=True)
    rows = []
    for name, runs in (
        ("plain mlx_lm server (reference BLAS)", plain),
        ("pytest-punie server (OpenBLAS)", punie),
    ):
        prompt_tps = statistics.median(r["prompt_tps"] for r in runs)
        long_prompt_tps = runs[-1]["prompt_tps"]
        gen_tps = statistics.median(r["generation_tps"] for r in runs)
        rows.append([name, f"{long_prompt_tps:.1f}", f"{prompt_tps:.1f}", f"{gen_tps:.1f}"])
    ratio_prompt = punie[-1]["prompt_tps"] / plain[-1]["prompt_tps"]
    ratio_gen = statistics.median(r["generation_tps"] for r in punie) / statistics.median(
        r["generation_tps"] for r in plain
    )
    rows.append(["ratio", f"{ratio_prompt:.2f}x", "", f"{ratio_gen:.2f}x"])
    same = sum(a["text"] == b["text"] for a, b in zip(plain, punie, strict=False))
    print("\n".join(machine_facts()))
    print("default model (float32), one request at a time, max_tokens 128, temperature 0\n")
    print(table(["server", "long-prompt tok/s", "median prompt tok/s", "generation tok/s"], rows))
    print(f"\nidentical greedy answers with and without OpenBLAS: {same}/{len(PROMPTS)}")
    for a, b in zip(plain, punie, strict=False):
        if a["text"] != b["text"]:
            print(f"  differs: {a['text'][:80]!r} vs {b['text'][:80]!r}")


if __name__ == "__main__":
    main()
