"""What a person reads: a failed case in five lines, the case view, the baseline side by side,
escaping of every user or model string, checked as text and in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from pytest_punie.conversation.response import Response
from pytest_punie.results.report import case_view, case_view_html, failure_text, trimmed_html
from pytest_punie.testing import FakeOpenAI
from pytest_punie.tools.parsing import ToolCall

from .test_trust import CHROMIUM_FLAGS, _chromium

CASES = """
import pytest
from pytest_punie import assert_keywords, assert_number, assert_tool_called

@pytest.mark.punie(category="reasoning", prompt="What is 17 * 23?")
def test_multiply(punie_result):
    assert_number(punie_result, 391)

@pytest.mark.punie(category="tools", prompt="read the readme", tools=["read_file"],
                   workspace={"README.md": "hello from the workspace"})
def test_read(punie_result):
    assert_tool_called(punie_result, "read_file", {"path": "docs/README.md"})

@pytest.mark.punie(category="words", prompt="What is the capital of France?")
def test_paris(punie_result):
    assert_keywords(punie_result, ["Paris"])

@pytest.mark.punie(category="words", prompt="Say hi")
def test_bug_in_the_test(punie_result):
    raise ValueError("a bug in the test itself")
"""

LONG = "Let me think step by step. 17 * 23 = 340 + 51. " * 8 + "So the answer is 381."


def answers(
    multiply: str = LONG, paris: str = "The capital of France is Paris.", hi: str = "hi"
) -> dict:
    return {
        "What is 17 * 23?": multiply,
        "read the readme": {
            "tool_calls": [{"name": "read_file", "arguments": {"path": "README.md"}}],
            "then": "It says hello.",
        },
        "What is the capital of France?": paris,
        "Say hi": hi,
    }


def run(pytester: pytest.Pytester, *args: str, **kwargs: str) -> pytest.RunResult:
    with FakeOpenAI(answers(**kwargs)) as fake:
        return pytester.runpytest(f"--punie-base-url={fake.base_url}", *args)


def _failure_block(output: str, name: str) -> list[str]:
    """The lines of one test's section in pytest's FAILURES."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"_+ {name} _+$", line))
    end = next(
        i for i in range(start + 1, len(lines)) if re.match(r"(_+ \w+ _+|=+ .* =+)$", lines[i])
    )
    return lines[start + 1 : end]


def test_a_failed_case_reads_in_five_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=3)
    output = result.stdout.str()
    block = _failure_block(output, "test_multiply")
    assert [line.split(":")[0] for line in block] == [
        "verdict", "expected", "prompt", "answer", "tools"
    ]  # fmt: skip
    assert block[0] == "verdict:  assert_number scored 0.00 < 1.00: expected 391, final answer 381"
    assert block[1] == "expected: 391"
    assert block[2] == "prompt:   What is 17 * 23?"
    assert block[3].startswith("answer:   Let me think step by step.")
    assert block[3].endswith(f"(+{len(' '.join(LONG.split())) - 120} chars)")  # trimmed
    assert block[4] == "tools:    none"
    tools = _failure_block(output, "test_read")
    assert tools[4] == "tools:    read_file(path='README.md') -> 'hello from the workspace'"
    assert tools[1] == "expected: read_file(path='docs/README.md')"
    # no object repr, no decorator source in a scorer's failure
    assert "Response(" not in "\n".join(block + tools)
    assert "@pytest.mark" not in "\n".join(block + tools)
    # the short summary line carries the verdict
    result.stdout.fnmatch_lines(["FAILED *test_multiply - verdict:  a*"])
    # a failure that is not a scorer's keeps pytest's traceback
    assert "ValueError: a bug in the test itself" in "\n".join(
        _failure_block(output, "test_bug_in_the_test")
    )


def test_very_verbose_shows_the_traceback_with_a_short_response_repr(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CASES)
    result = run(pytester, "-vv", "-k", "multiply")
    block = "\n".join(_failure_block(result.stdout.str(), "test_multiply"))
    assert "assert_number(punie_result, 391)" in block  # the traceback
    assert "punie_result = Response('Let me think step by step." in block
    repr_line = next(line for line in block.splitlines() if "punie_result = Response(" in line)
    assert len(repr_line) < 200


def test_response_repr_is_short() -> None:
    calls = tuple(ToolCall(f"tool{i}", {"x": i}) for i in range(5))
    response = Response("x" * 10_000, calls, 100, 20, 3, messages=({"big": "y" * 10_000},))
    text = repr(response)
    assert len(text) < 200
    assert text == (
        f"Response('{'x' * 60}...' [10000 chars], tool_calls=[tool0, tool1, tool2, +2], "
        "requests=3, tokens=100+20)"
    )


