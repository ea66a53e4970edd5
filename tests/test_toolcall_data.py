"""The tool-calling data generator and the tool-calling recipe's shipped dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.cli import main
from pytest_punie.finetune.distill import read_answers
from pytest_punie.finetune.recipes import BASE_ANSWERS, EVAL_TOOLS, tool_calling_spec
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


def test_each_parallel_call_gets_its_own_result_and_later_turns_see_them():
    """Two calls in one turn never share a result drawn from a pool (two cities, two clocks),
    and a value a result drew is what a later turn's call uses ("then show me the first")."""
    clock = Tool("time_in", "Time in a city.", WEATHER.parameters, "{clock}", "{city}: {clock}.")
    listing = Tool("list_ids", "List ids.", {"type": "object", "properties": {}}, "{id}, {id2}",
                   "Found {id} and {id2}.")  # fmt: skip
    fetch = Tool("fetch", "Fetch an id.", {"type": "object", "properties": {"key": {}}},
                 "{key}: open", "{key} is open.")  # fmt: skip
    pools = {"city": ["Oslo", "Lima", "Kyoto"], "clock": ["08:00", "09:00"], "id": ["A1", "B2"]}
    spec = ToolcallSpec(
        {t.name: t for t in (clock, listing, fetch)},
        pools,
        [Task("Time in {city} and {city2}?", ((("time_in", {"city": "{city}"}),
                                               ("time_in", {"city": "{city2}"})),)),
         Task("List, then fetch the first.", ((("list_ids", {}),), (("fetch", {"key": "{id}"}),)))],
    ).check()  # fmt: skip
    lines = generate(spec, count=40, seed=5)
    answers = [line["messages"] for line in lines if line["messages"][-2]["role"] == "tool"]
    parallel = [m for m in answers if m[0]["content"].startswith("Time")]
    steps = [m for m in answers if m[0]["content"].startswith("List")]
    assert parallel
    assert steps
    for messages in parallel:
        first, second = (m["content"] for m in messages if m["role"] == "tool")
        assert first != second
        cities = [c["function"]["arguments"]["city"] for c in messages[1]["tool_calls"]]
        assert messages[-1]["content"] == f"{cities[0]}: {first}. {cities[1]}: {second}."
    for messages in steps:
        listed = messages[2]["content"].split(", ")[0]
        assert messages[3]["tool_calls"][0]["function"]["arguments"] == {"key": listed}


def test_recipe_results_and_answers_name_the_call_they_answer():
    """Every result of the recipe's parallel calls differs, and the answer after them names
    every argument the calls were given (no answer repeats the first call's id twice)."""
    checked = 0
    for line in (*_lines("train"), *_lines("valid"), *_lines("test")):
        messages = line["messages"]
        for n, message in enumerate(messages):
            calls = message.get("tool_calls") or []
            if len(calls) < 2 or len({json.dumps(c["function"]) for c in calls}) < len(calls):
                continue
            results = [m["content"] for m in messages[n + 1 : n + 1 + len(calls)]]
            assert len(set(results)) == len(results), messages
            if n + 1 + len(calls) == len(messages) - 1:  # the line ends on the answer to them
                given = [v for c in calls for v in c["function"]["arguments"].values()]
                missing = [
                    v for v in given if isinstance(v, str) and v not in messages[-1]["content"]
                ]
                assert not missing, messages
                checked += 1
    assert checked >= 10


def _fresh(name: str) -> Tool:
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    return Tool(name, "A tool never seen before.", schema, "ok", "Done.")


def test_drawing_settings_novel_tools_answers_and_bare_lines():
    tools = {t.name: t for t in (WEATHER, ADD, _fresh("fresh_a"), _fresh("fresh_b"))}
    pools = {"city": ["Oslo", "Lima", "Kyoto"], "n": [1, 2, 3], "total": [9]}
    tasks = [Task("Weather in {city}?", ((("weather", {"city": "{city}"}),),)),
             Task("Hello!", (), None, "Hi there.")]  # fmt: skip
    spec = ToolcallSpec(tools, pools, tasks, novel=frozenset({"fresh_a", "fresh_b"}),
                        min_distractors=1, distractors=2, answer_share=1.0,
                        bare_share=1.0).check()  # fmt: skip
    lines = generate(spec, count=12, seed=2)
    calls = [line for line in lines if len(line["messages"]) > 2]
    assert calls
    for line in calls:  # always the answer after the result, with an unseen-looking tool
        assert line["messages"][-1]["role"] == "assistant"
        assert "tool_calls" not in line["messages"][-1]
        shown = {t["function"]["name"] for t in line["tools"]}
        assert shown & {"fresh_a", "fresh_b"}
        assert len(shown) >= 2  # the called tool and at least one more
    greetings = [line for line in lines if line["messages"][0]["content"] == "Hello!"]
    assert greetings
    assert all("tools" not in line for line in greetings)  # bare_share 1: shown no tool
    with pytest.raises(ValueError, match="novel: unknown tool"):
        ToolcallSpec(tools, pools, tasks, novel=frozenset({"nope"})).check()
    with pytest.raises(ValueError, match="min_distractors"):
        ToolcallSpec(tools, pools, tasks, min_distractors=3, distractors=2).check()


