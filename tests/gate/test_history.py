"""Saved runs: numbered per machine, named by commit and date, whole records inside, read back as a baseline."""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_aienergyscore.gate.history import (
    HistoryError,
    as_baseline,
    git_commit,
    history_entries,
    list_runs,
    load_run,
    machine_facts,
    machine_id,
    save_run,
    select_run,
)
from tests.gate.figures import gate_record

H100 = "NVIDIA H100 80GB HBM3"


def test_the_machine_id_is_readable_stable_and_tells_machines_apart() -> None:
    gpu = machine_id(machine_facts([gate_record([1.0], gpu=H100)]))
    assert re.fullmatch(r"NVIDIA_H100_80GB_HBM3-nvml-[0-9a-f]{8}", gpu)
    assert gpu == machine_id(machine_facts([gate_record([2.0], gpu=H100)]))  # figures do not change the machine
    cpu = gate_record([1.0])
    cpu.environment["os"] = "Linux-6.1.0-x86_64-with-glibc2.36"
    assert re.fullmatch(r"Linux-cpu-rapl-[0-9a-f]{8}", machine_id(machine_facts([cpu])))
    other_driver = gate_record([1.0], gpu=H100)
    other_driver.environment["gpus"][0]["driver"] = "560"
    assert machine_id(machine_facts([other_driver])) != gpu


def test_a_saved_run_is_numbered_after_the_highest_and_keeps_every_record_whole(tmp_path: Path) -> None:
    records = [gate_record([1.0, 1.1, 0.9], gpu=H100)]
    first = save_run(records, tmp_path / ".energy", tmp_path, "s1", now=0.0)
    assert first.parent.parent == tmp_path / ".energy"
    assert first.name == "0001_nocommit_19700101_000000.json"  # not a git checkout: nocommit; the date in UTC
    (first.parent / "0007_abc_20260101_000000.json").write_text(first.read_text())  # a run copied in by hand
    second = save_run(records, tmp_path / ".energy", tmp_path, "s2")
    assert second.name.startswith("0008_nocommit_")
    run = load_run(second)
    assert run.number == 8 and run.header["machine"]["id"] == second.parent.name
    assert [r.to_dict() for r in run.records] == [r.to_dict() for r in records]
    assert json.loads(second.read_text())["schema"] == "pytest-aienergyscore/run"


def test_sessions_saving_at_once_never_get_the_same_number(tmp_path: Path) -> None:
    records = [gate_record([1.0])]
    with ThreadPoolExecutor(8) as pool:
        saved = list(pool.map(lambda i: save_run(records, tmp_path, tmp_path, f"s{i}"), range(16)))
    numbers = sorted(int(path.name[:4]) for path in saved)
    assert numbers == list(range(1, 17))
    assert [n for n, _ in list_runs(saved[0].parent)] == numbers


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


def test_the_commit_is_the_short_head_and_dirty_only_when_tracked_files_changed(tmp_path: Path) -> None:
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    (tmp_path / "results").mkdir()  # what a session writes is untracked and does not make it dirty
    assert git_commit(tmp_path) == head
    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head}-dirty"
    assert git_commit(tmp_path / "results") == f"{head}-dirty"
    assert git_commit(Path("/")) == "nocommit"


def test_a_saved_run_reads_back_as_the_baseline_a_baseline_file_would_be(tmp_path: Path) -> None:
    passed, failed = gate_record([2.0], gpu=H100), gate_record([9.0], gpu=H100)
    failed.nodeid, failed.outcome = "t.py::test_failed", "failed"
    baseline = as_baseline(load_run(save_run([passed, failed], tmp_path, tmp_path, "s")))
    assert list(baseline.benchmarks) == ["t.py::test_x"]  # partial work is no baseline
    assert baseline.benchmarks["t.py::test_x"]["wh_per_1000_queries"] == pytest.approx(2.0)
    assert baseline.fingerprint["gpu_models"] == [H100]


def test_compare_picks_the_latest_a_number_or_a_file_and_says_what_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "machine"
    assert select_run("latest", folder, tmp_path) is None  # no history yet: the caller warns
    runs = [save_run([gate_record([1.0])], tmp_path, tmp_path, f"s{i}") for i in range(3)]
    folder = runs[0].parent
    assert select_run("latest", folder, tmp_path) == runs[2]
    assert select_run("0002", folder, tmp_path) == runs[1] == select_run("2", folder, tmp_path)
    assert select_run(str(runs[0].relative_to(tmp_path)), folder, tmp_path) == runs[0]
    with pytest.raises(HistoryError, match=r"no saved run 0009 in .* \(the latest there: 0001, 0002, 0003\)"):
        select_run("9", folder, tmp_path)
    with pytest.raises(HistoryError, match=r"gone\.json: no such saved run"):
        select_run("gone.json", folder, tmp_path)


def test_a_file_that_is_not_a_saved_run_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "baseline.json").write_text('{"schema": "pytest-aienergyscore/baseline", "version": 1}')
    with pytest.raises(HistoryError, match=r"baseline.json: not a saved run; expected \"schema\""):
        load_run(tmp_path / "baseline.json")
    (tmp_path / "torn.json").write_text('{"schema": "pytest-aienergyscore/run", "vers')
    with pytest.raises(HistoryError, match=r"torn\.json: not a readable saved run"):
        load_run(tmp_path / "torn.json")


def test_the_history_of_a_run_is_the_runs_up_to_it_oldest_first_and_a_damaged_one_costs_only_itself(
    tmp_path: Path,
) -> None:
    runs = [save_run([gate_record([float(i)])], tmp_path, tmp_path, f"s{i}") for i in range(1, 7)]
    runs[1].write_text("{ damaged")
    history, skipped = history_entries(load_run(runs[4]), ["t.py::test_x", "t.py::test_new"])
    assert [e["wh_per_1000_queries"] for e in history["t.py::test_x"]] == [1.0, 3.0, 4.0, 5.0]
    assert "t.py::test_new" not in history
    assert len(skipped) == 1 and "0002_" in skipped[0]
