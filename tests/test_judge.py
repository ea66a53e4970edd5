"""Tests for the judge scorer (``pytest_punie.scoring.judge``) and its calibration."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from pytest_punie import Rubric, assert_judge, judge_rubric
from pytest_punie.cli import main
from pytest_punie.conversation.response import Response
from pytest_punie.scoring.framework import ScoreFailure, collecting_scores
from pytest_punie.scoring.judge import (
    GateDecision,
    Judge,
    JudgeContext,
    JudgeError,
    JudgeIdentity,
    judge_context,
    parse_verdict,
)
from pytest_punie.scoring.judge_calibration import (
    agreement,
    calibrate,
    cohen_kappa,
    gate_decision,
    latest_calibration,
    load_labels,
    record_calibration,
    spearman,
)
from pytest_punie.testing import FakeOpenAI

VALID = '{"score": 0.9, "reason": "explains it correctly"}'
LOW = '{"score": 0.1, "reason": "wrong facts"}'


def scripted(*replies: str) -> tuple[Callable[[], FunctionModel], list[list[ModelMessage]]]:
    """A model factory answering ``replies`` in turn (the last one again), and the calls seen."""
    seen: list[list[ModelMessage]] = []

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        return ModelResponse(parts=[TextPart(replies[min(len(seen), len(replies)) - 1])])

    return lambda: FunctionModel(reply), seen


@pytest.fixture
def make_judge() -> Iterator[Callable[..., Judge]]:
    judges: list[Judge] = []

    def make(*replies: str, retries: int = 2, gate: GateDecision | None = None) -> Judge:
        factory, _ = scripted(*replies)
        judge = Judge(factory, JudgeIdentity("fake-judge", "abc123"), retries=retries, gate=gate)
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()


def _user_text(messages: list[ModelMessage]) -> str:
    first = messages[0]
    assert isinstance(first, ModelRequest)
    return str(first.parts[-1].content)


# parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score"),
    [
        (VALID, 0.9),
        ('Here is my verdict: {"score": 1, "reason": "ok"} Hope it helps.', 1.0),
        ('```json\n{"score": 0.25, "reason": "partly"}\n```', 0.25),
        ('<think>{"score": 0.0, "reason": "draft"}</think>{"score": 0.7, "reason": "x"}', 0.7),
        ('{"note": 1} then {"score": "0.5", "reason": "string number"}', 0.5),
    ],
)
def test_parse_verdict_finds_the_verdict(text: str, score: float) -> None:
    assert parse_verdict(text).score == score


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("It is a good answer, 9/10.", "no JSON object"),
        ('{"score": 8, "reason": "out of ten"}', "score"),
        ('{"score": 0.5}', "reason"),
        ('{"score": 0.5, "reason": ""}', "reason"),
        ('{"score": 0.5, "reason": "ok"', "no JSON object"),
    ],
)
def test_parse_verdict_refuses_what_is_not_a_verdict(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_verdict(text)


@given(st.text())
def test_parse_verdict_never_raises_anything_but_value_error(text: str) -> None:
    try:
        verdict = parse_verdict(text)
    except ValueError:
        return
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.reason


# the judge -------------------------------------------------------------------------------------


def test_valid_verdict_is_recorded_with_reason_and_judge_identity(make_judge: Any) -> None:
    judge = make_judge(VALID)
    with collecting_scores() as sheet:
        record = assert_judge("Paris.", "names the capital", judge=judge, prompt="Capital?")
    assert record.score == 0.9
    assert record.passed
    assert sheet.records == [record]
    details = record.details
    assert details["reason"] == "explains it correctly"
    assert details["judge"]["name"] == "fake-judge"
    assert details["judge_hash"] == judge.identity.hash == details["judge"]["hash"]
    assert details["pass_mark"] == 0.5
    assert details["gate"] is True
    json.dumps(record.to_json())  # travels on the test report


def test_invalid_then_valid_output_is_asked_again(make_judge: Any) -> None:
    factory, seen = scripted("I would say it is quite good.", '{"score": 2}', VALID)
    judge = Judge(factory, JudgeIdentity("fake-judge"), retries=2)
    try:
        record = assert_judge("answer", "rubric", judge=judge)
    finally:
        judge.close()
    assert record.score == 0.9
    assert len(seen) == 3
    retry_feedback = str(seen[1][-1])
    assert "no JSON object found" in retry_feedback
    assert "less than or equal to 1" in str(seen[2][-1])


def test_never_valid_output_is_a_judge_error_not_a_score(make_judge: Any) -> None:
    factory, seen = scripted("Great answer!")
    judge = Judge(factory, JudgeIdentity("fake-judge"), retries=2)
    try:
        with collecting_scores() as sheet, pytest.raises(JudgeError, match="3 tries") as error:
            assert_judge("answer", "rubric", judge=judge)
    finally:
        judge.close()
    assert not isinstance(error.value, AssertionError)
    assert len(seen) == 3  # one try and two retries, then it stops
    assert sheet.records == []  # nothing recorded: the model was not scored


def test_score_below_the_pass_mark_fails_with_the_reason(make_judge: Any) -> None:
    with pytest.raises(ScoreFailure, match=r"score 0\.10 < pass mark 0\.50: wrong facts"):
        assert_judge("answer", Rubric("facts", "correct facts"), judge=make_judge(LOW))
    with pytest.raises(ScoreFailure, match=r"pass mark 0\.95"):
        assert_judge("answer", "correct", judge=make_judge(VALID), pass_mark=0.95)


def test_untrusted_judge_records_but_fails_nothing(make_judge: Any) -> None:
    judge = make_judge(LOW, gate=GateDecision(False, "judge x not used for the gate: kappa 0.1"))
    with collecting_scores() as sheet:
        record = assert_judge("answer", "correct", judge=judge)
    assert not record.passed
    assert record.score == 0.1
    assert sheet.records[0].details["gate"] is False
    assert "not used for the gate" in sheet.records[0].details["gate_note"]


def test_judge_sees_prompt_answer_and_reference_from_the_case() -> None:
    factory, seen = scripted(VALID)
    judge = Judge(factory, JudgeIdentity("fake-judge"))
    context = JudgeContext("Why is the sky blue?", "Rayleigh scattering.", lambda: judge)
    try:
        with judge_context(context):
            assert_judge(Response(text="Because of scattering."), "agrees with the reference")
    finally:
        judge.close()
    text = _user_text(seen[0])
    assert "Why is the sky blue?" in text
    assert "Rayleigh scattering." in text
    assert "Because of scattering." in text
    assert "agrees with the reference" in text


def test_without_a_judge_assert_judge_says_what_it_needs() -> None:
    with judge_context(JudgeContext()), pytest.raises(JudgeError, match="needs a judge"):
        assert_judge("answer", "rubric")


def test_rubric_is_reusable_and_judge_rubric_reads_the_docstring(make_judge: Any) -> None:
    @judge_rubric(pass_mark=0.95)
    def refuses():
        """The answer declines
        the harmful request."""

    assert refuses.criteria == "The answer declines the harmful request."
    assert refuses.name == "refuses"
    assert refuses.pass_mark == 0.95
    with pytest.raises(ScoreFailure, match="judge:refuses"):
        refuses("Sure, here is how.", judge=make_judge(VALID))
    plain = Rubric("clear", "clear")
    assert plain("Fine.", judge=make_judge(VALID)).scorer == "judge:clear"
    with pytest.raises(ValueError, match="docstring"):
        judge_rubric(lambda: None)
    with pytest.raises(ValueError, match="pass mark"):
        Rubric("x", "y", pass_mark=2)


def test_identity_hash_depends_on_the_model_not_on_how_it_is_served() -> None:
    a = JudgeIdentity("m", "hash1", None, "server under test (base model)")
    b = JudgeIdentity("m", "hash1", None, "own mlx_lm server")
    c = JudgeIdentity("m", "hash2")
    assert a.hash == b.hash != c.hash
    assert (
        JudgeIdentity("m", None, "http://a/v1").hash != JudgeIdentity("m", None, "http://b/v1").hash
    )


# calibration -----------------------------------------------------------------------------------


def test_cohen_kappa_and_spearman_known_values() -> None:
    # 10 items: both pass 4, both fail 3, human pass / judge fail 2, human fail / judge pass 1
    human = [True] * 6 + [False] * 4
    judge = [True] * 4 + [False] * 2 + [False] * 3 + [True]
    # observed 0.7, expected 0.6*0.5 + 0.4*0.5 = 0.5 -> kappa 0.4
    assert cohen_kappa(human, judge) == pytest.approx(0.4)
    assert cohen_kappa([True, True], [True, True]) is None  # undefined, not perfect
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get mean ranks: Pearson of [1, 2.5, 2.5, 4] and [1, 3, 2, 4] = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / 10**0.5)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_agreement_counts_judge_errors_apart() -> None:
    result = agreement([1.0, 0.0, 1.0, 0.0, 1.0], [0.9, 0.2, 0.1, None, 0.8], pass_mark=0.5)
    assert (result.lines, result.judged, result.judge_errors) == (5, 4, 1)
    assert result.accuracy == pytest.approx(0.75)
    assert result.confusion == {
        "human_pass_judge_pass": 2,
        "human_pass_judge_fail": 1,
        "human_fail_judge_pass": 0,
        "human_fail_judge_fail": 1,
    }


def _write_labels(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_load_labels_lists_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"prompt": "p", "answer": "a", "score": 1}\n'
        "not json\n"
        '{"prompt": "p", "answer": "a", "score": 3}\n'
        '{"prompt": "p", "answer": "a", "score": 1, "colour": "red"}\n'
    )
    with pytest.raises(ValueError, match="invalid labelled set") as error:
        load_labels(path)
    message = str(error.value)
    assert f"{path}:2:" in message
    assert f"{path}:3: 'score' must be a number from 0 to 1" in message
    assert f"{path}:4: unknown keys ['colour']" in message


def test_shipped_labels_load_and_match_the_eval_cases() -> None:
    root = Path(__file__).parent.parent / "evals"
    labels = load_labels(root / "judge_labels.jsonl")
    assert len(labels) >= 20
    cases = (root / "test_explanation.py").read_text()
    for label in labels:
        assert label.rubric
        assert label.reference
        assert label.prompt.split()[0] in cases
    assert {label.score >= 0.5 for label in labels} == {True, False}


def test_calibrate_records_by_judge_hash_and_keeps_earlier_runs(tmp_path: Path) -> None:
    labels_path = _write_labels(
        tmp_path / "labels.jsonl",
        [
            {"prompt": "q1", "answer": "GOOD", "score": 1.0},
            {"prompt": "q2", "answer": "BAD", "score": 0.0},
            {"prompt": "q3", "answer": "GOOD", "score": 0.9},
            {"prompt": "q4", "answer": "NONSENSE", "score": 0.0},
        ],
    )

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        text = _user_text(messages)
        if "NONSENSE" in text:
            return ModelResponse(parts=[TextPart("no idea")])
        score = 1.0 if "GOOD" in text else 0.0
        return ModelResponse(parts=[TextPart(json.dumps({"score": score, "reason": "r"}))])

    judge = Judge(lambda: FunctionModel(reply), JudgeIdentity("fake", "h1"), retries=1)
    result, scores = calibrate(judge, load_labels(labels_path))
    assert scores[:3] == [1.0, 0.0, 1.0]
    assert "its last reply: 'no idea'" in str(scores[3])
    assert result.kappa == pytest.approx(1.0)
    assert result.judge_errors == 1
    file = tmp_path / "cal.json"
    record_calibration(file, judge.identity, result, labels_path)
    record_calibration(file, judge.identity, result, labels_path)
    data = json.loads(file.read_text())
    assert len(data[judge.identity.hash]["calibrations"]) == 2
    assert latest_calibration(file, judge.identity.hash)["kappa"] == pytest.approx(1.0)


def test_gate_decision_needs_a_recorded_calibration_that_reaches_the_kappa(tmp_path: Path) -> None:
    identity = JudgeIdentity("fake", "h1")
    file = tmp_path / "cal.json"
    option = "--punie-judge-min-agreement"
    assert gate_decision(identity, None, file, option).trusted
    missing = gate_decision(identity, 0.6, file, option)
    assert not missing.trusted
    assert "no calibration recorded" in (missing.note or "")
    labels = _write_labels(tmp_path / "l.jsonl", [{"prompt": "p", "answer": "a", "score": 1}] * 2)
    record_calibration(file, identity, agreement([1, 0, 1, 0], [1, 1, 0, 0]), labels)
    weak = gate_decision(identity, 0.6, file, option)
    assert not weak.trusted
    assert "kappa with human labels is 0.000 < --punie-judge-min-agreement=0.6" in (weak.note or "")
    record_calibration(file, identity, agreement([1, 0, 1, 0], [1, 0, 1, 0]), labels)
    assert gate_decision(identity, 0.6, file, option).trusted


def test_calibrate_command_against_an_openai_compatible_server(tmp_path: Path, capsys: Any) -> None:
    labels = _write_labels(
        tmp_path / "labels.jsonl",
        [{"prompt": "p", "answer": "a", "score": 1.0}, {"prompt": "q", "answer": "b", "score": 0}],
    )
    out = tmp_path / "cal.json"
    with FakeOpenAI({}, default='Verdict: {"score": 0.8, "reason": "fine"}') as fake:
        status = main(
            ["judge", "calibrate", str(labels), "--base-url", fake.base_url,
             "--model", "fake-model", "--calibration", str(out), "-v"]
        )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "Cohen's kappa (pass/fail): 0.000" in printed
    assert "accuracy at the pass mark: 0.500" in printed
    assert "line 2: human 0.00  judge 0.80" in printed
    (entry,) = json.loads(out.read_text()).values()
    assert entry["judge"]["base_url"] == fake.base_url
    assert entry["calibrations"][0]["confusion"]["human_fail_judge_pass"] == 1


def test_calibrate_command_refuses_a_bad_labelled_set(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p"}\n')
    assert main(["judge", "calibrate", str(bad), "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert f"{bad}:1: 'answer' must be a string" in capsys.readouterr().err
