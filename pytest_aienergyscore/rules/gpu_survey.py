"""What the survey of the metered GPUs (taken by :mod:`.meters.gpu_state` before the first benchmark) means for a
result: why it is not comparable (a shared, MIG-split or power-capped GPU), and the idle power reported beside it.

Why here and not with the survey: these are comparability rules, read from the facts a record already holds, and
rules sit below meters (a report or the comparability check must judge a stored record without loading any meter).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

UNKNOWN = "unknown"  # a fact the GPU or the driver would not tell; alone it never makes a result not comparable
POWER_LIMIT_TOLERANCE_W = 1.0  # a limit within a watt of the default is the default, set back and rounded


def survey_reasons(state: Iterable[Mapping[str, Any]], workload_pids: Collection[int] = ()) -> list[str]:
    """Why the surveyed GPUs make a result not comparable: shared, MIG-split, or power-capped below the default.

    ``workload_pids`` are processes that are the benchmark's own workload although not this process's children (a
    local inference server the backend talks to); they are not "another process".
    """
    reasons: list[str] = []
    for gpu in state:
        device = gpu.get("device", "a GPU")
        others = gpu.get("other_processes")
        if isinstance(others, list):
            foreign = [p for p in others if p.get("pid") not in workload_pids]
            if foreign:
                reasons.append(
                    f"{device} was shared: other compute processes on it before the first benchmark: "
                    + ", ".join(_describe_process(p) for p in foreign)
                )
        if gpu.get("mig_mode") == "enabled":
            reasons.append(f"{device} is in MIG mode: the leaderboard's GPUs are whole GPUs")
        limit, default = _watts(gpu.get("power_limit_w")), _watts(gpu.get("default_power_limit_w"))
        if limit is not None and default is not None and limit < default - POWER_LIMIT_TOLERANCE_W:
            reasons.append(f"{device} power limit is {limit:g} W, below its default of {default:g} W")
    return reasons


def idle_watts(state: Iterable[Mapping[str, Any]]) -> dict[str, float | str]:
    """Idle power per surveyed GPU, for the summary beside the results ("unknown" where it could not be measured)."""
    return {str(gpu.get("device")): gpu.get("idle_power_w", UNKNOWN) for gpu in state}


def _describe_process(process: Mapping[str, Any]) -> str:
    details = [str(process.get("name") or "name unknown")]
    if process.get("used_memory_mib") is not None:
        details.append(f"{process['used_memory_mib']:g} MiB")
    if process.get("note"):
        details.append(str(process["note"]))
    return f"pid {process.get('pid')} ({', '.join(details)})"


def _watts(value: Any) -> float | None:
    """A measured number of watts, or None for "unknown" (or anything else that is not a number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
