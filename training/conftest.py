"""The training pipeline as session fixtures: dataset -> validation -> filters -> LoRA
training -> adapter -> evaluation against the base. Each step is checked by a test in
``test_pipeline.py``, so every step is a visible result.

With no options it trains a small adapter on the sample dataset in ``data/sample`` with the
default model, in a few minutes on a 2-core CPU. ``--punie-train-data``, ``--punie-adapter-out``,
``--punie-lora-*``, ``--punie-iters``... (``pytest --help``) choose otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_punie.chat_template import choose_template
from pytest_punie.lora import LoraConfig, load_config, sweep_configs, train_in_subprocess
from pytest_punie.models import resolve_model
from pytest_punie.pipeline import PreparedData, prepare, token_counter
from pytest_punie.plugin import TRAINING_KEY

SAMPLE_DATA = Path(__file__).resolve().parent / "data" / "sample"

# Small enough to train on the sample in a few minutes on 2 CPU cores; options override.
SUITE_DEFAULTS = LoraConfig(
    rank=8,
    alpha=16.0,
    num_layers=4,
    iters=16,
    batch_size=2,
    learning_rate=2e-4,
    max_seq_length=1024,
    steps_per_report=4,
    steps_per_eval=8,
    val_batches=2,
)
SWEEP_RESULTS = pytest.StashKey[list[dict]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SWEEP_RESULTS] = []


def base_config(training) -> LoraConfig:
    """Suite defaults, then the YAML config, then the command line; short runs report often
    enough that the loss can be seen going down."""
    if training.train_config is not None:
        config = load_config(training.train_config, dict(training.lora))
    else:
        config = dataclasses.replace(SUITE_DEFAULTS, **training.lora)
    return dataclasses.replace(
        config,
        steps_per_report=max(1, min(config.steps_per_report, config.iters // 4)),
        steps_per_eval=max(1, min(config.steps_per_eval, config.iters // 2)),
    ).check()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lora_config" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[TRAINING_KEY]
    base = base_config(settings)
    configs = sweep_configs(base, settings.sweep) if settings.sweep else [base]
    ids = [f"rank{c.rank}-lr{c.learning_rate:g}-iters{c.iters}" for c in configs]
    metafunc.parametrize("lora_config", configs, ids=ids, scope="session")


@pytest.fixture(scope="session")
def training_runs(request) -> list[dict]:
    """One row per trained adapter, for the summary table at the end."""
    return request.config.stash[SWEEP_RESULTS]


@pytest.fixture(scope="session")
def model_path(punie_settings) -> str:
    """The base model (the default model unless --punie-model)."""
    return resolve_model(punie_settings.model)


@pytest.fixture(scope="session")
def chat_template(punie_settings, model_path) -> str | None:
    """The template the eval server renders with, so training sees the same tool format."""
    return choose_template(punie_settings.chat_template, model_path).template


@pytest.fixture(scope="session")
def source_data(punie_training) -> Path:
    return punie_training.train_data or SAMPLE_DATA


@pytest.fixture(scope="session")
def adapter_out(punie_training) -> Path:
    return punie_training.adapter_out or Path("adapters") / "sample"


@pytest.fixture(scope="session")
def prepared(source_data, adapter_out, model_path, chat_template, punie_training) -> PreparedData:
    """Validated and filtered data, written next to the adapter for mlx_lm."""
    max_seq_length = punie_training.lora.get("max_seq_length", SUITE_DEFAULTS.max_seq_length)
    return prepare(
        source_data,
        adapter_out.parent / f"{adapter_out.name}.data",
        max_seq_length=max_seq_length,
        count_tokens=token_counter(model_path, chat_template),
    )


@pytest.fixture(scope="session")
def trained(prepared, lora_config, adapter_out, model_path, chat_template, training_runs, request):
    """Train one adapter (one per sweep combination); return its folder and manifest."""
    out = adapter_out
    if request.config.stash[TRAINING_KEY].sweep:
        out = adapter_out.parent / f"{adapter_out.name}-{request.node.callspec.id}"
    manifest = train_in_subprocess(
        model_path,
        prepared.folder,
        out,
        lora_config,
        chat_template=chat_template,
        dataset_hash=prepared.source_hash,
    )
    training_runs.append({"adapter": str(out), "config": lora_config, "manifest": manifest})
    return out, manifest


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = config.stash.get(SWEEP_RESULTS, [])
    if not rows:
        return
    from pytest_punie.report import text_table

    table = []
    for row in rows:
        losses = row["manifest"]["losses"]
        val = losses["val_losses"][-1][1] if losses["val_losses"] else None
        scores = row.get("scores", {})
        table.append(
            [
                Path(row["adapter"]).name,
                str(row["config"].rank),
                f"{row['config'].learning_rate:g}",
                f"{losses['train_losses'][-1][1]:.3f}",
                f"{val:.3f}" if val is not None else "-",
                f"{losses['seconds_per_iteration']:.2f}",
                f"{losses['mean_tokens_per_second']:.0f}",
                f"{losses['peak_memory_gb']:.2f}",
                " ".join(f"{k}={v:.0%}" for k, v in scores.items()) or "-",
            ]
        )
    header = [
        "adapter",
        "rank",
        "lr",
        "train loss",
        "val loss",
        "s/iter",
        "tok/s",
        "peak GB",
        "scores (adapter)",
    ]
    terminalreporter.section("punie: training runs")
    terminalreporter.line(text_table(table, header))
