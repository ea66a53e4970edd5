"""The data behind a regression: a case that broke against the baseline shows the training lines
nearest its prompt, in the terminal and beside it in the HTML report, found from the adapter's
manifest or ``--punie-train-data``; nothing when no data is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.finetune.lora import MANIFEST
from pytest_punie.results.compare import compare
from pytest_punie.results.document import run_document
from pytest_punie.results.regression_data import (
    TrainingData,
    find_training_data,
    regression_data,
)
from pytest_punie.results.report import side_by_side_html
from pytest_punie.results.run import CaseResult, RunMetadata
from pytest_punie.testing import FakeOpenAI

CASES = """
import pytest
from pytest_punie import assert_keywords

@pytest.mark.punie(category="words", prompt="What is the capital of France?")
def test_paris(punie_result):
    assert_keywords(punie_result, ["Paris"])

@pytest.mark.punie(category="words", prompt="Say hi")
def test_hi(punie_result):
    assert_keywords(punie_result, ["hi"])
"""

HOSTILE_LINE = "What is the capital of France? <script>alert(1)</script>"
TRAINING = [
    "List the files in the folder",
    "What is the capital of Spain?",
    HOSTILE_LINE,
    "Tell me a joke about cats",
    "What's the capital of France",
]


def line(prompt: str) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "x"}]}
    )


def make_adapter(folder: Path, data: str | None) -> Path:
    """A fake adapter folder whose manifest names ``data``, and training data beside it."""
    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapters.safetensors").write_bytes(b"")
    (adapter / MANIFEST).write_text(json.dumps({"model": "m", "data": data}))
    trained = folder / "adapter.data"
    trained.mkdir()
    (trained / "train.jsonl").write_text("\n".join(line(t) for t in TRAINING) + "\n")
    (trained / "valid.jsonl").write_text(line("What is the capital of France?") + "\n")
    return adapter


def run(pytester: pytest.Pytester, paris: str, *args: str) -> pytest.RunResult:
    answers = {"What is the capital of France?": paris, "Say hi": "hi"}
    runner = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest  # xdist
    with FakeOpenAI(answers) as fake:
        return runner(f"--punie-base-url={fake.base_url}", *args)


def broken_run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(CASES)
    run(pytester, "Paris.", "--punie-results=before.json").assert_outcomes(passed=2)
    result = run(
        pytester, "Lyon.", "--punie-baseline=before.json", "--html=report.html",
        "--self-contained-html", *args,
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    return result


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_broken_case_shows_its_nearest_training_lines_from_the_adapters_manifest(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    make_adapter(pytester.path, "adapter.data")  # relative, as the pipeline records it
    result = broken_run(pytester, "--punie-adapter=adapter", *workers)
    result.stdout.fnmatch_lines(
        [
            "nearest training lines of the broken cases (*5-gram similarity; 5 prompt(s) of "
            "*adapter.data/train.jsonl, from the manifest of */adapter):",
            "  test_broken_case_shows_*.py::test_paris: train.jsonl:5 (0.71), "
            "train.jsonl:2 (0.61), train.jsonl:3 (0.60)",
        ]
    )
    assert "valid.jsonl" not in result.stdout.str()  # what the adapter trained on, only
    page = (pytester.path / "report.html").read_text()
    side = page[page.index("id='punie-side-by-side'") :]
    assert '<tr class="broken punie-nearest">' in side
    nearest = side[side.index('<tr class="broken punie-nearest">') :]
    nearest = nearest[: nearest.index("</tr>")]
    assert ">train.jsonl:5 (0." in nearest
    assert f"<code>{pytester.path / 'adapter.data' / 'train.jsonl'}:5</code>" in nearest
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in nearest  # escaped
    assert "<script>alert(1)" not in page
    assert side.count("punie-nearest") == 1  # the broken case only, not the unchanged one


def test_train_data_option_names_the_data_without_an_adapter(pytester: pytest.Pytester) -> None:
    folder = pytester.mkdir("data")
    (folder / "mine.jsonl").write_text(line("Capital of France, please?") + "\n")
    result = broken_run(pytester, "--punie-train-data=data")
    result.stdout.fnmatch_lines(
        [
            "nearest training lines of the broken cases (*from --punie-train-data data):",
            "  *::test_paris: mine.jsonl:1 (0.*)",
        ]
    )


def test_nothing_when_no_training_data_is_known(pytester: pytest.Pytester) -> None:
    make_adapter(pytester.path, None)  # a manifest without its data
    result = broken_run(pytester, "--punie-adapter=adapter")
    assert "nearest training lines" not in result.stdout.str()
    assert "punie-nearest" not in (pytester.path / "report.html").read_text()


def test_a_manifest_naming_missing_data_says_so(pytester: pytest.Pytester) -> None:
    make_adapter(pytester.path, "/no/such/data")
    result = broken_run(pytester, "--punie-adapter=adapter")
    result.stdout.fnmatch_lines(
        ["nearest training lines of the broken cases: none (*names /no/such/data, which does not*"]
    )


# -- the data module alone ------------------------------------------------------------------------


def test_find_training_data_order(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path, str(tmp_path / "adapter.data"))
    train = tmp_path / "adapter.data" / "train.jsonl"
    assert find_training_data(None, None, tmp_path) is None
    assert find_training_data(None, adapter, Path("/")).path == train  # type: ignore[union-attr]
    elsewhere = tmp_path / "other.jsonl"
    elsewhere.write_text(line("hi") + "\n")
    explicit = find_training_data(elsewhere, adapter, tmp_path)
    assert explicit == TrainingData(elsewhere, f"--punie-train-data {elsewhere}")
    # a relative path recorded from another folder: found next to the adapter
    (adapter / MANIFEST).write_text(json.dumps({"data": "runs/adapter.data"}))
    assert find_training_data(None, adapter, Path("/")).path == train  # type: ignore[union-attr]


def _case(nodeid: str, outcome: str, prompt: str | None) -> CaseResult:
    score = 1.0 if outcome == "passed" else 0.0
    return CaseResult(nodeid, "words", outcome, score, prompt=prompt)


def test_regression_data_for_broken_cases_only(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(line(t) for t in TRAINING) + "\n")
    before = [_case("a", "passed", "Tell me a joke about dogs"), _case("b", "passed", None)]
    before.append(_case("c", "failed", "What is the capital of Spain?"))
    after = [_case("a", "failed", None), _case("b", "failed", None)]
    after.append(_case("c", "passed", "What is the capital of Spain?"))
    baseline = run_document(RunMetadata("2025-01-01"), before)
    candidate = run_document(RunMetadata("2025-01-01"), after)
    comparison = compare(baseline, candidate)
    found = regression_data(comparison, candidate.cases, baseline.cases, TrainingData(data, "x"))
    assert [c.nodeid for c in found.cases] == ["a", "b"]
    a, b = found.cases
    assert a.prompt == "Tell me a joke about dogs"  # the baseline's, when this run has none
    assert a.lines[0].line == 4
    assert (b.prompt, b.lines) == (None, ())
    assert found.lines_searched == len(TRAINING)
    page = side_by_side_html(comparison, [], [], found)
    assert page.count("punie-nearest") == 2
    assert "nearest training lines: none (no prompt recorded)" in page
