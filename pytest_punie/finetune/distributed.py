"""Data-parallel LoRA training over several processes ("ranks") with ``mlx.launch``.

Facts from mlx 0.32 / mlx_lm 0.32 this module is built around:

* mlx_lm's trainer reads its world from ``mx.distributed.init()``: each rank trains on
  ``batch_size / world_size`` lines of every batch (the batch size must divide evenly), the
  gradients are averaged with ``all_sum`` before each update, the reported loss and token counts
  are summed over the ranks, and only rank 0 saves the adapter weights.
* ``mlx.launch --backend ring --hosts A,B`` starts one rank per host entry (a host given twice
  runs two ranks). Rank ``i`` listens on ``starting_port + i`` of its host's address; the ring
  backend needs IP addresses (a host name goes through a hostfile with its address). A host
  that is exactly ``127.0.0.1`` is started here with bash; every other host through
  ``ssh -tt HOST``, in the same working directory, with the same command (so the same Python
  path) and only the environment given with ``--env``.
* ``mlx.launch`` exits 0 even when a rank fails: it prints ``Node with rank N exited with code
  C`` on its stderr and stops the other ranks. Failures are read from those lines.
* A ring rank whose peer never comes waits forever: the caller needs a timeout of its own.
* The launcher copies its stdin to every rank, and spins without pause (a core's worth of CPU
  taken from the ranks) while its stdin is at end of file or while a rank's stdin pipe can take
  more: it is given a pipe that stays open, with enough blank lines to fill every rank's stdin
  pipe (the ranks never read them). Measured here with local ranks: 44% of a core with idle
  ranks, 0.5% with their pipes full (ranks over ssh: not measured).
* OpenBLAS starts a thread per core in every process, and its threads spin while they wait:
  two ranks of two threads on two cores trained 40 times slower here (34 s/iter against 0.9
  s/iter with one thread each). Each rank gets cores / ranks-per-host threads, unless
  ``OPENBLAS_NUM_THREADS`` is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "LOOPBACK",
    "LaunchResult",
    "RankExit",
    "failure_text",
    "launch",
    "launch_command",
    "parse_hosts",
    "rank_exits",
]

LOOPBACK = "127.0.0.1"
"""The one address ``mlx.launch`` starts ranks for without ssh."""
RANK_PREFIX = "[rank {rank}] "
"""What a rank puts before each line of an error it reports on stderr."""
CONNECT_TIMEOUT_S = 300.0
"""How long the ranks may take to start and connect their ring."""
STALL_TIMEOUT_S = 1800.0
"""How long a connected ring may go without a progress line before every rank is stopped."""
STDIN_FILLER = b"\n" * (4 << 20)
"""More than a rank's stdin pipe (64 KiB) or an ssh channel's window (2 MiB) takes."""

_RANK_EXIT = re.compile(r"Node with rank (\d+) (?:exited with code (-?\d+)|was killed)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_hosts(text: str) -> tuple[str, ...]:
    """``"127.0.0.1,127.0.0.1"`` as one host per rank; raise ``ValueError`` saying what is wrong.

    ``localhost`` means ``127.0.0.1`` (the address mlx.launch starts without ssh). Ranks on
    ``127.0.0.1`` cannot be reached from other machines, so it is not mixed with other hosts."""
    hosts = []
    for part in text.split(","):
        host = part.strip()
        if not host:
            raise ValueError("an empty host name (give hosts like 127.0.0.1,127.0.0.1)")
        if any(c.isspace() for c in host) or host.startswith("-"):
            raise ValueError(f"{host!r} is not a host name or address")
        if host == "localhost":
            host = LOOPBACK
        if _is_address(host) and ipaddress.ip_address(host).is_loopback and host != LOOPBACK:
            raise ValueError(f"{host}: use {LOOPBACK} for ranks on this machine")
        hosts.append(host)
    if LOOPBACK in hosts and any(h != LOOPBACK for h in hosts):
        raise ValueError(
            f"{LOOPBACK} cannot be mixed with other hosts (their ranks could not reach it): "
            "give this machine's address instead"
        )
    return tuple(hosts)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def launcher() -> list[str]:
    """How ``mlx.launch`` is started: its script next to this Python, else its entry point run by
    this Python (a ``python -m mlx.launch`` does not exist)."""
    script = Path(sys.executable).with_name("mlx.launch")
    if script.is_file():
        return [str(script)]
    from importlib.metadata import entry_points

    (entry,) = entry_points(group="console_scripts", name="mlx.launch")
    module, _, function = entry.value.partition(":")
    code = f"import sys; from {module} import {function} as main; sys.exit(main())"
    return [sys.executable, "-c", code]


def launch_command(
    hosts: Sequence[str],
    rank_command: Sequence[str],
    *,
    starting_port: int,
    hostfile: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``mlx.launch`` command that runs ``rank_command`` once per host entry (ring backend);
    ``hostfile`` instead of ``--hosts`` when some host is a name, not an address."""
    where = ["--hostfile", str(hostfile)] if hostfile else ["--hosts", ",".join(hosts)]
    exported = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return [*launcher(), *where, "--backend", "ring", "--starting-port", str(starting_port),
            *exported, "--", *rank_command]  # fmt: skip


