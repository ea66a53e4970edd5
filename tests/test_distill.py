"""Self-distillation: the base model's answers to no-tool prompts, asked through the plugin as an
eval run, checked, and mixed into the recipe as lines (a fake server stands in for the model)."""

from __future__ import annotations

import json

import pytest

from pytest_punie.finetune.distill import (
    BaseAnswer,
    BasePrompt,
    answers_from_results,
    case_lines,
    distill,
    read_answers,
    write_answers,
)
from pytest_punie.finetune.leakage import Prompt, find_leaks
from pytest_punie.finetune.recipes import KIND_SHARES, base_answer_tasks, base_prompts
from pytest_punie.finetune.toolcall_data import ToolcallSpec, generate
from pytest_punie.testing import FakeOpenAI

PROMPTS = [
    BasePrompt("code-cube", "code", "Write a Python function cube(x) that returns x cubed.",
               {"python_tests": ["assert cube(3) == 27"]}),
    BasePrompt("sum", "arithmetic", "Compute 12 + 30.", {"number": 42}),
    BasePrompt("capital", "chat", "What is the capital city of Japan?", {"keywords": ["Tokyo"]}),
    BasePrompt("poem", "chat", "Write one sentence about the sea."),
]  # fmt: skip
ANSWERS = {
    PROMPTS[0].prompt: "```python\ndef cube(x):\n    return {'x': x}['x'] ** 3\n```",
    PROMPTS[1].prompt: "12 + 30 = 41",  # wrong, but the model's own: drawn less often
    PROMPTS[2].prompt: "The capital of Japan is Tokyo.",
    PROMPTS[3].prompt: "The sea is wide and full of light.",
}


def test_distill_asks_the_model_through_the_plugin_and_checks_each_answer(tmp_path):
    with FakeOpenAI(ANSWERS) as fake:
        server = [f"--punie-base-url={fake.base_url}"]
        answers = distill(PROMPTS, folder=tmp_path / "d", extra=server)
        asked = [r["messages"][-1]["content"] for r in fake.chat_requests]
        sampling = {
            (r.get("temperature"), r.get("max_completion_tokens", r.get("max_tokens")))
            for r in fake.chat_requests
        }
    assert sorted(asked) == sorted(ANSWERS)
    assert sampling == {(0.0, 256)}  # greedy, as the eval suite asks
    assert [a.id for a in answers] == ["code-cube", "sum", "capital", "poem"]
    assert [a.passed for a in answers] == [True, False, True, True]
    assert all(a.usable for a in answers)
    assert answers[2].answer == "The capital of Japan is Tokyo."
    assert (tmp_path / "d" / "eval_base_prompts.jsonl").is_file()  # kept, with the cache


def test_answers_cut_at_the_token_limit_or_calling_a_tool_are_not_usable():
    document = {
        "cases": [
            {"nodeid": "eval_base_prompts.jsonl::sum", "outcome": "passed",
             "response": {"text": "42", "output_tokens": 256, "tool_calls": []}},
            {"nodeid": "eval_base_prompts.jsonl::capital", "outcome": "passed",
             "response": {"text": "Tokyo", "output_tokens": 3,
                          "tool_calls": [{"name": "x", "arguments": {}}]}},
            {"nodeid": "eval_base_prompts.jsonl::poem", "outcome": "error", "response": None},
        ]
    }  # fmt: skip
    answers = answers_from_results(PROMPTS, document, max_tokens=256)
    assert [(a.id, a.truncated, a.called_tool, a.usable) for a in answers] == [
        ("sum", True, False, False),
        ("capital", False, True, False),
    ]  # the errored one is left out
    assert not BaseAnswer("i", "chat", "p", "<tool_call>{}</tool_call>", True, False).usable
    assert not BaseAnswer("i", "chat", "p", "la " * 30, True, False).usable  # a loop
    assert not BaseAnswer("i", "chat", "p", " ", True, False).usable


def test_answers_file_round_trip_and_errors(tmp_path):
    answers = [BaseAnswer("a", "chat", "Hi?", "Hello!", True, False)]
    path = tmp_path / "answers.jsonl"
    assert write_answers(path, answers, "SmolLM2") == 1
    assert json.loads(path.read_text())["model"] == "SmolLM2"
    assert read_answers(path) == answers
    path.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match=r"answers.jsonl:1: not a base answer"):
        read_answers(path)
    with pytest.raises(ValueError, match="two base prompts have the id"):
        case_lines([PROMPTS[0], PROMPTS[0]])


def test_base_answers_become_no_tool_lines_that_keep_their_text():
    answers = [
        BaseAnswer("c", "code", "Write f() with {x}.", "def f():\n    return {}", True, False),
        BaseAnswer("w", "arithmetic", "Compute 1 + 1.", "3", False, False),
        BaseAnswer("r", "arithmetic", "Compute 2 + 2.", "4", True, False),
        BaseAnswer("t", "chat", "Hi?", "Hello " * 200, True, True),  # cut at the limit
    ]  # fmt: skip
    tasks = base_answer_tasks(answers)
    assert [t.prompt for t in tasks] == [
        "Write f() with {{x}}.",
        "Compute 1 + 1.",
        "Compute 2 + 2.",
    ]
    # each kind weighs its share (code twice the others); within one, a right answer twice
    # a wrong one
    assert KIND_SHARES["code"] == 2 * KIND_SHARES["arithmetic"]
    assert [round(t.weight, 1) for t in tasks] == [200.0, 33.3, 66.7]
    spec = ToolcallSpec({}, {}, tasks[:1]).check()
    line = generate(spec, count=1, seed=0)[0]
    assert line["messages"] == [
        {"role": "user", "content": "Write f() with {x}."},
        {"role": "assistant", "content": "def f():\n    return {}"},
    ]


def test_the_recipes_base_prompts_are_checked_and_not_eval_prompts():
    from pathlib import Path

    from pytest_punie.finetune.leakage import eval_prompts

    prompts = base_prompts()
    assert len({p.id for p in prompts}) == len(prompts) >= 200
    assert {p.kind for p in prompts} == {"code", "arithmetic", "chat"}
    assert all(p.expected for p in prompts)
    for prompt in prompts:  # the expected numbers are the arithmetic's
        if prompt.kind == "arithmetic":
            assert isinstance(prompt.expected["number"], int)
    evals = eval_prompts(Path(__file__).resolve().parents[1] / "evals")
    assert not find_leaks(evals, [Prompt(p.prompt, p.id) for p in prompts])
    lines = case_lines(prompts)
    assert all(line["category"] == "base" for line in lines)
