"""Tests for the dataset filters, merge and split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.finetune.datasets import Example, Rejection
from pytest_punie.finetune.filters import (
    Filter,
    FilterResult,
    Retention,
    duplicates,
    language,
    merge,
    python2,
    python2_constructs,
    quality,
    retention,
    run_filters,
    split,
    write_rejects,
)


def chat(*contents: str, source: str = "train.jsonl", line: int = 1) -> Example:
    """A chat example alternating user and assistant, starting with the user."""
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": text} for i, text in enumerate(contents)]
    return Example({"messages": messages}, "chat", Path(source), line)


def answer(text: str, line: int = 1) -> Example:
    return chat("Please help me with this.", text, line=line)


def numbered(examples: list[Example]) -> list[Example]:
    return [
        Example(ex.data, ex.format, ex.source, number, ex.origin)
        for number, ex in enumerate(examples, start=1)
    ]


# language --------------------------------------------------------------------------------------

ENGLISH = [
    "What is 15 * 23? Show the steps.",
    "Here is a function that returns the sum of the even numbers in a list.",
    "345",
    "Sure! The answer is 42.",
    # A long code block with few English words does not count against the prose.
    "This is the way to do it:\n\n```python\n"
    + "\n".join(f"value_{i} = compute(alpha_{i}, beta_{i})" for i in range(30))
    + "\n```\nIt works for every input.",
    "Use `numpy.linalg.solve(matrix, vector)` from https://numpy.org/doc/stable/reference.",
    # File names and paths are words of no language: short tool prompts are mostly paths.
    "First list config; next print config/index.md.",
    "Display scripts/logo.svg.",
    "Open requirements.txt and todo.txt, then summarise src/app/main.py.",
]
NOT_ENGLISH = [
    (
        "Écris une fonction qui calcule la factorielle d'un nombre entier positif.",
        "not English: 0% of 1",
    ),
    (
        "Schreibe eine Funktion, die die Fakultät einer Zahl berechnet und zurückgibt.",
        "not English: 0% of 1",
    ),
    (
        "Escribe una función que devuelva el factorial de un número entero.",
        "not English: 0% of 1",
    ),
    ("写一个计算阶乘的函数", "not English: 71% of letters are not ASCII (at most 10% allowed)"),
    ("Напишите функцию факториала", "not English: 86% of letters are not ASCII"),
    (
        "Lies die Datei config/index.md und fasse den Inhalt in zwei Sätzen zusammen.",
        "not English: 8% of 12 words",
    ),
]


@pytest.mark.parametrize("text", ENGLISH)
def test_language_keeps_english(text: str) -> None:
    result = language()([chat(text, "Okay, here it is.")])
    assert result.removed == []


@pytest.mark.parametrize(("text", "reason"), NOT_ENGLISH)
def test_language_removes_other_languages(text: str, reason: str) -> None:
    example = chat(text, "Okay.", line=7)
    result = language()([example])
    assert result.kept == []
    (removed,) = result.removed
    assert removed.reason.startswith(reason), removed.reason
    assert (removed.line, removed.stage) == (7, "language=en")
    assert json.loads(removed.raw) == example.data


def test_language_ignores_tool_calls_and_results() -> None:
    data = {
        "messages": [
            {"role": "user", "content": "Read the config file please."},
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "read_file", "arguments": {"path": "konfiguration.py"}}}
                ],
            },
            {"role": "tool", "content": "Schlüssel = Wert\nZeitüberschreitung = 30\n" * 5},
            {"role": "assistant", "content": "The file sets two values."},
        ],
        "tools": [],
    }
    assert language()([Example(data, "tools", Path("t.jsonl"), 1)]).removed == []


def test_language_ignores_bare_code() -> None:
    code = "\n".join(f"value_{i} = compute(alpha_{i}, beta_{i})" for i in range(10))
    completion = Example(
        {"prompt": "Compute them.", "completion": code}, "completions", Path("c"), 1
    )
    assert language()([completion]).removed == []


def test_language_only_supports_english() -> None:
    with pytest.raises(ValueError, match="only 'en'"):
        language("fr")


# python2 ---------------------------------------------------------------------------------------

PYTHON2 = [
    ("fenced-print", "```python\nprint 'hello'\n```", "print statement"),
    ("fenced-unlabelled", "```\nfor x in items:\n    print x\n```", "print statement"),
    (
        "except-comma",
        "Try this:\n```python\ntry:\n    run()\nexcept ValueError, e:\n    pass\n```",
        "except E, e",
    ),
    ("backticks", "```py\nname = `value`\n```", "backtick repr"),
    ("not-equal", "```python\nif a <> b:\n    pass\n```", "<> operator"),
    ("ur-string", "```python\npattern = ur'\\d+'\n```", "ur'' string"),
    ("long-literal", "```python\nbig = 10L\n```", "long literal"),
    ("octal", "```python\nos.chmod(path, 0755)\n```", "octal literal 0777"),
    ("raise-comma", "```python\nraise ValueError, 'bad'\n```", "raise E, message"),
    ("exec-statement", "```python\nexec 'x = 1'\n```", "exec statement"),
    ("print-chevron", "```python\nprint >>sys.stderr, 'oops'\n```", "print >> statement"),
    ("xrange", "```python\nfor i in xrange(10):\n    total += i\n```", "xrange"),
    ("has-key", "```python\nif d.has_key('a'):\n    pass\n```", ".has_key()"),
    ("raw-input", "```python\nname = raw_input('Name? ')\n```", "raw_input"),
    ("bare-code", "def greet(name):\n    print 'Hello, ' + name\n", "print statement"),
    ("bare-line-in-prose", "Run this:\nprint total\nand check it.", "print statement"),
]
PYTHON3 = [
    ("print-call", "```python\nprint('hello')\n```"),
    ("prose-about-printing", "print the numbers from one to ten"),
    ("prose", "Use a loop <> not recursion, and `repr` for output."),
    ("shim", "```python\ntry:\n    xrange\nexcept NameError:\n    xrange = range\n```"),
    ("bash-fence", "```bash\nprint x\n```"),
    ("date-in-broken-code", "```python\nday = '2024-01-05'\ndef broken(:\n```"),
    ("methods", "```python\nfor k, v in d.items():\n    print(k, v)\n```"),
    ("f-string", '```python\nprint(f"{x!r:>10}")\n```'),
]


@pytest.mark.parametrize(
    ("text", "construct"), [pytest.param(t, c, id=name) for name, t, c in PYTHON2]
)
def test_python2_is_removed(text: str, construct: str) -> None:
    result = python2()([answer(text, line=3)])
    assert result.kept == []
    (removed,) = result.removed
    assert removed.reason.startswith("Python 2 code in assistant text: "), removed.reason
    assert construct in removed.reason
    assert (removed.line, removed.stage) == (3, "python2")


@pytest.mark.parametrize("text", [pytest.param(t, id=name) for name, t in PYTHON3])
def test_python3_and_prose_are_kept(text: str) -> None:
    assert python2()([answer(text)]).removed == []


def test_python2_in_completions_and_text() -> None:
    completion = Example(
        {"prompt": "Say hi", "completion": "print 'hi'"}, "completions", Path("c.jsonl"), 1
    )
    text = Example({"text": "x = 1\nprint x\n"}, "text", Path("t.jsonl"), 1)
    result = python2()([completion, text])
    assert [r.reason for r in result.removed] == [
        "Python 2 code in assistant text: print statement",
        "Python 2 code: print statement",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_python2_constructs_never_raises(text: str) -> None:
    for fenced in (True, False):
        assert isinstance(python2_constructs(text, fenced=fenced), list)


# quality and duplicates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"min_messages": 3}, "2 messages, fewer than min_messages 3"),
        ({"max_messages": 1}, "2 messages, more than max_messages 1"),
        ({"min_chars": 100}, "8 characters, fewer than min_chars 100"),
        ({"max_chars": 5}, "8 characters, more than max_chars 5"),
    ],
)
def test_quality_bounds(kwargs: dict[str, int], reason: str) -> None:
    step = quality(**kwargs)
    result = step([chat("Hi?", "Hello")])
    assert [r.reason for r in result.removed] == [reason]
    assert step.name == f"quality({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    assert (
        quality(min_messages=2, max_messages=2, min_chars=8, max_chars=8)(
            [chat("Hi?", "Hello")]
        ).removed
        == []
    )


def test_duplicates_keep_the_first_and_name_it() -> None:
    first = chat("What is 2+2?", "4", line=1)
    spaced = chat("What  is 2+2? ", "4\n", line=5)
    other = chat("What is 2+3?", "5", line=6)
    in_test = chat("What is 2+2?", "4", source="test.jsonl", line=2)
    result = duplicates()([first, spaced, other, in_test])
    assert result.kept == [first, other]
    assert [(r.source.name, r.line, r.reason) for r in result.removed] == [
        ("train.jsonl", 5, "duplicate of train.jsonl:1"),
        ("test.jsonl", 2, "duplicate of train.jsonl:1"),
    ]


# the chain, retention, rejects -----------------------------------------------------------------


def test_run_filters_feeds_each_filter_the_previous_kept() -> None:
    examples = numbered(
        [
            chat("Hello there, how are you today?", "Fine, thank you."),
            chat("Bonjour, comment allez vous aujourd'hui mon ami?", "Bien, merci beaucoup."),
            answer("```python\nprint 'hi'\n```"),
            chat("Hello there, how are you today?", "Fine, thank you."),
        ]
    )
    seen: list[int] = []

    class Spy:
        name = "spy"

        def __call__(self, batch: Any) -> FilterResult:
            seen.extend(ex.line for ex in batch)
            return FilterResult(self.name, list(batch), [])

    steps: list[Filter] = [language(), python2(), Spy(), duplicates()]
    results = run_filters(examples, steps)
    assert [r.name for r in results] == ["language=en", "python2", "spy", "duplicates"]
    assert seen == [1, 4]
    assert [ex.line for ex in results[-1].kept] == [1]
    assert retention(results) == [
        Retention("language=en", 3, 1, 0.75),
        Retention("python2", 2, 1, 2 / 3),
        Retention("spy", 2, 0, 1.0),
        Retention("duplicates", 1, 1, 0.5),
    ]
    assert retention([FilterResult("empty", [], [])]) == [Retention("empty", 0, 0, 1.0)]


def test_write_rejects(tmp_path: Path) -> None:
    rejections = [
        Rejection(Path("a/train.jsonl"), 3, "not English", '{"text": "hola"}', "language=en"),
        Rejection(Path("a/train.jsonl"), 9, "broken JSON", "{oops"),
    ]
    out = tmp_path / "rejects.jsonl"
    assert write_rejects(out, rejections) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {
            "source": "a/train.jsonl",
            "line": 3,
            "stage": "language=en",
            "reason": "not English",
            "raw": '{"text": "hola"}',
        },
        {
            "source": "a/train.jsonl",
            "line": 9,
            "stage": "validate",
            "reason": "broken JSON",
            "raw": "{oops",
        },
    ]


# merge and split -------------------------------------------------------------------------------


def test_merge_keeps_provenance_and_order() -> None:
    a = [chat("a?", "A", source="a.jsonl", line=n) for n in (1, 2)]
    b = [Example({"messages": [], "tools": []}, "tools", Path("b.jsonl"), 4, "sharegpt:x.json:9")]
    merged = merge([a, b])
    assert [(ex.location, ex.provenance) for ex in merged] == [
        ("a.jsonl:1", "a.jsonl:1"),
        ("a.jsonl:2", "a.jsonl:2"),
        ("b.jsonl:4", "sharegpt:x.json:9"),
    ]


def test_merge_refuses_formats_that_cannot_share_a_file() -> None:
    text = Example({"text": "t"}, "text", Path("t.jsonl"), 1)
    with pytest.raises(ValueError, match=r"chat \(a.jsonl:1\), text \(t.jsonl:1\)"):
        merge([[chat("a?", "A", source="a.jsonl")], [text]])


def test_split_is_a_deterministic_partition() -> None:
    examples = numbered([chat(f"Question {n}?", f"Answer {n}.") for n in range(50)])
    splits = split(examples, (0.8, 0.1, 0.1), seed=3)
    assert {name: len(part) for name, part in splits.items()} == {
        "train": 40,
        "valid": 5,
        "test": 5,
    }
    lines = sorted(ex.line for part in splits.values() for ex in part)
    assert lines == list(range(1, 51))
    assert split(examples, (0.8, 0.1, 0.1), seed=3) == splits
    assert split(examples, (0.8, 0.1, 0.1), seed=4) != splits
    for part in splits.values():
        assert [ex.line for ex in part] == sorted(ex.line for ex in part)


@pytest.mark.parametrize(
    ("total", "fractions", "sizes"),
    [
        (0, (0.8, 0.1, 0.1), (0, 0, 0)),
        (1, (0.8, 0.1, 0.1), (1, 0, 0)),
        (3, (0.8, 0.1, 0.1), (1, 1, 1)),
        (5, (0.8, 0.1, 0.1), (3, 1, 1)),
        (10, (1.0, 0.0, 0.0), (10, 0, 0)),
        (7, (0.5, 0.5, 0.0), (4, 3, 0)),
    ],
)
def test_split_sizes(
    total: int, fractions: tuple[float, float, float], sizes: tuple[int, ...]
) -> None:
    examples = numbered([chat(f"q{n}", "a") for n in range(total)])
    parts = split(examples, fractions)
    assert tuple(len(part) for part in parts.values()) == sizes


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split([], fractions)


# Properties ------------------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "the",
        "answer",
        "is",
        "función",
        "número",
        "写",
        "print x",
        "```python\nprint 'a'\n```",
        "```python\nprint('a')\n```",
        "",
        " ",
        "\n",
    ]
)
CONTENT = st.one_of(st.lists(WORDS, max_size=8).map(" ".join), st.text(max_size=30))
EXAMPLE = st.lists(CONTENT, min_size=1, max_size=5).map(lambda texts: chat(*texts))
STEPS = st.lists(
    st.sampled_from(
        [
            language(),
            python2(),
            duplicates(),
            quality(min_messages=2),
            quality(max_chars=40),
            quality(min_chars=5, max_messages=3),
        ]
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(EXAMPLE, max_size=15), STEPS)
def test_every_example_is_kept_or_removed_by_exactly_one_filter(
    examples: list[Example], steps: list[Filter]
) -> None:
    examples = numbered(examples)
    results = run_filters(examples, steps)
    kept = [ex.line for ex in results[-1].kept] if results else [ex.line for ex in examples]
    removed = [r.line for result in results for r in result.removed]
    assert sorted(kept + removed) == list(range(1, len(examples) + 1))
    for result in results:
        assert all(r.reason and r.stage == result.name for r in result.removed)
