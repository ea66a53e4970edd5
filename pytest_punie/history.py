"""A local, append-only history of eval runs in SQLite, and the cumulative results table.

Each recorded run keeps what was served (model, adapter and their hashes), its metadata, its
category scores with confidence intervals, and every case sample. The cumulative table shows the
latest run of each model/adapter, with the best value of each score column marked, which replaces
keeping the table by hand in a journal.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_punie.report import path_name, percent, text_table
from pytest_punie.stats import CategoryStats, case_samples, category_intervals

if TYPE_CHECKING:
    import os

__all__ = [
    "DEFAULT_DB",
    "Cell",
    "RunRow",
    "add_parser",
    "cumulative_table",
    "format_history",
    "history_html",
    "latest_runs",
    "record_run",
    "runs",
]

DEFAULT_DB = Path(".punie") / "history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT,
    finished TEXT,
    model TEXT,
    adapter TEXT,
    model_hash TEXT,
    adapter_hash TEXT,
    label TEXT,
    overall REAL,
    metadata TEXT NOT NULL,
    categories TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    nodeid TEXT NOT NULL,
    category TEXT NOT NULL,
    outcome TEXT NOT NULL,
    score REAL NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 0,
    failure TEXT
);
CREATE INDEX IF NOT EXISTS cases_by_run ON cases (run_id);
CREATE TRIGGER IF NOT EXISTS runs_append_only_update BEFORE UPDATE ON runs
BEGIN SELECT RAISE(ABORT, 'the run history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_append_only_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'the run history is append-only'); END;
PRAGMA user_version = 1;
"""


@contextmanager
def _connect(db_path: str | os.PathLike[str], create: bool) -> Iterator[sqlite3.Connection]:
    path = Path(db_path)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise FileNotFoundError(f"no run history at {path}")
    with closing(sqlite3.connect(path, timeout=30)) as connection:
        with connection:  # one transaction: committed on success, rolled back on error
            try:
                if create:
                    connection.executescript(_SCHEMA)
                else:
                    connection.execute("SELECT 1 FROM runs LIMIT 1")
            except sqlite3.DatabaseError as error:
                raise ValueError(f"{path} is not a pytest-punie run history: {error}") from error
            yield connection


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def record_run(
    db_path: str | os.PathLike[str], document: Mapping[str, Any], label: str | None = None
) -> int:
    """Append a run's results document to the history (creating it) and return the run's id."""
    cases = document.get("cases")
    if not isinstance(cases, list):
        raise ValueError("not a pytest-punie results document: it has no 'cases' list")
    metadata = document.get("metadata") or {}
    server = metadata.get("server") or {}
    categories = category_intervals(cases)
    overall = document.get("overall")
    if not isinstance(overall, (int, float)):
        scores = [s.score for s in case_samples(cases).values()]
        overall = math.fsum(scores) / len(scores) if scores else None
    with _connect(db_path, create=True) as connection:
        cursor = connection.execute(
            "INSERT INTO runs (started, finished, model, adapter, model_hash, adapter_hash,"
            " label, overall, metadata, categories) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _text(metadata.get("started")),
                _text(metadata.get("finished")),
                _text(server.get("model") or server.get("model_name")),
                _text(server.get("adapter")),
                _text(server.get("model_hash")),
                _text(server.get("adapter_hash")),
                _text(label),
                overall,
                json.dumps(metadata, default=str),
                json.dumps([c.to_json() for c in categories.values()]),
            ),
        )
        run_id = cursor.lastrowid
        assert run_id is not None
        connection.executemany(
            "INSERT INTO cases (run_id, nodeid, category, outcome, score, repeat, failure)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    str(case["nodeid"]),
                    str(case.get("category", "")),
                    str(case.get("outcome", "")),
                    float(case.get("score", 0.0)),
                    int(case.get("repeat", 0)),
                    _text(case.get("failure")),
                )
                for case in cases
            ],
        )
    return run_id


