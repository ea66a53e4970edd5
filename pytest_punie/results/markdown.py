"""The run as GitHub-flavoured Markdown, for a CI job's summary page (``GITHUB_STEP_SUMMARY``).

Pure rendering: typed values in, text out (the figures are the document's and the comparison's;
nothing is computed here). Every user string (a nodeid, a category, a label, a gate message) is
escaped, so a ``|`` or a newline cannot break a table and ``<b>`` stays text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_punie.results.labels import percent
from pytest_punie.results.render import (
    comparison_table,
    detectable_notes,
    interval,
    parity_heading,
    parity_table,
    points,
)
from pytest_punie.results.table import Cell, Table

if TYPE_CHECKING:
    from pytest_punie.results.compare import Comparison
    from pytest_punie.results.document import RunDocument

__all__ = [
    "STEP_SUMMARY_VARIABLE",
    "append_step_summary",
    "category_table",
    "escape_markdown",
    "markdown_table",
    "run_markdown",
]

STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
    }
)


def escape_markdown(text: object) -> str:
    """``text`` as one line of literal Markdown: ``|`` and markup characters escaped, newlines
    (any line break) folded to spaces."""
    return " ".join(str(text).splitlines()).translate(_ESCAPES)


def markdown_table(table: Table) -> str:
    """A table in GitHub's pipe syntax; number columns right-aligned, a best cell in bold."""

    def cell(value: Cell | str) -> str:
        text = escape_markdown(value.text if isinstance(value, Cell) else value)
        return f"**{text}**" if isinstance(value, Cell) and value.best and text else text

    align = ["---" if i in table.left else "---:" for i in range(len(table.header))]
    lines = [
        "| " + " | ".join(cell(name) for name in table.header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for row in table.rows:
        cells = [cell(c) for c in row] + [""] * (len(table.header) - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def category_table(document: RunDocument) -> Table:
    """The run's categories: cases, passed, score with its 95% interval, the detectable change,
    the threshold and its verdict; the overall row last."""
    rows: list[list[str]] = []
    for c in document.categories:
        stats = c.stats
        rows.append(
            [
                c.name,
                str(c.cases),
                str(c.passed),
                percent(c.mean) if c.scored else "-",
                interval(c.low, c.high),
                points(stats.detectable_change if stats else None),
                percent(c.threshold),
                {True: "PASS", False: "FAIL", None: ""}[c.met],
            ]
        )
    rows.append(
        [
            "overall",
            str(sum(c.cases for c in document.categories)),
            str(sum(c.passed for c in document.categories)),
            percent(document.overall),
            "",
            "",
            "",
            "",
        ]
    )
    header = ("category", "cases", "passed", "score", "95% CI", "detectable", "threshold", "result")
    return Table.of(header, rows, total_row=True)


def _gate(gate: Sequence[str] | None) -> list[str]:
    if gate is None:
        return ["**Gate:** none (no threshold or maximum regression was set)"]
    if not gate:
        return ["**Gate: passed** (every threshold was met)"]
    return ["**Gate: FAILED**", "", *(f"- {escape_markdown(message)}" for message in gate)]


def run_markdown(
    document: RunDocument,
    comparison: Comparison | None = None,
    baseline_name: str | None = None,
) -> str:
    """The run's summary as Markdown: the category table (intervals and detectable change),
    the gate's verdict, and the comparison with the baseline when there is one."""
    lines = [
        f"## pytest-punie: {escape_markdown(document.label)}",
        "",
        markdown_table(category_table(document)),
        "",
        "Score: mean case score (repeats averaged) with its 95% bootstrap interval. Detectable: "
        "the smallest change a paired comparison with this many cases could call significant "
        "(p < 0.05, 80% power).",
        "",
        *_gate(document.gate),
    ]
    if comparison is not None:
        name = escape_markdown(baseline_name or comparison.baseline_label)
        lines += [
            "",
            f"### Compared with {name}",
            "",
            markdown_table(comparison_table(comparison, intervals=True)),
        ]
        fixed, broken = comparison.fixed, comparison.broken
        lines += ["", f"Fixed: {len(fixed)}, broken: {len(broken)}."]
        for title, cases in (("Fixed", fixed), ("Broken", broken)):
            if cases:
                lines += [
                    "",
                    f"<details><summary>{title} ({len(cases)})</summary>",
                    "",
                    *(
                        f"- {escape_markdown(c.nodeid)}: {percent(c.baseline_score)} -> "
                        f"{percent(c.candidate_score)}"
                        for c in cases
                    ),
                    "",
                    "</details>",
                ]
        notes = detectable_notes(comparison)
        if notes:
            lines += ["", "Too few cases to tell:", ""]
            lines += [f"- {escape_markdown(note)}" for note in notes]
    if document.parity is not None:
        lines += [
            "",
            "### Deployed is tested",
            "",
            escape_markdown(parity_heading(document.parity)),
            "",
            markdown_table(parity_table(document.parity)),
        ]
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str, path: str | os.PathLike[str] | None = None) -> Path | None:
    """Append ``markdown`` to the file ``GITHUB_STEP_SUMMARY`` names (never overwrite: other
    steps write there too); None when the variable is unset or empty."""
    target = path if path is not None else os.environ.get(STEP_SUMMARY_VARIABLE)
    if not target:
        return None
    target = Path(target)
    with target.open("a", encoding="utf-8") as stream:
        stream.write(("\n" if target.stat().st_size else "") + markdown)
    return target
