"""A local, append-only history of eval runs in SQLite, and the cumulative results table.

Each recorded run keeps what was served (model, adapter and their hashes), its metadata, its
overall and category figures as its results document states them (``stats.category_statistics``:
judge errors left out of the means, counted beside them), and every case sample. The cumulative
table shows the latest run of each model/adapter, with the best value of each score column
marked, which replaces keeping the table by hand in a journal.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pytest_punie.results.document import RunDocument, read_run
from pytest_punie.results.labels import percent, run_label
from pytest_punie.results.run import CaseResult
from pytest_punie.results.stats import CategoryStats, category_statistics, overall_mean
from pytest_punie.results.table import Cell, Table
from pytest_punie.scoring.judge import JUDGE_ERROR
from pytest_punie.system.files import atomic_write_text

__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "HistoryError",
    "HistoryLocked",
    "RunRow",
    "all_runs_table",
    "cumulative",
    "cumulative_table",
    "format_history",
    "hidden_runs",
    "history_html",
    "latest_runs",
    "pending_runs",
    "record_run",
    "runs",
    "steps",
]

DEFAULT_DB = Path(".punie") / "history.db"  # the one default; --punie-history uses it too
SCHEMA_VERSION = 2  # PRAGMA user_version of a history this code writes; it never goes down
# 2: each run's categories carry ``judge_errors``; runs recorded by schema 1 that had judge errors
# get their figures computed again from their cases when read (schema 1 counted them as 0).
LOCK_WAIT_S = 10.0  # how long a write waits for another process's lock before keeping the run
PENDING_SUFFIX = ".pending"  # runs kept while the history was locked: <db>.pending/*.json

_TABLES = """
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
"""
_INDEX_AND_TRIGGERS = """
CREATE INDEX IF NOT EXISTS cases_by_run ON cases (run_id);
CREATE TRIGGER IF NOT EXISTS runs_append_only_update BEFORE UPDATE ON runs
BEGIN SELECT RAISE(ABORT, 'the run history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_append_only_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'the run history is append-only'); END;
"""
# Columns added since the first histories (schema 0): added with their defaults on migration.
_ADDED_COLUMNS = {
    "runs": (("label", "TEXT"),),
    "cases": (("repeat", "INTEGER NOT NULL DEFAULT 0"), ("failure", "TEXT")),
}
_REQUIRED = {"runs": {"id", "metadata", "categories"}, "cases": {"run_id", "nodeid", "score"}}


class HistoryError(ValueError):
    """The file is not a history this version can use (another kind of file, a newer schema)."""


class HistoryLocked(OSError):
    """Another process held the history too long; ``pending`` is where the run was kept."""

    def __init__(self, message: str, pending: Path | None = None) -> None:
        super().__init__(message)
        self.pending = pending


def _is_locked(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def _prepare(connection: sqlite3.Connection, path: Path, create: bool) -> None:
    """Check that ``path`` is a punie history and bring an older one up to SCHEMA_VERSION.

    Never adds tables to an SQLite file holding other tables, never lowers ``user_version``.
    """
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        row[0]
        for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not row[0].startswith("sqlite_")
    }
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path} is a run history of a newer pytest-punie (schema {version}; this version "
            f"reads up to {SCHEMA_VERSION}): upgrade pytest-punie or choose another "
            "--punie-history"
        )
    if not tables:
        if not create:
            raise HistoryError(f"{path} is not a pytest-punie run history: it has no tables")
        connection.executescript(_TABLES + _INDEX_AND_TRIGGERS)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    found = {table: _columns(connection, table) for table in _REQUIRED if table in tables}
    if set(found) != set(_REQUIRED) or any(
        not _REQUIRED[table] <= columns for table, columns in found.items()
    ):
        raise HistoryError(
            f"{path} is not a pytest-punie run history (it holds the tables "
            f"{', '.join(sorted(tables))}); refusing to add the history's tables to it"
        )
    if version < SCHEMA_VERSION and create:  # migrate: only on a write, in its transaction
        for table, added in _ADDED_COLUMNS.items():
            for column, declaration in added:
                if column not in found[table]:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        connection.executescript(_INDEX_AND_TRIGGERS)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def _connect(
    db_path: str | os.PathLike[str], create: bool, wait: float = LOCK_WAIT_S
) -> Iterator[sqlite3.Connection]:
    path = Path(db_path)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise FileNotFoundError(f"no run history at {path}")
    # isolation_level=None: transactions are explicit, so a migration and a run are one
    with closing(sqlite3.connect(path, timeout=wait, isolation_level=None)) as connection:
        try:
            connection.execute("BEGIN IMMEDIATE" if create else "BEGIN")
            _prepare(connection, path, create)
        except sqlite3.Error as error:
            connection.rollback()
            if _is_locked(error):
                raise HistoryLocked(
                    f"the run history {path} is locked by another process (waited {wait:g} s)"
                ) from error
            raise HistoryError(f"{path} is not a pytest-punie run history: {error}") from error
        except BaseException:
            connection.rollback()
            raise
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def record_run(
    db_path: str | os.PathLike[str],
    document: RunDocument,
    label: str | None = None,
    *,
    wait: float = LOCK_WAIT_S,
) -> int:
    """Append a run's results document to the history (creating it) and return the run's id.

    The run's overall and category figures are the document's own. Runs kept earlier while
    the history was locked are added first. When another process holds the history for more
    than ``wait`` seconds, the run is kept in ``<db>.pending/`` (added by the next run that can
    write) and ``HistoryLocked`` says where.
    """
    path = Path(db_path)
    pending = pending_runs(path)
    try:
        with _connect(path, create=True, wait=wait) as connection:
            merged = [p for p in pending if _insert_pending(connection, p)]
            run_id = _insert(connection, document, label)
    except (HistoryLocked, sqlite3.OperationalError) as error:
        if isinstance(error, sqlite3.OperationalError) and not _is_locked(error):
            raise HistoryError(f"{path}: cannot write the run history: {error}") from error
        kept = _keep_pending(path, document, label)
        raise HistoryLocked(
            f"the run history {path} is locked by another process (waited {wait:g} s); "
            f"this run was kept in {kept} and will be added by the next run",
            kept,
        ) from error
    for done in merged:
        done.unlink(missing_ok=True)
    return run_id


def _pending_folder(path: Path) -> Path:
    return path.with_name(path.name + PENDING_SUFFIX)


def pending_runs(db_path: str | os.PathLike[str]) -> list[Path]:
    """The runs kept while the history was locked, waiting for the next run to add them."""
    return sorted(_pending_folder(Path(db_path)).glob("*.json"))


def _keep_pending(path: Path, document: RunDocument, label: str | None) -> Path:
    """Write the run next to the history, atomically, to be merged by a later run."""
    folder = _pending_folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{stamp}-{os.getpid()}.json"
    kept = {"label": label, "document": document.to_json()}
    atomic_write_text(target, json.dumps(kept, default=str))
    return target


def _insert_pending(connection: sqlite3.Connection, pending: Path) -> bool:
    """Add one kept run; a file that cannot be read is left where it is (never lost)."""
    try:
        kept = json.loads(pending.read_text(encoding="utf-8"))
        document = read_run(kept["document"], str(pending))
        label = kept.get("label")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    _insert(connection, document, str(label) if label else None)
    return True


def _insert(connection: sqlite3.Connection, document: RunDocument, label: str | None) -> int:
    metadata = document.metadata
    server = metadata.server or {}
    categories = [c.stats.to_json() for c in document.categories if c.stats is not None]
    cursor = connection.execute(
        "INSERT INTO runs (started, finished, model, adapter, model_hash, adapter_hash,"
        " label, overall, metadata, categories) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            _text(metadata.started),
            _text(metadata.finished),
            _text(server.get("model") or server.get("model_name")),
            _text(server.get("adapter")),
            _text(server.get("model_hash")),
            _text(server.get("adapter_hash")),
            _text(label),
            document.overall,
            json.dumps(metadata.to_json(), default=str),
            json.dumps(categories),
        ),
    )
    run_id = cursor.lastrowid
    assert run_id is not None
    connection.executemany(
        "INSERT INTO cases (run_id, nodeid, category, outcome, score, repeat, failure)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (run_id, c.nodeid, c.category, c.outcome, c.score, c.repeat, _text(c.failure))
            for c in document.cases
        ],
    )
    return run_id


VOID_SHARE = 0.5  # a run in which at least this share of the samples errored is void

Status = Literal["complete", "partial", "void"]


@dataclass(frozen=True)
class RunRow:
    """One recorded run; ``errors`` counts its samples that errored (timeouts, a dead server)."""

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
    errors: int = 0
    samples: int = 0

    @property
    def name(self) -> str:
        """The run's label (``render.run_label``: ``model + adapter`` or ``model (base)``)."""
        return run_label(self.model, self.adapter, self.label)

    @property
    def series(self) -> tuple[str | None, str | None, str | None]:
        """What the run measured: model, adapter and label; trends follow one series."""
        return (self.model, self.adapter, self.label)

    @property
    def cases(self) -> int:
        return sum(c.cases for c in self.categories)

    @property
    def date(self) -> str:
        return (self.started or "")[:10]

    @property
    def status(self) -> Status:
        """complete; partial when some cases errored; void when half or more of them did."""
        if not self.errors:
            return "complete"
        return "void" if self.errors >= VOID_SHARE * max(self.samples, 1) else "partial"

    @property
    def status_text(self) -> str:
        if self.status == "complete":
            return "ok"
        return f"{self.status}: {self.errors} of {self.samples} errored"

    def category(self, name: str) -> CategoryStats | None:
        return next((c for c in self.categories if c.name == name), None)


def runs(db_path: str | os.PathLike[str]) -> list[RunRow]:
    """Every recorded run, oldest first.

    Raises FileNotFoundError when there is no history, HistoryError (a ValueError) for another
    kind of file, HistoryLocked (an OSError) when another process holds it too long.
    """
    with _connect(db_path, create=False) as connection:
        # a history older than SCHEMA_VERSION is read as it is (migrated on the next write)
        columns = _columns(connection, "runs")
        label = "label" if "label" in columns else "NULL"
        judged = (
            "(SELECT COUNT(*) FROM cases WHERE run_id = runs.id AND failure = ?)"
            if "failure" in _columns(connection, "cases")
            else "0 + ?"
        )
        rows = connection.execute(
            "SELECT id, started, finished, model, adapter, model_hash, adapter_hash, "
            f"{label}, overall, metadata, categories,"
            " (SELECT COUNT(*) FROM cases WHERE run_id = runs.id AND outcome = 'error'),"
            f" (SELECT COUNT(*) FROM cases WHERE run_id = runs.id), {judged}"
            " FROM runs ORDER BY id",
            (JUDGE_ERROR,),
        ).fetchall()
        recorded = []
        for row in rows:
            overall: float | None = row[8]
            stored = json.loads(row[10])
            if row[13] and not any("judge_errors" in c for c in stored):
                overall, stored = _figures_again(connection, row[0])
            recorded.append(
                RunRow(
                    id=row[0],
                    started=row[1],
                    finished=row[2],
                    model=row[3],
                    adapter=row[4],
                    model_hash=row[5],
                    adapter_hash=row[6],
                    label=row[7],
                    overall=overall,
                    metadata=json.loads(row[9]),
                    categories=tuple(CategoryStats.from_json(c) for c in stored),
                    errors=row[11],
                    samples=row[12],
                )
            )
    return recorded


def _figures_again(
    connection: sqlite3.Connection, run_id: int
) -> tuple[float | None, list[dict[str, Any]]]:
    """The overall and category figures of a run recorded by schema 1, which counted judge
    errors as 0: computed again from its cases by today's rule."""
    cases = [
        CaseResult(nodeid=row[0], category=row[1], outcome=row[2], score=row[3], failure=row[4])
        for row in connection.execute(
            "SELECT nodeid, category, outcome, score, failure FROM cases WHERE run_id = ?",
            (run_id,),
        )
    ]
    categories = [c.to_json() for c in category_statistics(cases).values()]
    return overall_mean(cases), categories


def latest_runs(recorded: Sequence[RunRow]) -> list[RunRow]:
    """The latest complete run of each model + adapter (+ label), best overall first; a series
    with no complete run shows its latest run (marked, never ranked)."""
    latest: dict[tuple[str | None, str | None, str | None], RunRow] = {}
    for run in sorted(recorded, key=lambda r: (r.started or "", r.id)):
        shown = latest.get(run.series)
        if shown is None or run.status == "complete" or shown.status != "complete":
            latest[run.series] = run
    return sorted(
        latest.values(),
        key=lambda r: (r.status != "complete", r.overall is None, -(r.overall or 0.0), r.name),
    )


def hidden_runs(recorded: Sequence[RunRow]) -> list[RunRow]:
    """Partial or void runs newer than the complete run the cumulative table shows instead."""
    shown = {run.series: run for run in latest_runs(recorded)}
    return [
        run
        for run in recorded
        if run.status != "complete"
        and run is not shown[run.series]
        and (run.started or "", run.id) > (shown[run.series].started or "", shown[run.series].id)
    ]


def _score_cell(stats: CategoryStats | None) -> Cell:
    if stats is None:
        return Cell("-")
    note = (
        f"{stats.cases} cases ({stats.samples} samples), 95% interval "
        f"{stats.low:.1%}-{stats.high:.1%}; one case moves it {stats.step:.1%}"
    )
    return Cell(percent(stats.mean), stats.mean, note=note)


def _mark_best(rows: list[list[Cell]], column: int, ranked: Sequence[bool]) -> None:
    values = [
        value
        for row, rank in zip(rows, ranked, strict=True)
        if rank and (value := row[column].value) is not None
    ]
    if not values:
        return
    best = max(values)
    for row, rank in zip(rows, ranked, strict=True):
        cell = row[column]
        if rank and cell.value is not None and cell.value >= best - 1e-9:
            row[column] = Cell(cell.text, cell.value, True, cell.note, cell.html)


def cumulative(recorded: Sequence[RunRow]) -> Table:
    """The cumulative results table: one row per model/adapter (its latest complete run).

    Columns: model/adapter, overall, one per category seen in any run, cases, status, date.
    The best value of each score column among complete runs is marked (``cell.best``); a
    partial or void run is shown with its error count and never marked best.
    """
    shown = latest_runs(recorded)
    names = sorted({c.name for run in recorded for c in run.categories})
    header = ["model/adapter", "overall", *names, "cases", "status", "date"]
    rows = [
        [
            Cell(run.name, note=f"run {run.id}: {run.model or '?'}, adapter {run.adapter or '-'}"),
            Cell(percent(run.overall), run.overall),
            *(_score_cell(run.category(name)) for name in names),
            Cell(str(run.cases)),
            Cell(run.status_text),
            Cell(run.date),
        ]
        for run in shown
    ]
    ranked = [run.status == "complete" for run in shown]
    for column in range(1, 2 + len(names)):  # the score columns; a case count is not "better"
        _mark_best(rows, column, ranked)
    classes = [run.status for run in shown]
    left = (0, len(header) - 2, len(header) - 1)
    return Table.of(header, rows, left=left, row_classes=classes)


def cumulative_table(db_path: str | os.PathLike[str]) -> Table:
    """The cumulative results table of the history at ``db_path`` (see ``cumulative``)."""
    return cumulative(runs(db_path))


def steps(recorded: Sequence[RunRow]) -> str:
    """How far one case moves each category, for the fewest cases among the shown runs."""
    fewest: dict[str, int] = {}
    for run in latest_runs(recorded):
        for c in run.categories:
            fewest[c.name] = min(fewest.get(c.name, c.cases), c.cases)
    return ", ".join(f"{name} {1 / n:.1%}" for name, n in sorted(fewest.items()))


def all_runs_table(recorded: Sequence[RunRow]) -> Table:
    """Every recorded run, newest first, with its status."""
    header = ["model/adapter", "run", "started", "overall", "cases", "status", "git commit"]
    rows = [
        [
            run.name,
            str(run.id),
            run.started or "-",
            percent(run.overall),
            str(run.cases),
            run.status_text,
            str(run.metadata.get("git_commit") or "-")[:12],
        ]
        for run in reversed(recorded)
    ]
    classes = [run.status for run in reversed(recorded)]
    return Table.of(header, rows, left=(0, 1, 2, 5, 6), row_classes=classes)


def format_history(db_path: str | os.PathLike[str], all_runs: bool = False) -> str:
    """The cumulative table as terminal text (and, with ``all_runs``, every recorded run).

    Made by ``report.history_text`` (imported on call: this data module imports no renderer).
    """
    from pytest_punie.results import report

    return report.history_text(runs(db_path), db_path, pending_runs(db_path), all_runs)


def history_html(db_path: str | os.PathLike[str], title: str = "pytest-punie run history") -> str:
    """A self-contained HTML page: trend charts, the cumulative table, every recorded run.

    Kept for callers of ``history.history_html``: the page is made by ``report.history_html``
    (imported here on call, so this data module imports no renderer).
    """
    from pytest_punie.results import report

    return report.history_html(db_path, title)
