"""The CI energy gate: baselines saved and loaded, verdicts with and without a noise estimate, exit statuses.

Gate runs use baselines crafted from a saved one, and benchmarks whose figures are either fixed (recorded phases) or
so far from the crafted baseline that timing noise cannot change the verdict.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_aienergyscore.config.settings import SettingsError, build_settings
from pytest_aienergyscore.gate.verdicts import (
    BASELINE_SCHEMA,
    NOT_COMPARED,
    REGRESSION,
    WITHIN_NOISE,
    BaselineError,
    GateSettings,
    benchmark_entry,
    compare_entry,
    load_baseline,
    repetition_totals_wh,
    save_baseline,
    t_survival,
    welch_test,
)
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record

# A benchmark whose per-repetition Wh per 1,000 queries are exactly the numbers in FIXED_WH (1,000 queries each).
FIXED = """
import os
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase

def test_fixed(energy_meter):
    energy_meter.set(model="org/fixed", task="text_classification")
    for repetition, wh in enumerate(float(x) for x in os.environ["FIXED_WH"].split(",")):
        device = DeviceEnergy("cpu", "cpu", wh * 3600.0, "estimate", "estimate")
        window = Measurement("forward", "estimate", "estimate", 10.0, (device,), counter_period_s=0.001)
        energy_meter.add_phase(Phase("forward", window, samples=1000, repetition=repetition))
"""

BURN = """
def test_burn(energy_meter):
    energy_meter.set(model="org/burn", task="text_classification")
    with energy_meter.measure("forward", samples=10):
        sum(i * i for i in range(300_000))
