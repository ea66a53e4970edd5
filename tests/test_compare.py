"""Comparing two results files (``pytest_punie.results.compare``) and ``punie compare``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.cli.compare import add_parser
from pytest_punie.results.compare import Comparison, compare, regressions
from pytest_punie.results.document import (
    FORMAT_VERSION,
    RunDocument,
    load_run,
    read_run,
    run_document,
)
from pytest_punie.results.labels import run_label
from pytest_punie.results.render import comparison_html
from pytest_punie.results.render import comparison_text as format_comparison
from pytest_punie.results.run import CaseResult, RunMetadata
from pytest_punie.results.thresholds import parse_thresholds
from pytest_punie.serving.server import ServerInfo

DATA = Path(__file__).parent / "data"
V1_RESULTS = DATA / "results_v1.json"  # written by the landed code: no format_version

MODEL = "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit"


# -- helpers shared with test_history -------------------------------------------------------------


def case(
    nodeid: str,
    category: str = "tools",
    passed: bool = True,
    score: float | None = None,
    repeat: int | None = None,
) -> dict[str, Any]:
    """One case entry of a results document, as a run writes it."""
    result = CaseResult(
        nodeid=nodeid,
        category=category,
        outcome="passed" if passed else "failed",
        score=float(passed) if score is None else score,
        duration_s=0.5,
        failure=None if passed else "wrong tool",
    )
    data = result.to_json()
    if repeat is not None:
        data["repeat"] = repeat
    return data


def document(
    cases: Iterable[Mapping[str, Any]],
    model: str | None = MODEL,
    adapter: str | None = None,
    started: str = "2026-02-11T10:00:00+00:00",
    git_commit: str | None = "0123456789abcdef",
) -> RunDocument:
    """A results document like a run writes it, read back through JSON like a file."""
    results = [CaseResult.from_json(c) for c in cases]
    server = None
    if model is not None:
        server = ServerInfo(
            base_url="http://127.0.0.1:8080",
            model_name="default_model",
            model=model,
            adapter=adapter,
            model_hash="a" * 64,
            adapter_hash="b" * 64 if adapter else None,
        ).to_json()
    meta = RunMetadata(
        started=started,
        finished=started,
        server=server,
        sampling={"temperature": 0.0},
        git_commit=git_commit,
        platform="Linux x86_64 python 3.11",
    )
    written = run_document(meta, results, gate=[]).to_json()
    return read_run(json.loads(json.dumps(written)))


def judge_error(nodeid: str, category: str = "tools") -> dict[str, Any]:
    """A case whose judge gave no verdict, as the plugin records it."""
    record = {"scorer": "judge:correct", "score": None, "passed": False,
              "details": {"judge_error": "no valid verdict", "gate": True}}  # fmt: skip
    result = CaseResult(
        nodeid=nodeid, category=category, outcome="error", score=0.0, scores=(record,),
        failure="judge error",
    )  # fmt: skip
    return result.to_json()


VOID_TAGS = {"br", "meta", "hr", "img", "input", "link", "wbr"}


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"unexpected </{tag}>")


def assert_well_formed(markup: str) -> list[str]:
    """Fail unless every tag is closed in order; return the tags seen."""
    checker = _TagChecker()
    checker.feed(markup)
    checker.close()
    assert checker.problems == []
    assert checker.open == []
    return checker.tags


# -- fixtures -------------------------------------------------------------------------------------


def clear_regression() -> tuple[RunDocument, RunDocument]:
    """20 tool cases that all passed; 15 of them fail in the candidate. Code is unchanged."""
    code = [case(f"evals/test_code.py::test_{i}", "code") for i in range(8)]
    before = [case(f"evals/test_tools.py::test_{i}") for i in range(20)]
    after = [case(f"evals/test_tools.py::test_{i}", passed=i >= 15) for i in range(20)]
    return (
        document(before + code),
        document(after + code, adapter="adapters/glaive-function-calling/"),
    )


def noise() -> tuple[RunDocument, RunDocument]:
    """20 tool cases, half passing; three get fixed and three broken."""
    before = [case(f"t.py::test_{i}", passed=i % 2 == 0) for i in range(20)]
    after = [case(f"t.py::test_{i}", passed=(i % 2 == 0) != (i < 6)) for i in range(20)]
    return document(before), document(after)


# -- compare --------------------------------------------------------------------------------------


def test_clear_regression_is_significant() -> None:
    comparison = compare(*clear_regression())
    tools = comparison.category("tools")
    assert (tools.baseline_mean, tools.candidate_mean) == (1.0, 0.25)
    assert tools.difference == pytest.approx(-0.75)
    assert tools.paired_difference == pytest.approx(-0.75)
    assert (tools.paired, tools.broken, tools.fixed) == (20, 15, 0)
    assert tools.p_mcnemar == pytest.approx(2 / 2**15)
    assert tools.p_bootstrap < 0.01
    assert tools.significant
    code = comparison.category("code")
    assert code.difference == 0.0
    assert (code.p_mcnemar, code.p_bootstrap) == (1.0, 1.0)
    assert not code.significant
    assert comparison.overall.name == "overall"
    assert comparison.overall.paired == 28
    assert comparison.overall.significant


def test_noise_is_not_significant() -> None:
    comparison = compare(*noise())
    tools = comparison.category("tools")
    assert tools.difference == 0.0
    assert (tools.fixed, tools.broken) == (3, 3)
    assert tools.p_mcnemar == 1.0
    assert tools.p_bootstrap > 0.5
    assert not tools.significant


def test_three_cases_moving_together_are_not_significant() -> None:
    """The journal's situation: a category of three prompts that all flip moves 100 points."""
    before = document([case(f"t.py::test_{i}") for i in range(3)])
    after = document([case(f"t.py::test_{i}", passed=False) for i in range(3)])
    tools = compare(before, after).category("tools")
    assert tools.difference == -1.0
    assert tools.p_mcnemar == 0.25
    assert tools.p_bootstrap >= 0.25
    assert not tools.significant


