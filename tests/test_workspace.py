"""Tests for the sandboxed workspace tools."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.tools import workspace as workspace_module
from pytest_punie.tools.workspace import (
    BUILTIN_TOOLS,
    MAX_READ_CHARS,
    SandboxViolation,
    Workspace,
    create_workspace,
    make_tools,
)

SECRET = "TOP SECRET"


def snapshot(folder: Path, *, skip: Path | None = None) -> dict[str, bytes | str]:
    """Every entry under ``folder`` (except ``skip``): file bytes, or a symlink's target."""
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            entry = here / name
            key = entry.relative_to(folder).as_posix()
            if entry.is_symlink():
                state[key] = "-> " + os.readlink(entry)
            elif entry.is_file():
                state[key] = entry.read_bytes()
            else:
                state[key] = "dir"
    return state


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the workspace holding files the model must never reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    (folder / "nested").mkdir()
    (folder / "nested" / "deep_secret.py").write_text(SECRET)
    return folder


@pytest.fixture
def workspace(tmp_path: Path, outside: Path) -> Workspace:
    root = tmp_path / "ws"
    ws = create_workspace({"a.txt": "alpha\n", "sub/b.txt": "beta", "sub/c.py": "x = 1\n"}, root)
    (root / "empty").mkdir()
    (root / "link_file").symlink_to(outside / "secret.txt")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    (root / "chain2").symlink_to(Path("..") / "outside" / "secret.txt")
    (root / "chain1").symlink_to("chain2")
    (root / "dangling").symlink_to(outside / "not_yet.txt")
    (root / "inner_link").symlink_to("sub", target_is_directory=True)
    (root / "sub" / "up").symlink_to(Path("..") / ".." / "outside", target_is_directory=True)
    return ws


# Each escape is a function of the outside folder, so the absolute case can point at a folder we
# own (a broken sandbox must not be able to clobber /etc/passwd during the test run).
ESCAPES: dict[str, Callable[[Path], str]] = {
    "dotdot": lambda _: "../x",
    "dotdot_to_outside": lambda _: "../outside/secret.txt",
    "nested_dotdot": lambda _: "a/../../x",
    "deep_dotdot": lambda _: "sub/../../outside/secret.txt",
    "absolute": lambda outside: str(outside / "secret.txt"),
    "absolute_dir": lambda outside: str(outside),
    "symlink_file": lambda _: "link_file",
    "symlink_dir": lambda _: "link_dir",
    "through_symlink_dir": lambda _: "link_dir/secret.txt",
    "through_symlink_dir_nested": lambda _: "link_dir/nested/deep_secret.py",
    "symlink_in_subdir": lambda _: "sub/up/secret.txt",
    "symlink_chain": lambda _: "chain1",
    "dangling_symlink": lambda _: "dangling",
    "symlink_then_dotdot": lambda _: "link_dir/../outside/secret.txt",
    "nul_byte": lambda _: "a.txt\x00../../x",
}

PATH_TOOLS: dict[str, Callable[[Workspace, str], str]] = {
    "list_dir": lambda ws, path: ws.list_dir(path),
    "read_file": lambda ws, path: ws.read_file(path),
    "write_file": lambda ws, path: ws.write_file(path, "pwned"),
    "search_files": lambda ws, path: ws.search_files("*", path),
}


@pytest.mark.parametrize("tool", list(PATH_TOOLS))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_escape_is_refused(
    workspace: Workspace, outside: Path, tmp_path: Path, tool: str, escape: str
) -> None:
    path = ESCAPES[escape](outside)
    before = snapshot(tmp_path, skip=workspace.root)

    result = PATH_TOOLS[tool](workspace, path)

    assert result.startswith("refused: "), result
    assert workspace.refusals == [result.removeprefix("refused: ")]
    assert SECRET not in result
    assert snapshot(tmp_path, skip=workspace.root) == before
    assert not (outside / "not_yet.txt").exists()


