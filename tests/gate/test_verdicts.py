"""The CI energy gate's verdicts: with and without a noise estimate, across machines, and in a pytest session with
its exit statuses.

Gate runs use baselines crafted from a saved one, and benchmarks whose figures are either fixed (recorded phases) or
so far from the crafted baseline that timing noise cannot change the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.gate.baselines import benchmark_entry
from pytest_aienergyscore.gate.verdicts import NOT_COMPARED, REGRESSION, WITHIN_NOISE, GateSettings, compare_entry
from tests.gate.figures import BURN, BURN_ID, FIXED, FIXED_ID, gate_record


def test_single_runs_decide_by_threshold_and_say_there_is_no_noise_estimate() -> None:
    base, now = benchmark_entry(gate_record([1.0])), benchmark_entry(gate_record([1.2]))
    verdict = compare_entry("t", now, base, GateSettings(fail_above=10.0))
    assert verdict.status == REGRESSION and verdict.fails
    assert verdict.change_pct == pytest.approx(20.0)
    assert "no noise estimate" in verdict.label()
    report_only = compare_entry("t", now, base, GateSettings())
    assert report_only.status == REGRESSION and not report_only.fails
    assert compare_entry("t", now, base, GateSettings(fail_above=25.0)).fails is False


def test_repeated_runs_fail_only_on_a_significant_rise() -> None:
    now = benchmark_entry(gate_record([1.0, 1.02, 0.98]))
    noisy = compare_entry("t", now, benchmark_entry(gate_record([0.2, 0.3, 2.2])), GateSettings(fail_above=5.0))
    assert noisy.status == WITHIN_NOISE and not noisy.fails and noisy.noise_estimate
    assert noisy.p_value is not None and noisy.p_value > 0.05
    clear = compare_entry("t", now, benchmark_entry(gate_record([0.8, 0.82, 0.78])), GateSettings(fail_above=5.0))
    assert clear.status == REGRESSION and clear.fails and clear.p_value is not None and clear.p_value < 0.05


def test_another_machine_is_not_compared_and_strict_makes_it_fail() -> None:
    base = benchmark_entry(gate_record([1.0], gpu="NVIDIA H100 80GB HBM3"))
    now = benchmark_entry(gate_record([3.0], gpu="NVIDIA A100-SXM4-40GB"))
    lenient = compare_entry("t", now, base, GateSettings(fail_above=5.0))
    assert lenient.status == NOT_COMPARED and not lenient.fails
    assert "GPU model NVIDIA H100 80GB HBM3 in the baseline, NVIDIA A100-SXM4-40GB now" in lenient.reason
    assert compare_entry("t", now, base, GateSettings(fail_above=5.0, strict=True)).fails


def test_unknown_queries_compare_total_energy() -> None:
    base, now = benchmark_entry(gate_record([1.0], queries=0)), benchmark_entry(gate_record([1.5], queries=0))
    verdict = compare_entry("t", now, base, GateSettings(fail_above=10.0))
    assert verdict.metric == "total_wh" and verdict.status == REGRESSION


# -- the gate in a pytest session --------------------------------------------------------------------------------------


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
    assert "regression (threshold: no noise estimate, single runs)" in row
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
    assert "+11.1%" in row and "within noise (welch: p=" in row

    result = bench.runpytest("-p", "no:cacheprovider", f"--energy-baseline={clear}", "--energy-fail-above=5")
    assert result.ret == 1
    [row] = [line for line in _gate_lines(result) if line.startswith("test_fixed")]
    assert "+25.0%" in row and "regression (welch: p<0.001)" in row


def test_an_improvement_is_reported_and_passes(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0,1.02,0.98")
    bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json").assert_outcomes(passed=1)
    _edit_baseline(bench.path / "base.json", FIXED_ID, [2.0, 2.02, 1.98])
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-fail-above=5")
    assert result.ret == 0
    lines = _gate_lines(result)
    assert any("-50.0%" in line and "improvement (welch: p<0.001)" in line for line in lines)
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
