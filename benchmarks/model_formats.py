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

from pytest_punie.scoring.code import assert_python_code
from pytest_punie.scoring.text import assert_keywords, assert_number
from pytest_punie.serving.default_model import default_gguf
from pytest_punie.serving.gguf import convert_gguf

# Each prompt with a check of a right answer (the same scorers the eval suite uses).
PROMPTS = {
    "What is 15 * 23?": lambda r: assert_number(r, 345),
    "What is the capital of France?": lambda r: assert_keywords(r, ["Paris"]),
    "Write a function to calculate factorial": lambda r: assert_python_code(
        r, tests=["assert factorial(5) == 120"]
    ),
    "What is 144 divided by 12?": lambda r: assert_number(r, 12),
    "What is 2 + 2?": lambda r: assert_number(r, 4),
    "Write a Python function reverse_string(s) that returns s reversed.": lambda r: (
        assert_python_code(r, tests=["assert reverse_string('abc') == 'cba'"])
    ),
}


def right(prompt: str, text: str) -> bool:
    try:
        PROMPTS[prompt](text)
    except AssertionError:
        return False
    return True


FORMATS = [
    ("4-bit (Q4_1, as in the GGUF)", None),
    ("float32", "float32"),
    ("bfloat16", "bfloat16"),
    ("float16", "float16"),
]


def main() -> None:
    rows = []
    reference: list[str] | None = None
    answers: list[tuple[str, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype in FORMATS:
            folder = convert_gguf(default_gguf(), Path(tmp) / (dtype or "q4"), dtype=dtype)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
            with server(str(folder)) as srv:
                stream_completion(srv.base_url, "Hi", max_tokens=4)
                runs = [stream_completion(srv.base_url, p, max_tokens=96) for p in PROMPTS]
            texts = [str(r["text"]) for r in runs]
            reference = reference or texts
            same = sum(a == b for a, b in zip(texts, reference, strict=True))
            correct = sum(right(p, t) for p, t in zip(PROMPTS, texts, strict=True))
            rows.append(
                [
                    name,
                    f"{size:.0f}",
                    f"{statistics.median(r['prompt_tps'] for r in runs):.1f}",
                    f"{statistics.median(r['generation_tps'] for r in runs):.1f}",
                    f"{same}/{len(PROMPTS)}",
                    f"{correct}/{len(PROMPTS)}",
                ]
            )
            answers.append((name, texts))
    print("\n".join(machine_facts()))
    print("default model, OpenBLAS preloaded, one request at a time, max_tokens 96, greedy\n")
    print(
        table(
            ["format", "MiB", "prompt tok/s", "generation tok/s", "same as 4-bit", "right"],
            rows,
        )
    )
    print("\nwhere answers differ from the 4-bit original (first 70 characters):")
    for index, prompt in enumerate(PROMPTS):
        texts = {name: t[index] for name, t in answers}
        if len(set(texts.values())) > 1:
            print(f"  {prompt}")
            for name, text in texts.items():
                print(f"    {name:30} {text[:70]!r}")


if __name__ == "__main__":
    main()