def _messages() -> tuple[dict, ...]:
    return (
        {"kind": "request", "parts": [
            {"part_kind": "system-prompt", "content": "Be brief."},
            {"part_kind": "user-prompt", "content": "read <the> readme"},
        ]},
        {"kind": "response", "parts": [
            {"part_kind": "tool-call", "tool_name": "read_file", "args": {"path": "README.md"},
             "tool_call_id": "c1"},
        ]},
        {"kind": "request", "parts": [
            {"part_kind": "tool-return", "tool_name": "read_file", "content": "<b>hello</b>",
             "tool_call_id": "c1"},
        ]},
        {"kind": "response", "parts": [{"part_kind": "text", "content": "<script>x()</script>"}]},
    )  # fmt: skip


def test_case_view_shows_the_whole_conversation_escaped() -> None:
    response = Response(
        "<script>x()</script>",
        (ToolCall("read_file", {"path": "README.md"}, "structured", "c1"),),
        12, 7, 2, 0.5, _messages(),
    )  # fmt: skip
    record = {"scorer": "assert_keywords", "score": 0.0, "passed": False,
              "details": {"found": [], "missing": ["<Paris>"], "pass_mark": 1.0,
                          "reason": "missing keywords: '<Paris>'"}}  # fmt: skip
    view = case_view("t.py::test_x", "words", "failed", 0.0, prompt=None, response=response,
                     records=[record], duration_s=0.1)  # fmt: skip
    assert view.prompt == "read <the> readme"  # from the conversation
    assert view.calls == (("read_file(path='README.md')", "<b>hello</b>"),)
    markup = case_view_html(view)
    assert "<script>" not in markup
    assert "<b>hello" not in markup
    assert "<Paris>" not in markup
    roles = re.findall(r"<span class='punie-role'>([^<]*)</span>", markup)
    assert roles == ["system", "user", "tool call", "tool result (read_file)", "assistant"]
    assert "&lt;script&gt;x()&lt;/script&gt;" in markup
    assert "<dt>tokens in / out</dt><dd>12 / 7</dd>" in markup
    assert "<dt>cached</dt><dd>no</dd>" in markup  # its 2 requests were sent to the model
    text = failure_text(view)
    assert len(text.splitlines()) == 5
    assert "expected: the words '<Paris>'" in text


def test_case_view_shows_cached_when_the_response_says() -> None:
    class CachedResponse(Response):
        cached = True

    view = case_view("t", "c", "passed", 1.0, prompt="p", response=CachedResponse("a"))
    assert "<dt>cached</dt><dd>yes</dd>" in case_view_html(view)


def test_long_text_is_trimmed_with_the_whole_text_one_click_away() -> None:
    text = "a" * 700 + "<end>"
    markup = trimmed_html(text, 600)
    assert markup.startswith(f"<pre>{'a' * 600}</pre><details")
    assert "show the rest (105 more characters)" in markup
    assert markup.endswith(f"<pre>{'a' * 100}&lt;end&gt;</pre></details>")
    plain = re.sub(r"<summary>.*?</summary>|<[^>]+>", "", markup)
    assert html.unescape(plain) == text  # every character once, in order
    assert trimmed_html("short") == "<pre>short</pre>"


HOSTILE = "<img src=x onerror=alert(1)>"


def _hostile_category_report(pytester: pytest.Pytester) -> Path:
    """A report whose one case's category is an HTML tag."""
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_punie import assert_keywords

        @pytest.mark.punie(category={HOSTILE!r})
        def test_x():
            assert_keywords("a", ["a"])
        """
    )
    pytester.runpytest("--html=report.html", "--self-contained-html")
    return pytester.path / "report.html"


def test_category_names_are_escaped_in_the_report_text(pytester: pytest.Pytester) -> None:
    """The page's text: no browser needed."""
    page = _hostile_category_report(pytester).read_text()
    assert HOSTILE not in page
    assert html.escape(HOSTILE, quote=False) in page  # the summary and the chart, as text


