"""Every table pytest-punie shows, as terminal text and as HTML, and the formatting rules they
share: percentages, the name of a path, a run's label, escaping.

Data modules (``results``, ``compare``, ``history``) hand typed values to this module; nothing
here computes a score. A table is a :class:`Table` of :class:`Cell` values, rendered by
:func:`to_text` for the terminal and :func:`to_html` for a page: the two never drift apart.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_punie.results.stats import ALPHA

if TYPE_CHECKING:
    from pytest_punie.results.compare import CaseChange, CategoryComparison, Comparison
    from pytest_punie.results.run import CategoryScore

__all__ = [
    "CATEGORY_HEADER",
    "COMPARISON_HEADER",
    "Cell",
    "Table",
    "category_rows",
    "comparison_html",
    "comparison_table",
    "comparison_text",
    "escape",
    "failure_table",
    "path_name",
    "percent",
    "run_label",
    "text_table",
    "to_html",
    "to_text",
]

CATEGORY_HEADER = (
    "category", "cases", "passed", "errors", "score", "95% CI", "threshold", "result"
)  # fmt: skip


def escape(value: object) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe inside an attribute)."""
    return html.escape(str(value), quote=True)


def percent(value: float | None) -> str:
    """A score as a percentage with one decimal; "-" for none."""
    return "-" if value is None else f"{value:.1%}"


def path_name(path: str) -> str:
    """The last part of a model or adapter path (or repo id), for labels."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or path


def run_label(model: str | None, adapter: str | None, label: str | None = None) -> str:
    """The one name of a run everywhere: its label if given, else ``model + adapter`` or
    ``model (base)``; the model comes first because runs of one model are read together."""
    if label:
        return label
    model_part = path_name(model) if model else "unknown model"
    return f"{model_part} + {path_name(adapter)}" if adapter else f"{model_part} (base)"


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, the number it shows (to rank), whether it is the best of its
    column, a note (the HTML's tooltip) and, rarely, richer markup for HTML (already escaped,
    e.g. a long answer with the rest one click away; the text form uses ``text``)."""

    text: str
    value: float | None = None
    best: bool = False
    note: str = ""
    html: str | None = None

    def __str__(self) -> str:
        return f"{self.text}*" if self.best else self.text


@dataclass(frozen=True)
class Table:
    """A header and rows of cells; ``left`` columns are names (left-aligned), the others numbers.

    ``row_classes`` (one per row, or none) become the HTML rows' classes; with ``total_row`` the
    text form draws a rule above the last row.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    left: frozenset[int] = frozenset({0})
    total_row: bool = False
    row_classes: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        header: Sequence[str],
        rows: Iterable[Sequence[str | Cell]],
        *,
        left: Collection[int] = (0,),
        total_row: bool = False,
        row_classes: Sequence[str] = (),
    ) -> Table:
        """A table from strings or cells (a string becomes a plain cell)."""
        return cls(
            tuple(header),
            tuple(tuple(c if isinstance(c, Cell) else Cell(str(c)) for c in row) for row in rows),
            frozenset(left),
            total_row,
            tuple(row_classes),
        )


def text_table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] = CATEGORY_HEADER,
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


def to_text(table: Table) -> str:
    """The table for the terminal; a best cell ends with ``*``."""
    rows = [[str(cell) for cell in row] for row in table.rows]
    return text_table(rows, table.header, total_row=table.total_row, left=table.left)


def to_html(table: Table, table_id: str = "", css_class: str = "punie-table") -> str:
    """The table as escaped HTML; a best cell is bold, a note is the cell's tooltip."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = []
    for index, row in enumerate(table.rows):
        cells = []
        for column, cell in enumerate(row):
            text = escape(cell.text) if cell.html is None else cell.html
            content = f"<strong>{text}</strong>" if cell.best else text
            attributes = "" if column in table.left else ' class="num"'
            if cell.note:
                attributes += f' title="{escape(cell.note)}"'
            cells.append(f"<td{attributes}>{content}</td>")
        row_class = table.row_classes[index] if index < len(table.row_classes) else ""
        opening = f'<tr class="{escape(row_class)}">' if row_class else "<tr>"
        body.append(opening + "".join(cells) + "</tr>")
    identity = f' id="{escape(table_id)}"' if table_id else ""
    return (
        f'<table{identity} class="{escape(css_class)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# -- category scores ------------------------------------------------------------------------------


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.0%}-{high:.0%}"


