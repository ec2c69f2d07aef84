"""pytest-xdist: parallel runs write what a serial run writes, workers are pinned one GPU each, crashes lose one test.

GPU pinning runs against the fake pynvml (tests/fake_pynvml.py), installed as ``pynvml`` on the path of a pytest
subprocess and its workers, because this machine has no GPU; tests/test_gpu.py covers the real NVML meter.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_aienergyscore.session.xdist import GpuAllocator, auto_num_workers
from tests.support.fake_pynvml import make_gpus, make_pynvml

REPO = Path(__file__).resolve().parents[2]

FOUR = """
import pytest

@pytest.mark.parametrize("name", ["alpha", "beta", "gamma", "delta"])
def test_model(energy_meter, name):
    energy_meter.set(model=f"org/{name}", task="text_generation")
    with energy_meter.measure("prefill", samples=4, tokens=16):
        sum(i * i for i in range(150_000))
    with energy_meter.measure("decode", samples=4) as phase:
        sum(i * i for i in range(150_000))
        phase.tokens = 40
"""

CRASH = """
import os
import pytest

@pytest.mark.parametrize("name", ["a", "b", "c", "d"])
def test_model(energy_meter, name):
    energy_meter.set(model=f"org/{name}", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(100_000))
    if name == "c":
        os._exit(1)
"""

# Stable facts of a run folder's summary: everything but measured energy, timings and what derives from them.
STABLE_SUMMARY_KEYS = (
    "units",
    "format",
    "device",
    "energy_scope",
    "energy_kind",
    "meter",
    "devices",
    "queries",
    "repetitions",
    "samples",
    "tokens",
    "comparable",
    "not_comparable_reasons",
    "task",
    "model",
    "backend",
    "test",
)
STABLE_ROW_KEYS = ("test", "task", "model", "backend", "device", "meter", "energy_kind", "queries", "repetitions")


def _session(root: Path) -> Path:
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    return session


def _shape(session: Path) -> dict:
    """Everything about a session's files that must not depend on running in parallel."""
    folders = sorted(p for p in session.iterdir() if p.is_dir())
    runs = {}
    for folder in folders:
        summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
        report = json.loads((folder / "benchmark_report.json").read_text())
        runs[folder.name] = {
            "files": sorted(p.name for p in folder.iterdir()),
            "summary_keys": list(summary),
            "summary": {k: summary[k] for k in STABLE_SUMMARY_KEYS},
            "report_keys": sorted(report),
            "phases": [(p["name"], p["samples"], p["tokens"], p["repetition"]) for p in report["phases"]],
            "meter": report["meter"]["name"],
        }
    summary = json.loads((session / "summary.json").read_text())
    with (session / "summary.csv").open() as fh:
        reader = csv.DictReader(fh)
        csv_rows = [(row["test"], row["model"], Path(row["run_folder"]).name) for row in reader]
        header = reader.fieldnames
    return {
        "top": sorted(p.name for p in session.iterdir() if p.is_file()),
        "runs": runs,
        "summary_meta": {k: v for k, v in summary.items() if k not in ("session", "benchmarks")},
        "summary_rows": [{k: row[k] for k in STABLE_ROW_KEYS} for row in summary["benchmarks"]],
        "row_columns": [sorted(row) for row in summary["benchmarks"]],
        "csv_header": header,
        "csv_rows": csv_rows,
        "records": len((session / "records.jsonl").read_text().splitlines()),
    }


def test_two_workers_write_exactly_what_a_serial_run_writes(pytester: pytest.Pytester, clean_env) -> None:
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    pytester.makepyfile(test_four=FOUR)
    serial_root, parallel_root = pytester.mkdir("serial"), pytester.mkdir("parallel")
    # Subprocesses, as users run pytest: in-process runs cannot import numpy twice (the leaderboard plot needs it).
    serial_run = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--energy-output={serial_root}/results")
    serial_run.assert_outcomes(passed=4)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--energy-output={parallel_root}/results"
    )
    result.assert_outcomes(passed=4)

    serial, parallel = _session(serial_root), _session(parallel_root)
    assert len([p for p in parallel.iterdir() if p.is_dir()]) == 4
    assert [p.name for p in parallel.rglob("summary.json")] == ["summary.json"]
    assert _shape(parallel) == _shape(serial)
    assert _shape(parallel)["records"] == 4

    records = [json.loads(line) for line in (parallel / "records.jsonl").read_text().splitlines()]
    assert {r["environment"]["xdist_workers"] for r in records} == {2}
    assert {r["environment"]["xdist_worker"] for r in records} <= {"gw0", "gw1"}
    out = "\n".join(result.outlines)
    assert "CPU energy is machine-wide and not attributable per worker" in out


