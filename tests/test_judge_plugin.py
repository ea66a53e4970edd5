"""The judge through the plugin: options, fixture, results, judge errors and the gate.

The model under test and the judge are small fake OpenAI servers: case prompts are answered from
a table, the judge's prompts (never in the table) get the server's default reply.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_punie.testing import FakeOpenAI

CASES = """
import pytest
from pytest_punie import Rubric, assert_judge

CORRECT = Rubric("correct", "The answer is correct.")

@pytest.mark.punie(category="explanation", prompt="Why is the sky blue?",
                   reference="Rayleigh scattering.")
def test_sky(punie_result):
    assert_judge(punie_result, CORRECT)

@pytest.mark.punie(category="knowledge", prompt="Capital of France?")
def test_capital(punie_result):
    assert "Paris" in punie_result.text
"""
ANSWERS = {"Why is the sky blue?": "Scattering of light.", "Capital of France?": "Paris."}
GOOD = 'My verdict: {"score": 0.9, "reason": "explains scattering"}'
BAD = '{"score": 0.2, "reason": "too vague"}'


def _judge_record(path: str) -> tuple[dict, dict]:
    document = json.loads(Path(path).read_text())
    (case,) = [c for c in document["cases"] if c["category"] == "explanation"]
    return document, case


def test_default_judge_is_the_server_under_test_and_is_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=GOOD) as fake:
        result = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=r.json")
    result.assert_outcomes(passed=2)
    _, case = _judge_record(str(pytester.path / "r.json"))
    (score,) = case["scores"]
    assert score["scorer"] == "judge:correct"
    assert score["score"] == 0.9
    details = score["details"]
    assert details["reason"] == "explains scattering"
    assert details["judge"]["base_url"] == fake.base_url
    assert details["judge_hash"] == details["judge"]["hash"]
    assert details["reference"] == "Rayleigh scattering."
    judged = [r for r in fake.requests if "Rubric: The answer is correct." in json.dumps(r)]
    assert len(judged) == 1
    text = json.dumps(judged[0])
    assert "Why is the sky blue?" in text
    assert "Scattering of light." in text


def test_judge_base_url_sends_judge_calls_to_that_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with (
        FakeOpenAI(ANSWERS, default="no verdict here") as model,
        FakeOpenAI({}, default=BAD) as judge,
    ):
        result = pytester.runpytest(
            f"--punie-base-url={model.base_url}",
            f"--punie-judge-base-url={judge.base_url}",
            "--punie-judge-model=judge-model",
            "--punie-results=r.json",
        )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["verdict:  judge:correct scored 0.20 < 0.50: too vague"])
    assert not any("Rubric:" in json.dumps(r) for r in model.requests)
    assert any(
        r.get("model") == "judge-model" and "Rubric:" in json.dumps(r) for r in judge.requests
    )


def test_a_judge_that_never_gives_a_verdict_errors_the_case_and_scores_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default="I think the answer is fine.") as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "--punie-results=r.json", "--punie-min-score=0.5"
        )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*JudgeError: judge * gave no valid verdict in 3 tries*"])
    result.stdout.fnmatch_lines(["*1 case(s) errored*test_sky*"])
    document, case = _judge_record(str(pytester.path / "r.json"))
    assert case["outcome"] == "error"
    assert case["failure"] == "judge error"
    (explanation,) = [c for c in document["categories"] if c["name"] == "explanation"]
    assert explanation["errors"] == 1
    assert explanation["low"] is None
    assert document["overall"] == 1.0  # not a 0 for the model: only the knowledge case counts
    judged = [r for r in fake.requests if "Rubric:" in json.dumps(r)]
    assert len(judged) == 3  # one try and two retries
    (record,) = case["scores"]
    assert (record["score"], record["passed"]) == (0.0, False)  # a number; the failure says why
    assert "its last reply: 'I think the answer is fine.'" in record["details"]["judge_error"]
    assert record["details"]["judge"]["base_url"] == fake.base_url


def test_an_untrusted_judge_that_errs_is_left_out_of_the_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default="I think the answer is fine.") as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}",
            "--punie-min-score=0.5",
            "--punie-judge-min-agreement=0.5",
        )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*not used for the gate: no calibration recorded*"])


def test_min_agreement_without_calibration_keeps_the_judge_out_of_the_gate(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=BAD) as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}",
            "--punie-min-score=0.9",
            "--punie-judge-min-agreement=0.6",
            "--punie-results=r.json",
        )
    assert result.ret == 0  # the knowledge case meets the gate; the judge's 0.2 is not used
    result.stdout.fnmatch_lines(
        [
            "*not used for the gate: no calibration recorded in *judge-calibration.json*",
            "punie gate passed*",
        ]
    )
    _, case = _judge_record(str(pytester.path / "r.json"))
    assert case["score"] == 0.2
    assert case["scores"][0]["details"]["gate"] is False


def test_min_agreement_with_a_calibrated_judge_gates_on_it(pytester: pytest.Pytester) -> None:
    from pytest_punie.scoring.judge import JudgeIdentity
    from pytest_punie.scoring.judge_calibration import agreement, record_calibration

    pytester.makepyfile(CASES)
    labels = pytester.path / "labels.jsonl"
    labels.write_text('{"prompt": "p", "answer": "a", "score": 1}\n' * 2)
    with FakeOpenAI(ANSWERS, default=BAD) as fake:
        identity = JudgeIdentity("default_model", None, fake.base_url)
        record_calibration(pytester.path / "cal.json", identity, agreement([1, 0], [1, 0]), labels)
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}",
            "--punie-min-score=0.9",
            "--punie-judge-min-agreement=0.6",
            "--punie-judge-calibration=cal.json",
        )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*category 'explanation' scored 0.200 < threshold 0.900*"])
    assert "not used for the gate" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--punie-judge=best"], "--punie-judge=best: must be one of base, model"),
        (["--punie-judge-base-url=ftp://x"], "--punie-judge-base-url=ftp://x: must be an http(s)"),
        (["--punie-judge-min-agreement=2"], "--punie-judge-min-agreement=2: must be a Cohen"),
        (["--punie-judge-min-agreement=high"], "--punie-judge-min-agreement=high: not a number"),
        (["--punie-judge-model=/no/such/model"], "--punie-judge-model=/no/such/model:"),
    ],
)
def test_bad_judge_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_judge_ini_twins_are_read(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\npunie_judge = best\n"
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert "--punie-judge=best: must be one of base, model" in result.stderr.str()


def test_reference_must_be_text(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.punie(prompt='p', reference=3)\ndef test_x(): pass\n"
    )
    result = pytester.runpytest()
    assert "punie(reference=...) must be a non-empty string" in result.stderr.str()


def test_html_report_shows_the_verdict_and_the_judge(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=GOOD) as fake:
        pytester.runpytest(f"--punie-base-url={fake.base_url}", "--html=report.html")
    assets = sorted((pytester.path / "assets").glob("*.txt"))
    judged = [p.read_text() for p in assets if p.read_text().startswith("judge:correct")]
    assert len(judged) == 1
    assert "judge:correct: 0.90 (pass mark 0.5, passed)" in judged[0]
    assert "reason: explains scattering" in judged[0]
    assert "judge: default_model (server under test)" in judged[0]


def test_judge_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=GOOD) as fake:
        result = pytester.runpytest_subprocess(
            f"--punie-base-url={fake.base_url}", "-n", "2", "--punie-results=r.json"
        )
    result.assert_outcomes(passed=2)
    _, case = _judge_record(str(pytester.path / "r.json"))
    assert case["scores"][0]["details"]["reason"] == "explains scattering"


def test_a_category_threshold_on_an_untrusted_judge_s_cases_fails_and_says_why(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=GOOD) as fake:
        result = pytester.runpytest(
            f"--punie-base-url={fake.base_url}",
            "--punie-min-category=explanation=0.5",
            "--punie-judge-min-agreement=0.6",
        )
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*'explanation' has a threshold (0.500) but only a judge not used for the gate scored*"]
    )


def test_a_re_run_asks_the_judge_nothing_it_answered_before(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(ANSWERS, default=GOOD) as fake:
        first = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=a.json")
        judged = [r for r in fake.requests if "Rubric:" in json.dumps(r)]
        again = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-results=b.json")
        rejudged = [r for r in fake.requests if "Rubric:" in json.dumps(r)]
        off = pytester.runpytest(f"--punie-base-url={fake.base_url}", "--punie-cache=off")
        uncached = [r for r in fake.requests if "Rubric:" in json.dumps(r)]
    first.assert_outcomes(passed=2)
    again.assert_outcomes(passed=2)
    off.assert_outcomes(passed=2)
    assert len(judged) == 1
    assert len(rejudged) == 1  # the verdict came from the cache
    assert len(uncached) == 2  # without the cache the judge is asked again
    _, case = _judge_record(str(pytester.path / "b.json"))
    assert case["scores"][0]["score"] == 0.9
