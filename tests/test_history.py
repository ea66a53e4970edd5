"""Tests for the run history (``pytest_punie.results.history``) and ``punie history``."""

from __future__ import annotations

import argparse
import re
import sqlite3
from pathlib import Path

import pytest

from pytest_punie.cli.history import add_parser
from pytest_punie.results import history
from pytest_punie.results.document import RunDocument
from pytest_punie.results.history import (
    DEFAULT_DB,
    RunRow,
    cumulative_table,
    format_history,
    history_html,
    record_run,
    runs,
)
from pytest_punie.results.table import Cell

from .test_compare import assert_well_formed, case, document, judge_error

BASE = "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit"
BIG = "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"


def scored(code: int, reasoning: int, tools: int, **run: str | None) -> RunDocument:
    """A run with 8 code, 4 reasoning and 6 tool cases, of which the given numbers pass."""
    cases = [case(f"evals/test_code.py::test_{i}", "code", passed=i < code) for i in range(8)]
    cases += [case(f"evals/test_reason.py::test_{i}", "reasoning", i < reasoning) for i in range(4)]
    cases += [case(f"evals/test_tools.py::test_{i}", "tools", i < tools) for i in range(6)]
    return document(cases, **run)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A history like the journal's: two base models, two adapters, one adapter re-run."""
    path = tmp_path / "deep" / "er" / "history.db"
    record_run(path, scored(8, 4, 2, started="2026-02-11T09:00:00+00:00"))
    demo = "adapters/successful-demo"
    record_run(path, scored(7, 4, 2, adapter=demo, started="2026-02-11T10:00:00+00:00"))
    record_run(path, scored(7, 2, 3, model=BIG, started="2026-02-11T11:00:00+00:00"))
    # the glaive adapter, evaluated twice: the later run is the one the table shows
    glaive = "adapters/glaive-function-calling"
    record_run(path, scored(2, 1, 1, adapter=glaive, started="2026-02-11T12:00:00+00:00"))
    record_run(path, scored(5, 3, 2, adapter=glaive, started="2026-02-12T08:00:00+00:00"))
    return path


def test_record_run_creates_folders_and_returns_ids(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "history.db"
    first = record_run(path, scored(8, 4, 2))
    second = record_run(path, scored(8, 4, 2))
    assert path.is_file()
    assert second == first + 1


def test_record_run_is_append_only(db: Path) -> None:
    before = runs(db)
    record_run(db, scored(1, 1, 1), label="again")
    after = runs(db)
    assert after[:-1] == before
    assert after[-1].label == "again"
    with sqlite3.connect(db) as connection, pytest.raises(sqlite3.DatabaseError, match="append"):
        connection.execute("DELETE FROM runs")
    connection.close()
    assert len(runs(db)) == 6


def test_runs_keep_what_was_served(db: Path) -> None:
    recorded = runs(db)
    assert [r.id for r in recorded] == [1, 2, 3, 4, 5]
    demo = recorded[1]
    assert isinstance(demo, RunRow)
    assert demo.model == BASE
    assert demo.adapter == "adapters/successful-demo"
    assert demo.model_hash == "a" * 64
    assert demo.adapter_hash == "b" * 64
    assert demo.name == "Qwen2.5-Coder-1.5B-Instruct-4bit + successful-demo"
    assert recorded[0].name == "Qwen2.5-Coder-1.5B-Instruct-4bit (base)"
    assert demo.metadata["git_commit"] == "0123456789abcdef"
    assert demo.cases == 18
    assert demo.date == "2026-02-11"
    assert demo.overall == pytest.approx((7 + 4 + 2) / 18)
    tools = demo.category("tools")
    assert tools is not None
    assert tools.cases == 6
    assert tools.mean == pytest.approx(2 / 6)
    assert tools.step == pytest.approx(1 / 6)
    assert tools.low <= tools.mean <= tools.high
    assert demo.category("missing") is None


def test_cases_table_keeps_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    repeated = [case("t.py::test_a", passed=r != 1, repeat=r) for r in range(3)]
    run_id = record_run(path, document([*repeated, case("t.py::test_b", "code", passed=False)]))
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT nodeid, category, outcome, score, repeat, failure FROM cases"
            " WHERE run_id = ? ORDER BY nodeid, repeat",
            (run_id,),
        ).fetchall()
    connection.close()
    assert rows == [
        ("t.py::test_a", "tools", "passed", 1.0, 0, None),
        ("t.py::test_a", "tools", "failed", 0.0, 1, "wrong tool"),
        ("t.py::test_a", "tools", "passed", 1.0, 2, None),
        ("t.py::test_b", "code", "failed", 0.0, 0, "wrong tool"),
    ]
    [run] = runs(path)
    assert run.cases == 2  # cases, not samples
    tools = run.category("tools")
    assert tools is not None
    assert tools.samples == 3


