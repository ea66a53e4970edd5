"""Choosing the best checkpoint by task score (``finetune.checkpoints``): the rules with fake
scores, the selection on tiny fake checkpoint folders, the options, and the eval runs that score
a checkpoint (through a fake server and the response cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.finetune import pipeline
from pytest_punie.finetune.checkpoints import (
    CheckpointError,
    CheckpointPlan,
    CheckpointScore,
    CheckpointWatcher,
    best,
    checkpoint_folder,
    checkpoint_rows,
    figure,
    is_checkpoint,
    list_checkpoints,
    score,
    select,
    selected_suite,
    stalled,
)
from pytest_punie.finetune.lora import MANIFEST, LoraConfig
from pytest_punie.finetune.pipeline import PreparedData, TrainingJob, checkpoint_scorer, train_job
from pytest_punie.results.document import RunDocument, read_run

from .integration.conftest import TWO_CASES


def document(**categories: list[float]) -> RunDocument:
    """A results document whose categories have cases with these scores."""
    cases = [
        {"nodeid": f"test_{name}.py::case{i}", "category": name,
         "outcome": "passed" if value == 1.0 else "failed", "score": value}
        for name, values in categories.items()
        for i, value in enumerate(values)
    ]  # fmt: skip
    return read_run({"cases": cases})


def scores(*figures: float) -> list[CheckpointScore]:
    return [
        CheckpointScore(iteration=10 * (i + 1), figure=f, overall=f) for i, f in enumerate(figures)
    ]


def test_the_best_checkpoint_has_the_highest_figure_and_ties_go_to_the_earlier():
    assert best(scores(0.2, 0.6, 0.4)).iteration == 20
    assert best(scores(0.5, 0.7, 0.7, 0.3)).iteration == 20  # 30 ties with 20: not an improvement
    assert best(scores(0.1)).iteration == 10
    with pytest.raises(CheckpointError, match="no checkpoint"):
        best([])


def test_stalled_counts_checkpoints_since_the_best():
    assert not stalled(scores(0.2, 0.6, 0.4), 2)
    assert stalled(scores(0.2, 0.6, 0.4, 0.6), 2)  # equal is no improvement
    assert not stalled(scores(0.2, 0.6, 0.4, 0.7), 2)
    assert stalled(scores(0.2, 0.1), 1)
    assert not stalled([], 1)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.integers(1, 5))
def test_stalled_means_the_last_k_checkpoints_beat_none_before_them(figures, patience):
    before, last = figures[:-patience], figures[-patience:]
    expected = len(figures) > patience and max(last) <= max(before)
    assert stalled(scores(*figures), patience) == expected


def test_checkpoints_every_n_iterations_and_at_the_last():
    assert [i for i in range(1, 51) if is_checkpoint(i, 20, 50)] == [20, 40, 50]
    assert [i for i in range(1, 41) if is_checkpoint(i, 20, 40)] == [20, 40]
    assert checkpoint_folder(Path("a"), 20) == Path("a/checkpoints/0000020")


def test_the_figure_is_a_category_mean_or_overall():
    run = document(tool_calling=[1.0, 0.0, 0.0, 1.0], reasoning=[1.0, 1.0])
    assert figure(run, "tool_calling") == pytest.approx(0.5)
    assert figure(run, "overall") == run.overall


def test_an_unknown_category_is_an_error_naming_the_categories_the_suite_has():
    run = document(tool_calling=[1.0], reasoning=[0.0])
    with pytest.raises(CheckpointError) as error:
        figure(run, "tool_use")
    assert "--punie-select-by=tool_use" in str(error.value)
    assert "reasoning, tool_calling" in str(error.value)
    with pytest.raises(CheckpointError, match="no case"):
        figure(read_run({"cases": []}), "overall")


def test_a_run_whose_every_case_errored_is_no_score():
    cases = [{"nodeid": f"t::c{i}", "category": "x", "outcome": "error", "score": 0.0,
              "message": "ServerError: the server died"} for i in range(2)]  # fmt: skip
    with pytest.raises(CheckpointError, match="every case of the eval run on checkpoint 20 erro"):
        score(20, read_run({"cases": cases}), "overall")
    cases[0] = {**cases[0], "outcome": "passed", "score": 1.0}
    partly = score(20, read_run({"cases": cases}), "overall")
    assert (partly.figure, partly.errors) == (0.5, 1)  # an error scores 0, and is counted


def test_the_watcher_stops_training_when_the_figure_has_not_improved_for_k_checkpoints():
    figures = {None: 0.1, 10: 0.2, 20: 0.5, 30: 0.5, 40: 0.4, 50: 0.9}
    seen: list[Path | None] = []
    lines: list[str] = []

    def evaluate(adapter: Path | None) -> RunDocument:
        seen.append(adapter)
        iteration = int(adapter.name) if adapter else None
        value = figures[iteration]
        return document(tool_calling=[value], reasoning=[0.0])

    watcher = CheckpointWatcher(
        CheckpointPlan(10, "tool_calling", early_stop=2), evaluate, lines.append
    )
    assert watcher.score_base().figure == pytest.approx(0.1)
    answers = [watcher(i, checkpoint_folder(Path("a"), i)) for i in (10, 20, 30, 40)]
    assert answers == [True, True, True, False]  # 30 and 40 do not beat 20
    assert watcher.stopped_at == 40
    assert [s.iteration for s in watcher.scores] == [10, 20, 30, 40]
    assert seen[:2] == [None, Path("a/checkpoints/0000010")]
    assert (
        lines[-1] == "early stop at iteration 40: tool_calling has not improved for 2 checkpoint(s)"
    )


def test_without_early_stop_the_watcher_never_stops():
    watcher = CheckpointWatcher(CheckpointPlan(10), lambda a: document(x=[0.0]), lambda _: None)
    assert all(watcher(i, Path(f"{i:07d}")) for i in range(10, 100, 10))
    assert watcher.stopped_at is None


def fake_adapter(folder: Path, iterations: list[int]) -> Path:
    """An adapter folder as training leaves it: the last weights and a checkpoint per iteration,
    each weights file holding its iteration's name."""
    for iteration in iterations:
        checkpoint = checkpoint_folder(folder, iteration)
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapters.safetensors").write_bytes(f"weights {iteration}".encode())
        (checkpoint / "adapter_config.json").write_text("{}")
    (folder / "adapters.safetensors").write_bytes(f"weights {iterations[-1]}".encode())
    (folder / MANIFEST).write_text(json.dumps({"config": {"rank": 8}}))
    return folder


