"""Case results, category scores, the threshold gate and the machine-readable results file."""

from __future__ import annotations

import json
import platform
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_punie.results.thresholds import EVERY_CATEGORY
from pytest_punie.scoring.judge import JUDGE_ERROR
from pytest_punie.system.files import atomic_write_text

__all__ = [
    "CaseResult",
    "CategoryScore",
    "category_scores",
    "gate_failures",
    "overall_score",
    "run_metadata",
    "write_results",
]
from pytest_punie.results.stats import category_intervals

PROPERTY = "punie"  # the key of the user property that carries a case result on its report


@dataclass(frozen=True)
class CaseResult:
    """One case's result as it travels on the test report (JSON values only, for xdist)."""

    nodeid: str  # the case's test id, without the repeat's part
    category: str
    outcome: str  # passed, failed or error
    score: float
    scores: tuple[dict[str, Any], ...] = ()
    response: dict[str, Any] | None = None
    duration_s: float = 0.0
    message: str | None = None
    server: dict[str, Any] | None = None
    failure: str | None = None  # the failure type: "no call", "wrong tool", ..., "error"
    repeat: int = 0
    prompt: str | None = None  # the last user turn (the transcript is in response["messages"])
    tools: tuple[dict[str, Any], ...] = ()  # the tools the model saw, as JSON schemas
    expected: dict[str, Any] | None = None  # what a case file's line expects, when it says
    source: str | None = None  # the case file line (path:line) a data-file case came from

    @property
    def cached(self) -> bool:
        """True when the whole conversation was answered by the response cache."""
        return bool(self.response and self.response.get("cached"))

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scores"] = list(self.scores)
        data["tools"] = list(self.tools)
        data["cached"] = self.cached
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseResult:
        values = dict(data)
        values["scores"] = tuple(values.get("scores", ()))
        values["tools"] = tuple(values.get("tools", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def call_sources(cases: Iterable[CaseResult]) -> dict[str, int]:
    """How many tool calls came structured from the server and how many the plugin parsed
    from the model's text (``ToolCall.source``)."""
    counts = {"structured": 0, "text": 0}
    for case in cases:
        for call in (case.response or {}).get("tool_calls", ()):
            source = call.get("source", "structured")
            counts[source] = counts.get(source, 0) + 1
    return counts


def call_sources_line(cases: Iterable[CaseResult]) -> str | None:
    """``tool calls: 12 structured (80%), 3 parsed from text (20%)``, or None without calls."""
    counts = call_sources(cases)
    total = sum(counts.values())
    if not total:
        return None
    structured, text = counts.get("structured", 0), counts.get("text", 0)
    return (
        f"tool calls: {structured} structured ({structured / total:.0%}), "
        f"{text} parsed from text ({text / total:.0%})"
    )


def failure_type(outcome: str, details: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a case failed: the first failing scorer's classified failure, else a generic one."""
    if outcome == "passed":
        return None
    if outcome == "error":
        return "error"
    for detail in details:
        if not detail.get("passed", True):
            found = (detail.get("details") or {}).get("failure")
            return str(found) if found else str(detail.get("scorer", "assertion"))
    return "assertion"


def case_score(outcome: str, recorded: Iterable[float]) -> float:
    """The mean of the scores a case's scorers recorded; without any, 1 if it passed, else 0.

    A case that errored (the server died, a fixture failed) scores 0 whatever was recorded.
    """
    if outcome == "error":
        return 0.0
    values = list(recorded)
    if values:
        return sum(values) / len(values)
    return 1.0 if outcome == "passed" else 0.0


@dataclass(frozen=True)
class CategoryScore:
    """A category's line in the summary table."""

    name: str
    cases: int
    passed: int
    errors: int
    mean: float
    threshold: float | None = None
    failures: Mapping[str, int] = field(default_factory=dict)
    samples: int = 0  # cases times repeats
    low: float | None = None  # 95% interval of the mean (bootstrap over cases)
    high: float | None = None

    @property
    def step(self) -> float:
        """How far one case moves the mean: 1/cases (a 3-case category moves in 33% steps)."""
        return 1.0 / self.cases if self.cases else 1.0

    @property
    def met(self) -> bool | None:
        return None if self.threshold is None else self.mean >= self.threshold - 1e-9

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "failures": dict(self.failures), "met": self.met}


def category_scores(
    results: Iterable[CaseResult], thresholds: Mapping[str, float] | None = None,
    default_threshold: float | None = None,
) -> list[CategoryScore]:  # fmt: skip
    """Per-category counts, mean scores and 95% intervals, sorted by category name.

    A case run several times (``--punie-repeat``) counts once, with its mean over the repeats;
    the interval is a bootstrap over cases.
    """

    results = list(results)
    # a case whose judge gave no verdict is an error of the judge, not a 0 for the model
    intervals = category_intervals(r.to_json() for r in results if r.failure != JUDGE_ERROR)
    by_category: dict[str, list[CaseResult]] = {}
    for result in results:
        by_category.setdefault(result.category, []).append(result)
    thresholds = thresholds or {}
    return [
        CategoryScore(
            name=name,
            cases=len({c.nodeid for c in samples}),
            passed=sum(c.passed for c in samples),
            errors=sum(c.outcome == "error" for c in samples),
            mean=intervals[name].mean if name in intervals else 0.0,
            threshold=thresholds.get(name, thresholds.get(EVERY_CATEGORY, default_threshold)),
            failures=dict(sorted(Counter(c.failure for c in samples if c.failure).items())),
            samples=len(samples),
            low=intervals[name].low if name in intervals else None,
            high=intervals[name].high if name in intervals else None,
        )
        for name, samples in sorted(by_category.items())
    ]


def overall_score(results: Iterable[CaseResult]) -> float | None:
    """The mean score over all cases (each case's repeats averaged first)."""
    per_case: dict[str, list[float]] = {}
    for result in results:
        if result.failure != JUDGE_ERROR:
            per_case.setdefault(result.nodeid, []).append(result.score)
    means = [sum(v) / len(v) for v in per_case.values()]
    return sum(means) / len(means) if means else None


def gate_failures(
    categories: Iterable[CategoryScore], thresholds: Mapping[str, float] | None = None
) -> list[str]:
    """One message per category that misses its threshold, or that has a threshold and no case."""
    messages = [
        f"category {c.name!r} scored {c.mean:.3f} < threshold {c.threshold:.3f}"
        for c in categories
        if c.met is False
    ]
    seen = {c.name for c in categories}
    messages += [
        f"category {name!r} has a threshold ({value:.3f}) but no case ran in it"
        for name, value in (thresholds or {}).items()
        if name not in seen and name != EVERY_CATEGORY
    ]
    return messages


def package_version(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


@dataclass
class RunMetadata:
    """What was run, on what, with which settings: enough to reproduce or compare a run."""

    started: str
    finished: str | None = None
    server: dict[str, Any] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    platform: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cache: dict[str, Any] = field(default_factory=dict)  # mode, path, cases answered from it
    sandbox: str | None = None  # the isolation model code and run_command ran under


def run_metadata(started: str, sampling: Mapping[str, Any], root: Path | None) -> RunMetadata:
    return RunMetadata(
        started=started,
        sampling=dict(sampling),
        versions={
            name: package_version(name)
            for name in ("pytest-punie", "mlx", "mlx-lm", "pydantic-ai-slim", "pytest")
        },
        git_commit=git_commit(root),
        platform=f"{platform.system()} {platform.machine()} python {platform.python_version()}",
    )


def results_document(
    meta: RunMetadata,
    results: Iterable[CaseResult],
    categories: Iterable[CategoryScore],
    gate: list[str] | None,
) -> dict[str, Any]:
    results = list(results)
    meta.cache["cached_cases"] = sum(r.cached for r in results)
    return {
        "metadata": asdict(meta),
        "overall": overall_score(results),
        "categories": [c.to_json() for c in categories],
        "gate": {"failures": gate} if gate is not None else None,
        "cases": [r.to_json() for r in results],
    }


def write_results(path: Path, document: Mapping[str, Any]) -> None:
    """Write the results JSON atomically (a crash leaves the previous file whole)."""
    atomic_write_text(path, json.dumps(document, indent=2, default=str))


@dataclass
class RunResults:
    """Everything the controller gathers during a run, and what it concludes from it."""

    metadata: RunMetadata
    cases: list[CaseResult] = field(default_factory=list)
    other_failures: list[str] = field(default_factory=list)

    def add(self, result: CaseResult) -> None:
        self.cases.append(result)
        known, now = self.metadata.server, result.server
        if now and (
            known is None
            or (now.get("base_url") and not known.get("base_url"))
            or (now.get("start_error") and not known.get("base_url"))
        ):
            self.metadata.server = now  # a started (or failed) server's, once there is one

    def categories(
        self, thresholds: Mapping[str, float], default_threshold: float | None
    ) -> list[CategoryScore]:
        return category_scores(self.cases, thresholds, default_threshold)

    def judge_notes(self) -> list[str]:
        """Why judges were not used for the gate (``--punie-judge-min-agreement``), once each."""
        notes = (_details(s).get("gate_note") for c in self.cases for s in c.scores)
        return list(dict.fromkeys(n for n in notes if n and "not used for the gate" in n))

    def gate(self, thresholds: Mapping[str, float], default_threshold: float | None) -> list[str]:
        """Why the run fails its thresholds (empty: it passes); cases an untrusted judge scored
        are left out."""
        cases = [c for c in self.cases if all(_details(s).get("gate", True) for s in c.scores)]
        categories = category_scores(cases, thresholds, default_threshold)
        judged_only = {c.category for c in self.cases} - {c.category for c in cases}
        messages = gate_failures(
            categories, {k: v for k, v in thresholds.items() if k not in judged_only}
        )
        messages += [
            f"category {name!r} has a threshold ({thresholds[name]:.3f}) but only a judge not "
            "used for the gate scored its cases"
            for name in sorted(judged_only & set(thresholds))
        ]
        if not self.cases:
            messages.append("no eval case ran, so no threshold can be met")
        errors = [c.nodeid for c in cases if c.outcome == "error"]
        if errors:
            messages.append(f"{len(errors)} case(s) errored: {', '.join(errors[:5])}")
        if self.other_failures:
            messages.append(
                f"{len(self.other_failures)} test(s) outside the eval cases failed: "
                + ", ".join(self.other_failures[:5])
            )
        return messages


def _details(score: Mapping[str, Any]) -> Mapping[str, Any]:
    details = score.get("details")
    return details if isinstance(details, Mapping) else {}
