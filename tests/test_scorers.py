"""Tests for the assertion-style scorers in ``pytest_punie.scoring.scorers``."""

from __future__ import annotations

import contextvars
import json
import math
import pickle
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_punie.conversation.response import Response
from pytest_punie.scoring.code import assert_python_code
from pytest_punie.scoring.framework import (
    ScoreFailure,
    ScoreRecord,
    ScoreSheet,
    collecting_scores,
    current_sheet,
    scorer,
)
from pytest_punie.scoring.text import assert_keywords, assert_number, assert_regex
from pytest_punie.scoring.tool_calls import assert_no_tool_call, assert_tool_called
from pytest_punie.tools.parsing import ToolCall

WEATHER_CALL = (
    '<tool_call>{"name": "weather", "arguments": {"city": "Paris", "days": 3}}</tool_call>'
)

FACTORIAL_ANSWER = '''Here is a recursive implementation:

```python
def factorial(n: int) -> int:
    """Return n!."""
    return 1 if n <= 1 else n * factorial(n - 1)
```

For example:

```python
>>> factorial(5)
120
```
'''


def failure(call: Callable[[], object]) -> ScoreFailure:
    """Run ``call``, which must fail as a scorer does, and return the failure."""
    with pytest.raises(AssertionError) as excinfo:
        call()
    assert isinstance(excinfo.value, ScoreFailure)
    return excinfo.value


# The scorer decorator ---------------------------------------------------------------------------


@scorer
def says_hello(response: Response) -> bool:
    """True when the response greets."""
    return "hello" in response.text.lower()


@scorer(name="length", pass_mark=0.5)
def long_enough(response: Response, length: int) -> float:
    return min(1.0, len(response.text) / length)


@scorer
def with_details(response: Response, score: float) -> tuple[float, dict[str, Any]]:
    return score, {"reason": "because I said so", "length": len(response.text)}


@scorer
def returns(response: Response, value: Any) -> Any:
    return value


def test_bool_scorer_passes_and_returns_its_record() -> None:
    record = says_hello("Hello there")
    assert record == ScoreRecord("says_hello", 1.0, True, {"pass_mark": 1.0})


def test_bool_scorer_fails_with_a_readable_message() -> None:
    error = failure(lambda: says_hello("Goodbye"))
    assert str(error) == (
        "says_hello: score 0.00 < pass mark 1.00: the response did not meet the check\n"
        "  response: 'Goodbye'\n"
        "  tool calls: none"
    )
    assert error.record == ScoreRecord("says_hello", 0.0, False, {"pass_mark": 1.0})


def test_decorator_with_options_sets_name_and_pass_mark() -> None:
    assert long_enough.name == "length"
    assert long_enough.pass_mark == 0.5
    assert long_enough("abcdef", 10).score == pytest.approx(0.6)
    error = failure(lambda: long_enough("abc", 10))
    assert str(error).startswith("length: score 0.30 < pass mark 0.50: ")


def test_decorator_preserves_the_function_metadata() -> None:
    assert says_hello.__name__ == "says_hello"
    assert says_hello.__doc__ == "True when the response greets."
    assert says_hello.__wrapped__ is says_hello.func  # type: ignore[attr-defined]
    assert "says_hello" in repr(says_hello)


def test_tuple_scores_carry_details_and_the_reason_into_the_message() -> None:
    assert with_details("abc", 1.0).details == {
        "reason": "because I said so",
        "length": 3,
        "pass_mark": 1.0,
    }
    error = failure(lambda: with_details("abc", 0.25))
    assert "with_details: score 0.25 < pass mark 1.00: because I said so" in str(error)
    assert error.record.details["length"] == 3