def test_fixed_broken_added_removed_same() -> None:
    before = document(
        [
            case("t.py::test_fixed", passed=False),
            case("t.py::test_broken"),
            case("t.py::test_same"),
            case("t.py::test_removed", "reasoning"),
        ]
    )
    after = document(
        [
            case("t.py::test_fixed"),
            case("t.py::test_broken", passed=False),
            case("t.py::test_same", score=0.8),
            case("t.py::test_added", "code"),
        ]
    )
    comparison = compare(before, after)
    assert [c.nodeid for c in comparison.fixed] == ["t.py::test_fixed"]
    assert [c.nodeid for c in comparison.broken] == ["t.py::test_broken"]
    assert [c.nodeid for c in comparison.same] == ["t.py::test_same"]
    assert [c.nodeid for c in comparison.added] == ["t.py::test_added"]
    assert [c.nodeid for c in comparison.removed] == ["t.py::test_removed"]
    added, removed = comparison.added[0], comparison.removed[0]
    assert (added.category, added.baseline_score, added.candidate_score) == ("code", None, 1.0)
    assert (removed.category, removed.baseline_score, removed.candidate_score) == (
        "reasoning",
        1.0,
        None,
    )
    same = comparison.same[0]
    assert (same.baseline_score, same.candidate_score) == (1.0, 0.8)
    names = [c.name for c in comparison.categories]
    assert names == ["code", "reasoning", "tools"]
    code, reasoning = comparison.category("code"), comparison.category("reasoning")
    assert (code.baseline_mean, code.candidate_mean, code.difference) == (None, 1.0, None)
    assert (reasoning.baseline_mean, reasoning.candidate_mean) == (1.0, None)
    assert code.paired == reasoning.paired == 0
    assert not code.significant
    with pytest.raises(KeyError):
        comparison.category("missing")


def test_repeats_are_averaged_and_pass_by_majority() -> None:
    before = document(
        [case("t.py::test_a", passed=r < 2, repeat=r) for r in range(3)]  # 2 of 3 pass
        + [case("t.py::test_b", passed=r < 1, repeat=r) for r in range(3)]  # 1 of 3 pass
    )
    after = document(
        [case("t.py::test_a", passed=r < 1, repeat=r) for r in range(3)]
        + [case("t.py::test_b", passed=True, repeat=r) for r in range(3)]
    )
    comparison = compare(before, after)
    a = next(c for c in comparison.cases if c.nodeid == "t.py::test_a")
    assert a.change == "broken"
    assert a.baseline_score == pytest.approx(2 / 3)
    assert a.candidate_pass_rate == pytest.approx(1 / 3)
    assert [c.nodeid for c in comparison.fixed] == ["t.py::test_b"]
    tools = comparison.category("tools")
    assert tools.paired == 2  # two cases, not six samples
    assert tools.baseline_mean == pytest.approx(0.5)
    assert tools.candidate_mean == pytest.approx((1 / 3 + 1) / 2)


def test_run_label() -> None:
    before, after = clear_regression()
    assert before.label == "Qwen2.5-Coder-1.5B-Instruct-4bit (base)"
    assert after.label == "Qwen2.5-Coder-1.5B-Instruct-4bit + glaive-function-calling"
    assert document([], model=None).label == "unknown model (base)"


