"""The plugin's state, kept in typed stash keys on the config and the items (never globals)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_punie.cases.marker import Case
    from pytest_punie.conversation.response import Response
    from pytest_punie.conversation.runner import CaseRunner, SharedOutcomes
    from pytest_punie.fixtures import Lane
    from pytest_punie.options import Settings, TrainingSettings
    from pytest_punie.results.run import RunResults
    from pytest_punie.scoring.framework import ScoreSheet
    from pytest_punie.scoring.judge import JudgeSettings
    from pytest_punie.serving.shared import OnDemandServer

SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()
TRAINING_KEY: pytest.StashKey[TrainingSettings] = pytest.StashKey()
JUDGE_KEY: pytest.StashKey[JudgeSettings] = pytest.StashKey()
RUN_DIR_KEY: pytest.StashKey[Path] = pytest.StashKey()
RESULTS_KEY: pytest.StashKey[RunResults] = pytest.StashKey()
SERVER_KEY: pytest.StashKey[OnDemandServer] = pytest.StashKey()
CASE_KEY: pytest.StashKey[Case] = pytest.StashKey()
SHEET_KEY: pytest.StashKey[ScoreSheet] = pytest.StashKey()
RESPONSE_KEY: pytest.StashKey[Response] = pytest.StashKey()
RUNNER_KEY: pytest.StashKey[CaseRunner] = pytest.StashKey()
SHARED_KEY: pytest.StashKey[SharedOutcomes] = pytest.StashKey()
CASE_FILE_KEY: pytest.StashKey[Case] = pytest.StashKey()  # the case of an eval_*.jsonl line
REPEATS_KEY: pytest.StashKey[int] = pytest.StashKey()  # how many times each case runs
INFRA_KEY: pytest.StashKey[list[str]] = pytest.StashKey()  # the run's infrastructure errors
# the models each case runs on with --punie-parity ("adapter" first), empty without it
VARIANTS_KEY: pytest.StashKey[tuple[str, ...]] = pytest.StashKey()
# the derived models' servers and conversations (--punie-parity), by variant name
LANES_KEY: pytest.StashKey[dict[str, Lane]] = pytest.StashKey()
WORKER_RUN_DIR = "punie_run_dir"  # the key of xdist's workerinput holding the run folder
REPEAT_FIXTURE = "_punie_repeat"
VARIANT_FIXTURE = "_punie_variant"


def is_worker(config: pytest.Config) -> bool:
    """Whether this is an xdist worker (the controller aggregates and reports)."""
    return hasattr(config, "workerinput")


def cache_path(config: pytest.Config) -> Path:
    """The response cache's database, next to where pytest was started."""
    from pytest_punie.conversation.cache import DEFAULT_CACHE_PATH  # lazy: pydantic-ai

    return config.invocation_params.dir / DEFAULT_CACHE_PATH


LOGS_KEPT = 20


def server_log_path(config: pytest.Config) -> Path:
    """Where this run's mlx_lm server writes its output: ``.punie/logs`` next to where pytest was
    started, named after the run, so the path the summary prints still exists after the run.
    Only the newest ``LOGS_KEPT`` logs are kept."""
    folder = config.invocation_params.dir / ".punie" / "logs"
    if not is_worker(config) and folder.is_dir():
        logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[LOGS_KEPT:]:
            old.unlink(missing_ok=True)
    return folder / f"mlx-server-{config.stash[RUN_DIR_KEY].name}.log"
