"""Nothing measured is ever lost: unwritable output, full disks, torn records, interrupts while files are written,
interrupted baselines, and figures from partial work, each met the way a user meets it.

A full disk is made real with RLIMIT_FSIZE (the kernel refuses to grow a file past the limit, as a full disk
refuses to grow any, and a write that crosses it is cut short), a read-only folder with ``chattr +i`` (root) or
``chmod`` (anyone else), and an interrupt with a real SIGINT or SIGKILL sent to pytest while it writes its files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main as cli_main
from pytest_aienergyscore.records.atomic import WriteFailed, write_json
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.records.store import RecordStore, read_store, record_line
from pytest_aienergyscore.report.plot import MAX_ROWS, panels, session_rows

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE stands in for a full disk (POSIX only)")

THREE = """
import pytest

@pytest.mark.parametrize("name", ["one", "two", "three"])
def test_model(energy_meter, name):
    energy_meter.set(model=f"org/{name}", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))
"""

# A benchmark that has measured part of its work when its test fails: the energy stays, the figures from it go.
FAILS_MIDWAY = """
import pytest

@pytest.mark.energy(model="org/half", task="text_generation", model_class="A")
def test_half(energy_meter):
    with energy_meter.measure("prefill", samples=10, tokens=100):
        sum(range(100_000))
    raise RuntimeError("out of memory halfway through")
"""

INTERRUPTED = """
def test_first(energy_meter):
    energy_meter.set(model="org/first", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))

def test_second(energy_meter):
    energy_meter.set(model="org/second", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))
    {action}

def test_third(energy_meter):
    energy_meter.set(model="org/third", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))
"""


def only_session(root: Path) -> Path:
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    return session


def run_folders(session: Path) -> list[Path]:
    return sorted(p for p in session.iterdir() if p.is_dir())


def leftovers(root: Path) -> list[str]:
    """Anything a writer left half done: temporary names, old-style .part files, empty files."""
    found = [p for p in root.rglob("*") if ".tmp-" in p.name or p.name.endswith(".part")]
    found += [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == 0]
    return sorted(str(p.relative_to(root)) for p in found)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: equal trees were not written again."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files of this process cannot grow past ``limit`` bytes (what a full disk does to every file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` refuses new files, even to root (immutable attribute), or skip where that cannot be arranged."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("root ignores permissions and chattr +i is not available here")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = []
    try:
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        folder.chmod(0o755)


def cpu_record(nodeid: str = "t.py::test_x", joules: float = 36.0) -> Record:
    device = DeviceEnergy("cpu", "cpu", joules, "estimate", "estimate")
    window = Measurement("forward", "estimate", "estimate", 2.0, (device,), counter_period_s=0.001)
    return Record(nodeid=nodeid, backend="custom", task="text_classification", phases=[Phase("forward", window, 4)])


# -- an output that cannot be written ------------------------------------------------------------------------------


def test_an_output_path_that_is_a_file_stops_the_session_before_any_benchmark_in_one_line(bench) -> None:
    bench.makepyfile(test_three=THREE)
    (bench.path / "not-a-folder").write_text("my notes\n")
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "--energy-output=not-a-folder/results")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR: --energy-output (command line): ")
    assert "not-a-folder is a file" in errors[0]
    assert "passed" not in result.stdout.str() and "Traceback" not in result.stderr.str()
    assert (bench.path / "not-a-folder").read_text() == "my notes\n"


def test_a_read_only_output_folder_stops_the_session_before_any_benchmark(bench) -> None:
    bench.makepyfile(test_three=THREE)
    with read_only(bench.path / "results"):
        result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [error] = [line for line in result.errlines if line.strip()]
    assert error.startswith("ERROR: --energy-output (default): ") and "results cannot be written" in error
    assert "Operation not permitted" in error or "Permission denied" in error
    assert list((bench.path / "results").iterdir()) == []  # the probe left nothing behind


def test_an_unwritable_output_under_xdist_is_a_usage_error_not_an_internal_error(bench) -> None:
    pytest.importorskip("xdist")
    bench.makepyfile(test_three=THREE)
    (bench.path / "results").write_text("a file where the results would go\n")
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert "--energy-output (default): " in result.stderr.str()


OUTPUT_GONE = """
import pathlib
import shutil

