"""codecarbon's GPU figure as the optimum backend accepts it, and our own NVML reading that cross-checks it.

optimum-benchmark meters each phase with codecarbon, whose GPU energy is the delta of NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) on the GPUs it tracks, with the device synchronised around each window:
the counter our own NVML meter reads, and the leaderboard's own method. So it is accepted as a counter measurement
(meter ``codecarbon-nvml``), but only behind guards, each of which, when it fails, makes the window invalid with a
warning naming it:

- *same GPU*: the GPU codecarbon tracked is the GPU the model ran on, by NVML UUID (the worker reports both);
- *above zero*: a window of a second or more has GPU energy above zero (a GPU draws tens of watts at idle, so zero
  means nothing was read);
- *version recorded*: codecarbon's version is in the record, so the figure can be traced to a known method.

Where codecarbon averaged power samples instead of reading the counter (a GPU without it), the figure is still
recorded but named ``codecarbon-nvml-power``, as our own meter names its fallback ``nvml-power``.

The cross-check (:func:`gpu_cross_check`) compares codecarbon's windows with the counter as this process reads it
right before the worker starts and right after it exits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_aienergyscore.meters import MeterUnavailable
from pytest_aienergyscore.records.figures import JOULES_PER_WH

JOULES_PER_KWH = JOULES_PER_WH * 1000.0
COUNTER_METER = "codecarbon-nvml"
POWER_METER = "codecarbon-nvml-power"
COUNTER_PERIOD_S = 0.1  # NVML's energy counter updates about every 100 ms
GUARDED_WINDOW_S = 1.0  # windows at least this long must show GPU energy above zero
CROSS_CHECK_TOLERANCE = 0.05


@dataclass(frozen=True)
class CounterRead:
    """NVML's energy counter (mJ) and power limit (W) of every GPU that has the counter, by UUID, at one instant."""

    at: float
    millijoules: Mapping[str, int]
    power_limit_w: Mapping[str, float | None]


@dataclass(frozen=True)
class CounterSpan:
    """Our reading of NVML's counter around the whole worker, per GPU UUID; ``problem`` says why there is none."""

    joules: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    power_limit_w: Mapping[str, float | None] = field(default_factory=dict)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": dict(self.joules),
            "duration_s": self.duration_s,
            "power_limit_w": dict(self.power_limit_w),
            "problem": self.problem,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpu_counters() -> CounterRead:
    """Every GPU's counter, by UUID. The worker chooses its GPU itself (optimum-benchmark sets CUDA_VISIBLE_DEVICES
    from its device ids), so all are read before it starts and the ones it used are picked afterwards by UUID, which
    no ordinal mapping can get wrong. MeterUnavailable when NVML cannot be read here."""
    from pytest_aienergyscore.meters.nvml import load_pynvml

    nvml = load_pynvml()
    counters: dict[str, int] = {}
    limits: dict[str, float | None] = {}
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        try:
            counters[uuid] = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError:
            continue  # no counter (older than Volta): nothing on this GPU to cross-check with
        try:
            limits[uuid] = int(nvml.nvmlDeviceGetPowerManagementLimit(handle)) / 1000.0
        except nvml.NVMLError:
            limits[uuid] = None
    return CounterRead(time.perf_counter(), counters, limits)


def read_counters_or_why() -> CounterRead | str:
    """The counters, or in one line why they cannot be read: the cross-check is lost then, never the benchmark."""
    try:
        return read_gpu_counters()
    except MeterUnavailable as err:
        return str(err)
    except Exception as err:  # an NVML call failing half-way (a GPU fell off the bus): the same
        return f"NVML could not be read: {type(err).__name__}: {err}"


