"""The statistics of the energy gate: Welch's t-test on per-repetition figures, with the standard library only.

Why it is shaped this way: CI must fail on real regressions, not on noise, and a gate that pulls in scipy would cost
every CI job an install. Welch's test (unequal variances) fits two sessions measured on possibly different days; the
t distribution's CDF is computed exactly through the regularized incomplete beta function (continued fraction), so
fractional degrees of freedom need no table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, variance


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, evaluated with the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_survival(t: float, df: float) -> float:
    """P(T > t) for Student's t distribution with ``df`` (possibly fractional) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@dataclass(frozen=True)
class Welch:
    """Welch's t statistic for current minus baseline, its degrees of freedom, and both one-sided p-values."""

    t: float
    df: float
    p_rise: float
    p_fall: float


def welch_test(current: Sequence[float], baseline: Sequence[float]) -> Welch:
    """Welch's unequal-variance t-test of mean(current) against mean(baseline); each side needs 2+ values."""
    n1, n2 = len(current), len(baseline)
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    diff = fmean(current) - fmean(baseline)
    s1, s2 = variance(current) / n1, variance(baseline) / n2
    if s1 + s2 == 0.0:  # no spread at all: any difference is certain, none is no evidence
        p_rise = 0.0 if diff > 0 else 1.0
        p_fall = 0.0 if diff < 0 else 1.0
        return Welch(math.copysign(math.inf, diff) if diff else 0.0, math.inf, p_rise, p_fall)
    t = diff / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / ((s1 * s1 / (n1 - 1) if s1 else 0.0) + (s2 * s2 / (n2 - 1) if s2 else 0.0))
    return Welch(t, df, t_survival(t, df), t_survival(-t, df))
