"""An energy *estimate* for machines with no energy counter: busy CPU time multiplied by a stated per-core wattage.

It is never a measurement and every figure it produces says so (``kind="estimate"``). Two scopes:
``process`` counts this process's CPU time and that of its waited-for children (precise, from ``getrusage``);
``machine`` counts every process's busy CPU time (``/proc/stat`` via psutil, 10 ms ticks), for work done by another
process such as a local inference server.
"""

from __future__ import annotations

import resource

from pytest_aienergyscore.meters.base import Meter, Reading, now


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_cpu_seconds() -> float:
    """Busy (non-idle, non-iowait) CPU seconds of the whole machine, summed over cores."""
    import psutil

    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    # guest time is already counted in user time on Linux
    busy -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return float(busy)


class EstimateMeter(Meter):
    """CPU time x watts per core. Labelled ``estimate`` everywhere; good for relative comparisons on one machine."""

    name = "estimate"
    kind = "estimate"

    def __init__(self, watts_per_core: float = 10.0, scope: str = "process") -> None:
        super().__init__()
        if scope not in ("process", "machine"):
            raise ValueError(f"estimate meter scope {scope!r}: allowed process, machine")
        self.watts_per_core = watts_per_core
        self.scope = scope
        self.cpu_scope = scope
        self._cpu_seconds = process_cpu_seconds if scope == "process" else machine_cpu_seconds
        # getrusage has microsecond resolution; /proc/stat counts 10 ms ticks.
        self.counter_period_s = 0.001 if scope == "process" else 0.01
        self._key = "cpu" if scope == "process" else "cpu-machine"

    def read(self) -> Reading:
        mono, wall = now()
        return Reading(mono, wall, {self._key: self._cpu_seconds() * self.watts_per_core})

    def device_scopes(self) -> dict[str, str]:
        return {self._key: "cpu"}

    def scope_description(self) -> str:
        if self.scope == "machine":
            return (
                f"estimated CPU energy of the whole machine: every process's busy CPU time x "
                f"{self.watts_per_core:g} W per core, not only the benchmark's"
            )
        return (
            f"estimated CPU energy of this pytest process and the child processes it waited for: their CPU time x "
            f"{self.watts_per_core:g} W per core"
        )

    def device_facts(self) -> tuple[dict[str, object], ...]:
        return (
            {
                "device": self._key,
                "scope": "cpu",
                "method": f"{self.scope} CPU time x {self.watts_per_core:g} W per busy core",
                "watts_per_core": self.watts_per_core,
                "cpu_scope": self.scope,
            },
        )
