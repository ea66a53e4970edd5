"""What a person reads about a run: a failed case in five terminal lines, the HTML report's
sections (category summary, chart, each case's view, baseline side by side) and the history page
with its trend charts.

Python gathers each view's data and computes its numbers (a bar's width, a point's coordinates,
a label) into small dataclasses; the templates under ``results/templates`` lay them out, and
escape every model or user string they print.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_punie.conversation.transcript import transcript
from pytest_punie.results import history
from pytest_punie.results.labels import path_name, percent
from pytest_punie.results.render import (
    CATEGORY_HEADER,
    nearest_line,
    render_html,
    render_macro,
    text_table,
    to_text,
)
from pytest_punie.results.table import Table

if TYPE_CHECKING:
    import os
    from pathlib import Path

    from pytest_punie.results.compare import Comparison
    from pytest_punie.results.history import RunRow
    from pytest_punie.results.regression_data import RegressionData
    from pytest_punie.results.run import CategoryScore

__all__ = [
    "ANSWER_CHARS",
    "Bar",
    "BarChart",
    "CaseView",
    "Tick",
    "TrendChart",
    "TrendPoint",
    "Trimmed",
    "Turn",
    "bar_chart",
    "bar_chart_svg",
    "case_view",
    "case_view_html",
    "failure_text",
    "few_cases_warnings",
    "history_html",
    "history_page",
    "history_text",
    "path_name",
    "percent",
    "served_lines",
    "side_by_side_html",
    "summary_html",
    "text_table",
    "trend_chart",
    "trend_chart_svg",
    "trim",
    "trimmed_html",
]

ANSWER_CHARS = 120  # of an answer in the terminal's failure lines
HTML_CHARS = 600  # of a message in the case view before "show all"


# -- one case, as data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One step of a conversation: ``role`` is system, user, assistant, tool call or tool result."""

    role: str
    text: str
    tool: str = ""


