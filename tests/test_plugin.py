"""The plugin end to end with pytester: options, markers, gating, reports, xdist.

Cases here score literal answers or talk to a small fake OpenAI server, so these tests need no
model; ``tests/integration`` runs the real mlx_lm server.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import warnings

import pytest

from pytest_punie.options import MIN_CATEGORY_OPTION, MIN_SCORE_OPTION, RESULTS_OPTION
from pytest_punie.testing import FakeOpenAI

from .conftest import INI_HEAD

LITERAL_CASES = """
import pytest
from pytest_punie import assert_keywords, assert_number

@pytest.mark.punie(category="math")
def test_mult():
    assert_number("15 * 23 = 345", 345)

@pytest.mark.punie(category="math")
def test_add():
    assert_number("The answer is 7.", 7)

@pytest.mark.punie(category="words")
def test_paris():
    assert_keywords("The capital of France is Paris.", ["Paris"])

@pytest.mark.punie(category="words")
def test_missing():
    assert_keywords("I do not know.", ["Paris", "France"])

def test_not_a_case():
    assert True
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"{MIN_SCORE_OPTION.flag}=2"], "--punie-min-score=2: '2' is not a fraction from 0 to 1"),
        ([f"{MIN_SCORE_OPTION.flag}=high"], "--punie-min-score=high: 'high' is not a fraction"),
        (["--punie-port=0"], "--punie-port=0: must be a port number"),
        (["--punie-max-tokens=abc"], "--punie-max-tokens=abc: not valid"),
        (["--punie-max-tokens=0"], "--punie-max-tokens=0: must be a whole number"),
        (["--punie-temperature=-1"], "--punie-temperature=-1: must be from 0 to 2"),
        (["--punie-timeout=0"], "--punie-timeout=0: must be a positive number"),
        (["--punie-concurrency=0"], "--punie-concurrency=0"),
        (["--punie-seed=x"], "--punie-seed=x: not valid"),
        (["--punie-base-url=ftp://x"], "--punie-base-url=ftp://x: must be an http(s) URL"),
        (
            [f"{MIN_CATEGORY_OPTION.flag}=tools"],
            "--punie-min-category: 'tools': 'tools' is not a fraction",
        ),
        (
            [f"{MIN_CATEGORY_OPTION.flag}=tools=1.5"],
            "'tools=1.5': '1.5' is not a fraction from 0 to 1",
        ),
        (["--punie-model=/no/such/model"], "--punie-model=/no/such/model: no model at"),
        (["--punie-model=/no/such/model.gguf"], "no GGUF file at /no/such/model.gguf"),
        (["--punie-adapter=/no/such/adapter"], "--punie-adapter=/no/such/adapter: no adapter"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester, args, message):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_model_folder_without_config_is_refused(pytester):
    pytester.mkdir("not-a-model")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-model=not-a-model")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not-a-model is not an MLX model folder: it has no config.json*"])


def test_adapter_without_config_is_refused(pytester):
    adapter = pytester.mkdir("adapter")
    (adapter / "adapters.safetensors").write_bytes(b"")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-adapter=adapter")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*has no adapter_config.json*"])


def test_ini_twin_is_read_and_the_command_line_wins(pytester):
    pytester.makeini(INI_HEAD + "punie_min_score = 0.99\n")
    pytester.makepyfile(LITERAL_CASES)
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.4")
    assert result.ret == pytest.ExitCode.OK
    pytester.makeini(INI_HEAD + "punie_min_score = 7\n")
    assert pytester.runpytest().ret == pytest.ExitCode.USAGE_ERROR


def test_category_table_is_printed(pytester):
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*punie: category scores*",
            "category*cases*passed*errors*score*threshold*result",
            "math*2*2*0*100.0%*",
            "words*2*1*0*50.0%*",
            "overall*4*3*0*75.0%",
            "served: no server was used",
        ]
    )


def test_without_thresholds_failures_fail_the_run(pytester):
    pytester.makepyfile(LITERAL_CASES)
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED


def test_thresholds_met_pass_the_run_despite_failed_cases(pytester):
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.5")
    result.assert_outcomes(passed=4, failed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*punie gate passed*"])


def test_a_missed_category_fails_the_run_and_is_named(pytester):
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(
        f"{MIN_SCORE_OPTION.flag}=0.5", f"{MIN_CATEGORY_OPTION.flag}=words=0.9"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*punie gate FAILED*", "*category 'words' scored 0.500 < threshold 0.900*"]
    )
    result.stdout.no_fnmatch_line("*category 'math' scored*")


def test_threshold_for_a_category_without_cases_fails(pytester):
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest(f"{MIN_CATEGORY_OPTION.flag}=tool_calling=0.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*'tool_calling' has a threshold (0.100) but no case ran in it*"])


def test_gate_with_no_cases_fails(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_failure_outside_the_cases_fails_a_gated_run(pytester):
    pytester.makepyfile(LITERAL_CASES + "\ndef test_broken():\n    assert False\n")
    result = pytester.runpytest(f"{MIN_SCORE_OPTION.flag}=0.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 test(s) outside the eval cases failed*test_broken*"])


def test_results_json(pytester):
    pytester.makepyfile(LITERAL_CASES)
    pytester.runpytest(f"{RESULTS_OPTION.flag}=out/results.json", f"{MIN_SCORE_OPTION.flag}=0.6")
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    cases = {c["nodeid"].split("::")[-1]: c for c in document["cases"]}
    assert set(cases) == {"test_mult", "test_add", "test_paris", "test_missing"}
    assert cases["test_missing"]["score"] == 0.0
    assert cases["test_missing"]["outcome"] == "failed"
    assert cases["test_mult"]["scores"][0]["scorer"] == "assert_number"
    assert cases["test_mult"]["response"]["text"] == "15 * 23 = 345"
    categories = {c["name"]: c for c in document["categories"]}
    assert categories["words"]["mean"] == 0.5
    assert categories["words"]["met"] is False
    assert document["overall"] == 0.75
    assert document["gate"]["failures"] == ["category 'words' scored 0.500 < threshold 0.600"]
    meta = document["metadata"]
    assert meta["versions"]["mlx-lm"]
    assert meta["sampling"]["temperature"] == 0.0
    assert meta["started"]
    assert meta["finished"]


