"""Every table pytest-punie shows, as terminal text and as HTML, and the one place HTML is made:
the Jinja environment over ``results/templates``, autoescaping every value it is given.

Data modules (``run``, ``compare``, ``history``) hand typed values to this module and to
``report``; nothing here computes a score. A table is a :class:`~pytest_punie.results.table.Table`
of cells, rendered by :func:`to_text` for the terminal and :func:`to_html` (the ``table`` macro)
for a page: the two never drift apart. Terminal text is made in Python; HTML and SVG only by
templates.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_punie.results.labels import path_name, percent, run_label
from pytest_punie.results.stats import ALPHA
from pytest_punie.results.table import Cell, Table

if TYPE_CHECKING:
    from jinja2 import Environment

    from pytest_punie.results.compare import CaseChange, CategoryComparison, Comparison
    from pytest_punie.results.run import CategoryScore

__all__ = [
    "CATEGORY_HEADER",
    "CHANGE_TITLES",
    "COMPARISON_HEADER",
    "Cell",
    "Table",
    "case_line",
    "category_rows",
    "changed_cases",
    "comparison_html",
    "comparison_table",
    "comparison_text",
    "escape",
    "failure_table",
    "path_name",
    "percent",
    "render_html",
    "render_macro",
    "run_label",
    "text_table",
    "to_html",
    "to_text",
]

CATEGORY_HEADER = (
    "category", "cases", "passed", "errors", "score", "95% CI", "threshold", "result"
)  # fmt: skip


# -- HTML: the templates --------------------------------------------------------------------------


@functools.cache
def _environment() -> Environment:
    """The templates' environment, made on first use (Jinja stays out of ``pytest --help``).

    Every value a template prints is escaped (the ``.html`` and ``.svg`` templates and any other),
    and a name a template uses but was not given is an error, not an empty string.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("pytest_punie.results", "templates"),
        autoescape=select_autoescape(("html", "svg"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(template: str, **context: Any) -> str:
    """The template ``template`` (under ``results/templates``) rendered with ``context``."""
    return _environment().get_template(template).render(**context)


def render_macro(template: str, name: str, *args: Any) -> str:
    """One macro of ``template`` called with ``args`` (the templates' shared pieces)."""
    return str(getattr(_environment().get_template(template).module, name)(*args))


def escape(value: object) -> str:
    """``value`` as HTML text (quotes escaped too), for the few cells pytest-html takes as
    strings; everything else is escaped by the templates."""
    return html.escape(str(value), quote=True)


def to_html(table: Table, table_id: str = "", css_class: str = "punie-table") -> str:
    """The table as escaped HTML; a best cell is bold, a note is the cell's tooltip."""
    return render_macro("macros.html", "table", table, table_id, css_class)


# -- terminal text --------------------------------------------------------------------------------


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


def case_line(case: CaseChange) -> str:
    """One changed case in words: its nodeid and its score before and after."""
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


def changed_cases(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """Each kind of change (``CHANGE_TITLES``' titles) with its cases, as lines."""
    return [
        (title, [case_line(c) for c in comparison.cases if c.change == change])
        for change, title in CHANGE_TITLES
    ]


def comparison_text(comparison: Comparison) -> str:
    """The comparison for the terminal: the category table, then the changed cases."""
    lines = [
        f"baseline:  {comparison.baseline_label}",
        f"candidate: {comparison.candidate_label}",
        "",
        to_text(comparison_table(comparison)),
    ]
    for (change, _), (title, cases) in zip(CHANGE_TITLES, changed_cases(comparison), strict=True):
        if change in ("added", "removed") and not cases:
            continue
        lines += ["", f"{title}: {len(cases) or 'none'}", *(f"  {line}" for line in cases)]
    lines += [
        "",
        f"significant: paired bootstrap p < {ALPHA} on the score change "
        "(cases paired by nodeid, repeats averaged)",
    ]
    return "\n".join(lines)


def comparison_html(comparison: Comparison) -> str:
    """The comparison as an HTML fragment: the table and the changed cases."""
    return render_html(
        "comparison.html",
        comparison=comparison,
        table=comparison_table(comparison),
        changes=[(title, cases) for title, cases in changed_cases(comparison) if cases],
    )