@dataclass(frozen=True)
class CaseView:
    """Everything shown about one case: prompt, conversation, calls, scores, timings."""

    nodeid: str
    category: str
    outcome: str
    score: float
    prompt: str = ""
    answer: str = ""
    turns: tuple[Turn, ...] = ()
    calls: tuple[tuple[str, str | None], ...] = ()  # each call as text, and its result
    records: tuple[Mapping[str, Any], ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    latency_s: float = 0.0
    duration_s: float = 0.0
    cached: bool | None = None
    stopped: str | None = None
    refusals: tuple[str, ...] = field(default=())


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_content(v) for v in value)
    if isinstance(value, dict) and "content" in value:
        return _content(value["content"])
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def call_text(name: str, arguments: Any) -> str:
    """A tool call as a person writes it: ``read_file(path='README.md')``."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}({arguments})"
    if not isinstance(arguments, Mapping):
        return f"{name}({arguments!r})"
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"


def conversation(messages: Iterable[Mapping[str, Any]]) -> tuple[list[Turn], dict[str, str]]:
    """The turns of pydantic-ai's dumped messages, and each tool call id's result."""
    turns: list[Turn] = []
    results: dict[str, str] = {}
    for part in (part for message in transcript(messages) for part in message.parts):
        if part.kind == "system-prompt":
            turns.append(Turn("system", _content(part.content)))
        elif part.kind == "user-prompt":
            turns.append(Turn("user", _content(part.content)))
        elif part.kind in ("tool-return", "retry-prompt"):
            text = _content(part.content)
            turns.append(Turn("tool result", text, part.tool_name))
            if part.tool_call_id:
                results[part.tool_call_id] = text
        elif part.kind == "text":
            turns.append(Turn("assistant", _content(part.content)))
        elif part.kind == "tool-call":
            name = part.tool_name or "?"
            turns.append(Turn("tool call", call_text(name, part.args), name))
    return turns, results


def case_view(
    nodeid: str,
    category: str,
    outcome: str,
    score: float,
    *,
    prompt: str | None,
    response: Any,
    records: Sequence[Mapping[str, Any]] = (),
    duration_s: float = 0.0,
) -> CaseView:
    """The view of a case from its ``Response`` (or none: the case never got an answer)."""
    if response is None:
        return CaseView(nodeid, category, outcome, score, prompt or "", records=tuple(records),
                        duration_s=duration_s)  # fmt: skip
    turns, results = conversation(getattr(response, "messages", ()))
    first_user = next((t.text for t in turns if t.role == "user"), "")
    calls = tuple(
        (call_text(call.name, call.arguments), results.get(call.id or ""))
        for call in response.tool_calls
    )
    cached = getattr(response, "cached", None)
    return CaseView(
        nodeid=nodeid,
        category=category,
        outcome=outcome,
        score=score,
        prompt=prompt or first_user,
        answer=response.text,
        turns=tuple(turns),
        calls=calls,
        records=tuple(records),
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        requests=response.requests,
        latency_s=response.latency_s,
        duration_s=duration_s,
        cached=cached if isinstance(cached, bool) else None,
        stopped=response.stopped,
        refusals=tuple(response.sandbox_refusals),
    )


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}... (+{len(flat) - limit} chars)"


def expected_text(record: Mapping[str, Any]) -> str:
    """What a scorer wanted, in words, from its recorded details."""
    details = record.get("details") or {}
    name = str(record.get("scorer", ""))
    if "expected" in details:
        expected = details["expected"]
        if isinstance(expected, Mapping) and "name" in expected:
            return call_text(str(expected["name"]), expected.get("arguments") or {})
        if isinstance(expected, list) and all(
            isinstance(e, Mapping) and "name" in e for e in expected
        ):
            return "; ".join(call_text(str(e["name"]), e.get("arguments") or {}) for e in expected)
        tolerance = details.get("tolerance")
        if isinstance(expected, float) and expected.is_integer():
            expected = int(expected)
        return f"{expected}" + (f" (+/- {tolerance})" if tolerance else "")
    if "missing" in details:
        words = [*details.get("found", ()), *details["missing"]]
        return f"the words {', '.join(map(repr, words))}"
    if "pattern" in details:
        return f"a match for /{details['pattern']}/"
    if name == "assert_no_tool_call":
        return "no tool call"
    if "tests" in details or name == "assert_python_code":
        return "code that passes its tests"
    pass_mark = details.get("pass_mark")
    if not isinstance(pass_mark, (int, float)):
        return f"{name} to pass"
    return f"{name} to score at least {pass_mark:.2f}"


def _two_places(value: Any) -> str:
    """A score with two decimals, or "-" where there is none (a judge that gave no verdict)."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def verdict_text(record: Mapping[str, Any]) -> str:
    details = record.get("details") or {}
    reason = details.get("reason") or "the response did not meet the check"
    score, pass_mark = record.get("score"), details.get("pass_mark", 1.0)
    if not isinstance(score, (int, float)) or not isinstance(pass_mark, (int, float)):
        return f"{record.get('scorer')} gave no score: {reason}"  # a judge error, say
    return (
        f"{record.get('scorer')} scored {float(record.get('score', 0.0)):.2f} "
        f"< {float(details.get('pass_mark', 1.0)):.2f}: {reason}"
    )


def failure_text(view: CaseView, message: str = "") -> str:
    """A failed case in five lines: verdict, expected, prompt, answer, tool calls."""
    failing = next((r for r in view.records if not r.get("passed", True)), None)
    calls = (
        "; ".join(
            f"{text} -> {_one_line(result, 60)!r}" if result is not None else text
            for text, result in view.calls[:4]
        )
        + (f" (+{len(view.calls) - 4} more)" if len(view.calls) > 4 else "")
        if view.calls
        else "none"
    )
    answer = _one_line(view.answer, ANSWER_CHARS) if view.answer else "(empty)"
    if view.stopped:
        answer += f" [stopped: {view.stopped}]"
    others = sum(1 for r in view.records if r is not failing)
    verdict = verdict_text(failing) if failing else _one_line(message or "failed", 300)
    if failing and others:
        verdict += f" ({others} other check(s) recorded)"
    lines = [  # the verdict first: pytest's short summary shows the first line
        f"verdict:  {verdict}",
        f"expected: {_one_line(expected_text(failing), 200) if failing else '-'}",
        f"prompt:   {_one_line(view.prompt, ANSWER_CHARS) or '(none)'}",
        f"answer:   {answer}",
        f"tools:    {_one_line(calls, 300)}",
    ]
    return "\n".join(lines)


