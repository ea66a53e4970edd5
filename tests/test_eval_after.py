"""The pieces of --punie-eval-after: the plugin-parsing template, mode agreement, call sources."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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
