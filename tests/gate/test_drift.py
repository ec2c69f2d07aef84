"""The drift rule: a history of saved runs allows its own spread, and a real regression still fails."""

from __future__ import annotations

import random

import pytest

from pytest_aienergyscore.gate.baselines import benchmark_entry
from pytest_aienergyscore.gate.drift import MIN_RUNS, drift_band, history_spread, prediction_factor, scaled_mad
from pytest_aienergyscore.gate.verdicts import (
    IMPROVEMENT,
    REGRESSION,
    RULE_HISTORY,
    RULE_THRESHOLD,
    WITHIN_NOISE,
    WITHIN_THRESHOLD,
    GateSettings,
    compare_entry,
)
from tests.gate.figures import gate_record


def _entry(wh: float) -> dict[str, object]:
    return benchmark_entry(gate_record([wh]))


def test_the_band_is_the_median_plus_or_minus_three_sigma_widened_for_a_short_history() -> None:
    values = [10.0, 10.5, 11.0, 11.5, 12.0] + [11.0] * 5
    band = drift_band(values)
    assert band is not None and band.median == 11.0 and band.runs == 10
    assert band.spread == pytest.approx(history_spread(values))
    assert band.upper == pytest.approx(11.0 + prediction_factor(10) * band.spread)
    assert band.position(band.upper + 0.01) == 1 and band.position(11.2) == 0 and band.position(band.lower - 0.01) == -1


def test_the_spread_is_the_larger_of_the_scaled_mad_and_the_standard_deviation() -> None:
    assert scaled_mad([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(1.4826)  # the outlier hardly moves the MAD
    assert history_spread([1.0, 1.0, 1.0, 1.0, 2.0]) == pytest.approx(0.4472, abs=1e-4)  # MAD 0: the s.d. shows it


def test_three_sigma_widens_for_few_runs_and_tends_to_three() -> None:
    assert prediction_factor(5) == pytest.approx(7.25, abs=0.01)
    assert prediction_factor(10) == pytest.approx(4.29, abs=0.01)
    assert prediction_factor(100_000) == pytest.approx(3.0, abs=0.01)


def test_fewer_than_five_runs_or_a_zero_median_give_no_band() -> None:
    assert drift_band([1.0] * (MIN_RUNS - 1)) is None
    assert drift_band([0.0] * 6) is None
    with pytest.raises(ValueError, match="at least 5 runs"):
        drift_band([1.0] * 6, window=3)


def test_only_the_last_ten_runs_make_the_band() -> None:
    band = drift_band([100.0] * 20 + [1.0] * 10)
    assert band is not None and band.median == 1.0 and band.runs == 10


def _drifting_history(runs: int, seed: int = 16) -> list[float]:
    """Wh per 1,000 queries of a machine whose level rises 1 % a run, each run within +-15 % of that level."""
    noise = random.Random(seed)
    return [(1.0 + 0.01 * i) * (1.0 + noise.uniform(-0.15, 0.15)) for i in range(runs)]


def test_replaying_a_drifting_history_passes_every_drift_step_and_fails_the_real_regression() -> None:
    figures = _drifting_history(20)
    gate = GateSettings(fail_above=10.0)
    threshold_failures = 0
    for step in range(MIN_RUNS, len(figures)):
        history = [_entry(wh) for wh in figures[:step]]  # the compared run (the latest saved) is the last of them
        verdict = compare_entry("t", _entry(figures[step]), history[-1], gate, history)
        assert verdict.rule == RULE_HISTORY, step
        assert not verdict.fails, (step, verdict.label())
        threshold_failures += compare_entry("t", _entry(figures[step]), history[-1], gate).fails
    assert threshold_failures > 0  # the threshold alone, without the history, fails some of these drift steps

    level = 1.0 + 0.01 * len(figures)
    history = [_entry(wh) for wh in figures]
    regression = compare_entry("t", _entry(level * 1.6), history[-1], gate, history)
    assert regression.status == REGRESSION and regression.fails and regression.rule == RULE_HISTORY
    assert regression.label().startswith("regression (history: +")
    assert "% vs median > 3-sigma band of 10 runs (+" in regression.label()


def test_a_history_verdict_needs_the_threshold_too_and_reports_falls() -> None:
    steady = [_entry(wh) for wh in (1.0, 1.001, 0.999, 1.0, 1.002, 0.998)]
    small = compare_entry("t", _entry(1.05), steady[-1], GateSettings(fail_above=10.0), steady)
    assert small.status == WITHIN_THRESHOLD and not small.fails and small.rule == RULE_HISTORY
    fall = compare_entry("t", _entry(0.5), steady[-1], GateSettings(fail_above=10.0), steady)
    assert fall.status == IMPROVEMENT and "% vs median < 3-sigma band of 6 runs (-" in fall.label()
    inside = compare_entry("t", _entry(1.001), steady[-1], GateSettings(fail_above=10.0), steady)
    assert inside.status == WITHIN_NOISE and "within 3-sigma band of 6 runs (+-" in inside.label()


def test_failed_runs_in_the_history_do_not_count_towards_its_five() -> None:
    history = [_entry(1.0) for _ in range(4)] + [{**_entry(9.0), "outcome": "failed"}] * 3
    verdict = compare_entry("t", _entry(1.6), history[0], GateSettings(fail_above=10.0), history)
    assert verdict.rule == RULE_THRESHOLD and verdict.fails