def test_one_run_label_rule_for_compare_and_history(tmp_path: Path) -> None:
    """The comparison and the history name a run the same way: model first, then adapter."""
    from pytest_punie.results.history import record_run, runs

    _, after = clear_regression()
    record_run(tmp_path / "h.db", after)
    assert runs(tmp_path / "h.db")[0].name == after.label
    assert run_label("org/Model-1B", "runs/adapter-v2/") == "Model-1B + adapter-v2"
    assert run_label("org/Model-1B", None) == "Model-1B (base)"
    assert run_label("org/Model-1B", "x", label="my run") == "my run"


@st.composite
def runs_of_cases(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.sets(st.integers(0, 15), max_size=12))
    return [
        case(
            f"t.py::test_{i}",
            category=["code", "tools"][i % 2],
            passed=draw(st.booleans()),
            score=draw(st.floats(0.0, 1.0)),
        )
        for i in sorted(ids)
    ]


@settings(max_examples=40)
@given(runs_of_cases(), runs_of_cases())
def test_every_case_is_accounted_for(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    comparison = compare(document(before), document(after), resamples=100)
    nodeids = [c.nodeid for c in comparison.cases]
    assert sorted(nodeids) == sorted({c["nodeid"] for c in before + after})
    assert len(comparison.added) == len(
        {c["nodeid"] for c in after} - {c["nodeid"] for c in before}
    )
    assert len(comparison.removed) == len(
        {c["nodeid"] for c in before} - {c["nodeid"] for c in after}
    )
    for category in (*comparison.categories, comparison.overall):
        assert 0.0 <= category.p_mcnemar <= 1.0
        assert 0.0 <= category.p_bootstrap <= 1.0
        assert category.fixed + category.broken <= category.paired
    assert comparison.overall.paired == sum(c.paired for c in comparison.categories)


# -- regressions ----------------------------------------------------------------------------------


def test_regression_gate_messages() -> None:
    comparison = compare(*clear_regression())
    [message] = regressions(comparison, {"tools": 0.05})
    assert "'tools'" in message
    assert message == (
        "category 'tools' dropped 75.0 points (100.0% -> 25.0%), more than the allowed 5.0 points "
        "(paired cases: 20, bootstrap p < 0.001)"
    )
    assert regressions(comparison, {"tools": 0.75}) == []  # exactly the allowed drop passes
    assert regressions(comparison, {"code": 0.0}) == []


@pytest.mark.parametrize("key", ["*=", "all=", ""])
def test_regression_gate_for_every_category(key: str) -> None:
    comparison = compare(*clear_regression())
    messages = regressions(comparison, parse_thresholds([f"{key}0.1"]))
    assert len(messages) == 1
    assert "'tools'" in messages[0]
    # a category's own limit wins over the one for all
    assert regressions(comparison, parse_thresholds([f"{key}0.1", "tools=0.8"])) == []


def test_regression_gate_overall_only_when_named() -> None:
    comparison = compare(*clear_regression())
    messages = regressions(comparison, {"overall": 0.1})
    assert len(messages) == 1
    assert "'overall'" in messages[0]


def test_regression_gate_missing_and_unknown_categories() -> None:
    before = document([case("t.py::test_a", "reasoning"), case("t.py::test_b")])
    after = document([case("t.py::test_b")])
    comparison = compare(before, after)
    messages = regressions(comparison, {"*": 0.1, "typo": 0.1})
    assert len(messages) == 2
    assert "'reasoning' has no case in the candidate" in messages[0]
    assert "'typo'" in messages[1]


# -- presentation ---------------------------------------------------------------------------------


def test_format_comparison() -> None:
    text = format_comparison(compare(*clear_regression()))
    lines = text.splitlines()
    assert lines[0] == "baseline:  Qwen2.5-Coder-1.5B-Instruct-4bit (base)"
    header = lines[3]
    for column in (
        "category",
        "baseline",
        "candidate",
        "change",
        "paired cases",
        "p (McNemar)",
        "p (bootstrap)",
        "detectable",
        "significant",
    ):
        assert column in header
    tools = next(line for line in lines if line.startswith("tools "))
    assert tools.split() == "tools 100.0% 25.0% -75.0 pts 20 <0.001 <0.001 ±30.0 pts yes".split()
    code = next(line for line in lines if line.startswith("code "))
    assert code.split()[-1] == "no"
    assert "broken (passed -> failed): 15" in text
    assert "fixed (failed -> passed): none" in text
    assert "  evals/test_tools.py::test_0  100.0% -> 0.0%" in lines
    assert "only in" not in text  # no added or removed cases


def test_format_comparison_lists_added_and_removed() -> None:
    before = document([case("t.py::test_old"), case("t.py::test_kept")])
    after = document([case("t.py::test_new", passed=False), case("t.py::test_kept")])
    text = format_comparison(compare(before, after))
    assert "only in the candidate: 1\n  t.py::test_new  (new: 0.0%)" in text
    assert "only in the baseline: 1\n  t.py::test_old  (was: 100.0%)" in text


def test_comparison_html_is_well_formed_and_escaped() -> None:
    before = document([case("t.py::test_x[<b>&]"), case("t.py::test_y", "a<b")])
    after = document([case("t.py::test_x[<b>&]", passed=False), case("t.py::test_z")])
    markup = comparison_html(compare(before, after))
    tags = assert_well_formed(markup)
    assert markup.startswith('<div class="punie-comparison">')
    assert "b" not in tags  # the nodeid's <b> is text, not markup
    assert "t.py::test_x[&lt;b&gt;&amp;]" in markup
    assert tags.count("table") == 1
    assert tags.count("tr") == 1 + 3  # the header, categories a<b and tools, overall
    assert markup.count("<th>") == 9
    assert "broken (passed -&gt; failed): 1" in markup


def test_comparison_html_marks_significant_rows() -> None:
    markup = comparison_html(compare(*clear_regression()))
    assert_well_formed(markup)
    assert '<tr class="significant"><td>tools</td>' in markup
    assert "<tr><td>code</td>" in markup


# -- load_run ------------------------------------------------------------------------------------


def write(path: Path, data: Any) -> Path:
    if isinstance(data, RunDocument):
        data = data.to_json()
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_run_round_trip(tmp_path: Path) -> None:
    before, _ = clear_regression()
    loaded = load_run(write(tmp_path / "a.json", before))
    assert loaded == before
    assert loaded.format_version == FORMAT_VERSION
    assert json.loads((tmp_path / "a.json").read_text())["format_version"] == FORMAT_VERSION


def test_load_run_keeps_fields_a_hook_added(tmp_path: Path) -> None:
    before, _ = clear_regression()
    loaded = load_run(write(tmp_path / "a.json", {**before.to_json(), "suite": "nightly"}))
    assert loaded.extra == {"suite": "nightly"}
    assert loaded.to_json()["suite"] == "nightly"


def test_load_run_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"results file not found: .*nothing\.json"):
        load_run(tmp_path / "nothing.json")