def test_a_makes_the_output_a_file(energy_meter):
    shutil.rmtree("results", ignore_errors=True)
    pathlib.Path("results").write_text("someone put a file here")
    energy_meter.set(model="org/a", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))

def test_b(energy_meter):
    energy_meter.set(model="org/b", task="text_classification")
    with energy_meter.measure("forward", samples=2):
        sum(range(50_000))
"""


def test_an_output_that_breaks_mid_session_keeps_every_measurement_in_the_table_and_fails_the_run(bench) -> None:
    bench.makepyfile(test_gone=OUTPUT_GONE)
    result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # both tests passed; the results could not be written
    out = result.stdout.str()
    assert "Traceback" not in out + result.stderr.str() and "INTERNALERROR" not in out
    table = out[out.index("AI Energy Score") :]
    assert "test_a_makes_the_output_a_file" in table and "test_b" in table
    errors = [line for line in result.outlines if line.startswith("error: ")]
    results = bench.path / "results"
    assert any(f"2 record(s) could not be added to {results}" in line and "is a file" in line for line in errors)
    assert f"error: cannot write results to {results}: {results} is a file" in errors


# -- the record store ----------------------------------------------------------------------------------------------


def test_a_torn_record_costs_only_itself_in_report_and_merge(bench, capsys) -> None:
    bench.makepyfile(test_three=THREE)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    session = only_session(bench.path)
    store = session / "records.jsonl"
    one, two, three = store.read_text().splitlines()
    # what an older version left after a full disk: half of record two, then record three glued to it
    store.write_text(f"{one}\n{two[: len(two) // 2]}{three}\n")
    for folder in run_folders(session):
        shutil.rmtree(folder)
    for archive in session.glob("*.zip"):
        archive.unlink()
    capsys.readouterr()
    assert cli_main(["report", str(session)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {store}:2: the start of a torn record was skipped, the record after it kept" in err
    assert [f.name for f in run_folders(session)] == [
        "text_classification__org--one__custom",
        "text_classification__org--three__custom",
    ]
    out = bench.path / "merged"
    assert cli_main(["merge", str(session), "-o", str(out)]) == 0
    merged = json.loads((out / "summary.json").read_text())
    assert [row["model"] for row in merged["benchmarks"]] == ["org/one", "org/three"]
    assert len(merged["skipped"]) == 1 and "records.jsonl:2" in merged["skipped"][0]
    assert "merge: warning: " in capsys.readouterr().err


def test_damaged_lines_anywhere_in_the_store_are_skipped_and_every_intact_record_kept(tmp_path: Path) -> None:
    store = tmp_path / "records.jsonl"
    lines = [record_line(cpu_record(f"t.py::test_{n}")) for n in range(4)]
    store.write_bytes(
        (lines[0] + "\n" + "\x00garbage{\n" + lines[1] + "\n[1, 2]\n" + lines[2] + "\n" + lines[3][:40]).encode()
    )
    records, skipped = read_store(store)
    assert [r.nodeid for r in records] == ["t.py::test_0", "t.py::test_1", "t.py::test_2"]
    assert [line.split(": ", 1)[0] for line in skipped] == [f"{store}:2", f"{store}:4", f"{store}:6"]
    assert all("not a whole record, skipped" in line for line in skipped)


def test_a_failed_append_leaves_the_store_exactly_as_it_was(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.jsonl")
    store.append(cpu_record("t.py::test_first"))
    before = store.path.read_bytes()
    with file_size_limit(len(before) + 100), pytest.raises(OSError, match="File too large"):
        store.append(cpu_record("t.py::test_second"))  # the line is cut short at the limit, then refused
    assert store.path.read_bytes() == before
    store.append(cpu_record("t.py::test_third"))
    records, skipped = read_store(store.path)
    assert [r.nodeid for r in records] == ["t.py::test_first", "t.py::test_third"] and skipped == []


def test_an_append_after_a_torn_last_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(record_line(cpu_record("t.py::test_first")) + "\n" + record_line(cpu_record("t.py::torn"))[:50])
    RecordStore(path).append(cpu_record("t.py::test_after"))
    records, skipped = read_store(path)
    assert [r.nodeid for r in records] == ["t.py::test_first", "t.py::test_after"]
    assert len(skipped) == 1 and f"{path}:2: not a whole record" in skipped[0]


# -- files written whole, or not at all ----------------------------------------------------------------------------


def test_a_write_that_fails_names_the_file_in_one_line_and_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"benchmarks": ["the old summary"]})
    before = path.read_bytes()
    with file_size_limit(len(before) + 50), pytest.raises(WriteFailed) as info:
        write_json(path, {"benchmarks": ["x" * 10_000]})
    assert str(info.value) == f"cannot write {path}: File too large"
    assert path.read_bytes() == before and leftovers(tmp_path) == []


FULL_DISK_AT_THE_END = """
import resource
import signal

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # from here on no file of this process may grow past 3000 bytes: the disk is full
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