@pytest.mark.parametrize("value", [math.nan, 1.5, -0.1, math.inf, (2.0, {})])
def test_a_score_outside_0_to_1_is_a_value_error_naming_the_scorer(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^returns: score must be between 0 and 1"):
        returns("text", value)


@pytest.mark.parametrize("value", ["0.5", None, (0.5,), (0.5, "details"), (0.5, {}, 1)])
def test_a_score_of_the_wrong_type_is_a_type_error_naming_the_scorer(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^returns: "):
        returns("text", value)


def test_details_must_be_json_serialisable() -> None:
    with pytest.raises(TypeError, match=r"^returns: details must be JSON-serialisable"):
        returns("text", (1.0, {"thing": object()}))


def test_ints_and_bools_are_valid_scores() -> None:
    assert returns("text", 1).score == 1.0
    assert returns("text", True).score == 1.0
    assert returns("text", (0.75, {}), pass_mark=0.5).score == 0.75
    assert failure(lambda: returns("text", (False, {}))).record.score == 0.0


def test_pass_mark_can_be_overridden_per_call() -> None:
    assert long_enough("abc", 10, pass_mark=0.3).passed
    assert long_enough("abc", 10, pass_mark=0.3).details["pass_mark"] == 0.3
    failure(lambda: long_enough("abcdef", 10, pass_mark=0.7))
    assert says_hello("goodbye", pass_mark=0.0).score == 0.0


@pytest.mark.parametrize("pass_mark", [-0.1, 1.1, math.nan])
def test_an_invalid_pass_mark_is_a_value_error(pass_mark: float) -> None:
    with pytest.raises(ValueError, match="pass mark"):
        says_hello("hello", pass_mark=pass_mark)
    with pytest.raises(ValueError, match="pass mark"):
        scorer(pass_mark=pass_mark)(lambda response: True)


def test_failure_message_shows_an_excerpt_and_the_tool_calls() -> None:
    text = "x" * 500 + WEATHER_CALL
    error = failure(lambda: assert_no_tool_call(text))
    message = str(error)
    assert f"  response: '{'x' * 300}...'\n" in message
    assert message.endswith("  tool calls: weather(city='Paris', days=3)")


def test_score_failure_pickles_with_its_record() -> None:
    error = failure(lambda: says_hello("bye"))
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert copy.record == error.record


def test_a_result_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a pytest_punie Response"):
        says_hello(42)


# Recording --------------------------------------------------------------------------------------


def _outside_any_sheet() -> None:
    assert current_sheet() is None
    says_hello("hello")
    assert current_sheet() is None


def test_nothing_is_recorded_outside_collecting_scores() -> None:
    # The punie plugin collects this test's own scores; a fresh context has no sheet.
    contextvars.Context().run(_outside_any_sheet)


def test_scores_are_recorded_on_the_current_sheet_pass_or_fail() -> None:
    outer = current_sheet()
    with collecting_scores() as sheet:
        assert current_sheet() is sheet
        passed = says_hello("hello")
        failed = failure(lambda: long_enough("abc", 10)).record
    assert sheet.records == [passed, failed]
    assert sheet.mean == pytest.approx((1.0 + 0.3) / 2)
    assert sheet.response == Response("abc")
    assert current_sheet() is outer


def test_mean_of_several_scorers() -> None:
    with collecting_scores() as sheet:
        assert_keywords("red and green", ["red", "green", "blue", "white"], min_fraction=0.5)
        assert_number("The answer is 7.", 7)
        failure(lambda: assert_no_tool_call(WEATHER_CALL))
    assert [record.score for record in sheet.records] == [0.5, 1.0, 0.0]
    assert sheet.mean == pytest.approx(0.5)


def test_an_empty_sheet_has_no_mean() -> None:
    with collecting_scores() as sheet:
        pass
    assert sheet.mean is None
    assert ScoreSheet().mean is None


def test_collecting_scores_nests_and_restores_the_outer_sheet() -> None:
    with collecting_scores() as outer:
        says_hello("hello")
        with collecting_scores() as inner:
            says_hello("hello", pass_mark=0.5)
        says_hello("hello")
        assert current_sheet() is outer
    assert len(outer.records) == 2
    assert len(inner.records) == 1


def test_collecting_scores_restores_the_sheet_after_an_error() -> None:
    outer = current_sheet()
    with pytest.raises(AssertionError), collecting_scores():
        says_hello("bye")
    assert current_sheet() is outer


def test_records_serialise_to_json() -> None:
    record = failure(lambda: assert_tool_called(WEATHER_CALL, "weather", {"city": "Rome"})).record
    data = json.loads(json.dumps(record.to_json()))
    assert data["scorer"] == "assert_tool_called"
    assert data["score"] == 0.5
    assert data["passed"] is False
    assert data["details"]["calls"][0]["name"] == "weather"


# assert_keywords --------------------------------------------------------------------------------


def test_keywords_all_found() -> None:
    record = assert_keywords("Paris is the capital of France.", ["paris", "FRANCE"])
    assert record.score == 1.0
    assert record.details["found"] == ["paris", "FRANCE"]
    assert record.details["missing"] == []


def test_keywords_missing_fail_with_the_missing_words() -> None:
    error = failure(lambda: assert_keywords("Paris is lovely", ["Paris", "France", "capital"]))
    assert error.record.score == pytest.approx(1 / 3)
    assert error.record.details["missing"] == ["France", "capital"]
    assert "missing keywords: 'France', 'capital'" in str(error)


def test_keywords_min_fraction_is_the_pass_mark() -> None:
    record = assert_keywords("Paris is lovely", ["Paris", "France"], min_fraction=0.5)
    assert (record.score, record.passed, record.details["pass_mark"]) == (0.5, True, 0.5)
    failure(lambda: assert_keywords("Paris", ["Paris", "France", "Spain"], min_fraction=0.5))


def test_keywords_respect_word_boundaries() -> None:
    failure(lambda: assert_keywords("concatenate the strings", ["cat"]))
    assert assert_keywords("the cat, sat", ["cat"]).score == 1.0
    assert assert_keywords("a machine-learning model", ["machine"]).score == 1.0
    failure(lambda: assert_keywords("machine learning", ["machine learn"]))


def test_keywords_with_symbols_match_as_substrings() -> None:
    assert assert_keywords("I like C++ and setup.py files", ["C++", ".py"]).score == 1.0
    assert assert_keywords("value:=3", [":="]).score == 1.0


def test_keywords_case_sensitivity() -> None:
    assert assert_keywords("PARIS", ["paris"]).score == 1.0
    failure(lambda: assert_keywords("PARIS", ["paris"], case_sensitive=True))


@pytest.mark.parametrize(
    ("words", "error"),
    [([], ValueError), ([""], ValueError), (["  "], ValueError), ("paris", TypeError)],
)
def test_keywords_reject_bad_word_lists(words: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="assert_keywords"):
        assert_keywords("paris", words)


# assert_regex -----------------------------------------------------------------------------------


def test_regex_matches() -> None:
    record = assert_regex("Order #1234 confirmed", r"#\d+")
    assert record.details["match"] == "#1234"
    assert assert_regex("ABC", re.compile("b", re.IGNORECASE)).score == 1.0
    assert assert_regex("ABC", "b", flags=re.IGNORECASE).score == 1.0


def test_regex_no_match_fails() -> None:
    error = failure(lambda: assert_regex("no digits here", r"\d+"))
    assert "no match for '\\\\d+'" in str(error)


def test_regex_rejects_flags_with_a_compiled_pattern() -> None:
    with pytest.raises(ValueError, match="flags"):
        assert_regex("abc", re.compile("b"), flags=re.IGNORECASE)


# assert_number ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", 42),
        ("x=345.", 345),
        ("It costs 1,234 dollars", 1234),
        ("The temperature dropped to -3.5 degrees", -3.5),
        ("Result: 3.0", 3),
        ("About 1e3 of them", 1000),
        ("We get 2.5E-3", 0.0025),
        ("So **12** apples remain, after eating 3.", 12),
        ("Thus \\boxed{7}, as 2 + 5 checks out", 7),
        ("Answer: 8 (from 2^3, or 4 x 2)", 8),
        ("The answer is: $1,250.50, paid in 3 parts", 1250.5),
        ("First 2 + 2 = 4, then 4 * 3 = 12 and we are done after 5 steps", 12),
        ("It's 100km away", 100),
    ],
)
def test_number_final_answer_scores_1(text: str, expected: float) -> None:
    record = assert_number(text, expected)
    assert record.score == 1.0
    assert record.details["final_answer"] == pytest.approx(expected)


