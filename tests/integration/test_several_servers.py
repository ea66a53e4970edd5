"""``--punie-start-servers 2`` on the default model: two real mlx_lm servers, each with its own
port and log, share two cases; a second, fully cached run starts none."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import TWO_CASES

pytestmark = pytest.mark.integration


def test_two_started_servers_share_the_cases(pytester, model_path):
    pytester.makepyfile(TWO_CASES)
    args = (f"--punie-model={model_path}", "--punie-start-servers=2", "--punie-results=r.json")
    # one conversation in flight per server: the two cases go one to each
    result = pytester.runpytest_subprocess(*args, "--punie-concurrency=1")
    result.assert_outcomes(passed=2)
    server = json.loads((pytester.path / "r.json").read_text())["metadata"]["server"]
    servers = server["servers"]
    assert len(servers) == 2
    assert len({s["base_url"] for s in servers}) == 2  # each its own port
    assert [s["answered"] for s in servers] == [1, 1]
    assert not any(s["failed"] for s in servers)
    logs = [Path(s["log_path"]) for s in servers]
    assert len(set(logs)) == 2
    assert all(log.stat().st_size > 0 for log in logs)
    assert server["model"] == str(model_path)
    result.stdout.fnmatch_lines(
        ["servers: 2 of the same model (started here), requests answered:", "  http*: 1, log *"]
    )

    again = pytester.runpytest_subprocess(*args)  # the same cases: the cache answers them all
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["server: not started (the response cache answered every request)"])


def _servers_running() -> set[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if "mlx_lm server" in line}


def test_xdist_with_the_cache_off_starts_the_shared_server_beside_the_workers(pytester, model_path):
    before = _servers_running()
    pytester.makepyfile(TWO_CASES)
    result = pytester.runpytest_subprocess(
        "-n", "2", f"--punie-model={model_path}", "--punie-cache=off", "--punie-results=r.json"
    )
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    assert len({case["server"]["pid"] for case in document["cases"]}) == 1
    deadline = time.monotonic() + 15
    while _servers_running() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _servers_running() - before, "an mlx_lm server was left running"
