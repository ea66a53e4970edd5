"""The code scorer: the answer's Python blocks run in the sandbox; the case's asserts are judged
outside it.

The answer's code runs in one sandboxed worker process (``system/sandbox.py``). A test that is one
``assert`` of expressions over the model's functions and Python's plain builtins is evaluated
here, in the harness, with each model function replaced by a proxy: a call crosses to the worker
as plain values (None, bool, numbers, str, bytes, list, tuple, dict, set, range) and its plain
result, or the model's exception, crosses back, bounded in size and by the call's deadline. The
verdict of such a test is made in pytest, where model code cannot reach it (walking the
interpreter's frames, printing fake results or exiting early only make the test fail).

Other tests (several statements, a class instance the model defined, a model value used as
anything but a function called with plain values) still run inside the worker, as all tests once
did; their verdicts are authenticated with a per-call key, but code that walks the worker's frames
can find that key and forge them.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import hmac
import json
import re
import secrets
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pytest_punie.conversation.response import Response
from pytest_punie.scoring.framework import scorer
from pytest_punie.system import sandbox

__all__ = ["MAX_CODE_OUTPUT_BYTES", "assert_python_code"]

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[\w+.#-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*```[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_LANGS = frozenset({"python", "py", "python3", "py3"})

MAX_CODE_OUTPUT_BYTES = 1_000_000
"""The most one answer of the sandboxed worker may hold; a longer one stops the worker."""

# Plain values as JSON, in both directions: JSON's own types, and {"t": TAG, "v": ...} for the
# others. The same source defines the codec here and in the worker (which cannot import this
# package: the sandbox does not show it).
_CODEC = r"""
import numbers as _numbers

class Unencodable(TypeError):
    pass