@pytest.mark.parametrize("tool", ["list_dir", "read_file", "search_files"])
def test_etc_passwd_is_refused(workspace: Workspace, tool: str) -> None:
    result = PATH_TOOLS[tool](workspace, "/etc/passwd")
    assert result.startswith("refused: ")
    assert "root:" not in result
    assert len(workspace.refusals) == 1


def test_refusal_message_names_path_and_reason(workspace: Workspace) -> None:
    assert workspace.read_file("../x") == "refused: '../x': path leaves the workspace"
    assert "absolute" in workspace.read_file("/etc/passwd")
    assert "symlink" in workspace.read_file("link_file")
    assert "NUL" in workspace.read_file("a\x00b")
    assert len(workspace.refusals) == 4
    assert "'link_file'" in workspace.refusals[2]


def test_refusals_accumulate_in_order(workspace: Workspace) -> None:
    workspace.read_file("../one")
    workspace.read_file("a.txt")
    workspace.write_file("../two", "x")
    assert [message.split(":")[0] for message in workspace.refusals] == ["'../one'", "'../two'"]


def test_write_through_escaping_symlink_leaves_target_untouched(
    workspace: Workspace, outside: Path
) -> None:
    assert workspace.write_file("link_file", "pwned").startswith("refused: ")
    assert workspace.write_file("chain1", "pwned").startswith("refused: ")
    assert workspace.write_file("link_dir/new.txt", "pwned").startswith("refused: ")
    assert workspace.write_file("link_dir/newdir/new.txt", "pwned").startswith("refused: ")
    assert workspace.write_file("dangling", "pwned").startswith("refused: ")
    assert (outside / "secret.txt").read_text() == SECRET
    assert not (outside / "new.txt").exists()
    assert not (outside / "newdir").exists()
    assert not (outside / "not_yet.txt").exists()
    assert (workspace.root / "link_file").is_symlink()


def test_search_does_not_follow_symlinked_dirs_out(workspace: Workspace) -> None:
    result = workspace.search_files("*")
    assert "secret" not in result
    assert "link_dir" not in result
    assert "link_file" not in result
    assert "sub/up" not in result
    assert workspace.search_files("**/*secret*") == "no matches"
    assert workspace.search_files("*.py") == "sub/c.py"
    assert workspace.refusals == []


def test_list_dir_does_not_mark_links_as_dirs(workspace: Workspace) -> None:
    names = workspace.list_dir().splitlines()
    assert "link_dir" in names
    assert "link_dir/" not in names
    assert "inner_link" in names  # symlinks are not followed, even those that stay inside
    assert "inner_link/" not in names


def test_symlink_loop_does_not_raise(workspace: Workspace) -> None:
    (workspace.root / "loop_a").symlink_to("loop_b")
    (workspace.root / "loop_b").symlink_to("loop_a")
    result = workspace.read_file("loop_a")
    assert result.startswith(("refused: ", "error: "))


# --- resolve -----------------------------------------------------------------------------------


def test_resolve_inside(workspace: Workspace) -> None:
    root = workspace.root
    assert root.is_absolute()
    assert workspace.resolve(".") == root
    assert workspace.resolve("") == root
    assert workspace.resolve("sub/b.txt") == root / "sub" / "b.txt"
    assert workspace.resolve("sub/../a.txt") == root / "a.txt"
    assert workspace.resolve("./sub//b.txt") == root / "sub" / "b.txt"
    assert workspace.resolve("inner_link/b.txt") == root / "sub" / "b.txt"
    assert workspace.resolve("not/there/yet.txt") == root / "not" / "there" / "yet.txt"


@pytest.mark.parametrize("bad", [None, 3, b"a.txt", Path("a.txt"), ["a.txt"]])
def test_resolve_rejects_non_strings(workspace: Workspace, bad: object) -> None:
    with pytest.raises(SandboxViolation, match="must be a string"):
        workspace.resolve(bad)  # type: ignore[arg-type]


def test_resolve_raises_for_escape(workspace: Workspace) -> None:
    with pytest.raises(SandboxViolation, match=r"'\.\./x': path leaves the workspace"):
        workspace.resolve("../x")
    with pytest.raises(SandboxViolation, match="symlink"):
        workspace.resolve("link_dir/secret.txt")
    assert workspace.refusals == []  # only the tools record refusals