def test_a_full_disk_at_session_end_leaves_no_torn_files_prints_the_table_and_fails_the_session(bench) -> None:
    bench.makepyfile(test_three=THREE)
    bench.makeconftest(FULL_DISK_AT_THE_END)
    # pipes, not files, for the output: the limit must not cut the report short
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=bench.path, capture_output=True, text=True
    )
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "INTERNALERROR" not in done.stdout
    assert "3 passed" in done.stdout
    table = done.stdout[done.stdout.index("AI Energy Score") :]
    assert all(f"test_model[{name}]" in table for name in ("one", "two", "three"))
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert any("could not write the files of test_three.py::test_model[one]: cannot write " in e for e in errors)
    assert all(": File too large" in e for e in errors if "cannot write" in e)
    assert "`aienergyscore report" in done.stdout
    session = only_session(bench.path)
    assert leftovers(session) == []  # no 0-byte JSON, no temporary or .part file
    assert run_folders(session) == []  # a run folder appears whole or not at all
    assert cli_main(["report", str(session)]) == 0  # once there is room, everything is written
    folders = run_folders(session)
    assert len(folders) == 3 and all(cli_main(["verify", f"{f}.zip"]) == 0 for f in folders)


SIGNAL_WHILE_WRITING = """
import os
import signal

from pytest_aienergyscore.report import {module}

_real = {module}.{function}
_calls = []


def _signalled(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == {when}:
        os.kill(os.getpid(), signal.{signal})  # the user's Ctrl-C, or the machine's kill, at this moment
    return _real(*args, **kwargs)


{module}.{function} = _signalled
"""


def test_ctrl_c_while_files_are_written_leaves_whole_files_and_report_finishes_them_once(bench, capsys) -> None:
    bench.makepyfile(test_three=THREE)
    bench.makeconftest(SIGNAL_WHILE_WRITING.format(module="files", function="run_content", when=2, signal="SIGINT"))
    result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    table = out[out.index("AI Energy Score") :]
    assert all(f"test_model[{name}]" in table for name in ("one", "two", "three"))
    session = only_session(bench.path)
    assert f"error: interrupted while writing {session}: 1 of 3 run folders are there" in out
    assert [f.name for f in run_folders(session)] == ["text_classification__org--one__custom"]
    assert leftovers(session) == []
    capsys.readouterr()
    assert cli_main(["report", str(session)]) == 0
    assert "2 run folder(s) written" in capsys.readouterr().out
    folders = run_folders(session)
    assert [f.name for f in folders] == [f"text_classification__org--{n}__custom" for n in ("one", "three", "two")]
    assert all(cli_main(["verify", f"{f}.zip"]) == 0 for f in folders)
    written = tree(session)
    assert cli_main(["report", str(session)]) == 0
    assert "0 run folder(s) written" in capsys.readouterr().out
    assert tree(session) == written  # the same records, the same tree: nothing written twice


