"""The tool-calling data generator and the tool-calling recipe's shipped dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.cli import main
from pytest_punie.finetune.recipes import HELD_OUT, tool_calling_spec
from pytest_punie.finetune.toolcall_data import Task, Tool, ToolcallSpec, generate, spec_from_json
from pytest_punie.finetune.validation import validate_paths

ROOT = Path(__file__).resolve().parents[1]
RECIPE_DATA = ROOT / "training" / "data" / "tool-calling"

WEATHER = Tool(
    "weather",
    "Weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "{city}: sunny",
    "It is sunny in {city}.",
)
ADD = Tool(
    "add",
    "Add two numbers.",
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
    "{total}",
    "The sum is {total}.",
)


def small_spec(*tasks: Task) -> ToolcallSpec:
    pools = {"city": ["Oslo", "Lima", "Kyoto"], "n": [1, 2, 3], "total": [9]}
    return ToolcallSpec({"weather": WEATHER, "add": ADD}, pools, list(tasks)).check()


def test_single_call_keeps_argument_types_and_ends_on_the_turn_to_learn():
    spec = small_spec(Task("Add {n} and {n2}.", ((("add", {"a": "{n}", "b": "{n2}"}),),)))
    lines = generate(spec, count=6, seed=1)
    assert lines
    for line in lines:
        messages = line["messages"]
        call = next(m for m in messages if m.get("tool_calls"))["tool_calls"][0]["function"]
        assert isinstance(call["arguments"]["a"], int)
        assert call["arguments"]["a"] != call["arguments"]["b"]
        assert messages[-1]["role"] == "assistant"  # mask_prompt trains exactly this turn
        assert line["tools"][0]["function"]["name"] in {"add", "weather"}
    ends = {"call" if line["messages"][-1].get("tool_calls") else "answer" for line in lines}
    assert ends == {"call", "answer"}  # the call, and the answer once the result is back


def test_parallel_multi_step_and_no_tool_conversations():
    spec = small_spec(
        Task("Weather in {city} and {city2}?", ((("weather", {"city": "{city}"}),
                                                 ("weather", {"city": "{city2}"})),)),
        Task("Weather in {city}, then add {n} and {n2}.",
             ((("weather", {"city": "{city}"}),), (("add", {"a": "{n}", "b": "{n2}"}),))),
        Task("Hello!", (), None, "Hi there."),
    )  # fmt: skip
    lines = generate(spec, count=40, seed=3)
    parallel = [m for line in lines for m in line["messages"] if len(m.get("tool_calls", [])) == 2]
    assert parallel
    assert {c["function"]["arguments"]["city"] for c in parallel[0]["tool_calls"]} < {
        "Oslo",
        "Lima",
        "Kyoto",
    }
    second_step = [
        line for line in lines
        if line["messages"][-1].get("tool_calls")
        and line["messages"][-1]["tool_calls"][0]["function"]["name"] == "add"
    ]  # fmt: skip
    assert second_step, "no line ends on the second call of a multi-step task"
    assert second_step[0]["messages"][-2]["role"] == "tool"  # the first result is fed back
    plain = [line for line in lines if line["messages"][0]["content"] == "Hello!"]
    assert plain
    assert plain[0]["messages"][-1] == {"role": "assistant", "content": "Hi there."}


def test_spec_errors_name_the_task():
    with pytest.raises(ValueError, match="unknown tool 'nope'"):
        small_spec(Task("x", ((("nope", {}),),)))
    with pytest.raises(ValueError, match=r"unknown pool \{colour\}"):
        small_spec(Task("A {colour} sky", ((("weather", {"city": "x"}),),)))
    with pytest.raises(ValueError, match="needs an answer"):
        small_spec(Task("x"))


def test_spec_from_json_round_trip():
    data = {
        "tools": [vars(WEATHER)],
        "pools": {"city": ["Oslo", "Lima"]},
        "tasks": [{"prompt": "Weather in {city}?", "steps": [[["weather", {"city": "{city}"}]]]}],
    }
    spec = spec_from_json(json.loads(json.dumps(data)))
    assert generate(spec, count=2, seed=0)[0]["tools"][0]["function"]["name"] == "weather"


def test_recipe_dataset_is_valid_and_what_the_generator_writes(tmp_path):
    report = validate_paths([RECIPE_DATA])
    assert not report.problems, report.summary()
    main(["dataset", "generate-tools", "--out", str(tmp_path / "tc"), "--train", "600",
          "--valid", "40", "--test", "40"])  # fmt: skip
    for split in ("train", "valid", "test"):
        shipped = (RECIPE_DATA / f"{split}.jsonl").read_text()
        assert (tmp_path / "tc" / f"{split}.jsonl").read_text() == shipped, split


def test_generate_tools_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "tc"
    assert main(["dataset", "generate-tools", "--out", str(out), "--train", "5", "--valid",
                 "2", "--test", "2"]) == 0  # fmt: skip
    before = (out / "train.jsonl").read_text()
    status = main(["dataset", "generate-tools", "--out", str(out), "--seed", "9"])
    assert status != 0
    assert "pass --force" in capsys.readouterr().err
    assert (out / "train.jsonl").read_text() == before


def _lines(split: str) -> list[dict]:
    text = (RECIPE_DATA / f"{split}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _called(line: dict) -> set[str]:
    return {
        call["function"]["name"]
        for message in line["messages"]
        for call in message.get("tool_calls", [])
    }


def test_recipe_test_split_uses_only_tools_never_seen_in_training():
    seen = {
        tool["function"]["name"]
        for split in ("train", "valid")
        for line in _lines(split)
        for tool in line.get("tools", [])
    }
    assert not seen & HELD_OUT
    test_calls = set().union(*(_called(line) for line in _lines("test")))
    assert test_calls
    assert test_calls <= HELD_OUT


def test_recipe_covers_every_kind_and_many_tools():
    train = _lines("train")
    kinds = {"no_tool": 0, "single": 0, "parallel": 0, "multi_step": 0}
    for line in train:
        turns = [m for m in line["messages"] if m.get("tool_calls")]
        if not turns:
            kinds["no_tool"] += 1
        elif len(turns) > 1:
            kinds["multi_step"] += 1
        elif len(turns[0]["tool_calls"]) > 1:
            kinds["parallel"] += 1
        else:
            kinds["single"] += 1
    assert all(count >= 30 for count in kinds.values()), kinds
    tools = set().union(*(_called(line) for line in train))
    assert len(tools) >= 20, sorted(tools)
    eval_tools = {"list_dir", "read_file", "write_file", "search_files", "get_weather",
                  "convert_currency", "book_flight", "create_event"}  # fmt: skip
    assert eval_tools <= tools  # the tools a user evaluates, among many others
    assert len(tool_calling_spec().tasks) > 50
