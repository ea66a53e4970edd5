"""pytest-punie: evaluate and fine-tune local language models with pytest.

Scorers are importable from here; the pytest plugin itself lives in ``pytest_punie.plugin``.
"""

from pytest_punie.cases.files import punie_cases
from pytest_punie.conversation.response import Response, as_response
from pytest_punie.scoring.bfcl import ExpectedCall, any_of, check_tool_calls
from pytest_punie.scoring.code import assert_python_code
from pytest_punie.scoring.framework import ScoreRecord, ScoreSheet, collecting_scores, scorer
from pytest_punie.scoring.judge import (
    Judge,
    JudgeError,
    Rubric,
    Verdict,
    assert_judge,
    judge_rubric,
)
from pytest_punie.scoring.text import assert_keywords, assert_number, assert_regex
from pytest_punie.scoring.tool_calls import (
    assert_no_tool_call,
    assert_tool_called,
    assert_tool_calls,
)
from pytest_punie.tools.parsing import ToolCall, parse_tool_calls

__all__ = [
    "ExpectedCall",
    "Judge",
    "JudgeError",
    "Response",
    "Rubric",
    "ScoreRecord",
    "ScoreSheet",
    "ToolCall",
    "Verdict",
    "any_of",
    "as_response",
    "assert_judge",
    "assert_keywords",
    "assert_no_tool_call",
    "assert_number",
    "assert_python_code",
    "assert_regex",
    "assert_tool_called",
    "assert_tool_calls",
    "check_tool_calls",
    "collecting_scores",
    "judge_rubric",
    "parse_tool_calls",
    "punie_cases",
    "scorer",
]
