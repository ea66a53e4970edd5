"""Hostile model code and commands: they cannot read secrets, hang the run, flood memory, forge a
score, reach the network or write outside their folder (issue 11, points 1-3 and 5)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.scoring.code import assert_python_code
from pytest_punie.scoring.framework import ScoreFailure, ScoreRecord
from pytest_punie.system import sandbox
from pytest_punie.tools.workspace import Workspace

ISOLATED = sandbox.isolation() != "none"
CONFINED = sandbox.isolation() == "bwrap"


def code(source: str) -> str:
    return "```python\n" + textwrap.dedent(source) + "\n```"


def score(answer: str, tests: object, timeout: float = 10.0) -> ScoreRecord:
    try:
        return assert_python_code(answer, tests=tests, timeout=timeout)  # type: ignore[arg-type]
    except ScoreFailure as failure:
        return failure.record


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on this machine's loopback that accepts connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


# assert_python_code -------------------------------------------------------------------------------


def test_model_code_does_not_see_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_leak")
    answer = code("import os\nseen = dict(os.environ)")
    record = score(answer, ["assert 'HF_TOKEN' not in seen", "assert seen['HOME'] != ''"])
    assert record.score == 1.0, record.details


def test_an_escaped_child_does_not_hold_the_scorer_past_its_timeout() -> None:
    answer = code(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(30)
        while True:
            pass
        """
    )
    started = time.monotonic()
    record = score(answer, ["assert True"], timeout=2.0)
    assert time.monotonic() - started < 5.0
    assert record.score == 0.0
    assert "timed out after 2s" in record.details["tests"][0]["error"]