SEGMENTS = st.sampled_from(
    ["..", ".", "", "a.txt", "sub", "b.txt", "x", "inner_link", "link_dir", "link_file", "chain1"]
)


@pytest.fixture(scope="module")
def property_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    base = tmp_path_factory.mktemp("property")
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    ws = create_workspace({"a.txt": "a", "sub/b.txt": "b"}, base / "ws")
    (ws.root / "inner_link").symlink_to("sub", target_is_directory=True)
    (ws.root / "link_dir").symlink_to(base / "outside", target_is_directory=True)
    (ws.root / "link_file").symlink_to(base / "outside" / "secret.txt")
    (ws.root / "chain1").symlink_to("link_file")
    return ws


@given(st.lists(SEGMENTS, max_size=8))
def test_resolve_stays_inside_or_refuses(
    property_workspace: Workspace, segments: list[str]
) -> None:
    ws = property_workspace
    path = "/".join(segments)
    try:
        resolved = ws.resolve(path)
    except SandboxViolation:
        assert (
            ".." in segments
            or {"link_dir", "link_file", "chain1"} & set(segments)
            or (path.startswith("/"))
        )
        return
    assert resolved == ws.root or ws.root in resolved.parents
    assert resolved == Path(os.path.realpath(ws.root / path))


@given(st.text(max_size=30))
def test_resolve_any_text_never_raises_anything_else(
    property_workspace: Workspace, path: str
) -> None:
    ws = property_workspace
    try:
        resolved = ws.resolve(path)
    except SandboxViolation:
        return
    assert resolved == ws.root or ws.root in resolved.parents


# --- the tools, used as intended ---------------------------------------------------------------


def test_list_dir(workspace: Workspace) -> None:
    assert workspace.list_dir("sub") == "b.txt\nc.py\nup"
    assert workspace.list_dir("empty") == "(empty)"
    names = workspace.list_dir().splitlines()
    assert names == sorted(names)
    assert {"a.txt", "sub/", "empty/"} <= set(names)


def test_list_dir_errors(workspace: Workspace) -> None:
    assert workspace.list_dir("a.txt") == "error: not a directory: a.txt"
    assert workspace.list_dir("missing") == "error: no such file: missing"
    assert workspace.refusals == []


def test_read_file(workspace: Workspace) -> None:
    assert workspace.read_file("a.txt") == "alpha\n"
    assert workspace.read_file("./sub/../sub/b.txt") == "beta"


def test_symlinks_inside_are_not_followed_but_named(workspace: Workspace) -> None:
    message = "a symlink on this path is not followed; use the path it points to: "
    assert workspace.read_file("inner_link/b.txt") == f"error: inner_link/b.txt: {message}sub/b.txt"
    assert workspace.list_dir("inner_link") == f"error: inner_link: {message}sub"
    assert workspace.search_files("*", "inner_link") == f"error: inner_link: {message}sub"
    assert workspace.write_file("inner_link/new.txt", "x") == (
        f"error: inner_link/new.txt: {message}sub/new.txt"
    )
    assert not (workspace.root / "sub" / "new.txt").exists()
    assert workspace.refusals == []  # not a refusal: it does not lead outside


def test_read_file_errors(workspace: Workspace) -> None:
    assert workspace.read_file("x.txt") == "error: no such file: x.txt"
    assert workspace.read_file("sub") == "error: is a directory: sub"
    assert workspace.refusals == []


def test_read_file_replaces_bad_utf8(workspace: Workspace) -> None:
    (workspace.root / "bin.dat").write_bytes(b"ok \xff\xfe end")
    assert workspace.read_file("bin.dat") == "ok \ufffd\ufffd end"


def test_read_file_truncates(workspace: Workspace) -> None:
    (workspace.root / "big.txt").write_text("x" * (MAX_READ_CHARS + 10))
    result = workspace.read_file("big.txt")
    assert result.startswith("x" * MAX_READ_CHARS + "\n[truncated")
    assert len(result) < MAX_READ_CHARS + 100
    (workspace.root / "exact.txt").write_text("y" * MAX_READ_CHARS)
    assert workspace.read_file("exact.txt") == "y" * MAX_READ_CHARS