# -- the case view (HTML) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trimmed:
    """A long text cut for the page: ``shown`` first, the ``rest`` one click away."""

    shown: str
    rest: str = ""

    @property
    def more(self) -> str:
        """How many characters the rest holds, for its "show the rest" line."""
        return f"{len(self.rest):,}"


def trim(text: str, limit: int = HTML_CHARS) -> Trimmed:
    """``text`` cut at ``limit`` characters (whole when shorter)."""
    return Trimmed(text) if len(text) <= limit else Trimmed(text[:limit], text[limit:])


def trimmed_html(text: str, limit: int = HTML_CHARS) -> str:
    """``text`` in a <pre>, cut at ``limit`` characters with the rest one click away (the page
    holds each character once: 1,000 cases stay a small file)."""
    return render_macro("macros.html", "trimmed", trim(text, limit))


def _timings(view: CaseView) -> list[tuple[str, str]]:
    cached = {None: "unknown", True: "yes", False: "no"}[view.cached]
    items = [
        ("outcome", view.outcome),
        ("score", f"{view.score:.2f}"),
        ("tokens in / out", f"{view.input_tokens} / {view.output_tokens}"),
        ("requests", str(view.requests)),
        ("latency", f"{view.latency_s:.2f} s"),
        ("test call", f"{view.duration_s:.2f} s"),
        ("cached", cached),
    ]
    if view.stopped:
        items.append(("stopped", view.stopped))
    return items


@dataclass(frozen=True)
class _ShownTurn:
    """A turn as the page shows it: its role's label, its kind (a CSS class), its text."""

    role: str
    kind: str
    text: Trimmed


def _shown_turns(view: CaseView) -> list[_ShownTurn]:
    turns = view.turns or ((Turn("user", view.prompt),) if view.prompt else ()) + (
        (Turn("assistant", view.answer),) if view.answer else ()
    )
    return [
        _ShownTurn(
            turn.role + (f" ({turn.tool})" if turn.tool and turn.role == "tool result" else ""),
            turn.role.replace(" ", "-"),
            trim(turn.text),
        )
        for turn in turns
    ]


def case_view_html(view: CaseView) -> str:
    """One case's whole story for the HTML report: verdict, scores, timings, conversation."""
    failing = next((r for r in view.records if not r.get("passed", True)), None)
    scores = None
    if view.records:
        rows = [
            [
                str(r.get("scorer", "")),
                _two_places(r.get("score")),
                _two_places((r.get("details") or {}).get("pass_mark", 1.0)),
                "yes" if r.get("passed") else "no",
                str((r.get("details") or {}).get("reason") or ""),
            ]
            for r in view.records
        ]
        header = ["scorer", "score", "pass mark", "passed", "reason"]
        scores = Table.of(header, rows, left=(0, 4))
    return render_html(
        "case_view.html",
        outcome=view.outcome,
        expected=expected_text(failing) if failing is not None else None,
        verdict=verdict_text(failing) if failing is not None else None,
        timings=_timings(view),
        scores=scores,
        turns=_shown_turns(view),
        refusals="; ".join(view.refusals),
    )


# -- the report's summary sections ----------------------------------------------------------------


def few_cases_warnings(categories: Iterable[CategoryScore], min_cases: int) -> list[str]:
    """A warning for each category too small for its score to move smoothly."""
    return [
        f"WARNING: category {c.name!r} has {c.cases} case(s), fewer than {min_cases}: "
        f"its score moves in steps of {c.step:.0%}"
        for c in categories
        if c.cases < min_cases
    ]


