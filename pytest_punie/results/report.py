"""What a person reads about a run: a failed case in five terminal lines, the HTML report's
sections (category summary, chart, each case's view, baseline side by side) and the history page
with its trend charts. Tables come from ``render``; every model or user string is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_punie.results.render import (
    CATEGORY_HEADER,
    Cell,
    Table,
    escape,
    path_name,
    percent,
    text_table,
    to_html,
)

if TYPE_CHECKING:
    from pytest_punie.results.compare import Comparison
    from pytest_punie.results.history import RunRow
    from pytest_punie.results.run import CategoryScore

__all__ = [
    "ANSWER_CHARS",
    "CaseView",
    "Turn",
    "bar_chart_svg",
    "case_view",
    "case_view_html",
    "failure_text",
    "few_cases_warnings",
    "history_page",
    "path_name",
    "percent",
    "served_lines",
    "side_by_side_html",
    "summary_html",
    "text_table",
    "trend_chart_svg",
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
    for message in messages:
        for part in message.get("parts") or ():
            kind = part.get("part_kind", "")
            content = part.get("content")
            if kind == "system-prompt":
                turns.append(Turn("system", _content(content)))
            elif kind == "user-prompt":
                turns.append(Turn("user", _content(content)))
            elif kind in ("tool-return", "retry-prompt"):
                text = _content(content)
                turns.append(Turn("tool result", text, str(part.get("tool_name") or "")))
                if part.get("tool_call_id"):
                    results[str(part["tool_call_id"])] = text
            elif kind == "text":
                turns.append(Turn("assistant", _content(content)))
            elif kind == "tool-call":
                name = str(part.get("tool_name", "?"))
                turns.append(Turn("tool call", call_text(name, part.get("args")), name))
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


def trimmed_html(text: str, limit: int = HTML_CHARS) -> str:
    """``text`` in a <pre>, cut at ``limit`` characters with the rest one click away (the page
    holds each character once: 1,000 cases stay a small file)."""
    if len(text) <= limit:
        return f"<pre>{escape(text)}</pre>"
    return (
        f"<pre>{escape(text[:limit])}</pre><details class='punie-more'><summary>show the rest "
        f"({len(text) - limit:,} more characters)</summary><pre>{escape(text[limit:])}</pre>"
        "</details>"
    )


def _timings(view: CaseView) -> str:
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
    return "<dl class='punie-timings'>" + "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items
    ) + "</dl>"  # fmt: skip


def case_view_html(view: CaseView) -> str:
    """One case's whole story for the HTML report: verdict, scores, timings, conversation."""
    parts = [f"<div class='punie-case' data-outcome='{escape(view.outcome)}'>"]
    failing = next((r for r in view.records if not r.get("passed", True)), None)
    if failing is not None:
        parts.append(
            f"<p class='punie-verdict'><b>expected</b> {escape(expected_text(failing))}<br>"
            f"<b>verdict</b> {escape(verdict_text(failing))}</p>"
        )
    parts.append(_timings(view))
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
        parts.append(to_html(Table.of(header, rows, left=(0, 4)), css_class="punie-scores"))
    turns = view.turns or ((Turn("user", view.prompt),) if view.prompt else ()) + (
        (Turn("assistant", view.answer),) if view.answer else ()
    )
    items = []
    for turn in turns:
        role = turn.role + (f" ({turn.tool})" if turn.tool and turn.role == "tool result" else "")
        css = turn.role.replace(" ", "-")
        items.append(
            f"<li class='punie-turn punie-{escape(css)}'><span class='punie-role'>"
            f"{escape(role)}</span>{trimmed_html(turn.text)}</li>"
        )
    parts.append("<ol class='punie-conversation'>" + "".join(items) + "</ol>")
    if view.refusals:
        parts.append(
            "<p class='punie-refusals'>sandbox refused: "
            + escape("; ".join(view.refusals))
            + "</p>"
        )
    parts.append("</div>")
    return "".join(parts)


# -- the report's summary sections ----------------------------------------------------------------

