"""BFCL-style checking of tool calls, and tool calls written as text becoming real calls."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from pytest_punie import ExpectedCall, Response, ToolCall, any_of, assert_tool_calls
from pytest_punie.conversation.response import from_messages
from pytest_punie.conversation.text_calls import TextToolCallModel
from pytest_punie.scoring.bfcl import (
    EXTRA_CALL,
    FAILURE_TYPES,
    NO_CALL,
    REFUSED,
    UNPARSEABLE,
    WRONG_ARGUMENTS,
    WRONG_TOOL,
    check_tool_calls,
)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                   "scale": {"type": "number"}},
}  # fmt: skip


def weather(**arguments):
    return ToolCall("get_weather", arguments)


def expect(city=None, schema=None, optional=(), **arguments):
    if city is not None:
        arguments["city"] = city
    return ExpectedCall("get_weather", arguments, frozenset(optional), schema)


PARIS, TOKYO, ROME = expect("Paris"), expect("Tokyo"), expect("Rome")
READ_A, LIST_DOT = ToolCall("read_file", {"path": "a"}), ToolCall("list_dir", {"path": "."})


@pytest.mark.parametrize(
    ("calls", "expected", "ordered", "failure", "score"),
    [
        # name, required and unknown arguments
        ([weather(city="Paris")], [PARIS], False, None, 1),
        ([weather(city=" paris. ")], [PARIS], False, None, 1),
        ([weather()], [PARIS], False, WRONG_ARGUMENTS, 0),
        ([weather(city="Paris", days=3)], [PARIS], False, WRONG_ARGUMENTS, 0),
        ([weather(city="Paris", days=3)], [expect("Paris", optional=["days"])], False, None, 1),
        ([ToolCall("get_time", {"city": "Paris"})], [PARIS], False, WRONG_TOOL, 0),
        # several acceptable values
        ([weather(city="Paris, France")], [expect(any_of("Paris", "Paris, France"))],
         False, None, 1),
        ([weather(city="Lyon")], [expect(any_of("Paris", "Paris, France"))],
         False, WRONG_ARGUMENTS, 0),
        # types: int accepted for float, not float for int, not str for int, not bool for int
        ([weather(scale=2)], [expect(scale=2.0, schema=WEATHER_SCHEMA)], False, None, 1),
        ([weather(days=2.5)], [expect(days=2, schema=WEATHER_SCHEMA)], False, WRONG_ARGUMENTS, 0),
        ([weather(days="2")], [expect(days=2, schema=WEATHER_SCHEMA)], False, WRONG_ARGUMENTS, 0),
        ([weather(days=True)], [expect(days=1, schema=WEATHER_SCHEMA)], False, WRONG_ARGUMENTS, 0),
        # parallel: any order; sequence: in order
        ([weather(city="Tokyo"), weather(city="Paris")], [PARIS, TOKYO], False, None, 1),
        ([weather(city="Tokyo"), weather(city="Paris")], [PARIS, TOKYO], True, WRONG_ARGUMENTS, 0),
        ([READ_A, LIST_DOT],
         [ExpectedCall("list_dir", {"path": "."}), ExpectedCall("read_file", {"path": "a"})],
         True, WRONG_TOOL, 0),
        # extra and missing calls
        ([weather(city="Paris"), weather(city="Rome")], [PARIS], False, EXTRA_CALL, 0.5),
        ([weather(city="Paris")], [PARIS, ROME], False, WRONG_ARGUMENTS, 0.5),
        ([], [PARIS], False, NO_CALL, 0),
        # relevance: no call expected
        ([], [], False, None, 1),
        ([weather(city="Paris")], [], False, EXTRA_CALL, 0),
    ],
)  # fmt: skip
def test_bfcl_rules(calls, expected, ordered, failure, score):
    check = check_tool_calls(calls, expected, ordered=ordered)
    assert check.failure == failure, check.reason
    assert check.score == pytest.approx(score)
    assert check.passed is (failure is None)


def test_unparseable_call_is_told_apart_from_no_call():
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Par'
    check = check_tool_calls([], [ExpectedCall("get_weather", {"city": "Paris"})], text=text)
    assert check.failure == UNPARSEABLE


def test_sandbox_refusal_is_its_own_failure():
    calls = [ToolCall("read_file", {"path": "../secret"})]
    check = check_tool_calls(
        calls, [ExpectedCall("read_file", {"path": "notes.txt"})], refusals=["'../secret' leaves"]
    )
    assert check.failure == REFUSED


def test_any_of_needs_a_value():
    with pytest.raises(ValueError, match="at least one"):
        any_of()


names = st.sampled_from(["a", "b", "c"])
values = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", "Paris"]), st.booleans())
calls_strategy = st.lists(
    st.builds(ToolCall, names, st.dictionaries(st.sampled_from(["p", "q"]), values, max_size=2)),
    max_size=4,
)
arguments_strategy = st.dictionaries(st.sampled_from(["p", "q"]), values, max_size=2)
expected_strategy = st.lists(st.builds(ExpectedCall, names, arguments_strategy), max_size=4)


@given(calls_strategy, expected_strategy, st.booleans())
def test_any_calls_get_a_score_and_a_known_failure_type(calls, expected, ordered):
    check = check_tool_calls(calls, expected, ordered=ordered)
    assert 0.0 <= check.score <= 1.0
    assert check.failure is None or check.failure in FAILURE_TYPES
    assert check.passed is (check.score == 1.0)


@given(expected_strategy)
def test_making_exactly_the_expected_calls_passes_in_any_order(expected):
    calls = [ToolCall(e.name, dict(e.arguments)) for e in expected]
    assert check_tool_calls(calls, expected, ordered=True).passed
    assert check_tool_calls(list(reversed(calls)), expected).passed


def test_assert_tool_calls_records_the_failure_type():
    called_y = Response("", tool_calls=(ToolCall("y", {}),))
    with pytest.raises(AssertionError, match=r"expected \['x'\], got \['y'\]") as failure:
        assert_tool_calls(called_y, [ExpectedCall("x")])
    assert failure.value.record.details["failure"] == WRONG_TOOL
    with pytest.raises(AssertionError, match="could not be parsed") as failure:
        assert_tool_calls("<tool_call>{broken", [ExpectedCall("x")])
    assert failure.value.record.details["failure"] == UNPARSEABLE
    assert assert_tool_calls("just text", []).score == 1.0


# Tool calls written as text -----------------------------------------------------------------


def _writes_calls_as_text(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    parts = [p for m in messages for p in getattr(m, "parts", [])]
    returns = [p for p in parts if isinstance(p, ToolReturnPart)]
    if not returns:
        call = json.dumps({"name": "read_file", "arguments": {"path": "README.md"}})
        return ModelResponse(parts=[TextPart(f"Let me look.\n<tool_call>{call}</tool_call>")])
    return ModelResponse(parts=[TextPart(f"The readme says: {returns[0].content}")])


def test_text_tool_calls_are_executed_and_the_conversation_goes_on():
    seen = []

    def read_file(path: str) -> str:
        """Read a file."""
        seen.append(path)
        return "an inventory tool"

    agent = Agent(TextToolCallModel(FunctionModel(_writes_calls_as_text)), tools=[read_file])
    result = agent.run_sync("What does the readme say?")
    assert seen == ["README.md"]
    assert result.output == "The readme says: an inventory tool"
    response = from_messages(result.all_messages(), result.output, tool_names=["read_file"])
    assert [(c.name, c.arguments, c.source) for c in response.tool_calls] == [
        ("read_file", {"path": "README.md"}, "text")
    ]


def test_text_naming_an_unknown_tool_stays_text():
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        text = '<tool_call>{"name": "rm", "arguments": {}}</tool_call>'
        return ModelResponse(parts=[TextPart(text)])

    def read_file(path: str) -> str:
        """Read a file."""
        return ""

    agent = Agent(TextToolCallModel(FunctionModel(answer)), tools=[read_file])
    result = agent.run_sync("hi")
    assert "rm" in result.output


def test_a_reset_connection_is_sent_again_but_a_timeout_is_not(monkeypatch):
    from pydantic_ai.exceptions import ModelConnectionError, ModelTimeoutError

    monkeypatch.setattr(TextToolCallModel, "connection_retries", 2)
    calls = []

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise ModelConnectionError("fake", "Connection reset by peer")
        return ModelResponse(parts=[TextPart("answer")])

    assert Agent(TextToolCallModel(FunctionModel(flaky))).run_sync("hi").output == "answer"
    assert len(calls) == 2

    def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        raise ModelTimeoutError("fake", "timed out")

    calls.clear()
    with pytest.raises(ModelTimeoutError):
        Agent(TextToolCallModel(FunctionModel(slow))).run_sync("hi")
    assert len(calls) == 1