def test_category_names_are_escaped_in_the_report_rows(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    chromium = _chromium()
    page = _hostile_category_report(pytester)
    # pytest-html puts its rows' cells into the page with innerHTML: only the DOM tells
    dom, log = _render(chromium, page, tmp_path / "profile")
    assert '<img src="x"' not in dom
    assert dom.count("&lt;img src=x onerror=alert(1)&gt;") >= 3  # summary, chart, the row
    assert console_errors(log) == []


def _render(chromium: str, page: Path, profile: Path, script: str = "") -> tuple[str, str]:
    """The DOM Chromium builds from ``page`` (with ``script`` run on load) and its console."""
    if script:
        copy = page.with_name("checked-" + page.name)
        copy.write_text(
            page.read_text().replace(
                "</body>", f"<script>addEventListener('load', () => {{{script}}});</script></body>"
            )
        )
        page = copy
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
         "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout, done.stderr


def console_errors(log: str, ignore: str = "") -> list[str]:
    """The page's console lines (errors, warnings, logs), apart from ``ignore``'s."""
    return [
        line for line in log.splitlines() if ":CONSOLE" in line and not (ignore and ignore in line)
    ]


def _report_with_a_baseline(pytester: pytest.Pytester) -> Path:
    """A report compared with a baseline: one case fixed, one broken, a hostile answer."""
    pytester.makepyfile(CASES)
    run(pytester, "--punie-results=before.json")
    result = run(
        pytester, "--html=report.html", "--self-contained-html", "--punie-baseline=before.json",
        multiply="The answer is 391.", paris="It is Lyon.", hi=HOSTILE,
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=3)
    return pytester.path / "report.html"


def test_report_is_one_self_contained_file_with_the_views_as_text(
    pytester: pytest.Pytester,
) -> None:
    """What the page's text shows, no browser needed: the summary, the chart, the comparison
    and the side by side, the hostile answer escaped, nothing fetched from elsewhere."""
    page = _report_with_a_baseline(pytester).read_text()
    for marker in ("id='punie-summary'", "id='punie-chart'", 'class="punie-comparison"',
                   "id='punie-side-by-side'"):  # fmt: skip
        assert marker in page
    side = page[page.index("id='punie-side-by-side'") :]
    assert "So the answer is 381." in side
    assert "The answer is 391." in side
    assert '<tr class="fixed">' in side
    assert '<tr class="broken">' in side
    assert HOSTILE not in page
    assert not re.search(r"<(link|script|img)[^>]+(href|src)=\"(?!data:|\")", page)


def test_report_views_in_chromium(pytester: pytest.Pytester, tmp_path: Path) -> None:
    chromium = _chromium()
    page = _report_with_a_baseline(pytester)
    script = (
        "const rows = () => [...document.querySelectorAll('#punie-side-by-side tbody tr')]"
        ".filter(r => r.offsetParent !== null).map(r => r.className).join(',');"
        "const seen = {all: rows()};"
        "for (const key of ['fixed', 'broken', 'same']) {"
        "  document.getElementById('punie-sbs-' + key).click(); seen[key] = rows(); }"
        "document.body.dataset.visible = JSON.stringify(seen);"
        "console.log('punie-check-done');"
    )
    dom, log = _render(chromium, page, tmp_path / "profile", script)
    assert console_errors(log, ignore="punie-check-done") == []
    assert "punie-check-done" in log  # the check ran
    # every case has its view (pytest-html builds the rows with JavaScript), passed ones too
    views = re.findall(r'<div class="punie-case" data-outcome="(\w+)">', dom)
    assert sorted(views) == ["failed", "failed", "failed", "passed"]
    assert dom.count('class="punie-turn punie-tool-call"') == 1
    assert "<dt>tokens in / out</dt>" in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom  # the model's answer, as text
    assert '<img src="x"' not in dom
    # the side-by-side view: baseline and this run's answers, filtered like a diff
    side = dom[dom.index('<div id="punie-side-by-side">') :]
    assert "So the answer is 381." in side
    assert "The answer is 391." in side
    visible = json.loads(re.search(r'data-visible="([^"]*)"', dom)[1].replace("&quot;", '"'))
    assert visible["fixed"] == "fixed"  # multiply: 381 -> 391
    assert visible["broken"] == "broken"  # paris: Paris -> Lyon
    assert visible["same"] == "same,same"
    assert sorted(visible["all"].split(",")) == ["broken", "fixed", "same", "same"]
    # one self-contained file: no stylesheet, script or image fetched from elsewhere
    html = page.read_text()
    assert not re.search(r"<(link|script|img)[^>]+(href|src)=\"(?!data:|\")", html)
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={screenshot}", "--window-size=1300,2000", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 10_000


def test_a_run_whose_server_is_gone_is_void_in_the_summary_and_the_history(
    pytester: pytest.Pytester,
) -> None:
    from pytest_punie.results.history import runs

    pytester.makepyfile(CASES)
    result = pytester.runpytest("--punie-base-url=http://127.0.0.1:9/v1")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        ["WARNING: 4 of 4 case(s) errored (timeouts, a dead server...): this run is void; "
         "the history marks it and never ranks it"]
    )  # fmt: skip
    (run,) = runs(pytester.path / ".punie" / "history.db")
    assert run.status_text == "void: 4 of 4 errored"