def test_select_makes_the_best_checkpoint_the_adapter_and_records_every_one(tmp_path):
    adapter = fake_adapter(tmp_path / "adapter", [20, 40, 60, 80])
    by_iteration = {None: 0.3, 20: 0.5, 40: 0.75, 60: 0.75, 80: 0.5}
    watcher = CheckpointWatcher(
        CheckpointPlan(20, "tool_calling", cases="test_tool_calling.py"),
        lambda a: document(tool_calling=[by_iteration[int(a.name) if a else None]], other=[1.0]),
        lambda _: None,
    )
    watcher.score_base()
    for iteration in (20, 40, 60, 80):
        watcher(iteration, checkpoint_folder(adapter, iteration))
    manifest = select(adapter, json.loads((adapter / MANIFEST).read_text()), watcher)

    assert (adapter / "adapters.safetensors").read_bytes() == b"weights 40"
    assert [i for i, _ in list_checkpoints(adapter)] == [20, 40, 60, 80]  # none lost
    assert (checkpoint_folder(adapter, 80) / "adapters.safetensors").read_bytes() == b"weights 80"
    on_disk = json.loads((adapter / MANIFEST).read_text())
    assert on_disk == manifest
    assert on_disk["config"] == {"rank": 8}  # the training manifest is kept
    section = on_disk["checkpoints"]
    assert section["selected"] == 40
    assert section["select_by"] == "tool_calling"
    assert section["cases"] == "test_tool_calling.py"
    assert "iteration(s) 60 tie with it: the earlier is kept" in section["reason"]
    assert section["base"]["figure"] == pytest.approx(0.3)
    assert [(e["iteration"], e["figure"], e["selected"]) for e in section["checkpoints"]] == [
        (20, 0.5, False), (40, 0.75, True), (60, 0.75, False), (80, 0.5, False)
    ]  # fmt: skip
    assert section["checkpoints"][1]["categories"] == {"other": 1.0, "tool_calling": 0.75}
    assert section["checkpoints"][1]["folder"] == "checkpoints/0000040"
    for name in ("base", "0000020", "0000080"):
        assert json.loads((adapter / "checkpoints" / f"{name}-results.json").read_text())["cases"]
    assert checkpoint_rows(on_disk) == [
        ["0 (base)", "30.0%", ""], ["20", "50.0%", ""], ["40", "75.0%", "selected"],
        ["60", "75.0%", ""], ["80", "50.0%", ""],
    ]  # fmt: skip
    assert checkpoint_rows({"config": {}}) == []


