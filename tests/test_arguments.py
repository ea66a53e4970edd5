"""The one rule for comparing a tool call's argument with the expected value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie import ExpectedCall, any_of, assert_tool_called, assert_tool_calls
from pytest_punie.conversation.response import Response
from pytest_punie.scoring.arguments import exact, path, same_value, string_mode, text
from pytest_punie.tools.parsing import ToolCall


def call(name: str, **arguments: Any) -> Response:
    return Response(text="", tool_calls=(ToolCall(name=name, arguments=arguments),))


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("src/utils.py", "src_utils.py"),  # a path is not free text
        ("src/utils.py", "src.utils.py"),
        ("src/utils.py", "SRC/utils.py"),
        ("*.py", "py"),  # a glob keeps its star
        ("*.py", ".py"),
        ("notes.txt", "notes_txt"),
        ("get_weather", "getweather"),  # an identifier keeps its underscore
        ("settings.json", "SETTINGS.JSON"),
        ("Rome", "Paris"),
    ],
)
def test_paths_globs_and_identifiers_do_not_match_look_alikes(expected: str, actual: str) -> None:
    assert not same_value(expected, actual)


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("src", "./src"),
        ("src/utils.py", "./src/utils.py"),
        ("src", "src/"),
        ("src/utils.py", "src//utils.py"),
        ("*.py", "./*.py"),
        ("Rome", "rome"),  # free text: case
        ("New York", "new york"),
        ("New York", "New-York"),  # free text: punctuation
        (" Rome ", "Rome"),
        ("get_weather", " get_weather "),
    ],
)
def test_equivalent_spellings_match(expected: str, actual: str) -> None:
    assert same_value(expected, actual)


def test_the_mode_can_be_said_explicitly() -> None:
    assert same_value(text("src/utils.py"), "src_utils.py")  # the case says: free text
    assert not same_value(exact("Rome"), "rome")
    assert same_value(path("data"), "./data/")
    assert not same_value(path("data"), "Data")
    assert same_value(any_of(path("a.py"), "b"), "./a.py")


def test_default_modes() -> None:
    assert string_mode("src/utils.py") == "path"
    assert string_mode("*.py") == "path"
    assert string_mode("report final.txt") == "path"
    assert string_mode("get_weather") == "exact"
    assert string_mode("celsius") == "text"
    assert string_mode("San Francisco, CA") == "text"


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        (3, 3.0, True),
        (3, 3.5, False),
        (0.1 + 0.2, 0.3, True),
        (True, 1, False),
        (1, True, False),
        ([1, "a"], [1, "A"], True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ("3", 3, False),
        ("abc", ["a", "b", "c"], False),
    ],
)
def test_numbers_booleans_and_containers(expected: Any, actual: Any, same: bool) -> None:
    assert same_value(expected, actual) is same


@pytest.mark.parametrize(
    ("name", "expected", "actual"),
    [
        ("read_file", {"path": "src/utils.py"}, {"path": "src_utils.py"}),
        ("search_files", {"pattern": "*.py"}, {"pattern": "py"}),
    ],
)
def test_both_scorers_give_zero_credit_for_a_wrong_path_or_glob(
    name: str, expected: dict[str, Any], actual: dict[str, Any]
) -> None:
    response = call(name, **actual)
    check = assert_tool_calls(response, [ExpectedCall(name, expected)], pass_mark=0.0)
    assert check.score == 0.0
    # assert_tool_called gives 0.5 for "right tool, wrong arguments" and fails the case
    called = assert_tool_called(response, name, expected, pass_mark=0.0)
    assert called.score == 0.5
    assert called.details["failure"] == "wrong arguments"


def test_both_scorers_accept_the_same_right_answers() -> None:
    response = call("read_file", path="./src/utils.py")
    assert assert_tool_calls(response, [ExpectedCall("read_file", {"path": "src/utils.py"})])
    assert assert_tool_called(response, "read_file", {"path": "src/utils.py"})
    weather = call("get_weather", city="new york")
    assert assert_tool_calls(weather, [ExpectedCall("get_weather", {"city": "New York"})])
    assert assert_tool_called(weather, "get_weather", {"city": "New York"})


@given(st.text(max_size=40), st.text(max_size=40))
def test_comparison_is_total_and_reflexive(a: str, b: str) -> None:
    same_value(a, b)
    assert same_value(a, a)