def test_number_found_but_not_final_scores_half() -> None:
    error = failure(lambda: assert_number("Maybe 5, or 6... The answer is 7.", 5))
    assert error.record.score == 0.5
    assert error.record.details["final_answer"] == 7
    assert error.record.details["numbers"] == [5, 6, 7]
    assert "expected 5, final answer 7 (5 appears elsewhere in the text)" in str(error)


def test_number_in_an_intermediate_expression_is_not_the_answer() -> None:
    assert failure(lambda: assert_number("x = 3*4 = 12", 3)).record.score == 0.5


def test_number_wrong_scores_0() -> None:
    error = failure(lambda: assert_number("The answer is 41.", 42))
    assert error.record.score == 0.0
    assert "expected 42, final answer 41" in str(error)


def test_number_absent_scores_0() -> None:
    error = failure(lambda: assert_number("I do not know.", 42))
    assert error.record.details["numbers"] == []
    assert error.record.details["final_answer"] is None
    assert "found no number" in str(error)


def test_number_tolerance() -> None:
    assert assert_number("Pi is about 3.1416", 3.14159, tolerance=0.001).score == 1.0
    failure(lambda: assert_number("Pi is about 3.2", 3.14159, tolerance=0.001))
    assert assert_number("0.30000000000000004 is it", 0.1 + 0.2).score == 1.0


