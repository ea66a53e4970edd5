"""Tool-calling training data from tool schemas and prompt templates, in mlx_lm's ``tools``
format (``{"messages": [...], "tools": [...]}``, calls as OpenAI ``tool_calls`` with object
arguments: what the chat template renders and what the eval server parses back).

A :class:`ToolcallSpec` holds tools (a JSON schema, a result template and an answer template
each), named value pools and tasks. A task is a prompt template and the calls it asks for:
one call, several calls in one turn (parallel), calls in order with each result fed back
(multi-step), or none ("no tool needed"). Every conversation ends with the turn to learn, so
training with ``mask_prompt`` learns exactly that turn: the call, the next call after a result,
the answer after the results, or the plain answer.

Placeholders are ``{pool}`` or ``{pool2}`` (a second, different value from the same pool); an
argument template that is exactly one placeholder keeps the pool value's type (numbers stay
numbers). Tools listed in ``held_out`` appear only in the test split, so the test split measures
calling tools never seen in training.

How a line is drawn is the spec's to say: how many other tools it shows (``min_distractors`` to
``distractors``), at least one of the ``novel`` tools in every line that shows tools (tools that
look new, so the model learns to read a schema rather than remember a name), how often a line
ends on the answer after the results (``answer_share``: the model learns to stop), how often a
line that needs no tool shows none (``bare_share``: as a code or arithmetic question is asked),
and how often each kind of task is drawn (``weights``). A task's ``weight`` weighs it within its
kind.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_punie.finetune.datasets import write_jsonl

__all__ = ["Task", "Tool", "ToolcallSpec", "generate", "load_spec", "write_dataset"]

_FIELD = re.compile(r"^\{(\w+)\}$")
_WEIGHTS = {"single": 2, "parallel": 1, "multi_step": 1, "no_tool": 1}


@dataclass(frozen=True)
class Tool:
    """A tool the model can call: its OpenAI function schema, the text its call returns and the
    answer given once that text is known (both templates over the call's arguments and pools)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    result: str
    answer: str

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True)
class Task:
    """A prompt template and the calls it asks for. ``steps`` is a list of turns, each a list of
    ``(tool, {argument: template})``; several calls in a turn are parallel, turns are in order.
    ``shown`` names the tools the model is given (default: the called ones plus distractors);
    ``answer`` (no calls) is the reply to a prompt that needs no tool."""

    prompt: str
    steps: tuple[tuple[tuple[str, Mapping[str, Any]], ...], ...] = ()
    shown: tuple[str, ...] | None = None
    answer: str | None = None
    weight: float = 1.0

    @property
    def kind(self) -> str:
        if not self.steps:
            return "no_tool"
        if len(self.steps) > 1:
            return "multi_step"
        return "parallel" if len(self.steps[0]) > 1 else "single"

    def tool_names(self) -> set[str]:
        return {name for turn in self.steps for name, _ in turn}


@dataclass(frozen=True)
class ToolcallSpec:
    """Tools, value pools, tasks and the tools kept for the test split."""

    tools: Mapping[str, Tool]
    pools: Mapping[str, Sequence[Any]]
    tasks: Sequence[Task]
    held_out: frozenset[str] = frozenset()
    toolboxes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    distractors: int = 2
    min_distractors: int = 0
    novel: frozenset[str] = frozenset()
    answer_share: float = 1 / 3
    bare_share: float = 0.0
    weights: Mapping[str, int] = field(default_factory=lambda: dict(_WEIGHTS))

    def check(self) -> ToolcallSpec:
        """Return self, or raise ``ValueError`` naming the first unknown tool, pool or box."""
        if not 0 <= self.min_distractors <= self.distractors:
            raise ValueError("distractors: need 0 <= min_distractors <= distractors")
        if not (0 <= self.answer_share <= 1 and 0 <= self.bare_share <= 1):
            raise ValueError("answer_share and bare_share are fractions from 0 to 1")
        unknown = sorted(self.novel - set(self.tools))
        if unknown:
            raise ValueError(f"novel: unknown tool(s) {', '.join(unknown)}")
        for task in self.tasks:
            shown = self._box(task.shown) if task.shown else ()
            for name in (*task.tool_names(), *shown):
                if name not in self.tools:
                    raise ValueError(f"task {task.prompt!r}: unknown tool {name!r}")
            if not task.steps and task.answer is None:
                raise ValueError(f"task {task.prompt!r}: a task without calls needs an answer")
            for text in _templates(task):
                for pool in _placeholders(text):
                    if _pool_name(pool) not in self.pools:
                        raise ValueError(f"task {task.prompt!r}: unknown pool {{{pool}}}")
        return self

    def _box(self, shown: Sequence[str]) -> list[str]:
        names: list[str] = []
        for name in shown:
            names.extend(self.toolboxes.get(name, [name]))
        return names