def test_select_says_when_training_stopped_early(tmp_path):
    adapter = fake_adapter(tmp_path / "adapter", [10, 20, 30])
    values = {10: 0.6, 20: 0.4, 30: 0.2}
    watcher = CheckpointWatcher(
        CheckpointPlan(10, early_stop=2), lambda a: document(x=[values[int(a.name)]]), print
    )
    assert [watcher(i, checkpoint_folder(adapter, i)) for i in (10, 20, 30)] == [True, True, False]
    section = select(adapter, {}, watcher)["checkpoints"]
    assert section["selected"] == 10
    assert section["stopped_early_at"] == 30
    assert "stopped early at iteration 30" in section["reason"]
    assert (adapter / "adapters.safetensors").read_bytes() == b"weights 10"


def test_the_subset_is_a_path_of_the_suite_or_a_k_expression(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evals = tmp_path / "evals"
    evals.mkdir()
    (evals / "test_tool_calling.py").write_text("")
    assert selected_suite(evals, None) == (evals, [])
    assert selected_suite(evals, "test_tool_calling.py") == (evals / "test_tool_calling.py", [])
    assert selected_suite(evals, "evals/test_tool_calling.py")[0] == evals / "test_tool_calling.py"
    assert selected_suite(evals, "tool and not parallel") == (
        evals,
        ["-k", "tool and not parallel"],
    )


def test_an_unknown_category_stops_the_run_before_any_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "train_in_subprocess", no_training)
    job = TrainingJob(data=tmp_path, out=tmp_path / "a", model="m", config=LoraConfig(),
                      evals=tmp_path, checkpoints=CheckpointPlan(10, "tool_use"))  # fmt: skip
    prepared = PreparedData(tmp_path, {}, {}, tmp_path / "rejects.jsonl", "hash")
    with pytest.raises(CheckpointError, match="no category 'tool_use'; it has reasoning"):
        train_job(job, prepared, score=lambda a: document(reasoning=[1.0]), progress=print)


def test_train_job_hands_every_checkpoint_to_the_watcher_and_selects(tmp_path, monkeypatch):
    """The pipeline's side of the protocol, with the training child played by a fake that saves
    checkpoints the way it does and obeys the watcher's answer."""
    out = tmp_path / "adapter"
    calls = {}

    def fake_training(model, data, out_dir, config, *, save_every, on_checkpoint, **kwargs):
        calls["save_every"] = save_every
        fake_adapter(out_dir, [5, 10, 15, 20])
        for iteration in (5, 10, 15, 20):
            if not on_checkpoint(iteration, checkpoint_folder(out_dir, iteration)):
                break
        return json.loads((out_dir / MANIFEST).read_text())

    monkeypatch.setattr(pipeline, "train_in_subprocess", fake_training)
    job = TrainingJob(data=tmp_path, out=out, model="m", config=LoraConfig(iters=20),
                      evals=tmp_path, checkpoints=CheckpointPlan(5, early_stop=1))  # fmt: skip
    prepared = PreparedData(tmp_path, {}, {}, tmp_path / "rejects.jsonl", "hash")
    values = {None: 0.0, 5: 0.5, 10: 0.8, 15: 0.1, 20: 0.9}
    manifest = train_job(
        job,
        prepared,
        progress=lambda _: None,
        score=lambda a: document(x=[values[int(a.name) if a else None]]),
    )
    assert calls["save_every"] == 5
    section = manifest["checkpoints"]
    assert [e["iteration"] for e in section["checkpoints"]] == [5, 10, 15]  # stopped after 15
    assert section["selected"] == 10
    assert (out / "adapters.safetensors").read_bytes() == b"weights 10"


