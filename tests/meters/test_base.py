"""The window logic every meter shares, driven by a meter whose counter and clock the test sets by hand."""

from __future__ import annotations

import time

import pytest

from pytest_aienergyscore.meters import Meter, Reading, WindowError
from pytest_aienergyscore.meters import base as meter_base
from pytest_aienergyscore.records.confidence import CONFIDENCE_LOW, CONFIDENCE_OK, CONFIDENCE_UNTRUSTWORTHY
from pytest_aienergyscore.records.figures import MeterInfo

WALL_EPOCH = 1_700_000_000.0


class ScriptedMeter(Meter):
    """Reads whatever the test last put in ``clock`` and ``counter``; logs synchronize/read order."""

    name = "scripted"
    kind = "measured"
    counter_period_s = 0.1

    def __init__(self, devices: dict[str, str] | None = None) -> None:
        super().__init__()
        self.scopes = devices or {"gpu0": "gpu"}
        self.clock = 0.0
        self.counter = dict.fromkeys(self.scopes, 0.0)
        self.resets = 0
        self.events: list[str] = []

    def read(self) -> Reading:
        self.events.append("read")
        return Reading(self.clock, WALL_EPOCH + self.clock, dict(self.counter), self.resets)

    def synchronize(self) -> None:
        self.events.append("sync")

    def device_scopes(self) -> dict[str, str]:
        return dict(self.scopes)

    def step(self, seconds: float, **joules: float) -> None:
        self.clock += seconds
        for key, added in joules.items():
            self.counter[key] += added


@pytest.fixture
def meter() -> ScriptedMeter:
    return ScriptedMeter()


def test_window_energy_is_the_counter_difference_with_its_labels(meter: ScriptedMeter) -> None:
    meter.step(3.0, gpu0=1000.0)
    meter.begin_window("forward")
    meter.step(7.0, gpu0=420.5)
    m = meter.end_window("forward")
    assert m.name == "forward"
    assert m.joules() == pytest.approx(420.5)
    assert m.duration_s == pytest.approx(7.0)
    assert m.started_at == pytest.approx(WALL_EPOCH + 3.0)
    assert (m.meter, m.kind, m.counter_period_s) == ("scripted", "measured", 0.1)
    [dev] = m.devices
    assert (dev.device, dev.scope, dev.kind, dev.meter) == ("gpu0", "gpu", "measured", "scripted")
    assert m.valid and m.confidence == CONFIDENCE_OK and m.warnings == ()


