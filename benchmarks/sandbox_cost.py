"""What the sandbox costs per ``assert_python_code`` call.

The same answer and tests, timed over N calls (median, in ms) in each isolation this machine
offers (bwrap, the default; unshare and limits only, which need ``--punie-sandbox=unsafe``), with
the tests judged in pytest through proxies (single asserts: the default for them) and with the
same tests kept inside the sandbox (written as two statements, as tests on the model's objects
are). The first row is the floor: starting the same Python with no sandbox at all.

    python benchmarks/sandbox_cost.py [N]

For the cost before the verdicts moved out of the sandbox (all tests inside, one run of a
runner script), run this file of an older commit.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine_facts, table

from pytest_punie.scoring.code import assert_python_code
from pytest_punie.system import sandbox

ANSWER = "```python\ndef factorial(n):\n    return 1 if n <= 1 else n * factorial(n - 1)\n```"
JUDGED = [
    "assert factorial(0) == 1",
    "assert factorial(5) == 120",
    "assert factorial(10) == 3628800",
]
IN_SANDBOX = [test.replace("assert ", "result = ").replace(" ==", "\nassert result ==")
              for test in JUDGED]  # fmt: skip


def python_alone() -> None:
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)


def scorer_call(mode: sandbox.Isolation, tests: list[str]) -> None:
    with mock.patch.object(sandbox, "isolation", return_value=mode):
        record = assert_python_code(ANSWER, tests=tests)
    assert record.score == 1.0, record.details
    judged_inside = record.details.get("tests_judged_in_sandbox", [])
    assert len(judged_inside) == (len(tests) if tests is IN_SANDBOX else 0), record.details


def timed(call: Callable[[], None], runs: int) -> float:
    call()  # warm up: the first call probes the sandbox
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    modes: list[sandbox.Isolation] = []
    if sys.platform == "linux":
        modes.append("bwrap")
        if sandbox._unshare() is not None:
            modes.append("unshare")
    elif sys.platform == "darwin":
        modes.append("sandbox-exec")
    modes.append("none")
    base = timed(python_alone, runs)
    rows = [["python -I -c pass, no sandbox (the floor)", "-", f"{base:.1f}", "1.00"]]
    print(sandbox.describe())
    for mode in modes:
        for where, tests in (("in pytest (proxies)", JUDGED), ("in the sandbox", IN_SANDBOX)):
            median = timed(lambda mode=mode, tests=tests: scorer_call(mode, tests), runs)
            rows.append([mode, where, f"{median:.1f}", f"{median / base:.2f}"])
    print("\n".join(machine_facts()))
    print(f"{runs} calls each, 3 tests per call; median wall time per call")
    print(table(["isolation", "tests judged", "ms per call", "vs floor"], rows))


if __name__ == "__main__":
    main()