def counter_span(before: CounterRead | str, after: CounterRead | str) -> CounterSpan:
    """Energy per GPU between two reads; a counter that went backwards (a driver reload) gives no figure."""
    if isinstance(before, str) or isinstance(after, str):
        return CounterSpan(problem=before if isinstance(before, str) else str(after))
    joules, problems = {}, []
    for uuid, start in before.millijoules.items():
        end = after.millijoules.get(uuid)
        if end is None:
            continue
        if end < start:
            problems.append(f"the counter of {uuid} went backwards (driver reload?)")
            continue
        joules[uuid] = (end - start) / 1000.0
    return CounterSpan(joules, after.at - before.at, dict(before.power_limit_w), "; ".join(problems) or None)


# -- guards ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuAcceptance:
    """How codecarbon's GPU figure of one worker run is recorded: the meter's name and the run-wide guard failures
    (each makes every GPU window of the run invalid). The above-zero guard is per window: :func:`window_problems`."""

    meter: str = COUNTER_METER
    problems: tuple[str, ...] = ()


def accept_codecarbon_gpu(result: Mapping[str, Any]) -> GpuAcceptance:
    """The run-wide guards, from what the worker reported (``worker_result.json``)."""
    problems = []
    if not (result.get("versions") or {}).get("codecarbon"):
        problems.append(
            "GPU energy not accepted (guard: codecarbon version recorded): the worker did not report codecarbon's "
            "version, so the figure cannot be traced to a known method"
        )
    facts = result.get("gpu") or {}
    tracked = sorted(facts.get("tracked_uuids") or [])
    model = sorted(facts.get("model_uuids") or [])
    if not model:
        why = facts.get("problem") or "the worker did not report it"
        problems.append(
            f"GPU energy not accepted (guard: same GPU by UUID): cannot tell which GPU the model ran on ({why})"
        )
    elif not tracked:
        why = f" ({facts['problem']})" if facts.get("problem") else ""
        problems.append(
            f"GPU energy not accepted (guard: same GPU by UUID): codecarbon tracked no GPU{why}, the model ran on "
            f"{', '.join(model)}"
        )
    elif tracked != model:
        problems.append(
            f"GPU energy not accepted (guard: same GPU by UUID): codecarbon tracked {', '.join(tracked)}, the model "
            f"ran on {', '.join(model)}"
        )
    meter = POWER_METER if any(facts.get("power_fallback") or ()) else COUNTER_METER
    return GpuAcceptance(meter, tuple(problems))


def window_problems(gpu_joules: float, duration_s: float) -> list[str]:
    """The above-zero guard of one window."""
    if duration_s >= GUARDED_WINDOW_S and gpu_joules <= 0:
        return [
            f"GPU energy not accepted (guard: above zero): codecarbon read {gpu_joules:.4g} J over a "
            f"{duration_s:.2f} s window, where a GPU draws tens of watts even at idle"
        ]
    return []


# -- the cross-check -------------------------------------------------------------------------------------------------


