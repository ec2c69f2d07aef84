"""Energy meters behind one interface, found by name through the ``pytest_aienergyscore.meters`` entry points.

Each entry point names a factory ``(MeterOptions) -> Meter``; ours (nvml, rapl, estimate, dcgm) are registered in
pyproject.toml the way another package would register its own. A factory imports its meter's module only when
called, so unused meters cost no import.

``auto`` tries NVML (a GPU is there), then RAPL (readable CPU counters), then the CPU-time estimate, and records in
``meter.reason`` why it settled where it did; the terminal header prints that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint

from pytest_aienergyscore.config.registry import METER_ENTRY_POINTS, registered_entry_points
from pytest_aienergyscore.meters.base import Meter, MeterUnavailable, Reading, WindowError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Meter",
    "MeterOptions",
    "MeterUnavailable",
    "Reading",
    "WindowError",
    "create_meter",
    "meter_names",
]

ENTRY_POINT_GROUP = METER_ENTRY_POINTS

MeterFactory = Callable[["MeterOptions"], Meter]


@dataclass(frozen=True)
class MeterOptions:
    """Everything a meter may be built from; each factory takes what it needs (a third party's takes the same)."""

    gpus: Sequence[int] = (0,)
    cpu_watts: float = 10.0
    cpu_scope: str = "process"
    dcgm_urls: Sequence[str] = ()
    dcgm_selector: str | None = None
    dcgm_max_age_s: float = 30.0


# -- our factories, registered in pyproject.toml -------------------------------------------------------------------
def nvml_meter(options: MeterOptions) -> Meter:
    """GPU energy from NVML's counters on the GPUs asked for."""
    from pytest_aienergyscore.meters.nvml import NvmlMeter

    return NvmlMeter(options.gpus)


def rapl_meter(options: MeterOptions) -> Meter:
    """CPU package and DRAM energy from Linux powercap (RAPL)."""
    from pytest_aienergyscore.meters.rapl import RaplMeter

    return RaplMeter()


def estimate_meter(options: MeterOptions) -> Meter:
    """CPU time x watts, where no counter can be read."""
    from pytest_aienergyscore.meters.estimate import EstimateMeter

    return EstimateMeter(options.cpu_watts, options.cpu_scope)


def dcgm_meter(options: MeterOptions) -> Meter:
    """Remote GPUs read from DCGM exporters; its reason says which it reads."""
    from pytest_aienergyscore.meters.dcgm.meter import DcgmMeter

    meter = DcgmMeter(options.dcgm_urls, options.dcgm_selector, options.dcgm_max_age_s)
    meter.reason = f"asked for with --energy-meter dcgm: {meter.summary()}"
    return meter


# -- lookup ----------------------------------------------------------------------------------------------------------
@cache
def _registered() -> dict[str, EntryPoint]:
    """Every registered meter by name, read once per process (metadata only; nothing is imported)."""
    return registered_entry_points(ENTRY_POINT_GROUP)


def meter_names() -> tuple[str, ...]:
    """What ``--energy-meter`` can name: auto, then every registered meter."""
    return ("auto", *sorted(_registered()))


def _factory(name: str) -> MeterFactory:
    entry = _registered().get(name)
    if entry is None:
        raise MeterUnavailable(f"unknown energy meter {name!r}; allowed: {', '.join(meter_names())}")
    try:
        factory = entry.load()
    except Exception as err:  # a third party's broken module: one line, not our traceback
        raise MeterUnavailable(
            f"meter {name!r} ({entry.value}) cannot be imported: {type(err).__name__}: {err}"
        ) from None
    if not callable(factory):
        raise MeterUnavailable(f"meter {name!r} ({entry.value}) is not a factory taking MeterOptions")
    return factory


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
    """The meter called ``name`` (auto or a registered one); MeterUnavailable when a named one cannot work.

    ``auto`` never picks dcgm: reading other machines' GPUs must be asked for, with the URLs to read.
    """
    options = MeterOptions(tuple(gpus), cpu_watts, cpu_scope, tuple(dcgm_urls), dcgm_selector, dcgm_max_age_s)
    if name == "auto":
        return _auto(options)
    return _create(name, options)


def _create(name: str, options: MeterOptions) -> Meter:
    meter = _factory(name)(options)
    if not isinstance(meter, Meter):
        raise MeterUnavailable(
            f"meter {name!r} did not build a pytest_aienergyscore Meter (got {type(meter).__name__})"
        )
    meter.reason = meter.reason or f"asked for with --energy-meter {name}"
    return meter


def _auto(options: MeterOptions) -> Meter:
    why_not: list[str] = []
    for candidate in ("nvml", "rapl"):
        try:
            meter = _create(candidate, options)
        except MeterUnavailable as err:
            why_not.append(f"{candidate}: {err}")
            continue
        meter.reason = "auto: " + ("; ".join([*why_not, f"{candidate} works"]))
        return meter
    meter = _create("estimate", options)
    meter.reason = "auto: " + "; ".join(why_not) + "; falling back to the CPU-time estimate"
    return meter
