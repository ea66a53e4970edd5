"""One rule per figure: a run whose judge gave no verdict on a case shows the same category means
in the terminal summary, the results JSON, the baseline comparison, ``punie compare``,
``punie history`` and the HTML report (the judge error left out of the mean, counted beside it).
"""

from __future__ import annotations

import json
import re

import pytest

from pytest_punie.cli import main
from pytest_punie.results.document import FORMAT_VERSION
from pytest_punie.testing import FakeOpenAI

CASES = """
import pytest
from pytest_punie import Rubric, assert_judge

CORRECT = Rubric("correct", "The answer is correct.")

@pytest.mark.punie(category="explanation", prompt="Why is the sky blue?")
def test_sky(punie_result):
    assert_judge(punie_result, CORRECT)

@pytest.mark.punie(category="explanation", prompt="Why is the sunset red?")
def test_sunset(punie_result):
    assert "scattering" in punie_result.text

@pytest.mark.punie(category="knowledge", prompt="Capital of France?")
def test_capital(punie_result):
    assert "Paris" in punie_result.text

@pytest.mark.punie(category="knowledge", prompt="Capital of Peru?")
def test_peru(punie_result):
    assert "Lima" in punie_result.text
"""
ANSWERS = {
    "Why is the sky blue?": "Scattering of light.",
    "Why is the sunset red?": "Rayleigh scattering.",
    "Capital of France?": "Paris.",
    "Capital of Peru?": "Bogota.",
}
NO_VERDICT = "I think the answer is fine."  # what the judge answers: never a verdict
# judge errors left out: explanation 1 of 1 scored case, knowledge 1 of 2, overall 2 of 3
EXPECTED = {"explanation": "100.0%", "knowledge": "50.0%", "overall": "66.7%"}


def _row(text: str, name: str) -> list[str]:
    """The cells of the table row that starts with ``name``."""
    line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
    return line.split()


def test_a_run_with_a_judge_error_shows_the_same_means_everywhere(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(CASES)
    history = pytester.path / "history.db"
    common = ["--punie-cache=off", f"--punie-history={history}"]
    with FakeOpenAI(ANSWERS, default=NO_VERDICT) as fake:
        first = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "--punie-results=a.json", *common
        )
        second = pytester.runpytest(
            f"--punie-base-url={fake.base_url}", "--punie-results=b.json", *common,
            "--punie-baseline=a.json", "--html=report.html",
        )  # fmt: skip
    first.assert_outcomes(passed=2, failed=2)
    second.assert_outcomes(passed=2, failed=2)

    # the terminal summary: the category table, and the comparison with the baseline
    summary = first.stdout.str()
    for name, mean in EXPECTED.items():
        assert _row(summary, name)[4] == mean, name
    compared = second.stdout.str().split("compared with")[1]
    for name, mean in EXPECTED.items():
        assert _row(compared, name)[1:3] == [mean, mean], name

    # the results JSON: the same figures, the judge error beside the mean
    document = json.loads((pytester.path / "a.json").read_text())
    assert document["format_version"] == FORMAT_VERSION
    categories = {c["name"]: c for c in document["categories"]}
    assert f"{categories['explanation']['mean']:.1%}" == EXPECTED["explanation"]
    assert f"{categories['knowledge']['mean']:.1%}" == EXPECTED["knowledge"]
    assert f"{document['overall']:.1%}" == EXPECTED["overall"]
    assert categories["explanation"]["judge_errors"] == 1
    assert categories["explanation"]["stats"]["cases"] == 1  # the scored case
    (sky,) = [c for c in document["cases"] if c["nodeid"].endswith("test_sky")]
    assert (sky["failure"], sky["scores"][0]["score"]) == ("judge error", 0.0)

    # punie compare
    capsys.readouterr()
    assert main(["compare", str(pytester.path / "a.json"), str(pytester.path / "b.json")]) == 0
    out = capsys.readouterr().out
    for name, mean in EXPECTED.items():
        assert _row(out, name)[1:3] == [mean, mean], name

    # punie history: the latest run of the series, both runs recorded with the same figures
    assert main(["history", "--db", str(history)]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[0].split(), out.splitlines()[2]
    assert header[:4] == ["model/adapter", "overall", "explanation", "knowledge"]
    cells = re.split(r"\s{2,}", row.strip())
    assert [c.rstrip("*") for c in cells[1:4]] == [
        EXPECTED["overall"], EXPECTED["explanation"], EXPECTED["knowledge"]
    ]  # fmt: skip

    # the HTML report's summary table
    page = (pytester.path / "report.html").read_text()
    summary_table = page[page.index("punie-categories") :].split("</table>")[0]
    for name, mean in EXPECTED.items():
        assert re.search(rf"<td[^>]*>{name}</td>(?:\s*<td[^>]*>[^<]*</td>){{3}}\s*"
                         rf"<td[^>]*>{re.escape(mean)}</td>", summary_table), name  # fmt: skip