def test_several_scorers_average_and_partial_scores(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_keywords, assert_number

        @pytest.mark.punie(category="mixed")
        def test_two():
            assert_number("345", 345)
            assert_keywords("alpha beta", ["alpha", "beta", "gamma", "delta"], min_fraction=0.5)
        """
    )
    pytester.runpytest("--punie-results=r.json").assert_outcomes(passed=1)
    case = json.loads((pytester.path / "r.json").read_text())["cases"][0]
    assert case["score"] == pytest.approx(0.75)


def test_html_report_has_summary_and_columns(pytester):
    pytester.makepyfile(LITERAL_CASES)
    pytester.runpytest(
        "--html=report.html", "--self-contained-html", f"{MIN_SCORE_OPTION.flag}=0.6"
    )
    page = (pytester.path / "report.html").read_text()
    assert 'id="punie-categories"' in page
    assert "<td>words</td>" in page
    assert '<td class="num">50.0%</td>' in page
    assert "Category" in page
    assert "Score" in page
    assert "category &#39;words&#39; scored 0.500" in page


def test_custom_hooks_change_rows_and_results(pytester):
    pytester.makeconftest(
        """
        def pytest_punie_summary_rows(rows, categories):
            rows.append(["custom-row", "1", "1", "0", "-", "", ""])

        def pytest_punie_results(document):
            document["team"] = "punie"

        seen = []
        def pytest_punie_case_result(result):
            seen.append(result.nodeid)

        def pytest_sessionfinish(session):
            print("CASES SEEN", len(seen))
        """
    )
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest("-s", "--punie-results=r.json")
    result.stdout.fnmatch_lines(["*CASES SEEN 4", "custom-row*"])
    assert json.loads((pytester.path / "r.json").read_text())["team"] == "punie"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('punie(category="x", tools="list_dir")', "tools=...) must be a list"),
        ('punie(category="")', "category=...) must be a non-empty string"),
        ('punie(category="x", colour="red")', "unknown arguments*colour"),
        ('punie(category="x", workspace="nope")', "workspace folder"),
    ],
)
def test_bad_markers_are_usage_errors(pytester, marker, message):
    pytester.makepyfile(f"import pytest\n@pytest.mark.{marker}\ndef test_x(): pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_xdist_aggregates_on_the_controller(pytester):
    pytester.makepyfile(LITERAL_CASES)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--punie-results=r.json", f"{MIN_SCORE_OPTION.flag}=0.5"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["overall*4*3*0*75.0%"])
    document = json.loads((pytester.path / "r.json").read_text())
    assert len(document["cases"]) == 4


PROMPT_CASES = """
import pytest
from pytest_punie import assert_keywords, assert_tool_called

PROMPTS = [f"question {i}" for i in range(8)]

@pytest.mark.parametrize("prompt", [
    pytest.param(p, marks=pytest.mark.punie(category="q", prompt=p), id=str(i))
    for i, p in enumerate(PROMPTS)
])
def test_answer(punie_result, prompt):
    assert_keywords(punie_result, ["answer"])
"""


def _fake_answers(n: int = 8) -> dict[str, str]:
    return {f"question {i}": f"the answer {i}" for i in range(n)}


def test_prompt_cases_run_concurrently(pytester):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers(), delay=1.0) as fake:
        started = time.perf_counter()
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-concurrency=8")
        elapsed = time.perf_counter() - started
    result.assert_outcomes(passed=8)
    assert fake.max_in_flight >= 4
    # sequentially it would take at least 8 s; at once about 1 s, and the margin is for a
    # loaded machine (the session itself takes a few seconds there)
    assert elapsed < 8 * 1.0


def test_concurrency_one_is_sequential(pytester):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers(), delay=0.05) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-concurrency=1")
    result.assert_outcomes(passed=8)
    assert fake.max_in_flight == 1


def test_deselected_cases_are_not_sent(pytester):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers()) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "-k", "answer and 3")
    result.assert_outcomes(passed=1, deselected=7)
    prompts = [r["messages"][-1]["content"] for r in fake.requests if r.get("max_tokens") != 1]
    assert prompts == ["question 3"]


def test_prompt_cases_under_xdist(pytester):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers(), delay=1.0) as fake:
        result = pytester.runpytest_subprocess(f"--punie-base-url={fake.base_url}", "-n", "2")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["q*8*8*0*100.0%*"])
    # one worker submits every case, as a run without -n does: more in flight than two
    # workers each looking one case ahead could keep (4)
    assert fake.max_in_flight > 4
    # each case was asked once, though two workers ran the tests
    prompts = [r["messages"][-1]["content"] for r in fake.requests if r.get("max_tokens") != 1]
    assert sorted(prompts) == sorted(_fake_answers())


TOOL_CASES = """
import pytest
from pytest_punie import assert_tool_called

@pytest.mark.punie(category="tools", prompt="read the readme", tools=["read_file"],
                   workspace={"README.md": "hello from the workspace"})
def test_structured(punie_result, punie_workspace):
    assert_tool_called(punie_result, "read_file", {"path": "README.md"})
    assert (punie_workspace / "README.md").read_text() == "hello from the workspace"

@pytest.mark.punie(category="tools", prompt="list files", tools=["list_dir"])
def test_written_as_text(punie_result):
    assert_tool_called(punie_result, "list_dir", {"path": "."})
"""


def test_structured_and_text_tool_calls_are_scored(pytester):
    pytester.makepyfile(TOOL_CASES)
    answers = {
        "read the readme": {
            "tool_calls": [{"name": "read_file", "arguments": {"path": "README.md"}}],
            "then": "It says hello.",
        },
        "list files": '<tool_call>{"name": "list_dir", "arguments": {"path": "."}}</tool_call>',
    }
    with FakeOpenAI(answers) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=r.json")
    result.assert_outcomes(passed=2)
    cases = {
        c["nodeid"].split("::")[-1]: c
        for c in json.loads((pytester.path / "r.json").read_text())["cases"]
    }
    assert cases["test_structured"]["response"]["tool_calls"][0]["source"] == "structured"
    assert cases["test_structured"]["response"]["text"] == "It says hello."
    assert cases["test_written_as_text"]["response"]["tool_calls"][0]["source"] == "text"
    # both tools really ran, the one called as text too: their results went back to the model
    results = [
        m["content"] for r in fake.requests for m in r.get("messages", []) if m["role"] == "tool"
    ]
    assert any("hello from the workspace" in content for content in results)
    assert "(empty)" in results  # list_dir of the empty workspace, called as text


def test_punie_agent_for_free_form_cases(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_keywords

        @pytest.mark.asyncio
        @pytest.mark.punie(category="chat")
        async def test_two_turns(punie_agent):
            first = await punie_agent.run("hello")
            second = await punie_agent.run("bye", message_history=first.all_messages())
            assert_keywords(second, ["goodbye"])
        """
    )
    with FakeOpenAI({"hello": "hi there", "bye": "goodbye"}) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=r.json")
    result.assert_outcomes(passed=1)
    case = json.loads((pytester.path / "r.json").read_text())["cases"][0]
    assert case["response"]["text"] == "goodbye"