REPORT_STYLE = (
    "<style>"
    ".punie-table,.punie-scores,#punie-side-by-side table{border-collapse:collapse;margin:6px 0}"
    ".punie-table th,.punie-table td,.punie-scores th,.punie-scores td,#punie-side-by-side th,"
    "#punie-side-by-side td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;"
    "vertical-align:top}.punie-comparison tr.significant td{font-weight:bold}"
    "td.num{text-align:right}.punie-warnings{color:#a15c00}"
    ".punie-more pre{margin-top:0}.punie-case{font-size:13px;margin:4px 0 10px}"
    ".punie-case pre,#punie-side-by-side pre"
    "{white-space:pre-wrap;word-break:break-word;margin:2px 0;max-width:100ch}"
    ".punie-timings{display:grid;grid-template-columns:repeat(7,auto);gap:0 14px;margin:4px 0}"
    ".punie-timings dt{font-weight:bold;grid-row:1}.punie-timings dd{margin:0;grid-row:2}"
    ".punie-conversation{list-style:none;padding:0}.punie-turn{border-left:4px solid #ccc;"
    "padding:2px 8px;margin:4px 0}.punie-role{font-weight:bold;font-size:11px;"
    "text-transform:uppercase;color:#555}.punie-user{border-color:#4c78a8}"
    ".punie-assistant{border-color:#54a24b}.punie-tool-call{border-color:#e45756}"
    ".punie-tool-result{border-color:#f58518}.punie-verdict{background:#fff3f3;padding:4px 8px}"
    "#punie-side-by-side tr.fixed{background:#eefbea}#punie-side-by-side tr.broken"
    "{background:#fdecec}"
    "#punie-side-by-side input{margin-left:12px}"
    "#punie-sbs-fixed:checked~table tbody tr:not(.fixed),"
    "#punie-sbs-broken:checked~table tbody tr:not(.broken),"
    "#punie-sbs-same:checked~table tbody tr:not(.same),"
    "#punie-sbs-other:checked~table tbody tr:not(.added):not(.removed){display:none}"
    "</style>"
)


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
    table = to_html(Table.of(CATEGORY_HEADER, rows, total_row=True), "punie-categories")
    if failures is not None and failures.rows:
        table += "<h3>Failures by type</h3>" + to_html(failures, "punie-failures")
    served = "".join(f"<li>{escape(line)}</li>" for line in lines)
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        table += f"<ul class='punie-warnings'>{items}</ul>"
    verdict = ""
    if gate is not None:
        verdict = (
            "<p class='punie-gate'>Gate: "
            + ("passed" if not gate else "FAILED: " + escape("; ".join(gate)))
            + "</p>"
        )
    return (
        f"<div id='punie-summary'>{REPORT_STYLE}<h2>Category scores</h2>{table}"
        f"{verdict}<ul class='punie-served'>{served}</ul></div>"
    )


def bar_chart_svg(
    categories: Sequence[CategoryScore], baseline: Mapping[str, float | None] | None = None
) -> str:
    """An inline SVG bar chart of category scores with their 95% intervals, thresholds and the
    baseline's scores; nothing is fetched from the network."""
    bar_height, gap, label_width, width = 22, 10, 150, 420
    height = len(categories) * (bar_height + gap) + 30
    parts = [
        f"<svg id='punie-chart' xmlns='http://www.w3.org/2000/svg' role='img' "
        f"width='{label_width + width + 70}' height='{height}' "
        "aria-label='Category scores' style='font: 12px sans-serif'>"
    ]

    def x_of(value: float) -> float:
        return label_width + value * width

    for index, category in enumerate(categories):
        y = 10 + index * (bar_height + gap)
        parts.append(
            f"<text x='{label_width - 8}' y='{y + 15}' text-anchor='end'>"
            f"{escape(category.name)}</text>"
            f"<rect class='punie-bar' x='{label_width}' y='{y}' "
            f"width='{category.mean * width:.1f}' height='{bar_height}' fill='#4c78a8'>"
            f"<title>{escape(category.name)}: {category.mean:.1%}</title></rect>"
            f"<text x='{x_of(category.mean) + 6:.1f}' y='{y + 15}'>{category.mean:.0%}</text>"
        )
        if category.low is not None and category.high is not None:
            low, high, middle = x_of(category.low), x_of(category.high), y + bar_height / 2
            parts.append(
                f"<line class='punie-ci' x1='{low:.1f}' x2='{high:.1f}' y1='{middle}' "
                f"y2='{middle}' stroke='#222' />"
            )
        if category.threshold is not None:
            x = x_of(category.threshold)
            parts.append(
                f"<line class='punie-threshold' x1='{x:.1f}' x2='{x:.1f}' y1='{y - 3}' "
                f"y2='{y + bar_height + 3}' stroke='#d62728' stroke-width='2' />"
            )
        before = (baseline or {}).get(category.name)
        if before is not None:
            x = x_of(before)
            parts.append(
                f"<line class='punie-baseline' x1='{x:.1f}' x2='{x:.1f}' y1='{y - 3}' "
                f"y2='{y + bar_height + 3}' stroke='#ff7f0e' stroke-width='2' "
                "stroke-dasharray='3,2' />"
            )
    axis_y = height - 12
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_width + tick * width
        parts.append(f"<text x='{x:.1f}' y='{axis_y + 10}' text-anchor='middle'>{tick:.0%}</text>")
    parts.append("</svg>")
    legend = "bars: mean score; black line: 95% interval; red: threshold"
    if baseline:
        legend += "; dashed orange: baseline"
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>"