def served_lines(server: Mapping[str, Any] | None, all_cached: bool = False) -> list[str]:
    """What was actually served: model, adapter, hashes, server URL and BLAS; a server that
    failed to start says so with its cause (``all_cached``: the cache answered every case)."""
    if not server:
        return ["served: no server was used"]
    lines = [f"model: {server.get('model')} (sha256 {str(server.get('model_hash'))[:12]})"]
    adapter = server.get("adapter")
    lines.append(
        f"adapter: {adapter} (sha256 {str(server.get('adapter_hash'))[:12]})"
        if adapter
        else "adapter: none"
    )
    extra = server.get("extra") or {}
    if "chat_template" in extra:
        lines.append(f"chat template: {extra['chat_template']} ({extra['chat_template_reason']})")
        if extra.get("tools_visible") is False:
            lines.append("WARNING: the chat template ignores tools: the model never sees them")
    start_error = server.get("start_error")
    if start_error:
        lines.append(f"server: failed to start: {str(start_error).strip().splitlines()[0]}")
        if server.get("log_path"):
            lines.append(f"server log: {server.get('log_path')}")
    elif not server.get("base_url"):
        lines.append(
            "server: not started (the response cache answered every request)"
            if all_cached
            else "server: not started (no case asked the model)"
        )
    elif len(members := server.get("servers") or []) > 1:
        where = (
            "started here"
            if server.get("started_here")
            else f"external, model {server.get('model_name')}"
        )
        lines.append(f"servers: {len(members)} of the same model ({where}), requests answered:")
        for member in members:
            line = f"  {member.get('base_url')}: {member.get('answered', 0)}"
            if member.get("failed"):
                line += f", out of rotation ({member.get('failure') or 'failed'})"
            if member.get("log_path"):
                line += f", log {member.get('log_path')}"
            lines.append(line)
        if server.get("started_here"):
            lines.append(f"BLAS: {server.get('blas')}")
    elif server.get("started_here"):
        lines.append(f"server: {server.get('base_url')} (started here)")
        lines.append(f"BLAS: {server.get('blas')}")
        lines.append(f"server log: {server.get('log_path')}")
    else:
        lines.append(
            f"server: {server.get('base_url')} (external, model {server.get('model_name')})"
        )
    return lines