def test_punie_result_without_prompt_errors_clearly(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.punie(category="x")
        def test_x(punie_result):
            pass
        """
    )
    with FakeOpenAI({}) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*punie_result needs @pytest.mark.punie(prompt=...)*"])


def test_unreachable_base_url_errors_every_case(pytester):
    pytester.makepyfile(PROMPT_CASES)
    result = pytester.runpytest("--punie-base-url=http://127.0.0.1:9/v1", "--punie-min-score=0")
    result.assert_outcomes(errors=8)
    result.stdout.fnmatch_lines(["*no OpenAI-compatible server answers at http://127.0.0.1:9/v1*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_exitfirst_stops_and_cancels_the_rest(pytester):
    pytester.makepyfile(PROMPT_CASES.replace('["answer"]', '["nothing like this"]'))
    with FakeOpenAI(_fake_answers(), delay=0.2) as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "-x", "--punie-concurrency=2"
        )
    result.assert_outcomes(failed=1)
    sent = [r for r in fake.requests if r.get("max_tokens") != 1]
    assert len(sent) < 8  # the remaining cases were cancelled, not all sent
    # and the cancelled conversations left nothing for a later test to trip over: no coroutine
    # that was never awaited (it would warn in whatever test collects it), no runner thread
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
    assert [t.name for t in threading.enumerate() if t.name == "punie-runner"] == []


def test_last_failed_reruns_only_the_failures(pytester):
    pytester.makepyfile(PROMPT_CASES)
    answers = _fake_answers()
    answers["question 5"] = "no idea"
    with FakeOpenAI(answers) as fake:
        first = pytester.runpytest(f"--punie-base-url={fake.base_url}", "-p", "cacheprovider")
        first.assert_outcomes(passed=7, failed=1)
        fake.requests.clear()
        again = pytester.runpytest(  # the response cache off: count what --lf sends
            f"--punie-base-url={fake.base_url}", "-p", "cacheprovider", "--lf", "--punie-cache=off"
        )
    again.assert_outcomes(passed=0, failed=1)
    prompts = [r["messages"][-1]["content"] for r in fake.requests if r.get("max_tokens") != 1]
    assert prompts == ["question 5"]


def test_a_conversation_that_loops_is_stopped_and_scored(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_tool_called

        @pytest.mark.punie(category="tools", prompt="loop", tools=["list_dir"])
        def test_loops(punie_result):
            assert punie_result.stopped and "request_limit" in punie_result.stopped
            assert_tool_called(punie_result, "list_dir")
        """
    )
    text_call = '<tool_call>{"name": "list_dir", "arguments": {"path": "."}}</tool_call>'
    with FakeOpenAI({"loop": {"loop": text_call}}) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}")
    result.assert_outcomes(passed=1)
    assert len([r for r in fake.requests if r.get("max_tokens") != 1]) == 10


