"""The training pipeline as session fixtures: dataset -> validation -> filters -> LoRA
training -> adapter -> evaluation against the base. Each step is checked by a test in
``test_pipeline.py``, so every step is a visible result.

With no options it trains a small adapter on the sample dataset in ``data/sample`` with the
default model, in a few minutes on a 2-core CPU. ``--punie-recipe=tool-calling`` trains a shipped
recipe (its dataset under ``data/`` and its LoRA settings); ``--punie-train-data``,
``--punie-adapter-out``, ``--punie-lora-*``, ``--punie-iters``... (``pytest --help``) choose
otherwise. ``--punie-sweep`` trains one adapter per combination of settings and ``--punie-seeds``
one per seed (of each combination); with ``--punie-eval-after`` each adapter is compared with the
base (evaluated once per session) and must pass the gate, and the session ends with every
verdict and, over seeds, each category's spread. ``--punie-save-every`` scores checkpoints on the
eval suite while training runs and keeps the best (``--punie-select-by``, ``--punie-early-stop``,
``--punie-select-cases``); a recipe does so on its own selection suite unless
``--punie-save-every=0``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_punie.finetune.checkpoints import checkpoint_rows, checkpoint_summary
from pytest_punie.finetune.lora import LoraConfig, sweep_configs
from pytest_punie.finetune.pipeline import (
    PreparedData,
    TrainingJob,
    checkpoint_scorer,
    prepare_job,
    resolve_checkpoints,
    train_job,
    training_config,
)
from pytest_punie.finetune.recipes import find_recipe
from pytest_punie.finetune.verdict import (
    DEFAULT_MAX_DROP,
    Verdict,
    recipe_gate,
    spread_text,
    verdict_text,
)
from pytest_punie.options import TrainingSettings
from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.models import resolve_model
from pytest_punie.stash import TRAINING_KEY

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_DATA = DATA / "sample"
EVALS = Path(__file__).resolve().parent.parent / "evals"
SWEEP_RESULTS = pytest.StashKey[list[dict]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SWEEP_RESULTS] = []


def config_id(config: LoraConfig) -> str:
    c = config
    return f"rank{c.rank}-layers{c.num_layers}-lr{c.learning_rate:g}-iters{c.iters}"


def adapter_suffix(config: LoraConfig, training: TrainingSettings) -> str | None:
    """What tells this adapter from the session's others: its sweep point, its seed, or both."""
    parts = [config_id(config)] if training.sweep else []
    parts += [f"seed{config.seed}"] if training.seeds else []
    return "-".join(parts) or None


def base_config(training: TrainingSettings) -> LoraConfig:
    """The recipe's settings (or the one set of defaults, ``LoraConfig()``), then the YAML
    config, then the command line: ``pipeline.training_config``, as ``punie train`` does."""
    base = find_recipe(training.recipe).config if training.recipe else None
    return training_config(training.train_config, training.lora, base)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lora_config" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[TRAINING_KEY]
    base = base_config(settings)
    configs = sweep_configs(base, settings.sweep) if settings.sweep else [base]
    if settings.seeds:
        configs = [replace(c, seed=seed) for c in configs for seed in settings.seeds]
    ids = [adapter_suffix(c, settings) or config_id(c) for c in configs]
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
    if punie_training.train_data:
        return punie_training.train_data
    if punie_training.recipe:
        return find_recipe(punie_training.recipe).data_path(DATA)
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def adapter_out(punie_training) -> Path:
    name = punie_training.recipe or "sample"
    return punie_training.adapter_out or Path("adapters") / name


@pytest.fixture(scope="session")
def training_job(source_data, adapter_out, model_path, chat_template, punie_training):
    """What this session trains, resolved once (the same object ``punie train`` builds)."""
    job = TrainingJob(
        data=source_data,
        out=adapter_out,
        model=model_path,
        config=base_config(punie_training),
        chat_template=chat_template,
        evals=EVALS if EVALS.is_dir() else None,
        hosts=punie_training.train_hosts,
        checkpoints=punie_training.checkpoints,
    )
    recipe = find_recipe(punie_training.recipe) if punie_training.recipe else None
    return resolve_checkpoints(job, recipe, off=punie_training.no_checkpoints)


@pytest.fixture(scope="session")
def prepared(training_job) -> PreparedData:
    """Validated and filtered data, written next to the adapter for mlx_lm, and checked for
    leakage into the eval suite (a hit fails every step after this one)."""
    return prepare_job(training_job)


