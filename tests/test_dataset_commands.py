"""End-to-end tests of the ``punie dataset`` subcommands on temporary files."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_punie.cli import dataset as dataset_commands

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "training" / "data" / "sample"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def punie(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``punie dataset ARGS`` through a parser holding only the dataset commands."""
    parser = argparse.ArgumentParser(prog="punie")
    dataset_commands.add_parser(parser.add_subparsers(dest="command", required=True))

    def run(*argv: object) -> tuple[int, str, str]:
        try:
            args = parser.parse_args(["dataset", *map(str, argv)])
        except SystemExit as exit_:  # argparse refused a value: exit 2, its message on stderr
            out, err = capsys.readouterr()
            return int(exit_.code or 0), out, err
        code = args.handler(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def chat(question: str, reply: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    }


def write(path: Path, *rows: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")
    return path


def rows(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


GOOD = chat("How many legs does a spider have?", "A spider has eight legs.")
OTHER = chat("What colour is the sky on a clear day?", "It is blue.")
FRENCH = chat("Quelle est la couleur du ciel quand il fait beau?", "Le ciel est bleu.")
PY2 = chat("Show me how to print a name.", "```python\nname = 'Ada'\nprint name\n```")


# validate --------------------------------------------------------------------------------------


def test_validate_the_sample(punie: Run) -> None:
    code, out, err = punie("validate", SAMPLE)
    assert code == 0, out
    assert err == ""
    assert out.splitlines() == [
        f"{SAMPLE / 'train.jsonl'}: 48 valid lines (chat 32, tools 16)",
        f"{SAMPLE / 'valid.jsonl'}: 8 valid lines (chat 5, tools 3)",
        f"{SAMPLE / 'test.jsonl'}: 8 valid lines (chat 6, tools 2)",
        "64 valid, 0 invalid lines in 3 files",
    ]


def test_validate_lists_every_problem(punie: Run, tmp_path: Path) -> None:
    train = write(
        tmp_path / "data" / "train.jsonl",
        GOOD,
        "{broken",
        {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        "",
        OTHER,
    )
    single = write(tmp_path / "extra.jsonl", {"text": "fine"}, {"text": 3})
    code, out, _ = punie("validate", tmp_path / "data", single)
    assert code == 1
    assert out.splitlines() == [
        f"{train}:2: broken JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{train}:3: unknown role 'bot' in message 1",
        f"{train}:4: empty line (mlx_lm cannot parse it)",
        f"{single}:2: 'text' must be a string, not int",
        "3 valid, 4 invalid lines in 2 files",
    ]


@pytest.mark.parametrize("command", ["validate", "stats", "merge", "import"])
def test_missing_paths_are_usage_errors(punie: Run, tmp_path: Path, command: str) -> None:
    extra = {
        "merge": ["--out", tmp_path / "m.jsonl"],
        "import": ["--format", "alpaca", "--out", tmp_path / "i.jsonl"],
    }
    code, out, err = punie(command, tmp_path / "nope.jsonl", *extra.get(command, []))
    assert code == 2
    assert out == ""
    assert err == f"punie dataset: {tmp_path / 'nope.jsonl'}: no such file or folder\n"


def test_a_folder_without_splits_is_a_usage_error(punie: Run, tmp_path: Path) -> None:
    code, _, err = punie("validate", tmp_path)
    assert code == 2
    assert "no train.jsonl, valid.jsonl or test.jsonl" in err


def test_validate_max_seq_length_with_a_tokenizer(punie: Run, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    data = write(tmp_path / "train.jsonl", chat("Hi", "Hello"), chat("Hi", "one two three four"))

    code, out, _ = punie("validate", data, "--max-seq-length", 4, "--tokenizer", tmp_path)
    assert code == 1
    assert out.splitlines()[0] == (
        f"{data}:2: 5 tokens, longer than max_seq_length 4 (mlx_lm would cut it off)"
    )
    code, _, err = punie("validate", data, "--max-seq-length", 4)
    assert code == 2
    assert "--max-seq-length needs --tokenizer" in err
    code, _, err = punie("validate", data, "--tokenizer", tmp_path / "missing")
    assert code == 2
    assert "no tokenizer.json" in err


# stats -----------------------------------------------------------------------------------------


def test_stats_text(punie: Run) -> None:
    code, out, _ = punie("stats", SAMPLE)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{SAMPLE / 'train.jsonl'}: 48 lines (chat 32, tools 16)"
    assert "examples: 64 (chat 43, tools 21)" in lines
    assert any(line.startswith("messages per example: min 2, ") for line in lines)
    assert any(line.startswith("roles: user 64, assistant ") for line in lines)
    assert any(line.startswith("tool calls: 23 in 19 examples (read_file ") for line in lines)
    assert any(line.startswith("characters per example: min ") for line in lines)


def test_stats_json_and_invalid_lines(punie: Run, tmp_path: Path) -> None:
    data = write(
        tmp_path / "train.jsonl",
        GOOD,
        {
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                    ],
                },
                {"role": "tool", "content": "Cold."},
                {"role": "assistant", "content": "It is cold."},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    },
                }
            ],
        },
        "not json",
    )
    code, out, err = punie("stats", data, "--json")
    assert code == 1
    assert "1 invalid lines not counted" in err
    stats = json.loads(out)
    assert stats["examples"] == 2
    assert stats["invalid_lines"] == 1
    assert stats["files"] == {str(data): {"chat": 1, "tools": 1}}
    assert stats["roles"] == {"user": 2, "assistant": 3, "tool": 1}
    assert stats["tool_calls"] == {
        "total": 1,
        "examples_with_calls": 1,
        "by_tool": {"get_weather": 1},
    }
    assert stats["messages_per_example"] == {"min": 2, "median": 3.0, "mean": 3.0, "max": 4}