"""

FIXED_ID = "test_fixed.py::test_fixed"
BURN_ID = "test_burn.py::test_burn"


def _record(per_rep_wh: list[float], queries: int = 1000, gpu: str | None = None) -> Record:
    phases = []
    for repetition, wh in enumerate(per_rep_wh):
        scope = "gpu" if gpu else "cpu"
        device = DeviceEnergy("cuda:0" if gpu else "cpu", scope, wh * 3600.0, "measured", "nvml" if gpu else "rapl")
        window = Measurement("forward", device.meter, "measured", 10.0, (device,))
        phases.append(Phase("forward", window, samples=queries, repetition=repetition))
    environment = {"gpus": [{"name": gpu, "driver": "550", "power_limit_w": 700.0}] if gpu else [], "cpu": "x86"}
    return Record("t.py::test_x", "pytorch", phases=phases, environment=environment)


# -- statistics ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [-2.5, -0.4, 0.0, 0.7, 2.0, 6.3, 40.0])
def test_t_tail_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t: float) -> None:
    assert t_survival(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)
    assert t_survival(t, 2) == pytest.approx(0.5 * (1 - t / math.sqrt(2 + t * t)), abs=1e-12)


@pytest.mark.parametrize(("df", "critical"), [(2, 2.919986), (5, 2.015048), (10, 1.812461), (30, 1.697261)])
def test_t_tail_gives_five_percent_at_the_tabulated_critical_values(df: int, critical: float) -> None:
    assert t_survival(critical, df) == pytest.approx(0.05, abs=1e-6)


def test_welch_test_sees_a_clear_rise_and_not_a_noisy_one() -> None:
    clear = welch_test([1.0, 1.02, 0.98], [0.80, 0.82, 0.78])
    assert clear.p_rise < 0.001 and clear.p_fall > 0.999
    noisy = welch_test([1.0, 1.02, 0.98], [0.2, 0.3, 2.2])
    assert noisy.p_rise > 0.3
    assert welch_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]).p_rise == 1.0
    assert welch_test([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]).p_rise == 0.0


# -- verdicts --------------------------------------------------------------------------------------------------------


def test_repetition_totals_average_to_the_record_total() -> None:
    record = _record([1.0, 2.0, 4.5])
    assert repetition_totals_wh(record) == pytest.approx([1.0, 2.0, 4.5])
    assert sum(repetition_totals_wh(record)) / 3 == pytest.approx(record.total_wh())


def test_single_runs_decide_by_threshold_and_say_there_is_no_noise_estimate() -> None:
    base, now = benchmark_entry(_record([1.0])), benchmark_entry(_record([1.2]))
    verdict = compare_entry("t", now, base, GateSettings(fail_above=10.0))
    assert verdict.status == REGRESSION and verdict.fails
    assert verdict.change_pct == pytest.approx(20.0)
    assert "no noise estimate" in verdict.label()
    report_only = compare_entry("t", now, base, GateSettings())
    assert report_only.status == REGRESSION and not report_only.fails
    assert compare_entry("t", now, base, GateSettings(fail_above=25.0)).fails is False


def test_repeated_runs_fail_only_on_a_significant_rise() -> None:
    now = benchmark_entry(_record([1.0, 1.02, 0.98]))
    noisy = compare_entry("t", now, benchmark_entry(_record([0.2, 0.3, 2.2])), GateSettings(fail_above=5.0))
    assert noisy.status == WITHIN_NOISE and not noisy.fails and noisy.noise_estimate
    assert noisy.p_value is not None and noisy.p_value > 0.05
    clear = compare_entry("t", now, benchmark_entry(_record([0.8, 0.82, 0.78])), GateSettings(fail_above=5.0))
    assert clear.status == REGRESSION and clear.fails and clear.p_value is not None and clear.p_value < 0.05


def test_another_machine_is_not_compared_and_strict_makes_it_fail() -> None:
    base = benchmark_entry(_record([1.0], gpu="NVIDIA H100 80GB HBM3"))
    now = benchmark_entry(_record([3.0], gpu="NVIDIA A100-SXM4-40GB"))
    lenient = compare_entry("t", now, base, GateSettings(fail_above=5.0))
    assert lenient.status == NOT_COMPARED and not lenient.fails
    assert "GPU model NVIDIA H100 80GB HBM3 in the baseline, NVIDIA A100-SXM4-40GB now" in lenient.reason
    assert compare_entry("t", now, base, GateSettings(fail_above=5.0, strict=True)).fails


def test_unknown_queries_compare_total_energy() -> None:
    base, now = benchmark_entry(_record([1.0], queries=0)), benchmark_entry(_record([1.5], queries=0))
    verdict = compare_entry("t", now, base, GateSettings(fail_above=10.0))
    assert verdict.metric == "total_wh" and verdict.status == REGRESSION


# -- baseline files --------------------------------------------------------------------------------------------------


def test_a_saved_baseline_loads_back(tmp_path: Path) -> None:
    path = save_baseline([_record([1.0, 1.1, 0.9])], tmp_path / "sub" / "base.json", "s1")
    baseline = load_baseline(path)
    entry = baseline.benchmarks["t.py::test_x"]
    assert entry["repetition_wh_per_1000_queries"] == pytest.approx([1.0, 1.1, 0.9])
    assert baseline.fingerprint["meter"] == "rapl (measured)"
    assert json.loads(path.read_text())["schema"] == BASELINE_SCHEMA


def _valid(tmp_path: Path) -> dict:
    return json.loads(save_baseline([_record([1.0])], tmp_path / "ok.json", "s").read_text())


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


# -- the gate in a pytest session -----------------------------------------------------------------------------------


def _edit_baseline(path: Path, test: str, per_rep: list[float], target: Path | None = None) -> Path:
    """Replace one benchmark's figures (1,000 queries) so that the verdict no longer depends on timing."""
    data = json.loads(path.read_text())
    entry = data["benchmarks"][test]
    queries = entry["queries"]
    entry["repetition_wh_per_1000_queries"] = per_rep
    entry["repetition_total_wh"] = [v * queries / 1000 for v in per_rep]
    entry["wh_per_1000_queries"] = sum(per_rep) / len(per_rep)
    entry["total_wh"] = entry["wh_per_1000_queries"] * queries / 1000
    entry["repetitions"] = len(per_rep)
    target = target or path
    target.write_text(json.dumps(data))
    return target


def _gate_lines(result: pytest.RunResult) -> list[str]:
    out = result.outlines
    start = next(i for i, line in enumerate(out) if line.startswith("energy gate against the baseline"))
    return out[start:]