def test_write_file(workspace: Workspace) -> None:
    assert workspace.write_file("new/deep/f.txt", "héllo") == "wrote 6 bytes to new/deep/f.txt"
    assert (workspace.root / "new" / "deep" / "f.txt").read_text(encoding="utf-8") == "héllo"
    assert workspace.write_file("a.txt", "replaced") == "wrote 8 bytes to a.txt"
    assert workspace.read_file("a.txt") == "replaced"
    assert workspace.write_file("a.txt", "") == "wrote 0 bytes to a.txt"
    assert workspace.read_file("a.txt") == ""
    assert workspace.write_file("sub/../sub/c.py", "y = 2\n") == "wrote 6 bytes to sub/../sub/c.py"
    assert (workspace.root / "sub" / "c.py").read_text() == "y = 2\n"
    assert workspace.write_file("sub", "x") == "error: is a directory: sub"
    assert workspace.write_file(".", "x") == "error: is a directory: ."
    assert workspace.refusals == []


def test_search_files(workspace: Workspace) -> None:
    workspace.write_file("src/pkg/mod.py", "")
    workspace.write_file("src/top.py", "")
    workspace.write_file("src/notes.txt", "")
    assert workspace.search_files("*.py").splitlines() == [
        "src/pkg/mod.py",
        "src/top.py",
        "sub/c.py",
    ]
    assert workspace.search_files("**/*.py", "src").splitlines() == ["src/pkg/mod.py", "src/top.py"]
    assert workspace.search_files("*/*.py", "src") == "src/pkg/mod.py"
    assert workspace.search_files("src/*.txt") == "src/notes.txt"
    assert workspace.search_files("m?d.py") == "src/pkg/mod.py"
    assert workspace.search_files("[!a-s]*.txt") == "no matches"
    assert workspace.search_files("[ab].txt").splitlines() == ["a.txt", "sub/b.txt"]
    assert workspace.search_files("pkg") == "src/pkg/"
    assert workspace.search_files("*.rs") == "no matches"
    assert workspace.search_files("*.py", "a.txt") == "error: not a directory: a.txt"
    assert workspace.search_files("*.py", "nope").startswith("error: ")
    assert workspace.refusals == []


def test_run_command(workspace: Workspace) -> None:
    assert workspace.run_command("echo hi; echo oops >&2; exit 3") == "exit code 3\nhi\noops\n"
    assert workspace.run_command("true") == "exit code 0"
    assert workspace.run_command("   ") == "error: empty command"


def test_run_command_runs_in_workspace(workspace: Workspace) -> None:
    assert workspace.run_command("pwd") == f"exit code 0\n{workspace.root}\n"
    assert workspace.run_command('echo "$HOME"') == f"exit code 0\n{workspace.root}\n"
    assert workspace.run_command("cat a.txt") == "exit code 0\nalpha\n"
    workspace.run_command("echo made > made.txt")
    assert (workspace.root / "made.txt").read_text() == "made\n"


