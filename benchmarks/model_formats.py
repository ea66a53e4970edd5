"""float32, bfloat16, float16 and the 4-bit original of the default model: speed and answers.

Each format is converted from the same GGUF, served by the plugin's server (OpenBLAS), and asked
the baseline prompts one at a time; greedy answers are compared with the 4-bit original's.

    python benchmarks/model_formats.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, server, stream_completion, table

from pytest_punie.default_model import default_gguf
from pytest_punie.gguf import convert_gguf

PROMPTS = [
    "What is 15 * 23?",
    "What is the capital of France?",
    "Write a function to calculate factorial",
    "What is 144 divided by 12?",
    "List all Python files in the workspace",
    "Write a Python function reverse_string(s) that returns s reversed.",
]
FORMATS = [
    ("4-bit (Q4_1, as in the GGUF)", None),
    ("float32", "float32"),
    ("bfloat16", "bfloat16"),
    ("float16", "float16"),
]


def main() -> None:
    rows = []
    reference: list[str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype in FORMATS:
            folder = convert_gguf(default_gguf(), Path(tmp) / (dtype or "q4"), dtype=dtype)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
            with server(str(folder)) as srv:
                stream_completion(srv.base_url, "Hi", max_tokens=4)
                runs = [stream_completion(srv.base_url, p, max_tokens=96) for p in PROMPTS]
            texts = [str(r["text"]) for r in runs]
            reference = reference or texts
            same = sum(a == b for a, b in zip(texts, reference, strict=False))
            rows.append(
                [
                    name,
                    f"{size:.0f}",
                    f"{statistics.median(r['prompt_tps'] for r in runs):.1f}",
                    f"{statistics.median(r['generation_tps'] for r in runs):.1f}",
                    f"{same}/{len(PROMPTS)}",
                ]
            )
    print("\n".join(machine_facts()))
    print("default model, OpenBLAS preloaded, one request at a time, max_tokens 96, greedy\n")
    print(
        table(
            ["format", "MiB", "prompt tok/s", "generation tok/s", "answers identical to 4-bit"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