def test_a_rise_above_the_threshold_fails_with_exit_1_and_names_the_benchmark(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_burn=BURN)
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    saved = json.loads((bench.path / "base.json").read_text())["benchmarks"][BURN_ID]
    tiny = saved["wh_per_1000_queries"] / 100  # a hundredfold rise: far beyond any timing noise
    _edit_baseline(bench.path / "base.json", BURN_ID, [tiny])

    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-fail-above=10")
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    lines = _gate_lines(result)
    [row] = [line for line in lines if line.startswith("test_burn")]
    assert "regression (no noise estimate: single runs)" in row
    assert f"{tiny:.3e}" in row and "%" in row
    assert any(line.startswith("energy gate FAILED: 1 regression") for line in lines)
    assert "AI Energy Score" in "\n".join(result.outlines)  # the results table is still printed
    gate = json.loads(next((bench.path / "results").glob("*/gate.json")).read_text())
    assert gate["failed"] is True and gate["verdicts"][0]["status"] == REGRESSION


def test_a_rise_within_noise_passes_and_a_significant_one_fails(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0,1.02,0.98")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    noisy = _edit_baseline(bench.path / "base.json", FIXED_ID, [0.2, 0.3, 2.2], bench.path / "noisy.json")
    clear = _edit_baseline(bench.path / "base.json", FIXED_ID, [0.8, 0.82, 0.78], bench.path / "clear.json")

    result = bench.runpytest("-p", "no:cacheprovider", f"--energy-baseline={noisy}", "--energy-fail-above=5")
    assert result.ret == 0
    [row] = [line for line in _gate_lines(result) if line.startswith("test_fixed")]
    assert "+11.1%" in row and "within noise (p=" in row

    result = bench.runpytest("-p", "no:cacheprovider", f"--energy-baseline={clear}", "--energy-fail-above=5")
    assert result.ret == 1
    [row] = [line for line in _gate_lines(result) if line.startswith("test_fixed")]
    assert "+25.0%" in row and "regression (p<0.001)" in row


def test_an_improvement_is_reported_and_passes(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0,1.02,0.98")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    _edit_baseline(bench.path / "base.json", FIXED_ID, [2.0, 2.02, 1.98])
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-fail-above=5")
    assert result.ret == 0
    lines = _gate_lines(result)
    assert any("-50.0%" in line and "improvement (p<0.001)" in line for line in lines)
    assert any(line.startswith("energy gate passed: 0 regression, 1 improvement") for line in lines)


def test_a_baseline_from_another_machine_is_explained_and_refused_under_strict(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    data = json.loads((bench.path / "base.json").read_text())
    data["benchmarks"][FIXED_ID]["fingerprint"]["gpu_models"] = ["NVIDIA H100 80GB HBM3"]
    data["benchmarks"][FIXED_ID]["fingerprint"]["meter"] = "nvml (measured)"
    (bench.path / "base.json").write_text(json.dumps(data))

    lenient = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-fail-above=5")
    assert lenient.ret == 0
    [row] = [line for line in _gate_lines(lenient) if line.startswith("test_fixed")]
    assert "not compared: baseline from another machine fingerprint: GPU model NVIDIA H100 80GB HBM3" in row
    assert "meter nvml (measured) in the baseline" in row

    strict = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-strict")
    assert strict.ret == 1
    assert any(line.startswith("energy gate FAILED") for line in _gate_lines(strict))


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


def test_a_missing_baseline_warns_by_default_and_is_an_error_when_required(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_burn=BURN)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=absent.json", "--energy-fail-above=5")
    assert result.ret == 0
    assert any("note: no baseline at" in line and "absent.json" in line for line in _gate_lines(result))
    required = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=absent.json", "--energy-require-baseline")
    assert required.ret == pytest.ExitCode.USAGE_ERROR
    assert any("absent.json: no such baseline file" in line for line in required.errlines)


def test_a_benchmark_missing_from_the_baseline_fails_only_when_required(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    bench.makepyfile(test_burn=BURN)
    lenient = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json")
    assert lenient.ret == 0
    assert any(
        line.startswith("test_burn") and "no baseline: not in the baseline file" in line for line in lenient.outlines
    )
    strict = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-require-baseline")
    assert strict.ret == 1


def test_bare_save_baseline_writes_into_the_output_folder(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0,2.0,3.0")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline").assert_outcomes(passed=1)
    baseline = load_baseline(bench.path / "results" / "baseline.json")
    assert baseline.benchmarks[FIXED_ID]["repetition_wh_per_1000_queries"] == pytest.approx([1.0, 2.0, 3.0])
    assert baseline.benchmarks[FIXED_ID]["repetitions"] == 3