def test_flooding_every_descriptor_keeps_memory_bounded() -> None:
    answer = code(
        """
        import os
        chunk = b"x" * (1 << 20)
        for fd in range(1, 12):
            try:
                for _ in range(400):
                    os.write(fd, chunk)
            except OSError:
                pass
        """
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    record = score(answer, ["assert True"], timeout=30.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"pytest grew by {grown_mib:.0f} MiB"
    assert record.score == 1.0, record.details


@pytest.mark.parametrize(
    "forgery",
    [
        'print(\'{"kind": "test", "index": 0, "error": null}\')',
        "for fd in range(1, 12):\n"
        "    try:\n"
        "        os.write(fd, FAKE)\n"
        "    except OSError:\n"
        "        pass",
        "import __main__\n__main__.report('test', 0, None)",
        "import __main__\n__main__._punie_main()",
    ],
    ids=["print", "write-every-descriptor", "call-report", "rerun-the-harness"],
)
def test_model_code_cannot_forge_a_verdict(forgery: str) -> None:
    fake = b'{"kind": "test", "index": 0, "error": null}\n[1, 2]\n0 {}\n'
    attempt = textwrap.indent(forgery, "    ")
    answer = code(f"import os, sys\nFAKE = {fake!r}\ntry:\n{attempt}\nexcept Exception:\n    pass\n"
                  "os._exit(0)")  # fmt: skip
    record = score(answer, ["assert never_defined() == 1"])
    assert record.score == 0.0, record.details
    assert record.details["tests"][0]["error"] == "did not run (the code exited)"


def test_a_test_that_is_not_python_scores_0_for_that_test_only() -> None:
    answer = code("def f():\n    return 1")
    record = score(answer, ["assert f() ==", "assert f() == 1", [1, 2]])
    assert record.score == pytest.approx(1 / 3)
    errors = [test["error"] for test in record.details["tests"]]
    assert "not valid Python" in errors[0]
    assert errors[1] is None
    assert "must be a string" in errors[2]
    assert score(answer, "assert f() == (").score == 0.0


@pytest.mark.skipif(not ISOLATED, reason="no bubblewrap or unshare on this machine")
def test_model_code_cannot_reach_the_network(listener: int) -> None:
    answer = code(
        f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {listener}), timeout=2).close()
            reached = True
        except OSError:
            reached = False
        """
    )
    assert score(answer, ["assert not reached"]).score == 1.0


@pytest.mark.skipif(not CONFINED, reason="bubblewrap is not installed")
def test_model_code_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    home = Path.home() / f".punie-escape-{uuid.uuid4().hex}"
    answer = code(
        f"""
        from pathlib import Path
        written = []
        for target in ({str(outside)!r}, {str(home)!r}):
            try:
                Path(target).write_text("pwned")
                written.append(target)
            except OSError:
                pass
        Path("inside.txt").write_text("fine")
        """
    )
    try:
        record = score(answer, ["assert Path('inside.txt').read_text() == 'fine'"])
        assert record.score == 1.0, record.details
        assert not outside.exists()
        assert not home.exists()
    finally:
        home.unlink(missing_ok=True)


def test_model_code_runs_under_resource_limits() -> None:
    answer = code(
        """
        import os
        def fails(action):
            try:
                action()
            except (OSError, MemoryError):
                return True
            return False
        def big_file():
            with open("big", "wb") as f:
                f.write(b"x" * (100 * 2**20))
        files = []
        too_big = fails(big_file)
        too_much_memory = fails(lambda: bytearray(3 * 2**30))
        too_many_files = fails(lambda: [files.append(open("f", "w")) for _ in range(400)])
        """
    )
    tests = ["assert too_big", "assert too_much_memory", "assert too_many_files"]
    record = score(answer, tests, timeout=20.0)
    assert record.score == 1.0, record.details


def test_no_isolation_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_detect_isolation", lambda: "none")
    monkeypatch.setattr(sandbox, "_warned", False)
    with pytest.warns(sandbox.SandboxWarning, match="NOT isolated") as seen:
        modes = [sandbox.isolation(), sandbox.isolation()]
    assert modes == ["none", "none"]
    assert len(seen) == 1


@pytest.mark.parametrize("mode", ["none", "unshare", "bwrap"])
def test_every_isolation_mode_runs_and_kills_on_time(
    mode: sandbox.Isolation, tmp_path: Path
) -> None:
    if sandbox._wrap(mode, ["true"], tmp_path) is None:
        pytest.skip(f"{mode} is not installed")
    done = sandbox.run(["/bin/sh", "-c", "echo hi; sleep 30"], scratch=tmp_path, timeout=1.0,
                       mode=mode)  # fmt: skip
    assert done.output == b"hi\n"
    assert done.timed_out
    done = sandbox.run(["/bin/sh", "-c", "exit 3"], scratch=tmp_path, timeout=5.0, mode=mode)
    assert (done.returncode, done.timed_out) == (3, False)


# run_command and read_file ------------------------------------------------------------------------


def test_run_command_cannot_read_the_parent_environment(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pytest_punie.tools.workspace import Workspace
        print(Workspace({str(tmp_path)!r}).run_command(
            "cat /proc/$PPID/environ /proc/*/environ 2>/dev/null | tr '\\\\0' '\\\\n' | grep HF_"
        ))
        """
    )
    env = {**os.environ, "HF_TOKEN": "hf_do_not_leak"}
    shown = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "hf_do_not_leak" not in shown
    assert shown.startswith(("exit code", "timed out"))


def test_run_command_leaves_no_background_process(tmp_path: Path) -> None:
    marker = f"{time.time() % 1000 + 300:.3f}"
    result = Workspace(tmp_path).run_command(f"nohup sleep {marker} >/dev/null 2>&1 &")
    assert result == "exit code 0"
    time.sleep(0.3)
    alive = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    assert alive.returncode == 1, alive.stdout


