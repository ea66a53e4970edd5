"""The training suite with ``--punie-train-hosts 127.0.0.1,127.0.0.1``: the LoRA step as a ring
of two local ranks (mlx.launch), on ten short lines for a few iterations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["lamp", "river", "stone", "cloud", "maple", "ember", "harbor", "violet", "copper", "pine"]


def _tiny_data(folder: Path) -> Path:
    """Eight training and two validation lines of one easy pattern (the loss falls fast), in
    words no eval prompt uses."""
    folder.mkdir()
    lines = []
    for word in WORDS:
        user = {"role": "user", "content": f"Say the word {word} three times."}
        answer = {"role": "assistant", "content": f"{word} {word} {word}"}
        lines.append(json.dumps({"messages": [user, answer]}))
    (folder / "train.jsonl").write_text("\n".join(lines[:8]) + "\n")
    (folder / "valid.jsonl").write_text("\n".join(lines[8:]) + "\n")
    return folder


def test_pytest_training_over_two_local_ranks(tmp_path):
    adapter = tmp_path / "adapter"
    data = _tiny_data(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "training"), "-v", "-p", "no:cacheprovider",
         "--punie-train-hosts=127.0.0.1,127.0.0.1", f"--punie-train-data={data}",
         f"--punie-adapter-out={adapter}", "--punie-iters=6", "--punie-batch-size=2",
         "--punie-num-layers=2", "--punie-lora-rank=4", "--punie-lora-alpha=32",
         "--punie-learning-rate=1e-3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    manifest = json.loads((adapter / "punie-manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert manifest["hosts"] == ["127.0.0.1", "127.0.0.1"]
    losses = [loss for _, loss in manifest["losses"]["train_losses"]]
    assert len(losses) >= 2
    assert losses[-1] < losses[0], losses
    assert (adapter / "adapters.safetensors").is_file()
    # rank 0 alone reports: each progress line once, after the ring said it was connected
    assert "2 ranks connected: 127.0.0.1, 127.0.0.1" in done.stdout
    assert done.stdout.count("iter 6/6: loss") == 1
    # the other steps ran once, in this process
    for step in (
        "test_every_line_is_valid",
        "test_filters_keep_enough",
        "test_no_eval_prompt_in_training_data",
        "test_training_loss_goes_down",
    ):
        assert len(re.findall(rf"::{step}\S* PASSED", done.stdout)) == 1, step
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".adapter-")]
    assert not leftovers  # rank 0's staging folder became the adapter
