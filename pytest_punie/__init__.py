"""pytest-punie: evaluate and fine-tune local language models with pytest.

Scorers are importable from here; the pytest plugin itself lives in ``pytest_punie.plugin``.
Each name is imported on first use (PEP 562), so ``import pytest_punie`` and a process that
needs one submodule (the training child) load only what they use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_punie.cases.files import punie_cases
    from pytest_punie.conversation.response import Response, as_response
    from pytest_punie.scoring.bfcl import ExpectedCall, any_of, check_tool_calls
    from pytest_punie.scoring.code import assert_python_code
    from pytest_punie.scoring.framework import (
        ScoreRecord,
        ScoreSheet,
        collecting_scores,
        scorer,
    )
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

_HOMES = {
    "punie_cases": "cases.files",
    "Response": "conversation.response",
    "as_response": "conversation.response",
    "ExpectedCall": "scoring.bfcl",
    "any_of": "scoring.bfcl",
    "check_tool_calls": "scoring.bfcl",
    "assert_python_code": "scoring.code",
    "ScoreRecord": "scoring.framework",
    "ScoreSheet": "scoring.framework",
    "collecting_scores": "scoring.framework",
    "scorer": "scoring.framework",
    "Judge": "scoring.judge",
    "JudgeError": "scoring.judge",
    "Rubric": "scoring.judge",
    "Verdict": "scoring.judge",
    "assert_judge": "scoring.judge",
    "judge_rubric": "scoring.judge",
    "assert_keywords": "scoring.text",
    "assert_number": "scoring.text",
    "assert_regex": "scoring.text",
    "assert_no_tool_call": "scoring.tool_calls",
    "assert_tool_called": "scoring.tool_calls",
    "assert_tool_calls": "scoring.tool_calls",
    "ToolCall": "tools.parsing",
    "parse_tool_calls": "tools.parsing",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pytest_punie' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_punie.{home}"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
