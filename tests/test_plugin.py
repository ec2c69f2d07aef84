"""The plugin as a user meets it: a test file using ``energy_meter``, run by pytest, leaving files and a table."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main as cli_main

STANDARD_SUMMARY_KEYS = ["units", "total", "format", "preprocess_wh", "prefill_wh", "decode_wh"]

TWO_PHASES = """
import pytest

def burn(n=400_000):
    return sum(i * i for i in range(n))

@pytest.mark.energy(model="org/tiny-model", task="text_generation")
def test_generate(energy_meter):
    with energy_meter.measure("prefill", samples=4, tokens=32):
        burn()
    with energy_meter.measure("decode", samples=4) as phase:
        burn()
        phase.tokens = 40
"""


def session_dirs(root: Path) -> list[Path]:
    results = root / "results"
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.exists() else []


def run_folders(session: Path) -> list[Path]:
    return sorted(p for p in session.iterdir() if p.is_dir())


def test_energy_meter_writes_standard_files_and_a_verifiable_archive(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    [session] = session_dirs(bench.path)
    [folder] = run_folders(session)
    assert folder.name == "text_generation__org--tiny-model__custom"
    assert sorted(p.name for p in folder.iterdir()) == [
        "GPU_ENERGY_SUMMARY.json",
        "GPU_ENERGY_WH.txt",
        "benchmark_report.json",
        "label.png",
        "run.log",
    ]
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    assert list(summary)[:6] == STANDARD_SUMMARY_KEYS
    assert summary["units"] == "Wh"
    assert summary["total"] == round(summary["total_wh_unrounded"], 2)
    assert summary["total_wh_unrounded"] == pytest.approx(sum(summary["phases_wh"].values()))
    assert summary["phases_wh"]["prefill"] > 0 and summary["phases_wh"]["decode"] > 0
    assert summary["tokens"] == {"prefill": 32, "decode": 40}
    assert summary["queries"] == 4
    assert summary["wh_per_1000_queries"] == pytest.approx(summary["total_wh_unrounded"] / 4 * 1000)
    txt = (folder / "GPU_ENERGY_WH.txt").read_text()
    assert txt == f"{summary['total_wh_unrounded']:.2f}\n"

    archive = folder.with_name(folder.name + ".zip")
    assert cli_main(["verify", str(archive)]) == 0
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert f"{folder.name}/MANIFEST.sha256" in names
    assert f"{folder.name}/GPU_ENERGY_SUMMARY.json" in names

    assert (session / "summary.json").exists() and (session / "summary.csv").exists()
    table = "\n".join(result.outlines)
    assert "AI Energy Score" in table and "test_generate" in table


def _rewrite_member(archive: Path, member: str, change) -> Path:
    tampered = archive.with_name("tampered.zip")
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, change(data) if info.filename == member else data)
    return tampered


def test_verify_names_the_changed_file(bench: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [folder] = run_folders(session_dirs(bench.path)[0])
    archive = folder.with_name(folder.name + ".zip")
    member = f"{folder.name}/GPU_ENERGY_WH.txt"
    tampered = _rewrite_member(archive, member, lambda data: b"9" + data[1:])
    capsys.readouterr()
    assert cli_main(["verify", str(tampered)]) == 1
    err = capsys.readouterr().err
    assert f"changed file {member}" in err
    assert err.count("changed file") == 1


def test_verify_catches_one_flipped_byte_in_the_raw_zip(bench: pytest.Pytester, capsys) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [folder] = run_folders(session_dirs(bench.path)[0])
    archive = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{folder.name}/benchmark_report.json")
    raw = bytearray(archive.read_bytes())
    # first byte of that member's compressed data: header (30 bytes) + name + extra field
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 5
    raw[offset] ^= 0xFF
    archive.write_bytes(bytes(raw))
    capsys.readouterr()
    assert cli_main(["verify", str(archive)]) == 1
    assert f"changed file {folder.name}/benchmark_report.json" in capsys.readouterr().err


def test_verify_reports_missing_and_unlisted_files(tmp_path: Path, capsys) -> None:
    from pytest_aienergyscore.report.archive import build_archive

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    archive = build_archive(folder)
    rebuilt = tmp_path / "rebuilt.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for name in src.namelist():
            if name != "run/a.txt":
                dst.writestr(name, src.read(name))
        dst.writestr("run/extra.txt", "x")
    capsys.readouterr()
    assert cli_main(["verify", str(rebuilt)]) == 1
    err = capsys.readouterr().err
    assert "missing file run/a.txt" in err and "file not in the manifest run/extra.txt" in err


def test_verify_of_a_file_that_is_not_a_zip_is_one_line(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.zip"
    bogus.write_text("not a zip")
    assert cli_main(["verify", str(bogus), str(tmp_path / "absent.zip")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a readable zip archive" in err[0] and "no such file" in err[1]


def test_same_model_and_task_twice_never_clobbers(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_twice="""
        import pytest

        @pytest.mark.parametrize("run", [1, 2])
        def test_same(energy_meter, run):
            energy_meter.set(model="org/m", task="text_classification")
            with energy_meter.measure("forward", samples=2):
                sum(range(100_000 * run))
        """
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    sessions = session_dirs(bench.path)
    assert len(sessions) == 2
    for session in sessions:
        folders = run_folders(session)
        assert [f.name for f in folders] == [
            "text_classification__org--m__custom",
            "text_classification__org--m__custom-2",
        ]
        tests = {json.loads((f / "GPU_ENERGY_SUMMARY.json").read_text())["test"] for f in folders}
        assert tests == {"test_twice.py::test_same[1]", "test_twice.py::test_same[2]"}


def test_hostile_names_stay_inside_the_session_folder(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_names="""
        def test_evil(energy_meter):
            energy_meter.set(model="../../../etc/passwd", task="a/../..\\\\b:c*?<>|")
            with energy_meter.measure("forward", samples=1):
                sum(range(1000))
        """
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [session] = session_dirs(bench.path)
    [folder] = run_folders(session)
    assert folder.parent == session
    assert all(ch.isalnum() or ch in "._-" for ch in folder.name)
    assert not (bench.path / "etc").exists()


INTERRUPTED = """
import os
import pytest

