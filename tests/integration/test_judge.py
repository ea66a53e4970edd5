"""The default model as judge, on the real server: it grades or fails as a judge, and the
calibration the ``punie judge calibrate`` command records is the one the plugin's gate finds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TWO_CASES  # noqa: F401  (the module's model_path fixture comes from conftest)
from .test_real_server import _server_processes

pytestmark = pytest.mark.integration

LABELS = Path(__file__).parent.parent.parent / "evals" / "judge_labels.jsonl"

JUDGED = """
import pytest
from pytest_punie import Rubric, assert_judge

@pytest.mark.punie(category="explanation", prompt="What is the capital of France?",
                   reference="The capital of France is Paris.")
def test_capital(punie_result):
    assert_judge(punie_result, Rubric("names_paris", "The answer says Paris is the capital."))
"""


def _our_servers(folder: Path) -> set[str]:
    """mlx_lm servers working in ``folder`` (other sessions on the machine may run theirs)."""
    return _server_processes((folder.resolve(),))


def test_default_model_judges_and_the_gate_refuses_it_by_its_calibration(
    pytester, model_path, monkeypatch
):
    before = _our_servers(pytester.path)  # the runs below work there
    # pytester moves HOME: point the cache at the converted default model, used by both runs
    monkeypatch.setenv("PUNIE_CACHE", str(model_path.parent.parent))
    labels = pytester.path / "labels.jsonl"
    labels.write_text("".join(LABELS.read_text().splitlines(keepends=True)[:2]))
    calibration = pytester.path / "cal.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest_punie.cli", "judge", "calibrate", str(labels),
         "--calibration", str(calibration), "-v"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Cohen's kappa (pass/fail):" in done.stdout
    assert "lines: 2," in done.stdout
    (judge_hash,) = json.loads(calibration.read_text())
    entry = json.loads(calibration.read_text())[judge_hash]
    assert entry["judge"]["model_hash"]  # a local model is known by its content
    assert entry["calibrations"][0]["lines"] == 2

    pytester.makepyfile(JUDGED)
    result = pytester.runpytest_subprocess(
        "--punie-results=r.json", "--punie-timeout=300",
        f"--punie-judge-calibration={calibration}", "--punie-judge-min-agreement=0.99",
    )  # fmt: skip
    (case,) = json.loads((pytester.path / "r.json").read_text())["cases"]
    (record,) = case["scores"]
    # the plugin's base judge is the model the command calibrated: the same hash, found
    assert record["details"]["judge_hash"] == judge_hash
    assert record["details"]["gate"] is False
    assert "kappa with human labels is" in record["details"]["gate_note"]
    if case["outcome"] == "error":  # the 135M model may never write a valid verdict
        assert case["failure"] == "judge error"
        assert record["score"] == 0.0  # recorded as 0.0, left out of every mean
    else:
        assert 0.0 <= record["score"] <= 1.0
        assert record["details"]["reason"]
        assert result.ret == 0  # an untrusted judge fails nothing
    result.stdout.fnmatch_lines(["*not used for the gate: its Cohen's kappa*"])
    assert _our_servers(pytester.path) <= before, "an mlx_lm server was left running"