def ring_hostfile(hosts: Sequence[str]) -> dict[str, object] | None:
    """mlx.launch's hostfile for hosts given by name (each resolved to its address here), or None
    when every host is an address. Raise ``OSError`` naming a host that does not resolve."""
    if all(_is_address(h) for h in hosts):
        return None
    entries = []
    for host in hosts:
        try:
            address = host if _is_address(host) else socket.gethostbyname(host)
        except OSError as exc:
            raise OSError(f"host {host!r} does not resolve to an address: {exc}") from None
        entries.append({"ssh": host, "ips": [address]})
    return {"backend": "ring", "hosts": entries}


def check_first_host(hosts: Sequence[str], hostfile: Mapping[str, object] | None) -> None:
    """Rank 0 writes the adapter, so the first host must be this machine: raise ``OSError``
    otherwise (an address that can be bound here is this machine's)."""
    first = hosts[0]
    if hostfile is not None:
        entries = hostfile["hosts"]
        assert isinstance(entries, list)
        first = entries[0]["ips"][0]
    try:
        with socket.socket(socket.AF_INET6 if ":" in first else socket.AF_INET) as probe:
            probe.bind((first, 0))
    except OSError:
        raise OSError(
            f"the first host, {hosts[0]}, is not this machine: rank 0 runs on the first host "
            "and writes the adapter, so list this machine first"
        ) from None


def ranks_per_host(hosts: Sequence[str]) -> int:
    """The most ranks one host runs (1 without hosts)."""
    return max((hosts.count(h) for h in hosts), default=1)


def blas_threads(hosts: Sequence[str]) -> int:
    """OpenBLAS threads per rank: this machine's cores shared among the most ranks one host
    runs (other hosts are taken to have as many cores)."""
    from pytest_punie.system.blas import threads

    return threads(ranks_per_host(hosts))


def free_ports(count: int, tries: int = 50) -> int:
    """The first of ``count`` consecutive ports nobody listens on here (rank i takes the i-th)."""
    from pytest_punie.serving.server import port_is_free

    for _ in range(tries):
        start = random.randint(20_000, 60_000 - count)
        if all(port_is_free(start + i, "0.0.0.0") for i in range(count)):
            return start
    raise OSError(f"found no {count} consecutive free ports for the ring")


@dataclass(frozen=True)
class RankExit:
    """How one rank ended, as mlx.launch reported it; ``code`` None: stopped by the launcher
    after another rank failed."""

    rank: int
    host: str
    code: int | None

    def __str__(self) -> str:
        how = "was stopped" if self.code is None else f"exited with code {self.code}"
        if self.code is not None and self.code < 0:
            how = f"was killed by signal {-self.code}"
        return f"rank {self.rank} on {self.host} {how}"


@dataclass(frozen=True)
class LaunchResult:
    """What a launch of every rank came to."""

    hosts: tuple[str, ...]
    returncode: int  # the launcher's own
    stderr: str
    exits: tuple[RankExit, ...]  # only the ranks that did not exit 0
    timed_out: str | None = None  # why the ranks were stopped, when a timeout stopped them

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.exits and self.timed_out is None

    @property
    def killed_by_signal(self) -> RankExit | None:
        """The first rank (or the launcher, as rank -1) that died by a signal."""
        if self.returncode < 0:
            return RankExit(-1, "the launcher", self.returncode)
        return next((e for e in self.exits if e.code is not None and e.code < 0), None)


def rank_exits(stderr: str, hosts: Sequence[str]) -> tuple[RankExit, ...]:
    """The ranks mlx.launch reported as failed or stopped, in the order it reported them."""
    found = []
    for match in _RANK_EXIT.finditer(stderr):
        rank = int(match.group(1))
        code = int(match.group(2)) if match.group(2) is not None else None
        host = hosts[rank] if rank < len(hosts) else "?"
        found.append(RankExit(rank, host, code))
    return tuple(found)