def test_first(energy_meter):
    energy_meter.set(model="org/one", task="text_generation")
    with energy_meter.measure("decode", samples=2, tokens=20):
        sum(range(200_000))

def test_second(energy_meter):
    energy_meter.set(model="org/two", task="text_generation")
    with energy_meter.measure("prefill", samples=2):
        sum(range(200_000))
    {action}

def test_third(energy_meter):
    with energy_meter.measure("decode", samples=1):
        pass
"""


def test_ctrl_c_keeps_every_finished_record_and_writes_its_files(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_int=INTERRUPTED.format(action="raise KeyboardInterrupt"))
    result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    [session] = session_dirs(bench.path)
    summaries = [json.loads((f / "GPU_ENERGY_SUMMARY.json").read_text()) for f in run_folders(session)]
    by_model = {s["model"]: s for s in summaries}
    assert set(by_model) == {"org/one", "org/two"}  # the third test never ran
    assert by_model["org/two"]["phases_wh"].keys() == {"prefill"}
    assert any("interrupted" in reason for reason in by_model["org/two"]["not_comparable_reasons"])
    records = (session / "records.jsonl").read_text().splitlines()
    assert len(records) == 2


def test_a_failing_test_keeps_its_finished_phases_and_others_go_on(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_int=INTERRUPTED.format(action="raise RuntimeError('model exploded')"))
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    [session] = session_dirs(bench.path)
    rows = list(csv.DictReader((session / "summary.csv").open()))
    assert [r["model"] for r in rows] == ["org/one", "org/two", ""]
    two = session / "text_generation__org--two__custom"
    report = json.loads((two / "benchmark_report.json").read_text())
    assert report["outcome"] == "failed"
    assert "model exploded" in (two / "run.log").read_text()


def test_a_hard_crash_leaves_records_that_the_report_command_turns_into_files(bench: pytest.Pytester, capsys) -> None:
    bench.makepyfile(test_int=INTERRUPTED.format(action="os._exit(3)"))
    result = bench.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 3
    [session] = session_dirs(bench.path)
    assert not run_folders(session)  # pytest died before its session end
    assert cli_main(["report", str(session)]) == 0
    folders = run_folders(session)
    assert [f.name for f in folders] == ["text_generation__org--one__custom"]
    assert cli_main(["verify", str(folders[0]) + ".zip"]) == 0


def test_the_estimate_is_labelled_in_every_output(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    result = bench.runpytest("-p", "no:cacheprovider")
    [session] = session_dirs(bench.path)
    [folder] = run_folders(session)
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    assert summary["energy_kind"] == "estimate" and summary["meter"] == "estimate" and summary["device"] == "cpu"
    assert summary["comparable"] is False
    assert any("estimate" in r for r in summary["not_comparable_reasons"])
    report = json.loads((folder / "benchmark_report.json").read_text())
    devices = [d for p in report["phases"] for d in p["measurement"]["devices"]]
    assert devices and all(d["kind"] == "estimate" and d["meter"] == "estimate" for d in devices)
    assert report["meter"]["name"] == "estimate" and report["meter"]["kind"] == "estimate"
    assert "estimate" in (folder / "run.log").read_text()
    row = next(csv.DictReader((session / "summary.csv").open()))
    assert row["energy_kind"] == "estimate" and row["meter"] == "estimate"
    session_summary = json.loads((session / "summary.json").read_text())
    assert "estimate" in session_summary["meter"]
    out = "\n".join(result.outlines)
    assert "cpu/estimate" in out and "estimate: CPU time x 10 W per busy core" in out
    assert "meter estimate (estimate)" in out


def test_quiet_when_nothing_is_metered(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    out = "\n".join(line for line in result.outlines if not line.startswith("plugins:"))
    assert "AI Energy Score" not in out and "aienergyscore" not in out
    assert not (bench.path / "results").exists()


def test_no_energy_runs_tests_without_metering_or_files(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    result = bench.runpytest("-p", "no:cacheprovider", "--no-energy")
    result.assert_outcomes(passed=1)
    assert not (bench.path / "results").exists()
    assert "AI Energy Score" not in "\n".join(result.outlines)


def test_plugin_can_be_turned_off(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:aienergyscore")
    result.assert_outcomes(errors=1)
    assert "fixture 'energy_meter' not found" in "\n".join(result.outlines)


def test_a_meter_that_cannot_work_fails_the_test_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_bench=TWO_PHASES)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-meter=nvml")
    result.assert_outcomes(errors=1)
    out = "\n".join(result.outlines)
    assert "--energy-meter nvml (command line):" in out
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out


def test_nested_phases_are_each_recorded(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_nested="""
        def test_nested(energy_meter):
            with energy_meter.measure("call", samples=3):
                with energy_meter.measure("forward", samples=3):
                    sum(range(300_000))
                sum(range(300_000))
        """
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [folder] = run_folders(session_dirs(bench.path)[0])
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    phases = {p["name"]: p for p in summary["phases"]}
    assert phases["call"]["wh"] > phases["forward"]["wh"] > 0 and phases["forward"]["parent"] == "call"
    assert summary["phases_wh"] == {"call": phases["call"]["wh"]}  # the inner phase is part of call, not added again


def test_module_runs_as_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_aienergyscore", "verify", str(tmp_path / "none.zip")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_misspelt_energy_marker_keyword_fails_the_test_in_one_line_naming_it(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_typo="""
        import pytest

        @pytest.mark.energy(modle="org/tiny-model", task="text_generation")
        def test_typo(energy_meter):
            with energy_meter.measure("decode", samples=1):
                pass

        @pytest.mark.energy("org/tiny-model")
        def test_positional(energy_meter):
            pass

        @pytest.mark.energy(model="org/tiny-model", task="text_generation", model_class="A")
        def test_right(energy_meter):
            with energy_meter.measure("decode", samples=1):
                pass
        """
    )
    result = bench.runpytest("-p", "no:cacheprovider", "-rE")
    result.assert_outcomes(passed=1, errors=2)
    out = "\n".join(result.outlines)
    allowed = "allowed keywords: model, task, processor, model_class, backend, queries"
    assert f"@pytest.mark.energy: unknown keyword modle; {allowed}" in out
    assert f"@pytest.mark.energy: positional argument 'org/tiny-model'; {allowed}" in out
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out
    (session,) = session_dirs(bench.path)
    assert [p.name for p in run_folders(session)] == ["text_generation__org--tiny-model__custom"]


# A conftest that prints, once collection is done, which plugins pytest will call for every test.
SHOW_PER_TEST_HOOKS = """
import types

