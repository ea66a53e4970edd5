"""The eval suite's own collection rule: explanations are graded only by a judge named on
purpose. The embedded 135M default model, as judge, never returns a valid verdict (see
benchmarks/RESULTS.md, "Judge calibration"), so without ``--punie-judge-model`` or
``--punie-judge-base-url`` the judge-scored cases are skipped, and not even generated."""

from __future__ import annotations

import pytest

from pytest_punie.options import JUDGE_BASE_URL_OPTION, JUDGE_MODEL_OPTION, raw_value

NO_JUDGE = (
    "no judge named: pass --punie-judge-model=MODEL or --punie-judge-base-url=URL "
    "(the default model cannot judge: see benchmarks/RESULTS.md)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if raw_value(config, JUDGE_MODEL_OPTION) or raw_value(config, JUDGE_BASE_URL_OPTION):
        return
    for item in items:
        if item.path.name == "test_explanation.py":
            item.add_marker(pytest.mark.skip(reason=NO_JUDGE))