def test_run_command_does_not_pass_on_secrets(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUNIE_TEST_API_KEY", "sk-do-not-leak")
    assert "sk-do-not-leak" not in workspace.run_command("env")


@pytest.mark.parametrize("command", ["sleep 5", "sleep 5 & sleep 5", "echo started; sleep 5"])
def test_run_command_timeout_kills_process_group(tmp_path: Path, command: str) -> None:
    ws = create_workspace(None, tmp_path / "ws", command_timeout=0.5)
    start = time.monotonic()
    result = ws.run_command(command)
    assert time.monotonic() - start < 3
    assert result.startswith("timed out after 0.5s")
    if "echo" in command:
        assert "started" in result


def test_run_command_timeout_kills_background_children(tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "ws", command_timeout=0.3)
    result = ws.run_command("(sleep 1; echo late > late.txt) & sleep 5")
    assert result.startswith("timed out after 0.3s")
    time.sleep(1.5)  # long enough for a surviving child to write late.txt
    assert not (ws.root / "late.txt").exists()


def test_tools_never_raise_on_os_errors(workspace: Workspace) -> None:
    assert workspace.write_file("a.txt/child.txt", "x").startswith("error: ")
    assert workspace.read_file("a.txt/child.txt").startswith("error: ")
    assert workspace.run_command("echo a\x00b").startswith("error: ")


# --- create_workspace --------------------------------------------------------------------------


def test_create_workspace_from_folder(tmp_path: Path, outside: Path) -> None:
    fixture = tmp_path / "fixture"
    (fixture / "pkg").mkdir(parents=True)
    (fixture / "pkg" / "m.py").write_text("print(1)\n")
    (fixture / "escape").symlink_to(outside / "secret.txt")
    ws = create_workspace(fixture, tmp_path / "ws")
    assert ws.root == (tmp_path / "ws").resolve()
    assert ws.read_file("pkg/m.py") == "print(1)\n"
    assert (ws.root / "escape").is_symlink()
    assert ws.read_file("escape").startswith("refused: ")
    ws.write_file("pkg/m.py", "changed")
    assert (fixture / "pkg" / "m.py").read_text() == "print(1)\n"


def test_create_workspace_from_mapping(tmp_path: Path) -> None:
    ws = create_workspace({"a.txt": "A", "d/e/f.md": "# F"}, tmp_path / "ws")
    assert ws.read_file("a.txt") == "A"
    assert ws.read_file("d/e/f.md") == "# F"


@pytest.mark.parametrize("key", ["../x.txt", "a/../../x.txt", "/tmp/x.txt", "a\x00b", ".", ""])
def test_create_workspace_mapping_keys_stay_inside(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="workspace file"):
        create_workspace({"ok.txt": "fine", key: "bad"}, tmp_path / "ws")
    assert not (tmp_path / "x.txt").exists()
    assert not (tmp_path / "ws" / "ok.txt").exists()


def test_create_empty_workspace(tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "deep" / "ws", command_timeout=2.5)
    assert ws.root.is_dir()
    assert ws.list_dir() == "(empty)"
    assert ws.command_timeout == 2.5
    assert ws.refusals == []


def test_create_workspace_into_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    fixture = tmp_path / "fixture"
    fixture.mkdir()
    (fixture / "f.txt").write_text("f")
    assert create_workspace(fixture, tmp_path / "ws").read_file("f.txt") == "f"


def test_create_workspace_refuses_non_empty_dest(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "keep.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        create_workspace(None, tmp_path / "ws")
    with pytest.raises(FileExistsError):
        create_workspace({"a": "b"}, tmp_path / "ws")
    assert (tmp_path / "ws" / "keep.txt").read_text() == "keep"


def test_create_workspace_source_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        create_workspace(tmp_path / "missing", tmp_path / "ws")


def test_workspace_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Workspace(tmp_path / "missing")
    with pytest.raises(ValueError, match="command_timeout"):
        Workspace(tmp_path, command_timeout=0)


# --- make_tools and pydantic-ai ----------------------------------------------------------------


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def test_make_tools_names_and_schemas(workspace: Workspace) -> None:
    tools = make_tools(workspace, [*BUILTIN_TOOLS, word_count])
    definitions = {tool.name: tool.tool_def for tool in tools}
    assert list(definitions) == [*BUILTIN_TOOLS, "word_count"]

    def properties(name: str) -> dict[str, str]:
        schema = definitions[name].parameters_json_schema
        return {key: value["type"] for key, value in schema["properties"].items()}

    assert properties("list_dir") == {"path": "string"}
    assert properties("read_file") == {"path": "string"}
    assert properties("write_file") == {"path": "string", "content": "string"}
    assert properties("search_files") == {"pattern": "string", "path": "string"}
    assert properties("run_command") == {"command": "string"}
    assert properties("word_count") == {"text": "string"}
    assert definitions["read_file"].parameters_json_schema["required"] == ["path"]
    assert "required" not in definitions["list_dir"].parameters_json_schema
    for name in BUILTIN_TOOLS:
        description = definitions[name].description
        assert description
        assert "\n" not in description
        assert "Args" not in description
        path_schema = definitions[name].parameters_json_schema["properties"].get("path")
        if path_schema is not None:
            assert "relative to the workspace root" in path_schema["description"]
    assert definitions["word_count"].description == "Count the words in a text."


def test_make_tools_rejects_unknown_names(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="unknown workspace tool 'delete_file'") as info:
        make_tools(workspace, ["read_file", "delete_file"])
    for name in BUILTIN_TOOLS:
        assert name in str(info.value)


def test_make_tools_rejects_duplicates(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="duplicate tool names: read_file"):
        make_tools(workspace, ["read_file", "read_file"])


def test_make_tools_rejects_other_objects(workspace: Workspace) -> None:
    with pytest.raises(TypeError, match="name or a callable"):
        make_tools(workspace, [42])  # type: ignore[list-item]


def test_agent_gets_refusal_as_tool_result(workspace: Workspace, tmp_path: Path) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    (tmp_path / "secret").write_text(SECRET)
    seen_tools: list[list[str]] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen_tools.append([tool.name for tool in info.function_tools])
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("read_file", {"path": "../secret"})])
        return ModelResponse(parts=[TextPart(f"the tool said: {returns[0].content}")])

    agent = Agent(FunctionModel(model), tools=make_tools(workspace, ["read_file", "list_dir"]))
    result = agent.run_sync("Read ../secret please.")

    assert seen_tools == [["read_file", "list_dir"]] * 2
    assert result.output == "the tool said: refused: '../secret': path leaves the workspace"
    assert workspace.refusals == ["'../secret': path leaves the workspace"]
    assert SECRET not in repr(result.all_messages())


