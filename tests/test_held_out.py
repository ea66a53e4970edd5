"""A dataset's test split as eval cases (finetune.held_out)."""

from __future__ import annotations

import json

import pytest

from pytest_punie.cases.files import read_case_file
from pytest_punie.conversation.response import Response
from pytest_punie.finetune.held_out import CATEGORY, case_line, write_case_file
from pytest_punie.tools.parsing import ToolCall

TRACK = {
    "type": "function",
    "function": {
        "name": "track_package",
        "description": "Track a parcel.",
        "parameters": {
            "type": "object",
            "properties": {"tracking_number": {"type": "string"}},
            "required": ["tracking_number"],
        },
    },
}


AB1 = {"tracking_number": "AB1"}
AB2 = {"tracking_number": "AB2"}


def _call(name, arguments, as_text=False):
    args = json.dumps(arguments) if as_text else arguments
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}


MULTI_STEP = {
    "messages": [
        {"role": "system", "content": "You track parcels."},
        {"role": "user", "content": "Where is parcel AB1?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("track_package", AB1)]},
        {"role": "tool", "name": "track_package", "content": "AB1: in Paris"},
        {"role": "assistant", "content": "", "tool_calls": [_call("track_package", AB2, True)]},
        {"role": "tool", "name": "track_package", "content": "AB2: delivered"},
        {"role": "assistant", "content": "AB1 is in Paris."},
    ],
    "tools": [TRACK],
}  # fmt: skip
NO_TOOL = {
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ],
    "tools": [TRACK],
}


def test_every_call_after_the_prompt_is_expected_and_later_turns_are_not_sent():
    case = case_line(MULTI_STEP, 3)
    assert case["id"] == "line-3"
    assert case["category"] == CATEGORY
    assert [m["role"] for m in case["messages"]] == ["system", "user"]
    assert case["expected"] == {
        "tool_calls": [
            {"name": "track_package", "arguments": {"tracking_number": "AB1"}},
            {"name": "track_package", "arguments": {"tracking_number": "AB2"}},
        ]
    }
    assert case["tool_results"] == {"track_package": "AB1: in Paris"}
    assert case["tools"] == [TRACK]


def test_an_answer_in_words_expects_no_tool_call_and_the_last_user_turn_is_the_prompt():
    case = case_line(NO_TOOL, 1)
    assert case["expected"] == {"no_tool_call": True}
    assert case["messages"][-1]["content"] == "What is 2 + 2?"
    assert len(case["messages"]) == 3


def test_lines_with_nothing_to_check_are_left_out():
    assert case_line({"messages": [{"role": "user", "content": "hello"}]}, 1) is None
    assert case_line({"text": "plain completion"}, 1) is None
    assert case_line({"messages": [{"role": "assistant", "content": "x"}]}, 1) is None


def test_the_written_file_is_a_valid_case_file_whose_checks_score_the_reference_answer(tmp_path):
    path = tmp_path / "eval_held_out.jsonl"
    assert write_case_file([MULTI_STEP, {"text": "skip me"}, NO_TOOL], path) == 2
    first, second = read_case_file(path)
    assert (first.id, second.id) == ("line-1", "line-3")  # numbered as in the source
    assert first.prompt == "Where is parcel AB1?"
    assert first.system_prompt == "You track parcels."
    right = Response(
        text="AB1 is in Paris.",
        tool_calls=[
            ToolCall("track_package", {"tracking_number": "AB1"}),
            ToolCall("track_package", {"tracking_number": "AB2"}),
        ],
    )
    first.score(right)  # passes
    wrong = Response(text="", tool_calls=[ToolCall("track_package", {"tracking_number": "ZZ"})])
    with pytest.raises(AssertionError):
        first.score(wrong)
    second.score(Response(text="4", tool_calls=[]))
