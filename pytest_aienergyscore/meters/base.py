"""The one interface every energy meter implements: cumulative counters read at the edges of named windows.

A meter only has to say how to read its cumulative energy per device (:meth:`Meter.read`); the base class turns two
reads into a :class:`~.records.figures.Measurement` with its validity facts and its confidence (the rule in
:mod:`.records.confidence`). Windows are named and may nest or overlap, because each keeps its own starting reading
(the Zeus way). Nothing here knows what a model is.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from pytest_aienergyscore.records.confidence import window_confidence
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement, MeterInfo

IDLE_WINDOW = "__idle__"


class MeterUnavailable(RuntimeError):
    """This meter cannot work here; the message says why in one line (and how to fix it when that is possible)."""


class WindowError(RuntimeError):
    """A window was ended without being begun, or begun twice under one name."""


@dataclass(frozen=True)
class Reading:
    """Cumulative energy per device at one instant. ``resets`` counts counter resets seen so far."""

    monotonic: float
    wall: float
    joules: dict[str, float]
    resets: int = 0


class Meter(ABC):
    """Base of all meters. Subclasses set the class attributes and implement :meth:`read`."""

    name: str = "meter"
    kind: str = "measured"
    counter_period_s: float = 0.001
    # Whose CPU energy the figures hold: "process" (this process and its reaped children), "machine" (every process
    # on the machine), or None when the meter reads no CPU. Reports word the scope from it, never from a guess.
    cpu_scope: str | None = None

    def __init__(self) -> None:
        self._open: dict[str, Reading] = {}
        self.reason = ""

    # -- what subclasses provide -------------------------------------------------------------------------------
    @abstractmethod
    def read(self) -> Reading:
        """Read every metered device's cumulative energy (J), handling the counter's wrap-around."""

    @abstractmethod
    def device_scopes(self) -> dict[str, str]:
        """Device key -> scope (gpu, cpu or ram)."""

    def synchronize(self) -> None:  # noqa: B027 - optional hook, most meters need nothing
        """Wait for queued device work so that a read covers it (GPU meters)."""

    def device_facts(self) -> tuple[dict[str, Any], ...]:
        """Static facts about each metered device (name, driver, power limit...)."""
        return tuple({"device": key, "scope": scope} for key, scope in self.device_scopes().items())

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the meter holds (library handles, sampler threads)."""

    def scope_description(self) -> str:
        """What the figures cover, in words for the reports: a machine-wide counter must never read as per-process."""
        scopes = sorted(set(self.device_scopes().values()))
        return f"{' and '.join(scopes) or 'no'} energy of {', '.join(self.device_scopes()) or 'no device'}"

    def survey_gpus(self, idle_seconds: float) -> list[dict[str, Any]]:
        """Each metered GPU's state before the first benchmark (see gpu_state.py); meters without GPUs have none."""
        return []

    def validate_window(self, start: Reading, end: Reading) -> list[str]:
        """Reasons, beyond a counter going backwards or resetting, why the window between two reads is unusable.

        Remote meters know things the local counters cannot tell (a stale or missing sample); each reason returned
        here makes the window invalid and is kept in its warnings. Local meters have none.
        """
        return []

    # -- windows ---------------------------------------------------------------------------------------------
    def info(self) -> MeterInfo:
        return MeterInfo(
            name=self.name,
            kind=self.kind,
            reason=self.reason,
            devices=self.device_facts(),
            counter_period_s=self.counter_period_s,
            details={"energy_scope": self.scope_description(), "cpu_scope": self.cpu_scope},
        )

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise WindowError(f"energy window {name!r} is already open")
        self.synchronize()
        self._open[name] = self.read()

    def end_window(self, name: str) -> Measurement:
        try:
            start = self._open.pop(name)
        except KeyError:
            raise WindowError(f"energy window {name!r} was never begun") from None
        self.synchronize()
        end = self.read()
        return self._measurement(name, start, end)

    def cancel_window(self, name: str) -> None:
        """Forget an open window (its code raised); nothing is recorded for it."""
        self._open.pop(name, None)

    def open_windows(self) -> tuple[str, ...]:
        return tuple(self._open)

    def _measurement(self, name: str, start: Reading, end: Reading) -> Measurement:
        duration = max(end.monotonic - start.monotonic, 0.0)
        scopes = self.device_scopes()
        warnings: list[str] = []
        valid = True
        devices = []
        for key, scope in scopes.items():
            joules = end.joules.get(key, 0.0) - start.joules.get(key, 0.0)
            if joules < 0:
                valid = False
                warnings.append(f"{key}: counter went backwards by {-joules:.3f} J; energy not usable")
                joules = 0.0
            devices.append(DeviceEnergy(device=key, scope=scope, joules=joules, kind=self.kind, meter=self.name))
        if end.resets != start.resets:
            valid = False
            warnings.append(f"{self.name} counter was reset during the window (driver or exporter restart)")
        problems = self.validate_window(start, end)
        if problems:
            valid = False
            warnings.extend(problems)
        confidence, short = window_confidence(duration, self.counter_period_s, self.name)
        if short:
            warnings.append(short)
        return Measurement(
            name=name,
            meter=self.name,
            kind=self.kind,
            duration_s=duration,
            devices=tuple(devices),
            started_at=start.wall,
            counter_period_s=self.counter_period_s,
            confidence=confidence,
            valid=valid,
            warnings=tuple(warnings),
        )

    def idle_window(self, seconds: float) -> Measurement:
        """One window over ``seconds`` in which this process only sleeps; its validity says whether to trust it."""
        self.begin_window(IDLE_WINDOW)
        try:
            time.sleep(seconds)
        except BaseException:
            self.cancel_window(IDLE_WINDOW)
            raise
        return self.end_window(IDLE_WINDOW)

    def measure_idle(self, seconds: float) -> dict[str, float]:
        """Average power (W) per device while this process sleeps: reported beside results, never subtracted.

        Empty when the idle window is unusable (a stalled or reset counter): no idle figure beats a wrong one.
        """
        m = self.idle_window(seconds)
        if not m.valid or m.duration_s <= 0:
            return {}
        return {d.device: d.joules / m.duration_s for d in m.devices}


def now() -> tuple[float, float]:
    """(monotonic, wall) timestamps taken together."""
    return time.perf_counter(), time.time()