def test_every_read_follows_a_synchronize(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.step(6.0)
    meter.end_window("w")
    assert meter.events == ["sync", "read", "sync", "read"]


def test_nested_windows_each_keep_their_own_start(meter: ScriptedMeter) -> None:
    meter.begin_window("outer")
    meter.step(2.0, gpu0=100.0)
    meter.begin_window("inner")
    meter.step(6.0, gpu0=300.0)
    inner = meter.end_window("inner")
    meter.step(2.0, gpu0=50.0)
    outer = meter.end_window("outer")
    assert inner.joules() == pytest.approx(300.0) and inner.duration_s == pytest.approx(6.0)
    assert outer.joules() == pytest.approx(450.0) and outer.duration_s == pytest.approx(10.0)


def test_overlapping_windows_end_in_any_order(meter: ScriptedMeter) -> None:
    meter.begin_window("a")
    meter.step(5.0, gpu0=10.0)
    meter.begin_window("b")
    assert meter.open_windows() == ("a", "b")
    meter.step(5.0, gpu0=20.0)
    a = meter.end_window("a")
    assert meter.open_windows() == ("b",)
    meter.step(5.0, gpu0=40.0)
    b = meter.end_window("b")
    assert a.joules() == pytest.approx(30.0)
    assert b.joules() == pytest.approx(60.0)
    assert meter.open_windows() == ()


def test_ending_an_unknown_window_raises(meter: ScriptedMeter) -> None:
    with pytest.raises(WindowError, match="'nope' was never begun"):
        meter.end_window("nope")


def test_ending_a_window_twice_raises(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.step(6.0)
    meter.end_window("w")
    with pytest.raises(WindowError, match="never begun"):
        meter.end_window("w")


def test_beginning_an_open_window_again_raises_and_keeps_the_first_start(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.step(3.0, gpu0=30.0)
    with pytest.raises(WindowError, match="'w' is already open"):
        meter.begin_window("w")
    meter.step(3.0, gpu0=30.0)
    assert meter.end_window("w").joules() == pytest.approx(60.0)


def test_cancel_window_forgets_it(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.begin_window("other")
    meter.cancel_window("w")
    assert meter.open_windows() == ("other",)
    with pytest.raises(WindowError):
        meter.end_window("w")
    meter.cancel_window("never-opened")  # a no-op, so error handlers can call it unconditionally
    meter.begin_window("w")  # the name is free again
    assert meter.open_windows() == ("other", "w")


@pytest.mark.parametrize(
    ("seconds", "confidence", "warning"),
    [
        (0.0, CONFIDENCE_UNTRUSTWORTHY, "not trustworthy"),
        (0.99, CONFIDENCE_UNTRUSTWORTHY, "not trustworthy"),
        (1.0, CONFIDENCE_LOW, "low confidence"),
        (4.99, CONFIDENCE_LOW, "low confidence"),
        (5.0, CONFIDENCE_OK, None),
        (60.0, CONFIDENCE_OK, None),
    ],
)
def test_confidence_from_window_length_in_counter_periods(
    meter: ScriptedMeter, seconds: float, confidence: str, warning: str | None
) -> None:
    # period 0.1 s: under 10 updates (1 s) untrustworthy, under 50 (5 s) low confidence
    meter.begin_window("w")
    meter.step(seconds, gpu0=1.0)
    m = meter.end_window("w")
    assert m.confidence == confidence
    assert m.valid  # a short window is flagged, not discarded
    if warning is None:
        assert m.warnings == ()
    else:
        [text] = m.warnings
        assert warning in text
        assert "scripted" in text


def test_untrustworthy_warning_names_the_duration_and_period(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.step(0.25)
    [text] = meter.end_window("w").warnings
    assert "0.250 s" in text
    assert "10 updates" in text
    assert "0.1 s each" in text


def test_thresholds_scale_with_the_counter_period() -> None:
    slow = ScriptedMeter()
    slow.counter_period_s = 1.0
    slow.begin_window("w")
    slow.step(9.0)
    assert slow.end_window("w").confidence == CONFIDENCE_UNTRUSTWORTHY
    slow.begin_window("w")
    slow.step(49.0)
    assert slow.end_window("w").confidence == CONFIDENCE_LOW


def test_counter_going_backwards_is_invalid_and_never_negative() -> None:
    meter = ScriptedMeter({"gpu0": "gpu", "gpu1": "gpu"})
    meter.step(0.0, gpu0=500.0, gpu1=500.0)
    meter.begin_window("w")
    meter.step(10.0, gpu0=-120.0, gpu1=80.0)
    m = meter.end_window("w")
    assert not m.valid
    energies = {d.device: d.joules for d in m.devices}
    assert energies == {"gpu0": 0.0, "gpu1": pytest.approx(80.0)}
    assert all(d.joules >= 0 for d in m.devices)
    assert any("gpu0" in w and "backwards by 120.000 J" in w for w in m.warnings)


def test_a_reset_during_the_window_makes_it_invalid(meter: ScriptedMeter) -> None:
    meter.begin_window("w")
    meter.step(10.0, gpu0=5.0)
    meter.resets += 1
    m = meter.end_window("w")
    assert not m.valid
    assert m.joules() == pytest.approx(5.0)
    assert any("reset" in w for w in m.warnings)


def test_a_reset_before_the_window_does_not_taint_it(meter: ScriptedMeter) -> None:
    meter.resets = 3
    meter.begin_window("w")
    meter.step(10.0, gpu0=5.0)
    assert meter.end_window("w").valid


def test_duration_is_never_negative(meter: ScriptedMeter) -> None:
    meter.clock = 10.0
    meter.begin_window("w")
    meter.clock = 9.0
    assert meter.end_window("w").duration_s == 0.0


def test_measure_idle_reports_power_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = ScriptedMeter({"gpu0": "gpu", "dram": "ram"})
    monkeypatch.setattr(meter_base.time, "sleep", lambda s: meter.step(s, gpu0=60.0 * s, dram=4.0 * s))
    watts = meter.measure_idle(5.0)
    assert watts == {"gpu0": pytest.approx(60.0), "dram": pytest.approx(4.0)}
    assert meter.open_windows() == ()


def test_info_describes_the_meter(meter: ScriptedMeter) -> None:
    meter.reason = "picked by a test"
    info = meter.info()
    assert info == MeterInfo(
        name="scripted",
        kind="measured",
        reason="picked by a test",
        devices=({"device": "gpu0", "scope": "gpu"},),
        counter_period_s=0.1,
        details={"energy_scope": "gpu energy of gpu0", "cpu_scope": None},
    )


def test_idle_power_is_withheld_when_the_idle_window_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = ScriptedMeter()
    meter.counter["gpu0"] = 500.0

    def sleep(seconds: float) -> None:
        meter.step(seconds, gpu0=60.0 * seconds)
        meter.resets += 1  # the driver restarted while we slept

    monkeypatch.setattr(meter_base.time, "sleep", sleep)
    window = meter.idle_window(5.0)
    assert not window.valid and any("reset" in w for w in window.warnings)
    assert meter.measure_idle(5.0) == {}


def test_an_interrupted_idle_window_is_not_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = ScriptedMeter()

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(meter_base.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        meter.measure_idle(3.0)
    assert meter.open_windows() == ()


def test_a_meter_without_gpus_has_no_gpu_state_to_survey(meter: ScriptedMeter) -> None:
    assert meter.survey_gpus(3.0) == []
    assert meter.events == []  # nothing read, nothing slept


def test_now_gives_monotonic_and_wall_clock_together() -> None:
    mono1, wall1 = meter_base.now()
    mono2, wall2 = meter_base.now()
    assert mono2 >= mono1
    assert abs(wall1 - time.time()) < 5.0  # a Unix timestamp (records store it), not a perf counter
    assert 0.0 <= wall2 - wall1 < 1.0
