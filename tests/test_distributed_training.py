"""Training over several ranks: the hosts option, the mlx.launch command, and how a launch of
real local ranks (small Python programs, no model) ends when a rank fails or goes silent."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pytest_punie.cli import main
from pytest_punie.finetune import distributed
from pytest_punie.finetune.distributed import (
    LOOPBACK,
    LaunchResult,
    RankExit,
    failure_text,
    launch,
    launch_command,
    parse_hosts,
    rank_exits,
)
from pytest_punie.finetune.lora import LoraConfig, TrainingError, train_in_subprocess
from pytest_punie.options import TRAIN_HOSTS_OPTION

TWO_LOCAL = (LOOPBACK, LOOPBACK)


def test_launch_command_for_two_local_ranks():
    rank = [sys.executable, "-m", "pytest_punie.finetune.lora", "--job", "{}"]
    command = launch_command(
        TWO_LOCAL, rank, starting_port=40100, env={"LD_PRELOAD": "/lib/libopenblas.so"}
    )
    launcher = distributed.launcher()  # the mlx.launch script next to this Python
    assert launcher == [str(Path(sys.executable).with_name("mlx.launch"))]
    assert command[len(launcher) :] == [
        "--hosts", "127.0.0.1,127.0.0.1", "--backend", "ring", "--starting-port", "40100",
        "--env=LD_PRELOAD=/lib/libopenblas.so", "--", *rank,
    ]  # fmt: skip


def test_launch_command_with_a_hostfile_for_host_names(tmp_path):
    hostfile = tmp_path / "hosts.json"
    command = launch_command(("gpu1", "gpu2"), ["python"], starting_port=5000, hostfile=hostfile)
    assert command[-8:] == ["--hostfile", str(hostfile), "--backend", "ring",
                            "--starting-port", "5000", "--", "python"]  # fmt: skip
    assert distributed.ring_hostfile(TWO_LOCAL) is None  # addresses need no hostfile
    with pytest.raises(OSError, match=r"'no-such-host\.invalid' does not resolve"):
        distributed.ring_hostfile(("no-such-host.invalid",))


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("127.0.0.1,127.0.0.1", TWO_LOCAL),
        (" localhost , 127.0.0.1 ", TWO_LOCAL),
        ("10.0.0.1,gpu-2,10.0.0.1", ("10.0.0.1", "gpu-2", "10.0.0.1")),
        ("127.0.0.1", (LOOPBACK,)),
    ],
)
def test_hosts_are_one_per_rank(text, hosts):
    assert parse_hosts(text) == hosts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1,,127.0.0.1", "an empty host name"),
        ("127.0.0.1,", "an empty host name"),
        ("a b", "'a b' is not a host name"),
        ("127.0.0.2", "use 127.0.0.1 for ranks on this machine"),
        ("127.0.0.1,10.0.0.2", "127.0.0.1 cannot be mixed with other hosts"),
    ],
)
def test_bad_hosts_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_hosts(text)


def test_the_hosts_option_is_checked_at_start(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"{TRAIN_HOSTS_OPTION.flag}=127.0.0.1,,127.0.0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-train-hosts=127.0.0.1,,127.0.0.1: an empty host name*"])
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "punie_train_hosts = 127.0.0.1,10.0.0.9\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-train-hosts=127.0.0.1,10.0.0.9: 127.0.0.1 cannot*"])


def test_punie_train_checks_its_hosts(tmp_path, capsys):
    status = main(["train", str(tmp_path), "--out", str(tmp_path / "a"), "--hosts", ",x"])
    assert status == 2
    assert "--hosts ,x: an empty host name" in capsys.readouterr().err


def test_the_batch_must_divide_among_the_ranks(tmp_path):
    with pytest.raises(TrainingError, match="batch size 3 does not divide among 2 ranks"):
        train_in_subprocess(
            "m", tmp_path, tmp_path / "a", LoraConfig(batch_size=3), hosts=TWO_LOCAL
        )


def test_the_first_host_must_be_this_machine():
    with pytest.raises(OSError, match=r"the first host, 192\.0\.2\.7, is not this machine"):
        distributed.check_first_host(("192.0.2.7", LOOPBACK), None)
    distributed.check_first_host(TWO_LOCAL, None)


def test_blas_threads_share_the_cores_among_a_host_s_ranks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    assert distributed.blas_threads(TWO_LOCAL) == 2
    assert distributed.blas_threads(("10.0.0.1", "10.0.0.2")) == 4
    assert distributed.blas_threads((LOOPBACK,) * 8) == 1


STDERR = """\
\x1b[33m[WARN] Node with rank 1 exited with code 3 \x1b[0m
[ring] Socket 4 was closed by the peer
[rank 0] RuntimeError: [ring] connection to a peer was lost
[rank 1] Traceback (most recent call last):
[rank 1] ValueError: bad line
\x1b[33m[WARN] Node with rank 0 was killed \x1b[0m
"""


def test_the_first_failing_rank_and_its_own_lines_are_the_message():
    exits = rank_exits(STDERR, TWO_LOCAL)
    assert exits == (RankExit(1, LOOPBACK, 3), RankExit(0, LOOPBACK, None))
    text = failure_text(LaunchResult(TWO_LOCAL, 0, STDERR, exits))
    assert text == (
        "training on 2 ranks (127.0.0.1, 127.0.0.1) failed: rank 1 on 127.0.0.1 exited with "
        "code 3; its stderr ends:\n"
        "[rank 1] Traceback (most recent call last):\n[rank 1] ValueError: bad line"
    )
    signalled = LaunchResult(TWO_LOCAL, 0, "", (RankExit(0, LOOPBACK, -4),))
    assert signalled.killed_by_signal == RankExit(0, LOOPBACK, -4)
    assert "rank 0 on 127.0.0.1 was killed by signal 4" in failure_text(signalled)


# Real launches of two local ranks: mlx.launch, its ring, no model (a few seconds each).

RANK = """
import os, sys, time
import mlx.core as mx
if os.environ["MLX_RANK"] == "1" and "late" in sys.argv:
    time.sleep(120)
world = mx.distributed.init(strict=True, backend="ring")
print(f"rank {world.rank()} of {world.size()}", flush=True)
if world.rank() == 1 and "fail" in sys.argv:
    print("[rank 1] ValueError: rank 1 cannot go on", file=sys.stderr, flush=True)
    raise SystemExit(3)
if "silent" in sys.argv or world.rank() == 0 and "fail" in sys.argv:
    time.sleep(120)
"""


def _launch(*arguments: str, **timeouts: float) -> tuple[LaunchResult, list[str], float]:
    lines: list[str] = []

    def on_line(line: str) -> bool:
        lines.append(line.strip())
        return True

    started = time.monotonic()
    result = launch(TWO_LOCAL, [sys.executable, "-c", RANK, *arguments], env=dict(os.environ),
                    on_line=on_line, **timeouts)  # fmt: skip
    return result, lines, time.monotonic() - started


def _all_stopped() -> None:
    """No rank of a launch is left."""
    import subprocess

    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "import os, sys, time" not in running, running


def test_two_local_ranks_run_without_ssh_and_form_a_ring():
    result, lines, _ = _launch()
    assert result.ok, result.stderr
    assert sorted(lines) == ["rank 0 of 2", "rank 1 of 2"]


def test_a_failing_rank_stops_every_rank_and_is_named():
    result, _, seconds = _launch("fail")
    assert not result.ok
    assert seconds < 60  # rank 0 was stopped, not waited for (it sleeps 120 s)
    assert result.exits[0] == RankExit(1, LOOPBACK, 3)
    assert failure_text(result).endswith(
        "failed: rank 1 on 127.0.0.1 exited with code 3; its stderr ends:\n"
        "[rank 1] ValueError: rank 1 cannot go on"
    )
    _all_stopped()


def test_a_silent_ring_is_stopped_after_its_timeout():
    result, lines, seconds = _launch("silent", stall_timeout=3)
    assert len(lines) == 2  # both ranks connected, then said nothing more
    assert result.timed_out == "no progress for 3 s"
    assert seconds < 30
    assert "was stopped: no progress for 3 s; every rank was stopped" in failure_text(result)
    _all_stopped()


def test_a_ring_that_never_connects_is_stopped():
    result, lines, seconds = _launch("late", connect_timeout=5)  # rank 0 waits for rank 1
    assert not lines
    assert result.timed_out == "the ranks did not start and connect within 5 s"
    assert seconds < 30
    _all_stopped()


def test_the_rank_child_is_this_package(tmp_path):
    """Every rank runs ``python -m pytest_punie.finetune.lora --job JSON``: check that it reads a
    job from its arguments (a missing data folder is reported before any model is loaded)."""
    import json
    import subprocess

    job = {"model": "m", "data_dir": str(tmp_path), "out_dir": str(tmp_path / "a"),
           "config": {"keys": None}, "chat_template": None, "dataset_hash": None}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest_punie.finetune.lora", "--job", json.dumps(job)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"{Path(tmp_path)} has no train.jsonl" in done.stderr


def test_a_rank_killed_by_its_preload_trains_again_without_it(monkeypatch, tmp_path):
    """As in one process: ranks killed by a signal before any loss line train once more with
    reference BLAS, and the library's crash is recorded."""
    from pytest_punie.finetune import lora
    from pytest_punie.system import blas

    library = tmp_path / "libopenblas.so"

    asked = []

    def choose(env, processes=1):
        asked.append(processes)
        env["LD_PRELOAD"] = str(library)
        return blas.BlasChoice("fake OpenBLAS", library)

    crashes, preloads, shown = [], [], []
    monkeypatch.setattr(blas, "choose_blas", choose)
    monkeypatch.setattr(blas, "record_crash", lambda lib, reason: crashes.append(reason))

    def run_ranks(job, env, progress):
        preloads.append(env.get("LD_PRELOAD"))
        assert job["hosts"] == list(TWO_LOCAL)
        if len(preloads) == 1:
            return -4, "training on 2 ranks failed: rank 1 was killed by signal 4", False
        (tmp_path / "adapter").mkdir()
        (tmp_path / "adapter" / lora.MANIFEST).write_text('{"world_size": 2}')
        return 0, "", True

    monkeypatch.setattr(lora, "_run_ranks", run_ranks)
    manifest = train_in_subprocess(
        "m", tmp_path, tmp_path / "adapter", LoraConfig(), hosts=TWO_LOCAL, progress=shown.append
    )
    assert manifest == {"world_size": 2}
    assert asked == [2]  # each of this host's two ranks gets its share of the cores
    assert preloads == [str(library), None]
    assert crashes == ["killed the training process with SIGILL"]
    assert shown == [
        "libopenblas.so killed the training process with SIGILL: training again with reference BLAS"
    ]