def failure_text(result: LaunchResult, limit: int = 4000) -> str:
    """Why a launch failed, for a person: the first rank that failed (the others are usually
    stopped because of it) and the end of its stderr (all ranks' when it labelled none)."""
    count = len(result.hosts)
    world = f"{count} rank{'s' if count != 1 else ''} ({', '.join(result.hosts)})"
    stderr = _ANSI.sub("", result.stderr)
    first = next((e for e in result.exits if e.code is not None), None)
    if result.timed_out:
        headline = f"training on {world} was stopped: {result.timed_out}; every rank was stopped"
    elif first is not None:
        headline = f"training on {world} failed: {first}"
    elif result.exits:
        headline = f"training on {world} failed: {result.exits[0]}"
    else:
        headline = f"training on {world} failed: the launcher exited with {result.returncode}"
    lines = stderr.splitlines()
    if first is not None:
        prefix = RANK_PREFIX.format(rank=first.rank)
        own = [line for line in lines if line.startswith(prefix)]
        if own:
            return f"{headline}; its stderr ends:\n" + "\n".join(own)[-limit:]
    tail = stderr[-limit:].strip()
    return f"{headline}; the ranks' stderr ends:\n{tail}" if tail else headline


def launch(
    hosts: Sequence[str],
    rank_command: Sequence[str],
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], bool],
    connect_timeout: float = CONNECT_TIMEOUT_S,
    stall_timeout: float = STALL_TIMEOUT_S,
) -> LaunchResult:
    """Run ``rank_command`` once per host with ``mlx.launch`` (ring backend) and ``env``.

    Every stdout line goes to ``on_line``, which returns True for a sign of progress (the first
    one also says the ring is connected). Until the first sign, the ranks have
    ``connect_timeout`` seconds; after it, ``stall_timeout`` seconds between signs. When a
    timeout passes, the launcher and every rank it started here are stopped (remote ranks end
    with their ssh session). Variables of ``env`` that differ from this process's environment
    are exported to every rank with ``--env`` (ranks started by ssh get no other), with
    ``OPENBLAS_NUM_THREADS`` from ``blas_threads`` unless ``env`` sets it."""
    from pytest_punie.system.processes import stop_process_group

    hosts = tuple(hosts)
    env = {"OPENBLAS_NUM_THREADS": str(blas_threads(hosts)), **env}
    exported = {k: v for k, v in env.items() if os.environ.get(k) != v}
    with tempfile.TemporaryDirectory(prefix="punie-ring-") as folder:
        hostfile_data = ring_hostfile(hosts)
        check_first_host(hosts, hostfile_data)
        hostfile = None
        if hostfile_data is not None:
            hostfile = Path(folder) / "hostfile.json"
            hostfile.write_text(json.dumps(hostfile_data))
        command = launch_command(
            hosts, rank_command, starting_port=free_ports(len(hosts)), hostfile=hostfile,
            env=exported,
        )  # fmt: skip
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,  # kept open and silent: see the module's docstring
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=dict(env),
                start_new_session=True,  # one process group: the launcher and its local ranks
            )
            assert process.stdout is not None
            threading.Thread(target=_fill, args=(process.stdin,), daemon=True).start()
            lines: queue.Queue[str | None] = queue.Queue()
            reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
            reader.start()
            timed_out = None
            connected = ended = False
            last = time.monotonic()
            try:
                while True:
                    limit = stall_timeout if connected else connect_timeout
                    try:
                        line = lines.get(timeout=max(0.0, last + limit - time.monotonic()))
                    except queue.Empty:
                        timed_out = (
                            f"no progress for {limit:.0f} s"
                            if connected
                            else f"the ranks did not start and connect within {limit:.0f} s"
                        )
                        break
                    if line is None:
                        ended = True
                        break
                    if on_line(line):
                        connected, last = True, time.monotonic()
            finally:
                if ended:  # the launcher closed its output: let it finish
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=30)
                stop_process_group(process.pid, grace=10.0)  # whatever is left of the group
                if process.stdin is not None:
                    with contextlib.suppress(OSError):
                        process.stdin.close()
                returncode = process.wait()
                reader.join(timeout=5)
                process.stdout.close()
            errors.seek(0)
            stderr = errors.read()
    return LaunchResult(hosts, returncode, stderr, rank_exits(stderr, hosts), timed_out)


def _fill(stdin: IO[str] | None) -> None:
    """Fill the ranks' stdin pipes through the launcher (see the module's docstring)."""
    with contextlib.suppress(OSError, ValueError):
        assert stdin is not None
        stdin.buffer.write(STDIN_FILLER)  # type: ignore[attr-defined]
        stdin.flush()


def _read_lines(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)
