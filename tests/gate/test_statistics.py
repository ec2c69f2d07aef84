"""The gate's statistics: the t distribution's tail against closed forms and tables, and Welch's test."""

from __future__ import annotations

import math

import pytest

from pytest_aienergyscore.gate.statistics import t_survival, welch_test


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
