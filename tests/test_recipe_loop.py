"""The recipe loop: one adapter per seed (--punie-seeds), each judged against the base by the
gate, the spread of every category over the seeds, and a session that fails when a gate does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_punie.finetune.verdict import (
    DEFAULT_MAX_DROP,
    gate_text,
    judge,
    recipe_gate,
    seed_spread,
    spread_text,
    verdict_text,
)
from pytest_punie.options import parse_seeds

from .conftest import INI_HEAD

ROOT = Path(__file__).resolve().parents[1]


def document(scores: dict[str, list[float]]) -> dict:
    """A results document whose cases score ``scores`` per category (1.0 passes)."""
    cases = [
        {"nodeid": f"test_x.py::{category}{n}", "category": category,
         "outcome": "passed" if score >= 1 else "failed", "score": score}
        for category, values in scores.items()
        for n, score in enumerate(values)
    ]  # fmt: skip
    return {"cases": cases}


def passing(count: int, cases: int = 20) -> list[float]:
    """Scores of ``cases`` cases, the first ``count`` passed."""
    return [1.0] * count + [0.0] * (cases - count)


BASE = document({"tool_calling": [0.0] * 16 + [1.0] * 4, "code_generation": [1.0] * 16 + [0.0] * 4})


def test_parse_seeds():
    assert parse_seeds("0,1,2") == (0, 1, 2)
    assert parse_seeds(" 7 , 3") == (7, 3)
    for bad, reason in (("", "empty"), ("1,,2", "empty"), ("-1", "non-negative"),
                        ("1.5", "non-negative"), ("x", "non-negative"), ("²", "non-negative"),
                        ("1,1", "twice")):  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            parse_seeds(bad)


SHOW_SEEDS = """
def test_seeds(punie_training):
    print("seeds:", punie_training.seeds)
