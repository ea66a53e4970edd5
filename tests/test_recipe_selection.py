"""A recipe averages its checkpoints (``pipeline.resolve_checkpoints``), or chooses one, when the
user asks, on its own selection suite (``held_out.write_selection_suite``): the valid split's
first lines and prompts it never trains on, none of them a case of the eval suite or the test
split that judge the adapter afterwards."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_punie.cases.files import read_case_file
from pytest_punie.finetune import pipeline
from pytest_punie.finetune.checkpoints import AVERAGE, CheckpointPlan, figure
from pytest_punie.finetune.distill import BasePrompt
from pytest_punie.finetune.held_out import CATEGORY, SELECTION_LINES, write_selection_suite
from pytest_punie.finetune.leakage import check_dataset
from pytest_punie.finetune.lora import LoraConfig
from pytest_punie.finetune.pipeline import (
    TrainingJob,
    checkpoint_scorer,
    prepare_job,
    resolve_checkpoints,
)
from pytest_punie.finetune.recipes import base_prompts, find_recipe, selection_prompts

ROOT = Path(__file__).resolve().parent.parent
RECIPE_DATA = ROOT / "training" / "data" / "tool-calling"
EVALS = ROOT / "evals"


def _user_turns(path: Path) -> set[str]:
    turns = set()
    for text in path.read_text().splitlines():
        for message in json.loads(text)["messages"]:
            if message["role"] == "user":
                turns.add(message["content"])
    return turns


def test_the_selection_prompts_are_no_training_prompt_and_no_eval_prompt(tmp_path):
    prompts = selection_prompts()
    assert [p.kind for p in prompts].count("code") >= 10
    assert [p.kind for p in prompts].count("arithmetic") >= 6
    texts = {p.prompt for p in prompts}
    assert len(texts) == len(prompts)
    assert not texts & {p.prompt for p in base_prompts()}
    assert not texts & _user_turns(RECIPE_DATA / "train.jsonl")
    # the leakage check the pipeline runs, with these prompts as the data: no eval prompt is
    # (nearly) one of them
    lines = [{"messages": [{"role": "user", "content": p.prompt},
                           {"role": "assistant", "content": "x"}]} for p in prompts]  # fmt: skip
    for split in ("train", "valid"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert check_dataset(tmp_path, EVALS)  # raises LeakageError on a hit


def test_the_selection_suite_holds_valid_lines_and_prompts_as_cases(tmp_path):
    prompts = [BasePrompt("p1", "code", "Write f(x).", {"python_tests": ["assert f(1) == 1"]}),
               BasePrompt("p2", "arithmetic", "What is 2 + 3?", {"number": 5})]  # fmt: skip
    parsed = [json.loads(t) for t in (RECIPE_DATA / "valid.jsonl").read_text().splitlines()]
    count = write_selection_suite(parsed, prompts, tmp_path / "s", lines=7)
    assert count == 9
    valid = read_case_file(tmp_path / "s" / "eval_valid_split.jsonl")
    assert len(valid) == 7
    assert {c.category for c in valid} == {CATEGORY}
    first = json.loads((RECIPE_DATA / "valid.jsonl").read_text().splitlines()[0])
    last_user = [m for m in first["messages"] if m["role"] == "user"][-1]["content"]
    assert valid[0].messages[-1]["content"] == last_user
    added = read_case_file(tmp_path / "s" / "eval_selection_prompts.jsonl")
    assert [(c.id, c.category) for c in added] == [
        ("p1", f"{CATEGORY}_code"),
        ("p2", f"{CATEGORY}_arithmetic"),
    ]
    assert added[1].expected == {"number": 5}
    # no test-split line is a selection case: the split judges the adapter afterwards
    split = _user_turns(RECIPE_DATA / "test.jsonl")
    assert not split & {c.messages[-1]["content"] for c in valid}
    with pytest.raises(ValueError, match="no line to make a selection case of"):
        write_selection_suite([], prompts, tmp_path / "t")


def _job(tmp_path: Path, **given) -> TrainingJob:
    fields = {"data": RECIPE_DATA, "out": tmp_path / "a", "model": "m", "config": LoraConfig()}
    return TrainingJob(**{**fields, **given})


def test_a_recipe_averages_its_checkpoints_or_scores_them_on_its_selection_suite(tmp_path):
    recipe = find_recipe("tool-calling")
    assert recipe.save_every is not None
    # the recipe's own plan: every checkpoint averaged, none scored, so no suite is needed
    job = resolve_checkpoints(_job(tmp_path), recipe)
    assert job.checkpoints == CheckpointPlan(recipe.save_every, AVERAGE)
    assert job.checkpoints.averages
    assert not job.selection
    assert not job.lacks_checkpoint_suite  # no eval suite, and none needed
    # a user who chooses by a figure scores the recipe's selection suite, unless they name cases
    folder = str((tmp_path / "a.data" / "selection").absolute())
    mine = resolve_checkpoints(_job(tmp_path, checkpoints=CheckpointPlan(20, "held_out")), recipe)
    assert mine.checkpoints == CheckpointPlan(20, "held_out", None, folder)
    assert [p.id for p in mine.selection] == [p.id for p in selection_prompts()]
    averaged = resolve_checkpoints(_job(tmp_path, checkpoints=CheckpointPlan(20, AVERAGE)), recipe)
    assert averaged.checkpoints == CheckpointPlan(20, AVERAGE)
    named = CheckpointPlan(20, cases="test_tool_calling.py")
    assert resolve_checkpoints(_job(tmp_path, checkpoints=named), recipe).checkpoints == named
    assert not resolve_checkpoints(_job(tmp_path, checkpoints=named), recipe).selection
    # --punie-save-every=0, several hosts (no checkpoints there), no recipe
    for job in (
        resolve_checkpoints(_job(tmp_path), recipe, off=True),
        resolve_checkpoints(_job(tmp_path, hosts=("127.0.0.1", "127.0.0.1")), recipe),
        resolve_checkpoints(_job(tmp_path), None),
        resolve_checkpoints(_job(tmp_path), find_recipe("sample")),
    ):
        assert job.checkpoints is None
        assert not job.selection


def test_the_selection_suite_is_written_with_the_data_and_scored_without_the_eval_suite(
    tmp_path, monkeypatch
):
    from pytest_punie.testing import FakeOpenAI

    monkeypatch.setattr(pipeline, "token_counter", lambda model: lambda text: len(text) // 4)
    recipe = replace(
        find_recipe("tool-calling"),
        selection=lambda: [BasePrompt("sum", "arithmetic", "What is 2 + 3?", {"number": 5}),
                           BasePrompt("diff", "arithmetic", "What is 9 - 4?", {"number": 5})],
    )  # fmt: skip
    given = CheckpointPlan(recipe.save_every or 40)  # chosen by overall: scored, not averaged
    job = resolve_checkpoints(
        _job(tmp_path, model="", config=LoraConfig(max_seq_length=4096), checkpoints=given),
        recipe,
    )
    prepare_job(job)
    suite = Path(str(job.checkpoints.cases))
    valid = (tmp_path / "a.data" / "valid.jsonl").read_text().splitlines()
    expected = min(SELECTION_LINES, len(valid)) + 2
    assert sum(len(read_case_file(f)) for f in suite.glob("eval_*.jsonl")) == expected
    with FakeOpenAI({"What is 2 + 3?": "5", "What is 9 - 4?": "It is 6."}) as fake:
        score = checkpoint_scorer(job, extra=[f"--punie-base-url={fake.base_url}"], cwd=tmp_path)
        document = score(None)
    assert len(document.cases) == expected
    assert figure(document, f"{CATEGORY}_arithmetic") == 0.5
    assert document.category(CATEGORY) is not None


@pytest.mark.parametrize(
    ("given", "expected", "averages"),
    [
        ((), 40, True),
        (("--save-every", "10"), 10, False),
        (("--save-every", "10", "--select-by", "average"), 10, True),
        (("--save-every", "0"), None, False),
    ],
)
def test_punie_train_with_a_recipe_resolves_its_checkpoints_the_same_way(
    tmp_path, monkeypatch, given, expected, averages
):
    from pytest_punie.cli import main
    from pytest_punie.cli import train as cli_train

    seen = []

    def stop(job):
        seen.append(job)
        raise ValueError("stopped before training")

    monkeypatch.setattr(cli_train, "resolve_model", lambda model: "m")
    monkeypatch.setattr(cli_train, "prepare_job", stop)
    out = tmp_path / "a"
    code = main(["train", str(RECIPE_DATA), "--out", str(out), "--recipe", "tool-calling", *given])
    assert code == 2  # the stand-in for prepare_job stopped it
    (job,) = seen
    if expected is None:
        assert job.checkpoints is None
        return
    assert job.checkpoints.save_every == expected
    assert job.checkpoints.averages is averages
    if averages:  # nothing scored: no suite
        assert job.checkpoints.cases is None
        assert not job.selection
        return
    assert job.checkpoints.cases == str(job.selection_folder)  # no --evals needed for it
    assert job.selection
