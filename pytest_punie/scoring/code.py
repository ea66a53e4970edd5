"""The code scorer: the answer's Python blocks run with the case's asserts in the sandbox."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_punie.conversation.response import Response
from pytest_punie.scoring.framework import scorer

__all__ = ["MAX_CODE_OUTPUT_BYTES", "assert_python_code"]

# Python code ------------------------------------------------------------------------------------
from pytest_punie.system import sandbox

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[\w+.#-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*```[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_LANGS = frozenset({"python", "py", "python3", "py3"})

# Runs in a fresh, sandboxed interpreter (see sandbox.py): executes each code block, then each
# test, in one namespace (not named "__main__", so `if __name__ == "__main__":` demos stay quiet).
# The verdicts go out on a copy of stdout, each line authenticated with a per-call random key
# that the harness reads from stdin before any model code runs and keeps only in a closure:
# model code that prints fake lines, writes to any inherited descriptor, or exits early cannot
# produce a valid line. The code's own output goes to /dev/null.
_RUNNER = r"""
def _punie_main():
    import ast, hashlib, hmac, json, os, sys, traceback
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def make_report(key):
        def report(kind, index, error):
            body = json.dumps({"kind": kind, "index": index, "error": error})
            mac = hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()
            line = (mac + " " + body + "\n").encode("utf-8")
            while line:
                line = line[os.write(out, line):]
        return report

    report = make_report(bytes.fromhex(payload.pop("key")))

    def describe(error):
        where = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<")]
        text = type(error).__name__ + (f": {error}" if str(error) else "")
        if where:
            text += f" ({where[-1].filename} line {where[-1].lineno})"
        return text[:300]

    def left_side(test, namespace):
        node = ast.parse(test).body[0]
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            try:
                value = eval(compile(ast.Expression(node.test.left), "<test>", "eval"), namespace)
            except BaseException:
                return ""
            return f"; {ast.unparse(node.test.left)} is {value!r}"[:200]
        return ""

    namespace = {"__name__": "__solution__"}
    for index, block in payload["blocks"]:
        try:
            exec(compile(block, f"<block {index}>", "exec"), namespace)
            report("block", index, None)
        except BaseException as error:
            report("block", index, describe(error))
    for index, test in enumerate(payload["tests"]):
        try:
            exec(compile(test, f"<test {index}>", "exec"), namespace)
            report("test", index, None)
        except AssertionError as error:
            if str(error):
                report("test", index, describe(error))
            else:
                report("test", index, "AssertionError" + left_side(test, namespace))
        except BaseException as error:
            report("test", index, describe(error))

_punie_main()
"""

MAX_CODE_OUTPUT_BYTES = 1_000_000
"""How much of the runner's output is kept (model code cannot write to it, but may try)."""


@scorer
def assert_python_code(
    response: Response, tests: str | Sequence[str] | None = None, timeout: float = 10.0
) -> tuple[float, dict[str, Any]]:
    """Score Python code in the response: it must parse, and pass ``tests`` when given.

    The code is the ```` ```python ```` blocks, else the untagged ```` ``` ```` blocks, else the
    whole text if it parses. Blocks that do not parse (a REPL transcript, say) are skipped; the
    rest run in order in one namespace, so a later definition replaces an earlier one and helpers
    from other blocks are available. ``tests`` is a str of statements (each top-level statement is
    one test) or a sequence of tests; they run in a fresh interpreter in a temporary directory,
    killed after ``timeout`` seconds, and the score is the fraction that pass.
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
    results, block_errors = _run_tests(blocks, test_list, invalid_tests, timeout)
    details["tests"] = results
    if block_errors:
        details["block_errors"] = block_errors
    failed = [result for result in results if not result["passed"]]
    if failed:
        first = failed[0]
        details["reason"] = (
            f"{len(failed)} of {len(results)} tests failed; first: {first['test']!r}: "
            f"{first['error']}"
        )
    return (len(results) - len(failed)) / len(results), details


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


def _run_tests(
    blocks: list[tuple[int, str]], tests: list[str], invalid: Mapping[int, str], timeout: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``blocks`` then each test in a fresh interpreter; per-test results and block errors."""
    key = secrets.token_bytes(32)
    runnable = [test if index not in invalid else "pass" for index, test in enumerate(tests)]
    payload = json.dumps({"key": key.hex(), "blocks": blocks, "tests": runnable})
    output, timed_out = _run_isolated(payload.encode("utf-8"), timeout)
    test_errors: dict[int, str | None] = {}
    block_errors = []
    for entry in _verified_entries(output, key):
        if entry["kind"] == "test":
            test_errors[entry["index"]] = entry["error"]
        elif entry["error"] is not None:
            block_errors.append(f"block {entry['index']}: {entry['error']}")
    missing = f"timed out after {timeout:g}s" if timed_out else "did not run (the code exited)"
    results = []
    for index, test in enumerate(tests):
        error = invalid.get(index) or test_errors.get(index, missing)
        passed = index not in invalid and index in test_errors and error is None
        results.append({"test": test, "passed": passed, "error": error})
    return results, block_errors


def _verified_entries(output: bytes, key: bytes) -> Iterator[dict[str, Any]]:
    """The runner's verdict lines that carry a valid authentication code; anything else is noise."""
    for line in output.split(b"\n"):
        mac, _, body = line.partition(b" ")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        if not body or not hmac.compare_digest(mac, expected):
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(body)
            if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                yield entry


def _run_isolated(payload: bytes, timeout: float) -> tuple[bytes, bool]:
    """Run the test runner on ``payload`` in the sandbox; its output, and whether it timed out."""

    with tempfile.TemporaryDirectory(prefix="punie-code-") as workdir:
        completed = sandbox.run(
            [sys.executable, "-I", "-c", _RUNNER],
            scratch=Path(workdir),
            timeout=timeout,
            stdin=payload,
            max_output=MAX_CODE_OUTPUT_BYTES,
            merge_stderr=False,
            keep_tail=True,  # the verdicts come last, after anything the code wrote
        )
    return completed.output, completed.timed_out
