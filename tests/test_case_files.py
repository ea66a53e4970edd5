"""Eval cases from ``eval_*.jsonl`` files and ``punie_cases``; ``punie export-failures``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.cases.files import CaseFileError, parse_line, read_case_file, to_model_messages
from pytest_punie.cli import main
from pytest_punie.finetune.failures import failure_lines
from pytest_punie.finetune.validation import validate
from pytest_punie.results.document import read_run
from pytest_punie.testing import FakeOpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _line(**fields: Any) -> str:
    data: dict[str, Any] = {
        "id": "c1",
        "category": "facts",
        "messages": [{"role": "user", "content": "capital of France?"}],
        "expected": {"keywords": ["Paris"]},
    }
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not None})


CASES = "\n".join(
    [
        _line(),
        _line(
            id=None,
            category="math",
            messages=[
                {"role": "system", "content": "Answer with a number."},
                {"role": "user", "content": "6 times 7?"},
            ],
            expected={"number": 42},
            marks=["slow"],
        ),
        "",
        _line(
            id="weather",
            category="tools",
            messages=[{"role": "user", "content": "weather in Oslo"}],
            tools=[WEATHER_TOOL],
            tool_results={"get_weather": "sunny, 21 C"},
            expected={"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        ),
        _line(
            id="no-call",
            category="tools",
            messages=[{"role": "user", "content": "say hi"}],
            tools=[WEATHER_TOOL],
            expected={"no_tool_call": True, "regex": "(?i)hi"},
        ),
    ]
)

ANSWERS = {
    "capital of France?": "Paris.",
    "6 times 7?": "41",
    "weather in Oslo": {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
        "then": "It is sunny.",
    },
    "say hi": "Hi!",
}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a case is a JSON object"),
        (_line(prompt="x"), "unknown key(s) prompt"),
        (_line(id="a b"), "'id' must be letters"),
        (_line(messages=[]), "'messages' is empty"),
        (_line(messages=[{"role": "bot", "content": "x"}]), "unknown role 'bot' in message 1"),
        (_line(messages=[{"role": "system", "content": "x"}]), "has no user turn"),
        (_line(messages=[{"role": "user", "content": " "}]), "content of message 1 is empty"),
        (_line(expected=None), "no 'expected'"),
        (_line(expected={}), "'expected' must be an object with at least one of"),
        (_line(expected={"numbr": 4}), "'expected' must be an object with at least one"),
        (_line(expected={"number": 4, "tol": 1}), "unknown key(s) in 'expected': tol"),
        (_line(expected={"number": "4"}), "'number' must be a number"),
        (_line(expected={"keywords": "Paris"}), "'keywords' must be a non-empty list"),
        (_line(expected={"regex": "("}), "'regex' does not compile"),
        (_line(expected={"no_tool_call": False}), "'no_tool_call' can only be true"),
        (_line(expected={"python_tests": []}), "'python_tests' must be a non-empty list"),
        (_line(expected={"scorer": "nowhere"}), "'nowhere' is not 'module:function'"),
        (_line(expected={"scorer": "no_such_module_x:f"}), "No module named 'no_such_module_x'"),
        (_line(expected={"tool_calls": [{"arguments": {}}]}), "'tool_calls' entries need a"),
        (
            _line(tools=[WEATHER_TOOL], expected={"tool_calls": [{"name": "other"}]}),
            "a call of 'other', which is not one of the line's tools",
        ),
        (_line(tools=[{"function": {"name": "a b"}}]), "tool 1 needs a 'name'"),
        (_line(tools=[WEATHER_TOOL, WEATHER_TOOL]), "tool 'get_weather' is declared twice"),
        (_line(tool_results={"x": 1}), "'tool_results' names unknown tool(s) x"),
        (_line(marks=["not a name"]), "'marks' must be a list of marker names"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(line, message):
    with pytest.raises(CaseFileError) as error:
        parse_line(line, Path("evals/eval_x.jsonl"), 7)
    assert str(error.value).startswith("evals/eval_x.jsonl:7: ")
    assert message in str(error.value)


def test_duplicate_ids_name_both_lines(tmp_path):
    path = tmp_path / "eval_dup.jsonl"
    path.write_text(_line() + "\n" + _line() + "\n")
    with pytest.raises(CaseFileError, match=r"eval_dup.jsonl:2: id 'c1' is already used on line 1"):
        read_case_file(path)


def test_a_line_reads_as_a_case(tmp_path):
    path = tmp_path / "eval_x.jsonl"
    path.write_text(CASES)
    first, second, weather, _ = read_case_file(path)
    assert (first.id, first.prompt, first.history, first.system_prompt) == (
        "c1",
        "capital of France?",
        (),
        None,
    )
    assert (second.id, second.line, second.system_prompt) == ("2", 2, "Answer with a number.")
    case = weather.case("eval_x.jsonl::weather")
    assert case.tool_names == ("get_weather",)
    assert case.source == "eval_x.jsonl:4"


def test_earlier_turns_become_the_message_history():
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "t1", "function": {"name": "w", "arguments": {"c": "x"}}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]
    kinds = [
        (type(m).__name__, [type(p).__name__ for p in m.parts]) for m in to_model_messages(history)
    ]
    assert kinds == [
        ("ModelRequest", ["SystemPromptPart", "UserPromptPart"]),
        ("ModelResponse", ["ToolCallPart"]),
        ("ModelRequest", ["ToolReturnPart"]),
        ("ModelResponse", ["TextPart"]),
    ]


def test_case_files_are_collected_run_and_scored(pytester):
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow: slow\n"
    )
    pytester.makefile(".jsonl", eval_demo=CASES)
    pytester.makefile(".jsonl", notes_demo=_line())  # not eval_*: not collected
    with FakeOpenAI(ANSWERS) as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "--punie-results=r.json", "-v"
        )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "eval_demo.jsonl::c1 PASSED*",
            "eval_demo.jsonl::2 FAILED*",
            "eval_demo.jsonl::weather PASSED*",
            "eval_demo.jsonl::no-call PASSED*",
        ]
    )
    cases = {c["nodeid"]: c for c in json.loads((pytester.path / "r.json").read_text())["cases"]}
    weather = cases["eval_demo.jsonl::weather"]
    assert weather["prompt"] == "weather in Oslo"
    assert weather["tools"] == [WEATHER_TOOL]
    returns = [
        p["content"]
        for m in weather["response"]["messages"]
        for p in m["parts"]
        if p["part_kind"] == "tool-return"
    ]
    assert returns == ["sunny, 21 C"]  # the line's tool_results answered the call
    system = [m for m in fake.chat_requests if m["messages"][-1]["content"] == "6 times 7?"]
    assert system[0]["messages"][0] == {"role": "system", "content": "Answer with a number."}
    assert cases["eval_demo.jsonl::2"]["source"] == "eval_demo.jsonl:2"


def test_k_markers_and_last_failed_select_file_cases(pytester):
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow: slow\n"
    )
    pytester.makefile(".jsonl", eval_demo=CASES)
    with FakeOpenAI(ANSWERS) as fake:
        url = f"--punie-base-url={fake.base_url}"
        pytester.runpytest(url, "-k", "weather").assert_outcomes(passed=1, deselected=3)
        pytester.runpytest(url, "-k", "tools").assert_outcomes(passed=2, deselected=2)
        pytester.runpytest(url, "-m", "slow").assert_outcomes(failed=1, deselected=3)
        pytester.runpytest(url, "-m", "not slow").assert_outcomes(passed=3, deselected=1)
        pytester.runpytest(url).assert_outcomes(passed=3, failed=1)
        sent = len(fake.chat_requests)
        last_failed = pytester.runpytest(url, "--lf", "--punie-cache=off")
        outcomes = last_failed.parseoutcomes()
        assert outcomes["failed"] == 1
        assert "passed" not in outcomes
        prompts = [r["messages"][-1]["content"] for r in fake.chat_requests[sent:]]
    assert prompts == ["6 times 7?"]


def test_a_bad_line_stops_collection_naming_file_and_line(pytester):
    pytester.makefile(".jsonl", eval_bad=_line() + "\n" + _line(id="x", expected={"nmber": 1}))
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting eval_bad.jsonl*", "*eval_bad.jsonl:2: *"])


def test_a_users_own_scorer_and_python_tests(pytester):
    pytester.makepyfile(
        my_scorers="def polite(response):\n    return 'please' in response.text.lower()\n"
    )
    lines = [
        _line(id="own", expected={"scorer": "my_scorers:polite"}),
        _line(
            id="code",
            messages=[{"role": "user", "content": "write add"}],
            expected={"python_tests": ["assert add(2, 3) == 5"]},
        ),
    ]
    pytester.makefile(".jsonl", eval_own="\n".join(lines))
    answers = {
        "capital of France?": "Paris, please.",
        "write add": "```python\ndef add(a, b):\n    return a + b\n```",
    }
    with FakeOpenAI(answers) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=r.json")
    result.assert_outcomes(passed=2)
    cases = json.loads((pytester.path / "r.json").read_text())["cases"]
    assert sorted(s["scorer"] for c in cases for s in c["scores"]) == [
        "assert_python_code",
        "polite",
    ]


def test_punie_cases_parametrizes_python_tests(pytester):
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow: slow\n"
    )
    pytester.makefile(".jsonl", cases=CASES)  # a name pytest does not collect by itself
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie.cases.files import punie_cases

        @pytest.mark.parametrize("punie_case", punie_cases("cases.jsonl"))
        def test_case(punie_case, punie_result):
            punie_case.score(punie_result)
        """
    )
    with FakeOpenAI(ANSWERS) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_case?c1? PASSED*", "*test_case?2? FAILED*"])


