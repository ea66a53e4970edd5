import os

import pytest

pytest_plugins = ["pytester"]

INI_HEAD = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with an ini that keeps pytest-asyncio's configure-time warning quiet, and no
    GitHub job summary of this suite's own CI for the inner runs to append to. Inner runs go
    without hypothesis' plugin: none of them uses it, and at its end it imports all of
    hypothesis (1-2 s for each inner run in a subprocess)."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    given = os.environ.get("PYTEST_ADDOPTS", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} -p no:hypothesispytest".strip())
    pytester.makeini(INI_HEAD)
    return pytester
