from pathlib import Path

import pytest

from pytest_punie.serving.default_model import default_model_path

TWO_CASES = """
import pytest
from pytest_punie import assert_keywords, assert_number

@pytest.mark.punie(category="knowledge", prompt="What is the capital of France?")
def test_capital(punie_result):
    assert_keywords(punie_result, ["Paris"])

@pytest.mark.punie(category="math", prompt="What is 2 + 2?")
def test_sum(punie_result):
    assert_number(punie_result, 4)
"""


@pytest.fixture(scope="module")
def model_path() -> Path:
    """The default model, fetched and converted on first use."""
    return default_model_path()