def test_repeats_of_file_cases(pytester):
    pytester.makefile(".jsonl", eval_demo=_line())
    with FakeOpenAI(ANSWERS) as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "--punie-repeat=2", "-v", "--punie-results=r.json"
        )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["eval_demo.jsonl::c1[[]repeat0[]] PASSED*"])
    cases = json.loads((pytester.path / "r.json").read_text())["cases"]
    assert [(c["nodeid"], c["repeat"]) for c in cases] == [
        ("eval_demo.jsonl::c1", 0),
        ("eval_demo.jsonl::c1", 1),
    ]


def test_the_shipped_example_file_is_valid():
    root = Path(__file__).parent.parent / "evals"
    files = sorted(root.glob("eval_*.jsonl"))
    assert files
    cases = [case for path in files for case in read_case_file(path)]
    assert len(cases) >= 5


# export-failures -----------------------------------------------------------------------------


def _document(tmp_path: Path) -> dict[str, Any]:
    return {
        "metadata": {"run_id": "run123"},
        "cases": [
            {
                "nodeid": "eval_demo.jsonl::weather",
                "category": "tools",
                "outcome": "failed",
                "score": 0.0,
                "prompt": "weather in Oslo",
                "tools": [WEATHER_TOOL],
                "expected": {
                    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
                },
                "failure": "no call",
                "response": {
                    "text": "I cannot.",
                    "messages": [
                        {
                            "kind": "request",
                            "parts": [
                                {"part_kind": "system-prompt", "content": "Use tools."},
                                {"part_kind": "user-prompt", "content": "weather in Oslo"},
                            ],
                        },
                        {
                            "kind": "response",
                            "parts": [{"part_kind": "text", "content": "I cannot."}],
                        },
                    ],
                },
            },
            {
                "nodeid": "test_x.py::test_add",
                "category": "math",
                "outcome": "failed",
                "score": 0.0,
                "prompt": "2+2?",
                "scores": [{"scorer": "assert_number", "details": {"expected": 4.0}}],
                "repeat": 0,
            },
            {"nodeid": "test_x.py::test_add", "outcome": "failed", "score": 0.0, "repeat": 1},
            {"nodeid": "test_x.py::test_poem", "outcome": "failed", "score": 0.0, "prompt": "poem"},
            {"nodeid": "test_x.py::test_ok", "outcome": "passed", "score": 1.0, "prompt": "hi"},
            {"nodeid": "test_x.py::test_err", "outcome": "error", "score": 0.0, "prompt": "hi"},
        ],
    }


