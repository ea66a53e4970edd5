"""Real training and real adapters on the default model: the pipeline, and what is served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TWO_CASES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CASES = (
    TWO_CASES
    + """
@pytest.mark.punie(category="math", prompt="What is 15 * 23?")
def test_product(punie_result):
    assert_number(punie_result, 345)
"""
)


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory) -> Path:
    """The training suite, run for a few iterations on the shipped sample dataset."""
    work = tmp_path_factory.mktemp("train")
    adapter = work / "adapter"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "training"), "-p", "no:cacheprovider",
         f"--punie-adapter-out={adapter}", "--punie-iters=12", "--punie-batch-size=2",
         "--punie-num-layers=2", "--punie-lora-rank=4", "--punie-lora-alpha=32",
         "--punie-learning-rate=1e-3"],
        cwd=work, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "punie: training runs" in done.stdout
    return adapter


def test_training_writes_an_adapter_with_its_manifest(trained_adapter):
    manifest = json.loads((trained_adapter / "punie-manifest.json").read_text())
    assert manifest["config"]["rank"] == 4
    assert manifest["config"]["scale"] == 8.0  # alpha 32 / rank 4, as mlx_lm wants it
    assert json.loads((trained_adapter / "adapter_config.json").read_text())["lora_parameters"][
        "scale"
    ] == pytest.approx(8.0)
    assert len(manifest["losses"]["train_losses"]) >= 1
    assert manifest["dataset_hash"]
    rejects = trained_adapter.parent / "adapter.data" / "rejects.jsonl"
    assert rejects.is_file()  # written even when empty: nothing is dropped silently


def _untrained_adapter(model_path: Path, out: Path) -> Path:
    """A LoRA adapter straight from initialisation: its B matrices are zero, it changes nothing."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model = load(str(model_path))[0]
    model.freeze()
    parameters = {"rank": 4, "scale": 2.0, "dropout": 0.0}
    linear_to_lora_layers(model, 2, parameters)
    out.mkdir()
    mx.save_safetensors(
        str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters()))
    )
    config = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": parameters}
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def test_an_adapter_that_changes_nothing_stops_the_run(pytester, model_path, tmp_path):
    adapter = _untrained_adapter(model_path, tmp_path / "untrained")
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess(
        f"--punie-model={model_path}", f"--punie-adapter={adapter}"
    )
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*does not change the model*Was it trained*"])
    assert result.ret != 0


def test_a_trained_adapter_is_served_and_differs_from_base(pytester, model_path, trained_adapter):
    pytester.makepyfile(CASES)
    base = pytester.runpytest_subprocess(f"--punie-model={model_path}", "--punie-results=base.json")
    assert base.ret in (0, 1), base.stdout.str()[-3000:]  # ran (cases may fail), did not error
    tuned = pytester.runpytest_subprocess(
        f"--punie-model={model_path}", f"--punie-adapter={trained_adapter}",
        "--punie-results=tuned.json", "--punie-baseline=base.json",
    )  # fmt: skip
    tuned.stdout.fnmatch_lines(["*compared with*base.json*", f"adapter: {trained_adapter}*"])
    document = json.loads((pytester.path / "tuned.json").read_text())
    served = document["metadata"]["server"]
    assert served["adapter"] == str(trained_adapter.resolve())
    assert len(served["adapter_hash"]) == 64
    from pytest_punie.serving.adapter_check import TOLERANCE

    # the probe saw a real change: greedy text that differs, or log-probabilities that move
    # by more than float noise
    effect = served["extra"]["adapter_effect"]
    assert effect == "greedy text differs" or effect >= TOLERANCE, effect
    base_doc = json.loads((pytester.path / "base.json").read_text())
    assert base_doc["metadata"]["server"]["adapter"] is None
    for doc in (base_doc, document):  # both runs ran every case without an error
        assert len(doc["cases"]) == 3
        assert all(c["outcome"] != "error" for c in doc["cases"]), doc["cases"]


def test_two_runs_with_the_same_settings_score_the_same(pytester, model_path):
    """The second run really asks the model again (``--punie-cache=refresh``): with the cache
    on it would replay the first run's answers and prove nothing."""
    pytester.makepyfile(CASES)
    for name, cache in (("one", "on"), ("two", "refresh")):
        run = pytester.runpytest_subprocess(
            f"--punie-model={model_path}", f"--punie-results={name}.json", f"--punie-cache={cache}"
        )
        assert run.ret in (0, 1), run.stdout.str()[-3000:]
    one, two = (json.loads((pytester.path / f"{n}.json").read_text()) for n in ("one", "two"))
    for doc in (one, two):  # both runs succeeded: every case ran, none errored
        assert len(doc["cases"]) == 3
        assert all(c["outcome"] != "error" and c["response"] for c in doc["cases"]), doc["cases"]
        assert not any(c["cached"] for c in doc["cases"])  # both computed, none replayed
    assert two["metadata"]["cache"]["mode"] == "refresh"
    assert two["metadata"]["server"]["base_url"]  # the second run started the model too
    scores = [
        {c["nodeid"]: (c["score"], c["response"]["text"]) for c in d["cases"]} for d in (one, two)
    ]
    assert scores[0] == scores[1]


def _tool_call_rate(document: dict) -> float:
    """The share of tool_calling cases in which the model made at least one tool call."""
    cases = [c for c in document["cases"] if c["category"] == "tool_calling"]
    called = [c for c in cases if (c.get("response") or {}).get("tool_calls")]
    return len(called) / len(cases)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("PUNIE_SLOW") != "1",
    reason="trains the recipe and runs evals/ three times (about 25 min): PUNIE_SLOW=1 runs it",
)
def test_recipe_eval_after_end_to_end(tmp_path):
    """``pytest training/ --punie-recipe=tool-calling --punie-eval-after`` on a short run: the
    adapter, the comparison next to it, and an adapter that calls tools more often than the base."""
    adapter = tmp_path / "adapter"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "training"), "-p", "no:cacheprovider",
         "--punie-recipe=tool-calling", f"--punie-adapter-out={adapter}", "--punie-iters=24",
         "--punie-batch-size=1", "--punie-learning-rate=2e-3", "--punie-eval-after",
         "--punie-timeout=1800", "--punie-concurrency=8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "iter 24/24: loss" in done.stdout  # progress was shown while it trained
    comparison = (adapter / "comparison.txt").read_text()
    assert "tool_calling" in comparison
    assert "server parses calls" in comparison
    assert "plugin parses calls" in comparison
    base = json.loads((adapter / "eval-base.json").read_text())
    tuned = json.loads((adapter / "eval-adapter.json").read_text())
    assert _tool_call_rate(tuned) > _tool_call_rate(base), comparison
    split = (adapter / "test-split.txt").read_text()  # the held-out tools, base and adapter
    assert "base:" in split
    assert "adapter:" in split
