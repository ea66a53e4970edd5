"""The training lines nearest a prompt (``leakage.PromptIndex``): the leakage check's similarity,
ordered, k of them, ties in the data's order, nothing from empty data, any text."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_punie.finetune.leakage import Prompt, PromptIndex, similarity, training_prompts


def lines(*texts: str, file: str = "train.jsonl") -> list[Prompt]:
    return [Prompt(text, f"{file}:{number}") for number, text in enumerate(texts, 1)]


def test_most_similar_first_with_the_leakage_checks_similarity() -> None:
    data = lines(
        "What is the capital of Spain?",
        "What's the capital of France?",
        "List the files in the folder",
        "What is the capital of France?",
    )
    found = PromptIndex(data).nearest("what is the capital of France", k=3)
    assert [n.train.where for n in found] == ["train.jsonl:4", "train.jsonl:2", "train.jsonl:1"]
    assert found[0].similarity == 1.0  # equal after normalise
    for neighbour in found:
        assert neighbour.similarity == similarity(
            "what is the capital of France", neighbour.train.text
        )
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
    assert (found[1].file, found[1].line) == ("train.jsonl", 2)


def test_k_limits_the_lines_and_lines_sharing_nothing_are_left_out() -> None:
    index = PromptIndex(lines("read the readme", "read the readme file", "zzzz qqqq"))
    assert len(index.nearest("read the readme", k=1)) == 1
    assert [n.train.where for n in index.nearest("read the readme", k=10)] == [
        "train.jsonl:1",
        "train.jsonl:2",
    ]
    assert index.nearest("read the readme", k=0) == []


def test_ties_keep_the_datas_order() -> None:
    data = lines("open the door", "shut the door", "open the door", "open the door")
    found = PromptIndex(data).nearest("open the door", k=3)
    assert [n.train.where for n in found] == ["train.jsonl:1", "train.jsonl:3", "train.jsonl:4"]


def test_one_entry_per_line_its_best_prompt() -> None:
    data = [
        Prompt("hello there", "train.jsonl:1"),
        Prompt("What is the weather in Paris?", "train.jsonl:1"),  # a second user turn
        Prompt("What is the weather in Rome?", "train.jsonl:2"),
    ]
    found = PromptIndex(data).nearest("What is the weather in Paris?")
    assert (found[0].train.where, found[0].similarity) == ("train.jsonl:1", 1.0)
    assert [n.train.where for n in found] == ["train.jsonl:1", "train.jsonl:2"]


def test_empty_data_and_empty_prompts() -> None:
    assert PromptIndex([]).nearest("anything") == []
    assert len(PromptIndex([])) == 0
    assert PromptIndex(lines("something")).nearest("") == []


def test_unicode_prompts() -> None:
    data = lines("Quelle est la météo à Zürich ?", "東京の天気は?", "Погода в Москве?")
    found = PromptIndex(data).nearest("quelle est la MÉTÉO à zürich")
    assert found[0].train.where == "train.jsonl:1"
    assert found[0].similarity == 1.0
    assert PromptIndex(data).nearest(
        "東京の天気は\uff1f"
    )  # a full-width question mark[0].train.where == "train.jsonl:2"


def test_a_path_with_colons_keeps_its_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi there"}]}) + "\n"
    )
    (found,) = PromptIndex(training_prompts(folder)).nearest("hi there")
    assert (found.file, found.line) == (str(folder / "train.jsonl"), 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(max_size=40), max_size=12),
    st.text(max_size=40),
    st.integers(min_value=0, max_value=5),
)
def test_any_text_matches_the_brute_force_rule(texts: list[str], query: str, k: int) -> None:
    data = lines(*texts)
    found = PromptIndex(data).nearest(query, k)
    expected = sorted(
        ((similarity(query, p.text), i) for i, p in enumerate(data)),
        key=lambda pair: (-pair[0], pair[1]),
    )
    expected = [(s, i) for s, i in expected if s > 0][:k]
    assert [(n.similarity, n.train.where) for n in found] == [
        (s, data[i].where) for s, i in expected
    ]


def test_thousands_of_lines_and_dozens_of_cases_stay_fast() -> None:
    words = "what is the weather in paris read file list folder search error config tool".split()
    data = lines(
        *(" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 25 + 5)) for i in range(5000))
    )
    started = time.perf_counter()
    index = PromptIndex(data)
    for case in range(50):
        index.nearest(" ".join(words[(case + j) % len(words)] for j in range(12)))
    assert time.perf_counter() - started < 2.0
