"""A dataset's test split as eval cases: how the adapter does on lines it never trained on.

A training line in mlx_lm's chat format becomes one line of an ``eval_*.jsonl`` case file (see
:mod:`pytest_punie.cases.files`): its last user turn is the prompt, the turns before it are the
conversation so far, its tools are the tools the model sees, and what the reference assistant did
after the prompt is what the case expects: every tool call it made (with the tool turns' contents
as the tools' answers), or no tool call when it answered in words. The tool-calling recipe's test
split calls only tools kept out of training, so these cases measure whether the adapter learned
the format and the choice, not a list of tools.

A recipe's **selection suite** (``write_selection_suite``) is made the same way from its valid
split, with prompts of its own that need no tool (code with asserts, sums): the cases its
checkpoints are chosen by, none of which the eval suite or the test split holds, so the choice
does not flatter the figures that later judge the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_punie.finetune.datasets import arguments_object, write_jsonl
from pytest_punie.finetune.distill import BasePrompt
from pytest_punie.system.files import atomic_write_text

__all__ = [
    "CATEGORY",
    "SELECTION_LINES",
    "case_line",
    "write_case_file",
    "write_selection_suite",
]

CATEGORY = "held_out"
SELECTION_LINES = 20  # valid lines in a selection suite: about half its cases, the prompts the rest


def case_line(data: Mapping[str, Any], number: int) -> dict[str, Any] | None:
    """The case for one training line, or None when it has nothing to check (no user turn, or
    no assistant turn after the last one)."""
    messages = data.get("messages")
    if not isinstance(messages, list):
        return None
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    prompt = users[-1]
    after = [m for m in messages[prompt + 1 :] if isinstance(m, dict)]
    replies = [m for m in after if m.get("role") == "assistant"]
    if not replies:
        return None
    calls = [
        {
            "name": call["function"]["name"],
            "arguments": arguments_object(call["function"].get("arguments", {})),
        }
        for reply in replies
        for call in reply.get("tool_calls") or []
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]
    results: dict[str, Any] = {}
    for message in after:
        if message.get("role") == "tool" and message.get("name"):
            results.setdefault(str(message["name"]), message.get("content", ""))
    line: dict[str, Any] = {
        "id": f"line-{number}",
        "category": CATEGORY,
        "messages": messages[: prompt + 1],
        "expected": {"tool_calls": calls} if calls else {"no_tool_call": True},
    }
    if data.get("tools"):
        line["tools"] = data["tools"]
    if results:
        line["tool_results"] = results
    return line


def write_case_file(lines: Iterable[Mapping[str, Any]], path: Path | str) -> int:
    """Write the cases of ``lines`` (parsed training lines) to ``path``; return how many."""
    cases = [c for n, data in enumerate(lines, start=1) if (c := case_line(data, n)) is not None]
    atomic_write_text(Path(path), "".join(json.dumps(c) + "\n" for c in cases))
    return len(cases)


def write_selection_suite(
    valid: Iterable[Mapping[str, Any]],
    prompts: Sequence[BasePrompt],
    folder: Path | str,
    *,
    lines: int = SELECTION_LINES,
) -> int:
    """Write a selection suite to ``folder``: the first ``lines`` of the ``valid`` split's lines
    (parsed training lines) as ``eval_valid_split.jsonl`` (category ``held_out``) and
    ``prompts`` as ``eval_selection_prompts.jsonl`` (category ``held_out_<kind>``). Return how
    many cases it holds; ``ValueError`` when the valid lines give none."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = write_case_file(list(valid)[:lines], folder / "eval_valid_split.jsonl")
    if not cases:
        raise ValueError("the valid split has no line to make a selection case of")
    rows = [{**p.case_line(), "category": f"{CATEGORY}_{p.kind}"} for p in prompts]
    return cases + write_jsonl(folder / "eval_selection_prompts.jsonl", rows)