def test_number_does_not_read_ranges_and_versions_as_negative_or_decimal() -> None:
    details = assert_number("Pages 5-7 of v1.2.3, then 8", 8).details
    assert details["numbers"] == [5, 7, 1.2, 8]


@pytest.mark.parametrize(
    ("expected", "tolerance", "error"),
    [(math.nan, 0, ValueError), (1, -1, ValueError), ("5", 0, TypeError), (True, 0, TypeError)],
)
def test_number_rejects_bad_parameters(
    expected: Any, tolerance: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="assert_number"):
        assert_number("5", expected, tolerance)


# assert_tool_called / assert_no_tool_call -------------------------------------------------------


def structured(name: str, **arguments: Any) -> Response:
    return Response(text="", tool_calls=(ToolCall(name, arguments, source="structured"),))


def test_tool_called_with_matching_arguments() -> None:
    record = assert_tool_called(WEATHER_CALL, "weather", {"city": "Paris"})
    assert record.score == 1.0
    assert record.details["calls"] == [
        {"name": "weather", "arguments": {"city": "Paris", "days": 3}, "source": "text"}
    ]
    assert assert_tool_called(WEATHER_CALL, "weather").score == 1.0


def test_tool_arguments_compare_loosely() -> None:
    response = structured("weather", city="  PARIS ", days=3, units="metric")
    assert assert_tool_called(response, "weather", {"city": "paris", "days": 3.0}).score == 1.0
    nested = structured("search", filters={"tags": ["A ", "b"]})
    assert assert_tool_called(nested, "search", {"filters": {"tags": ["a", "B"]}}).score == 1.0


def test_tool_arguments_do_not_equate_bools_and_numbers() -> None:
    failure(lambda: assert_tool_called(structured("flag", on=1), "flag", {"on": True}))


def test_tool_called_with_wrong_arguments_scores_half() -> None:
    error = failure(lambda: assert_tool_called(WEATHER_CALL, "weather", {"city": "London"}))
    assert error.record.score == 0.5
    assert "wrong arguments: city='Paris', expected 'London'" in str(error)
    missing = failure(lambda: assert_tool_called(WEATHER_CALL, "weather", {"units": "metric"}))
    assert "wrong arguments: missing argument 'units'" in str(missing)


def test_tool_called_picks_the_best_of_several_calls() -> None:
    calls = (ToolCall("weather", {"city": "Rome"}), ToolCall("weather", {"city": "Paris"}))
    assert assert_tool_called(Response("", calls), "weather", {"city": "paris"}).score == 1.0


def test_wrong_tool_scores_0() -> None:
    error = failure(lambda: assert_tool_called(structured("search", q="x"), "weather"))
    assert error.record.score == 0.0
    assert "wrong tool: got ['search']" in str(error)
    assert "tool calls: search(q='x')" in str(error)


def test_no_tool_call_scores_0() -> None:
    error = failure(lambda: assert_tool_called("It is sunny in Paris.", "weather"))
    assert error.record.score == 0.0
    assert error.record.details["reason"] == "no tool call"