"""


def test_seeds_option_and_its_ini_twin(pytester):
    pytester.makepyfile(SHOW_SEEDS)
    result = pytester.runpytest("-s", "--punie-seeds=2,0,1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*seeds: (2, 0, 1)"])
    pytester.makeini(INI_HEAD + "punie_seeds = 0,1\n")
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*seeds: (0, 1)"])
    result = pytester.runpytest("-s", "--punie-seeds=4")  # the command line wins
    result.stdout.fnmatch_lines(["*seeds: (4,)"])


@pytest.mark.parametrize("bad", ["0,-1", "a,b", "1,1", "0,,1"])
def test_a_bad_seed_list_stops_the_run_naming_the_option(pytester, bad):
    pytester.makepyfile(SHOW_SEEDS)
    result = pytester.runpytest(f"--punie-seeds={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--punie-seeds={bad}: *"])


def test_max_regression_is_allowed_without_a_baseline_on_a_training_run(pytester):
    pytester.makepyfile(SHOW_SEEDS)
    result = pytester.runpytest("--punie-max-regression=*=0.05")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-max-regression needs --punie-baseline*"])
    result = pytester.runpytest("--punie-max-regression=*=0.05", "--punie-eval-after")
    result.assert_outcomes(passed=1)


def _collect(*options: str, cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "training"), "--collect-only", "-q",
         "-p", "no:cacheprovider", *options],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "test_adapter_against_base" in line]


def test_the_training_suite_trains_one_adapter_per_seed_and_sweep_point(tmp_path):
    ids = _collect("--punie-recipe=tool-calling", "--punie-seeds=0,1,2", cwd=tmp_path)
    assert [i.rpartition("[")[2] for i in ids] == ["seed0]", "seed1]", "seed2]"]
    ids = _collect("--punie-seeds=3,4", "--punie-sweep=rank=4,8", cwd=tmp_path)
    assert len(ids) == 4
    assert ids[0].endswith("[rank4-layers4-lr0.0002-iters16-seed3]"), ids


# -- the verdict --------------------------------------------------------------------------------


def test_the_gate_fails_a_category_that_drops_more_than_ten_points():
    tuned = document(
        {"tool_calling": [1.0] * 18 + [0.0] * 2, "code_generation": [1.0] * 13 + [0.0] * 7}
    )
    verdict = judge(BASE, tuned, label="adapters/x", goal="tool_calling")
    assert verdict.max_drop == DEFAULT_MAX_DROP
    assert not verdict.passed
    assert len(verdict.regressions) == 1
    assert "code_generation" in verdict.regressions[0]
    assert verdict.goal_failure is None  # tool_calling rose 70 points, significantly
    text = verdict_text(verdict)
    assert "adapters/x against the base" in text
    assert "code_generation" in text
    assert "-15.0 pts" in text
    assert "p (bootstrap)" in text
    assert "significant" in text
    assert text.endswith(gate_text(verdict))
    assert "gate (no category drops more than *=0.1; tool_calling rises significantly): FAIL" in (
        text
    )
    # a looser gate (--punie-max-regression) lets the same adapter pass
    assert judge(BASE, tuned, label="x", max_drop={"*": 0.2}, goal="tool_calling").passed


def test_the_goal_category_must_rise_significantly():
    small_rise = document(
        {"tool_calling": [0.0] * 15 + [1.0] * 5, "code_generation": [1.0] * 16 + [0.0] * 4}
    )
    verdict = judge(BASE, small_rise, label="x", goal="tool_calling")
    assert verdict.regressions == ()
    assert verdict.goal_failure is not None
    assert "did not rise significantly (+5.0 points" in verdict.goal_failure
    assert not verdict.passed
    assert judge(BASE, small_rise, label="x").passed  # without a goal: only the drops count
    assert "gate (no category drops more than *=0.1): PASS" in verdict_text(
        judge(BASE, small_rise, label="x")
    )


def test_spread_over_seeds_and_the_recipe_verdict():
    runs = [
        document({"tool_calling": passing(12), "code_generation": passing(16)}),
        document({"tool_calling": passing(16), "code_generation": passing(15)}),
        document({"tool_calling": passing(8), "code_generation": passing(12)}),
    ]
    verdicts = [
        judge(BASE, run, label=f"a-seed{n}", goal="tool_calling", seed=n)
        for n, run in enumerate(runs)
    ]
    assert [v.passed for v in verdicts] == [True, True, False]  # seed 2 drops code 20 points
    spreads = {s.name: s for s in seed_spread(verdicts)}
    tools = spreads["tool_calling"]
    assert tools.base == pytest.approx(0.2)
    assert tools.score == pytest.approx((0.6, 0.4, 0.8))  # median, min, max
    assert tools.change == pytest.approx((0.4, 0.2, 0.6))
    assert spreads["code_generation"].change == pytest.approx((-0.05, -0.2, 0.0))
    text = spread_text(verdicts)
    assert "spread over 3 seeds (0, 1, 2)" in text
    assert (
        "recipe gate: FAIL (2 of 3 seeds within the drop limits; tool_calling for the "
        "median seed, seed 0: +40.0 pts, p 0.0" in text
    )
    assert "  seed 2: category 'code_generation' dropped 20.0 points" in text
    row = next(line for line in text.splitlines() if line.startswith("tool_calling"))
    assert row.split() == ["tool_calling", "20.0%", "60.0%", "40.0%-80.0%", "+40.0",
                           "+20.0", "to", "+60.0", "2/3"]  # fmt: skip


# -- the training session, end to end (training and evaluation faked) ---------------------------

FAKES = '''

# -- fakes appended by tests/test_recipe_loop.py: no training, no model ---------------------------
import json as _json
from pytest_punie.finetune.pipeline import TrainingJob as _Job
from pytest_punie.finetune.lora import LoraConfig as _Config

_DOCUMENTS = _json.loads(Path(__file__).with_name("documents.json").read_text())


def evaluate(evals, results, *, model=None, adapter=None, extra=(), cwd=None):
    """The eval suite's results on the adapter, from documents.json, as if it had run."""
    name = Path(adapter).name.rsplit("-", 1)[1] if adapter else "base"
    return _DOCUMENTS[name]


@pytest.fixture(scope="session")
def base_results():
    return _DOCUMENTS["base"]


@pytest.fixture(scope="session")
def training_job(adapter_out):
    return _Job(data=Path("data"), out=adapter_out, model="model", config=_Config())