def test_checkpoints_are_scored_on_the_subset_through_the_response_cache(tmp_path):
    from pytest_punie.testing import FakeOpenAI

    evals = tmp_path / "evals"
    evals.mkdir()
    (evals / "test_cases.py").write_text(TWO_CASES)
    (evals / "pytest.ini").write_text(
        "[pytest]\naddopts = --html=report.html\nasyncio_default_fixture_loop_scope = function\n"
    )
    plan = CheckpointPlan(10, "math", cases="sum")
    job = TrainingJob(data=tmp_path, out=tmp_path / "a", model="", config=LoraConfig(),
                      evals=evals, checkpoints=plan)  # fmt: skip
    answers = {"What is 2 + 2?": "4", "What is the capital of France?": "Paris"}
    with FakeOpenAI(answers) as fake:
        score = checkpoint_scorer(job, extra=[f"--punie-base-url={fake.base_url}"], cwd=tmp_path)
        first = score(None)
        asked = len(fake.chat_requests)
        again = score(None)
        assert len(fake.chat_requests) == asked == 1  # the second run was answered by the cache
    assert [c.nodeid for c in first.cases] == ["test_cases.py::test_sum"]
    assert figure(first, "math") == 1.0
    assert all(c.cached for c in again.cases)
    assert (tmp_path / ".punie" / "cache.db").is_file()  # the cache of where the run started
    assert not (tmp_path / "report.html").exists()  # the suite's HTML report went elsewhere
    with FakeOpenAI(answers) as fake:
        nothing = checkpoint_scorer(
            TrainingJob(data=tmp_path, out=tmp_path / "a", model="", config=LoraConfig(),
                        evals=evals, checkpoints=CheckpointPlan(10, cases="no_such_case")),
            extra=[f"--punie-base-url={fake.base_url}"], cwd=tmp_path,
        )  # fmt: skip
        with pytest.raises(CheckpointError, match="no_such_case"):
            figure(nothing(None), "overall")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--punie-select-by=tool_calling"], "--punie-select-by: needs --punie-save-every"),
        (["--punie-early-stop=2", "--punie-select-cases=x"],
         "--punie-early-stop, --punie-select-cases: needs --punie-save-every"),
        (["--punie-save-every=-1"], "--punie-save-every=-1: must be a whole number of at least 1"),
        (["--punie-save-every=0", "--punie-select-by=overall"],
         "--punie-select-by: needs --punie-save-every of at least 1"),
        (["--punie-save-every=5", "--punie-early-stop=two"],
         "--punie-early-stop=two: not a whole number"),
        (["--punie-save-every=5", "--punie-train-hosts=127.0.0.1,127.0.0.1"],
         "--punie-save-every cannot be combined with --punie-train-hosts*"),
    ],
)  # fmt: skip
def test_bad_checkpoint_options_stop_the_run_naming_the_option(pytester, options, message):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_the_checkpoint_options_become_the_plan(pytester):
    pytester.makeconftest(
        """
from pytest_punie.stash import TRAINING_KEY

def pytest_terminal_summary(terminalreporter, config):
    terminalreporter.write_line(f"PLAN {config.stash[TRAINING_KEY].checkpoints}")
"""
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--punie-save-every=20", "--punie-select-by=tool_calling",
                                "--punie-early-stop=3", "--punie-select-cases=tool")  # fmt: skip
    result.stdout.fnmatch_lines(
        ["PLAN CheckpointPlan(save_every=20, select_by='tool_calling', early_stop=3, cases='tool')"]
    )
    plain = pytester.runpytest()
    plain.stdout.fnmatch_lines(["PLAN None"])


def test_save_every_0_turns_even_a_recipes_checkpoints_off(pytester):
    pytester.makeconftest(
        """
from pytest_punie.stash import TRAINING_KEY

def pytest_terminal_summary(terminalreporter, config):
    settings = config.stash[TRAINING_KEY]
    terminalreporter.write_line(f"PLAN {settings.checkpoints} OFF {settings.no_checkpoints}")
"""
    )
    pytester.makepyfile("def test_nothing(): pass")
    pytester.runpytest("--punie-save-every=0").stdout.fnmatch_lines(["PLAN None OFF True"])
    pytester.runpytest().stdout.fnmatch_lines(["PLAN None OFF False"])


def _cli_plan(*arguments: str) -> CheckpointPlan | None:
    import argparse

    from pytest_punie.cli.train import add_parser, checkpoint_plan_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return checkpoint_plan_from_args(parser.parse_args(["train", "data", "--out", "a", *arguments]))


def test_punie_train_takes_the_same_checkpoint_options():
    assert _cli_plan() is None
    given = ["--save-every", "20", "--select-by", "tool_calling", "--early-stop", "3"]
    plan = CheckpointPlan(20, "tool_calling", 3, "tool")
    assert _cli_plan(*given, "--select-cases", "tool") == plan
    assert _cli_plan("--save-every", "20") == CheckpointPlan(20, "overall")
    with pytest.raises(ValueError, match="--select-by, --early-stop: needs --save-every"):
        _cli_plan("--select-by", "x", "--early-stop", "2")
    with pytest.raises(ValueError, match="early_stop must be at least 1, not 0"):
        _cli_plan("--save-every", "20", "--early-stop", "0")
    with pytest.raises(ValueError, match="cannot be combined with --hosts"):
        _cli_plan("--save-every", "20", "--hosts", "127.0.0.1,127.0.0.1")
    assert _cli_plan("--save-every", "0") is None
    with pytest.raises(ValueError, match="--select-by: needs --save-every of at least 1"):
        _cli_plan("--save-every", "0", "--select-by", "x")


