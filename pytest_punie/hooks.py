"""Hook specifications other plugins and conftest files implement to extend pytest-punie."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_punie.results.run import CaseResult, CategoryScore


def pytest_punie_case_result(result: CaseResult) -> None:
    """Called when a case's result reaches the controller (after its test has run)."""


def pytest_punie_summary_rows(rows: list[list[str]], categories: list[CategoryScore]) -> None:
    """Called before the category table is shown; add, remove or change ``rows`` in place."""


def pytest_punie_results(document: dict[str, Any]) -> None:
    """Called with the run's results before they are written; add fields to ``document``."""
