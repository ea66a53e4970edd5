"""Several servers of one model behind one suite, shown with two fake OpenAI servers: cases
spread over both, one killed mid-run (every case still answered, none twice), one serving
another model refused at start, and the options that name them."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest

from pytest_punie.options import BASE_URL_OPTION, START_SERVERS_OPTION
from pytest_punie.serving.pool import ServedModel, ServerPool, served_tallies
from pytest_punie.testing import FakeOpenAI

CASES = 12
PROMPT_CASES = f"""
import pytest
from pytest_punie import assert_keywords

PROMPTS = [f"question {{i}}" for i in range({CASES})]

@pytest.mark.parametrize("prompt", [
    pytest.param(p, marks=pytest.mark.punie(category="q", prompt=p), id=str(i))
    for i, p in enumerate(PROMPTS)
])
def test_answer(punie_result, prompt):
    assert_keywords(punie_result, ["answer"])
"""


def _answers() -> dict[str, str]:
    return {f"question {i}": f"the answer {i}" for i in range(CASES)}


class KillableFake(FakeOpenAI):
    """A fake server that can serve another model's name and be killed: it then accepts no
    connection, and the streams it is sending stop mid-answer (no ``[DONE]``)."""

    def __init__(self, *args: Any, model_id: str = "fake-model", **kwargs: Any) -> None:
        self.model_id = model_id
        self.killed = threading.Event()
        self.answered: list[str] = []  # the prompts it answered to the end
        super().__init__(*args, **kwargs)

    def kill(self) -> None:
        self.killed.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> Any:
        fake = self
        base: Any = super()._handler()

        class Handler(base):  # type: ignore[misc,valid-type]
            def do_GET(self) -> None:
                if self.path.startswith("/v1/models"):
                    self._send(200, {"object": "list", "data": [{"id": fake.model_id}]})
                else:
                    super().do_GET()

            def _stream(self, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.flush()
                deadline = time.monotonic() + fake.delay
                while time.monotonic() < deadline and not fake.killed.is_set():
                    time.sleep(0.01)
                if fake.killed.is_set():  # dies mid-answer: the connection just closes
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                for chunk in fake.chunks(body):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                with fake._lock:
                    fake.answered.append(body["messages"][-1]["content"])

        return Handler


def _run(pytester: pytest.Pytester, *servers: FakeOpenAI, args: tuple[str, ...] = ()) -> Any:
    urls = [f"{BASE_URL_OPTION.flag}={s.base_url}" for s in servers]
    return pytester.runpytest(*urls, "--punie-cache=off", "--punie-results=r.json", *args)


def _servers(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    data = json.loads((pytester.path / "r.json").read_text())
    servers: list[dict[str, Any]] = data["metadata"]["server"]["servers"]
    return servers


def test_cases_are_spread_over_both_servers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with KillableFake(_answers(), delay=0.3) as one, KillableFake(_answers(), delay=0.3) as two:
        result = _run(pytester, one, two, args=("--punie-concurrency=3",))
    result.assert_outcomes(passed=CASES)
    assert one.answered
    assert two.answered
    assert sorted(one.answered + two.answered) == sorted(_answers())  # each asked once
    # each server keeps --punie-concurrency in flight: 2 x 3 in all
    assert one.max_in_flight + two.max_in_flight > 3
    servers = _servers(pytester)
    assert [s["base_url"] for s in servers] == [one.base_url, two.base_url]
    assert [s["answered"] for s in servers] == [len(one.answered), len(two.answered)]
    assert not any(s["failed"] for s in servers)
    result.stdout.fnmatch_lines(
        [
            "servers: 2 of the same model (external, model default_model), requests answered:",
            f"  {one.base_url}: {len(one.answered)}",
            f"  {two.base_url}: {len(two.answered)}",
        ]
    )


def test_a_server_killed_mid_run_leaves_its_requests_to_the_other(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with (
        KillableFake(_answers(), delay=0.5) as doomed,
        KillableFake(_answers(), delay=0.2) as other,
    ):

        def kill_once_busy() -> None:
            while len(doomed.chat_requests) < 2:
                time.sleep(0.01)
            doomed.kill()

        killer = threading.Thread(target=kill_once_busy, daemon=True)
        killer.start()
        result = _run(pytester, doomed, other, args=("--punie-concurrency=3",))
        killer.join(timeout=10)
    result.assert_outcomes(passed=CASES)
    assert doomed.killed.is_set()
    # every case answered once: what the dead server had in flight was asked again elsewhere
    answered = Counter(doomed.answered + other.answered)
    assert answered == Counter(list(_answers()))
    prompts = [r["messages"][-1]["content"] for r in doomed.chat_requests]
    assert len(prompts) > len(doomed.answered)  # it died with requests in flight
    servers = _servers(pytester)
    assert [s["failed"] for s in servers] == [True, False]
    assert sum(s["answered"] for s in servers) == CASES
    result.stdout.fnmatch_lines([f"  {doomed.base_url}: *, out of rotation (*"])


def test_every_server_dead_errors_the_cases_with_one_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with KillableFake(_answers(), delay=0.5) as one, KillableFake(_answers(), delay=0.5) as two:

        def kill_both() -> None:
            while len(one.chat_requests) + len(two.chat_requests) < 2:
                time.sleep(0.01)
            one.kill()
            two.kill()

        killer = threading.Thread(target=kill_both, daemon=True)
        killer.start()
        result = _run(pytester, one, two, args=("--punie-concurrency=1",))
        killer.join(timeout=10)
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            f"every server of the run died: {one.base_url} (*); {two.base_url} (*)",
            "*pytest-punie stopped the run: every server died*",
        ]
    )
    assert not one.answered
    assert not two.answered


def test_a_server_of_another_model_is_refused_at_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with (
        KillableFake(_answers()) as same,
        KillableFake(_answers(), model_id="other-model") as other,
    ):
        result = _run(pytester, same, other)
        asked = same.chat_requests + other.chat_requests
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--punie-base-url: the server at {other.base_url} serves 'other-model', not "
         f"'fake-model' as {same.base_url} does*"]
    )  # fmt: skip
    assert asked == []  # no case ran


def test_several_servers_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with KillableFake(_answers(), delay=0.3) as one, KillableFake(_answers(), delay=0.3) as two:
        result = pytester.runpytest_subprocess(
            f"{BASE_URL_OPTION.flag}={one.base_url}",
            f"{BASE_URL_OPTION.flag}={two.base_url}",
            "--punie-cache=off", "--punie-results=r.json", "-n", "2", "--punie-concurrency=2",
        )  # fmt: skip
    result.assert_outcomes(passed=CASES)
    assert sorted(one.answered + two.answered) == sorted(_answers())
    assert [s["answered"] for s in _servers(pytester)] == [len(one.answered), len(two.answered)]
    assert one.answered
    assert two.answered


def test_the_cache_key_leaves_the_urls_out(pytester: pytest.Pytester) -> None:
    """The same model on other servers answers the same: a second run on two other servers
    is answered from the cache."""
    pytester.makepyfile(PROMPT_CASES)
    with KillableFake(_answers()) as one, KillableFake(_answers()) as two:
        first = pytester.runpytest(
            f"--punie-base-url={one.base_url}", f"--punie-base-url={two.base_url}"
        )
    first.assert_outcomes(passed=CASES)
    with KillableFake(_answers()) as three, KillableFake(_answers()) as four:
        again = pytester.runpytest(
            f"--punie-base-url={four.base_url}", f"--punie-base-url={three.base_url}"
        )
        asked = three.chat_requests + four.chat_requests
    again.assert_outcomes(passed=CASES)
    assert asked == []
    again.stdout.fnmatch_lines([f"cache: {CASES} of {CASES} case(s) answered from the cache*"])


def test_base_urls_from_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROMPT_CASES)
    with KillableFake(_answers(), delay=0.2) as one, KillableFake(_answers(), delay=0.2) as two:
        pytester.makeini(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
            f"punie_base_url =\n    {one.base_url}\n    {two.base_url}\n"
        )
        result = pytester.runpytest("--punie-cache=off")
    result.assert_outcomes(passed=CASES)
    assert one.answered
    assert two.answered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [f"{BASE_URL_OPTION.flag}=http://a:1/v1", f"{BASE_URL_OPTION.flag}=http://a:1/v1"],
            "--punie-base-url=http://a:1/v1: given twice",
        ),
        (
            [f"{BASE_URL_OPTION.flag}=http://a:1/v1", f"{START_SERVERS_OPTION.flag}=2"],
            "--punie-start-servers=2: not with --punie-base-url*",
        ),
        ([f"{START_SERVERS_OPTION.flag}=0"], "--punie-start-servers=0: must be a whole number*"),
        ([f"{BASE_URL_OPTION.flag}=http://a:1/v1", f"{BASE_URL_OPTION.flag}=x"], "*=x: must be*"),
    ],
)
def test_bad_server_options_stop_the_run(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_the_pool_prefers_the_least_busy_server_in_rotation() -> None:
    pool = ServerPool()
    pool.set_members([{"base_url": "http://a"}, {"base_url": "http://b"}])
    first = pool.choose(set())
    second = pool.choose(set())
    assert first is not None
    assert second is not None
    assert {first.base_url, second.base_url} == {"http://a", "http://b"}
    pool.done(first, answered=True)
    assert pool.choose(set()) is first  # now the less busy
    pool.fail(second, "gone")
    assert pool.choose(set()) is first
    assert pool.choose({first.base_url}) is None
    assert pool.tallies()[1] == {
        "base_url": second.base_url, "answered": 0, "failed": True, "failure": "gone"
    }  # fmt: skip


def test_tallies_are_summed_over_processes(tmp_path: Any) -> None:
    folder = tmp_path / "served-by"
    folder.mkdir()
    (folder / "1.json").write_text(json.dumps([{"base_url": "http://a", "answered": 2}]))
    (folder / "2.json").write_text(
        json.dumps([{"base_url": "http://a", "answered": 1, "failed": True, "failure": "x"}])
    )
    members = [{"base_url": "http://a", "log_path": "a.log"}, {"base_url": "http://b"}]
    assert served_tallies(tmp_path, members) == [
        {"base_url": "http://a", "log_path": "a.log", "answered": 3, "failed": True,
         "failure": "x"},
        {"base_url": "http://b", "answered": 0, "failed": False},
    ]  # fmt: skip


def test_same_model_by_content_where_known_else_by_name() -> None:
    assert ServedModel("/m/a", "h1").same_as(ServedModel("/other/path", "h1"))
    assert not ServedModel("/m/a", "h1").same_as(ServedModel("/m/a", "h2"))
    assert ServedModel("org/m").same_as(ServedModel("org/m"))
    assert not ServedModel("org/m").same_as(ServedModel("org/n"))
    assert not ServedModel("m", adapter="x").same_as(ServedModel("m"))