import pytest

PER_TEST = ("pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown",
            "pytest_runtest_makereport", "pytest_runtest_logreport")

@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    ours = set()
    for name in PER_TEST:
        for impl in getattr(session.config.hook, name).get_hookimpls():
            plugin = impl.plugin
            module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            if module.startswith("pytest_aienergyscore"):
                ours.add(name)
    print("PER_TEST_HOOKS=" + ",".join(sorted(ours)))
"""


def _per_test_hooks(result: pytest.RunResult) -> set[str]:
    line = next(x for x in result.outlines if x.startswith("PER_TEST_HOOKS="))
    return set(filter(None, line.split("=", 1)[1].split(",")))


def test_a_session_without_benchmarks_runs_none_of_our_hooks_per_test(bench: pytest.Pytester) -> None:
    bench.makeconftest(SHOW_PER_TEST_HOOKS)
    bench.makepyfile(test_plain="def test_one():\n    pass\n\nclass TestTwo:\n    def test_two(self):\n        pass\n")
    result = bench.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert _per_test_hooks(result) == set()


def test_a_session_with_a_benchmark_wires_the_per_test_hooks(bench: pytest.Pytester) -> None:
    bench.makeconftest(SHOW_PER_TEST_HOOKS)
    bench.makepyfile(test_plain="def test_plain():\n    pass\n", test_bench=TWO_PHASES)
    result = bench.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert _per_test_hooks(result) == {"pytest_runtest_setup", "pytest_runtest_makereport"}


def test_an_energy_marker_on_a_class_without_our_fixtures_is_still_checked(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.energy(modle="org/tiny-model")
        class TestMarked:
            def test_typo(self):
                pass
        """
    )
    result = bench.runpytest("-p", "no:cacheprovider", "-rE")
    result.assert_outcomes(errors=1)
    assert "@pytest.mark.energy: unknown keyword modle; allowed keywords:" in "\n".join(result.outlines)