CHANGE_NAMES = {"fixed": "fixed", "broken": "broken", "same": "unchanged", "added": "new",
                "removed": "removed"}  # fmt: skip


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


def side_by_side_html(
    comparison: Comparison,
    baseline_cases: Iterable[Mapping[str, Any]],
    candidate_cases: Iterable[Mapping[str, Any]],
) -> str:
    """Each case's baseline answer and score next to this run's, filterable like a diff
    (fixed, broken, unchanged, new or removed) with radio buttons and CSS only."""
    before, after = _answers(baseline_cases), _answers(candidate_cases)
    counts = {name: 0 for name in CHANGE_NAMES}
    for case in comparison.cases:
        counts[case.change] += 1
    rows: list[list[str | Cell]] = [
        [
            case.nodeid,
            case.category,
            CHANGE_NAMES[case.change],
            Cell(percent(case.baseline_score)),
            Cell(before.get(case.nodeid, ""), html=trimmed_html(before.get(case.nodeid, ""), 300)),
            Cell(percent(case.candidate_score)),
            Cell(after.get(case.nodeid, ""), html=trimmed_html(after.get(case.nodeid, ""), 300)),
        ]
        for case in comparison.cases
    ]
    header = ["case", "category", "change", "baseline score", "baseline answer", "score", "answer"]
    table = Table.of(
        header, rows, left=(0, 1, 2, 4, 6), row_classes=[c.change for c in comparison.cases]
    )
    filters = [
        ("all", f"all ({len(comparison.cases)})"),
        ("fixed", f"fixed ({counts['fixed']})"),
        ("broken", f"broken ({counts['broken']})"),
        ("same", f"unchanged ({counts['same']})"),
        ("other", f"new or removed ({counts['added'] + counts['removed']})"),
    ]
    radios = "".join(
        f"<input type='radio' name='punie-sbs' id='punie-sbs-{key}'"
        f"{' checked' if key == 'all' else ''}><label for='punie-sbs-{key}'>{label}</label>"
        for key, label in filters
    )
    return (
        "<div id='punie-side-by-side'><h3>Side by side: "
        f"{escape(comparison.baseline_label)} | {escape(comparison.candidate_label)}</h3>"
        f"{radios}{to_html(table, css_class='punie-side-by-side')}</div>"
    )


# -- the history page and its trend charts --------------------------------------------------------

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#eeca3b")