def test_agent_uses_tools_on_workspace(workspace: Workspace) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if not returns:
            return ModelResponse(
                parts=[
                    ToolCallPart("write_file", {"path": "out/answer.txt", "content": "42"}),
                    ToolCallPart("word_count", {"text": "one two three"}),
                ]
            )
        return ModelResponse(parts=[TextPart(" | ".join(str(part.content) for part in returns))])

    agent = Agent(FunctionModel(model), tools=make_tools(workspace, ["write_file", word_count]))
    result = agent.run_sync("Write the answer.")

    assert result.output == "wrote 2 bytes to out/answer.txt | 3"
    assert (workspace.root / "out" / "answer.txt").read_text() == "42"
    assert workspace.refusals == []


# --- Opening beneath the root, whatever happens meanwhile ------------------------------------

OPENERS = ["openat2", "walk"]


@pytest.fixture(params=OPENERS)
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with openat2(2) (where the kernel has it) and with the component walk."""
    if request.param == "openat2":
        if workspace_module._openat2() is None:
            pytest.skip("openat2 is not available here")
    else:
        monkeypatch.setattr(workspace_module, "_openat2", lambda: None)
    return str(request.param)


@pytest.mark.parametrize("tool", list(PATH_TOOLS))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_escape_is_refused_by_each_opener(
    opener: str, workspace: Workspace, outside: Path, tmp_path: Path, tool: str, escape: str
) -> None:
    before = snapshot(tmp_path, skip=workspace.root)
    result = PATH_TOOLS[tool](workspace, ESCAPES[escape](outside))
    assert result.startswith("refused: "), result
    assert SECRET not in result
    assert snapshot(tmp_path, skip=workspace.root) == before


def test_open_beneath_follows_no_symlink(opener: str, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("f")
    (tmp_path / "link").symlink_to("d", target_is_directory=True)
    (tmp_path / "flink").symlink_to("d/f.txt")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = workspace_module._open_beneath(root, ["d", "f.txt"], os.O_RDONLY)
        assert os.read(fd, 10) == b"f"
        os.close(fd)
        for names in (["link", "f.txt"], ["flink"]):
            with pytest.raises(OSError, match=r"symbolic links|Not a directory") as info:
                workspace_module._open_beneath(root, names, os.O_RDONLY)
            assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(root)


def test_openat2_where_the_kernel_has_it() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("openat2 is Linux's")
    if workspace_module._openat2() is None:
        pytest.skip("openat2 is hidden here (kernel before 5.6, or a seccomp filter)")
    openat2 = workspace_module._openat2()
    assert openat2 is not None
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="cross-device") as info:
            openat2(here, "../x", os.O_RDONLY)
    finally:
        os.close(here)
    assert info.value.errno == errno.EXDEV  # RESOLVE_BENEATH


# A process that keeps swapping the folder "sw" of the workspace with a symlink to the outside
# folder: renameat2(RENAME_EXCHANGE) where libc has it (the name is never missing), else a
# symlink retargeted between the real folder and the outside one (os.replace is atomic).
SWAPPER = r"""
import ctypes, os, sys, time
root, outside, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.chdir(root)
libc = ctypes.CDLL(None, use_errno=True)
exchange = getattr(libc, "renameat2", None) if sys.platform.startswith("linux") else None
if exchange is not None:
    os.symlink(outside, "evil")
