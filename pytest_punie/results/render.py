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

    from pytest_punie.finetune.leakage import Neighbour
    from pytest_punie.results.compare import (
        CaseChange,
        CategoryComparison,
        Comparison,
        MatrixComparison,
        RunFigures,
    )
    from pytest_punie.results.parity import Parity, ParityRow
    from pytest_punie.results.regression_data import RegressionData
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
    "comparison_page",
    "comparison_table",
    "comparison_text",
    "detectable_line",
    "detectable_notes",
    "escape",
    "failure_table",
    "interval",
    "matrix_case_table",
    "matrix_category_table",
    "matrix_changes",
    "matrix_page",
    "matrix_text",
    "nearest_line",
    "nearest_lines_text",
    "parity_heading",
    "parity_table",
    "parity_text",
    "path_name",
    "percent",
    "points",
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


def interval(low: float | None, high: float | None) -> str:
    """A 95% interval as ``72%-88%``; "-" for none."""
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
            interval(c.low, c.high),
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


def points(change: float | None) -> str:
    """A detectable change in points, both ways: ``±12.8 pts``; "-" for none."""
    return "-" if change is None else f"\u00b1{change * 100:.1f} pts"


def detectable_line(categories: Iterable[CategoryScore]) -> str:
    """One line under the category table: how small a change each category could show
    (``stats.detectable_change``, as the results file holds it); "" without categories."""
    parts = [
        f"{c.name} {points(c.stats.detectable_change)} with {c.stats.cases} case(s)"
        for c in categories
        if c.stats is not None and c.stats.detectable_change is not None
    ]
    if not parts:
        return ""
    return f"detectable change (paired test, p < {ALPHA}, 80% power): " + ", ".join(parts)


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
    "detectable",
    "significant",
)


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _score(mean: float | None, low: float | None, high: float | None, intervals: bool) -> Cell:
    """A mean, with its 95% interval in the text (``intervals``) or as the cell's note."""
    shown = interval(low, high)
    if intervals and shown != "-":
        return Cell(f"{percent(mean)} ({shown})", mean)
    return Cell(percent(mean), mean, note="" if shown == "-" else f"95% CI {shown}")


def _comparison_row(category: CategoryComparison, intervals: bool) -> list[str | Cell]:
    b, c = category, category
    return [
        category.name,
        _score(b.baseline_mean, b.baseline_low, b.baseline_high, intervals),
        _score(c.candidate_mean, c.candidate_low, c.candidate_high, intervals),
        _change(category.difference),
        str(category.paired),
        _p(category.p_mcnemar) if category.paired else "-",
        _p(category.p_bootstrap) if category.paired else "-",
        Cell(
            points(category.detectable_change),
            category.detectable_change,
            note="the smallest change these paired cases could call significant",
        ),
        ("yes" if category.significant else "no") if category.paired else "-",
    ]


def comparison_table(comparison: Comparison, *, intervals: bool = False) -> Table:
    """Each category side by side, the overall row last; significant rows are marked. With
    ``intervals`` the means show their 95% intervals (else the intervals are the cells'
    notes)."""
    every = (*comparison.categories, comparison.overall)
    classes = [
        " ".join(
            [*(["significant"] if c.significant else []), *(["overall"] if c is every[-1] else [])]
        )
        for c in every
    ]
    rows = [_comparison_row(c, intervals) for c in every]
    return Table.of(COMPARISON_HEADER, rows, total_row=True, row_classes=classes)


def detectable_notes(comparison: Comparison) -> list[str]:
    """A line per category whose change is not significant and smaller than its paired cases
    could see: "not significant" there means "too few cases to tell"."""
    return [
        f"{c.name}: {_change(c.paired_difference)} is not significant, and {c.paired} paired "
        f"case(s) cannot tell a change under {points(c.detectable_change)} from noise"
        for c in (*comparison.categories, comparison.overall)
        if c.too_few_to_tell and c.detectable_change is not None
    ]


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
    notes = detectable_notes(comparison)
    if notes:
        lines += ["", "too few cases to tell:", *(f"  {note}" for note in notes)]
    lines += [
        "",
        f"significant: paired bootstrap p < {ALPHA} on the score change "
        "(cases paired by nodeid, repeats averaged)",
        f"detectable: the smallest change the paired cases could call significant "
        f"(p < {ALPHA}, 80% power)",
    ]
    return "\n".join(lines)