def trend_chart_svg(category: str, recorded: Sequence[RunRow]) -> str:
    """One category's score over the recorded runs, one coloured line per model + adapter, each
    point with its 95% interval; partial runs hollow, void runs grey crosses (never joined)."""
    ordered = sorted(recorded, key=lambda r: (r.started or "", r.id))
    series: dict[tuple[str | None, str | None, str | None], str] = {}
    for run in ordered:
        series.setdefault(run.series, PALETTE[len(series) % len(PALETTE)])
    left, top, width, height = 44, 12, max(240, 28 * len(ordered)), 150
    step = width / max(len(ordered), 1)

    def x_of(index: int) -> float:
        return left + step * (index + 0.5)

    def y_of(value: float) -> float:
        return top + (1 - value) * height

    parts = [
        f"<svg class='punie-trend' data-category='{escape(category)}' "
        f"role='img' width='{left + width + 10}' "
        f"height='{top + height + 30}' aria-label='{escape(category)} over runs' "
        "style='font: 11px sans-serif'>"
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        parts.append(
            f"<line x1='{left}' x2='{left + width}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
            f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>{tick:.0%}</text>"
        )
    lines: dict[tuple[str | None, str | None, str | None], list[str]] = {}
    for index, run in enumerate(ordered):
        x = x_of(index)
        parts.append(
            f"<text x='{x:.1f}' y='{top + height + 14}' text-anchor='middle'>#{run.id}</text>"
        )
        stats = run.category(category) if category != "overall" else None
        value = run.overall if category == "overall" else (stats.mean if stats else None)
        if value is None:
            continue
        color = series[run.series]
        interval = ""
        if stats is not None:
            interval = f" (95% {stats.low:.0%}-{stats.high:.0%})"
            parts.append(
                f"<line class='punie-interval' x1='{x:.1f}' x2='{x:.1f}' "
                f"y1='{y_of(stats.low):.1f}' y2='{y_of(stats.high):.1f}' stroke='{color}' "
                "stroke-width='2' opacity='0.5'/>"
            )
        title = (
            f"<title>run {run.id}: {escape(run.name)}, {value:.1%}{interval}, "
            f"{escape(run.date)}, {escape(run.status_text)}</title>"
        )
        y = y_of(value)
        if run.status == "void":
            parts.append(
                f"<path class='punie-point punie-void' d='M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8' "
                f"stroke='#999' stroke-width='2'>{title}</path>"
            )
            continue
        fill = "white" if run.status == "partial" else color
        parts.append(
            f"<circle class='punie-point punie-{run.status}' cx='{x:.1f}' cy='{y:.1f}' r='4' "
            f"fill='{fill}' stroke='{color}' stroke-width='2'>{title}</circle>"
        )
        if run.status == "complete":
            lines.setdefault(run.series, []).append(f"{x:.1f},{y:.1f}")
    for key, points in lines.items():
        if len(points) > 1:
            parts.append(
                f"<polyline class='punie-line' points='{' '.join(points)}' fill='none' "
                f"stroke='{series[key]}' stroke-width='1.5'/>"
            )
    parts.append("</svg>")
    return f"<figure class='punie-trend-figure'><figcaption>{escape(category)}</figcaption>" + (
        "".join(parts) + "</figure>"
    )


HISTORY_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; }
th { background: #f3f3f3; }
strong { color: #064; }
tr.void td { color: #888; font-style: italic; }
tr.partial td { background: #fff7e6; }
.punie-trends { display: flex; flex-wrap: wrap; gap: 1em; }
.punie-trend-figure { margin: 0; }
.punie-trend-figure figcaption { font-weight: bold; }
.punie-legend span { display: inline-block; margin-right: 1.2em; }
.punie-legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; }
"""


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
    charts = "".join(trend_chart_svg(name, recorded) for name in ["overall", *names])
    seen: dict[tuple[str | None, str | None, str | None], str] = {}
    for run in sorted(recorded, key=lambda r: (r.started or "", r.id)):
        if run.series not in seen:
            seen[run.series] = run.name
    legend = "".join(
        f"<span><i style='background:{PALETTE[i % len(PALETTE)]}'></i>{escape(name)}</span>"
        for i, name in enumerate(seen.values())
    )
    void = [run for run in recorded if run.status != "complete"]
    void_note = (
        "<p class='punie-void-note'>Partial or void runs (infrastructure errors: timeouts, a "
        "dead server) are drawn hollow or as grey crosses, are not joined to their line and are "
        "never marked best: "
        + escape("; ".join(f"run {r.id} {r.name} ({r.status_text})" for r in void))
        + ".</p>"
        if void
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{HISTORY_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        "<h2>Trends</h2>"
        "<p>Each category's mean score over the recorded runs (oldest left), one colour per "
        "model + adapter; the vertical bars are 95% intervals. Hover a point for its run.</p>"
        f"<p class='punie-legend'>{legend}</p>"
        f"<div class='punie-trends'>{charts}</div>{void_note}"
        "<h2>Cumulative results</h2>"
        "<p>The latest complete run of each model/adapter; the best value of each column is in "
        "bold. Hover a score for its case count and 95% interval.</p>"
        f"{to_html(cumulative, 'punie-cumulative')}"
        f"<p>One case moves a category by: {escape(steps or '-')}.</p>"
        f"<h2>All runs ({len(recorded)})</h2>"
        f"{to_html(all_runs, 'punie-runs')}"
        "</body></html>\n"
    )
