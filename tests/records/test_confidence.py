"""The confidence rule: a window shorter than ten counter updates is not trustworthy, shorter than fifty is low
confidence; the meters, the NVML stalled-counter check and comparability all read it from one place."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from pytest_aienergyscore.meters import nvml as nvml_module
from pytest_aienergyscore.meters.base import Meter, Reading
from pytest_aienergyscore.meters.nvml import NvmlMeter
from pytest_aienergyscore.records.confidence import (
    CONFIDENCE_LOW,
    CONFIDENCE_OK,
    CONFIDENCE_UNTRUSTWORTHY,
    least_confident,
    too_short_to_trust,
    window_confidence,
)
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from tests.support.fake_pynvml import make_gpus, make_pynvml

SHORT_REASON = "GPU window of forward is too short to trust (under ten counter updates)"
# Around both edges of a 0.1 s counter: 1 s (ten updates) and 5 s (fifty).
DURATIONS = (0.0, 0.5, 0.99, 1.0, 1.01, 4.99, 5.0, 60.0)


@pytest.mark.parametrize(
    ("seconds", "period", "expected"),
    [
        (0.0, 0.1, CONFIDENCE_UNTRUSTWORTHY),
        (0.99, 0.1, CONFIDENCE_UNTRUSTWORTHY),
        (1.0, 0.1, CONFIDENCE_LOW),
        (4.99, 0.1, CONFIDENCE_LOW),
        (5.0, 0.1, CONFIDENCE_OK),
        (9.0, 1.0, CONFIDENCE_UNTRUSTWORTHY),
        (49.0, 1.0, CONFIDENCE_LOW),
        (50.0, 1.0, CONFIDENCE_OK),
    ],
)
def test_a_window_is_graded_by_its_length_in_updates_of_its_counter(
    seconds: float, period: float, expected: str
) -> None:
    confidence, warning = window_confidence(seconds, period, "nvml")
    assert confidence == expected
    assert (warning is None) == (expected == CONFIDENCE_OK)


def test_an_untrustworthy_window_says_its_length_the_counter_and_the_update_period() -> None:
    assert window_confidence(0.25, 0.1, "nvml") == (
        CONFIDENCE_UNTRUSTWORTHY,
        "window of 0.250 s is shorter than 10 updates of the nvml counter (0.1 s each): not trustworthy",
    )


def test_a_low_confidence_window_says_its_length_and_the_counter() -> None:
    assert window_confidence(2.0, 0.1, "rapl") == (
        CONFIDENCE_LOW,
        "window of 2.00 s spans fewer than 50 updates of the rapl counter: low confidence",
    )


@pytest.mark.parametrize("seconds", DURATIONS)
def test_too_short_to_trust_is_exactly_the_untrustworthy_grade(seconds: float) -> None:
    untrustworthy = window_confidence(seconds, 0.1, "nvml")[0] == CONFIDENCE_UNTRUSTWORTHY
    assert too_short_to_trust(seconds, 0.1) is untrustworthy


def test_a_figure_from_several_windows_is_as_sure_as_the_least_sure_of_them() -> None:
    assert least_confident(CONFIDENCE_OK, CONFIDENCE_OK) == CONFIDENCE_OK
    assert least_confident(CONFIDENCE_LOW, CONFIDENCE_OK) == CONFIDENCE_LOW
    assert least_confident(CONFIDENCE_OK, CONFIDENCE_UNTRUSTWORTHY, CONFIDENCE_LOW) == CONFIDENCE_UNTRUSTWORTHY


def test_an_unknown_confidence_level_is_refused_rather_than_ranked() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        least_confident(CONFIDENCE_OK, "maybe")


# -- one rule for every reader -----------------------------------------------------------------------------------


class _ClockMeter(Meter):
    """A one-GPU meter whose clock and counter the test moves: the base class grades its windows."""

    name = "clocked"
    counter_period_s = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0
        self.joules = 0.0

    def read(self) -> Reading:
        return Reading(self.clock, self.clock, {"cuda:0": self.joules})

    def device_scopes(self) -> dict[str, str]:
        return {"cuda:0": "gpu"}


def _graded_by_the_meter(seconds: float) -> str:
    meter = _ClockMeter()
    meter.begin_window("w")
    meter.clock += seconds
    meter.joules += 300.0 * seconds
    return meter.end_window("w").confidence


def _judged_short_by_comparability(seconds: float) -> bool:
    device = DeviceEnergy("cuda:0", "gpu", 300.0 * seconds, "measured", "nvml")
    window = Measurement("forward", "nvml", "measured", seconds, (device,), counter_period_s=0.1)
    record = Record("test_x", "custom", queries=1000, phases=[Phase("forward", window, samples=1000)])
    return SHORT_REASON in not_comparable_reasons(record)


def _stalled_check_applies(seconds: float, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the NVML meter calls a counter that stood still through the window stalled (fake NVML: no GPU here)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    clock = {"t": 1000.0}
    monkeypatch.setattr(nvml_module, "now", lambda: (clock["t"], clock["t"]))
    nvml: Any = make_pynvml(make_gpus(1))
    nvml.nvmlInit()
    meter = NvmlMeter((0,), nvml=nvml, env={})
    meter.begin_window("still")
    clock["t"] += seconds
    return any("did not move" in warning for warning in meter.end_window("still").warnings)


@pytest.mark.parametrize("seconds", DURATIONS)
def test_the_meters_the_stalled_counter_check_and_comparability_share_one_edge(
    seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = too_short_to_trust(seconds, 0.1)
    assert (_graded_by_the_meter(seconds) == CONFIDENCE_UNTRUSTWORTHY) is short
    assert _judged_short_by_comparability(seconds) is short
    assert _stalled_check_applies(seconds, monkeypatch) is not short
