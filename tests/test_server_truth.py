"""The summary tells the truth about the server: 'not started' only when the cache answered every
case; a start that failed says so, with its cause, in the terminal and the results."""

from __future__ import annotations

import json

PROMPT_CASES = """
import pytest
from pytest_punie import assert_keywords

@pytest.mark.punie(category="knowledge", prompt="What is the capital of France?")
def test_capital(punie_result):
    assert_keywords(punie_result, ["Paris"])

@pytest.mark.punie(category="knowledge", prompt="What is the capital of Italy?")
def test_rome(punie_result):
    assert_keywords(punie_result, ["Rome"])
"""

CAUSE = "mlx_lm server exited with code -4 before it was ready."


def _failing_server(monkeypatch):
    import pytest_punie.serving.shared as shared
    from pytest_punie.serving.server import ServerError, ServerInfo

    planned = ServerInfo(base_url="", model_name="default_model", model="/m", model_hash="m" * 64)

    def serve(settings, run_dir, shared=False):
        raise ServerError(f"{CAUSE}\nLast lines of server.log:\nIllegal instruction")

    monkeypatch.setattr(shared, "planned", lambda settings: planned)
    monkeypatch.setattr(shared, "serve", serve)


def test_a_server_that_failed_to_start_is_named_with_its_cause(pytester, monkeypatch):
    pytester.makepyfile(PROMPT_CASES)
    _failing_server(monkeypatch)
    result = pytester.runpytest("--punie-results=r.json", "--punie-cache=off")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"server: failed to start: {CAUSE}"])
    result.stdout.no_fnmatch_line("*not started*")
    server = json.loads((pytester.path / "r.json").read_text())["metadata"]["server"]
    assert server["start_error"].startswith(CAUSE)


LITERAL_CASE = """
import pytest
from pytest_punie import assert_number

@pytest.mark.punie(category="math")
def test_mult():
    assert_number("15 * 23 = 345", 345)
"""


def test_every_report_names_the_sandbox_in_force(pytester):
    from pytest_punie.system import sandbox

    pytester.makepyfile(LITERAL_CASE)
    result = pytester.runpytest("--punie-results=r.json", "--html=report.html")
    result.assert_outcomes(passed=1)
    said = sandbox.describe()
    result.stdout.fnmatch_lines([f"sandbox: {said}"])
    assert json.loads((pytester.path / "r.json").read_text())["metadata"]["sandbox"] == said
    assert f"sandbox: {said}" in (pytester.path / "report.html").read_text()