def comparison_html(comparison: Comparison) -> str:
    """The comparison as an HTML fragment: the table and the changed cases."""
    return render_html(
        "comparison.html",
        comparison=comparison,
        table=comparison_table(comparison),
        changes=[(title, cases) for title, cases in changed_cases(comparison) if cases],
        notes=detectable_notes(comparison),
    )


def comparison_page(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page (styles inline, no script)."""
    return render_html(
        "comparison_page.html",
        title=f"pytest-punie: {comparison.candidate_label} against {comparison.baseline_label}",
        comparison=comparison,
        table=comparison_table(comparison, intervals=True),
        changes=[(title, cases) for title, cases in changed_cases(comparison) if cases],
        notes=detectable_notes(comparison),
    )


# -- the data behind a regression ----------------------------------------------------------------


def nearest_line(neighbour: Neighbour) -> str:
    """A training line near a broken case, as the terminal and the report name it:
    ``train.jsonl:41 (0.42)``."""
    return f"{path_name(neighbour.file)}:{neighbour.line} ({neighbour.similarity:.2f})"


def nearest_lines_text(regression: RegressionData) -> list[str]:
    """The nearest training lines of each broken case, a line per case (none: no broken case)."""
    if not regression.cases:
        return []
    data = regression.data
    if data.path is None:
        return [f"nearest training lines of the broken cases: none ({data.source})"]
    lines = [
        f"nearest training lines of the broken cases (the leakage check's 5-gram similarity; "
        f"{regression.lines_searched} prompt(s) of {data.path}, from {data.source}):"
    ]
    for case in regression.cases:
        if case.prompt is None:
            found = "no prompt recorded"
        elif not case.lines:
            found = "no training line shares a 5-gram with its prompt"
        else:
            found = ", ".join(nearest_line(n) for n in case.lines)
        lines.append(f"  {case.nodeid}: {found}")
    return lines


# -- several runs beside a reference --------------------------------------------------------------


_MARKS = {"fixed": "fixed", "broken": "BROKEN", "added": "new", "removed": "gone"}


def matrix_case_table(matrix: MatrixComparison) -> Table:
    """One row per case, one column per run (its score; a later run's change against the
    reference beside it); rows a later run fixed or broke have the class ``changed``."""
    rows = []
    for case in matrix.cases:
        cells = [Cell(case.nodeid), Cell(case.category), Cell(percent(case.scores[0]))]
        for score, change in zip(case.scores[1:], case.changes, strict=True):
            mark = _MARKS.get(change or "", "")
            cells.append(Cell(f"{percent(score)} {mark}".rstrip(), score))
        rows.append(cells)
    classes = ["changed" if case.changed else "" for case in matrix.cases]
    header = ["case", "category", *matrix.labels]
    return Table.of(header, rows, left=(0, 1), row_classes=classes)


def _figures(figures: RunFigures) -> Cell:
    if figures.mean is None:
        return Cell("-")
    return Cell(
        f"{percent(figures.mean)} ({interval(figures.low, figures.high)})",
        figures.mean,
        note=f"{figures.cases} case(s); detectable change {points(figures.detectable_change)}",
    )


def matrix_category_table(matrix: MatrixComparison) -> Table:
    """Each category's mean with its 95% interval in each run, the overall row last."""
    rows: list[list[str | Cell]] = [
        [category.name, *(_figures(f) for f in category.runs)] for category in matrix.categories
    ]
    rows.append(["overall", *(Cell(percent(m), m) for m in matrix.overall)])
    return Table.of(["category", *matrix.labels], rows, total_row=True)


def matrix_changes(matrix: MatrixComparison) -> list[tuple[str, list[str], list[str]]]:
    """Per later run: a title and the lines of the cases it fixed and broke."""
    return [
        (
            f"{label} against {matrix.reference}: fixed {len(matrix.fixed(run))}, "
            f"broken {len(matrix.broken(run))}",
            [case_line(c) for c in matrix.fixed(run)],
            [case_line(c) for c in matrix.broken(run)],
        )
        for run, label in enumerate(matrix.labels[1:], start=1)
    ]


def matrix_text(matrix: MatrixComparison, legend: Sequence[str] = ()) -> str:
    """Several runs for the terminal: the category table, the case matrix, and per later run
    the cases it fixed and broke against the reference (the first run)."""
    lines = [*legend, *([""] if legend else [])]
    lines += ["categories (mean, 95% interval):", to_text(matrix_category_table(matrix)), ""]
    lines += [f"cases (against {matrix.reference}):", to_text(matrix_case_table(matrix))]
    for title, fixed, broken in matrix_changes(matrix):
        lines += ["", title]
        lines += [f"  fixed    {line}" for line in fixed]
        lines += [f"  broken   {line}" for line in broken]
    return "\n".join(lines)


def matrix_page(matrix: MatrixComparison, legend: Sequence[str] = ()) -> str:
    """Several runs as a self-contained HTML page (``matrix.html``)."""
    return render_html(
        "matrix.html",
        title=f"pytest-punie: {len(matrix.labels)} runs against {matrix.reference}",
        legend=list(legend),
        categories=matrix_category_table(matrix),
        cases=matrix_case_table(matrix),
        changes=matrix_changes(matrix),
    )


# -- parity: the adapter against the models derived from it --------------------------------------

PARITY_VERDICTS = {"same": "same", "ok": "ok", "worse": "WORSE", "missing": "MISSING"}


def _parity_cells(row: ParityRow | None) -> list[str | Cell]:
    if row is None:
        return ["-", "-", "-", "-"]
    allowed = "" if row.allowed_drop is None else f"; allowed drop {row.allowed_drop * 100:.1f} pts"
    return [
        Cell(percent(row.variant), row.variant, note=f"{row.paired} paired case(s){allowed}"),
        Cell(_change(row.change), row.change, note=f"{row.broken} broken, {row.fixed} fixed"),
        _p(row.p_bootstrap) if row.paired else "-",
        PARITY_VERDICTS[row.verdict] if row.allowed_drop is not None or row.verdict != "ok" else "",
    ]


def parity_table(parity: Parity) -> Table:
    """Per category (``overall`` last): the adapter's score, then each derived model's score,
    change, paired bootstrap p and verdict."""
    header = ["category", "adapter"]
    for variant in parity.variants:
        header += [variant.name, "change", "paired p", "verdict"]
    rows: list[list[str | Cell]] = []
    classes = []
    for name in parity.categories:
        rows_of = [variant.row(name) for variant in parity.variants]
        adapter = next((r.adapter for r in rows_of if r is not None), None)
        row: list[str | Cell] = [name, Cell(percent(adapter), adapter)]
        for found in rows_of:
            row += _parity_cells(found)
        rows.append(row)
        worse = any(r is not None and r.verdict in ("worse", "missing") for r in rows_of)
        overall = ["overall"] if name == "overall" else []
        classes.append(" ".join([*(["worse"] if worse else []), *overall]))
    return Table.of(header, rows, total_row=True, row_classes=classes)


def parity_heading(parity: Parity) -> str:
    """What the parity table compares, and the drop it allows (saying when it is the default)."""
    drop = ", ".join(f"{name}={value * 100:g}%" for name, value in sorted(parity.max_drop.items()))
    source = " (the default; --punie-max-regression chooses)" if parity.default_max_drop else ""
    names = ", ".join(v.name for v in parity.variants)
    return f"parity: the adapter as served against {names}; allowed drop {drop}{source}"


def parity_text(parity: Parity) -> str:
    """The parity check for the terminal: the heading, the table, each derived model's cases
    that broke, and what served each."""
    lines = [parity_heading(parity), "", to_text(parity_table(parity))]
    for variant in parity.variants:
        server = variant.server or {}
        where = server.get("base_url") or "not started (the cache answered)"
        if server.get("start_error"):
            where = f"failed to start: {str(server['start_error']).strip().splitlines()[0]}"
        lines += [
            "",
            f"{variant.name}: {server.get('model') or server.get('model_name')} ({where})",
        ]
        for title, nodeids in (("broken", variant.broken), ("fixed", variant.fixed)):
            if nodeids:
                lines.append(f"  {title} against the adapter: {len(nodeids)}")
                lines += [f"    {nodeid}" for nodeid in nodeids]
    lines += [
        "",
        "paired p: paired bootstrap on the score change (cases paired by id); same: every case "
        "scored as on the adapter; WORSE: dropped more than allowed",
    ]
    return "\n".join(lines)
