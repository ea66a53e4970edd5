"""Tool calling: the model must call the right tool with the right arguments.

Tools act on a copy of `workspace/` made for each case; calls the model writes as text
(`<tool_call>{...}</tool_call>`, JSON blocks) count as calls.
"""

import pytest

from pytest_punie import assert_no_tool_call, assert_tool_called, scorer

WORKSPACE_TOOLS = ["list_dir", "read_file", "write_file", "search_files"]


def tool_case(prompt, tools=WORKSPACE_TOOLS):
    return pytest.mark.punie(
        category="tool_calling", prompt=prompt, tools=tools, workspace="workspace"
    )


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is 21 degrees and sunny in {city}."


def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money from one currency to another (ISO codes like USD)."""
    return f"{amount} {from_currency} is {amount * 0.9:.2f} {to_currency}."


@scorer(name="assert_any_tool_called")
def assert_any_tool_called(response, names):
    """1 when one of `names` was called."""
    called = [call.name for call in response.tool_calls]
    found = any(name in called for name in names)
    return (1.0 if found else 0.0), {"reason": f"expected one of {names}, got {called}"}


@tool_case("List all Python files in the workspace")
def test_list_python_files(punie_result):
    assert_any_tool_called(punie_result, ["search_files", "list_dir"])


@tool_case("What files are in the src directory?")
def test_list_src(punie_result):
    assert_tool_called(punie_result, "list_dir", {"path": "src"})


@tool_case("Read the file README.md and tell me what the project does.")
def test_read_readme(punie_result):
    assert_tool_called(punie_result, "read_file", {"path": "README.md"})


@tool_case("Show me the contents of src/utils.py")
def test_read_utils(punie_result):
    assert_tool_called(punie_result, "read_file", {"path": "src/utils.py"})


@tool_case("Find all JSON files in the workspace.")
def test_search_json(punie_result):
    assert_tool_called(punie_result, "search_files")


@tool_case("Create a file named hello.txt containing the text: Hello, world!")
def test_write_file(punie_result):
    assert_tool_called(punie_result, "write_file", {"path": "hello.txt"})


@tool_case("What is the weather in Paris?", tools=[get_weather])
def test_weather(punie_result):
    assert_tool_called(punie_result, "get_weather", {"city": "Paris"})


@tool_case("Convert 100 USD to EUR.", tools=[convert_currency])
def test_convert_currency(punie_result):
    assert_tool_called(
        punie_result,
        "convert_currency",
        {"amount": 100, "from_currency": "USD", "to_currency": "EUR"},
    )


@tool_case("What is the capital of France? Answer from your own knowledge.", tools=[get_weather])
def test_no_tool_needed(punie_result):
    assert_no_tool_call(punie_result)