def test_failed_cases_become_training_lines_with_their_expected_answer(tmp_path):
    lines = failure_lines(read_run(_document(tmp_path)))
    assert [p["case_id"] for _, p in lines] == [
        "eval_demo.jsonl::weather",
        "test_x.py::test_add",
        "test_x.py::test_poem",
    ]
    (weather, weather_origin), (add, add_origin), (poem, poem_origin) = lines
    assert weather["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "weather in Oslo"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                }
            ],
        },
    ]
    assert weather["tools"] == [WEATHER_TOOL]
    assert weather_origin["origin"] == "punie-run:run123:eval_demo.jsonl::weather"
    assert weather_origin["model_answer"] == "I cannot."
    assert add["messages"][-1] == {"role": "assistant", "content": "4"}
    assert add_origin["repeats_failed"] == [0, 1]
    assert poem_origin["needs_answer"]
    assert poem["messages"] == [{"role": "user", "content": "poem"}]
    # lines with an answer are valid mlx_lm training lines
    report = validate([(Path("f.jsonl"), n, json.dumps(x)) for n, x in enumerate((weather, add))])
    assert report.ok, report.summary()


def test_export_failures_writes_lines_and_provenance_and_never_overwrites(tmp_path, capsys):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_document(tmp_path)))
    out = tmp_path / "out"
    assert main(["export-failures", str(results), "--out", str(out)]) == 0
    assert "wrote 3 failed case(s)" in capsys.readouterr().out
    written = (out / "failures.jsonl").read_text().splitlines()
    origins = [json.loads(x) for x in (out / "failures.provenance.jsonl").read_text().splitlines()]
    assert len(written) == 3
    assert [o["line"] for o in origins] == [1, 2, 3]
    assert origins[0]["run_id"] == "run123"
    before = (out / "failures.jsonl").read_bytes()
    assert main(["export-failures", str(results), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "failures.jsonl").read_bytes() == before
    assert main(["export-failures", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
line_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.sampled_from(["a", "b-1"]),
        "category": json_values,
        "messages": json_values
        | st.just([{"role": "user", "content": "q"}])
        | st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant", "tool", "x"])},
                optional={"content": json_values},
            ),
            max_size=3,
        ),
        "tools": json_values | st.just([WEATHER_TOOL]),
        "tool_results": json_values,
        "expected": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "number": json_values,
                "keywords": json_values,
                "regex": json_values,
                "tool_calls": json_values,
                "no_tool_call": json_values,
                "python_tests": json_values,
            },
        ),
        "marks": json_values,
    },
)


