"""The category-score table, as terminal text and as HTML for pytest-html."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from pytest_punie.results import CategoryScore

__all__ = [
    "HEADER",
    "bar_chart_svg",
    "category_rows",
    "failure_table",
    "few_cases_warnings",
    "html_table",
    "path_name",
    "percent",
    "served_lines",
    "text_table",
]

HEADER = ["category", "cases", "passed", "errors", "score", "95% CI", "threshold", "result"]


def percent(value: float | None) -> str:
    """A score as a percentage with one decimal; "-" for none."""
    return "-" if value is None else f"{value:.1%}"


def path_name(path: str) -> str:
    """The last part of a model or adapter path (or repo id), for labels."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or path


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.0%}-{high:.0%}"


def category_rows(categories: Iterable[CategoryScore], overall: float | None) -> list[list[str]]:
    """The table's rows as strings, the overall row last."""
    categories = list(categories)
    rows = [
        [
            c.name,
            str(c.cases) if c.samples in (0, c.cases) else f"{c.cases}x{c.samples // c.cases}",
            str(c.passed),
            str(c.errors),
            percent(c.mean),
            _interval(c.low, c.high),
            percent(c.threshold),
            {True: "PASS", False: "FAIL", None: ""}[c.met],
        ]
        for c in categories
    ]
    rows.append(
        [
            "overall",
            str(sum(c.cases for c in categories)),
            str(sum(c.passed for c in categories)),
            str(sum(c.errors for c in categories)),
            percent(overall),
            "",
            "",
            "",
        ]
    )
    return rows


def few_cases_warnings(categories: Iterable[CategoryScore], min_cases: int) -> list[str]:
    """A warning for each category too small for its score to move smoothly."""
    return [
        f"WARNING: category {c.name!r} has {c.cases} case(s), fewer than {min_cases}: "
        f"its score moves in steps of {c.step:.0%}"
        for c in categories
        if c.cases < min_cases
    ]


def failure_table(categories: Iterable[CategoryScore]) -> tuple[list[str], list[list[str]]]:
    """Failed cases per category and failure type: a header and rows (none when nothing failed)."""
    categories = [c for c in categories if c.failures]
    kinds = sorted({kind for c in categories for kind in c.failures})
    rows = [[c.name, *(str(c.failures.get(kind, 0)) for kind in kinds)] for c in categories]
    return ["failures", *kinds], rows


def text_table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] = HEADER,
    *,
    total_row: bool = False,
    left: Collection[int] = (0,),
) -> str:
    """A plain aligned table: the ``left`` columns (names) left-aligned, the others (numbers)
    right-aligned; short rows are padded; with ``total_row``, a rule above the last row."""
    rows = [[*map(str, row), *[""] * (len(header) - len(row))] for row in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if total_row and len(body) > 1:
        body.insert(-1, rule)
    return "\n".join([line(header), rule, *body])


def served_lines(server: dict[str, Any] | None) -> list[str]:
    """What was actually served: model, adapter, hashes, server URL and BLAS."""
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
    if server.get("started_here"):
        lines.append(f"server: {server.get('base_url')} (started here, BLAS: {server.get('blas')})")
        lines.append(f"server log: {server.get('log_path')}")
    else:
        lines.append(
            f"server: {server.get('base_url')} (external, model {server.get('model_name')})"
        )
    return lines


def _html_rows(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_table(
    rows: Sequence[Sequence[str]],
    server: dict[str, Any] | None,
    gate: Sequence[str] | None,
    failures: tuple[list[str], list[list[str]]] | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The summary section pytest-html shows above its results table."""
    table = _html_rows(HEADER, rows, "punie-categories")
    if failures and failures[1]:
        table += "<h3>Failures by type</h3>" + _html_rows(*failures, "punie-failures")
    served = "".join(f"<li>{html.escape(line)}</li>" for line in served_lines(server))
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        table += f"<ul class='punie-warnings'>{items}</ul>"
    verdict = ""
    if gate is not None:
        verdict = (
            "<p class='punie-gate'>Gate: "
            + ("passed" if not gate else "FAILED: " + html.escape("; ".join(gate)))
            + "</p>"
        )
    style = (
        "<style>#punie-summary table{border-collapse:collapse;margin:6px 0}"
        "#punie-summary th,#punie-summary td{padding:3px 10px;border-bottom:1px solid #ddd;"
        "text-align:right}#punie-summary td:first-child,#punie-summary th:first-child"
        "{text-align:left}.punie-warnings{color:#a15c00}</style>"
    )
    return (
        f"<div id='punie-summary'>{style}<h2>Category scores</h2>{table}"
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
            f"{html.escape(category.name)}</text>"
            f"<rect class='punie-bar' x='{label_width}' y='{y}' "
            f"width='{category.mean * width:.1f}' height='{bar_height}' fill='#4c78a8'>"
            f"<title>{html.escape(category.name)}: {category.mean:.1%}</title></rect>"
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
