"""An eval case: what the ``punie`` marker of a test says about it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "REPEAT_ID",
    "Case",
    "CaseError",
    "case_from_marker",
    "case_tool_schemas",
]
from pytest_punie.tools.workspace import Workspace, make_tools

MARKER = "punie"
REPEAT_ID = "repeat"  # ids of repeated cases end in repeat0, repeat1, ...
MARKER_HELP = (
    "punie(category='general', prompt=None, tools=(), workspace=None, system_prompt=None, "
    "reference=None): "
    "an eval case in a category; with a prompt, the plugin runs the conversation concurrently "
    "with other cases and the test receives it as the punie_result fixture."
)


class CaseError(ValueError):
    """A ``punie`` marker that cannot describe a case."""


@dataclass(frozen=True)
class Case:
    """One eval case: its test id, category, prompt, tools and starting workspace."""

    nodeid: str
    category: str = "general"
    prompt: str | None = None
    tools: tuple[str | Callable[..., Any], ...] = ()
    workspace: Path | Mapping[str, str] | None = None
    system_prompt: str | None = None
    repeat: int = 0  # which run of the case, with --punie-repeat
    variant: str | None = None  # which model it runs on, with --punie-parity (adapter, fused...)
    # a data-file case (``eval_*.jsonl``): earlier turns, tool schemas, expectations, origin
    history: tuple[dict[str, Any], ...] = ()  # mlx_lm chat messages before the prompt
    tool_schemas: tuple[dict[str, Any], ...] = ()  # the tools as the model sees them
    expected: Mapping[str, Any] | None = None
    source: str | None = None  # path:line

    def message_history(self) -> list[Any] | None:
        """The earlier turns as pydantic-ai messages (None: the conversation starts here)."""
        if not self.history:
            return None
        from pytest_punie.cases.files import to_model_messages  # lazy: files imports this module

        return to_model_messages(self.history)

    reference: str | None = None  # a good answer, shown to the judge (assert_judge)

    @property
    def case_id(self) -> str:
        """The test id without the repeat's and the variant's parts: the same for every repeat
        of a case and every model it runs on (the variant's is the last part: added last)."""
        if not self.nodeid.endswith("]") or "[" not in self.nodeid:
            return self.nodeid
        head, _, ids = self.nodeid[:-1].partition("[")
        parts = ids.split("-")
        if self.variant is not None and parts[-1] == self.variant:
            parts.pop()
        parts = [p for p in parts if not re.fullmatch(rf"{REPEAT_ID}\d+", p)]
        return f"{head}[{'-'.join(parts)}]" if parts else head

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(
            t
            if isinstance(t, str)
            else str(getattr(t, "name", None) or getattr(t, "__name__", "tool"))
            for t in self.tools
        )


def case_from_marker(
    nodeid: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    test_dir: Path,
    repeat: int = 0,
    variant: str | None = None,
) -> Case:
    """Build a ``Case`` from a marker's arguments; relative workspaces are next to the test."""
    kwargs = dict(kwargs)
    if args:
        if len(args) > 1 or "category" in kwargs:
            raise CaseError(f"{nodeid}: punie() takes the category as its only positional argument")
        kwargs["category"] = args[0]
    known = {"category", "prompt", "tools", "workspace", "system_prompt", "reference"}
    unknown = set(kwargs) - known
    if unknown:
        raise CaseError(f"{nodeid}: punie() got unknown arguments {sorted(unknown)}")
    category = kwargs.get("category", "general")
    if not isinstance(category, str) or not category.strip():
        raise CaseError(f"{nodeid}: punie(category=...) must be a non-empty string")
    prompt = kwargs.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise CaseError(f"{nodeid}: punie(prompt=...) must be a non-empty string")
    tools = kwargs.get("tools") or ()
    if isinstance(tools, str) or not isinstance(tools, Sequence):
        raise CaseError(f"{nodeid}: punie(tools=...) must be a list of tool names or functions")
    for tool in tools:
        if not (isinstance(tool, str) or callable(tool)):
            raise CaseError(f"{nodeid}: tool {tool!r} is neither a name nor a function")
    reference = kwargs.get("reference")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        raise CaseError(f"{nodeid}: punie(reference=...) must be a non-empty string")
    workspace = kwargs.get("workspace")
    if isinstance(workspace, (str, Path)):
        workspace = (test_dir / workspace).resolve()
        if not workspace.is_dir():
            raise CaseError(f"{nodeid}: workspace folder {workspace} does not exist")
    elif workspace is not None and not isinstance(workspace, Mapping):
        raise CaseError(f"{nodeid}: punie(workspace=...) must be a folder or a {{path: text}} dict")
    return Case(
        nodeid=nodeid,
        category=category.strip(),
        prompt=prompt,
        tools=tuple(tools),
        workspace=workspace,
        system_prompt=kwargs.get("system_prompt"),
        repeat=repeat,
        variant=variant,
        reference=reference,
    )


def case_tool_schemas(case: Case) -> tuple[dict[str, Any], ...]:
    """The tools a case's model sees, in mlx_lm's ``tools`` format (for results and export)."""
    if case.tool_schemas or not case.tools:
        return case.tool_schemas
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as folder:
            built = make_tools(Workspace(Path(folder)), case.tools)
    except (ValueError, TypeError, OSError):
        return ()
    return tuple(
        {
            "type": "function",
            "function": {
                "name": tool.tool_def.name,
                "description": tool.tool_def.description or "",
                "parameters": tool.tool_def.parameters_json_schema,
            },
        }
        for tool in built
    )