def gpu_cross_check(
    span: CounterSpan | None,
    result: Mapping[str, Any],
    codecarbon: Mapping[str, Mapping[str, Any]],
    phase_windows: Sequence[str],
) -> dict[str, Any] | None:
    """codecarbon's GPU windows beside our own reading of the same counter around the whole worker, both recorded.

    What can honestly be compared. codecarbon reads NVML's counter on the GPUs it tracked, in windows that lie inside
    our reading and do not overlap (load_dataset, preprocess_dataset, load_model, then the metered passes); we read
    the same counters of the same GPUs (by UUID) right before the worker starts and right after it exits. Ours also
    holds what no window does: the interpreter's and CUDA's start-up, the unmetered warm-up, the gaps between
    windows and the exit, so ours being larger is expected and proves nothing by itself. Two things must hold:

    1. the windows together hold no more than ours: a sum of ALL codecarbon windows (hence also of the metered
       phases) above ours counts energy that was never spent on those GPUs;
    2. what ours holds beyond the windows was spent in the time outside them, so it is at most that time at the
       GPUs' power limit: more means codecarbon's windows missed energy that was spent (skipped when NVML gives no
       power limit).

    Each is allowed 5 % of our reading plus the counter's granularity: every edge of every codecarbon window may be
    one update (about 100 ms) of that window's average power off, independently, so in quadrature. Ours is read
    while no worker runs, the GPU near idle, where one update is a few joules: inside the 5 %. Beyond the allowance
    the two disagree, and the caller records a warning. None for a run without GPU energy.
    """
    if span is None:
        return None
    facts = result.get("gpu") or {}
    gpus = sorted(facts.get("tracked_uuids") or facts.get("model_uuids") or [])
    if span.problem and not span.joules:
        return {"meter": "nvml", "skipped": f"our NVML reading around the worker failed: {span.problem}"}
    missing = [uuid for uuid in gpus if uuid not in span.joules]
    if not gpus or missing:
        why = f"{', '.join(missing)} not among the GPUs we read" if gpus else "the worker named no tracked GPU"
        return {"meter": "nvml", "skipped": f"no reading of ours to compare: {why}"}
    windows = {
        name: {"j": float(data.get("gpu_energy") or 0.0) * JOULES_PER_KWH, "s": float(data.get("duration") or 0.0)}
        for name, data in codecarbon.items()
    }
    ours_j = sum(span.joules[uuid] for uuid in gpus)
    windows_j = sum(w["j"] for w in windows.values())
    windows_s = sum(w["s"] for w in windows.values())
    outside_s = max(span.duration_s - windows_s, 0.0)
    limits = [span.power_limit_w.get(uuid) for uuid in gpus]
    limit_w = sum(v for v in limits if v is not None) if all(v is not None for v in limits) else None
    allowance = CROSS_CHECK_TOLERANCE * ours_j + _edge_uncertainty_j(windows.values())
    check = {
        "meter": "nvml",
        "gpus": gpus,
        "ours_j": ours_j,
        "ours_s": span.duration_s,
        "codecarbon_windows": windows,
        "codecarbon_windows_j": windows_j,
        "codecarbon_phases_j": sum(windows[name]["j"] for name in phase_windows if name in windows),
        "outside_windows_j": ours_j - windows_j,
        "outside_windows_s": outside_s,
        "power_limit_w": limit_w,
        "allowance_j": allowance,
        "disagreement": _disagreement(ours_j, windows_j, outside_s, limit_w, allowance),
    }
    check["agrees"] = check["disagreement"] is None
    return check


def _edge_uncertainty_j(windows: Iterable[Mapping[str, float]]) -> float:
    """One counter update of a window's average power at each of its two edges, every window, in quadrature."""
    edges = [abs(w["j"]) / w["s"] * COUNTER_PERIOD_S for w in windows if w["s"] > 0]
    return math.sqrt(sum(2 * e * e for e in edges))


def _disagreement(ours: float, windows: float, outside_s: float, limit_w: float | None, allowance: float) -> str | None:
    if windows > ours + allowance:
        share = f" ({(windows - ours) / ours:.1%} more)" if ours > 0 else ""
        return (
            f"codecarbon's GPU windows hold {windows:.4g} J, more than our NVML reading over the whole worker "
            f"({ours:.4g} J){share}, beyond the {allowance:.3g} J allowed: energy counted that was not spent"
        )
    if limit_w is not None and ours - windows > limit_w * outside_s + allowance:
        return (
            f"our NVML reading over the whole worker ({ours:.4g} J) exceeds codecarbon's GPU windows ({windows:.4g} J) "
            f"by {ours - windows:.4g} J, more than {outside_s:.1f} s outside them at the {limit_w:g} W power limit "
            f"could spend (+{allowance:.3g} J allowed): the windows missed energy"
        )
    return None


def cross_check_warning(check: Mapping[str, Any] | None) -> str | None:
    """The record's warning for a disagreement, None when they agree or no check was made."""
    if not check or not check.get("disagreement"):
        return None
    return f"GPU cross-check: codecarbon and our NVML reading disagree: {check['disagreement']}"
