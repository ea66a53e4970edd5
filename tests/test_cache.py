"""The response cache: its key, the wrapper model, the option, resume, and ``punie cache``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.function import AgentInfo, FunctionModel

from pytest_punie.cli import main
from pytest_punie.conversation.cache import (
    CachedModel,
    ResponseCache,
    cache_context,
    is_cached,
    request_key,
    served_content,
)
from pytest_punie.serving.models import content_hash
from pytest_punie.serving.server import ServerInfo
from pytest_punie.testing import FakeOpenAI

SERVED = {"model": "m" * 64, "adapter": None, "chat_template": "hermes-hash"}
PARAMS = ModelRequestParameters()


def _conversation(tool_result: str = "sunny", call_id: str = "abc") -> list[ModelMessage]:
    return [
        ModelRequest(parts=[UserPromptPart("weather in Oslo?")]),
        ModelResponse(parts=[ToolCallPart("weather", {"city": "Oslo"}, tool_call_id=call_id)]),
        ModelRequest(parts=[ToolReturnPart("weather", tool_result, tool_call_id=call_id)]),
    ]


def _key(messages: list[ModelMessage] | None = None, **changes: Any) -> str:
    served = {**SERVED, **changes.pop("served", {})}
    settings = {"temperature": 0.0, "max_tokens": 256, **changes.pop("settings", {})}
    return request_key(served, messages or _conversation(), settings, PARAMS, **changes)


def test_the_key_ignores_timestamps_and_tool_call_ids():
    first = _key(_conversation(call_id="call-1"))
    time.sleep(0.01)  # new timestamps
    assert _key(_conversation(call_id="random-uuid-from-the-server")) == first
    assert _key(settings={"timeout": 5.0}) == _key()  # how long we wait is not content


@pytest.mark.parametrize(
    "change",
    [
        {"messages": _conversation(tool_result="raining")},
        {"served": {"model": "n" * 64}},
        {"served": {"adapter": "a" * 64}},
        {"served": {"chat_template": "other"}},
        {"settings": {"temperature": 0.7}},
        {"settings": {"max_tokens": 64}},
        {"settings": {"seed": 3}},
        {"repeat": 1},
    ],
    ids=lambda c: next(iter(c)) + ":" + json.dumps(next(iter(c.values())), default=str)[:20],
)
def test_the_key_changes_with_what_decides_the_answer(change):
    assert _key(**change) != _key()


def test_tools_the_model_sees_are_in_the_key():
    from pydantic_ai.tools import ToolDefinition

    tool = ToolDefinition(name="weather", parameters_json_schema={"type": "object"})
    with_tool = ModelRequestParameters(function_tools=[tool])
    messages = _conversation()
    assert request_key(SERVED, messages, {}, with_tool) != request_key(SERVED, messages, {}, PARAMS)


class Counting:
    """A FunctionModel body that counts calls; it calls the weather tool once, then answers."""

    def __init__(self, fail: bool = False, finish: str = "stop") -> None:
        self.calls = 0
        self.fail = fail
        self.finish = finish

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        if self.fail:
            raise RuntimeError("server went away")
        last = messages[-1].parts[-1]
        if info.function_tools and not isinstance(last, ToolReturnPart):
            return ModelResponse(parts=[ToolCallPart("weather", {"city": "Oslo"})])
        answer = f"It is {last.content}." if isinstance(last, ToolReturnPart) else "hello"
        return ModelResponse(parts=[TextPart(answer)], finish_reason=self.finish)  # type: ignore[arg-type]


def _sync(agent: Agent[Any, str], prompt: str) -> Any:
    """``agent.run`` in a loop that is closed afterwards (``run_sync`` leaves one behind)."""
    return asyncio.run(agent.run(prompt))


def _run(model: Any, result: str = "sunny") -> str:
    agent = Agent(model)

    @agent.tool_plain
    def weather(city: str) -> str:
        return result

    return _sync(agent, "weather in Oslo?").output


def test_every_request_of_a_conversation_is_cached_and_a_changed_tool_result_asks_again(tmp_path):
    body = Counting()
    cache = ResponseCache(tmp_path / "cache.db")
    model = CachedModel(FunctionModel(body), cache, SERVED)
    assert _run(model) == "It is sunny."
    assert body.calls == 2
    assert _run(model) == "It is sunny."
    assert body.calls == 2  # both requests came from the cache
    assert _run(model, result="raining") == "It is raining."
    assert body.calls == 3  # the first request is the same; the one after the tool result is not


def test_a_cached_response_says_so_and_keeps_its_token_counts(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")
    model = CachedModel(FunctionModel(Counting()), cache, SERVED)
    first = _sync(Agent(model), "hi")
    second = _sync(Agent(model), "hi")
    fresh, again = first.all_messages()[-1], second.all_messages()[-1]
    assert isinstance(fresh, ModelResponse)
    assert isinstance(again, ModelResponse)
    assert not is_cached(fresh)
    assert is_cached(again)
    assert again.usage.output_tokens == fresh.usage.output_tokens > 0

    from pytest_punie.conversation.response import from_messages

    response = from_messages(second.all_messages(), second.output)
    assert response.cached
    assert response.cached_requests == 1
    assert response.to_json()["cached"] is True
    assert response.to_json()["messages"][0]["parts"][0]["content"] == "hi"


def test_errors_and_incomplete_responses_are_never_stored(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")
    with pytest.raises(RuntimeError):
        _sync(Agent(CachedModel(FunctionModel(Counting(fail=True)), cache, SERVED)), "hi")
    _sync(Agent(CachedModel(FunctionModel(Counting(finish="error")), cache, SERVED)), "hi")
    assert cache.stats().entries == 0
    incomplete = ModelResponse(parts=[TextPart("half")], state="interrupted")
    assert not cache.put("k", incomplete, SERVED, 1.0)


def test_read_mode_never_writes_and_refresh_mode_never_reads(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")
    body = Counting()
    _sync(Agent(CachedModel(FunctionModel(body), cache, SERVED, mode="read")), "hi")
    assert cache.stats().entries == 0
    _sync(Agent(CachedModel(FunctionModel(body), cache, SERVED, mode="on")), "hi")
    _sync(Agent(CachedModel(FunctionModel(body), cache, SERVED, mode="read")), "hi")
    assert body.calls == 2  # read served the entry "on" wrote
    _sync(Agent(CachedModel(FunctionModel(body), cache, SERVED, mode="refresh")), "hi")
    assert body.calls == 3
    assert cache.stats().entries == 1  # replaced, not added


def test_repeats_are_cached_apart(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")
    body = Counting()
    model = CachedModel(FunctionModel(body), cache, SERVED)
    for repeat in (0, 1, 0, 1):
        with cache_context(repeat):
            _sync(Agent(model), "hi")
    assert body.calls == 2


def test_streamed_requests_are_cached_too(tmp_path):
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> Any:
        stream.calls += 1  # type: ignore[attr-defined]
        for word in ("It ", "is ", "sunny."):
            yield word

    stream.calls = 0  # type: ignore[attr-defined]
    cache = ResponseCache(tmp_path / "cache.db")
    model = CachedModel(FunctionModel(stream_function=stream), cache, SERVED)

    async def run() -> str:
        async with Agent(model).run_stream("hi") as result:
            return "".join([chunk async for chunk in result.stream_output(debounce_by=None)][-1:])

    assert asyncio.run(run()) == "It is sunny."
    assert asyncio.run(run()) == "It is sunny."
    assert stream.calls == 1  # type: ignore[attr-defined]


def test_an_adapter_retrained_in_place_is_never_served_stale(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    weights = adapter / "adapters.safetensors"
    weights.write_bytes(b"first training run")

    def info() -> ServerInfo:
        return ServerInfo(
            base_url="http://x/v1",
            model_name="default_model",
            model=str(tmp_path),
            adapter=str(adapter),
            model_hash="m" * 64,
            adapter_hash=content_hash(adapter),
        )

    cache = ResponseCache(tmp_path / "cache.db")
    body = Counting()
    _sync(Agent(CachedModel(FunctionModel(body), cache, served_content(info()))), "hi")
    _sync(Agent(CachedModel(FunctionModel(body), cache, served_content(info()))), "hi")
    assert body.calls == 1
    time.sleep(0.01)
    weights.write_bytes(b"second training run, same path")  # retrained in place
    os.utime(weights)
    _sync(Agent(CachedModel(FunctionModel(body), cache, served_content(info()))), "hi")
    assert body.calls == 2


def test_the_chat_template_is_keyed_by_its_content(tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    info = ServerInfo("http://x/v1", "m", None, extra={"chat_template": str(template)})
    first = served_content(info)["chat_template"]
    template.write_text("{{ messages }} changed")
    assert served_content(info)["chat_template"] != first


def _prompt_cases(n: int) -> str:
    return "\n".join(
        [
            "import pytest",
            "from pytest_punie import assert_keywords",
            *(
                f'@pytest.mark.punie(category="q", prompt="question {i}")\n'
                f"def test_{i}(punie_result):\n"
                f'    assert_keywords(punie_result, ["answer"])\n'
                for i in range(n)
            ),
        ]
    )


def _answers(n: int) -> dict[str, Any]:
    return {f"question {i}": f"the answer {i}" for i in range(n)}


def test_a_rerun_sends_no_request_and_says_the_cases_came_from_the_cache(pytester):
    pytester.makepyfile(_prompt_cases(4))
    with FakeOpenAI(_answers(4)) as fake:
        args = (f"--punie-base-url={fake.base_url}", "--punie-results=r.json")
        pytester.runpytest(*args).assert_outcomes(passed=4)
        assert len(fake.chat_requests) == 4
        second = pytester.runpytest(*args, "--html=report.html")
        assert len(fake.chat_requests) == 4
    second.assert_outcomes(passed=4)
    assert (
        "cache: 4 of 4 case(s) answered from the cache"
        in (pytester.path / "report.html").read_text()
    )
    second.stdout.fnmatch_lines(["cache: 4 of 4 case(s) answered from the cache (mode on, *"])
    document = json.loads((pytester.path / "r.json").read_text())
    assert all(c["cached"] for c in document["cases"])
    assert document["metadata"]["cache"]["cached_cases"] == 4
    assert document["cases"][0]["prompt"].startswith("question")
    assert (pytester.path / ".punie" / "cache.db").is_file()


@pytest.mark.parametrize(("mode", "sent"), [("off", 2), ("refresh", 2), ("read", 0), ("on", 0)])
def test_cache_modes_from_the_command_line(pytester, mode, sent):
    pytester.makepyfile(_prompt_cases(2))
    with FakeOpenAI(_answers(2)) as fake:
        pytester.runpytest(f"--punie-base-url={fake.base_url}").assert_outcomes(passed=2)
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", f"--punie-cache={mode}")
        result.assert_outcomes(passed=2)
        assert len(fake.chat_requests) == 2 + sent


def test_the_ini_twin_turns_the_cache_off(pytester):
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\npunie_cache = off\n")
    pytester.makepyfile(_prompt_cases(2))
    with FakeOpenAI(_answers(2)) as fake:
        for _ in range(2):
            pytester.runpytest(f"--punie-base-url={fake.base_url}").assert_outcomes(passed=2)
        assert len(fake.chat_requests) == 4
    assert not (pytester.path / ".punie" / "cache.db").exists()


def test_a_bad_cache_mode_names_the_option(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-cache=sometimes")
    result.stderr.fnmatch_lines(
        ["*--punie-cache=sometimes: must be one of on, off, read, refresh*"]
    )


def test_xdist_workers_share_the_cache(pytester):
    pytester.makepyfile(_prompt_cases(6))
    with FakeOpenAI(_answers(6)) as fake:
        args = (f"--punie-base-url={fake.base_url}", "-n", "2")
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=6)
        assert len(fake.chat_requests) == 6
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=6)
        assert len(fake.chat_requests) == 6


def test_a_killed_run_resumes_with_only_what_is_not_cached(pytester):
    """Kill pytest midway (SIGKILL: no clean-up at all), run again: only the rest is sent."""
    total = 8
    pytester.makepyfile(_prompt_cases(total))
    with FakeOpenAI(_answers(total), delay=0.3) as fake:
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
            f"--punie-base-url={fake.base_url}", "--punie-concurrency=1",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300  # a loaded machine starts pytest slowly
        while len(fake.chat_requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        time.sleep(0.5)  # a request in flight when pytest died ends at the server
        first = len(fake.chat_requests)
        assert 4 <= first < total
        done = subprocess.run(command, cwd=pytester.path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:]
        second = len(fake.chat_requests) - first
    # the cases whose answers arrived were stored; the one in flight when pytest died is sent
    # again, nothing else is
    assert total - first <= second <= total - first + 1
    prompts = [r["messages"][-1]["content"] for r in fake.chat_requests[first:]]
    assert len(set(prompts)) == len(prompts)
    assert f"{total - first} of {total}" not in done.stdout  # not everything was cached
    assert f"cache: {total - second} of {total} case(s)" in done.stdout


def test_punie_cache_stats_and_clear(tmp_path, capsys):
    db = tmp_path / "cache.db"
    assert main(["cache", "stats", "--db", str(db)]) == 2
    assert "no cache" in capsys.readouterr().err
    cache = ResponseCache(db)
    cache.put("k1", ModelResponse(parts=[TextPart("a")]), SERVED, 0.5)
    cache.put("k2", ModelResponse(parts=[TextPart("b")]), {**SERVED, "adapter": "ad"}, 0.5)
    cache.close()
    assert main(["cache", "stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "responses: 2" in out
    assert "mmmm" in out
    assert "+ ad" in out
    assert main(["cache", "clear", "--db", str(db)]) == 0
    assert "removed 2 cached response(s)" in capsys.readouterr().out
    assert ResponseCache(db).stats().entries == 0


def test_concurrent_writers_lose_no_entry(tmp_path):
    """Processes writing to one cache at once (xdist workers, two runs) all get their entries in."""
    script = (
        "import sys\n"
        "from pydantic_ai.messages import ModelResponse, TextPart\n"
        "from pytest_punie.conversation.cache import ResponseCache\n"
        "c = ResponseCache(sys.argv[1])\n"
        "for i in range(50):\n"
        "    c.put(f'{sys.argv[2]}-{i}', ModelResponse(parts=[TextPart('x')]), {}, 0.0)\n"
    )
    db = tmp_path / "cache.db"
    ResponseCache(db).close()
    writers = [subprocess.Popen([sys.executable, "-c", script, str(db), str(n)]) for n in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    assert ResponseCache(db).stats().entries == 200


def test_cached_entries_survive_in_the_file(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.db")
    cache.put("key", ModelResponse(parts=[TextPart("kept")]), SERVED, 0.1)
    cache.close()
    found = ResponseCache(tmp_path / "c.db").get("key")
    assert found is not None
    assert is_cached(found)
    assert found.parts[0].content == "kept"  # type: ignore[union-attr]


def test_free_form_cases_on_punie_agent_are_cached_too(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_keywords

        @pytest.mark.asyncio
        @pytest.mark.punie(category="chat")
        async def test_two_turns(punie_agent):
            first = await punie_agent.run("question 0")
            second = await punie_agent.run("question 1", message_history=first.all_messages())
            assert_keywords(second, ["answer"])
        """
    )
    with FakeOpenAI(_answers(2)) as fake:
        args = (f"--punie-base-url={fake.base_url}",)
        pytester.runpytest(*args).assert_outcomes(passed=1)
        assert len(fake.chat_requests) == 2
        again = pytester.runpytest(*args)
        assert len(fake.chat_requests) == 2
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["cache: 1 of 1 case(s) answered from the cache*"])


def test_a_skipped_case_is_never_sent_to_the_model(pytester):
    pytester.makepyfile(
        _prompt_cases(2)
        + '\n\n@pytest.mark.skip(reason="not today")\n'
        + '@pytest.mark.punie(category="q", prompt="question 9")\n'
        + "def test_skipped(punie_result):\n    pass\n"
    )
    with FakeOpenAI(_answers(10)) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-cache=off")
        prompts = [str(r) for r in fake.chat_requests]
    result.assert_outcomes(passed=2, skipped=1)
    assert len(prompts) == 2
    assert not any("question 9" in p for p in prompts)


def test_a_new_cache_waits_for_another_process_switching_it_to_wal(tmp_path):
    # xdist workers all open the run's cache as they start. While one of them holds the fresh
    # database (switching it to WAL), SQLite refuses the others at once, without its busy
    # wait: "database is locked" errored the cases of the workers that lost the race.
    import sqlite3
    import threading

    path = tmp_path / "cache.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (x)")
    other.execute("BEGIN IMMEDIATE")  # what a worker midway through its switch holds
    threading.Timer(0.5, other.execute, ["COMMIT"]).start()
    opened = ResponseCache(path)
    assert opened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
