"""Baseline files: the figures a baseline keeps, saving and loading them, one-line errors for bad files, and where a
bare --energy-save-baseline writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.config.settings import SettingsError, build_settings
from pytest_aienergyscore.gate.baselines import (
    BASELINE_SCHEMA,
    BaselineError,
    load_baseline,
    repetition_totals_wh,
    save_baseline,
)
from tests.gate.figures import BURN, FIXED, FIXED_ID, gate_record


def test_repetition_totals_average_to_the_record_total() -> None:
    record = gate_record([1.0, 2.0, 4.5])
    assert repetition_totals_wh(record) == pytest.approx([1.0, 2.0, 4.5])
    assert sum(repetition_totals_wh(record)) / 3 == pytest.approx(record.total_wh())


def test_a_saved_baseline_loads_back(tmp_path: Path) -> None:
    path = save_baseline([gate_record([1.0, 1.1, 0.9])], tmp_path / "sub" / "base.json", "s1")
    baseline = load_baseline(path)
    entry = baseline.benchmarks["t.py::test_x"]
    assert entry["repetition_wh_per_1000_queries"] == pytest.approx([1.0, 1.1, 0.9])
    assert baseline.fingerprint["meter"] == "rapl (measured)"
    assert json.loads(path.read_text())["schema"] == BASELINE_SCHEMA


def _valid(tmp_path: Path) -> dict:
    return json.loads(save_baseline([gate_record([1.0])], tmp_path / "ok.json", "s").read_text())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupted, not valid JSON"),
        ('{"machine_info": {}, "benchmarks": []}', "not a pytest-aienergyscore baseline (it looks like a pytest-bench"),
        ("[1, 2]", "not a pytest-aienergyscore baseline"),
        (lambda d: d | {"version": 99}, "baseline version 99 was written by a newer pytest-aienergyscore"),
        (lambda d: d | {"benchmarks": []}, "'benchmarks' is not an object"),
        (
            lambda d: d | {"benchmarks": {"t.py::test_x": d["benchmarks"]["t.py::test_x"] | {"total_wh": "lots"}}},
            "benchmark 't.py::test_x': total_wh must be a number >= 0, not 'lots'",
        ),
        (
            lambda d: (
                d | {"benchmarks": {"t.py::test_x": d["benchmarks"]["t.py::test_x"] | {"repetition_total_wh": [-1]}}}
            ),
            "repetition_total_wh must be a non-empty list of numbers >= 0",
        ),
    ],
)
def test_corrupted_or_foreign_baselines_are_one_line_errors(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "base.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content(_valid(tmp_path))))
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_bare_save_baseline_goes_to_the_output_folder_and_test_paths_are_refused(tmp_path: Path) -> None:
    settings = build_settings({"energy_save_baseline": "1"}, {}, {}, cwd=tmp_path, rootdir=tmp_path)
    assert settings.save_baseline == tmp_path / "results" / "baseline.json"
    settings = build_settings({"energy_save_baseline": "b/x.json"}, {}, {}, cwd=tmp_path / "c", rootdir=tmp_path)
    assert settings.save_baseline == tmp_path / "c" / "b" / "x.json"
    with pytest.raises(SettingsError, match="--energy-save-baseline=PATH"):
        build_settings({"energy_save_baseline": "tests/test_x.py"}, {}, {}, cwd=tmp_path, rootdir=tmp_path)


# -- baseline files in a pytest session --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [("{\n  truncated", "corrupted, not valid JSON"), ('{"benchmarks": {}}', "not a pytest-aienergyscore baseline")],
)
def test_a_corrupted_or_foreign_baseline_stops_the_session_before_it_runs(
    bench: pytest.Pytester, content: str, message: str
) -> None:
    bench.makepyfile(test_burn=BURN)
    (bench.path / "base.json").write_text(content)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0] and "base.json" in errors[0] and "--energy-baseline" in errors[0]
    assert not (bench.path / "results").exists()


def test_bare_save_baseline_writes_into_the_output_folder(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0,2.0,3.0")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline").assert_outcomes(passed=1)
    baseline = load_baseline(bench.path / "results" / "baseline.json")
    assert baseline.benchmarks[FIXED_ID]["repetition_wh_per_1000_queries"] == pytest.approx([1.0, 2.0, 3.0])
    assert baseline.benchmarks[FIXED_ID]["repetitions"] == 3
