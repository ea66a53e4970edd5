"""The HTML report and the history page at scale: size and render time for 1,000 cases.

Runs a generated suite of N prompt cases (default 1000; three categories, a third with a tool
call, answers of 100-1,500 characters, about a third failing) twice against the fake OpenAI
server: once for a baseline, once with ``--html --self-contained-html --punie-baseline``, so the
report holds every case view and the side-by-side table. Then it opens the report in headless
Chromium three times and reports the median of: the wall time of ``--dump-dom`` (start, parse,
pytest-html's JavaScript building the rows, dump) minus the same for an empty page, and the
page's own load time (``performance.now()`` at the load event). Same for a history of 40 runs.

    python benchmarks/report_scale.py [N [KEEP.html]]
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine_facts, table

from pytest_punie.testing import FakeOpenAI

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

SUITE = """
import pytest
from pytest_punie import assert_keywords, assert_tool_called

CATEGORIES = ("code_generation", "reasoning", "tool_calling")

def _case(i):
    category = CATEGORIES[i % 3]
    tools = ["read_file"] if category == "tool_calling" else []
    return pytest.param(i, marks=pytest.mark.punie(
        category=category, prompt=f"question {i}", tools=tools,
        workspace={"README.md": "hello"} if tools else None), id=str(i))

@pytest.mark.parametrize("i", [_case(i) for i in range(N)])
def test_case(punie_result, i):
    if i % 3 == 2:
        assert_tool_called(punie_result, "read_file", {"path": "README.md"})
    else:
        assert_keywords(punie_result, ["answer"])
"""


def answers(n: int, shift: int) -> dict[str, object]:
    found: dict[str, object] = {}
    for i in range(n):
        words = "step by step, " * (5 + (i * 37) % 100)
        good = (i + shift) % 3 != 0
        if i % 3 == 2:
            path = "README.md" if good else "docs/README.md"
            found[f"question {i}"] = {
                "tool_calls": [{"name": "read_file", "arguments": {"path": path}}],
                "then": f"It says hello. {words}",
            }
        else:
            found[f"question {i}"] = f"Let me think {words}" + (
                " the answer is 42." if good else ""
            )
    return found


def run_suite(folder: Path, n: int, shift: int, *args: str) -> float:
    with FakeOpenAI(answers(n, shift)) as fake:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--punie-history=none",
             f"--punie-base-url={fake.base_url}", *args],
            cwd=folder, capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1) or "passed" not in done.stdout:
        raise SystemExit(f"the suite did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def render(chromium: str, page: Path, profile: Path) -> tuple[float, float | None, int]:
    """Wall seconds of --dump-dom, the page's load time (ms) and the number of case views."""
    copy = page.with_name("timed-" + page.name)
    copy.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>addEventListener('load', () => console.log("
            "'punie-load-ms=' + performance.now().toFixed(0)));</script></body>",
        ),
        encoding="utf-8",
    )
    started = time.perf_counter()
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
         "--v=0", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    load = re.search(r"punie-load-ms=(\d+)", done.stderr)
    return elapsed, float(load[1]) if load else None, done.stdout.count('class="punie-case"')


def measure(chromium: str, page: Path, profile: Path, blank: float) -> list[str]:
    results = [render(chromium, page, profile) for _ in range(3)]
    wall = statistics.median(r[0] for r in results) - blank
    loads = [r[1] for r in results if r[1] is not None]
    load = f"{statistics.median(loads) / 1000:.2f} s" if loads else "-"
    size = page.stat().st_size
    return [page.name, f"{size / 2**20:.2f} MiB", f"{wall:.2f} s", load, str(results[0][2])]


def history(folder: Path, runs: int) -> Path:
    from pytest_punie.results.document import read_run
    from pytest_punie.results.history import history_html, record_run

    db = folder / "history.db"
    for index in range(runs):
        cases = [
            {"nodeid": f"t.py::test_{i}", "category": ("code", "reasoning", "tools")[i % 3],
             "outcome": "passed" if (i * 7 + index) % 10 < 3 + index % 6 else "failed",
             "score": 1.0 if (i * 7 + index) % 10 < 3 + index % 6 else 0.0}
            for i in range(60)
        ]  # fmt: skip
        if index == runs // 2:  # one void run
            for case in cases[:50]:
                case.update(outcome="error", score=0.0)
        adapter = None if index % 4 == 0 else f"adapters/v{index % 4}"
        server = {"model": "mlx-community/Qwen2.5-Coder-1.5B", "adapter": adapter}
        started = f"2026-02-{1 + index // 4:02d}T{index % 4:02d}:00:00+00:00"
        metadata = {"started": started, "server": server}
        record_run(db, read_run({"metadata": metadata, "cases": cases}))
    page = folder / "history.html"
    page.write_text(history_html(db), encoding="utf-8")
    return page


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (folder / "test_scale.py").write_text(SUITE.replace("range(N)", f"range({n})"))
        baseline_s = run_suite(folder, n, 1, "--punie-results=before.json")
        report_s = run_suite(
            folder, n, 0, "--html=report.html", "--self-contained-html",
            "--punie-baseline=before.json", "--punie-results=after.json",
        )  # fmt: skip
        plain_s = run_suite(folder, n, 0, "--punie-results=plain.json")
        blank_page = folder / "blank.html"
        blank_page.write_text("<!DOCTYPE html><html><body></body></html>")
        profile = folder / "profile"
        blank = statistics.median(render(chromium, blank_page, profile)[0] for _ in range(3))
        rows = [measure(chromium, folder / "report.html", profile, blank)]
        if len(sys.argv) > 2:  # keep the report to compare it with another version's
            shutil.copy(folder / "report.html", sys.argv[2])
        rows.append(measure(chromium, history(folder, 40), profile, blank))
    print(*machine_facts(), sep="\n")
    print(f"\n{n} cases: pytest run without --html {plain_s:.1f} s, with --html and a baseline "
          f"{report_s:.1f} s (baseline run {baseline_s:.1f} s); empty page in Chromium "
          f"{blank:.2f} s\n")  # fmt: skip
    header = ["page", "size", "render (dump-dom - empty page)", "load event", "case views"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
