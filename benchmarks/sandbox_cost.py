"""What the sandbox costs per ``assert_python_code`` call.

Three ways to run the same answer and tests, each timed over N calls (median, in ms):
bubblewrap (the default where it is installed), unshare, limits only, and the old plain
``subprocess.Popen(...).communicate()`` without limits or isolation.

    python benchmarks/sandbox_cost.py [N]
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine_facts, table

from pytest_punie.scoring import code as scorers
from pytest_punie.system import sandbox

ANSWER = "```python\ndef factorial(n):\n    return 1 if n <= 1 else n * factorial(n - 1)\n```"
TESTS = [
    "assert factorial(0) == 1",
    "assert factorial(5) == 120",
    "assert factorial(10) == 3628800",
]


def plain_subprocess() -> None:
    """The old way: the runner in a plain child, output read with communicate()."""
    payload = {"key": secrets.token_hex(32), "blocks": [[0, ANSWER]], "tests": TESTS}
    with tempfile.TemporaryDirectory(prefix="punie-code-") as workdir:
        subprocess.run(
            [sys.executable, "-I", "-c", scorers._RUNNER],
            input=json.dumps(payload).encode(),
            capture_output=True,
            cwd=workdir,
            start_new_session=True,
            check=True,
        )


def scorer_call(mode: sandbox.Isolation) -> None:
    sandbox._detect_isolation = lambda: mode  # type: ignore[method-assign]
    sandbox._warned = True
    record = scorers.assert_python_code(ANSWER, tests=TESTS)
    assert record.score == 1.0, record.details


def timed(call: object, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    available = [mode for mode in ("bwrap", "unshare", "none")
                 if sandbox._wrap(mode, ["true"], Path("/")) is not None]  # fmt: skip
    rows = []
    old = timed(plain_subprocess, runs)
    base = statistics.median(old)
    rows.append(["old plain subprocess (no limits, no isolation)", f"{base:.1f}", "1.00"])
    names = {
        "bwrap": "bubblewrap + limits (default)",
        "unshare": "unshare + limits",
        "none": "limits only",
    }
    for mode in available:
        median = statistics.median(timed(lambda mode=mode: scorer_call(mode), runs))
        rows.append([names[mode], f"{median:.1f}", f"{median / base:.2f}"])
    print("\n".join(machine_facts()))
    print(f"{runs} calls each, 3 tests per call; median wall time per call")
    print(table(["assert_python_code runs the code with", "ms per call", "vs old"], rows))


if __name__ == "__main__":
    main()