def test_failure_types_are_counted_per_category(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import ExpectedCall, assert_tool_calls

        @pytest.mark.punie(category="tools")
        def test_no_call():
            assert_tool_calls("I would rather not.", [ExpectedCall("list_dir")])

        @pytest.mark.punie(category="tools")
        def test_extra():
            assert_tool_calls('<tool_call>{"name": "x", "arguments": {}}</tool_call>', [])
        """
    )
    result = pytester.runpytest("--punie-results=r.json")
    result.stdout.fnmatch_lines(["failures*extra call*no call*", "tools*1*1*"])
    categories = json.loads((pytester.path / "r.json").read_text())["categories"]
    assert categories[0]["failures"] == {"extra call": 1, "no call": 1}


def _server_started_on_demand(monkeypatch, fake):
    """Make the plugin "start" ``fake`` as its own server (no model), counting the starts."""
    import pytest_punie.serving.shared as shared
    from pytest_punie.serving.server import ServerInfo

    starts = []
    extra = {"chat_template": "model", "chat_template_reason": "its own"}
    planned = ServerInfo(
        base_url="", model_name="default_model", model="/models/m", model_hash="m" * 64, extra=extra
    )

    def serve(settings, run_dir, shared=False):
        starts.append(settings)
        return ServerInfo(**{**planned.to_json(), "base_url": fake.base_url, "started_here": True,
                             "blas": "OpenBLAS (fake)"}), None  # fmt: skip

    monkeypatch.setattr(shared, "planned", lambda settings: planned)
    monkeypatch.setattr(shared, "serve", serve)
    return starts


def test_a_run_the_cache_answers_entirely_never_starts_the_server(pytester, monkeypatch):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers()) as fake:
        starts = _server_started_on_demand(monkeypatch, fake)
        first = pytester.runpytest("--punie-results=first.json")
        first.assert_outcomes(passed=8)
        assert len(starts) == 1  # started once, at the first request, for all eight cases
        asked = len(fake.requests)
        again = pytester.runpytest("--punie-results=again.json")
        again.assert_outcomes(passed=8)
    assert len(starts) == 1  # the second run never started it
    assert len(fake.requests) == asked
    again.stdout.fnmatch_lines(["*server: not started (the response cache answered every*"])
    first.stdout.fnmatch_lines(
        ["*server: http://127.0.0.1:*started here*", "BLAS: OpenBLAS (fake)*"]
    )
    # the first run's results name the server that answered, the second's what it would serve
    served = json.loads((pytester.path / "first.json").read_text())["metadata"]["server"]
    assert served["base_url"] == fake.base_url
    cached = json.loads((pytester.path / "again.json").read_text())["metadata"]["server"]
    assert cached["base_url"] == ""
    assert cached["model_hash"] == served["model_hash"]


def test_a_cache_miss_starts_the_server_and_a_failed_start_fails_every_case(pytester, monkeypatch):
    import pytest_punie.serving.shared as shared
    from pytest_punie.serving.server import ServerError

    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers()) as fake:
        starts = _server_started_on_demand(monkeypatch, fake)

        def broken(settings, run_dir, shared=False):
            starts.append(settings)
            raise ServerError("the mlx_lm server could not load the model: no such architecture")

        monkeypatch.setattr(shared, "serve", broken)
        result = pytester.runpytest()
    result.assert_outcomes(errors=8)
    assert len(starts) == 1  # tried once; every case got the same failure
    result.stdout.fnmatch_lines(["*could not load the model: no such architecture*"])


def test_the_cache_off_starts_the_server_before_the_first_case(pytester, monkeypatch):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI(_fake_answers()) as fake:
        starts = _server_started_on_demand(monkeypatch, fake)
        pytester.runpytest("--punie-cache=off").assert_outcomes(passed=8)
        pytester.runpytest("--punie-cache=off").assert_outcomes(passed=8)
    assert len(starts) == 2
