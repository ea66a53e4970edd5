"""Verdicts out of the model's reach: the asserts of ``assert_python_code`` are judged in pytest,
the model's functions answer through proxies that carry plain values only."""

from __future__ import annotations

import json
import math
import textwrap
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.scoring import code as scoring
from pytest_punie.scoring.code import harness_plan
from pytest_punie.scoring.framework import ScoreRecord
from pytest_punie.system.sandbox import ChannelError

from .test_sandbox import code, score  # one answer builder and scorer for both files


def errors(record: ScoreRecord) -> list[str | None]:
    return [test["error"] for test in record.details["tests"]]


# Which tests are judged in pytest -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "called"),
    [
        ("assert factorial(5) == 120", {"factorial"}),
        ("assert is_even(4)", {"is_even"}),
        ("assert not is_even(7), 'odd'", {"is_even"}),
        ("assert [f(i) for i in range(3)] == [0, 1, 4]", {"f", "range"}),
        ("assert all(is_prime(p) for p in (2, 3, 5))", {"all", "is_prime"}),
        ("assert sorted(f(3), key=lambda x: -x) == [3, 2, 1]", {"f", "sorted"}),
        ("assert f(x=1, y=[1, (2, 3)]) == {1: 'a'}", {"f"}),
        ("assert isinstance(f(1), int) and f(1)[0] == 2", {"f", "isinstance"}),
        ("assert abs(area(2) - 12.566) < 1e-3", {"abs", "area"}),
        ("assert (r := f(2)) == 4 and r > 3", {"f"}),
        ("  assert f(1) == 1", {"f"}),
    ],
)
def test_a_single_assert_over_the_models_functions_is_judged_in_pytest(
    test: str, called: set[str]
) -> None:
    assert harness_plan(test) == called


@pytest.mark.parametrize(
    "test",
    [
        "x = f(3)\nassert x == 9",  # statements
        "assert Stack().pop() == 1",  # a method of what the model returned: maybe its object
        "assert make_adder(1)(2) == 3",  # calling what the model returned
        "assert f(len) == 3",  # a function passed in
        "assert apply(lambda x: x, 1) == 1",
        "assert total(i for i in range(3)) == 3",  # a generator passed in
        "assert VALUE == 3",  # a model value, not a call
        "assert math.sqrt(f(4)) == 2",  # a module the model imported
        "assert open('f').read() == 'x'",  # a builtin the harness does not lend
        "assert getattr(f(1), 'x')",
        "assert ().__class__.__bases__",
        "assert __import__('os')",
        "assert f(",
        "import os",
    ],
)
def test_other_tests_stay_in_the_sandbox(test: str) -> None:
    assert harness_plan(test) is None


# Plain values -------------------------------------------------------------------------------------

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.complex_numbers(allow_nan=False),
    lambda inner: (
        st.lists(inner)
        | st.lists(inner).map(tuple)
        | st.dictionaries(st.integers() | st.text(), inner)
        | st.frozensets(st.integers() | st.text())
        | st.sets(st.integers() | st.text())
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=plain)
def test_plain_values_cross_unchanged(value: Any) -> None:
    line = json.dumps(scoring._encode(value))
    back = scoring._decode(json.loads(line))
    assert back == value
    assert type(back) is type(value)


def test_ranges_big_ints_and_nan_cross() -> None:
    for value in (range(1, 10, 3), 2**200, -(3**90), math.inf):
        assert scoring._decode(json.loads(json.dumps(scoring._encode(value)))) == value
    assert math.isnan(scoring._decode(json.loads(json.dumps(scoring._encode(math.nan)))))


@pytest.mark.parametrize("value", [iter([1]), object(), [print], {1: (x for x in "")}, ...])
def test_other_values_do_not_cross(value: Any) -> None:
    with pytest.raises(TypeError):
        scoring._encode(value)


# A hostile worker (a fake channel: what the sandboxed side could write) --------------------------