@dataclass(frozen=True)
class RunRow:
    """One recorded run."""

    id: int
    started: str | None
    finished: str | None
    model: str | None
    adapter: str | None
    model_hash: str | None
    adapter_hash: str | None
    label: str | None
    overall: float | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    categories: tuple[CategoryStats, ...] = ()

    @property
    def name(self) -> str:
        """The label if given, else the adapter folder (or "base") and the model."""
        if self.label:
            return self.label
        adapter = path_name(self.adapter) if self.adapter else "base"
        return f"{adapter} ({path_name(self.model)})" if self.model else adapter

    @property
    def cases(self) -> int:
        return sum(c.cases for c in self.categories)

    @property
    def date(self) -> str:
        return (self.started or "")[:10]

    def category(self, name: str) -> CategoryStats | None:
        return next((c for c in self.categories if c.name == name), None)


def runs(db_path: str | os.PathLike[str]) -> list[RunRow]:
    """Every recorded run, oldest first.

    Raises FileNotFoundError when there is no history, ValueError for another kind of file.
    """
    with _connect(db_path, create=False) as connection:
        rows = connection.execute(
            "SELECT id, started, finished, model, adapter, model_hash, adapter_hash, label,"
            " overall, metadata, categories FROM runs ORDER BY id"
        ).fetchall()
    return [
        RunRow(
            id=row[0],
            started=row[1],
            finished=row[2],
            model=row[3],
            adapter=row[4],
            model_hash=row[5],
            adapter_hash=row[6],
            label=row[7],
            overall=row[8],
            metadata=json.loads(row[9]),
            categories=tuple(CategoryStats.from_json(c) for c in json.loads(row[10])),
        )
        for row in rows
    ]


def latest_runs(recorded: Sequence[RunRow]) -> list[RunRow]:
    """The latest run of each model + adapter (+ label), best overall first."""
    latest: dict[tuple[str | None, str | None, str | None], RunRow] = {}
    for run in sorted(recorded, key=lambda r: (r.started or "", r.id)):
        latest[(run.model, run.adapter, run.label)] = run
    return sorted(
        latest.values(),
        key=lambda r: (r.overall is None, -(r.overall or 0.0), r.name),
    )


@dataclass(frozen=True)
class Cell:
    """One cell of the cumulative table; ``best`` marks the best value of its column."""

    text: str
    value: float | None = None
    best: bool = False
    note: str = ""

    def __str__(self) -> str:
        return f"{self.text}*" if self.best else self.text


def _score_cell(stats: CategoryStats | None) -> Cell:
    if stats is None:
        return Cell("-")
    note = (
        f"{stats.cases} cases ({stats.samples} samples), 95% interval "
        f"{stats.low:.1%}-{stats.high:.1%}; one case moves it {stats.step:.1%}"
    )
    return Cell(percent(stats.mean), stats.mean, note=note)


def _mark_best(rows: list[list[Cell]], column: int) -> None:
    values = [value for row in rows if (value := row[column].value) is not None]
    if not values:
        return
    best = max(values)
    for row in rows:
        cell = row[column]
        if cell.value is not None and cell.value >= best - 1e-9:
            row[column] = Cell(cell.text, cell.value, True, cell.note)


def _table(recorded: Sequence[RunRow]) -> tuple[list[str], list[list[Cell]]]:
    shown = latest_runs(recorded)
    names = sorted({c.name for run in recorded for c in run.categories})
    header = ["model/adapter", "overall", *names, "cases", "date"]
    rows = [
        [
            Cell(run.name, note=f"run {run.id}: {run.model or '?'}, adapter {run.adapter or '-'}"),
            Cell(percent(run.overall), run.overall),
            *(_score_cell(run.category(name)) for name in names),
            Cell(str(run.cases)),
            Cell(run.date),
        ]
        for run in shown
    ]
    for column in range(1, 2 + len(names)):  # the score columns; a case count is not "better"
        _mark_best(rows, column)
    return header, rows


def cumulative_table(db_path: str | os.PathLike[str]) -> tuple[list[str], list[list[Cell]]]:
    """The cumulative results table: a header and one row per model/adapter (its latest run).

    Columns: model/adapter, overall, one per category seen in any run, cases, date. The best
    value of each score column is marked (``str(cell)`` ends with ``*``; ``cell.best``).
    """
    return _table(runs(db_path))