# filter ----------------------------------------------------------------------------------------


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A dataset folder with one of each kind of line the filters remove."""
    folder = tmp_path / "raw"
    spaced = chat("How many legs does a  spider have?", "A spider has eight legs. ")
    write(folder / "train.jsonl", GOOD, FRENCH, PY2, spaced, "{broken", OTHER)
    write(folder / "valid.jsonl", GOOD, chat("Is water wet?", "Yes, it is."))
    return folder


def test_filter_end_to_end(punie: Run, messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    code, stdout, err = punie(
        "filter", messy, "--out", out, "--language", "en", "--no-python2", "--dedupe",
        "--min-messages", 2, "--min-retention", 0.3,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert rows(out / "train.jsonl") == [GOOD, OTHER]
    assert rows(out / "valid.jsonl") == [chat("Is water wet?", "Yes, it is.")]
    train, valid = messy / "train.jsonl", messy / "valid.jsonl"
    assert rows(out / "train.provenance.jsonl") == [
        {"line": 1, "origin": f"{train}:1"},
        {"line": 2, "origin": f"{train}:6"},
    ]
    rejects = rows(out / "rejects.jsonl")
    assert [(r["source"], r["line"], r["stage"]) for r in rejects] == [
        (str(train), 5, "validate"),
        (str(train), 2, "language=en"),
        (str(train), 3, "python2"),
        (str(train), 4, "duplicates"),
        (str(valid), 1, "duplicates"),
    ]
    assert rejects[3]["reason"] == f"duplicate of {train}:1"
    assert rejects[4]["reason"] == f"duplicate of {train}:1"  # no copy of train in valid
    assert rejects[2]["reason"] == "Python 2 code in assistant text: print statement"
    assert rejects[0]["raw"] == "{broken"
    assert json.loads(rejects[1]["raw"]) == FRENCH
    table = stdout.splitlines()
    assert table[0].split() == ["step", "kept", "removed", "retention"]
    assert [line.split()[0] for line in table[1:7]] == [
        "validate",
        "language=en",
        "python2",
        "quality(min_messages=2)",
        "duplicates",
        "total",
    ]
    assert table[1].split()[1:] == ["7", "1", "87.5%"]
    assert table[6].split()[1:] == ["3", "5", "37.5%"]
    assert f"wrote 5 rejects to {out / 'rejects.jsonl'}" in table


def test_filter_min_retention_fails_but_still_writes(
    punie: Run, messy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean"
    code, _, err = punie("filter", messy, "--out", out, "--dedupe", "--min-retention", 0.9)
    assert code == 1
    assert "kept 62.5% of the lines, less than --min-retention 90.0%" in err
    assert len(rows(out / "rejects.jsonl")) == 3


def test_filter_without_filters_only_validates(punie: Run, messy: Path, tmp_path: Path) -> None:
    code, _, _ = punie("filter", messy / "train.jsonl", "--out", tmp_path / "o")
    assert code == 0
    assert len(rows(tmp_path / "o" / "train.jsonl")) == 5
    assert [r["line"] for r in rows(tmp_path / "o" / "rejects.jsonl")] == [5]


def test_filter_usage_errors(punie: Run, messy: Path) -> None:
    code, _, err = punie("filter", messy, "--out", messy)
    assert code == 2
    assert "is the input's folder" in err
    code, _, err = punie("filter", messy, "--out", messy / "x", "--min-retention", 2)
    assert code == 2
    assert "--min-retention: '2' is not a fraction from 0 to 1 (0.05) or a percentage (5%)" in err


def test_fractions_are_written_as_the_pytest_options_take_them(punie: Run, messy: Path) -> None:
    """0.9 and 90% are one value for every command, as for --punie-min-retention."""
    code, _, err = punie(
        "filter", messy, "--out", messy / "p", "--dedupe", "--min-retention", "90%"
    )
    assert code == 1
    assert "less than --min-retention 90.0%" in err
    code, _, err = punie("split", messy / "train.jsonl", "--out", messy / "s", "--valid", "150%")
    assert code == 2
    assert "'150%' is not a fraction" in err


# merge, split ----------------------------------------------------------------------------------


def test_merge_keeps_provenance(punie: Run, tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", GOOD, OTHER)
    b = tmp_path / "b"
    write(b / "train.jsonl", FRENCH)
    write(b / "valid.jsonl", PY2)
    out = tmp_path / "merged" / "all.jsonl"
    code, stdout, _ = punie("merge", a, b, "--out", out)
    assert code == 0
    assert stdout == f"merged 4 examples from 2 inputs into {out}\n"
    assert rows(out) == [GOOD, OTHER, FRENCH, PY2]
    assert [r["origin"] for r in rows(tmp_path / "merged" / "all.provenance.jsonl")] == [
        f"{a}:1",
        f"{a}:2",
        f"{b / 'train.jsonl'}:1",
        f"{b / 'valid.jsonl'}:1",
    ]
    # Merging the merged file again keeps the first origins.
    again = tmp_path / "again.jsonl"
    assert punie("merge", out, "--out", again)[0] == 0
    assert rows(tmp_path / "again.provenance.jsonl")[2]["origin"] == f"{b / 'train.jsonl'}:1"


def test_merge_refuses_invalid_or_mixed_data(punie: Run, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.jsonl", GOOD, "{")
    out = tmp_path / "out.jsonl"
    code, stdout, err = punie("merge", bad, "--out", out)
    assert code == 1
    assert stdout.startswith(f"{bad}:2: broken JSON")
    assert "nothing written" in err
    assert not out.exists()
    good = write(tmp_path / "good.jsonl", GOOD)
    text = write(tmp_path / "text.jsonl", {"text": "plain"})
    code, _, err = punie("merge", good, text, "--out", out)
    assert code == 1
    assert "cannot merge different formats" in err


def test_split_writes_three_files_deterministically(punie: Run, tmp_path: Path) -> None:
    source = write(
        tmp_path / "all.jsonl", *[chat(f"Question number {n}?", f"Answer {n}.") for n in range(20)]
    )
    code, stdout, _ = punie("split", source, "--out", tmp_path / "s", "--seed", 7)
    assert code == 0
    assert stdout == f"split 20 examples into {tmp_path / 's'} (train 16, valid 2, test 2)\n"
    files = {
        name: (tmp_path / "s" / f"{name}.jsonl").read_text() for name in ("train", "valid", "test")
    }
    punie("split", source, "--out", tmp_path / "t", "--seed", 7)
    assert files == {name: (tmp_path / "t" / f"{name}.jsonl").read_text() for name in files}
    every = sorted(
        json.dumps(row) for name in files for row in rows(tmp_path / "s" / f"{name}.jsonl")
    )
    assert every == sorted(json.dumps(row) for row in rows(source))
    origins = [r["origin"] for r in rows(tmp_path / "s" / "valid.provenance.jsonl")]
    assert all(origin.startswith(f"{source}:") for origin in origins)
    assert punie("validate", tmp_path / "s")[0] == 0

    code, _, err = punie("split", source, "--out", tmp_path / "u", "--valid", 0.6, "--test", 0.6)
    assert code == 2
    assert "must sum to at most 1" in err


# import ----------------------------------------------------------------------------------------


def test_import_sharegpt_with_rejects(punie: Run, tmp_path: Path) -> None:
    source = tmp_path / "raw.json"
    source.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "Hi"},
                        {"from": "gpt", "value": "Hey"},
                    ]
                },
                {"conversations": [{"from": "human", "value": "Only a question"}]},
                {"conversations": [{"from": "narrator", "value": "?"}]},
            ]
        )
    )
    out = tmp_path / "data" / "train.jsonl"
    code, stdout, _ = punie("import", source, "--format", "sharegpt", "--out", out)
    assert code == 1
    assert rows(out) == [chat("Hi", "Hey")]
    assert rows(tmp_path / "data" / "train.provenance.jsonl") == [
        {"line": 1, "origin": f"sharegpt:{source}:1"}
    ]
    rejects = rows(tmp_path / "data" / "train.rejects.jsonl")
    assert [(r["line"], r["stage"], r["reason"]) for r in rejects] == [
        (3, "import sharegpt", "unknown speaker 'narrator' in turn 1"),
        (
            2,
            "validate",
            "no assistant message to learn from",
        ),
    ]
    assert stdout.splitlines()[0] == f"imported 1 of 3 records into {out}"
    assert f"2 records not imported; see {tmp_path / 'data' / 'train.rejects.jsonl'}" in stdout
    assert punie("validate", tmp_path / "data")[0] == 0


def test_import_alpaca_and_openai(punie: Run, tmp_path: Path) -> None:
    alpaca = write(tmp_path / "alpaca.jsonl", {"instruction": "Add 2 and 3.", "output": "5"})
    openai = write(tmp_path / "openai.jsonl", chat("Hello?", "Hi there."))
    out = tmp_path / "out.jsonl"
    code, stdout, _ = punie("import", alpaca, "--format", "alpaca", "--out", out)
    assert (code, stdout) == (0, f"imported 1 of 1 records into {out}\n")
    assert rows(out) == [chat("Add 2 and 3.", "5")]
    assert rows(tmp_path / "out.rejects.jsonl") == []
    code, _, _ = punie("import", openai, alpaca, "--format", "openai", "--out", out, "--force")
    assert code == 1  # the alpaca file has no messages
    assert rows(out) == [chat("Hello?", "Hi there.")]


def test_import_unusable_file(punie: Run, tmp_path: Path) -> None:
    source = tmp_path / "raw.json"
    source.write_text('{"conversations": []}')
    code, _, err = punie("import", source, "--format", "sharegpt", "--out", tmp_path / "o.jsonl")
    assert code == 1
    assert "expected a JSON list of records, got dict" in err


def test_the_punie_command_wires_the_dataset_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pytest_punie.results.compare")
    pytest.importorskip("pytest_punie.results.history")
    from pytest_punie.cli import main

    assert main(["dataset", "validate", str(SAMPLE)]) == 0
    assert "64 valid, 0 invalid lines in 3 files" in capsys.readouterr().out


# Nothing the user gave is replaced; no input crashes a command (issue 11, points 7 and 9) -------


def test_split_refuses_to_replace_the_input_folder(punie: Run, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "train.jsonl", GOOD, OTHER, GOOD, OTHER)
    write(data / "valid.jsonl", OTHER)
    write(data / "test.jsonl", GOOD)
    before = {file.name: file.read_bytes() for file in data.iterdir()}
    code, _, err = punie("split", data, "--out", data)
    assert code == 2
    assert "is the input's folder" in err
    assert {file.name: file.read_bytes() for file in data.iterdir()} == before


def test_import_and_merge_refuse_to_replace_their_source(punie: Run, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    before = raw.read_bytes()
    code, _, err = punie("import", raw, "--format", "alpaca", "--out", raw)
    assert code == 2
    assert "would replace the input" in err
    code, _, err = punie("merge", write(tmp_path / "a.jsonl", GOOD), raw, "--out", raw)
    assert code == 2
    assert raw.read_bytes() == before


HUGE_NUMBER_LINE = json.dumps(GOOD)[:-1] + ', "n": ' + "9" * 5000 + "}"


@pytest.mark.parametrize("command", ["validate", "stats", "filter", "merge", "split", "import"])
def test_a_5000_digit_integer_is_an_invalid_line(punie: Run, tmp_path: Path, command: str) -> None:
    data = write(tmp_path / "in.jsonl", GOOD, HUGE_NUMBER_LINE)
    extra = {
        "filter": ["--out", tmp_path / "f"],
        "merge": ["--out", tmp_path / "m.jsonl"],
        "split": ["--out", tmp_path / "s"],
        "import": ["--format", "alpaca", "--out", tmp_path / "i.jsonl"],
    }.get(command, [])
    code, out, err = punie(command, data, *extra)
    assert code in (0, 1)
    if command == "filter":  # the rejected line goes to rejects.jsonl with its reason
        [reject] = rows(tmp_path / "f" / "rejects.jsonl")
        assert reject["line"] == 2
        assert "Exceeds the limit" in json.dumps(reject)
    elif command == "stats":
        assert "1 invalid lines not counted" in out + err
    else:
        assert f"{data}:2: " in out + err
        assert "Exceeds the limit" in out + err


# No command replaces a file in --out without --force -----------------------------------------

# command -> its arguments, given an input JSONL file, an --out folder and a seed
WRITERS: dict[str, Callable[[Path, Path, int], list[object]]] = {
    "filter": lambda data, out, _: ["filter", data, "--out", out],
    "merge": lambda data, out, _: ["merge", data, "--out", out / "all.jsonl"],
    "split": lambda data, out, seed: ["split", data, "--out", out, "--seed", seed],
    "import": lambda data, out, _: [
        "import", data, "--format", "openai", "--out", out / "all.jsonl",
    ],
    "generate-tools": lambda _, out, seed: [
        "generate-tools", "--out", out, "--train", 5, "--valid", 2, "--test", 2, "--seed", seed,
    ],
}  # fmt: skip

# command -> one file it writes (a sidecar or a rejects file, not the main output)
ONE_OF_ITS_FILES = {
    "filter": "rejects.jsonl",
    "merge": "all.provenance.jsonl",
    "split": "test.provenance.jsonl",
    "import": "all.rejects.jsonl",
    "generate-tools": "test.jsonl",
}


def snapshot_folder(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def two_inputs(tmp_path: Path) -> tuple[Path, Path]:
    first = write(
        tmp_path / "first" / "data.jsonl", *[chat(f"Question {n}?", "Yes.") for n in range(10)]
    )
    second = write(
        tmp_path / "second" / "data.jsonl", *[chat(f"Other {n}?", "No.") for n in range(10)]
    )
    return first, second


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_command_replaces_its_output_only_with_force(
    punie: Run, tmp_path: Path, command: str
) -> None:
    first, second = two_inputs(tmp_path)
    out = tmp_path / "out"
    code, _, err = punie(*WRITERS[command](first, out, 1))
    assert (code, err) == (0, "")
    before = snapshot_folder(out)

    code, stdout, err = punie(*WRITERS[command](second, out, 2))
    assert code == 2
    assert stdout == ""
    assert err.startswith("punie dataset: --out would replace ")
    assert err.rstrip().endswith("pass --force to replace them")
    for name in before:
        assert str(out / name) in err
    assert snapshot_folder(out) == before

    code, _, err = punie(*WRITERS[command](second, out, 2), "--force")
    assert (code, err) == (0, "")
    after = snapshot_folder(out)
    assert after.keys() == before.keys()
    assert after != before


@pytest.mark.parametrize("command", list(WRITERS))
def test_one_existing_file_stops_a_command_before_it_writes(
    punie: Run, tmp_path: Path, command: str
) -> None:
    first, _ = two_inputs(tmp_path)
    out = tmp_path / "out"
    planted = write(out / ONE_OF_ITS_FILES[command], {"keep": "me"})

    code, _, err = punie(*WRITERS[command](first, out, 1))

    assert code == 2
    assert err == f"punie dataset: --out would replace {planted}; pass --force to replace it\n"
    assert snapshot_folder(out) == {planted.name: b'{"keep": "me"}\n'}
    assert punie(*WRITERS[command](first, out, 1), "--force")[0] == 0
    assert rows(planted) != [{"keep": "me"}]


def test_force_never_replaces_an_input(punie: Run, tmp_path: Path) -> None:
    raw = write(tmp_path / "raw.jsonl", GOOD)
    code, _, err = punie("merge", raw, "--out", raw, "--force")
    assert code == 2
    assert "would replace the input" in err
    assert rows(raw) == [GOOD]