def test_punie_train_refuses_select_by_without_save_every(tmp_path, capsys):
    from pytest_punie.cli import main

    assert main(["train", str(tmp_path), "--out", str(tmp_path / "a"), "--select-by", "x"]) == 2
    assert "--select-by: needs --save-every" in capsys.readouterr().err


# The training child stands in here: it speaks the child's side of the protocol (a checkpoint
# line, then it waits for the answer on stdin) and records what it heard.
STAND_IN = r"""
import json, shutil, sys
from pathlib import Path
job = json.loads(sys.stdin.readline())
out = Path(job["out_dir"])
staging = out.parent / ".staging"
heard = []
for iteration in (2, 4, 6):
    folder = staging / "checkpoints" / f"{iteration:07d}"
    folder.mkdir(parents=True)
    print(f"[punie checkpoint] {iteration} {folder}", flush=True)
    answer = sys.stdin.readline().strip()
    heard.append(answer)
    if answer not in ("continue", "stop"):
        shutil.rmtree(staging)
        (out.parent / "heard.json").write_text(json.dumps(heard))
        sys.exit(1)
    if answer == "stop":
        break
(staging / "punie-manifest.json").write_text(json.dumps({"heard": heard, "job": job}))
staging.rename(out)
"""


@pytest.fixture
def stand_in_child(tmp_path, monkeypatch):
    from pytest_punie.finetune import lora

    script = tmp_path / "child.py"
    script.write_text(STAND_IN)
    monkeypatch.setattr(lora, "CHILD", (str(script),))
    monkeypatch.setattr(lora, "CHILD_EXIT_TIMEOUT_S", 10.0)
    return tmp_path


def test_the_parent_answers_each_checkpoint_while_the_child_waits(stand_in_child):
    from pytest_punie.finetune.lora import train_in_subprocess

    asked = []

    def on_checkpoint(iteration: int, folder: Path) -> bool:
        assert folder.is_dir()  # saved before the child asked
        asked.append(iteration)
        return iteration < 4

    out = stand_in_child / "adapter"
    manifest = train_in_subprocess("m", stand_in_child, out, LoraConfig(), openblas=False,
                                   save_every=2, on_checkpoint=on_checkpoint)  # fmt: skip
    assert asked == [2, 4]
    assert manifest["heard"] == ["continue", "stop"]  # the child stopped at 4, never saved 6
    assert manifest["job"]["save_every"] == 2
    assert not (out / "checkpoints" / "0000006").exists()


def test_a_checkpoint_that_cannot_be_scored_aborts_training_and_leaves_no_adapter(stand_in_child):
    from pytest_punie.finetune.lora import train_in_subprocess

    def on_checkpoint(iteration: int, folder: Path) -> bool:
        if iteration == 4:
            raise CheckpointError("the eval suite wrote no results")
        return True

    out = stand_in_child / "adapter"
    with pytest.raises(CheckpointError, match="wrote no results"):
        train_in_subprocess("m", stand_in_child, out, LoraConfig(), openblas=False,
                            save_every=2, on_checkpoint=on_checkpoint)  # fmt: skip
    assert json.loads((stand_in_child / "heard.json").read_text()) == ["continue", "abort"]
    assert not out.exists()
    assert not (stand_in_child / ".staging").exists()  # the child cleaned up before exiting


@pytest.mark.parametrize(
    ("answer", "expected"), [("continue\n", True), ("stop\n", False), ("abort\n", None), ("", None)]
)
def test_the_child_goes_on_stops_or_gives_up_as_the_parent_answers(
    answer, expected, monkeypatch, capsys
):
    import io

    from pytest_punie.finetune.lora import TrainingError, _ask_parent

    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    if expected is None:  # told to abort, or the parent is gone: no adapter
        with pytest.raises(TrainingError, match="checkpoint 20 was not scored"):
            _ask_parent(20, Path("a/checkpoints/0000020"))
    else:
        assert _ask_parent(20, Path("a/checkpoints/0000020")) is expected
    assert capsys.readouterr().out == "[punie checkpoint] 20 a/checkpoints/0000020\n"
