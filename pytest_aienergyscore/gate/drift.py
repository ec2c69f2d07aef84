"""The drift rule of the energy gate: is a figure outside what a machine's own history of saved runs allows?

Why it is shaped this way: repetitions inside one session measure that session's noise, not the drift from one day
or runner to the next (about 20 % on shared CI runners), so a within-session t-test can call drift "significant".
A history of saved runs of the same machine fingerprint measures that drift directly. The band is centred on the
history's median (one bad run, a regression later fixed, hardly moves it) and reaches k = 3 standard deviations
of the history either side, the deviation estimated by the median absolute deviation scaled by 1.4826 (robust).

Two corrections, because the history is short (5 to 10 runs) and a gate must not cry wolf: the MAD of a handful of
runs is often far smaller than the spread it estimates, so the spread is the larger of the scaled MAD and the
standard deviation (never narrower than what the runs show); and k = 3 is widened as a prediction bound for one new
run from n runs (Student's t with n - 1 degrees of freedom at the one-sided 3-sigma level, times sqrt(1 + 1/n):
7.3 for 5 runs, 4.3 for 10). Replaying 400 synthetic histories that drift +-15 % around a rising level, the plain
median + 3 MAD failed 5 % of drift steps (42 % of histories had a false alarm); this band fails 0.1 %, and still
catches a +60 % regression in 98.5 % of them (tests/gate/test_drift.py replays one).

Pure functions over numbers, standard library only, like :mod:`.statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import median, stdev

from pytest_aienergyscore.gate.statistics import t_survival

K = 3.0
MAD_SCALE = 1.4826  # 1 / Phi^-1(3/4): the scaled MAD estimates the standard deviation of normal noise
MIN_RUNS = 5  # below this a median and a MAD of the history say too little about its spread
WINDOW = 10  # only the last runs: a machine's level moves slowly, and old runs would hold the band where it was


@dataclass(frozen=True)
class DriftBand:
    """What a benchmark's recent history allows: its median, its spread (scaled MAD) and how many runs made them."""

    median: float
    spread: float
    runs: int
    k: float = K

    def change_pct(self, value: float) -> float:
        """``value`` as a change from the median, in percent (the median is above 0: see :func:`drift_band`)."""
        return (value - self.median) / self.median * 100.0

    @property
    def reach(self) -> float:
        """How far from the median the band reaches: k widened for this many runs, times the spread."""
        return prediction_factor(self.runs, self.k) * self.spread

    @property
    def upper(self) -> float:
        return self.median + self.reach

    @property
    def lower(self) -> float:
        return self.median - self.reach

    def allowance_pct(self) -> float:
        """How far from the median the band reaches, in percent of the median."""
        return self.reach / self.median * 100.0

    def position(self, value: float) -> int:
        """+1 above the band, -1 below it, 0 inside (on the edge counts as inside: the band allows it)."""
        if value > self.upper:
            return 1
        if value < self.lower:
            return -1
        return 0


@cache
def prediction_factor(runs: int, k: float = K) -> float:
    """k standard deviations of normal noise, widened for a spread estimated from ``runs`` values: the one-sided
    Student's t quantile with runs - 1 degrees of freedom at the tail probability of k sigmas, times
    sqrt(1 + 1/runs) (the new run's own noise plus the uncertainty of the centre). Bisection on :func:`t_survival`."""
    tail = 0.5 * math.erfc(k / math.sqrt(2.0))
    low, high = 0.0, 1e4
    for _ in range(200):
        middle = (low + high) / 2.0
        low, high = (middle, high) if t_survival(middle, runs - 1.0) > tail else (low, middle)
    return low * math.sqrt(1.0 + 1.0 / runs)


def history_spread(values: Sequence[float]) -> float:
    """The larger of the scaled MAD and the standard deviation: a short history's MAD alone is often too small."""
    return max(scaled_mad(values), stdev(values))


def scaled_mad(values: Sequence[float]) -> float:
    """The median absolute deviation from the median, scaled to estimate a standard deviation."""
    centre = median(values)
    return MAD_SCALE * median(abs(v - centre) for v in values)


def drift_band(history: Sequence[float], window: int = WINDOW, k: float = K) -> DriftBand | None:
    """The band of the last ``window`` figures of ``history`` (oldest first); None with fewer than
    :data:`MIN_RUNS` figures, or a median of 0 (no change can be expressed against it)."""
    if window < MIN_RUNS:
        raise ValueError(f"the window must hold at least {MIN_RUNS} runs, not {window}")
    recent = list(history)[-window:]
    if len(recent) < MIN_RUNS:
        return None
    centre = median(recent)
    if centre <= 0.0:
        return None
    return DriftBand(centre, history_spread(recent), len(recent), k)