def _steps(recorded: Sequence[RunRow]) -> str:
    """How far one case moves each category, for the fewest cases among the shown runs."""
    fewest: dict[str, int] = {}
    for run in latest_runs(recorded):
        for c in run.categories:
            fewest[c.name] = min(fewest.get(c.name, c.cases), c.cases)
    return ", ".join(f"{name} {1 / n:.1%}" for name, n in sorted(fewest.items()))


def format_history(db_path: str | os.PathLike[str], all_runs: bool = False) -> str:
    """The cumulative table as terminal text (and, with ``all_runs``, every recorded run)."""
    recorded = runs(db_path)
    if not recorded:
        return f"no runs recorded in {db_path}"
    header, rows = _table(recorded)
    lines = [
        text_table([[str(c) for c in row] for row in rows], header),
        "",
        f"* best in its column. {len(recorded)} run(s) recorded in {db_path}.",
        f"One case moves a category by: {_steps(recorded)}.",
    ]
    if all_runs:
        header, all_rows = _all_runs(recorded)
        lines += ["", text_table(all_rows, header, left=(0, 1, 2, 5))]
    return "\n".join(lines)


def _all_runs(recorded: Sequence[RunRow]) -> tuple[list[str], list[list[str]]]:
    header = ["model/adapter", "run", "started", "overall", "cases", "git commit"]
    rows = [
        [
            run.name,
            str(run.id),
            run.started or "-",
            percent(run.overall),
            str(run.cases),
            str(run.metadata.get("git_commit") or "-")[:12],
        ]
        for run in reversed(recorded)
    ]
    return header, rows


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; }
td { text-align: right; } td:first-child { text-align: left; }
th { background: #f3f3f3; }
strong { color: #064; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Cell]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text = html.escape(cell.text)
            content = f"<strong>{text}</strong>" if cell.best else text
            title = f' title="{html.escape(cell.note)}"' if cell.note else ""
            cells.append(f"<td{title}>{content}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def history_html(db_path: str | os.PathLike[str], title: str = "pytest-punie run history") -> str:
    """A small self-contained HTML page: the cumulative table, then every recorded run."""
    recorded = runs(db_path)
    header, rows = _table(recorded)
    run_header, run_rows = _all_runs(recorded)
    run_cells = [[Cell(text) for text in row] for row in run_rows]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<h2>Cumulative results</h2>"
        "<p>The latest run of each model/adapter; the best value of each column is in bold. "
        "Hover a score for its case count and 95% interval.</p>"
        f"{_html_table(header, rows, 'punie-cumulative')}"
        f"<p>One case moves a category by: {html.escape(_steps(recorded) or '-')}.</p>"
        f"<h2>All runs ({len(recorded)})</h2>"
        f"{_html_table(run_header, run_cells, 'punie-runs')}"
        "</body></html>\n"
    )


# -- the ``punie history`` command ----------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    db_path = Path(args.db)
    if not db_path.is_file():
        print(
            f"punie history: no run history at {db_path} (record a run first, or pass --db)",
            file=sys.stderr,
        )
        return 2
    try:
        print(format_history(db_path, all_runs=args.all))
        page = history_html(db_path) if args.html else None
    except (OSError, ValueError) as error:
        print(f"punie history: {error}", file=sys.stderr)
        return 2
    if page is not None:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        print(f"wrote {out}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``punie history [--db PATH] [--html OUT.html] [--all]``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "history",
        help="the cumulative results table of the recorded runs",
        description="Show the cumulative results table of the recorded runs: the latest run "
        "of each model/adapter, the best value of each score column marked with '*'. Exits 2 "
        "when there is no history.",
    )
    parser.add_argument(
        "--db", default=str(DEFAULT_DB), metavar="PATH", help=f"the history (default {DEFAULT_DB})"
    )
    parser.add_argument("--html", metavar="OUT.html", help="also write the history as an HTML page")
    parser.add_argument("--all", action="store_true", help="also list every recorded run")
    handler: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(handler=handler)
    return parser