else:
    os.rename("sw", "real")
    os.symlink("real", "sw")
sys.stdout.write("ready\n")
sys.stdout.flush()
end = time.monotonic() + seconds
flips = 0
while time.monotonic() < end:
    if exchange is not None:
        if exchange(-100, b"sw", -100, b"evil", 2) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")
    else:
        os.symlink(outside if flips % 2 == 0 else "real", "sw.new")
        os.replace("sw.new", "sw")
    flips += 1
print(flips)
"""


def test_no_escape_while_a_folder_is_swapped_for_a_symlink(opener: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text(SECRET)
    ws = create_workspace({"sw/f.txt": "inside"}, tmp_path / "ws")
    before = snapshot(outside)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(ws.root), str(outside), "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None
    assert swapper.stdout.readline() == "ready\n"
    calls = escapes = succeeded = 0
    try:
        end = time.monotonic() + 8
        while time.monotonic() < end and calls < 12_000:
            result = ws.read_file("sw/f.txt")
            written = ws.write_file("sw/f.txt" if calls % 4 else "sw/made/g.txt", "PWNED")
            calls += 2
            escapes += SECRET in result
            succeeded += (result in ("inside", "PWNED")) + written.startswith("wrote")
    finally:
        swapper.terminate()
        swapper.communicate()
    assert escapes == 0
    assert snapshot(outside) == before  # nothing written, made or replaced outside
    assert calls >= 1_000, calls
    print(f"{opener}: {calls} calls, {succeeded} succeeded, {escapes} escapes")


def test_the_root_replaced_is_refused(tmp_path: Path) -> None:
    ws = create_workspace({"a.txt": "A"}, tmp_path / "ws")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text(SECRET)
    ws.root.rename(tmp_path / "moved")
    (tmp_path / "other").rename(ws.root)
    assert ws.read_file("a.txt") == "refused: the workspace folder was moved or replaced"
    assert ws.refusals == ["the workspace folder was moved or replaced"]


# --- Only regular files --------------------------------------------------------------------


def answer_within(seconds: float, call: Callable[[], str]) -> str | None:
    """The tool's answer, or None if it did not answer in time (it blocked)."""
    answers: list[str] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return answers[0] if answers else None


def test_fifo_is_refused_promptly(opener: str, tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "ws")
    os.mkfifo(ws.root / "pipe")
    try:
        assert answer_within(5, lambda: ws.write_file("pipe", "x")) == (
            "error: not a regular file: pipe"
        )
        assert answer_within(5, lambda: ws.read_file("pipe")) == "error: not a regular file: pipe"
        # With a reader waiting on it the write opens, and is refused before anything is written.
        reader = os.open(ws.root / "pipe", os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert answer_within(5, lambda: ws.write_file("pipe", "x")) == (
                "error: not a regular file: pipe"
            )
            assert os.read(reader, 10) == b""  # no writer left, and nothing written
        finally:
            os.close(reader)
    finally:  # unblock an old open() so its thread can end
        for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
            with contextlib.suppress(OSError):
                os.close(os.open(ws.root / "pipe", flags))
    assert stat.S_ISFIFO(os.lstat(ws.root / "pipe").st_mode)


def test_socket_is_refused(tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "ws")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(ws.root / "sock"))
        assert ws.read_file("sock") == "error: not a regular file: sock"
        assert ws.write_file("sock", "x") == "error: not a regular file: sock"
    finally:
        server.close()