def summary_html(
    rows: Sequence[Sequence[str]],
    lines: Sequence[str],
    gate: Sequence[str] | None,
    failures: Table | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The summary section pytest-html shows above its results table (with the page's style);
    ``lines`` are the notes under the tables (``served_lines`` and any a plugin adds)."""
    return render_html(
        "summary.html",
        categories=Table.of(CATEGORY_HEADER, rows, total_row=True),
        failures=failures if failures is not None and failures.rows else None,
        warnings=list(warnings),
        gate=None if gate is None else "passed" if not gate else "FAILED: " + "; ".join(gate),
        lines=list(lines),
    )


@dataclass(frozen=True)
class Tick:
    """A mark on a chart's axis: where it is, where its label goes, and the label."""

    at: float
    label_at: float
    label: str


@dataclass(frozen=True)
class Bar:
    """One category's bar: its top and width, where its texts go, and the x of its interval's
    ends, its threshold and the baseline's score (none where there is none)."""

    name: str
    top: int
    text_y: int
    width: float
    score: str
    score_x: float
    title: str
    middle: float
    mark_top: int
    mark_bottom: int
    interval: tuple[float, float] | None
    threshold_x: float | None
    baseline_x: float | None


@dataclass(frozen=True)
class BarChart:
    """The category scores' bar chart, every position computed (``bar_chart.html`` draws it)."""

    width: int
    height: int
    label_x: int
    bar_x: int
    bar_height: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    legend: str


def _at(value: float) -> float:
    """A coordinate to a tenth of a pixel."""
    return round(value, 1)


def bar_chart(
    categories: Sequence[CategoryScore], baseline: Mapping[str, float | None] | None = None
) -> BarChart:
    """The bar chart of category scores with their 95% intervals, thresholds and the
    baseline's scores."""
    bar_height, gap, label_width, width = 22, 10, 150, 420
    height = len(categories) * (bar_height + gap) + 30

    def x_of(value: float) -> float:
        return _at(label_width + value * width)

    bars = []
    for index, category in enumerate(categories):
        top = 10 + index * (bar_height + gap)
        before = (baseline or {}).get(category.name)
        bars.append(
            Bar(
                name=category.name,
                top=top,
                text_y=top + 15,
                width=_at(category.mean * width),
                score=f"{category.mean:.0%}",
                score_x=_at(x_of(category.mean) + 6),
                title=f"{category.name}: {category.mean:.1%}",
                middle=top + bar_height / 2,
                mark_top=top - 3,
                mark_bottom=top + bar_height + 3,
                interval=(
                    (x_of(category.low), x_of(category.high))
                    if category.low is not None and category.high is not None
                    else None
                ),
                threshold_x=x_of(category.threshold) if category.threshold is not None else None,
                baseline_x=x_of(before) if before is not None else None,
            )
        )
    legend = "bars: mean score; black line: 95% interval; red: threshold"
    if baseline:
        legend += "; dashed orange: baseline"
    return BarChart(
        width=label_width + width + 70,
        height=height,
        label_x=label_width - 8,
        bar_x=label_width,
        bar_height=bar_height,
        bars=tuple(bars),
        ticks=tuple(
            Tick(x_of(tick), height - 2, f"{tick:.0%}") for tick in (0.0, 0.25, 0.5, 0.75, 1.0)
        ),
        legend=legend,
    )


def bar_chart_svg(
    categories: Sequence[CategoryScore], baseline: Mapping[str, float | None] | None = None
) -> str:
    """An inline SVG bar chart of category scores with their 95% intervals, thresholds and the
    baseline's scores; nothing is fetched from the network."""
    return render_html("bar_chart.html", chart=bar_chart(categories, baseline))


CHANGE_NAMES = {"fixed": "fixed", "broken": "broken", "same": "unchanged", "added": "new",
                "removed": "removed"}  # fmt: skip
SIDE_BY_SIDE_CHARS = 300  # of an answer in the side-by-side view before "show all"
NEAREST_CHARS = 200  # of a training line's prompt under a broken case before "show all"


def _answers(cases: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each case's answer (its first sample's), by nodeid."""
    answers: dict[str, str] = {}
    for case in cases:
        response = case.get("response") or {}
        text = response.get("text") if isinstance(response, Mapping) else None
        if text is None and case.get("message"):
            text = f"[{case.get('outcome')}] {case['message']}"
        answers.setdefault(str(case.get("nodeid")), str(text or ""))
    return answers


@dataclass(frozen=True)
class _NearestLine:
    """A training line near a broken case: ``train.jsonl:41 (0.42)``, its whole path:line (to
    paste into an editor: the page links to nothing) and its prompt."""

    label: str
    location: str
    prompt: Trimmed


@dataclass(frozen=True)
class _SideBySideRow:
    nodeid: str
    category: str
    change: str
    change_name: str
    baseline_score: str
    baseline_answer: Trimmed
    score: str
    answer: Trimmed
    nearest: tuple[_NearestLine, ...] = ()  # a broken case's nearest training lines
    nearest_note: str = ""  # why a broken case shows none, when training data is known


def _nearest(
    regression: RegressionData | None, nodeid: str
) -> tuple[tuple[_NearestLine, ...], str]:
    """A broken case's nearest training lines for the page, or why there are none."""
    from pathlib import Path  # at run time only here (the module types with it)

    case = regression.of(nodeid) if regression is not None else None
    if regression is None or case is None:
        return (), ""
    if regression.data.path is None:
        return (), f"nearest training lines: none ({regression.data.source})"
    if not case.lines:
        reason = "no prompt recorded" if case.prompt is None else "no line shares a 5-gram"
        return (), f"nearest training lines: none ({reason})"
    lines = tuple(
        _NearestLine(
            nearest_line(n), f"{Path(n.file).resolve()}:{n.line}", trim(n.train.text, NEAREST_CHARS)
        )
        for n in case.lines
    )
    return lines, ""


@dataclass(frozen=True)
class _Filter:
    key: str
    label: str
    checked: bool = False


def side_by_side_html(
    comparison: Comparison,
    baseline_cases: Iterable[Mapping[str, Any]],
    candidate_cases: Iterable[Mapping[str, Any]],
    regression: RegressionData | None = None,
) -> str:
    """Each case's baseline answer and score next to this run's, filterable like a diff
    (fixed, broken, unchanged, new or removed) with radio buttons and CSS only; under a
    broken case, the training lines nearest its prompt (``regression``, when the data is
    known)."""
    before, after = _answers(baseline_cases), _answers(candidate_cases)
    counts = {name: 0 for name in CHANGE_NAMES}
    for case in comparison.cases:
        counts[case.change] += 1
    rows = [
        _SideBySideRow(
            nodeid=case.nodeid,
            category=case.category,
            change=case.change,
            change_name=CHANGE_NAMES[case.change],
            baseline_score=percent(case.baseline_score),
            baseline_answer=trim(before.get(case.nodeid, ""), SIDE_BY_SIDE_CHARS),
            score=percent(case.candidate_score),
            answer=trim(after.get(case.nodeid, ""), SIDE_BY_SIDE_CHARS),
            nearest=nearest,
            nearest_note=note,
        )
        for case in comparison.cases
        for nearest, note in [_nearest(regression, case.nodeid)]
    ]
    filters = [
        _Filter("all", f"all ({len(comparison.cases)})", checked=True),
        _Filter("fixed", f"fixed ({counts['fixed']})"),
        _Filter("broken", f"broken ({counts['broken']})"),
        _Filter("same", f"unchanged ({counts['same']})"),
        _Filter("other", f"new or removed ({counts['added'] + counts['removed']})"),
    ]
    header = ["case", "category", "change", "baseline score", "baseline answer", "score", "answer"]
    return render_html(
        "side_by_side.html",
        baseline_label=comparison.baseline_label,
        candidate_label=comparison.candidate_label,
        filters=filters,
        header=header,
        rows=rows,
    )


# -- the history page and its trend charts --------------------------------------------------------

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#eeca3b")

Series = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class TrendPoint:
    """One run's score on a trend chart: its place, its status (complete, partial or void), its
    colours, its tooltip, the y of its 95% interval's ends and, for a void run, its cross."""

    x: float
    y: float
    status: str
    color: str
    fill: str
    title: str
    interval: tuple[float, float] | None = None
    cross: str = ""


@dataclass(frozen=True)
class TrendLine:
    """A series' complete runs joined: its colour and its points as SVG ``x,y`` pairs."""

    color: str
    points: str


@dataclass(frozen=True)
class TrendChart:
    """One category over the recorded runs, every position computed (``trend_chart.html``)."""

    category: str
    width: int
    height: int
    left: int
    right: float
    grid_label_x: int
    grid: tuple[Tick, ...]
    runs: tuple[Tick, ...]
    points: tuple[TrendPoint, ...]
    lines: tuple[TrendLine, ...]


def _colours(recorded: Sequence[RunRow]) -> dict[Series, str]:
    """Each series' colour, in the order the series first ran."""
    colours: dict[Series, str] = {}
    for run in sorted(recorded, key=lambda r: (r.started or "", r.id)):
        colours.setdefault(run.series, PALETTE[len(colours) % len(PALETTE)])
    return colours


def trend_chart(category: str, recorded: Sequence[RunRow]) -> TrendChart:
    """One category's score over the recorded runs, one coloured line per model + adapter, each
    point with its 95% interval; partial runs hollow, void runs grey crosses (never joined)."""
    ordered = sorted(recorded, key=lambda r: (r.started or "", r.id))
    colours = _colours(recorded)
    left, top, width, height = 44, 12, max(240, 28 * len(ordered)), 150
    step = width / max(len(ordered), 1)

    def x_of(index: int) -> float:
        return _at(left + step * (index + 0.5))

    def y_of(value: float) -> float:
        return _at(top + (1 - value) * height)

    points: list[TrendPoint] = []
    joined: dict[Series, list[str]] = {}
    for index, run in enumerate(ordered):
        stats = run.category(category) if category != "overall" else None
        value = run.overall if category == "overall" else (stats.mean if stats else None)
        if value is None:
            continue
        x, y, color = x_of(index), y_of(value), colours[run.series]
        interval = f" (95% {stats.low:.0%}-{stats.high:.0%})" if stats is not None else ""
        points.append(
            TrendPoint(
                x=x,
                y=y,
                status=run.status,
                color=color,
                fill="white" if run.status == "partial" else color,
                title=(
                    f"run {run.id}: {run.name}, {value:.1%}{interval}, {run.date}, "
                    f"{run.status_text}"
                ),
                interval=(y_of(stats.low), y_of(stats.high)) if stats is not None else None,
                cross=f"M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8" if run.status == "void" else "",
            )
        )
        if run.status == "complete":
            joined.setdefault(run.series, []).append(f"{x:.1f},{y:.1f}")
    return TrendChart(
        category=category,
        width=left + width + 10,
        height=top + height + 30,
        left=left,
        right=left + width,
        grid_label_x=left - 4,
        grid=tuple(
            Tick(y_of(tick), _at(y_of(tick) + 4), f"{tick:.0%}")
            for tick in (0.0, 0.25, 0.5, 0.75, 1.0)
        ),
        runs=tuple(
            Tick(x_of(index), top + height + 14, f"#{run.id}") for index, run in enumerate(ordered)
        ),
        points=tuple(points),
        lines=tuple(
            TrendLine(colours[series], " ".join(line))
            for series, line in joined.items()
            if len(line) > 1
        ),
    )


def trend_chart_svg(category: str, recorded: Sequence[RunRow]) -> str:
    """One category's score over the recorded runs as an inline SVG in a captioned figure."""
    return render_html("trend_chart.html", chart=trend_chart(category, recorded))


@dataclass(frozen=True)
class _LegendEntry:
    color: str
    name: str


def history_page(
    recorded: Sequence[RunRow],
    cumulative: Table,
    all_runs: Table,
    steps: str,
    title: str = "pytest-punie run history",
) -> str:
    """A self-contained HTML page: a trend chart per category, the cumulative table (the
    charts' text twin) and every recorded run; no script, nothing fetched."""
    names = sorted({c.name for run in recorded for c in run.categories})
    first_names: dict[Series, str] = {}
    for run in sorted(recorded, key=lambda r: (r.started or "", r.id)):
        first_names.setdefault(run.series, run.name)
    colours = _colours(recorded)
    void = [run for run in recorded if run.status != "complete"]
    return render_html(
        "history.html",
        title=title,
        charts=[trend_chart(name, recorded) for name in ["overall", *names]],
        legend=[_LegendEntry(colours[series], name) for series, name in first_names.items()],
        void_runs="; ".join(f"run {r.id} {r.name} ({r.status_text})" for r in void),
        cumulative=cumulative,
        steps=steps or "-",
        runs=len(recorded),
        all_runs=all_runs,
    )


def history_html(db_path: str | os.PathLike[str], title: str = "pytest-punie run history") -> str:
    """The history page of the run history at ``db_path`` (``punie history --html``)."""
    recorded = history.runs(db_path)
    return history_page(
        recorded,
        history.cumulative(recorded),
        history.all_runs_table(recorded),
        history.steps(recorded),
        title,
    )


def history_text(
    recorded: Sequence[RunRow],
    db_path: str | os.PathLike[str],
    pending: Sequence[Path] = (),
    all_runs: bool = False,
) -> str:
    """The cumulative table as terminal text (and, with ``all_runs``, every recorded run);
    ``pending`` are the runs kept while the history was locked, waiting to be added."""
    if not recorded:
        return f"no runs recorded in {db_path}"
    lines = [
        to_text(history.cumulative(recorded)),
        "",
        f"* best in its column (complete runs only). {len(recorded)} run(s) recorded in {db_path}.",
        f"One case moves a category by: {history.steps(recorded)}.",
    ]
    hidden = history.hidden_runs(recorded)
    if hidden:
        lines.append(
            "Not in the table (newer, but partial or void): "
            + "; ".join(f"run {r.id} {r.name} ({r.status_text})" for r in hidden)
            + "."
        )
    if pending:
        lines.append(
            f"{len(pending)} run(s) kept while the history was locked wait in "
            f"{pending[0].parent} (added by the next run)."
        )
    if all_runs:
        lines += ["", to_text(history.all_runs_table(recorded))]
    return "\n".join(lines)
