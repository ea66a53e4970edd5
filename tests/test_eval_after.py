"""The pieces of --punie-eval-after: the plugin-parsing template, mode agreement, call sources."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_punie.finetune.pipeline import mode_differences, text_parsing_template
from pytest_punie.results.run import CaseResult, call_sources, call_sources_line
from pytest_punie.serving.chat_template import render

HERMES = (
    Path(__file__).resolve().parents[1] / "pytest_punie/serving/templates/hermes_tools.jinja"
).read_text()
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
MESSAGES = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
    {"role": "tool", "content": "r"},
]  # fmt: skip


def test_text_parsing_template_renders_the_same_but_selects_no_server_parser():
    from mlx_lm.tokenizer_utils import _infer_tool_parser

    plain = text_parsing_template(HERMES)
    assert render(plain, MESSAGES, TOOLS, True) == render(HERMES, MESSAGES, TOOLS, True)
    assert "<tool_call>" in render(plain, MESSAGES, TOOLS, True)

    def parser(template: str) -> str | None:
        return _infer_tool_parser(SimpleNamespace(chat_template=template, get_vocab=dict))

    assert parser(HERMES) == "json_tools"
    assert parser(plain) is None  # the server leaves the calls in the text for the plugin


def _case(nodeid: str, score: float, calls=(), text="") -> dict:
    response = {"text": text, "tool_calls": list(calls)}
    return {"nodeid": nodeid, "category": "tool_calling", "outcome": "passed", "score": score,
            "response": response, "repeat": 0}  # fmt: skip


def test_mode_differences_flags_the_same_output_scored_differently():
    call = {"name": "f", "arguments": {"a": 1}, "source": "structured"}
    text_call = {**call, "source": "text"}
    server = {"cases": [_case("a", 1.0, [call]), _case("b", 0.0, text="no"), _case("c", 1.0)]}
    plugin = {"cases": [_case("a", 1.0, [text_call]), _case("b", 1.0, text="no"),
                        _case("c", 0.0, text="other output")]}  # fmt: skip
    assert mode_differences(server, plugin) == ["b: 0.0 vs 1.0"]  # c: other output, not a bug


def test_call_sources_count_structured_and_text_calls():
    calls = [{"name": "f", "arguments": {}, "source": s} for s in ("structured", "text", "text")]
    cases = [CaseResult.from_json(_case("a", 1.0, calls)), CaseResult.from_json(_case("b", 0.0))]
    assert call_sources(cases) == {"structured": 1, "text": 2}
    assert call_sources_line(cases) == "tool calls: 1 structured (33%), 2 parsed from text (67%)"
    assert call_sources_line([CaseResult.from_json(_case("b", 0.0))]) is None


def test_summary_and_html_report_give_the_call_sources(pytester):
    from pytest_punie.testing import FakeOpenAI

    from .test_plugin import TOOL_CASES

    pytester.makepyfile(TOOL_CASES)
    answers = {
        "read the readme": {
            "tool_calls": [{"name": "read_file", "arguments": {"path": "README.md"}}],
            "then": "It says hello.",
        },
        "list files": '<tool_call>{"name": "list_dir", "arguments": {"path": "."}}</tool_call>',
    }
    with FakeOpenAI(answers) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--html=report.html")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["tool calls: 1 structured (50%), 1 parsed from text (50%)"])
    html = (pytester.path / "report.html").read_text()
    assert "tool calls: 1 structured (50%), 1 parsed from text (50%)" in html


def test_the_eval_runs_find_relative_paths_from_where_training_started(tmp_path, monkeypatch):
    """``--punie-adapter-out adapters/x`` is relative to where pytest started; each eval run
    starts in its own folder (its response cache), and still finds the adapter, the suite and
    where to write its results."""
    from pytest_punie.finetune.pipeline import evaluate
    from pytest_punie.testing import FakeOpenAI

    monkeypatch.chdir(tmp_path)
    suite = Path("evals")
    suite.mkdir()
    (suite / "test_one.py").write_text(
        "import pytest\nfrom pytest_punie import assert_number\n\n"
        '@pytest.mark.punie(category="math", prompt="What is 2 + 2?")\n'
        "def test_sum(punie_result):\n    assert_number(punie_result, 4)\n"
    )
    adapter = Path("adapters") / "tool-calling-seed0"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"fine_tune_type": "lora"}')
    (adapter / "adapters.safetensors").write_bytes(b"weights")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    with FakeOpenAI({"What is 2 + 2?": "4"}) as served:
        document = evaluate(suite, Path("adapter.json"), adapter=adapter, cwd=elsewhere,
                            extra=[f"--punie-base-url={served.base_url}"])  # fmt: skip
    assert [c["outcome"] for c in document["cases"]] == ["passed"]
    assert (tmp_path / "adapter.json").is_file()  # where the caller named it, not in ``cwd``
    assert (elsewhere / ".punie").is_dir()  # the run's own cache folder


def test_an_eval_run_that_stops_says_why(tmp_path):
    """A usage error is written to stderr: the error names it."""
    from pytest_punie.finetune.pipeline import evaluate

    suite = tmp_path / "evals"
    suite.mkdir()
    with pytest.raises(RuntimeError, match=r"(?s)wrote no results \(exit 4\).*missing"):
        evaluate(suite, tmp_path / "r.json", adapter=tmp_path / "missing", cwd=tmp_path)