def test_a_kept_run_that_cannot_be_read_waits_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    kept = tmp_path / "history.db.pending" / "broken.json"
    kept.parent.mkdir()
    kept.write_text('{"label": "x", "document": {"overall": 1.0}}')
    record_run(path, scored(8, 4, 2))
    assert [r.label for r in runs(path)] == [None]
    assert kept.is_file()


def test_a_run_keeps_the_figures_of_its_document(tmp_path: Path) -> None:
    """The history's overall and category figures are the results document's, judge errors
    left out of the means and counted beside them."""
    path = tmp_path / "history.db"
    recorded = document(
        [case("t.py::a"), case("t.py::b", passed=False), judge_error("t.py::c"),
         case("t.py::d", "code"), judge_error("t.py::e", "judged")]
    )  # fmt: skip
    record_run(path, recorded)
    [run] = runs(path)
    assert run.overall == recorded.overall == pytest.approx(2 / 3)
    tools, stated = run.category("tools"), recorded.category("tools")
    assert tools is not None
    assert stated is not None
    assert tools == stated.stats
    assert (tools.mean, tools.cases, tools.judge_errors) == (0.5, 2, 1)
    assert run.category("judged") is None  # no scored case: no figure, "-" in the table
    assert [c.name for c in run.categories] == ["code", "tools"]