@pytest.fixture(scope="session")
def trained(prepared, training_job, lora_config, training_runs, eval_options, request):
    """Train one adapter (one per sweep combination); return its folder and manifest.
    Progress (iteration, loss, tokens/s, time left) is shown while it trains; with
    --punie-save-every, each checkpoint's score too (its eval runs share the response cache of
    where pytest was started)."""
    out = training_job.out
    suffix = adapter_suffix(lora_config, request.config.stash[TRAINING_KEY])
    if suffix:
        out = out.parent / f"{out.name}-{suffix}"
    score = None
    if training_job.checkpoints is not None:
        score = checkpoint_scorer(
            training_job, extra=eval_options, cwd=request.config.invocation_params.dir
        )
    manifest = train_job(
        training_job, prepared, config=lora_config, out=out, progress=_progress(request.config),
        score=score,
    )  # fmt: skip
    training_runs.append({"adapter": str(out), "config": lora_config, "manifest": manifest})
    return out, manifest


@pytest.fixture(scope="session")
def eval_options(punie_settings) -> list[str]:
    """Options every eval run of the session is given."""
    return [f"--punie-timeout={punie_settings.timeout}",
            f"--punie-concurrency={punie_settings.concurrency}"]  # fmt: skip


@pytest.fixture(scope="session")
def base_results(training_job, eval_options, tmp_path_factory) -> dict:
    """The eval suite on the base model, run once per session for every adapter to meet."""
    from pytest_punie.finetune.pipeline import evaluate

    folder = tmp_path_factory.mktemp("base")
    return evaluate(EVALS, folder / "base.json", model=training_job.model, cwd=folder,
                    extra=eval_options)  # fmt: skip


@pytest.fixture(scope="session")
def gate(punie_settings, punie_training) -> dict:
    """What every adapter must pass: the largest drop per category (``--punie-max-regression``,
    else the README's ``*=0.1``) and the recipe's goal category, which must rise significantly."""
    goal = find_recipe(punie_training.recipe).goal if punie_training.recipe else None
    return {"max_drop": dict(punie_settings.max_regression or DEFAULT_MAX_DROP), "goal": goal}


def _progress(config: pytest.Config):
    """Write a line to the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(line: str) -> None:
        if reporter is None or capture is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return show


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = config.stash.get(SWEEP_RESULTS, [])
    if not rows:
        return
    from pytest_punie.results.report import text_table

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
    for row in rows:
        checkpoints = checkpoint_rows(row["manifest"])
        if checkpoints:
            section = row["manifest"]["checkpoints"]
            terminalreporter.section(f"punie: checkpoints of {row['adapter']}")
            header = ["iteration", section["select_by"], "selected"]
            terminalreporter.line(text_table(checkpoints, header))
            terminalreporter.line(checkpoint_summary(row["manifest"]))
    verdicts = [row["verdict"] for row in rows if row.get("verdict") is not None]
    if not verdicts:
        return
    terminalreporter.section("punie: adapters against the base")
    for verdict in verdicts:
        terminalreporter.line(verdict_text(verdict) + "\n")
    for group, members in _seed_groups(config).items():
        text = spread_text(members)
        out = Path(f"{group}-seeds.txt")
        out.write_text(text + "\n")
        terminalreporter.section(f"punie: {Path(group).name} over seeds")
        terminalreporter.line(text)
        terminalreporter.line(f"(written to {out})")


def _seed_groups(config: pytest.Config) -> dict[str, list[Verdict]]:
    """The verdicts of each recipe (each sweep point) when adapters are judged over seeds, by
    the adapter path without its ``-seedN`` (a group of one, when ``-k`` left one seed, is
    judged too: its seed's test left the goal to the recipe)."""
    if not config.stash[TRAINING_KEY].over_seeds:
        return {}
    groups: dict[str, list[Verdict]] = {}
    for row in config.stash.get(SWEEP_RESULTS, []):
        if row.get("verdict") is not None:
            group = re.sub(r"-seed\d+$", "", row["adapter"])
            groups.setdefault(group, []).append(row["verdict"])
    return groups


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A recipe that fails its gate over seeds (a seed's drop fails that seed's test; the
    median seed's goal fails here) makes the session exit non-zero."""
    failed = [g for g, members in _seed_groups(session.config).items()
              if not recipe_gate(members).passed]  # fmt: skip
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
