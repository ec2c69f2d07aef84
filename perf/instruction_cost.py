"""How many instructions does this plugin add to pytest runs in projects that never use it?

Once installed, the plugin is loaded by every pytest run in that environment, so a project without energy
benchmarks must pay next to nothing. Wall-clock time on a shared 2-core VM moves by more than the cost we care
about, so this counts instructions with valgrind's callgrind instead: with ``PYTHONHASHSEED=0`` and byte-compiled
modules the count repeats to within a few thousand instructions, whatever else the machine is doing.

Two workloads, each run three ways: ``-p no:aienergyscore`` (the reference), a no-op plugin (what any installed
plugin costs, for scale) and this plugin as installed (loaded through its entry point):

- suite: a synthetic suite of plain tests (default 2,225 tests over 50 files), bar ``--max-suite-pct``;
- start: ``pytest --co`` of one test file, i.e. start-up, option parsing and configure, with the garbage collector
  off (see COLLECTOR_OFF), bar ``--max-start-pct``.

Exits 1 when the plugin adds more than a bar, 2 when the measurement cannot be made here.

    python perf/instruction_cost.py [--tests 2225] [--files 50] [--max-suite-pct 0.3] [--max-start-pct 1.0]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from pathlib import Path
from typing import NamedTuple

NOOP_PLUGIN = '''"""A plugin that does nothing: what any installed plugin pays (import, registration, one option)."""


def pytest_addoption(parser):
    parser.addoption("--noop-plugin-flag", action="store_true", help="does nothing")
'''
# The no-op plugin is installed the way ours is, through a pytest11 entry point (a distribution's metadata on the
# path): loaded with ``-p`` instead, pytest's own handling of ``-p`` costs about 1 % of a start, which is no plugin's.
NOOP_METADATA = {
    "METADATA": "Metadata-Version: 2.1\nName: aienergyscore-noop-plugin\nVersion: 0.0\n",
    "entry_points.txt": "[pytest11]\naienergyscore_noop = aienergyscore_noop_plugin\n",
}

# Every configuration blocks the plugins it does not measure, so that all of them run the same command line shape.
# pytest-html (the dev extra, for the HTML report's pytest-html extras) brings pytest-metadata, whose configure reads
# the name, version and whole description of every installed plugin's package: with it, any installed plugin costs
# in proportion to its README (ours, measured: about 4.2 M instructions, 0.3 % of a start). That is a cost of
# pytest-metadata, paid only where it is installed, so all three configurations run without those two plugins.
OTHERS = ["-p", "no:html", "-p", "no:html_fixtures", "-p", "no:metadata"]
CONFIGURATIONS = {
    "without": ["-p", "no:aienergyscore", "-p", "no:aienergyscore_noop", *OTHERS],
    "no-op plugin": ["-p", "no:aienergyscore", *OTHERS],
    "aienergyscore": ["-p", "no:aienergyscore_noop", *OTHERS],
}
# callgrind's summary line of the process it started (a forked child, which some plugins make at start-up, prints
# its own summary with the parent's count up to the fork included: it must not be taken for the run's).
MAIN_PID = re.compile(r"^==(\d+)== Command:", re.MULTILINE)


class Workload(NamedTuple):
    name: str
    folder: Path
    args: list[str]
    collector_off: Path | None = None  # a folder whose sitecustomize turns Python's garbage collector off


# Whether a full collection of the garbage collector falls inside a short run depends on every object alive, so on
# everything installed, not only on this plugin: the same plugin counted +10.48 M and +12.45 M instructions at start
# in two environments that differed by one unrelated package (jsonschema); with the collector off in both runs, +10.98 M
# and +10.64 M. Start-up is therefore counted with it off. The suite keeps it on: its runs are long enough for many
# collections, and the test path is where a plugin's garbage would cost.
COLLECTOR_OFF = "import gc\n\ngc.disable()  # perf/instruction_cost.py: counts without the collector's thresholds\n"


def write_suite(folder: Path, tests: int, files: int) -> None:
    """Plain tests spread evenly over ``files`` modules: half module-level functions, half methods of a class, the
    two shapes a typical suite has, none using a fixture or marker of ours."""
    folder.mkdir(parents=True)
    per_file, extra = divmod(tests, files)
    number = 0
    for index in range(files):
        count = per_file + (1 if index < extra else 0)
        functions = [f"def test_function_{number + i}():\n    assert {i} + 1 == {i + 1}\n" for i in range(count // 2)]
        methods = [
            f"    def test_method_{number + i}(self):\n        assert [{i}] == [{i}]\n"
            for i in range(count // 2, count)
        ]
        body = "\n\n".join(functions) + "\n\nclass TestPlain:\n" + "\n".join(methods)
        (folder / f"test_module_{index:03d}.py").write_text(body)
        number += count


def write_noop_plugin(folder: Path) -> None:
    metadata = folder / "aienergyscore_noop_plugin-0.0.dist-info"
    metadata.mkdir(parents=True)
    for name, text in NOOP_METADATA.items():
        (metadata / name).write_text(text)
    (folder / "aienergyscore_noop_plugin.py").write_text(NOOP_PLUGIN)


def environment(plugins: Path) -> dict[str, str]:
    """The caller's environment without anything that configures pytest or this plugin, plus a fixed hash seed.

    PYTHONDONTWRITEBYTECODE would make every run compile from source, which no installed package does; a fixed
    terminal width keeps the output (and so the instructions that format it) the same from run to run.
    """
    dropped = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("AIENERGYSCORE", "BENCHMARK_BACKEND", "PYTEST_XDIST"))
    }
    env.update(PYTHONHASHSEED="0", COLUMNS="80", PYTHONPATH=str(plugins))
    return env


# The suite count is not as repeatable as the start count: a no-op plugin measured -0.18 % there (and +0.49 % with the
# garbage collector off, so it is not the collector), while start-up counts repeat to a few thousand instructions.
# The suite bar therefore catches regressions of the per-test path, not differences of a tenth of a per cent.
def pytest_command(workload: Workload, configuration: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *CONFIGURATIONS[configuration],
        *workload.args,
    ]


def warm_up(workload: Workload, env: dict[str, str]) -> None:
    """One plain run first, with both plugins loaded, so that every module (and pytest's rewritten test modules) is
    byte-compiled before counting; a run that fails here would make the count meaningless, so its output is shown."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workload.args]
    done = subprocess.run(command, cwd=workload.folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{workload.name}: pytest exited {done.returncode}\n{done.stdout}{done.stderr}")


def count_instructions(workload: Workload, configuration: str, env: dict[str, str]) -> int:
    """Instructions executed by one pytest run under callgrind (no cache or branch simulation: only the count)."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--child-silent-after-fork=yes"]
    if workload.collector_off is not None:
        env = {**env, "PYTHONPATH": os.pathsep.join([str(workload.collector_off), env["PYTHONPATH"]])}
    done = subprocess.run(
        [*valgrind, *pytest_command(workload, configuration)],
        cwd=workload.folder,
        env=env,
        capture_output=True,
        text=True,
    )
    pid = MAIN_PID.search(done.stderr)
    found = pid and re.search(rf"^=={pid.group(1)}== Collected : (\d+)", done.stderr, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{workload.name}, {configuration}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return int(found.group(1))


def plugin_installed() -> bool:
    return any(entry.name == "aienergyscore" for entry in entry_points(group="pytest11"))


def measure(workloads: list[Workload], env: dict[str, str], jobs: int) -> dict[tuple[str, str], int]:
    """Every workload under every configuration, ``jobs`` callgrind runs at a time (counts do not depend on load)."""
    pairs = [(workload, configuration) for workload in workloads for configuration in CONFIGURATIONS]
    for workload in workloads:
        warm_up(workload, env)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = pool.map(lambda pair: count_instructions(pair[0], pair[1], env), pairs)
        return {
            (workload.name, configuration): count
            for (workload, configuration), count in zip(pairs, counts, strict=True)
        }


def report(workloads: list[Workload], counts: dict[tuple[str, str], int], bars: dict[str, float]) -> bool:
    """Print each configuration's count and its cost over ``without``; True when the plugin is within every bar."""
    within = True
    for workload in workloads:
        reference = counts[(workload.name, "without")]
        print(f"{workload.name} ({' '.join(['pytest', *workload.args])}):")
        for configuration in CONFIGURATIONS:
            count = counts[(workload.name, configuration)]
            added = count - reference
            print(f"  {configuration:<14} {count:>15,} instructions  {added:>+13,}  {100 * added / reference:+.3f} %")
        pct = 100 * (counts[(workload.name, "aienergyscore")] - reference) / reference
        ok = pct <= bars[workload.name]
        within = within and ok
        print(f"  aienergyscore adds {pct:.3f} %: {'within' if ok else 'OVER'} the bar of {bars[workload.name]} %")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2225, help="plain tests in the synthetic suite")
    parser.add_argument("--files", type=int, default=50, help="test modules they are spread over")
    parser.add_argument("--max-suite-pct", type=float, default=0.3, help="bar for the suite run, in %% instructions")
    parser.add_argument("--max-start-pct", type=float, default=1.0, help="bar for `pytest --co`, in %% instructions")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    args = parser.parse_args()
    if args.tests < 1 or args.files < 1 or args.files > args.tests or args.jobs < 1:
        parser.error(
            f"--tests {args.tests}, --files {args.files}, --jobs {args.jobs}: need 1 <= files <= tests, jobs >= 1"
        )
    if shutil.which("valgrind") is None:
        print("valgrind not found on PATH: install valgrind to count instructions", file=sys.stderr)
        return 2
    if not plugin_installed():
        print(f"pytest-aienergyscore is not installed for {sys.executable}: nothing to measure", file=sys.stderr)
        return 2
    import pytest_aienergyscore

    compileall.compile_dir(str(Path(pytest_aienergyscore.__file__).parent), quiet=1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aienergyscore-cost-") as tmp:
        root = Path(tmp)
        write_noop_plugin(root / "plugins")
        write_suite(root / "suite", args.tests, args.files)
        write_suite(root / "start", 1, 1)
        (root / "collector-off").mkdir()
        (root / "collector-off" / "sitecustomize.py").write_text(COLLECTOR_OFF)
        workloads = [
            Workload("suite", root / "suite", []),
            Workload("start", root / "start", ["--co"], collector_off=root / "collector-off"),
        ]
        try:
            counts = measure(workloads, environment(root / "plugins"), args.jobs)
        except RuntimeError as err:
            print(f"measurement failed: {err}", file=sys.stderr)
            return 2
    print(f"{args.tests} plain tests over {args.files} files; PYTHONHASHSEED=0; byte-compiled; start with gc off")
    within = report(workloads, counts, {"suite": args.max_suite_pct, "start": args.max_start_pct})
    print(f"measured in {time.perf_counter() - started:.0f} s")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
