"""The category-score table, as terminal text and as HTML for pytest-html."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pytest_punie.results import CategoryScore

__all__ = [
    "HEADER",
    "category_rows",
    "failure_table",
    "html_table",
    "served_lines",
    "text_table",
]

HEADER = ["category", "cases", "passed", "errors", "score", "threshold", "result"]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def category_rows(categories: Iterable[CategoryScore], overall: float | None) -> list[list[str]]:
    """The table's rows as strings, the overall row last."""
    categories = list(categories)
    rows = [
        [
            c.name,
            str(c.cases),
            str(c.passed),
            str(c.errors),
            _percent(c.mean),
            _percent(c.threshold),
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
            _percent(overall),
            "",
            "",
        ]
    )
    return rows


def failure_table(categories: Iterable[CategoryScore]) -> tuple[list[str], list[list[str]]]:
    """Failed cases per category and failure type: a header and rows (none when nothing failed)."""
    categories = [c for c in categories if c.failures]
    kinds = sorted({kind for c in categories for kind in c.failures})
    rows = [[c.name, *(str(c.failures.get(kind, 0)) for kind in kinds)] for c in categories]
    return ["failures", *kinds], rows


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """A plain aligned table (names left, numbers right)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if len(body) > 1:
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
) -> str:
    """The summary section pytest-html shows above its results table."""
    table = _html_rows(HEADER, rows, "punie-categories")
    if failures and failures[1]:
        table += "<h3>Failures by type</h3>" + _html_rows(*failures, "punie-failures")
    served = "".join(f"<li>{html.escape(line)}</li>" for line in served_lines(server))
    verdict = ""
    if gate is not None:
        verdict = (
            "<p class='punie-gate'>Gate: "
            + ("passed" if not gate else "FAILED: " + html.escape("; ".join(gate)))
            + "</p>"
        )
    return (
        f"<div id='punie-summary'><h2>Category scores</h2>{table}"
        f"{verdict}<ul class='punie-served'>{served}</ul></div>"
    )