def test_no_tool_call_passes_without_calls_and_fails_with_them() -> None:
    assert assert_no_tool_call("Just text").score == 1.0
    error = failure(lambda: assert_no_tool_call(WEATHER_CALL))
    assert "expected no tool call, got ['weather']" in str(error)


# assert_python_code -----------------------------------------------------------------------------


def test_python_code_passes_its_tests() -> None:
    record = assert_python_code(
        FACTORIAL_ANSWER, tests=["assert factorial(5) == 120", "assert factorial(0) == 1"]
    )
    assert record.score == 1.0
    assert "def factorial" in record.details["code"]
    assert [test["passed"] for test in record.details["tests"]] == [True, True]
    assert record.details["skipped_blocks"] == ["block 1: syntax error: invalid syntax (line 1)"]


def test_python_code_scores_the_fraction_of_tests_passed() -> None:
    tests = "assert factorial(5) == 121\nassert factorial(3) == 6\nassert factorial(1) == 1"
    error = failure(lambda: assert_python_code(FACTORIAL_ANSWER, tests=tests))
    assert error.record.score == pytest.approx(2 / 3)
    first = error.record.details["tests"][0]
    assert first == {
        "test": "assert factorial(5) == 121",
        "passed": False,
        "error": "AssertionError; factorial(5) is 120",
    }
    assert "1 of 3 tests failed; first: 'assert factorial(5) == 121'" in str(error)


def test_python_code_reports_exceptions_with_their_line() -> None:
    answer = "```python\ndef divide(a, b):\n    return a / b\n```"
    error = failure(lambda: assert_python_code(answer, tests=["assert divide(1, 0) == 0"]))
    assert error.record.details["tests"][0]["error"] == (
        "ZeroDivisionError: division by zero (<block 0> line 2)"
    )


def test_python_code_syntax_error_scores_0() -> None:
    answer = "```python\ndef factorial(n)\n    return 1\n```"
    error = failure(lambda: assert_python_code(answer, tests=["assert factorial(1) == 1"]))
    assert error.record.score == 0.0
    assert "syntax error: " in error.record.details["reason"]
    assert "tests" not in error.record.details


def test_python_code_infinite_loop_times_out_quickly() -> None:
    answer = "```python\ndef factorial(n):\n    while True:\n        print(n)\n```"
    started = time.monotonic()
    error = failure(
        lambda: assert_python_code(answer, tests="assert factorial(5) == 120", timeout=1)
    )
    assert time.monotonic() - started < 5
    assert error.record.details["tests"][0]["error"] == "timed out after 1s"


def test_python_code_without_tests_only_needs_to_parse() -> None:
    assert assert_python_code(FACTORIAL_ANSWER).score == 1.0
    assert assert_python_code("def f():\n    return 1\n").details["code"].startswith("def f")
    assert assert_python_code("```\nx = 1\n```").score == 1.0


def test_python_code_prose_is_not_code() -> None:
    error = failure(lambda: assert_python_code("The function returns n times itself."))
    assert "no code block, and the text is not Python: syntax error" in str(error)
    failure(lambda: assert_python_code("```js\nlet x = 1;\n```"))
    failure(lambda: assert_python_code(""))


def test_python_code_runs_every_block_later_definitions_win() -> None:
    answer = (
        "First try:\n```python\ndef square(x):\n    return x + x\n```\n"
        "Fixed:\n```python\ndef square(x):\n    return helper(x)\n```\n"
        "```python\ndef helper(x):\n    return x * x\n```\n"
        "```python\nprint(square(-1 // 0))\n```\n"
        '```python\nif __name__ == "__main__":\n    input()\n```\n'
    )
    record = assert_python_code(answer, tests=["assert square(3) == 9"])
    assert record.score == 1.0
    assert record.details["block_errors"] == [
        "block 3: ZeroDivisionError: integer division or modulo by zero (<block 3> line 1)"
    ]


def test_python_code_survives_code_that_exits() -> None:
    answer = "```python\nimport os\ndef f():\n    os._exit(3)\n```"
    error = failure(lambda: assert_python_code(answer, tests=["assert f() is None", "assert 1"]))
    assert [test["error"] for test in error.record.details["tests"]] == [
        "did not run (the code exited)",
        "did not run (the code exited)",
    ]


