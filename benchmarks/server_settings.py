"""Wall time of `pytest evals/` per server setting, and how many answers differ from concurrency 1.

Each setting starts its own mlx_lm server (OpenBLAS, the chat template the plugin would choose,
the setting's flags) and runs the whole suite against it with `--punie-base-url`; a setting is
only worth having when every answer (text and tool calls) is the one a concurrency-1 run gives.
Also measures `-n 2` against no `-n` on the same settings.

    python benchmarks/server_settings.py [--only NAME ...] [--rounds N]
        [--reference RESULTS.json] [--keep DIR]

``--reference`` takes the reference answers from an earlier concurrency-1 run's results (kept
with ``--keep``) instead of running concurrency 1 again; ``--rounds`` runs the chosen settings
that many times, alternating, so each is measured more than once side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, run_evals, server, table

from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.default_model import default_model_path

# name, cases in flight, server flags, pytest flags
SETTINGS: list[tuple[str, int, tuple[str, ...], tuple[str, ...]]] = [
    ("concurrency 1 (reference answers)", 1, (), ()),
    ("concurrency 16, server defaults (plugin default)", 16, (), ()),
    ("concurrency 16, -n 2", 16, (), ("-n", "2")),
    ("concurrency 16, --prompt-cache-size 64", 16, ("--prompt-cache-size", "64"), ()),
    ("concurrency 16, --prompt-concurrency 16", 16, ("--prompt-concurrency", "16"), ()),
    ("concurrency 16, --prefill-step-size 512", 16, ("--prefill-step-size", "512"), ()),
    (
        "concurrency 16, --prompt-concurrency 16 --prefill-step-size 512",
        16,
        ("--prompt-concurrency", "16", "--prefill-step-size", "512"),
        (),
    ),
    (
        "concurrency 16, --prompt-concurrency 16, -n 2",
        16,
        ("--prompt-concurrency", "16"),
        ("-n", "2"),
    ),
    ("concurrency 24", 24, (), ()),
]


def answers(document: dict[str, Any]) -> dict[str, Any]:
    """Each case's answer: its text and tool calls (what scoring reads)."""
    out = {}
    for case in document["cases"]:
        response = case.get("response") or {}
        calls = [(c.get("name"), c.get("arguments")) for c in response.get("tool_calls", [])]
        out[case["nodeid"]] = (response.get("text"), calls)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="run only the settings with these exact names")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--reference", type=Path, help="results JSON of a concurrency-1 run")
    parser.add_argument("--keep", type=Path, help="copy each run's results JSON here")
    args = parser.parse_args()
    model = str(default_model_path())
    template = choose_template("auto", model).template
    template_args = ("--chat-template", template) if template else ()
    chosen = [s for s in SETTINGS if not args.only or any(o == s[0] for o in args.only)]
    chosen = chosen * args.rounds
    rows: list[list[Any]] = []
    reference: dict[str, Any] | None = None
    if args.reference:
        reference = answers(json.loads(args.reference.read_text()))
        print(f"reference answers: {args.reference} ({len(reference)} cases)")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, in_flight, flags, pytest_flags) in enumerate(chosen):
            with server(model, extra_args=(*template_args, *flags)) as srv:
                print(f"{name}: server BLAS: {srv.blas}", flush=True)
                seconds, document = run_evals(
                    Path(tmp),
                    f"setting{index}",
                    f"--punie-base-url={srv.base_url}",
                    f"--punie-concurrency={in_flight}",
                    *pytest_flags,
                )
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"setting{index}.json").write_text(json.dumps(document))
            got = answers(document)
            if reference is None:
                reference = got
            differ = sum(got.get(k) != v for k, v in reference.items())
            tokens = sum(
                (c.get("response") or {}).get("output_tokens", 0) for c in document["cases"]
            )
            rows.append(
                [name, len(got), f"{seconds:.1f}", tokens, differ, f"{document['overall']:.3f}"]
            )
            print(
                table(
                    ["setting", "cases", "wall s", "output tokens", "answers differing", "overall"],
                    rows[-1:],
                ),
                flush=True,
            )
    print("\n".join(machine_facts()))
    print("one run per setting, in this order; the first row's answers are the reference\n")
    print(
        table(["setting", "cases", "wall s", "output tokens", "answers differing", "overall"], rows)
    )


if __name__ == "__main__":
    main()
