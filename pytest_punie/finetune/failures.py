"""Failed eval cases back into training data: ``punie export-failures RESULTS.json --out DIR``.

Each failed case becomes one line in mlx_lm's chat/tools format: the conversation up to the
prompt (system prompt, earlier turns, the prompt), the tools the model saw, and the answer the
case expects when it states one (a number, or the tool calls to make). Lines without a stated
answer end with the prompt, for a person to write the answer. Where each line came from (run id,
case id, category, why it failed, the model's answer) goes to the ``*.provenance.jsonl``
sidecar, which mlx_lm never reads. Existing output files are never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_punie.conversation.transcript import transcript
from pytest_punie.finetune.datasets import provenance_path, write_jsonl
from pytest_punie.results.document import RunDocument, load_run
from pytest_punie.results.run import CaseResult

__all__ = ["ExportError", "export_failures", "failure_lines", "transcript_to_chat"]

OUTPUT_NAME = "failures.jsonl"


class ExportError(Exception):
    """The export cannot be written; the message says why."""


def transcript_to_chat(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic-ai messages (as the results JSON holds them) in mlx_lm's chat format."""
    chat: list[dict[str, Any]] = []
    for message in transcript(messages):
        if message.kind == "request":
            for part in message.parts:
                if part.kind == "system-prompt":
                    chat.append({"role": "system", "content": str(part.content or "")})
                elif part.kind == "user-prompt":
                    chat.append({"role": "user", "content": _text(part.content)})
                elif part.kind in ("tool-return", "retry-prompt"):
                    chat.append({"role": "tool", "content": _text(part.content)})
            continue
        text = "".join(str(p.content or "") for p in message.parts if p.kind == "text")
        calls = [_call(p.tool_name, p.args) for p in message.parts if p.kind == "tool-call"]
        turn: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            turn["tool_calls"] = calls
        chat.append(turn)
    return chat


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False, default=str)


def _call(name: Any, arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    return {"type": "function", "function": {"name": str(name), "arguments": arguments or {}}}


def _prompt_turns(case: CaseResult) -> list[dict[str, Any]]:
    """The conversation up to and including the prompt (the first user turn that is it)."""
    prompt = case.prompt
    transcript = transcript_to_chat((case.response or {}).get("messages") or [])
    for index, turn in enumerate(transcript):
        if turn["role"] == "user" and (prompt is None or turn["content"] == prompt):
            return transcript[: index + 1]
    return [{"role": "user", "content": prompt}] if prompt else []


def _expected_answer(case: CaseResult) -> dict[str, Any] | None:
    """The assistant turn the case expects, when it states one."""
    expected = dict(case.expected or {})
    for record in case.records:  # a Python case states it to its scorers
        details = record.details
        if record.scorer == "assert_number" and "expected" in details:
            expected.setdefault("number", details["expected"])
        elif record.scorer == "assert_tool_called" and details.get("expected"):
            expected.setdefault("tool_calls", [details["expected"]])
        elif record.scorer == "assert_tool_calls" and details.get("expected"):
            expected.setdefault("tool_calls", details["expected"])
    if expected.get("tool_calls"):
        calls = [_call(c["name"], c.get("arguments")) for c in expected["tool_calls"]]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    if "number" in expected:
        number = expected["number"]
        shown = int(number) if isinstance(number, float) and number.is_integer() else number
        return {"role": "assistant", "content": str(shown)}
    return None


def failure_lines(document: RunDocument) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(training line, provenance) for each failed case of a results document, once per case
    (a case that failed in several repeats is one line)."""
    run_id = document.metadata.run_id or None
    seen: dict[str, dict[str, Any]] = {}
    lines: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for case in document.cases:
        if case.outcome != "failed":
            continue
        if case.nodeid in seen:
            seen[case.nodeid]["repeats_failed"].append(case.repeat)
            continue
        messages = _prompt_turns(case)
        if not messages:
            continue  # a case without a prompt (a free-form test) has nothing to train on
        answer = _expected_answer(case)
        if answer is not None:
            messages.append(answer)
        line: dict[str, Any] = {"messages": messages}
        if case.tools:
            line["tools"] = list(case.tools)
        provenance = {
            "origin": f"punie-run:{run_id}:{case.nodeid}",
            "run_id": run_id,
            "case_id": case.nodeid,
            "category": case.category,
            "failure": case.failure,
            "source": case.source,
            "model_answer": (case.response or {}).get("text"),
            "needs_answer": answer is None,
            "repeats_failed": [case.repeat],
        }
        seen[case.nodeid] = provenance
        lines.append((line, provenance))
    return lines


def export_failures(results: Path, out_dir: Path) -> tuple[Path, int, int]:
    """Write the failed cases of ``results`` to ``out_dir/failures.jsonl`` and its provenance
    sidecar; return the file, the lines written, and how many still need an answer."""
    document = load_run(results)
    target = out_dir / OUTPUT_NAME
    for path in (target, provenance_path(target)):
        if path.exists():
            raise ExportError(f"{path} already exists; choose another --out or move it away")
    lines = failure_lines(document)
    write_jsonl(provenance_path(target), ({"line": n, **p} for n, (_, p) in enumerate(lines, 1)))
    write_jsonl(target, (line for line, _ in lines))
    return target, len(lines), sum(p["needs_answer"] for _, p in lines)