def test_python_code_scores_invalid_tests_0_and_rejects_bad_timeouts() -> None:
    error = failure(lambda: assert_python_code(FACTORIAL_ANSWER, tests=["assert factorial(5) =="]))
    assert error.record.score == 0.0
    assert "is not valid Python" in error.record.details["tests"][0]["error"]
    with pytest.raises(ValueError, match="timeout"):
        assert_python_code(FACTORIAL_ANSWER, tests=["assert True"], timeout=0)


# pydantic-ai run results ------------------------------------------------------------------------


def test_scorers_accept_a_pydantic_ai_run_result() -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("weather", {"city": "Paris"})])
        return ModelResponse(parts=[TextPart("It is 21 degrees, so the answer is 21.")])

    agent = Agent(FunctionModel(model))

    @agent.tool_plain
    def weather(city: str) -> str:
        return f"21 degrees in {city}"

    result = agent.run_sync("How warm is it in Paris?")
    with collecting_scores() as sheet:
        assert_tool_called(result, "weather", {"city": "paris"})
        assert_number(result, 21)
        assert_keywords(result, ["degrees"])
    assert sheet.mean == 1.0
    assert sheet.response is not None
    assert sheet.response.tool_calls[0].source == "structured"


# Properties -------------------------------------------------------------------------------------

FRAGMENTS = [
    "The answer is ",
    "answer: ",
    " = ",
    "**",
    "\\boxed{",
    "}",
    "```python\n",
    "```\n",
    "def f(x):\n    return x\n",
    "<tool_call>",
    "</tool_call>",
    '{"name": "weather", "arguments": {"city": "Paris"}}',
    "cat",
    "-",
    ".",
    ",",
    "1,234",
    "1e3",
    "\n",
]
texts = st.one_of(
    st.text(),
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.integers().map(str), st.text(max_size=5))
    ).map("".join),
)

BUILT_IN: list[tuple[str, Callable[[str], ScoreRecord]]] = [
    ("keywords", lambda text: assert_keywords(text, ["cat", "C++"], min_fraction=0.5)),
    ("regex", lambda text: assert_regex(text, r"\d{2}")),
    ("number", lambda text: assert_number(text, 42)),
    ("number_tolerance", lambda text: assert_number(text, -3.5, tolerance=0.5)),
    ("tool_called", lambda text: assert_tool_called(text, "weather", {"city": "paris"})),
    ("no_tool_call", lambda text: assert_no_tool_call(text)),
    ("python_code_untested", lambda text: assert_python_code(text)),
]


def check_scorer_contract(call: Callable[[str], ScoreRecord], text: str) -> None:
    """The scorer returns a record or raises ScoreFailure, and records exactly that."""
    with collecting_scores() as sheet:
        try:
            record = call(text)
        except ScoreFailure as error:
            record = error.record
            assert not record.passed
            assert record.score < record.details["pass_mark"]
        else:
            assert record.passed
            assert record.score >= record.details["pass_mark"]
    assert sheet.records == [record]
    assert 0.0 <= record.score <= 1.0
    json.dumps(record.to_json())


@pytest.mark.parametrize(("_name", "call"), BUILT_IN)
@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_every_built_in_scorer_scores_any_text(
    _name: str, call: Callable[[str], ScoreRecord], text: str
) -> None:
    check_scorer_contract(call, text)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_python_code_with_tests_scores_any_text(text: str) -> None:
    check_scorer_contract(lambda text: assert_python_code(text, ["assert f(1) == 1"], 5), text)


@settings(max_examples=200, deadline=None)
@given(n=st.integers())
def test_number_finds_any_stated_integer_answer(n: int) -> None:
    assert assert_number(f"The answer is {n}.", n).score == 1.0


@settings(max_examples=200, deadline=None)
@given(
    text=texts,
    words=st.lists(st.text(min_size=1).filter(str.strip), min_size=1, max_size=5),
    data=st.data(),
)
def test_keywords_score_never_drops_when_a_word_is_added(
    text: str, words: list[str], data: st.DataObject
) -> None:
    def score(text: str) -> float:
        return assert_keywords(text, words, min_fraction=0.0).score

    added = data.draw(st.sampled_from(words))
    assert score(f"{text} {added}") >= score(text)
    assert score(f"{text} {' '.join(words)}") == 1.0
