"""Tool calling, checked like the Berkeley Function Calling Leaderboard's AST checker.

Each case gets a fresh copy of `workspace/` for its tools. Calls the model writes as text
(`<tool_call>{...}</tool_call>`, JSON blocks, ...) are executed and scored like structured ones.
Kinds of case: single calls, argument-heavy calls, parallel calls (any order), multi-step
sequences (in order, each step seeing the previous result), and irrelevance (no call allowed).
"""

import pytest

from pytest_punie import ExpectedCall, any_of, assert_tool_calls

WORKSPACE_TOOLS = ["list_dir", "read_file", "write_file", "search_files"]


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is 21 degrees and sunny in {city}."


def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money from one currency to another (ISO codes like USD)."""
    return f"{amount} {from_currency} is {amount * 0.9:.2f} {to_currency}."


def book_flight(origin: str, destination: str, date: str, passengers: int, cabin: str) -> str:
    """Book a flight. date is YYYY-MM-DD; cabin is economy, business or first."""
    return f"Booked {passengers} {cabin} seat(s) from {origin} to {destination} on {date}."


def create_event(title: str, date: str, start_time: str, duration_minutes: int) -> str:
    """Create a calendar event. date is YYYY-MM-DD, start_time is HH:MM (24 hours)."""
    return f"Created {title!r} on {date} at {start_time} for {duration_minutes} minutes."


def case(prompt, tools=WORKSPACE_TOOLS):
    return pytest.mark.punie(
        category="tool_calling", prompt=prompt, tools=tools, workspace="workspace"
    )


def call(name, optional=(), **arguments):
    return ExpectedCall(name, arguments, optional=frozenset(optional))


SRC = any_of("src", "src/", "./src")
PY = any_of("*.py", "**/*.py")

# Single calls ----------------------------------------------------------------------------------


@case("List all Python files in the workspace")
def test_list_python_files(punie_result):
    assert_tool_calls(punie_result, [call("search_files", pattern=PY, optional=["path"])])


@case("What files are in the src directory?")
def test_list_src(punie_result):
    assert_tool_calls(punie_result, [call("list_dir", path=SRC)])


@case("Read the file README.md and tell me what the project does.")
def test_read_readme(punie_result):
    assert_tool_calls(punie_result, [call("read_file", path=any_of("README.md", "./README.md"))])


@case("Show me the contents of src/utils.py")
def test_read_utils(punie_result):
    assert_tool_calls(punie_result, [call("read_file", path="src/utils.py")])


@case("Find all JSON files in the workspace.")
def test_search_json(punie_result):
    pattern = any_of("*.json", "**/*.json")
    assert_tool_calls(punie_result, [call("search_files", pattern=pattern, optional=["path"])])


@case("Create a file named hello.txt containing the text: Hello, world!")
def test_write_file(punie_result, punie_workspace):
    assert_tool_calls(punie_result, [call("write_file", path="hello.txt", content="Hello, world!")])
    assert (punie_workspace / "hello.txt").is_file()


@case("What is the weather in Paris?", tools=[get_weather])
def test_weather(punie_result):
    assert_tool_calls(punie_result, [call("get_weather", city="Paris")])


# Argument-heavy calls --------------------------------------------------------------------------


@case("Convert 100 USD to EUR.", tools=[convert_currency])
def test_convert_currency(punie_result):
    expected = call("convert_currency", amount=100, from_currency="USD", to_currency="EUR")
    assert_tool_calls(punie_result, [expected])


@case(
    "Book a flight from Boston to Denver on 2026-12-24 for 2 passengers in economy.",
    tools=[book_flight],
)
def test_book_flight(punie_result):
    expected = call(
        "book_flight",
        origin="Boston",
        destination="Denver",
        date="2026-12-24",
        passengers=2,
        cabin="economy",
    )
    assert_tool_calls(punie_result, [expected])


@case(
    "Create a calendar event called Team sync on 2026-12-01 at 09:30 lasting 45 minutes.",
    tools=[create_event],
)
def test_create_event(punie_result):
    expected = call(
        "create_event",
        title="Team sync",
        date="2026-12-01",
        start_time="09:30",
        duration_minutes=45,
    )
    assert_tool_calls(punie_result, [expected])


# Parallel calls (any order) --------------------------------------------------------------------


@case("What is the weather in Paris and in Tokyo?", tools=[get_weather])
def test_weather_two_cities(punie_result):
    expected = [call("get_weather", city="Paris"), call("get_weather", city="Tokyo")]
    assert_tool_calls(punie_result, expected)


@case("Read both README.md and notes.txt.")
def test_read_two_files(punie_result):
    expected = [call("read_file", path="README.md"), call("read_file", path="notes.txt")]
    assert_tool_calls(punie_result, expected)


# Multi-step sequences (in order) ---------------------------------------------------------------


@case("List the files in the src directory, then read utils.py from it.")
def test_list_then_read(punie_result):
    expected = [call("list_dir", path=SRC), call("read_file", path="src/utils.py")]
    assert_tool_calls(punie_result, expected, ordered=True)


@case("Find the JSON files in the data folder, then read data/stock.json.")
def test_search_then_read(punie_result):
    expected = [
        call("search_files", pattern=any_of("*.json", "**/*.json"), optional=["path"]),
        call("read_file", path="data/stock.json"),
    ]
    assert_tool_calls(punie_result, expected, ordered=True)


# Irrelevance (no tool may be called) -----------------------------------------------------------


@case("What is the capital of France? Answer from your own knowledge.", tools=[get_weather])
def test_no_tool_for_capital(punie_result):
    assert_tool_calls(punie_result, [])


@case("What is 2 + 2?")
def test_no_tool_for_arithmetic(punie_result):
    assert_tool_calls(punie_result, [])


@case("Tell me a short joke about programmers.", tools=[convert_currency])
def test_no_tool_for_a_joke(punie_result):
    assert_tool_calls(punie_result, [])