def encode(value, depth=0):
    if depth > 100:
        raise Unencodable("a value nested more than 100 levels deep")
    if value is None or isinstance(value, bool):
        return None if value is None else bool(value)
    if isinstance(value, int) or (
        isinstance(value, _numbers.Integral) and hasattr(value, "__index__")
    ):
        value = int(value)
        return value if -(2**53) < value < 2**53 else {"t": "int", "v": hex(value)}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, complex):
        return {"t": "complex", "v": [value.real, value.imag]}
    if isinstance(value, (bytes, bytearray)):
        return {"t": "bytes", "v": bytes(value).hex()}
    if isinstance(value, list):
        return [encode(item, depth + 1) for item in value]
    if isinstance(value, range):
        return {"t": "range", "v": [value.start, value.stop, value.step]}
    for kind, tag in ((tuple, "tuple"), (frozenset, "frozenset"), (set, "set")):
        if isinstance(value, kind):
            return {"t": tag, "v": [encode(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        pairs = [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        return {"t": "dict", "v": pairs}
    raise Unencodable(f"a {type(value).__name__}")

def decode(data, depth=0):
    if depth > 100:
        raise ValueError("a value nested more than 100 levels deep")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(item, depth + 1) for item in data]
    if isinstance(data, dict) and set(data) == {"t", "v"}:
        tag, body = data["t"], data["v"]
        if tag == "int" and isinstance(body, str):
            return int(body, 16)
        if tag == "bytes" and isinstance(body, str):
            return bytes.fromhex(body)
        if isinstance(body, list):
            items = [decode(item, depth + 1) for item in body]
            if tag == "tuple":
                return tuple(items)
            if tag == "set":
                return set(items)
            if tag == "frozenset":
                return frozenset(items)
            if tag == "dict" and all(isinstance(p, list) and len(p) == 2 for p in items):
                return {key: value for key, value in items}
            if tag == "range" and len(items) == 3 and all(type(n) is int for n in items):
                return range(*items)
            if tag == "complex" and len(items) == 2 and all(type(n) is float for n in items):
                return complex(*items)
    raise ValueError("not a plain value")
"""

# The worker, run in a fresh sandboxed interpreter. It reads requests from its stdin and answers
# on a copy of its stdout, one JSON line each; the model's code gets /dev/null for 0, 1 and 2. It
# executes the code blocks in one namespace (not named "__main__", so `if __name__ ==
# "__main__":` demos stay quiet), then answers calls of the model's functions and runs the tests
# that cannot be judged outside.
_WORKER = r"""
def _punie_worker(codec):
    import builtins, hashlib, hmac, json, os, traceback
    requests = os.fdopen(os.dup(0), "rb")
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    plain = {}
    exec(codec, plain)
    encode, decode, Unencodable = plain["encode"], plain["decode"], plain["Unencodable"]

    def send(message):
        line = (json.dumps(message) + "\n").encode("utf-8")
        while line:
            line = line[os.write(out, line):]

    def describe(error):
        where = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<")]
        text = type(error).__name__ + (f": {error}" if str(error) else "")
        if where:
            text += f" ({where[-1].filename} line {where[-1].lineno})"
        return text[:300]

    def left_side(test, namespace):
        import ast
        node = ast.parse(test).body[0]
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            try:
                value = eval(compile(ast.Expression(node.test.left), "<test>", "eval"), namespace)
            except BaseException:
                return ""
            return f"; {ast.unparse(node.test.left)} is {value!r}"[:200]
        return ""

    first = json.loads(requests.readline())
    key = bytes.fromhex(first["key"])
    namespace = {"__name__": "__solution__"}
    errors = []
    for index, block in first["blocks"]:
        try:
            exec(compile(block, f"<block {index}>", "exec", dont_inherit=True), namespace)
            errors.append([index, None])
        except BaseException as error:
            errors.append([index, describe(error)])
    shadowed = [n for n in namespace if not n.startswith("__") and hasattr(builtins, n)]
    send({"id": 0, "blocks": errors, "shadowed": shadowed})
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        rid = request["id"]
        if "call" in request:
            name = request["call"]
            if name not in namespace:
                send({"id": rid, "missing": True})
                continue
            try:
                result = namespace[name](*decode(request["args"]), **decode(request["kwargs"]))
                send({"id": rid, "value": encode(result)})
            except Unencodable as error:
                send({"id": rid, "error": f"{name}() returned {error}, which cannot leave the "
                      "sandbox (plain values only: None, bool, numbers, str, bytes, list, tuple, "
                      "dict, set, range)"})
            except BaseException as error:
                send({"id": rid, "error": describe(error)})
            continue
        index, test = request["index"], request["test"]
        try:
            exec(compile(test, f"<test {index}>", "exec", dont_inherit=True, optimize=0), namespace)
            error = None
        except AssertionError as caught:
            error = describe(caught) if str(caught) else None
            error = error or "AssertionError" + left_side(test, namespace)
        except BaseException as caught:
            error = describe(caught)
        body = json.dumps({"id": rid, "error": error})
        mac = hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()
        send({"id": rid, "verdict": body, "mac": mac})
"""

_codec: dict[str, Any] = {}
exec(_CODEC, _codec)  # the harness's copy of the worker's codec
_encode = cast(Callable[[Any], Any], _codec["encode"])
_decode = cast(Callable[[Any], Any], _codec["decode"])
_Unencodable = cast(type[TypeError], _codec["Unencodable"])

_HARNESS_BUILTINS: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "abs all any ascii bin bool bytes callable chr complex dict divmod enumerate filter "
        "float format frozenset hasattr hash hex int isinstance issubclass iter len list map max "
        "min next oct ord pow range repr reversed round set slice sorted str sum tuple type zip "
        "Ellipsis NotImplemented"
    ).split()
}
_HARNESS_BUILTINS.update(
    (name, value)
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)
"""What a test judged in the harness may use besides the model's functions: Python's plain
builtins (no ``open``, ``getattr``, ``eval``, ``__import__``...)."""


@scorer
def assert_python_code(
    response: Response, tests: str | Sequence[str] | None = None, timeout: float = 10.0
) -> tuple[float, dict[str, Any]]:
    """Score Python code in the response: it must parse, and pass ``tests`` when given.

    The code is the ```` ```python ```` blocks, else the untagged ```` ``` ```` blocks, else the
    whole text if it parses. Blocks that do not parse (a REPL transcript, say) are skipped; the
    rest run in order in one namespace, so a later definition replaces an earlier one and helpers
    from other blocks are available. ``tests`` is a str of statements (each top-level statement is
    one test) or a sequence of tests. The code runs in a fresh sandboxed interpreter in a
    temporary directory, killed after ``timeout`` seconds; each test is judged outside it when it
    can be (see the module's docstring), and the score is the fraction that pass. Raises
    ``sandbox.SandboxUnavailable`` when no sandbox may run the code (an error of the run, not a
    score of the model).
    """
    test_list, invalid_tests = _split_tests(tests)
    if not timeout > 0:
        raise ValueError(f"assert_python_code: timeout must be > 0, not {timeout!r}")
    blocks, syntax_errors = _code_blocks(response.text)
    details: dict[str, Any] = {"code": "\n\n".join(block for _, block in blocks)}
    if syntax_errors:
        details["skipped_blocks"] = syntax_errors
    if not blocks:
        details["reason"] = syntax_errors[0] if syntax_errors else "no Python code found"
        return 0.0, details
    if not test_list:
        return 1.0, details
    run = _run_tests(blocks, test_list, invalid_tests, timeout)
    details["isolation"] = run.isolation
    details["tests"] = run.results
    if run.block_errors:
        details["block_errors"] = run.block_errors
    if run.in_sandbox:
        details["tests_judged_in_sandbox"] = run.in_sandbox
    failed = [result for result in run.results if not result["passed"]]
    if failed:
        first = failed[0]
        details["reason"] = (
            f"{len(failed)} of {len(run.results)} tests failed; first: {first['test']!r}: "
            f"{first['error']}"
        )
    return (len(run.results) - len(failed)) / len(run.results), details


def _split_tests(tests: str | Sequence[str] | None) -> tuple[list[str], dict[int, str]]:
    """The tests to run, and the ones that cannot run (not a string, not Python) with why."""
    if tests is None:
        return [], {}
    if isinstance(tests, str):
        source = textwrap.dedent(tests)
        error = _test_error(source)
        if error is not None:
            return [tests], {0: error}
        tree = ast.parse(source)
        return [ast.get_source_segment(source, node) or ast.unparse(node) for node in tree.body], {}
    shown: list[str] = []
    invalid: dict[int, str] = {}
    for index, test in enumerate(tests):
        if not isinstance(test, str):
            shown.append(repr(test))
            invalid[index] = f"a test must be a string of Python, not {type(test).__name__}"
            continue
        shown.append(test)
        error = _test_error(textwrap.dedent(test))
        if error is not None:
            invalid[index] = error
    return shown, invalid


def _test_error(test: str) -> str | None:
    try:
        ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        return f"the test is not valid Python: {error}"
    return None


def _code_blocks(text: str) -> tuple[list[tuple[int, str]], list[str]]:
    """The numbered candidate code blocks that parse, and the syntax errors of the others."""
    fenced = [(m["lang"].lower(), textwrap.dedent(m["body"])) for m in _FENCE.finditer(text)]
    if not fenced:
        error = _syntax_error(text)
        if error is not None:
            return [], [f"no code block, and the text is not Python: {error}"]
        return ([(0, text)] if text.strip() else []), []
    candidates = [body for lang, body in fenced if lang in _PYTHON_LANGS]
    candidates = candidates or [body for lang, body in fenced if not lang]
    blocks, errors = [], []
    for index, block in enumerate(candidates):
        error = _syntax_error(block)
        if error is not None:
            errors.append(f"block {index}: {error}")
        elif block.strip():
            blocks.append((index, block))
    return blocks, errors


def _syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as error:
        return f"syntax error: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return f"syntax error: {error}"
    return None


# Judging the tests --------------------------------------------------------------------------------


def harness_plan(test: str) -> frozenset[str] | None:
    """The names a test calls that may be the model's, when the test can be judged in the harness;
    None when it must run inside the sandbox.

    Judged in the harness: one ``assert`` whose names are Python's plain builtins, names the test
    binds itself (comprehension variables, ``:=``), and other names only where they are called,
    with arguments that hold no function (a lambda, a generator, a name passed as a value) and a
    result that is neither called nor has an attribute taken (it may be an object of the model's).
    The test is decided on its text alone, so the model's answer cannot choose where it runs.
    """
    try:
        tree = ast.parse(textwrap.dedent(test))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    nodes = list(ast.walk(tree.body[0]))
    bound = {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {n.arg for n in nodes if isinstance(n, ast.arg)}
    parent = {child: node for node in nodes for child in ast.iter_child_nodes(node)}
    model_calls = [
        n
        for n in nodes
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id not in bound
        and n.func.id not in _HARNESS_BUILTINS
    ]
    in_model_arguments = {
        id(inner)
        for call in model_calls
        for argument in (*call.args, *call.keywords)
        for inner in ast.walk(argument)
    }
    called: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            return None
        if isinstance(node, (ast.Lambda, ast.GeneratorExp)) and id(node) in in_model_arguments:
            return None
        if not isinstance(node, ast.Name) or node.id in bound:
            continue
        if node.id.startswith("__"):
            return None
        above = parent.get(node)
        if isinstance(above, ast.Call) and above.func is node:
            if node.id not in _HARNESS_BUILTINS and hasattr(builtins, node.id):
                return None  # open(), getattr(), print()...: the harness does not lend them
            called.add(node.id)
        elif node.id not in _HARNESS_BUILTINS or id(node) in in_model_arguments:
            return None
    for call in model_calls:
        above = parent.get(call)
        if isinstance(above, ast.Attribute) or (isinstance(above, ast.Call) and above.func is call):
            return None
    return frozenset(called)


class _WorkerGone(Exception):
    """The worker stopped answering; the message is what the remaining tests report."""


class _ModelError(Exception):
    """The model's code raised; the message says what and where (``<block N> line L``)."""


@dataclass(frozen=True)
class _Run:
    results: list[dict[str, Any]]
    block_errors: list[str]
    isolation: str
    in_sandbox: list[int]


class _Worker:
    """The harness's side of the sandboxed worker: requests out, checked answers back."""

    def __init__(self, channel: sandbox.Channel, key: bytes, timeout: float) -> None:
        self.channel = channel
        self.key = key
        self.timeout = timeout
        self.gone: str | None = None
        self.shadowed: frozenset[str] = frozenset()
        self._next_id = 0

    def _fail(self, reason: str) -> _WorkerGone:
        self.gone = self.gone or reason
        return _WorkerGone(self.gone)

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.gone is not None:
            raise _WorkerGone(self.gone)
        sent_id = self._next_id
        self._next_id += 1
        try:
            self.channel.send((json.dumps({"id": sent_id, **message}) + "\n").encode())
            line = self.channel.receive(MAX_CODE_OUTPUT_BYTES)
        except sandbox.ChannelError as error:
            raise self._fail(
                {
                    "timeout": f"timed out after {self.timeout:g}s",
                    "closed": "did not run (the code exited)",
                    "overflow": "did not run (the code wrote an answer longer than "
                    f"{MAX_CODE_OUTPUT_BYTES} bytes)",
                }[error.reason]
            ) from None
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict) or reply.get("id") != sent_id:
            raise self.invalid()
        return reply

    def invalid(self) -> _WorkerGone:
        return self._fail("did not run (the code wrote something that is not an answer)")

    def start(self, blocks: list[tuple[int, str]]) -> list[str]:
        """Send the code blocks; the errors they raised."""
        reply = self._exchange({"key": self.key.hex(), "blocks": blocks})
        ran, shadowed = reply.get("blocks"), reply.get("shadowed")
        if not (
            isinstance(ran, list)
            and all(isinstance(b, list) and len(b) == 2 for b in ran)
            and isinstance(shadowed, list)
            and all(isinstance(name, str) for name in shadowed)
        ):
            raise self.invalid()
        self.shadowed = frozenset(shadowed)
        return [f"block {index}: {str(error)[:300]}" for index, error in ran if error is not None]

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            request = {"call": name, "args": _encode(list(args)), "kwargs": _encode(kwargs)}
        except _Unencodable as error:
            raise TypeError(f"{name}(): {error} cannot be passed into the sandbox") from None
        reply = self._exchange(request)
        if reply.get("missing") is True:
            raise NameError(f"name {name!r} is not defined")
        if isinstance(reply.get("error"), str):
            raise _ModelError(reply["error"][:300])
        if "value" not in reply:
            raise self.invalid()
        try:
            return _decode(reply["value"])
        except (ValueError, TypeError, RecursionError):
            raise self.invalid() from None

    def run_test(self, index: int, test: str) -> str | None:
        """Run the test inside the worker (it cannot be judged here); its error, or None."""
        reply = self._exchange({"index": index, "test": test})
        body, mac = reply.get("verdict"), reply.get("mac")
        if not isinstance(body, str) or not isinstance(mac, str):
            raise self.invalid()
        expected = hmac.new(self.key, body.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
            raise self.invalid()
        try:
            verdict = json.loads(body)
        except (ValueError, RecursionError):
            raise self.invalid() from None
        if not isinstance(verdict, dict) or verdict.get("id") != reply["id"]:
            raise self.invalid()
        error = verdict.get("error")
        if not (error is None or isinstance(error, str)):
            raise self.invalid()
        return error


class _Proxy:
    """Stands for one of the model's functions in a test judged in the harness."""

    def __init__(self, worker: _Worker, name: str) -> None:
        self._worker = worker
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<the model's {self._name}>"


def _describe(error: BaseException) -> str:
    if isinstance(error, _ModelError):
        return str(error)
    where = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<")]
    text = type(error).__name__ + (f": {error}" if str(error) else "")
    if where:
        text += f" ({where[-1].filename} line {where[-1].lineno})"
    return text[:300]


def _judge_here(index: int, test: str, called: frozenset[str], worker: _Worker) -> str | None:
    """Evaluate the test in the harness with proxies for the model's functions; its error."""
    namespace: dict[str, Any] = {"__builtins__": _HARNESS_BUILTINS}
    for name in called:
        if name not in _HARNESS_BUILTINS or name in worker.shadowed:
            namespace[name] = _Proxy(worker, name)
    source = textwrap.dedent(test)
    try:
        exec(compile(source, f"<test {index}>", "exec", dont_inherit=True, optimize=0), namespace)
    except AssertionError as error:
        return _describe(error) if str(error) else "AssertionError" + _left_side(source, namespace)
    except _WorkerGone:
        raise
    except Exception as error:
        return _describe(error)
    return None


def _left_side(test: str, namespace: dict[str, Any]) -> str:
    """``; <left side> is <value>`` for a failed comparison, to show what the code returned."""
    node = ast.parse(test).body[0]
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
        return ""
    left = ast.Expression(node.test.left)
    try:
        value = eval(compile(left, "<test>", "eval", dont_inherit=True), namespace)
    except Exception:
        return ""
    return f"; {ast.unparse(node.test.left)} is {value!r}"[:200]


def _run_tests(
    blocks: list[tuple[int, str]], tests: list[str], invalid: Mapping[int, str], timeout: float
) -> _Run:
    """Run ``blocks`` in a sandboxed worker, then judge each test; per-test results."""
    results: list[dict[str, Any]] = []
    block_errors: list[str] = []
    in_sandbox: list[int] = []
    with (
        tempfile.TemporaryDirectory(prefix="punie-code-") as workdir,
        sandbox.session(
            [sys.executable, "-I", "-c", _WORKER + f"\n_punie_worker({_CODEC!r})\n"],
            scratch=Path(workdir),
            timeout=timeout,
        ) as channel,
    ):
        worker = _Worker(channel, secrets.token_bytes(32), timeout)
        try:
            block_errors = worker.start(blocks)
        except _WorkerGone:
            pass
        for index, test in enumerate(tests):
            error = invalid.get(index) or worker.gone
            if error is None:
                called = harness_plan(test)
                try:
                    if called is None:
                        in_sandbox.append(index)
                        error = worker.run_test(index, textwrap.dedent(test))
                    else:
                        error = _judge_here(index, test, called, worker)
                except _WorkerGone as gone:
                    error = str(gone)
            results.append({"test": test, "passed": error is None, "error": error})
    return _Run(results, block_errors, channel.isolation, in_sandbox)