def test_a_newer_results_file_is_refused(tmp_path: Path) -> None:
    before, _ = clear_regression()
    newer = {**before.to_json(), "format_version": FORMAT_VERSION + 1}
    path = write(tmp_path / "newer.json", newer)
    with pytest.raises(
        ValueError, match=r"newer pytest-punie \(results format 3; this version"
    ) as raised:
        load_run(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "no 'cases' list"),
        ('{"overall": 1.0}', "no 'cases' list"),
        ('{"cases": [{"score": 1}]}', "case 0 has no nodeid"),
        ('{"cases": [{"nodeid": "x", "score": "high"}]}', "non-numeric score"),
        ('{"format_version": "2", "cases": []}', "is not a version number"),
    ],
)
def test_load_run_not_a_results_file(tmp_path: Path, content: str, reason: str) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(ValueError, match=reason) as raised:
        load_run(path)
    assert str(path) in str(raised.value)


def test_load_run_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_run(path)


# -- punie compare --------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="punie")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture
def result_files(tmp_path: Path) -> tuple[str, str]:
    before, after = clear_regression()
    return str(write(tmp_path / "base.json", before)), str(write(tmp_path / "new.json", after))


def test_cli_compare_prints_the_table(
    result_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("compare", *result_files) == 0
    out, err = capsys.readouterr()
    before, after = (load_run(name) for name in result_files)
    assert out == format_comparison(compare(before, after)) + "\n"
    assert err == ""


@pytest.mark.parametrize(
    "limit", ["tools=0.05", "tools=5%", "*=0.1", "all=0.1", "0.1", "overall=0.2"]
)
def test_cli_compare_regression_gate_fails(
    result_files: tuple[str, str], capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    assert run_cli("compare", *result_files, "--max-regression", limit) == 1
    out, err = capsys.readouterr()
    assert "p (McNemar)" in out
    assert "regression gate FAILED" in err
    assert "dropped" in err


def test_cli_compare_regression_gate_passes(
    result_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--max-regression", "tools=0.8", "--max-regression", "code=0"]
    assert run_cli("compare", *result_files, *argv) == 0
    assert capsys.readouterr().err == ""


def test_cli_compare_unreadable_file(
    result_files: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.json")
    assert run_cli("compare", result_files[0], missing) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("punie compare: ")
    assert missing in err
    bad = str(write(tmp_path / "bad.json", "{}"))
    assert run_cli("compare", bad, result_files[1]) == 2
    assert "bad.json is not a pytest-punie results file" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["tools=lots", "tools=-0.1", "tools=2", "tools="])
def test_cli_compare_rejects_bad_limits(
    result_files: tuple[str, str], capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli("compare", *result_files, "--max-regression", limit)
    assert exited.value.code == 2
    assert "CATEGORY=DROP" in capsys.readouterr().err


def test_comparison_is_frozen() -> None:
    comparison = compare(*noise())
    assert isinstance(comparison, Comparison)
    with pytest.raises(AttributeError):
        comparison.categories = ()  # type: ignore[misc]


# -- judge errors: left out of every mean, counted beside it --------------------------------------


def test_judge_errors_are_left_out_of_the_means_and_the_pairs() -> None:
    before = document([case("t.py::a"), case("t.py::b", passed=False), case("t.py::c")])
    after = document([case("t.py::a"), case("t.py::b", passed=False), judge_error("t.py::c")])
    stated = after.category("tools")
    assert stated is not None
    assert stated.stats is not None
    assert (stated.mean, stated.judge_errors, stated.stats.cases, stated.cases) == (0.5, 1, 2, 3)
    comparison = compare(before, after)
    tools = comparison.category("tools")
    assert tools.baseline_mean == pytest.approx(2 / 3)
    assert tools.candidate_mean == stated.mean  # the document's figure, not a second rule
    assert (tools.candidate_cases, tools.candidate_judge_errors) == (2, 1)
    assert [c.nodeid for c in comparison.cases] == ["t.py::a", "t.py::b"]  # c has no verdict
    assert comparison.overall.candidate_mean == after.overall == 0.5


def test_a_category_no_judge_scored_has_no_mean() -> None:
    before = document([case("t.py::a", "code"), case("t.py::b")])
    after = document([case("t.py::a", "code"), judge_error("t.py::b")])
    tools = after.category("tools")
    assert tools is not None
    assert (tools.scored, tools.stats, tools.judge_errors) == (False, None, 1)
    comparison = compare(before, after)
    assert comparison.category("tools").candidate_mean is None
    [message] = regressions(comparison, {"tools": 0.1})
    assert message == (
        "category 'tools' has no scored case in the candidate "
        "(the judge gave no verdict on 1 sample(s))"
    )


def test_a_judge_error_records_a_number_not_none() -> None:
    entry = judge_error("t.py::c")
    assert entry["scores"][0]["score"] == 0.0
    (record,) = CaseResult.from_json(entry).records
    assert (record.score, record.passed) == (0.0, False)
    assert record.details["judge_error"] == "no valid verdict"


# -- an older results file (format 1: no format_version) ------------------------------------------


def test_an_older_results_file_loads_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(V1_RESULTS.read_text())
    assert "format_version" not in raw
    older = load_run(V1_RESULTS)
    assert older.format_version == 1
    assert older.metadata.run_id == raw["metadata"]["run_id"]
    assert len(older.cases) == 4
    # its figures by today's rule: the judge error is counted beside the mean, not in it
    explanation = older.category("explanation")
    assert explanation is not None
    assert (explanation.mean, explanation.judge_errors, explanation.cases) == (1.0, 1, 2)
    assert older.overall == pytest.approx(2 / 3)
    comparison = compare(older, older)
    assert comparison.category("explanation").baseline_mean == 1.0  # was 0.5: the error as 0
    assert [c.change for c in comparison.cases] == ["same"] * 3
    # written again by this version, it reads back the same and compares with the older file
    newer = write(tmp_path / "newer.json", older)
    assert json.loads(newer.read_text())["format_version"] == FORMAT_VERSION
    assert load_run(newer).categories == older.categories
    assert run_cli("compare", str(V1_RESULTS), str(newer), "--max-regression", "0") == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("explanation")).split()[
        1:3
    ] == ["100.0%", "100.0%"]


def _parsers(parser: argparse.ArgumentParser):
    """The parser and every (nested) subcommand's parser."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_command_help_reads_as_written():
    """argparse formats ``%`` in help strings, not in descriptions: neither shows ``%%``."""
    from pytest_punie.cli import build_parser

    for parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "%%" not in text, f"{parser.prog}: {text}"
        assert parser.prog.startswith("punie")
