"""Cost of metering itself: one begin+end window pair must stay well under 1 ms with the estimate meter.

Run with ``pytest perf/ --benchmark-only``; the assertion reads pytest-benchmark's own statistics.
"""

from __future__ import annotations

import pytest

from pytest_aienergyscore.meters.estimate import EstimateMeter


@pytest.mark.parametrize("scope", ["process", "machine"])
def test_window_begin_end_overhead(benchmark, scope: str) -> None:
    meter = EstimateMeter(10.0, scope)

    def window() -> None:
        meter.begin_window("w")
        meter.end_window("w")

    benchmark.pedantic(window, rounds=2000, iterations=1, warmup_rounds=50)
    assert benchmark.stats.stats.median < 1e-3