@given(fields=line_fields)
def test_any_line_is_a_case_or_an_error_naming_file_and_line(fields):
    message = ""
    try:
        case = parse_line(json.dumps(fields), Path("eval_h.jsonl"), 3)
    except CaseFileError as error:
        message, case = str(error), None
    if case is None:
        assert message.startswith("eval_h.jsonl:3: ")
        return
    assert case.prompt.strip()
    assert any(
        key in case.expected
        for key in ("number", "keywords", "regex", "tool_calls", "no_tool_call", "python_tests")
    )


@given(text=st.text(max_size=200))
def test_any_text_line_is_a_case_or_an_error(text):
    message = "eval_h.jsonl:1: "
    try:
        parse_line(text, Path("eval_h.jsonl"), 1)
    except CaseFileError as error:
        message = str(error)
    assert message.startswith("eval_h.jsonl:1: ")


def test_case_files_under_xdist(pytester):
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow: slow\n"
    )
    pytester.makefile(".jsonl", eval_demo=CASES)
    with FakeOpenAI(ANSWERS) as fake:
        result = pytester.runpytest_subprocess(f"--punie-base-url={fake.base_url}", "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["tools * 2 * 2 *"])


@pytest.mark.parametrize("tools", [None, "get_weather", {"name": "x"}, 3])
def test_tools_that_are_no_list_are_an_error_naming_the_line(tools):
    line = {"messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "expected": {"keywords": ["hi"]}}  # fmt: skip
    with pytest.raises(CaseFileError, match=r"^eval_h\.jsonl:4: 'tools' must be a list"):
        parse_line(json.dumps(line), Path("eval_h.jsonl"), 4)