def _pool_name(placeholder: str) -> str:
    return placeholder.rstrip(string.digits)


def _placeholders(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def _templates(task: Task) -> Iterator[str]:
    yield task.prompt
    if task.answer:
        yield task.answer
    for turn in task.steps:
        for _, arguments in turn:
            yield from (v for v in arguments.values() if isinstance(v, str))


class _Values(dict[str, Any]):
    """Placeholder values drawn on first use; ``{city}`` and ``{city2}`` always differ, and
    neither is one of the ``avoid`` values drawn from the same pool."""

    def __init__(
        self,
        pools: Mapping[str, Sequence[Any]],
        rng: random.Random,
        avoid: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.pools, self.rng, self.avoid = pools, rng, avoid or {}

    def __missing__(self, key: str) -> Any:
        pool = self.pools[_pool_name(key)]
        used = {
            v for k, v in (*self.items(), *self.avoid.items()) if _pool_name(k) == _pool_name(key)
        }
        choices = [v for v in pool if v not in used] or list(pool)
        self[key] = value = self.rng.choice(choices)
        return value


def _fill(template: Any, values: _Values) -> Any:
    if not isinstance(template, str):
        return template
    match = _FIELD.match(template)
    if match:
        return values[match.group(1)]
    return string.Formatter().vformat(template, (), values)


def _shown(spec: ToolcallSpec, task: Task, rng: random.Random) -> list[str]:
    """The tools a line of ``task`` shows (see the module docstring)."""
    if not task.steps and spec.bare_share and rng.random() < spec.bare_share:
        return []
    called = sorted(task.tool_names())
    if task.shown:
        shown = spec._box(task.shown)
    else:
        others = [n for n in spec.tools if n not in called and n not in spec.held_out]
        others = [n for n in others if not any(n in box for box in spec.toolboxes.values())]
        count = rng.randint(spec.min_distractors, spec.distractors)
        shown = called + rng.sample(others, min(len(others), count))
        rng.shuffle(shown)
    novel = sorted(spec.novel - spec.held_out - set(shown))
    if novel and not spec.novel & set(shown):
        shown.insert(rng.randint(0, len(shown)), rng.choice(novel))
    return shown


def _conversations(spec: ToolcallSpec, task: Task, rng: random.Random) -> list[dict[str, Any]]:
    """Every training conversation a task gives: one per turn to learn."""
    values = _Values(spec.pools, rng)
    prompt = _fill(task.prompt, values)
    shown = _shown(spec, task, rng)
    tools = [spec.tools[name].schema() for name in shown]
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    if not task.steps:
        messages.append({"role": "assistant", "content": _fill(task.answer, values)})
        return [{"messages": messages, "tools": tools} if tools else {"messages": messages}]
    lines, answers, number = [], [], 0
    for turn in task.steps:
        calls, results = [], []
        drawn: dict[str, Any] = {}  # values a result drew: later turns see them, not this turn
        for name, arguments in turn:
            number += 1
            filled = {key: _fill(value, values) for key, value in arguments.items()}
            scope = _Values(spec.pools, rng, avoid=drawn)  # parallel calls get their own
            scope.update(values)
            scope.update({k: v for k, v in filled.items()})
            call_id = f"call_{number}"
            calls.append(
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": filled}}
            )  # fmt: skip
            result = str(_fill(spec.tools[name].result, scope))  # "{n}" alone fills to a number
            results.append({"role": "tool", "tool_call_id": call_id, "name": name,
                            "content": result})  # fmt: skip
            answers.append(str(_fill(spec.tools[name].answer, scope)))
            drawn.update({k: v for k, v in scope.items() if k not in values and k not in drawn})
        values.update(drawn)
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        lines.append({"messages": list(messages), "tools": tools})
        messages.extend(results)
    messages.append({"role": "assistant", "content": " ".join(answers)})
    lines.append({"messages": messages, "tools": tools})
    return lines


def generate(
    spec: ToolcallSpec, *, count: int, seed: int = 0, held_out: bool = False
) -> list[dict[str, Any]]:
    """``count`` lines (or fewer when the templates run out of new prompts) drawn from the
    spec's tasks, cycling through task kinds; ``held_out`` chooses the tasks that call only
    held-out tools (for the test split) instead of those that call none."""
    spec.check()
    rng = random.Random(seed)

    def chosen(task: Task) -> bool:
        names = task.tool_names()
        if held_out:
            return bool(names) and names <= spec.held_out
        return not names & spec.held_out

    tasks = [task for task in spec.tasks if chosen(task)]
    if not tasks:
        return []
    by_kind: dict[str, list[Task]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    # single calls are the most common request; each kind still gets its share
    kinds = [k for k in sorted(by_kind) for _ in range(spec.weights.get(k, 1))]
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(lines) < count and attempts < count * 50:
        attempts += 1
        kind = kinds[attempts % len(kinds)]
        candidates = by_kind[kind]
        task = rng.choices(candidates, weights=[t.weight for t in candidates])[0]
        conversations = _conversations(spec, task, rng)
        # the call, the next call after a result, or the answer once the results are back
        calls, answer = conversations[:-1], conversations[-1]
        line = rng.choice(calls) if calls and rng.random() >= spec.answer_share else answer
        key = json.dumps(line, sort_keys=True)  # the same prompt with other tools is new
        if key in seen:
            continue
        seen.add(key)
        lines.append(line)
    rng.shuffle(lines)
    return lines


def write_dataset(
    spec: ToolcallSpec,
    out: Path,
    *,
    train: int,
    valid: int,
    test: int,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``train``/``valid``/``test.jsonl`` into ``out``; return the line counts.

    Train and valid come from the tools that are not held out and share no user prompt; test
    uses only held-out tools. Existing files are replaced atomically, never appended to.
    """
    pool = generate(spec, count=train + valid, seed=seed)
    prompts = sorted({_user_prompt(line) for line in pool})
    random.Random(seed + 1).shuffle(prompts)
    share = valid / max(1, train + valid)
    valid_prompts = set(prompts[: max(1, round(len(prompts) * share))]) if valid else set()
    splits = {
        "train": [line for line in pool if _user_prompt(line) not in valid_prompts][:train],
        "valid": [line for line in pool if _user_prompt(line) in valid_prompts][:valid],
        "test": generate(spec, count=test, seed=seed + 2, held_out=True) if test else [],
    }
    return {name: write_jsonl(Path(out) / f"{name}.jsonl", lines) for name, lines in splits.items()
            if lines or name != "test"}  # fmt: skip


def _user_prompt(line: Mapping[str, Any]) -> str:
    return str(next(m["content"] for m in line["messages"] if m["role"] == "user"))


def load_spec(path: Path) -> ToolcallSpec:
    """A spec from a JSON file: ``{"tools": [{"name", "description", "parameters", "result",
    "answer"}], "pools": {...}, "tasks": [{"prompt", "steps", "shown", "answer", "weight"}],
    "held_out": [...], "toolboxes": {...}}``, and optionally the drawing settings
    ``distractors``, ``min_distractors``, ``novel``, ``answer_share``, ``bare_share``,
    ``weights`` (see :class:`ToolcallSpec`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return spec_from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def spec_from_json(data: Mapping[str, Any]) -> ToolcallSpec:
    """A spec from its JSON form (see :func:`load_spec`)."""
    tools = {t["name"]: Tool(**t) for t in data["tools"]}
    tasks = [
        Task(
            prompt=t["prompt"],
            steps=tuple(tuple((c[0], c[1]) for c in turn) for turn in t.get("steps", ())),
            shown=tuple(t["shown"]) if t.get("shown") else None,
            answer=t.get("answer"),
            weight=float(t.get("weight", 1.0)),
        )
        for t in data["tasks"]
    ]
    drawing: dict[str, Any] = {
        key: data[key]
        for key in ("distractors", "min_distractors", "answer_share", "bare_share", "weights")
        if key in data
    }
    return ToolcallSpec(
        tools=tools,
        pools=data["pools"],
        tasks=tasks,
        held_out=frozenset(data.get("held_out", ())),
        toolboxes=data.get("toolboxes", {}),
        novel=frozenset(data.get("novel", ())),
        **drawing,
    ).check()
