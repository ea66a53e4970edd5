"""Requests time out on lack of progress, not while they queue; repeated infrastructure
errors stop the run with one message (against the fake OpenAI server)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from pydantic_ai.exceptions import ModelTimeoutError

from pytest_punie.conversation.agent import Sampling, make_agent, make_model
from pytest_punie.conversation.progress import ProgressClock, _Watch
from pytest_punie.serving.server import ServerInfo
from pytest_punie.testing import FakeOpenAI

from .test_plugin import PROMPT_CASES


def _agent(fake: FakeOpenAI, timeout: float):  # type: ignore[no-untyped-def]
    info = ServerInfo(base_url=fake.base_url, model_name="fake", model="fake")
    return make_agent(make_model(info, Sampling(timeout=timeout)))


def test_a_computing_server_is_progress():
    # this process burns CPU: as "the server", it makes progress though it sends nothing
    clock = ProgressClock(os.getpid())
    watch = _Watch(started=time.monotonic() - 100, last=time.monotonic() - 100)
    clock.last = time.monotonic() - 100
    assert clock.idle(watch)[0] > 99
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        pass
    idle, stalled = clock.idle(watch)
    assert idle < 1
    assert not stalled


async def test_queueing_in_the_server_does_not_count_against_a_request():
    answers = {f"q{i}": f"answer number {i}" for i in range(6)}
    # one request at a time, 0.5 s each: the last one waits 2.5 s, far beyond the 1 s timeout
    with FakeOpenAI(answers, delay=0.4, token_delay=0.03, serial=True) as fake:
        agent = _agent(fake, timeout=1.0)
        started = time.perf_counter()
        results = await asyncio.gather(*(agent.run(f"q{i}") for i in range(6)))
        elapsed = time.perf_counter() - started
    assert [r.output for r in results] == [f"answer number {i}" for i in range(6)]
    assert elapsed > 2.4  # they really queued
    assert all(r.get("stream") for r in fake.requests)


async def test_a_stalled_stream_times_out():
    with FakeOpenAI({"q": {"stall": "I will never finish"}}) as fake:
        agent = _agent(fake, timeout=0.8)
        started = time.perf_counter()
        with pytest.raises(ModelTimeoutError, match="server sent nothing"):
            await agent.run("q")
    assert time.perf_counter() - started < 5


async def test_a_server_that_sends_nothing_times_out():
    with FakeOpenAI({"q": "late"}, delay=30) as fake:
        agent = _agent(fake, timeout=0.8)
        started = time.perf_counter()
        with pytest.raises(ModelTimeoutError, match="server sent nothing"):
            await agent.run("q")
    assert time.perf_counter() - started < 5


async def test_a_stalled_stream_times_out_while_others_progress():
    # the busy stream runs longer than STALL_FACTOR * timeout (5 * 0.3 s)
    answers = {"stuck": {"stall": "I will never finish"}, "busy": " ".join(["word"] * 60)}
    with FakeOpenAI(answers, token_delay=0.05) as fake:
        agent = _agent(fake, timeout=0.3)
        stuck, busy = await asyncio.gather(
            agent.run("stuck"), agent.run("busy"), return_exceptions=True
        )
    assert isinstance(stuck, ModelTimeoutError)
    assert "its stream stalled" in str(stuck)
    assert not isinstance(busy, BaseException)
    assert busy.output == answers["busy"]


def test_repeated_infrastructure_errors_stop_the_run_with_one_message(pytester):
    pytester.makepyfile(PROMPT_CASES)
    answers = {f"question {i}": {"stall": "the answer"} for i in range(8)}
    with FakeOpenAI(answers) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-timeout=0.5")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 3
    assert "passed" not in outcomes
    result.stdout.fnmatch_lines(
        ["*Interrupted: pytest-punie stopped the run: 3 cases failed to get an answer*"]
    )


def test_a_model_answer_failure_does_not_stop_the_run(pytester):
    pytester.makepyfile(PROMPT_CASES)
    with FakeOpenAI({}) as fake:  # every answer is wrong: the cases fail, the run goes on
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}")
    result.assert_outcomes(failed=8)