def test_a_crashed_worker_loses_only_its_running_test(pytester: pytest.Pytester, clean_env) -> None:
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    pytester.makepyfile(test_crash=CRASH)
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    assert "crashed while running 'test_crash.py::test_model[c]'" in "\n".join(result.outlines)
    session = _session(pytester.path)
    assert sorted(p.name for p in session.iterdir() if p.is_dir()) == [
        "text_classification__org--a__custom",
        "text_classification__org--b__custom",
        "text_classification__org--d__custom",
    ]
    assert len((session / "records.jsonl").read_text().splitlines()) == 3
    rows = json.loads((session / "summary.json").read_text())["benchmarks"]
    assert [row["model"] for row in rows] == ["org/a", "org/b", "org/d"]


FAKE_PYNVML = """
import sys
import time

sys.path.insert(0, {repo!r})
from tests.support.fake_pynvml import make_gpus, make_pynvml

_start = time.monotonic()
GPUS = make_gpus(3)
for _index, _gpu in enumerate(GPUS):  # GPU i draws (i + 1) * 100 W
    _gpu.energy_mj = lambda watts=(_index + 1) * 100: int((time.monotonic() - _start) * watts * 1000)
sys.modules[__name__] = make_pynvml(GPUS)
"""


def test_auto_starts_one_worker_per_visible_gpu_each_metering_only_its_own(
    pytester: pytest.Pytester, clean_env
) -> None:
    uuids = [gpu.uuid for gpu in make_gpus(3)]
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "2,0")  # pre-set: only GPUs 2 and 0, in that order
    clean_env.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    pytester.makepyfile(pynvml=FAKE_PYNVML.format(repo=str(REPO)), test_four=FOUR)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "auto", "--energy-meter=nvml")
    result.assert_outcomes(passed=4)

    session = _session(pytester.path)
    records = [json.loads(line) for line in (session / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert {r["environment"]["xdist_workers"] for r in records} == {2}
    seen = set()
    for record in records:
        [device] = record["meter"]["devices"]
        assert device["device"] == "cuda:0"
        assert record["environment"]["cuda_visible_devices"] == device["uuid"]
        seen.add(device["uuid"])
    assert seen <= {uuids[2], uuids[0]} and len(seen) == 2  # both visible GPUs, never the hidden one
    assert "each worker saw and metered only its own GPU" in "\n".join(result.outlines)


def test_allocator_gives_each_worker_its_own_gpu_and_a_replacement_the_freed_one() -> None:
    allocator = GpuAllocator(["GPU-a", "GPU-b"])
    assert [allocator.take(), allocator.take()] == ["GPU-a", "GPU-b"]
    allocator.release("GPU-a")
    assert allocator.take() == "GPU-a"
    assert allocator.take() in ("GPU-a", "GPU-b")  # more workers than GPUs: they share, least-used first
    assert GpuAllocator([]).take() is None


def _config(disabled: bool = False) -> pytest.Config:
    options = {"energy_disable": True if disabled else None}
    return SimpleNamespace(getoption=lambda name, default=None: options.get(name, default), getini=lambda _: None)  # type: ignore[return-value]


def test_auto_worker_count_follows_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.delenv("AIENERGYSCORE_DISABLE", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(make_gpus(4)))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert auto_num_workers(_config()) == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,0")
    assert auto_num_workers(_config()) == 3
    assert auto_num_workers(_config(disabled=True)) is None
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "7")  # xdist's own override wins
    assert auto_num_workers(_config()) is None


def test_auto_worker_count_leaves_cpu_machines_to_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml([], init_error=9))
    assert auto_num_workers(_config()) is None


def test_a_parallel_session_without_benchmarks_leaves_no_results_folder(pytester: pytest.Pytester, clean_env) -> None:
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    pytester.makepyfile(test_plain="def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=2)
    assert not (pytester.path / "results").exists()
    assert "AI Energy Score" not in "\n".join(result.outlines)
