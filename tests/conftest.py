import pytest

pytest_plugins = ["pytester"]

INI_HEAD = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester with an ini that keeps pytest-asyncio's configure-time warning quiet."""
    pytester.makeini(INI_HEAD)
    return pytester