def test_runs_without_history(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(FileNotFoundError, match=r"none\.db"):
        runs(missing)
    assert not missing.exists()  # reading never creates a database


def test_cumulative_table_latest_run_per_model_and_adapter(db: Path) -> None:
    table = cumulative_table(db)
    header, rows = table.header, table.rows
    assert header == (
        "model/adapter", "overall", "code", "reasoning", "tools", "cases", "status", "date"
    )  # fmt: skip
    text = [[str(cell) for cell in row] for row in rows]
    assert text == [
        # best overall first; the best value of each score column ends with "*"
        ["Qwen2.5-Coder-1.5B-Instruct-4bit (base)", "77.8%*", "100.0%*", "100.0%*", "33.3%", "18",
         "ok", "2026-02-11"],
        ["Qwen2.5-Coder-1.5B-Instruct-4bit + successful-demo", "72.2%", "87.5%", "100.0%*",
         "33.3%", "18", "ok", "2026-02-11"],
        ["Qwen3-Coder-30B-A3B-Instruct-4bit (base)", "66.7%", "87.5%", "50.0%", "50.0%*", "18",
         "ok", "2026-02-11"],
        ["Qwen2.5-Coder-1.5B-Instruct-4bit + glaive-function-calling", "55.6%", "62.5%", "75.0%",
         "33.3%", "18", "ok", "2026-02-12"],
    ]  # fmt: skip
    best = rows[0][1]
    assert isinstance(best, Cell)
    assert best.best
    assert best.value == pytest.approx(14 / 18)
    assert not rows[0][5].best  # the case count is not a score
    assert "95% interval" in rows[0][4].note


def test_cumulative_table_rows_by_label(db: Path) -> None:
    record_run(db, scored(8, 4, 6, started="2026-02-13T08:00:00+00:00"), label="1.5B sampled")
    rows = cumulative_table(db).rows
    assert [str(row[0]) for row in rows][:2] == [
        "1.5B sampled",
        "Qwen2.5-Coder-1.5B-Instruct-4bit (base)",
    ]
    assert str(rows[0][1]) == "100.0%*"
    assert str(rows[1][1]) == "77.8%"  # no longer the best


def test_cumulative_table_categories_seen_in_any_run(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, document([case("t.py::test_a", "code")]))
    record_run(path, document([case("t.py::test_b", "tools", passed=False)], adapter="x/y"))
    table = cumulative_table(path)
    header, rows = table.header, table.rows
    assert header[2:4] == ("code", "tools")
    assert [[str(c) for c in row[:4]] for row in rows] == [
        ["Qwen2.5-Coder-1.5B-Instruct-4bit (base)", "100.0%*", "100.0%*", "-"],
        ["Qwen2.5-Coder-1.5B-Instruct-4bit + y", "0.0%", "-", "0.0%*"],
    ]


def test_format_history(db: Path) -> None:
    text = format_history(db)
    lines = text.splitlines()
    assert lines[0].split() == [
        "model/adapter", "overall", "code", "reasoning", "tools", "cases", "status", "date"
    ]  # fmt: skip
    assert lines[2].startswith("Qwen2.5-Coder-1.5B-Instruct-4bit (base)  ")
    assert "77.8%*" in lines[2]
    assert "* best in its column (complete runs only). 5 run(s) recorded" in text
    assert "One case moves a category by: code 12.5%, reasoning 25.0%, tools 16.7%." in text
    assert "git commit" not in text
    everything = format_history(db, all_runs=True)
    assert "git commit" in everything
    assert "0123456789ab" in everything


def test_format_history_without_runs(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with history._connect(path, create=True):  # the tables, and no run
        pass
    assert runs(path) == []
    assert format_history(path) == f"no runs recorded in {path}"
    table = cumulative_table(path)
    assert table.header == ("model/adapter", "overall", "cases", "status", "date")
    assert table.rows == ()


@pytest.mark.parametrize("content", [b"", b'{"cases": []}'])
def test_not_a_history(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"results\.json is not a pytest-punie run history"):
        runs(path)
    assert run_cli("history", "--db", str(path)) == 2
    assert "is not a pytest-punie run history" in capsys.readouterr().err
    assert path.read_bytes() == content


def test_history_html_is_a_small_page(db: Path) -> None:
    page = history_html(db)
    assert page.startswith("<!DOCTYPE html>")
    tags = assert_well_formed(page.removeprefix("<!DOCTYPE html>\n"))
    assert tags[:2] == ["html", "head"]
    assert tags.count("table") == 2
    assert "<strong>77.8%</strong>" in page
    assert "<strong>72.2%</strong>" not in page
    assert "http" not in page.replace("http://127.0.0.1", "")  # no external resources
    assert "<script" not in page
    assert "All runs (5)" in page


def test_history_html_escapes_labels(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, document([case("t.py::test_a", "<i>code</i>")]), label="a<b & c")
    page = history_html(path)
    assert_well_formed(page.removeprefix("<!DOCTYPE html>\n"))
    assert "a&lt;b &amp; c" in page
    assert "<i>" not in page


# -- punie history --------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="punie")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_cli_history(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("history", "--db", str(db)) == 0
    out, err = capsys.readouterr()
    assert out == format_history(db) + "\n"
    assert err == ""


def test_cli_history_html(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "report" / "history.html"
    assert run_cli("history", "--db", str(db), "--html", str(out_file), "--all") == 0
    out = capsys.readouterr().out
    assert f"wrote {out_file}" in out
    assert "git commit" in out
    assert out_file.read_text(encoding="utf-8") == history_html(db)


def test_cli_history_default_db(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(db.parent)
    assert run_cli("history") == 2
    assert str(DEFAULT_DB) in capsys.readouterr().err
    (db.parent / ".punie").mkdir()
    db.rename(db.parent / DEFAULT_DB)
    assert run_cli("history") == 0
    assert "77.8%*" in capsys.readouterr().out


def test_cli_history_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.db"
    assert run_cli("history", "--db", str(missing)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("punie history: no run history at ")
    assert str(missing) in err
    assert not missing.exists()


# -- schema migration, other files, locks (issue 11 points 8 and 14) -----------------------------

OLD_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT, finished TEXT, model TEXT,
    adapter TEXT, model_hash TEXT, adapter_hash TEXT, overall REAL, metadata TEXT NOT NULL,
    categories TEXT NOT NULL);
CREATE TABLE cases (run_id INTEGER NOT NULL, nodeid TEXT NOT NULL, category TEXT NOT NULL,
    outcome TEXT NOT NULL, score REAL NOT NULL);
INSERT INTO runs (started, model, overall, metadata, categories)
    VALUES ('2026-01-01T00:00:00+00:00', 'old/model', 0.5, '{}', '[]');
INSERT INTO cases VALUES (1, 't.py::test_old', 'code', 'passed', 1.0);
"""


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    connection.close()
    return version


def test_an_older_history_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_SCHEMA)
    connection.close()
    assert [r.id for r in runs(path)] == [1]  # reading an old history works, and changes nothing
    assert _user_version(path) == 0
    run_id = record_run(path, scored(8, 4, 6))  # before: "table cases has no column named repeat"
    assert run_id == 2
    assert _user_version(path) == history.SCHEMA_VERSION
    recorded = runs(path)
    assert recorded[0].model == "old/model"
    assert recorded[0].label is None
    assert recorded[1].cases == 18
    with sqlite3.connect(path) as connection, pytest.raises(sqlite3.DatabaseError, match="append"):
        connection.execute("DELETE FROM runs")  # the migrated history is append-only too
    connection.close()


SCHEMA_1_RUN_WITH_A_JUDGE_ERROR = """
INSERT INTO runs (started, model, label, overall, metadata, categories) VALUES
    ('2026-01-02T00:00:00+00:00', 'old/model', NULL, 0.5, '{}',
     '[{"name": "tools", "cases": 2, "samples": 2, "mean": 0.5, "low": 0.0, "high": 1.0,
        "pass_rate": 0.5, "pass_low": 0.1, "pass_high": 0.9, "step": 0.5}]');
INSERT INTO cases (run_id, nodeid, category, outcome, score, repeat, failure) VALUES
    (1, 't.py::a', 'tools', 'passed', 1.0, 0, NULL),
    (1, 't.py::b', 'tools', 'error', 0.0, 0, 'judge error');
PRAGMA user_version = 1;
"""


def test_a_schema_1_run_with_judge_errors_is_read_by_todays_rule(tmp_path: Path) -> None:
    """Schema 1 counted a judge error as 0 in the category figures while the run's overall left
    it out: such a run is read with its figures computed again from its cases."""
    path = tmp_path / "history.db"
    record_run(path, scored(8, 4, 2))  # the tables
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM cases")  # (the triggers guard runs only)
        connection.executescript(
            "DROP TRIGGER runs_append_only_delete; DELETE FROM runs;"
            "DELETE FROM sqlite_sequence;" + SCHEMA_1_RUN_WITH_A_JUDGE_ERROR
        )
    connection.close()
    [run] = runs(path)
    tools = run.category("tools")
    assert tools is not None
    assert (tools.mean, tools.cases, tools.judge_errors) == (1.0, 1, 1)
    assert run.overall == 1.0
    assert "100.0%" in format_history(path)


def test_a_run_with_an_older_history_prints_its_table(pytester: pytest.Pytester) -> None:
    (pytester.path / ".punie").mkdir()
    with sqlite3.connect(pytester.path / ".punie" / "history.db") as connection:
        connection.executescript(OLD_SCHEMA)
    connection.close()
    pytester.makepyfile(
        "import pytest\nfrom pytest_punie import assert_keywords\n"
        "@pytest.mark.punie(category='words')\ndef test_a():\n    assert_keywords('a', ['a'])\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*punie: category scores*", "words*1*1*0*100.0%*"])
    result.stdout.fnmatch_lines(["history: run 2 appended to *history.db"])


def test_a_newer_history_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, scored(8, 4, 6))
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    connection.close()
    before = path.read_bytes()
    newer = rf"newer pytest-punie \(schema {history.SCHEMA_VERSION + 1}; this version reads up"
    with pytest.raises(ValueError, match=newer):
        record_run(path, scored(8, 4, 6))
    with pytest.raises(ValueError, match="newer pytest-punie"):
        runs(path)
    assert path.read_bytes() == before  # user_version never goes down, no row was added
    assert _user_version(path) == history.SCHEMA_VERSION + 1


def test_tables_are_never_added_to_another_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    with pytest.raises(ValueError, match=r"not a pytest-punie run history \(it holds the tables"):
        record_run(path, scored(8, 4, 6))
    with sqlite3.connect(path) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
    connection.close()
    assert tables == [("users",)]
    assert _user_version(path) == 0


def test_a_locked_history_keeps_the_run_and_adds_it_next_time(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, scored(8, 4, 6))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(history.HistoryLocked) as raised:
            record_run(path, scored(1, 1, 1), label="kept", wait=0.2)
    finally:
        blocker.rollback()
        blocker.close()
    message = str(raised.value)
    assert "is locked by another process (waited 0.2 s)" in message
    assert "will be added by the next run" in message
    assert "not a pytest-punie" not in message
    pending = raised.value.pending
    assert pending is not None
    assert pending.is_file()
    assert str(pending) in message
    assert [r.label for r in runs(path)] == [None]
    assert "1 run(s) kept while the history was locked wait in" in format_history(path)
    record_run(path, scored(2, 2, 2), label="next")
    assert [r.label for r in runs(path)] == [None, "kept", "next"]  # the kept run comes first
    assert not pending.exists()


def test_a_run_ending_on_a_locked_history_says_so(pytester: pytest.Pytester) -> None:
    path = pytester.path / "h.db"
    record_run(path, scored(8, 4, 6))
    pytester.makepyfile(
        "import pytest\nfrom pytest_punie import assert_keywords\n"
        "@pytest.mark.punie(category='words')\ndef test_a():\n    assert_keywords('a', ['a'])\n"
    )
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        original = history.LOCK_WAIT_S
        history.LOCK_WAIT_S = 0.2
        record = history.record_run.__kwdefaults__
        assert record is not None
        record["wait"] = 0.2
        result = pytester.runpytest_inprocess(f"--punie-history={path}")
    finally:
        record["wait"] = original
        history.LOCK_WAIT_S = original
        blocker.rollback()
        blocker.close()
    result.stdout.fnmatch_lines(
        ["WARNING: history not written to *h.db: the run history *h.db is locked by another "
         "process (waited 0.2 s); this run was kept in *.json and will be added by the next run"]
    )  # fmt: skip
    assert len(list((pytester.path / "h.db.pending").glob("*.json"))) == 1


# -- void and partial runs (issue 14 point 5) ------------------------------------------------------


def errored(passing: int, errors: int, total: int = 18, **run: str | None) -> RunDocument:
    """A run of ``total`` tool cases: ``passing`` pass, ``errors`` errored (timeouts)."""
    cases = []
    for i in range(total):
        entry = case(f"evals/test_tools.py::test_{i}", "tools", passed=i < passing)
        if i >= total - errors:
            entry.update(outcome="error", score=0.0, failure="error")
        cases.append(entry)
    return document(cases, **run)  # type: ignore[arg-type]


def test_void_and_partial_runs_are_marked_and_never_best(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record_run(path, errored(9, 0, started="2026-02-11T09:00:00+00:00"))  # 50%, complete
    # an adapter whose only run lost most cases to timeouts, yet scored higher (6 of 8 ran)
    record_run(path, errored(2, 16, adapter="a/timeouts", started="2026-02-11T10:00:00+00:00"))
    record_run(path, errored(16, 2, adapter="a/partial", started="2026-02-11T11:00:00+00:00"))
    # the base model again, but the server died: the table keeps its complete run
    record_run(path, errored(0, 17, started="2026-02-11T12:00:00+00:00"))
    recorded = runs(path)
    assert [r.status for r in recorded] == ["complete", "void", "partial", "void"]
    assert recorded[1].status_text == "void: 16 of 18 errored"
    table = cumulative_table(path)
    names = [row[0].text for row in table.rows]
    assert names[0] == "Qwen2.5-Coder-1.5B-Instruct-4bit (base)"  # the complete run ranks first
    assert [row[-2].text for row in table.rows] == [
        "ok", "partial: 2 of 18 errored", "void: 16 of 18 errored"
    ]  # fmt: skip
    best = [[cell.best for cell in row] for row in table.rows]
    assert best[0][1]
    assert not any(best[1])
    assert not any(best[2])
    assert table.row_classes == ("complete", "partial", "void")
    text = format_history(path)
    assert "void: 16 of 18 errored" in text
    assert "Not in the table (newer, but partial or void): run 4" in text


def test_history_page_draws_a_trend_per_category(db: Path) -> None:
    record_run(db, errored(1, 17, started="2026-02-13T08:00:00+00:00"))
    page = history_html(db)
    charts = re.findall(r"<svg class='punie-trend' data-category='([^']*)'", page)
    assert charts == ["overall", "code", "reasoning", "tools"]
    tools = page[page.index("data-category='tools'") :].split("</svg>")[0]
    assert tools.count("class='punie-point punie-complete'") == 5
    assert tools.count("class='punie-point punie-void'") == 1
    assert tools.count("class='punie-interval'") == 6  # every point has its interval
    assert tools.count("class='punie-line'") == 1  # glaive's two runs; the void run is not joined
    assert "void: 18 of 18 errored" not in page
    assert "void: 17 of 18 errored" in page


def test_history_page_in_chromium(db: Path, tmp_path: Path) -> None:
    from .test_report_views import _render, console_errors
    from .test_trust import _chromium

    chromium = _chromium()
    record_run(db, errored(1, 17, started="2026-02-13T08:00:00+00:00"))
    page = tmp_path / "history.html"
    assert run_cli("history", "--db", str(db), "--html", str(page)) == 0
    dom, log = _render(chromium, page, tmp_path / "profile")
    assert console_errors(log) == []
    assert dom.count('<svg class="punie-trend"') == 4
    assert '<table id="punie-cumulative" class="punie-table">' in dom
    assert dom.count('<tr class="void">') == 1  # in the list of runs; the table shows run 1
    assert "never marked best: run 6" in dom