class FakeChannel:
    """What the worker answers: scripted lines, or a ChannelError."""

    isolation = "none"

    def __init__(self, answers: list[bytes | ChannelError]) -> None:
        self.answers = [json.dumps({"id": 0, "blocks": [], "shadowed": []}).encode(), *answers]
        self.sent: list[dict[str, Any]] = []

    def send(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def receive(self, limit: int) -> bytes:
        answer = self.answers.pop(0) if self.answers else ChannelError("closed")
        if isinstance(answer, ChannelError):
            raise answer
        if len(answer) > limit:
            raise ChannelError("overflow")
        return answer


KEY = b"k" * 32


def judged(answers: list[bytes | ChannelError], test: str = "assert f(1) == 2") -> str | None:
    worker = scoring._Worker(FakeChannel(answers), KEY, 5.0)  # type: ignore[arg-type]
    worker.start([(0, "def f(x): ...")])
    called = harness_plan(test)
    try:
        if called is None:
            return worker.run_test(0, test)
        return scoring._judge_here(0, test, called, worker)
    except scoring._WorkerGone as gone:
        return str(gone)


def forged_verdict(rid: int) -> bytes:
    body = json.dumps({"id": rid, "error": None})
    return json.dumps({"id": rid, "verdict": body, "mac": "0" * 64}).encode()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage",
        b"",
        b'{"id": 1}',
        b'{"id": 2, "value": 2}',  # not the call asked
        b'{"id": 1, "error": null, "passed": true}',
        b'{"id": 1, "verdict": "{\\"id\\": 1, \\"error\\": null}", "mac": "00"}',
        b'{"id": 1, "value": {"t": "set", "v": [[1]]}}',  # unhashable
        b'{"id": 1, "value": {"t": "evil", "v": 2}}',
        b'{"id": 1, "value": {"t": "int", "v": "zz"}}',
        b'{"id": 1, "value": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"id": 1, "value": 2' + b"0" * 5000 + b"}",
        b"[2]",
        b"x" * (scoring.MAX_CODE_OUTPUT_BYTES + 1),
        ChannelError("overflow"),
        ChannelError("closed"),
        ChannelError("timeout"),
    ],
    ids=lambda answer: repr(answer)[:30],
)
def test_a_hostile_answer_fails_the_test(answer: bytes | ChannelError) -> None:
    error = judged([answer])
    assert isinstance(error, str)
    assert error


def test_a_forged_verdict_does_not_pass_a_test_run_in_the_sandbox() -> None:
    assert judged([forged_verdict(1)], "x = f(1)\nassert x == 2") is not None


def test_the_worker_is_not_asked_again_after_it_misbehaved() -> None:
    channel = FakeChannel([b"garbage", b'{"id": 2, "value": 2}'])
    worker = scoring._Worker(channel, KEY, 5.0)  # type: ignore[arg-type]
    worker.start([])
    test = "assert f(1) == 2"
    called = harness_plan(test)
    assert called is not None
    for _ in range(2):
        with pytest.raises(scoring._WorkerGone, match="not an answer"):
            scoring._judge_here(0, test, called, worker)
    assert len(channel.sent) == 2  # the code, then the one call


def test_a_plain_answer_is_judged_here() -> None:
    assert judged([b'{"id": 1, "value": 2}']) is None
    wrong = b'{"id": 1, "value": 3}'
    assert judged([wrong, wrong.replace(b"1", b"2", 1)]) == "AssertionError; f(1) is 3"


# The real worker, in the sandbox ------------------------------------------------------------------

FACTORIAL_WRONG = "def factorial(n):\n    return 0\n"
FACTORIAL_TESTS = ["assert factorial(5) == 120", "assert factorial(3) == 6"]


@pytest.mark.parametrize(
    "forgery",
    [
        # the attack that used to turn failing tests into 1.0
        "import sys, os\nfor i in range(2):\n"
        "    sys._getframe(1).f_locals['report']('test', i, None)\nos._exit(0)",
        # the same against this worker: every frame's send() and key, forged answers, then exit
        """
import hashlib, hmac, json, os, sys
def forge():
    frame = sys._getframe(1)
    while frame is not None:
        found = frame.f_locals
        if callable(found.get("send")):
            key = found.get("key", b"")
            for rid in range(10):
                body = json.dumps({"id": rid, "error": None})
                mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
                found["send"]({"id": rid, "verdict": body, "mac": mac})
                found["send"]({"id": rid, "passed": True, "error": None})
                found["send"]({"id": rid, "blocks": [], "shadowed": []})
        frame = frame.f_back
def factorial(n):
    forge()
    os._exit(0)
""",
        # forged answers written to every descriptor
        """
import os
def factorial(n):
    for fd in range(1, 20):
        for rid in range(10):
            try:
                os.write(fd, b'{"id": %d, "passed": true, "error": null}\\n' % rid)
            except OSError:
                pass
    return 0
""",
    ],
    ids=["report-frame-1", "worker-frames", "every-descriptor"],
)
def test_model_code_cannot_forge_the_verdict_of_a_judged_test(forgery: str) -> None:
    answer = code(FACTORIAL_WRONG + textwrap.dedent(forgery))
    record = score(answer, FACTORIAL_TESTS)
    assert record.score == 0.0, record.details
    assert "tests_judged_in_sandbox" not in record.details