@pytest.fixture(scope="session")
def trained(training_job, lora_config, training_runs, request):
    out = training_job.out.parent / f"{training_job.out.name}-seed{lora_config.seed}"
    out.mkdir(parents=True)
    losses = {"train_losses": [[1, 2.0], [2, 1.0]], "val_losses": [],
              "seconds_per_iteration": 1.0, "mean_tokens_per_second": 100.0,
              "peak_memory_gb": 1.0}
    manifest = {"losses": losses}
    training_runs.append({"adapter": str(out), "config": lora_config, "manifest": manifest})
    return out, manifest
'''


def _documents(code_generation: list[list[float]]) -> dict:
    """The base's and each seed's results (the same cases, categories listed as the suite lists
    them)."""
    tools = [[0.0] * 16 + [1.0] * 4, [1.0] * 14 + [0.0] * 6, [1.0] * 15 + [0.0] * 5,
             [1.0] * 13 + [0.0] * 7]  # fmt: skip
    documents = {}
    for name, tool_scores, code_scores in zip(
        ["base", "seed0", "seed1", "seed2"], tools, code_generation, strict=True
    ):
        data = document({"tool_calling": tool_scores, "code_generation": code_scores})
        data["categories"] = [
            {"name": c, "mean": sum(s) / len(s)}
            for c, s in (("code_generation", code_scores), ("tool_calling", tool_scores))
        ]
        for case in data["cases"]:
            case["response"] = {"text": "x", "tool_calls": []}
        documents[name] = data
    return documents


def _training_session(pytester, documents: dict, select: str = "adapter_against_base"):
    shutil.copy(ROOT / "training" / "conftest.py", pytester.path / "conftest.py")
    suite = (ROOT / "training" / "test_pipeline.py").read_text() + FAKES
    (pytester.path / "test_pipeline.py").write_text(suite)
    (pytester.path / "documents.json").write_text(json.dumps(documents))
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", select, "--punie-recipe=tool-calling",
        "--punie-seeds=0,1,2", "--punie-eval-after", f"--punie-adapter-out={pytester.path}/tc",
    )  # fmt: skip


CODE_KEPT = [[1.0] * 16 + [0.0] * 4, [1.0] * 16 + [0.0] * 4, [1.0] * 15 + [0.0] * 5,
             [1.0] * 17 + [0.0] * 3]  # fmt: skip


def test_the_recipe_session_states_its_verdict_and_passes_when_every_seed_does(pytester):
    result = _training_session(pytester, _documents(CODE_KEPT))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-4000:]
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes.get("failed", 0)) == (3, 0)
    result.stdout.fnmatch_lines(
        [
            "*punie: adapters against the base*",
            "adapter */tc-seed0 (seed 0) against the base",
            "category*baseline*candidate*change*p (bootstrap)*significant",
            "tool_calling*20.0%*70.0%*+50.0 pts*yes",
            "gate (no category drops more than [*]=0.1; tool_calling rises significantly for "
            "the median seed, judged over seeds): PASS",
            "  this seed's tool_calling: +50.0 pts, p 0.0*",
            "*punie: tc over seeds*",
            "spread over 3 seeds (0, 1, 2)",
            "code_generation*80.0%*80.0%*75.0%-85.0%*+0.0*-5.0 to +5.0*0/3",
            "recipe gate: PASS (3 of 3 seeds within the drop limits; tool_calling for the "
            "median seed, seed 0: +50.0 pts*",
        ]
    )
    assert "recipe gate: PASS" in (pytester.path / "tc-seeds.txt").read_text()
    comparison = (pytester.path / "tc-seed1" / "comparison.txt").read_text()
    assert "tool_calling rises significantly for the median seed, judged over seeds): PASS" in (
        comparison
    )


def test_the_recipe_session_exits_non_zero_when_a_seed_fails_the_gate(pytester):
    code = [*CODE_KEPT[:2], [1.0] * 12 + [0.0] * 8, CODE_KEPT[3]]  # seed 1: 80% -> 60%
    result = _training_session(pytester, _documents(code))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"]) == (2, 1)
    result.stdout.fnmatch_lines(
        [
            "*tc-seed1 fails the gate:*",
            "*category 'code_generation' dropped 20.0 points*",
            "recipe gate: FAIL (2 of 3 seeds within the drop limits*",
            "  seed 1: category 'code_generation' dropped 20.0 points (80.0% -> 60.0%)*",
        ]
    )


def _score_tools(document: dict, scores: list[float]) -> None:
    """Give the document's tool_calling cases these scores (in order)."""
    cases = [c for c in document["cases"] if c["category"] == "tool_calling"]
    for case, score in zip(cases, scores, strict=True):
        case["score"], case["outcome"] = score, "passed" if score >= 1 else "failed"


def test_one_seed_may_miss_the_goal_when_the_median_seed_meets_it(pytester):
    """The goal is the median seed's: seed 2 gains too little to be significant, and the
    session passes (each seed within its drops, seed 0 the median by the goal's change)."""
    documents = _documents(CODE_KEPT)
    _score_tools(documents["seed2"], [0.0] * 15 + [1.0] * 5)  # +5 points: not significant
    result = _training_session(pytester, documents)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-4000:]
    assert result.parseoutcomes()["passed"] == 3
    result.stdout.fnmatch_lines(
        [
            "  this seed's tool_calling: +5.0 pts, p *",
            "recipe gate: PASS (3 of 3 seeds within the drop limits; tool_calling for the "
            "median seed, seed 0: +50.0 pts*",
        ]
    )


def test_the_session_fails_when_the_median_seed_misses_the_goal(pytester):
    """No seed drops a category, but the goal does not rise significantly for the median seed:
    every seed's test passes, the recipe's gate fails, and so does the session."""
    documents = _documents(CODE_KEPT)
    for name in ("seed0", "seed1"):
        _score_tools(documents[name], [0.0] * 15 + [1.0] * 5)  # +5 points: not significant
    result = _training_session(pytester, documents)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-4000:]
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes.get("failed", 0)) == (3, 0)
    result.stdout.fnmatch_lines(
        [
            "recipe gate: FAIL (3 of 3 seeds within the drop limits; tool_calling for the "
            "median seed, seed 1: +5.0 pts*",
            "  the median seed (seed 1): the goal category 'tool_calling' did not rise "
            "significantly (+5.0 points*",
        ]
    )
    assert "recipe gate: FAIL" in (pytester.path / "tc-seeds.txt").read_text()


def test_the_median_seed_of_an_even_number_is_the_lower_middle_one():
    runs = [passing(n) for n in (12, 16, 8, 10)]  # +40, +60, +20, +30 points
    verdicts = [
        judge(BASE, document({"tool_calling": run, "code_generation": passing(16)}),
              label=f"a-seed{n}", goal="tool_calling", seed=n, over_seeds=True)
        for n, run in enumerate(runs)
    ]  # fmt: skip
    gate = recipe_gate(verdicts)
    assert gate.median is verdicts[3]  # +20, [+30], +40, +60
    assert all(v.passed for v in verdicts)  # one seed's goal is not its own gate
    assert gate.passed == (verdicts[3].goal_failure is None)
    without_goal = [judge(BASE, BASE, label=f"b{n}", seed=n) for n in range(3)]
    assert recipe_gate(without_goal).median is None
    assert recipe_gate(without_goal).passed  # nothing dropped, no goal
    assert not recipe_gate([]).passed


def test_one_seed_left_by_k_is_still_judged_by_its_goal(pytester):
    """With --punie-seeds=0,1,2 but only seed 2 run (-k), its test leaves the goal to the
    recipe, so the recipe of that one seed judges it: +5 points fail the session."""
    documents = _documents(CODE_KEPT)
    _score_tools(documents["seed2"], [0.0] * 15 + [1.0] * 5)  # +5 points: not significant
    result = _training_session(pytester, documents, select="adapter_against_base and seed2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-4000:]
    assert result.parseoutcomes()["passed"] == 1
    result.stdout.fnmatch_lines(
        ["recipe gate: FAIL (1 of 1 seeds within the drop limits; tool_calling for the median "
         "seed, seed 2: +5.0 pts*"]
    )  # fmt: skip
