"""Case results, category scores, the threshold gate and what a run records about itself."""

from __future__ import annotations

import platform
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pytest_punie.results.stats import CategoryStats, category_statistics
from pytest_punie.results.thresholds import EVERY_CATEGORY, threshold_for
from pytest_punie.scoring.framework import ScoreRecord
from pytest_punie.scoring.judge import JUDGE_ERROR
from pytest_punie.system.versions import git_commit, package_version

__all__ = [
    "ADAPTER_VARIANT",
    "PROPERTY",
    "CaseResult",
    "CategoryScore",
    "RunMetadata",
    "RunResults",
    "category_scores",
    "gate_failures",
    "run_metadata",
]

PROPERTY = "punie"  # the key of the user property that carries a case result on its report
ADAPTER_VARIANT = "adapter"  # --punie-parity: the adapter as served, which the derived must match


@dataclass(frozen=True)
class CaseResult:
    """One case's result (one sample of it, with ``--punie-repeat``).

    It travels on the test report as ``to_json()`` (JSON values only, for xdist) and is read
    back with ``from_json``. ``scores`` are the scorers' records as JSON, ``response`` the
    conversation as JSON: both are kept as the results file holds them.
    """

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
    variant: str | None = None  # --punie-parity: the model it ran on (adapter, fused, q4...)
    prompt: str | None = None  # the last user turn (the transcript is in response["messages"])
    tools: tuple[dict[str, Any], ...] = ()  # the tools the model saw, as JSON schemas
    expected: dict[str, Any] | None = None  # what a case file's line expects, when it says
    source: str | None = None  # the case file line (path:line) a data-file case came from

    def __post_init__(self) -> None:
        if any(not _is_number(record.get("score")) for record in self.scores):
            object.__setattr__(self, "scores", tuple(_scored(r) for r in self.scores))

    @property
    def derived(self) -> bool:
        """True for a case run on a model derived from the adapter (``--punie-parity``): kept
        apart from the run's own cases, which are the adapter's."""
        return self.variant is not None and self.variant != ADAPTER_VARIANT

    @property
    def cached(self) -> bool:
        """True when the whole conversation was answered by the response cache."""
        return bool(self.response and self.response.get("cached"))

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def judge_error(self) -> bool:
        """True when the judge gave no verdict: an error of the judge, not a score of the model
        (left out of every mean, counted beside it)."""
        return self.failure == JUDGE_ERROR

    @property
    def records(self) -> tuple[ScoreRecord, ...]:
        """The scorers' records, typed."""
        return tuple(
            ScoreRecord(
                scorer=str(r.get("scorer", "")),
                score=float(r["score"]),
                passed=bool(r.get("passed", False)),
                details=_details(r),
            )
            for r in self.scores
        )

    @property
    def gated(self) -> bool:
        """False when a judge the run may not gate on scored the case
        (``--punie-judge-min-agreement`` not reached): the gate leaves the case out."""
        return all(record.details.get("gate") is not False for record in self.records)

    def to_json(self) -> dict[str, Any]:
        """The case as the results file and the test report hold it (shallow: nothing is
        copied, so it is cheap; serialise it, never change it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["scores"] = list(self.scores)
        data["tools"] = list(self.tools)
        data["cached"] = self.cached
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseResult:
        """Read what ``to_json`` wrote; keys this version does not know are ignored, and a
        hand-written entry needs only a nodeid and a score."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("category", "")
        values.setdefault("outcome", "")
        values["score"] = float(values.get("score", 0.0))
        values["scores"] = tuple(values.get("scores") or ())
        values["tools"] = tuple(values.get("tools") or ())
        return cls(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scored(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record whose scorer gave no score (a judge that gave no verdict) as the results keep
    it: score 0.0, never None where a score is a number. The case's failure (``judge error``)
    is what leaves it out of the means."""
    if _is_number(record.get("score")):
        return dict(record)
    return {**record, "score": 0.0, "passed": False}


def _details(record: Mapping[str, Any]) -> Mapping[str, Any]:
    details = record.get("details")
    return details if isinstance(details, Mapping) else {}


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
    """A category's line in the summary table and the results file.

    What ran (``cases``, ``samples``, ``passed``, ``errors``, ``failures``; judge errors
    included and counted in ``judge_errors``) and the figures of what was scored: ``mean``,
    ``low`` and ``high`` are ``stats``'s, from ``stats.category_statistics``, the one rule every
    report reads. ``stats`` is None when no sample was scored (every judge failed); ``mean`` is
    then 0.0 and ``scored`` false.
    """

    name: str
    cases: int  # distinct cases that ran
    passed: int
    errors: int  # samples that errored, judge errors included
    mean: float
    threshold: float | None = None
    failures: Mapping[str, int] = field(default_factory=dict)
    samples: int = 0  # cases times repeats
    low: float | None = None  # 95% interval of the mean (bootstrap over cases)
    high: float | None = None
    judge_errors: int = 0  # samples whose judge gave no verdict: beside the mean, not in it
    stats: CategoryStats | None = None

    @property
    def scored(self) -> bool:
        """False when the judge gave no verdict on any sample: the category has no mean."""
        return self.stats is not None or self.judge_errors < self.samples or not self.samples

    @property
    def step(self) -> float:
        """How far one case moves the mean: 1/cases (a 3-case category moves in 33% steps)."""
        if self.stats:
            return self.stats.step
        return 1.0 / self.cases if self.cases else 1.0

    @property
    def met(self) -> bool | None:
        if self.threshold is None:
            return None
        return self.scored and self.mean >= self.threshold - 1e-9

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cases": self.cases,
            "passed": self.passed,
            "errors": self.errors,
            "judge_errors": self.judge_errors,
            "mean": self.mean,
            "threshold": self.threshold,
            "failures": dict(self.failures),
            "samples": self.samples,
            "low": self.low,
            "high": self.high,
            "met": self.met,
            "stats": self.stats.to_json() if self.stats else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CategoryScore:
        """Read what ``to_json`` wrote."""
        stats = data.get("stats")
        return cls(
            name=str(data["name"]),
            cases=int(data.get("cases", 0)),
            passed=int(data.get("passed", 0)),
            errors=int(data.get("errors", 0)),
            mean=float(data.get("mean") or 0.0),
            threshold=_float_or_none(data.get("threshold")),
            failures={str(k): int(v) for k, v in (data.get("failures") or {}).items()},
            samples=int(data.get("samples", 0)),
            low=_float_or_none(data.get("low")),
            high=_float_or_none(data.get("high")),
            judge_errors=int(data.get("judge_errors", 0)),
            stats=CategoryStats.from_json(stats) if isinstance(stats, Mapping) else None,
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def category_scores(
    results: Iterable[CaseResult], thresholds: Mapping[str, float] | None = None,
    default_threshold: float | None = None,
) -> list[CategoryScore]:  # fmt: skip
    """Per-category counts and statistics (``stats.category_statistics``), sorted by name.

    A case run several times (``--punie-repeat``) counts once, with its mean over the repeats;
    a judge error is counted, never scored.
    """
    results = list(results)
    statistics = category_statistics(results)
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
            mean=stats.mean if stats else 0.0,
            threshold=threshold_for(name, thresholds, default_threshold),
            failures=dict(sorted(Counter(c.failure for c in samples if c.failure).items())),
            samples=len(samples),
            low=stats.low if stats else None,
            high=stats.high if stats else None,
            judge_errors=sum(c.judge_error for c in samples),
            stats=stats,
        )
        for name, samples in sorted(by_category.items())
        for stats in [statistics.get(name)]
    ]


def gate_failures(
    categories: Iterable[CategoryScore], thresholds: Mapping[str, float] | None = None
) -> list[str]:
    """One message per category that misses its threshold, or that has a threshold and no case
    (or no scored case)."""
    categories = list(categories)
    messages = []
    for c in categories:
        if c.met is not False or c.threshold is None:
            continue
        if not c.scored:
            messages.append(
                f"category {c.name!r} has a threshold ({c.threshold:.3f}) but no scored case: "
                f"the judge gave no verdict on its {c.judge_errors} sample(s)"
            )
        else:
            messages.append(
                f"category {c.name!r} scored {c.mean:.3f} < threshold {c.threshold:.3f}"
            )
    seen = {c.name for c in categories}
    messages += [
        f"category {name!r} has a threshold ({value:.3f}) but no case ran in it"
        for name, value in (thresholds or {}).items()
        if name not in seen and name != EVERY_CATEGORY
    ]
    return messages


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

    @property
    def servers(self) -> list[dict[str, Any]]:
        """The servers of a run spread over several (empty for one), as the results file keeps
        them in ``server.servers``: each one's ``base_url``, how many requests it ``answered``
        and whether it ``failed`` (was taken out of rotation)."""
        return list((self.server or {}).get("servers") or [])

    def record_servers(self, servers: Sequence[Mapping[str, Any]]) -> None:
        """Record what each of several servers answered (at the end of the run)."""
        self.server = {**(self.server or {}), "servers": [dict(s) for s in servers]}

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunMetadata:
        """Read what ``to_json`` wrote; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("started", "")
        values.setdefault("run_id", "")  # a file without one has no id (none is made up)
        return cls(**values)


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


@dataclass
class RunResults:
    """Everything the controller gathers during a run, and what it concludes from it."""

    metadata: RunMetadata
    cases: list[CaseResult] = field(default_factory=list)
    other_failures: list[str] = field(default_factory=list)
    # --punie-parity: the cases run on each derived model, by variant (``cases`` are the adapter's)
    derived: dict[str, list[CaseResult]] = field(default_factory=dict)

    def add(self, result: CaseResult) -> None:
        if result.derived:
            self.derived.setdefault(str(result.variant), []).append(result)
            return
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
        """The category scores of every case (the summary's and the results file's)."""
        return category_scores(self.cases, thresholds, default_threshold)

    def judge_notes(self) -> list[str]:
        """Why judges were not used for the gate (``--punie-judge-min-agreement``), once each."""
        notes = (
            str(record.details.get("gate_note") or "")
            for case in self.cases
            for record in case.records
            if record.details.get("gate") is False
        )
        return list(dict.fromkeys(note for note in notes if note))

    def gate(
        self,
        categories: Sequence[CategoryScore],
        thresholds: Mapping[str, float],
        default_threshold: float | None,
    ) -> list[str]:
        """Why the run fails its thresholds (empty: it passes).

        ``categories`` are the run's (``categories()``); the cases an untrusted judge scored
        (``CaseResult.gated`` false) are left out, so only then are the scores of the rest
        computed again.
        """
        cases = [c for c in self.cases if c.gated]
        if len(cases) != len(self.cases):
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