def test_the_models_exceptions_values_and_keywords_cross() -> None:
    answer = code(
        """
        def divide(a, b):
            return a / b
        def describe(x, *, sep="-"):
            return {"pair": (x, x), "set": {x}, "bytes": bytes([x]), "sep": sep}
        def factorial(n):
            return 1 if n <= 1 else n * factorial(n - 1)
        def sorted(items):
            return list(items)
        """
    )
    tests = [
        "assert divide(1, 0) == 0",
        "assert describe(1, sep='+') == "
        "{'pair': (1, 1), 'set': {1}, 'bytes': b'\\x01', 'sep': '+'}",
        "assert factorial(100) == 93326215443944152681699238856266700490715968264381621468592963895"
        "217599993229915608941463976156518286253697920827223758251185210916864000000000000000000000000",
        "assert sorted([2, 1]) == [2, 1]",  # the model's own sorted, as before
    ]
    record = score(answer, tests)
    assert errors(record) == [
        "ZeroDivisionError: division by zero (<block 0> line 3)",
        None,
        None,
        None,
    ]


def test_what_cannot_cross_fails_the_test() -> None:
    answer = code(
        """
        def numbers():
            yield 1
        def huge():
            return "x" * 2_000_000
        def f(x):
            return x
        """
    )
    record = score(answer, ["assert list(numbers()) == [1]", "assert f(1) == 1", "assert huge()"])
    first, second, third = errors(record)
    assert "numbers() returned a generator, which cannot leave the sandbox" in str(first)
    assert second is None
    assert "an answer longer than" in str(third)


def test_a_function_that_never_answers_fails_by_the_deadline() -> None:
    answer = code("import time\ndef f():\n    time.sleep(60)\n")
    started = time.monotonic()
    record = score(answer, ["assert f() is None", "assert f() is None"], timeout=1.5)
    assert time.monotonic() - started < 5
    assert errors(record) == ["timed out after 1.5s", "timed out after 1.5s"]


def test_tests_on_the_models_objects_still_run_in_the_sandbox() -> None:
    answer = code(
        """
        class Stack:
            def __init__(self):
                self.items = []
            def push(self, x):
                self.items.append(x)
                return self
            def pop(self):
                return self.items.pop()
        """
    )
    tests = ["assert Stack().push(1).pop() == 1", "s = Stack()\ns.push(2)\nassert s.pop() == 2"]
    record = score(answer, tests)
    assert record.score == 1.0, record.details
    assert record.details["tests_judged_in_sandbox"] == [0, 1]


def test_state_is_shared_between_judged_and_sandboxed_tests() -> None:
    answer = code("calls = []\ndef count():\n    calls.append(1)\n    return len(calls)\n")
    tests = ["assert count() == 1", "assert count() == 2", "assert len(calls) == 2"]
    assert score(answer, tests).score == 1.0


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import os\nos._exit(0)\ndef f():\n    return 1", "did not run (the code exited)"),
        ("while True:\n    pass", "timed out after 1s"),
        (
            "import os\nfor fd in range(3, 9):\n    try:\n        os.write(fd, b'[]\\n')\n"
            "    except OSError:\n        pass",
            "not an answer",
        ),
    ],
    ids=["exits", "loops", "writes"],
)
def test_code_that_never_gets_ready_fails_every_test(source: str, error: str) -> None:
    record = score(code(source), ["assert f() == 1", "x = 1\nassert x == 1", "assert True"], 1.0)
    assert record.score == 0.0
    assert all(error in str(found) for found in errors(record)), errors(record)
