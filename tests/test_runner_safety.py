"""The case runner: one workspace per case, and a deadline on a whole conversation (issue 11)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from pytest_punie.cases.marker import Case
from pytest_punie.conversation.runner import CaseRunner


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("done")])


async def never_answers(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    await asyncio.sleep(60)
    return ModelResponse(parts=[TextPart("too late")])


@pytest.fixture
def make_runner(tmp_path: Path) -> Iterator[Callable[..., CaseRunner]]:
    runners: list[CaseRunner] = []

    def make(model: FunctionModel, **kwargs: Any) -> CaseRunner:
        runner = CaseRunner(lambda: model, tmp_path / "workspaces", **kwargs)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def test_ids_that_clean_up_alike_get_their_own_workspace(
    make_runner: Callable[..., CaseRunner],
) -> None:
    runner = make_runner(FunctionModel(answer))
    ids = ["t.py::test_q[2+2?]", "t.py::test_q[2+2=]", "t.py::test_q[2+2 ]"]
    assert len({runner.workspace_for(nodeid) for nodeid in ids}) == 3
    assert all(runner.workspace_for(nodeid).name.startswith("t.py_test_q") for nodeid in ids)
    outcomes = [
        runner.submit(Case(nodeid, prompt="hi", workspace={"f.txt": nodeid})).result(10)
        for nodeid in ids
    ]
    assert [outcome.response.text for outcome in outcomes] == ["done"] * 3
    assert [(o.workspace / "f.txt").read_text() for o in outcomes] == ids
    assert len(runner.workspace_for("x" * 500).name) < 120


def test_a_conversation_has_a_deadline(make_runner: Callable[..., CaseRunner]) -> None:
    runner = make_runner(FunctionModel(never_answers), case_timeout=0.5)
    started = time.monotonic()
    outcome = runner.submit(Case("t.py::test_slow", prompt="hi")).result(10)
    assert time.monotonic() - started < 5
    assert outcome.response.stopped == "the conversation took more than 0.5s"
