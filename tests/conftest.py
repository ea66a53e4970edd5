import pytest

pytest_plugins = ["pytester"]

INI_HEAD = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with an ini that keeps pytest-asyncio's configure-time warning quiet, and no
    GitHub job summary of this suite's own CI for the inner runs to append to."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeini(INI_HEAD)
    return pytester