def test_device_is_refused(tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "ws")
    try:
        os.mknod(ws.root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("cannot make a device node here")
    assert ws.read_file("null") == "error: not a regular file: null"
    assert ws.write_file("null", "x") == "error: not a regular file: null"


def test_write_replaces_a_longer_file_whole(tmp_path: Path) -> None:
    ws = create_workspace({"a.txt": "a long first version\n"}, tmp_path / "ws")
    inode = (ws.root / "a.txt").stat().st_ino
    assert ws.write_file("a.txt", "short") == "wrote 5 bytes to a.txt"
    assert (ws.root / "a.txt").read_text() == "short"
    assert (ws.root / "a.txt").stat().st_ino == inode  # the same file, truncated after the check


def test_read_is_bounded(tmp_path: Path) -> None:
    ws = create_workspace(None, tmp_path / "ws")
    with open(ws.root / "huge.bin", "wb") as stream:
        stream.truncate(1 << 40)  # a sparse terabyte
    result = ws.read_file("huge.bin")
    assert result.endswith(f"[truncated: showing the first {MAX_READ_CHARS} characters]")


def test_search_does_not_enter_a_folder_swapped_for_a_link(tmp_path: Path, outside: Path) -> None:
    ws = create_workspace({"d/x.py": ""}, tmp_path / "ws")
    (ws.root / "e").symlink_to(outside, target_is_directory=True)
    assert ws.search_files("*.py") == "d/x.py"
    assert "secret" not in ws.search_files("*")


# --- run_command and the sandbox ----------------------------------------------------------


def test_run_command_lets_an_unavailable_sandbox_error_the_case(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_punie.system import sandbox

    def unavailable(*args: object, **kwargs: object) -> None:
        raise sandbox.SandboxUnavailable("no isolation can confine model commands here")

    monkeypatch.setattr(sandbox, "run", unavailable)
    with pytest.raises(sandbox.SandboxUnavailable, match="no isolation can confine"):
        workspace.run_command("echo hi")
    assert workspace.refusals == []


# --- One tool call at a time ---------------------------------------------------------------


def test_tool_calls_of_one_response_run_one_at_a_time(workspace: Workspace) -> None:
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from pytest_punie.conversation.agent import make_agent

    spans: list[tuple[str, float, float]] = []

    def slow_note(tag: str) -> str:
        """Wait a moment and note when."""
        start = time.monotonic()
        time.sleep(0.3)
        spans.append((tag, start, time.monotonic()))
        return tag

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answered = any(
            isinstance(part, ToolReturnPart)
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
        )
        if answered:
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[
                ToolCallPart("slow_note", {"tag": "first"}),
                ToolCallPart("write_file", {"path": "w.txt", "content": "x"}),
                ToolCallPart("slow_note", {"tag": "second"}),
            ]
        )

    agent = make_agent(FunctionModel(model), ["write_file", slow_note], workspace)
    assert agent.run_sync("go").output == "done"
    assert [tag for tag, _, _ in spans] == ["first", "second"]
    (_, _, first_end), (_, second_start, _) = spans
    assert second_start >= first_end


def test_run_command_finds_the_system_tools_whatever_the_callers_path(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A PATH of folders the sandbox does not show (links in a temporary folder, as a CI job or
    a fresh machine's checker makes) still leaves the command its shell tools."""
    links = tmp_path / "bin"
    links.mkdir()
    for tool in ("sh", "cat", "head", "sleep"):
        if found := shutil.which(tool):
            (links / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(links))
    assert workspace.run_command("cat a.txt | head -1") == "exit code 0\nalpha\n"