def test_a_writer_killed_mid_archive_leaves_no_half_file_and_report_resumes_without_duplicates(bench, capsys) -> None:
    bench.makepyfile(test_three=THREE)
    # the first zip takes five files and a manifest, so the 9th entry is written inside the second zip
    bench.makeconftest(SIGNAL_WHILE_WRITING.format(module="archive", function="_member", when=9, signal="SIGKILL"))
    result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == -signal.SIGKILL
    session = only_session(bench.path)
    assert [f.name for f in run_folders(session)] == [
        "text_classification__org--one__custom",
        "text_classification__org--two__custom",
    ]
    assert [p.name for p in session.glob("*.zip")] == ["text_classification__org--one__custom.zip"]
    assert any(".tmp-" in p.name for p in session.iterdir())  # the dead writer's unfinished zip, hidden
    capsys.readouterr()
    assert cli_main(["report", str(session)]) == 0
    assert "1 run folder(s) written" in capsys.readouterr().out
    folders = run_folders(session)
    assert [f.name for f in folders] == [f"text_classification__org--{n}__custom" for n in ("one", "three", "two")]
    assert all(cli_main(["verify", f"{f}.zip"]) == 0 for f in folders)
    assert leftovers(session) == []


def test_report_after_a_finished_session_writes_nothing(bench, capsys) -> None:
    bench.makepyfile(test_three=THREE)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    session = only_session(bench.path)
    written = tree(session)
    assert cli_main(["report", str(session)]) == 0
    assert "0 run folder(s) written, 3 already there" in capsys.readouterr().out
    assert tree(session) == written


def test_merge_skips_what_a_dead_writer_left_behind(bench, tmp_path: Path) -> None:
    bench.makepyfile(test_three=THREE)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    session = only_session(bench.path)
    (session / "records.jsonl").unlink()  # bare run folders, as the Docker image leaves them
    first = run_folders(session)[0]
    unfinished = shutil.copytree(first, session / f".{first.name}.tmp-999999")  # a writer died while filling it
    report = unfinished / "benchmark_report.json"
    report.write_bytes(report.read_bytes()[:200])
    assert cli_main(["merge", str(session), "-o", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert sorted(row["model"] for row in merged["benchmarks"]) == ["org/one", "org/three", "org/two"]


# -- baselines -----------------------------------------------------------------------------------------------------


def _baseline_tests(path: Path) -> list[str]:
    return sorted(json.loads(path.read_text())["benchmarks"])


def test_an_interrupted_or_partial_session_never_shrinks_the_baseline_and_a_complete_one_replaces_it(bench) -> None:
    ids = [f"test_int.py::test_{n}" for n in ("first", "second", "third")]
    bench.makepyfile(test_int=INTERRUPTED.format(action="pass"))
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=3)
    base = bench.path / "base.json"
    assert _baseline_tests(base) == sorted(ids)
    first_before = json.loads(base.read_text())["benchmarks"][ids[0]]

    bench.makepyfile(test_int=INTERRUPTED.format(action="raise KeyboardInterrupt"))
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "--energy-save-baseline=base.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert _baseline_tests(base) == sorted(ids)  # the third never ran this time: its entry stays
    assert json.loads(base.read_text())["benchmarks"][ids[0]] != first_before  # the one that passed is updated
    assert "the session was interrupted, so only its passed benchmarks were updated" in result.stdout.str()

    bench.makepyfile(test_int=INTERRUPTED.format(action="pass"))
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json", "-k", "third")
    assert _baseline_tests(base) == sorted(ids)  # a selection of the tests updates, never replaces

    bench.makepyfile(test_int=INTERRUPTED.format(action="pass").split("def test_third")[0])
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=2)
    assert _baseline_tests(base) == sorted(ids[:2])  # a complete session is the new baseline
    assert [p.name for p in bench.path.iterdir() if p.name.startswith(".base.json")] == []  # no temporary left