def category_rows(categories: Iterable[CategoryScore], overall: float | None) -> list[list[str]]:
    """The category table's rows as strings (hooks may change them), the overall row last."""
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


def failure_table(categories: Iterable[CategoryScore]) -> Table:
    """Failed cases per category and failure type (no rows when nothing failed)."""
    categories = [c for c in categories if c.failures]
    kinds = sorted({kind for c in categories for kind in c.failures})
    rows = [[c.name, *(str(c.failures.get(kind, 0)) for kind in kinds)] for c in categories]
    return Table.of(["failures", *kinds], rows)


# -- comparison of two runs -----------------------------------------------------------------------

COMPARISON_HEADER = (
    "category",
    "baseline",
    "candidate",
    "change",
    "paired cases",
    "p (McNemar)",
    "p (bootstrap)",
    "significant",
)


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _comparison_row(category: CategoryComparison) -> list[str]:
    return [
        category.name,
        percent(category.baseline_mean),
        percent(category.candidate_mean),
        _change(category.difference),
        str(category.paired),
        _p(category.p_mcnemar) if category.paired else "-",
        _p(category.p_bootstrap) if category.paired else "-",
        ("yes" if category.significant else "no") if category.paired else "-",
    ]


def comparison_table(comparison: Comparison) -> Table:
    """Each category side by side, the overall row last; significant rows are marked."""
    every = (*comparison.categories, comparison.overall)
    classes = [
        " ".join(
            [*(["significant"] if c.significant else []), *(["overall"] if c is every[-1] else [])]
        )
        for c in every
    ]
    rows = [_comparison_row(c) for c in every]
    return Table.of(COMPARISON_HEADER, rows, total_row=True, row_classes=classes)


def _case_line(case: CaseChange) -> str:
    if case.change == "added":
        return f"{case.nodeid}  (new: {percent(case.candidate_score)})"
    if case.change == "removed":
        return f"{case.nodeid}  (was: {percent(case.baseline_score)})"
    return f"{case.nodeid}  {percent(case.baseline_score)} -> {percent(case.candidate_score)}"


CHANGE_TITLES = (
    ("fixed", "fixed (failed -> passed)"),
    ("broken", "broken (passed -> failed)"),
    ("added", "only in the candidate"),
    ("removed", "only in the baseline"),
)


def comparison_text(comparison: Comparison) -> str:
    """The comparison for the terminal: the category table, then the changed cases."""
    lines = [
        f"baseline:  {comparison.baseline_label}",
        f"candidate: {comparison.candidate_label}",
        "",
        to_text(comparison_table(comparison)),
    ]
    for change, title in CHANGE_TITLES:
        cases = [c for c in comparison.cases if c.change == change]
        if change in ("added", "removed") and not cases:
            continue
        lines += ["", f"{title}: {len(cases) or 'none'}", *(f"  {_case_line(c)}" for c in cases)]
    lines += [
        "",
        f"significant: paired bootstrap p < {ALPHA} on the score change "
        "(cases paired by nodeid, repeats averaged)",
    ]
    return "\n".join(lines)


def comparison_html(comparison: Comparison) -> str:
    """The comparison as an HTML fragment: the table and the changed cases."""
    parts = [
        '<div class="punie-comparison">',
        f"<p>baseline: {escape(comparison.baseline_label)}<br>"
        f"candidate: {escape(comparison.candidate_label)}</p>",
        to_html(comparison_table(comparison), css_class="punie-table punie-comparison-table"),
    ]
    for change, title in CHANGE_TITLES:
        cases = [c for c in comparison.cases if c.change == change]
        if cases:
            items = "".join(f"<li>{escape(_case_line(c))}</li>" for c in cases)
            parts.append(f"<h3>{escape(title)}: {len(cases)}</h3><ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)
