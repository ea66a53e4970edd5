"""Throughput of the baseline suite through the plugin vs a plain sequential pydantic-ai loop.

Both send the same cases (collected from evals/) to the same mlx_lm server, one after the other
in one run. The plugin runs with several --punie-concurrency values; the table gives output
tokens per second and the ratio to the sequential loop.

    python benchmarks/throughput.py [--concurrency 8 16 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_facts, run_evals, server, table

from pytest_punie.conversation.agent import make_agent, make_model
from pytest_punie.conversation.response import from_messages
from pytest_punie.options import Settings
from pytest_punie.serving.server import ServerInfo
from pytest_punie.stash import CASE_KEY
from pytest_punie.tools.workspace import create_workspace


class _Collector:
    def __init__(self) -> None:
        self.cases = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.cases = [item.stash[CASE_KEY] for item in session.items if CASE_KEY in item.stash]


def collect_cases(evals: Path) -> list:
    collector = _Collector()
    pytest.main(
        [str(evals), "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        plugins=[collector],
    )
    return [c for c in collector.cases if c.prompt]


async def sequential(
    cases: list, info: ServerInfo, settings: Settings, workdir: Path
) -> tuple[float, int]:
    model = make_model(info, settings.request_spec())
    tokens = 0
    started = time.perf_counter()
    for index, case in enumerate(cases):
        workspace = create_workspace(case.workspace, workdir / f"seq-{index}")
        agent = make_agent(model, case.tools, workspace, case.system_prompt)
        result = await agent.run(case.prompt)
        tokens += from_messages(result.all_messages(), result.output).output_tokens
    elapsed = time.perf_counter() - started
    await model.client.close()
    return elapsed, tokens


def through_plugin(base_url: str, concurrency: int, workdir: Path) -> tuple[float, int, int]:
    elapsed, document = run_evals(
        workdir, f"plugin-{concurrency}", f"--punie-base-url={base_url}",
        f"--punie-concurrency={concurrency}",
    )  # fmt: skip
    cases = document["cases"]
    return elapsed, sum(c["response"]["output_tokens"] for c in cases if c["response"]), len(cases)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    cases = collect_cases(ROOT / "evals")
    settings = Settings()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, server() as srv:
        workdir = Path(tmp)
        info = ServerInfo(base_url=srv.base_url, model_name="default_model", model=srv.model)
        plugin_runs = [(c, *through_plugin(srv.base_url, c, workdir)) for c in args.concurrency]
        seq_seconds, seq_tokens = asyncio.run(sequential(cases, info, settings, workdir))
    seq_tps = seq_tokens / seq_seconds
    rows.append(
        [
            "sequential pydantic-ai loop",
            len(cases),
            f"{seq_seconds:.1f}",
            seq_tokens,
            f"{seq_tps:.1f}",
            "1.00",
            "1.00",
        ]
    )
    for concurrency, seconds, tokens, n in plugin_runs:
        tps = tokens / seconds
        rows.append(
            [
                f"pytest evals/ --punie-concurrency={concurrency}",
                n,
                f"{seconds:.1f}",
                tokens,
                f"{tps:.1f}",
                f"{tps / seq_tps:.2f}",
                f"{seq_seconds / seconds:.2f}",
            ]
        )
    print("\n".join(machine_facts()))
    print(
        "default model, OpenBLAS, max_tokens 256, temperature 0; plugin wall time includes "
        "pytest start-up, collection, scoring and the HTML/JSON reports\n"
    )
    print(
        table(
            [
                "run",
                "cases",
                "wall s",
                "output tokens",
                "tokens/s",
                "tokens/s ratio",
                "wall-time ratio",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