def test_a_number_placeholder_result_becomes_text():
    count = Tool("count", "Count.", {"type": "object", "properties": {}}, "{n}", "{n} of them.")
    spec = ToolcallSpec({"count": count}, {"n": [4]}, [Task("How many?", ((("count", {}),),))],
                        answer_share=1.0).check()  # fmt: skip
    line = generate(spec, count=1, seed=0)[0]
    assert line["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "name": "count",
                                   "content": "4"}  # fmt: skip
    assert line["messages"][-1]["content"] == "4 of them."


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


def _shown(line: dict) -> set[str]:
    return {tool["function"]["name"] for tool in line.get("tools", [])}


def test_recipe_test_split_uses_only_tools_never_seen_in_training():
    held_out = tool_calling_spec().held_out
    seen = set().union(*(_shown(line) for split in ("train", "valid") for line in _lines(split)))
    assert not seen & held_out
    test_calls = set().union(*(_called(line) for line in _lines("test")))
    assert len(test_calls) >= 10, sorted(test_calls)
    assert test_calls <= held_out
    assert {"book_hotel", "track_package"} <= test_calls  # hand-written and made-up ones


def _kind(line: dict) -> str:
    turns = [m for m in line["messages"] if m.get("tool_calls")]
    if not turns:
        return "no_tool"
    if len(turns) > 1:
        return "multi_step"
    return "parallel" if len(turns[0]["tool_calls"]) > 1 else "single"


def test_recipe_covers_every_kind_and_many_tools():
    train = _lines("train")
    kinds = {"no_tool": 0, "single": 0, "parallel": 0, "multi_step": 0}
    for line in train:
        kinds[_kind(line)] += 1
    assert all(count >= 30 for count in kinds.values()), kinds
    assert kinds["no_tool"] >= len(train) // 3, kinds  # what the model knew, kept
    tools = set().union(*(_called(line) for line in train))
    assert len(tools) >= 100, len(tools)
    assert EVAL_TOOLS <= tools  # the tools a user evaluates, among many others
    assert len(tool_calling_spec().tasks) > 300


def test_every_recipe_line_with_tools_shows_an_unseen_looking_tool_and_several_tools():
    spec = tool_calling_spec()
    lines = [line for split in ("train", "valid", "test") for line in _lines(split)]
    with_tools = [line for line in lines if line.get("tools")]
    assert all(_shown(line) & spec.novel for line in with_tools)
    shown = [len(_shown(line)) for line in with_tools]
    assert sum(shown) / len(shown) >= 3.0, sum(shown) / len(shown)
    made_up = [t for t in spec.novel if "additionalProperties" not in spec.tools[t].parameters]
    assert len(made_up) == len(spec.novel)  # compact schemas


def test_recipe_lines_end_in_a_plain_answer_after_tool_results():
    """The model learns to stop: many lines end in words after the results came back."""
    train = _lines("train")
    after_results = [
        line for line in train
        if line["messages"][-2]["role"] == "tool" and not line["messages"][-1].get("tool_calls")
    ]  # fmt: skip
    with_calls = [line for line in train if _kind(line) != "no_tool"]
    assert len(after_results) >= 0.35 * len(with_calls), (len(after_results), len(with_calls))


def test_recipe_no_tool_lines_are_the_base_models_own_answers():
    answers = {a.prompt: a for a in read_answers(BASE_ANSWERS)}
    train = _lines("train")
    no_tool = [line for line in train if _kind(line) == "no_tool"]
    used = []
    for line in no_tool:
        prompt, reply = line["messages"][0]["content"], line["messages"][-1]["content"]
        answer = answers[prompt]  # every one was asked to the base model
        assert answer.usable
        assert reply == answer.answer
        used.append(answer)
    kinds = {kind: sum(a.kind == kind for a in used) for kind in ("code", "arithmetic", "chat")}
    assert min(kinds.values()) >= len(used) / 5, kinds  # each kind has its share
    usable = [a for a in answers.values() if a.usable]
    right_share = sum(a.passed for a in usable) / len(usable)
    assert sum(a.passed for a in used) / len(used) > right_share  # right answers drawn more
    bare = [line for line in no_tool if not line.get("tools")]
    assert 0.3 * len(no_tool) <= len(bare) <= 0.7 * len(no_tool)  # as code and sums are asked


def test_eval_only_tools_never_appear_in_the_recipe_data():
    """The eval suite's data-file tools measure tools never trained on."""
    eval_tools = {
        tool["function"]["name"]
        for path in (ROOT / "evals").glob("eval_*.jsonl")
        for line in path.read_text().splitlines()
        for tool in json.loads(line).get("tools", [])
    }
    assert len(eval_tools) >= 15
    for split in ("train", "valid", "test"):
        seen = set().union(*(_shown(line) for line in _lines(split)))
        assert not seen & eval_tools, (split, sorted(seen & eval_tools))
