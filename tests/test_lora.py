"""LoRA settings, sweeps and the `punie train` command's checks (no training here)."""

from __future__ import annotations

import json

import pytest

from pytest_punie.cli import main
from pytest_punie.finetune.lora import LoraConfig, TrainingReport, load_config, sweep_configs


def test_alpha_becomes_mlx_scale():
    config = LoraConfig(rank=16, alpha=32, num_layers=-1)
    assert config.scale == 2.0
    args = config.mlx_args("m", "data", "out", layers=30)
    assert args.lora_parameters == {"rank": 16, "scale": 2.0, "dropout": 0.0}
    assert "alpha" not in args.lora_parameters  # mlx_lm raises KeyError on alpha
    assert args.num_layers == 30  # -1: every block


def test_keys_and_layers_reach_mlx():
    args = LoraConfig(keys=("self_attn.q_proj",), num_layers=4).mlx_args("m", "d", "o", layers=30)
    assert args.lora_parameters["keys"] == ["self_attn.q_proj"]
    assert args.num_layers == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rank": 0}, "rank must be at least 1"),
        ({"dropout": 1.5}, "dropout must be in"),
        ({"num_layers": 0}, "num_layers must be -1"),
        ({"learning_rate": 0}, "must be positive"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig(**values).check()


def test_yaml_config_with_mlx_keys(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text("iters: 50\nlearning_rate: 1.0e-4\nlora_parameters:\n  rank: 8\n  scale: 4.0\n")
    config = load_config(path, {"dropout": 0.1, "iters": None})
    assert (config.rank, config.alpha, config.iters, config.dropout) == (8, 32.0, 50, 0.1)
    path.write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config(path)


def test_sweep_makes_every_combination():
    configs = sweep_configs(LoraConfig(), "rank=8,16 lr=1e-5,1e-4")
    assert [(c.rank, c.learning_rate) for c in configs] == [
        (8, 1e-5), (8, 1e-4), (16, 1e-5), (16, 1e-4)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="is not NAME=V1,V2"):
        sweep_configs(LoraConfig(), "colour=red")
    with pytest.raises(ValueError, match="rank must be at least 1"):
        sweep_configs(LoraConfig(), "rank=0")


def test_training_report_flags_overfitting():
    report = TrainingReport(
        train_losses=[(10, 2.0), (20, 1.0)], val_losses=[(0, 2.0), (10, 1.5), (20, 1.7)]
    )
    assert report.loss_went_down
    assert report.validation_rose
    assert not TrainingReport(val_losses=[(0, 2.0), (10, 1.5)]).validation_rose


def test_sweep_option_is_checked_at_start(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-sweep=rank=8 bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-sweep: sweep: 'bogus' is not NAME=V1,V2*"])
    result = pytester.runpytest("--punie-lora-rank=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*training options: rank must be at least 1*"])
    result = pytester.runpytest("--punie-train-data=nowhere")
    result.stderr.fnmatch_lines(["*--punie-train-data=nowhere: no such file or folder*"])


def test_punie_train_refuses_a_missing_folder(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "a")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.integration  # counts tokens with the default model's tokenizer
def test_punie_train_lists_invalid_lines_and_does_not_train(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n{broken\n")
    (data / "valid.jsonl").write_text(json.dumps(good) + "\n")
    from pytest_punie.serving.default_model import default_model_path

    model = default_model_path()
    status = main(["train", str(data), "--out", str(tmp_path / "adapter"), "--model", str(model)])
    captured = capsys.readouterr()
    assert status == 1
    assert "train.jsonl:2:" in captured.err
    assert not (tmp_path / "adapter").exists()


def test_sweep_parametrizes_the_training_suite():
    import subprocess
    import sys
    from pathlib import Path

    training = Path(__file__).resolve().parents[1] / "training"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(training), "--collect-only", "-q",
         "-p", "no:cacheprovider", "--punie-sweep=rank=4,8 lr=1e-4"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (4, 8):
        assert f"test_training_loss_goes_down[rank{rank}-layers4-lr0.0001-iters16]" in done.stdout
    assert done.stdout.count("test_every_line_is_valid") == 1  # steps before training run once


def _cli_config(*arguments: str) -> LoraConfig:
    import argparse

    from pytest_punie.cli.train import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return config_from_args(parser.parse_args(["train", "data", "--out", "a", *arguments]))


def _suite_config(pytester, *arguments: str) -> LoraConfig:
    import importlib.util
    from pathlib import Path

    from pytest_punie.options import training_settings_from_config

    conftest = Path(__file__).resolve().parents[1] / "training" / "conftest.py"
    spec = importlib.util.spec_from_file_location("training_conftest", conftest)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = pytester.parseconfig(*arguments)
    return module.base_config(training_settings_from_config(config))


@pytest.mark.parametrize(
    ("suite", "cli"),
    [
        ((), ()),
        (("--punie-lora-rank=16", "--punie-iters=40"), ("--rank", "16", "--iters", "40")),
        (("--punie-recipe=tool-calling",), ("--recipe", "tool-calling")),
        (
            ("--punie-recipe=tool-calling", "--punie-learning-rate=1e-3", "--punie-mask-prompt"),
            ("--recipe", "tool-calling", "--learning-rate", "1e-3", "--mask-prompt"),
        ),
    ],
)
def test_pytest_training_and_punie_train_configure_alike(pytester, suite, cli):
    """One set of defaults and one resolution order for both entry points (issue 10)."""
    assert _suite_config(pytester, *suite) == _cli_config(*cli)


def test_yaml_then_options_are_applied_alike(pytester, tmp_path):
    yaml = tmp_path / "lora.yaml"
    yaml.write_text("iters: 30\nmax_seq_length: 512\nlora_parameters:\n  rank: 4\n  scale: 2.0\n")
    suite = _suite_config(pytester, f"--punie-train-config={yaml}", "--punie-iters=20")
    cli = _cli_config("--config", str(yaml), "--iters", "20")
    assert suite == cli
    # the YAML's values win over the defaults, the options over the YAML
    assert (suite.rank, suite.alpha, suite.iters, suite.max_seq_length) == (4, 8.0, 20, 512)
    assert suite.batch_size == LoraConfig().batch_size  # unset: the one default


def test_defaults_are_the_small_cpu_run():
    config = _cli_config()
    assert config == LoraConfig(steps_per_report=4, steps_per_eval=8)
    assert (config.iters, config.learning_rate, config.batch_size) == (16, 2e-4, 2)


def test_unknown_recipe_lists_the_recipes(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-recipe=list")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-recipe=list: unknown recipe 'list'; the recipes are: "
                                 "tool-calling (*), sample (*)"])  # fmt: skip


def test_progress_line_says_iteration_loss_speed_and_time_left():
    from pytest_punie.finetune.lora import progress_line

    line = progress_line(20, 150, 1.2345, 410.4, seconds_per_iteration=3.1)
    assert line == "iter 20/150: loss 1.234, 410 tok/s, 3.1 s/iter, 6m43s left"
    assert progress_line(150, 150, 0.5, 400, 2.0).endswith("0m00s left")
    assert "3.2 tok/s" in progress_line(4, 24, 1.4, 3.24, 160.0)  # a loaded machine


@pytest.mark.integration  # counts tokens with the default model's tokenizer
def test_punie_train_refuses_data_that_leaks_into_the_evals(tmp_path, capsys):
    from pathlib import Path

    evals = Path(__file__).resolve().parents[1] / "evals"
    data = tmp_path / "data"
    data.mkdir()
    leaky = {"messages": [{"role": "user", "content": "What is the weather in Paris ?"},
                          {"role": "assistant", "content": "Sunny."}]}  # fmt: skip
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(leaky) + "\n")
    (data / "valid.jsonl").write_text(json.dumps(good) + "\n")
    status = main(["train", str(data), "--out", str(tmp_path / "adapter"), "--evals", str(evals)])
    err = capsys.readouterr().err
    assert status == 1
    assert "test_tool_calling.py::test_weather" in err
    assert f"{data / 'train.jsonl'}:2" in err
    assert not (tmp_path / "adapter").exists()