def test_an_unreadable_baseline_is_not_overwritten_by_a_partial_session(bench) -> None:
    bench.makepyfile(test_int=INTERRUPTED.format(action="raise KeyboardInterrupt"))
    (bench.path / "base.json").write_text("{ half a baseline")
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "--energy-save-baseline=base.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (bench.path / "base.json").read_text() == "{ half a baseline"
    assert any(
        line.startswith("error: baseline not saved: the session was interrupted") and "not valid JSON" in line
        for line in result.outlines
    )


# -- figures from partial work -------------------------------------------------------------------------------------


def test_a_failed_benchmark_keeps_its_energy_but_gets_no_per_1000_figure_or_stars_and_says_why(bench) -> None:
    bench.makepyfile(test_half=FAILS_MIDWAY)
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    session = only_session(bench.path)
    [folder] = run_folders(session)
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    assert summary["total_wh_unrounded"] > 0 and summary["queries"] == 10
    assert summary["wh_per_1000_queries"] is None and summary["stars"] is None
    why = "the benchmark failed (its figures cover only part of the work)"
    assert summary["partial_work"] == why and summary["stars_note"] == why
    [dashboard] = json.loads((session / "github-action-benchmark.json").read_text())
    assert dashboard["unit"] == "Wh" and dashboard["value"] == pytest.approx(summary["total_wh_unrounded"])
    [row] = [line for line in result.outlines if line.startswith("test_half ")]
    cells = row.split()
    assert cells[cells.index("failed,") - 3 : cells.index("failed,") - 1] == ["-", "-"]  # per 1k queries, stars


def test_an_interrupted_benchmark_gets_no_per_1000_figure_or_stars(bench) -> None:
    bench.makepyfile(test_int=INTERRUPTED.format(action="raise KeyboardInterrupt"))
    bench.runpytest_subprocess("-p", "no:cacheprovider")
    folders = run_folders(only_session(bench.path))
    summaries = {s["model"]: s for s in (json.loads((f / "GPU_ENERGY_SUMMARY.json").read_text()) for f in folders)}
    assert summaries["org/first"]["wh_per_1000_queries"] is not None
    interrupted = summaries["org/second"]
    assert interrupted["wh_per_1000_queries"] is None and interrupted["stars"] is None
    assert interrupted["partial_work"] == "the benchmark was interrupted (its figures cover only part of the work)"


# -- large sessions ------------------------------------------------------------------------------------------------


def test_the_plot_of_hundreds_of_results_has_a_row_per_model_and_a_bounded_height(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    from pytest_aienergyscore.report.plot import draw_plot

    records = [
        Record(
            nodeid=f"b.py::test_{i}",
            backend="custom",
            model=f"org/model-{i % 40}",
            task="image_classification",
            queries=1000,
            phases=[Phase("forward", Measurement("forward", "nvml", "measured", 60.0, (gpu(1.0 + i / 100),)), 1000)],
        )
        for i in range(300)
    ]
    [panel] = panels(records)
    rows = session_rows(panel)
    assert len(rows) == MAX_ROWS
    assert [name for name, _ in rows[:3]] == ["model-0", "model-1", "model-2"]
    assert rows[-1][0] == f"{40 - MAX_ROWS + 1} more models"
    assert sum(len(points) for _, points in rows) == 300  # every result is drawn
    path = draw_plot(records, tmp_path / "plot.png")
    assert path is not None
    with Image.open(path) as image:
        assert image.size[1] < 1600  # one row per result would be 300 rows, over 11,000 pixels


def gpu(wh: float) -> DeviceEnergy:
    return DeviceEnergy("cuda:0", "gpu", wh * 3600.0, "measured", "nvml")