def test_an_energy_meter_asked_for_at_run_time_records_the_test_outcome(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_late="""
        def test_late(request):
            energy_meter = request.getfixturevalue("energy_meter")
            energy_meter.set(model="org/tiny-model", task="text_generation")
            with energy_meter.measure("decode", samples=1):
                sum(range(100_000))
        """
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [folder] = run_folders(session_dirs(bench.path)[0])
    assert json.loads((folder / "benchmark_report.json").read_text())["outcome"] == "passed"


RESOLVED_PROBE = """
from pytest_aienergyscore.plugin import SETTINGS_KEY

def test_probe(request):
    settings = request.config.stash.get(SETTINGS_KEY, None)
    print("RESOLVED=" + ("no" if settings is None else settings.output_dir.name))
"""


def _resolved(result: pytest.RunResult) -> str:
    return next(line for line in result.outlines if "RESOLVED=" in line).split("RESOLVED=", 1)[1]


def test_settings_are_not_resolved_in_a_run_that_sets_none_of_them_and_uses_no_benchmark(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_probe=RESOLVED_PROBE)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert _resolved(result) == "no"


@pytest.mark.parametrize(
    "how", [("--energy-output", "given"), ("-o", "energy_output=given"), ("env", "given"), ("ini", "given")]
)
def test_a_setting_given_anywhere_is_resolved_and_checked_at_start(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: tuple[str, str]
) -> None:
    bench.makepyfile(test_probe=RESOLVED_PROBE)
    args = ["-s", "-p", "no:cacheprovider"]
    if how[0] == "env":
        monkeypatch.setenv("AIENERGYSCORE_OUTPUT", how[1])
    elif how[0] == "ini":
        bench.makeini(f"[pytest]\nenergy_output = {how[1]}\n")
    else:
        args += list(how)
    result = bench.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert _resolved(result) == "given"
    bad = bench.runpytest(*args, "--energy-samples", "zero")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "RESOLVED=" not in bad.stdout.str()
    bad.stderr.fnmatch_lines(["*--energy-samples: invalid value 'zero'*"])
