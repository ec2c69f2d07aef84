"""How long does a session of many small benchmarks wait for its files after the last test?

Runs pytest on a generated project of N small ``energy_meter`` benchmarks (estimate meter, so any machine can run
it) through the real plugin and writers, and reports the whole run, the same tests without the plugin, and the
window from the end of the last test to the end of pytest: run folders, labels, archives, summary, plot, exports
and the table. That window is also the one in which an interrupt used to break the results tree.
Target: the window under 3 s for 300 benchmarks.

    python perf/session_end.py [--benchmarks 300] [--limit-s 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = """
import pytest

MODELS = ["org/alpha-7b", "org/beta-1b", "lab/gamma-13b", "lab/delta-3b", "acme/epsilon-70b", "acme/zeta", "x/eta"]


@pytest.mark.parametrize("i", range({count}))
def test_small(energy_meter, i):
    energy_meter.set(model=MODELS[i % len(MODELS)], task="text_generation", model_class="A")
    with energy_meter.measure("prefill", samples=4, tokens=32):
        sum(range(2_000 + i))
    with energy_meter.measure("decode", samples=4, tokens=64):
        sum(range(3_000 + i))
"""

# Without the plugin the same tests get a fixture that does the same work and measures nothing.
NO_PLUGIN_CONFTEST = """
import contextlib
import pytest


class _Idle:
    def set(self, **kwargs):
        pass

    @contextlib.contextmanager
    def measure(self, name, **kwargs):
        yield self


@pytest.fixture
def energy_meter():
    return _Idle()
"""

# Times the window after the last test: from its last report to pytest's very end (written by atexit, after the
# terminal summary and every session-finish hook, the plugin's included).
TIMING_CONFTEST = """
import atexit
import time

_last = [None]


def pytest_runtest_logfinish(nodeid, location):
    _last[0] = time.perf_counter()


def _report():
    if _last[0] is not None:
        print(f"AFTER_LAST_TEST_S={time.perf_counter() - _last[0]:.3f}", flush=True)


atexit.register(_report)
"""


def run(project: Path, plugin: bool) -> tuple[float, float | None]:
    """(whole run in s, window after the last test in s) of one pytest run in ``project``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE", "BENCHMARK_BACKEND"))}
    env["AIENERGYSCORE_METER"] = "estimate"
    extra = [] if plugin else ["-p", "no:aienergyscore"]
    conftest = TIMING_CONFTEST + ("" if plugin else NO_PLUGIN_CONFTEST)
    (project / "conftest.py").write_text(conftest)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    whole = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    found = re.search(r"AFTER_LAST_TEST_S=([0-9.]+)", done.stdout)
    return whole, float(found.group(1)) if found else None


def files_written(project: Path) -> dict[str, int]:
    """What the last session left, by kind: its own files by name, run archives, and run-folder files by name."""
    sessions = sorted(p for p in (project / "results").iterdir() if p.is_dir())
    kinds: dict[str, int] = {}
    for path in sessions[-1].rglob("*") if sessions else ():
        if not path.is_file():
            continue
        if path.parent != sessions[-1]:
            kind = f"run folder {path.name}"
        else:
            kind = "run archive .zip" if path.suffix == ".zip" else path.name
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--benchmarks", type=int, default=300)
    parser.add_argument("--limit-s", type=float, default=3.0, help="fail when the median window is over this")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_many.py").write_text(BENCHMARKS.replace("{count}", str(args.benchmarks)))
        without = [run(project, plugin=False)[0] for _ in range(args.runs)]
        with_plugin, windows = [], []
        for _ in range(args.runs):
            whole, window = run(project, plugin=True)
            with_plugin.append(whole)
            windows.append(window if window is not None else float("nan"))
        kinds = files_written(project)
    window = statistics.median(windows)
    print(f"{args.benchmarks} benchmarks, median of {args.runs} runs")
    print(f"without the plugin: {statistics.median(without):.2f} s")
    print(f"with the plugin   : {statistics.median(with_plugin):.2f} s")
    print(f"after the last test (files, labels, archives, plot, table): {window:.2f} s (limit {args.limit_s:g} s)")
    print("files of the last session: " + ", ".join(f"{n} x {name}" for name, n in sorted(kinds.items())))
    return 0 if window <= args.limit_s else 1


if __name__ == "__main__":
    raise SystemExit(main())
