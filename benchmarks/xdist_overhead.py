"""What `pytest -n 2 evals/` costs beyond the model's time: the suite against a fake server.

The fake OpenAI server (``pytest_punie.testing.FakeOpenAI``) answers at once, so each run's wall
time is pytest's, xdist's and the plugin's own: start-up, collection, scoring, reports. Each
setting runs in turn, ``--rounds`` times, so all meet the same load; the table gives each run's
wall time and, per setting, the median and the cost of ``-n 2`` against the same run without
it. ``--timeline`` also prints when each process configured, collected, finished its tests and
its session (a throwaway plugin on ``PYTHONPATH``), to show where the difference goes.

    python benchmarks/xdist_overhead.py [--rounds N] [--timeline]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, run_evals, table

from pytest_punie.testing import FakeOpenAI

SETTINGS = [  # the shipped evals/pytest.ini blocks hypothesis' plugin; "-p hypothesispytest" not
    ("no -n", ()),
    ("-n 2", ("-n", "2")),
]

TIMELINE = """
import os, time, pytest
T0 = float(os.environ["PUNIE_TIMELINE_T0"])
LOG = os.environ["PUNIE_TIMELINE_LOG"]
def _w(config, what):
    who = getattr(config, "workerinput", {}).get("workerid", "main")
    with open(LOG, "a") as f:
        f.write(f"{time.time() - T0:6.2f} s  {who:5} {what}\\n")
def pytest_configure(config): _w(config, "configured")
def pytest_collection_finish(session): _w(session.config, f"collected {len(session.items)}")
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if nextitem is None: _w(item.config, "last test done")
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    yield
    _w(session.config, "session finished (summary, reports)")
"""


def run(base_url: str, extra: tuple[str, ...], folder: Path, timeline: bool) -> float:
    """One run's wall seconds (``common.run_evals``: no case may error)."""
    env = dict(os.environ)
    if timeline:
        (folder / "punie_timeline.py").write_text(TIMELINE)
        env["PYTHONPATH"] = f"{folder}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["PUNIE_TIMELINE_T0"] = str(time.time())
        env["PUNIE_TIMELINE_LOG"] = str(folder / "timeline.txt")
        (folder / "timeline.txt").write_text("")
        extra = (*extra, "-p", "punie_timeline")
    seconds, _ = run_evals(folder, "run", f"--punie-base-url={base_url}", *extra, env=env)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeline", action="store_true", help="print each process's timeline")
    parser.add_argument(
        "--with-hypothesis", action="store_true", help="also run each with hypothesis' plugin"
    )
    args = parser.parse_args()
    settings = list(SETTINGS)
    if args.with_hypothesis:
        settings += [(f"{name}, hypothesis plugin", (*extra, "-p", "hypothesispytest"))
                     for name, extra in SETTINGS]  # fmt: skip
    print("\n".join(machine_facts()))
    walls: dict[str, list[float]] = {name: [] for name, _ in settings}
    rows = []
    with FakeOpenAI({}) as served, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            order = settings if round_ % 2 else settings[::-1]
            for name, extra in order:
                folder = Path(tmp) / f"{round_}-{len(rows)}"
                folder.mkdir()
                wall = run(served.base_url, extra, folder, args.timeline)
                walls[name].append(wall)
                load = os.getloadavg()[0]
                rows.append([round_, name, f"{wall:.1f}", f"{load:.1f}"])
                print(f"round {round_}: {name}: {wall:.1f} s (load {load:.1f})", flush=True)
                if args.timeline:
                    print((folder / "timeline.txt").read_text())
    print(table(["round", "setting", "wall s", "load"], rows))
    summary = []
    for name, _ in settings:
        median = statistics.median(walls[name])
        plain = name.replace("-n 2", "no -n")
        cost = median - statistics.median(walls[plain]) if plain != name else 0.0
        summary.append([name, f"{median:.1f}", f"{cost:+.1f}" if plain != name else "-"])
    print()
    print(table(["setting", "median wall s", "-n 2 costs (s)"], summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