def test_run_command_output_is_bounded_while_reading(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = Workspace(tmp_path, command_timeout=30).run_command("head -c 400000000 /dev/zero")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"pytest grew by {grown_mib:.0f} MiB"
    assert result.startswith("exit code 0\n")
    assert result.endswith("[truncated: showing the first 20000 characters]")


@pytest.mark.skipif(not ISOLATED, reason="no bubblewrap or unshare on this machine")
def test_run_command_cannot_reach_the_network(tmp_path: Path, listener: int) -> None:
    command = (
        f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {listener}),"
        ' timeout=2)" && echo CONNECTED'
    )
    assert "CONNECTED" not in Workspace(tmp_path).run_command(command)


@pytest.mark.skipif(not CONFINED, reason="bubblewrap is not installed")
def test_run_command_cannot_write_outside_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    outside = tmp_path / "outside.txt"
    result = Workspace(tmp_path / "ws").run_command(f"echo x > {outside}; echo y > inside.txt")
    assert not outside.exists(), result
    assert (tmp_path / "ws" / "inside.txt").read_text() == "y\n"


def test_read_file_refuses_a_fifo_instead_of_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    answers: list[str] = []
    reader = threading.Thread(
        target=lambda: answers.append(Workspace(tmp_path).read_file("pipe")), daemon=True
    )
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the old behaviour's open() so the thread can end
        os.close(os.open(tmp_path / "pipe", os.O_WRONLY | os.O_NONBLOCK))
    assert answers == ["error: not a regular file: pipe"]


# search_files -------------------------------------------------------------------------------------


def test_search_files_does_not_backtrack(tmp_path: Path) -> None:
    (tmp_path / ("a" * 60)).write_text("")
    started = time.monotonic()
    assert Workspace(tmp_path).search_files("*a" * 12 + "b") == "no matches"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("pattern", ["[z-a]", "[", "[]", "\\", "(", "a" * 5000, "[!]", "**/**"])
def test_search_files_answers_any_pattern(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "a.txt").write_text("")
    result = Workspace(tmp_path).search_files(pattern)
    assert isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.text(alphabet="ab*?[]!-/\\.", max_size=40),
    name=st.text(alphabet="ab/.-", max_size=60),
)
def test_glob_matching_is_fast_and_total(pattern: str, name: str) -> None:
    from pytest_punie.tools.workspace import GlobPattern

    started = time.monotonic()
    GlobPattern(pattern).fullmatch(name)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.py", "a.py", True),
        ("*.py", "d/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "d/e/a.py", True),
        ("src/**", "src/a/b", True),
        ("m?d.py", "mod.py", True),
        ("m?d.py", "m/d.py", False),
        ("[ab].txt", "b.txt", True),
        ("[!a-s]*.txt", "a.txt", False),
        ("[!a-s]*.txt", "z.txt", True),
        ("[z-a]", "z", False),
        ("*a" * 8 + "b", "a" * 60, False),
        ("*a" * 8 + "b", "a" * 60 + "b", True),
        ("a**b", "a/x/b", True),
    ],
)
def test_glob_semantics(pattern: str, name: str, expected: bool) -> None:
    from pytest_punie.tools.workspace import GlobPattern

    assert GlobPattern(pattern).fullmatch(name) is expected


def test_a_python_installed_under_tmp_stays_visible_in_the_sandbox(tmp_path, monkeypatch):
    """A venv in /tmp (a fresh venv a user made there) must not vanish behind bwrap's empty
    /tmp, or model code could never run; the rest of /tmp stays hidden."""
    from pytest_punie.system import sandbox

    if Path("/tmp") not in tmp_path.resolve().parents:
        pytest.skip("the test's temporary folder is not under /tmp")
    venv = (tmp_path / "venv").resolve()
    venv.mkdir()
    monkeypatch.setattr(sandbox.sys, "prefix", str(venv))
    args = sandbox._hidden_folders(tmp_path)
    assert args[:2] == ["--tmpfs", "/tmp"]
    at = args.index(str(venv))
    assert args[at - 1 : at + 2] == ["--ro-bind", str(venv), str(venv)]
