"""Energy meters behind one interface, created lazily by name so that unused ones cost no import.

``auto`` tries NVML (a GPU is there), then RAPL (readable CPU counters), then the CPU-time estimate, and records in
``meter.reason`` why it settled where it did; the terminal header prints that reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Meter, MeterUnavailable, Reading, WindowError

__all__ = ["Meter", "MeterUnavailable", "Reading", "WindowError", "create_meter"]


def create_meter(
    name: str,
    gpus: Sequence[int] = (0,),
    cpu_watts: float = 10.0,
    cpu_scope: str = "process",
    *,
    dcgm_urls: Sequence[str] = (),
    dcgm_selector: str | None = None,
    dcgm_max_age_s: float = 30.0,
) -> Meter:
    """The meter called ``name`` (auto, nvml, rapl, estimate or dcgm); MeterUnavailable when a named one cannot work.

    ``auto`` never picks dcgm: reading other machines' GPUs must be asked for, with the URLs to read.
    """
    if name == "nvml":
        from .nvml import NvmlMeter

        meter: Meter = NvmlMeter(gpus)
        meter.reason = "asked for with --energy-meter nvml"
        return meter
    if name == "rapl":
        from .rapl import RaplMeter

        meter = RaplMeter()
        meter.reason = "asked for with --energy-meter rapl"
        return meter
    if name == "estimate":
        from .estimate import EstimateMeter

        meter = EstimateMeter(cpu_watts, cpu_scope)
        meter.reason = "asked for with --energy-meter estimate"
        return meter
    if name == "dcgm":
        from .dcgm import DcgmMeter

        meter = DcgmMeter(dcgm_urls, dcgm_selector, dcgm_max_age_s)
        meter.reason = f"asked for with --energy-meter dcgm: {meter.summary()}"
        return meter
    if name != "auto":
        raise MeterUnavailable(f"unknown energy meter {name!r}; allowed: auto, nvml, rapl, estimate, dcgm")
    return _auto(gpus, cpu_watts, cpu_scope)


def _auto(gpus: Sequence[int], cpu_watts: float, cpu_scope: str) -> Meter:
    why_not: list[str] = []
    for candidate in ("nvml", "rapl"):
        try:
            meter = create_meter(candidate, gpus, cpu_watts, cpu_scope)
        except MeterUnavailable as err:
            why_not.append(f"{candidate}: {err}")
            continue
        meter.reason = "auto: " + ("; ".join([*why_not, f"{candidate} works"]))
        return meter
    meter = create_meter("estimate", gpus, cpu_watts, cpu_scope)
    meter.reason = "auto: " + "; ".join(why_not) + "; falling back to the CPU-time estimate"
    return meter
