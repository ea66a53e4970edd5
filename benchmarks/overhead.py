"""Plugin time per case (collection, scoring, reports) vs the model's generation time per case.

The baseline suite runs twice through pytest: once against an instant fake OpenAI server (all
that is left is the plugin's and pytest's own work), once against the real default model with
--punie-concurrency=1 (generation time per case, unbatched).

    python benchmarks/overhead.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine_facts, run_evals, server, table

from pytest_punie.testing import FakeOpenAI


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with FakeOpenAI({}, default="The answer is 42.") as fake:
            fake_seconds, fake_doc = run_evals(workdir, "fake", f"--punie-base-url={fake.base_url}")
        with server() as srv:
            real_seconds, real_doc = run_evals(
                workdir, "real", f"--punie-base-url={srv.base_url}", "--punie-concurrency=1"
            )
    cases = len(fake_doc["cases"])
    plugin_per_case = fake_seconds / cases
    generation = [c["response"]["latency_s"] for c in real_doc["cases"] if c["response"]]
    generation_per_case = sum(generation) / len(generation)
    print("\n".join(machine_facts()))
    print(
        "baseline suite; plugin time includes pytest start-up, collection, scoring, HTML and JSON\n"
    )
    print(
        table(
            ["measure", "seconds"],
            [
                [f"suite against an instant server ({cases} cases)", f"{fake_seconds:.2f}"],
                ["plugin time per case", f"{plugin_per_case:.3f}"],
                ["suite against the default model, one case at a time", f"{real_seconds:.1f}"],
                ["generation time per case (mean latency)", f"{generation_per_case:.2f}"],
                ["overhead (goal < 5%)", f"{plugin_per_case / generation_per_case:.1%}"],
            ],
        )
    )


if __name__ == "__main__":
    main()
