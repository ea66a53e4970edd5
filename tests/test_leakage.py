"""The leakage gate: eval prompts that are (nearly) training prompts fail the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.finetune.leakage import (
    THRESHOLD,
    LeakageError,
    Prompt,
    check_dataset,
    find_leaks,
    normalise,
    similarity,
    training_prompts,
)

ROOT = Path(__file__).resolve().parents[1]


def test_normalise_and_similarity():
    assert normalise("  What is the WEATHER,  in Paris? ") == "what is the weather in paris"
    assert similarity("What is 2 + 2?", "what is 2+2") == 1.0  # punctuation and case only
    # one word changed in a short prompt: a near-duplicate
    assert similarity("What is the weather in Paris?", "What's the weather in Paris?") >= THRESHOLD
    # the same tool with other wording and other arguments: not a leak
    assert similarity("What is the weather in Paris?", "How is the weather in Lima right now?") < (
        THRESHOLD
    )
    assert similarity("Convert 100 USD to EUR.", "Change 75 GBP into JPY.") < 0.2


def _write(folder: Path, *prompts: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "x"}]}
        for p in prompts
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_find_leaks_names_both_lines(tmp_path):
    data = _write(tmp_path / "data", "Tell me a joke.", "what is the capital of france")
    evals = [Prompt("What is the capital of France?", "test_x.py::test_capital")]
    leaks = find_leaks(evals, training_prompts(data))
    assert len(leaks) == 1
    text = str(leaks[0])
    assert "same prompt" in text
    assert "test_x.py::test_capital" in text
    assert f"{data / 'train.jsonl'}:2" in text


def _suite(pytester, prompt: str) -> Path:
    pytester.makepyfile(
        test_cases=f"""
        import pytest

        @pytest.mark.punie(category="c", prompt={prompt!r})
        def test_case(punie_result):
            pass

        def test_plain():
            pass
        """
    )
    return pytester.path


def test_check_dataset_collects_the_suite_and_fails_on_a_hit(pytester, tmp_path):
    suite = _suite(pytester, "Which files are in the docs folder?")
    clean = _write(tmp_path / "clean", "Open CHANGELOG.md for me.")
    assert [p.text for p in check_dataset(clean, suite)] == ["Which files are in the docs folder?"]
    leaky = _write(tmp_path / "leaky", "Which files are in the docs folder ?")
    with pytest.raises(LeakageError, match=r"test_cases.py::test_case .* training line .*:1"):
        check_dataset(leaky, suite)


def test_train_data_option_fails_an_eval_run_on_a_hit(pytester, tmp_path):
    _suite(pytester, "Which files are in the docs folder?")
    leaky = _write(tmp_path / "leaky", "which files are in the docs folder")
    result = pytester.runpytest(f"--punie-train-data={leaky}", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--punie-train-data={leaky}: 1 eval prompt(s) also in the training data*",
         f"*same prompt: eval case test_cases.py::test_case*{leaky / 'train.jsonl'}:1*"]
    )  # fmt: skip
    clean = _write(tmp_path / "clean", "Open CHANGELOG.md for me.")
    result = pytester.runpytest(f"--punie-train-data={clean}", "--collect-only")
    assert result.ret == pytest.ExitCode.OK


def test_shipped_training_data_does_not_leak_into_the_evals():
    for name in ("sample", "tool-calling"):
        check_dataset(ROOT / "training" / "data" / name, ROOT / "evals")


def test_case_file_prompts_and_their_earlier_user_turns_are_checked(pytester, tmp_path):
    line = {
        "id": "follow-up",
        "category": "c",
        "messages": [
            {"role": "user", "content": "When is high tide in Brighton today?"},
            {"role": "assistant", "content": "At 06:42."},
            {"role": "user", "content": "And what about the harbour at Dover?"},
        ],
        "expected": {"regex": "."},
    }
    pytester.makefile(".jsonl", eval_cases=json.dumps(line))
    checked = [p.text for p in check_dataset(_write(tmp_path / "clean", "Hi."), pytester.path)]
    assert checked == [line["messages"][0]["content"], line["messages"][2]["content"]]
    for prompt in ("when is high tide in brighton today", "And what about the harbour at Dover"):
        leaky = _write(tmp_path / prompt[:4], prompt)
        with pytest.raises(LeakageError, match=r"eval_cases.jsonl::follow-up"):
            check_dataset(leaky, pytester.path)
