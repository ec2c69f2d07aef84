"""How much slower is a pytest run in an unrelated project when this plugin is installed?

Runs the same small, unrelated test suite many times with the plugin on and off (``-p no:aienergyscore``),
interleaved so that slow drifts of the machine hit both alike, and takes the median of the paired differences.
Target: at most 10 ms.

On a shared 2-core VM one run of this suite with every installed plugin took 370 to 730 ms, and the median of 31
paired differences moved between +3.8 and +26.2 ms for the same commit within ten minutes: a 10 ms bar on it failed
at random. Two changes make it a measurement. Other installed plugins are blocked in both runs (``others_blocked``),
which shortens each run and its noise. And the check fails only when the data show the limit missed: when the low
end of a one-sided 95 % bootstrap interval for the median difference is above it. Measured here with 61 pairs: +4.5
to +7.0 ms, low ends +1.0 to +3.2 ms; with a 12 ms sleep added to the plugin: +21.4 ms, low end +17.1 ms, failed.
Regressions smaller than the interval are the instruction count's job (``perf/instruction_cost.py``, repeatable to
a few thousand instructions); this check sees what instructions do not: waits, subprocesses, file-system work.

    python perf/plugin_startup.py [--runs 61] [--limit-ms 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = "aienergyscore"
SUITE = "\n".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n" for i in range(30))


def others_blocked() -> list[str]:
    """``-p no:NAME`` for every other installed pytest plugin.

    Their start-up is the same with and without ours; blocking them in both runs shortens each run (about 450
    to 280 ms here) and with it the noise, and ours is measured where it costs most: where no other plugin has
    already imported what it needs. Entry points are still scanned in both runs, as in any pytest start.
    """
    from importlib.metadata import entry_points

    names = sorted({ep.name for ep in entry_points(group="pytest11")} - {PLUGIN})
    return [arg for name in names for arg in ("-p", f"no:{name}")]


def timed_run(project: Path, extra: list[str]) -> float:
    # PYTHONDONTWRITEBYTECODE would make every run recompile the plugin from source, which no installed package does.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIENERGYSCORE", "BENCHMARK_BACKEND")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=61)
    parser.add_argument("--limit-ms", type=float, default=10.0)
    parser.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="measure up to this many times; fail only when every attempt shows the limit missed",
    )
    args = parser.parse_args()
    for attempt in range(1, args.attempts + 1):
        print(f"attempt {attempt} of {args.attempts}")
        if not limit_missed(measure(args), args.limit_ms):
            return 0
    return 1


def low_end(differences: list[float], confidence: float = 0.95, resamples: int = 4000) -> float:
    """The low end of a one-sided bootstrap interval for the median of the paired differences.

    Resampling the pairs keeps each pair's own noise with it; a fixed seed makes the same data give the same verdict.
    """
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(differences, k=len(differences))) for _ in range(resamples))
    return medians[int((1 - confidence) * resamples)]


def limit_missed(differences_ms: list[float], limit_ms: float) -> bool:
    """Prints the verdict; true only when even the interval's low end is above the limit."""
    median, low = statistics.median(differences_ms), low_end(differences_ms)
    print(f"difference: {median:+.1f} ms, median of the paired differences; 95 % sure it is at least {low:+.1f} ms")
    if low > limit_ms:
        print(f"start-up: OVER the limit of {limit_ms:g} ms")
        return True
    note = " (the median alone is over it: within this machine's noise)" if median > limit_ms else ""
    print(f"start-up: not shown to be over the limit of {limit_ms:g} ms{note}")
    return False


def measure(args: argparse.Namespace) -> list[float]:
    """One interleaved series; prints the medians and returns the paired differences (plugin on minus off) in ms."""
    import compileall

    import pytest_aienergyscore

    compileall.compile_dir(Path(pytest_aienergyscore.__file__).parent, quiet=1)  # as pip does on install
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_unrelated.py").write_text(SUITE)
        (project / "pytest.ini").write_text("[pytest]\n")
        blocked = others_blocked()
        timed_run(project, blocked)  # warm the file cache and bytecode
        on, off = [], []
        for _ in range(args.runs):
            on.append(timed_run(project, blocked))
            off.append(timed_run(project, [*blocked, "-p", f"no:{PLUGIN}"]))
    print(f"plugin on : median {statistics.median(on) * 1000:.1f} ms over {args.runs} runs")
    print(f"plugin off: median {statistics.median(off) * 1000:.1f} ms over {args.runs} runs")
    # each pair ran back to back, so slow drifts of the machine cancel in its difference
    return [(a - b) * 1000 for a, b in zip(on, off, strict=True)]


if __name__ == "__main__":
    raise SystemExit(main())
