"""A case's category and score as JUnit XML properties (``--junitxml``).

pytest writes a test case's ``<properties>`` from its teardown report, whose user properties are
the item's (``item.user_properties``). The whole case result (``run.PROPERTY``, with its
transcript) travels on the call report only, so it stays out of the XML; these two short,
readable properties go on the item instead::

    <property name="punie.category" value="tool_calling"/>
    <property name="punie.score" value="0.5"/>

The XML holds ``<properties>`` inside ``<testcase>`` for every ``junit_family``; CI readers
(GitHub, GitLab, Jenkins) read them, though the strict xunit2 schema lists properties only on
the suite (pytest's own ``record_property`` warns about that; these do not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_punie.results.run import CaseResult

__all__ = ["JUNIT_CATEGORY", "JUNIT_SCORE", "set_junit_properties"]

JUNIT_CATEGORY = "punie.category"
JUNIT_SCORE = "punie.score"


def set_junit_properties(user_properties: list[tuple[str, object]], result: CaseResult) -> None:
    """Put ``result``'s category and score in ``user_properties`` (an item's), replacing the
    ones an earlier report of the same item put there."""
    user_properties[:] = [
        (name, value)
        for name, value in user_properties
        if name not in (JUNIT_CATEGORY, JUNIT_SCORE)
    ]
    user_properties += [(JUNIT_CATEGORY, result.category), (JUNIT_SCORE, f"{result.score:g}")]
