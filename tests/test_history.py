"""Tests for the run history (``pytest_punie.history``) and ``punie history``."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pytest

from pytest_punie import history
from pytest_punie.history import (
    DEFAULT_DB,
    RunRow,
    add_parser,
    cumulative_table,
    format_history,
    history_html,
    record_run,
    runs,
)
from pytest_punie.render import Cell

from .test_compare import assert_well_formed, case, document

BASE = "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit"
BIG = "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"


def scored(code: int, reasoning: int, tools: int, **run: str | None) -> dict[str, object]:
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


def test_record_run_rejects_other_documents(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'cases'"):
        record_run(tmp_path / "history.db", {"overall": 1.0})


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
        ["Qwen2.5-Coder-1.5B-Instruct-4bit (base)", "77.8%*", "100.0%*", "100.0%*", "33.3%", "18", "ok",
         "2026-02-11"],
        ["Qwen2.5-Coder-1.5B-Instruct-4bit + successful-demo", "72.2%", "87.5%", "100.0%*",
         "33.3%", "18", "ok", "2026-02-11"],
        ["Qwen3-Coder-30B-A3B-Instruct-4bit (base)", "66.7%", "87.5%", "50.0%", "50.0%*", "18", "ok",
         "2026-02-11"],
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
    assert (table.header, table.rows) == (("model/adapter", "overall", "cases", "status", "date"), ())


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
