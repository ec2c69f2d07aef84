"""The state of each metered GPU, surveyed once before the first benchmark: who else computes on it, MIG mode, power
limit against its default, and idle power.

Why: NVML's counter is the whole GPU's. Another process computing on it adds its energy to ours; a power limit below
the default or a MIG slice makes the GPU draw less than the leaderboard's GPUs do. Such a result is still the user's
own measurement, but not comparable with the leaderboard, and :func:`.rules.gpu_survey.survey_reasons` says why (a
comparability rule, so it lives with the rules; this module only gathers the facts). Idle power is recorded
beside the results (never subtracted) so that a reader can tell how much of a figure a resting GPU would draw anyway.

Every NVML query may be unsupported by a GPU or a driver (``NVMLError_NotSupported``) or refused (a container without
the rights): the fact is then recorded as :data:`UNKNOWN`, with why, and an unknown fact alone never makes a result
not comparable. Nothing here knows what a model is.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from types import ModuleType
from typing import Any

from pytest_aienergyscore.meters.base import Meter
from pytest_aienergyscore.meters.gpu_processes import running_processes
from pytest_aienergyscore.rules.gpu_survey import UNKNOWN

IDLE_SECONDS = 3.0  # a GPU's idle draw settles within a few of its 100 ms counter updates; 30 of them average well
MIB = 1024 * 1024


def survey(meter: Meter, nvml: ModuleType, handles: Mapping[str, Any], idle_seconds: float) -> list[dict[str, Any]]:
    """One entry per metered GPU (key -> NVML handle): identity, other processes, MIG, power limits, idle power.

    The processes are listed before the idle window, so that the idle power of a shared GPU is known to be shared.
    """
    own = own_pids()
    entries = [_static_state(nvml, key, handle, own) for key, handle in handles.items()]
    try:
        idle, problem = idle_power(meter, idle_seconds)
    except nvml.NVMLError as err:  # the GPU stopped answering: the benchmark's own reads will say so in one line
        idle, problem = {}, f"NVML: {err}"
    for entry in entries:
        entry["idle_seconds"] = idle_seconds
        entry["idle_power_w"] = idle.get(entry["device"], UNKNOWN)
        if entry["idle_power_w"] == UNKNOWN:
            entry.setdefault("unknown_because", {})["idle_power_w"] = problem or "no idle reading"
    return entries


def idle_power(meter: Meter, seconds: float) -> tuple[dict[str, float], str]:
    """Mean power (W) per device over an idle window of the meter's own counter, or ({}, why) when it is unusable."""
    window = meter.idle_window(seconds)
    if not window.valid:
        return {}, "; ".join(window.warnings)
    if window.duration_s <= 0:
        return {}, "the idle window took no time"
    return {d.device: d.joules / window.duration_s for d in window.devices}, ""


def own_pids() -> set[int]:
    """This process and its descendants (a backend's worker, say): their GPU use is the benchmark's, not another's."""
    pids = {os.getpid()}
    try:
        import psutil

        pids.update(child.pid for child in psutil.Process().children(recursive=True))
    except Exception:  # psutil missing or /proc unreadable: this process alone is still right
        pass
    return pids


def _static_state(nvml: ModuleType, key: str, handle: Any, own: Collection[int]) -> dict[str, Any]:
    """The facts that need no waiting; each query on its own, so that one unsupported call hides no other fact."""
    entry: dict[str, Any] = {"device": key}
    unknown: dict[str, str] = {}
    for field, value in (
        ("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
        ("name", lambda: _text(nvml.nvmlDeviceGetName(handle))),
        ("other_processes", lambda: other_processes(nvml, handle, own)),
        ("mig_mode", lambda: _mig_mode(nvml, handle)),
        ("power_limit_w", lambda: int(nvml.nvmlDeviceGetPowerManagementLimit(handle)) / 1000.0),
        ("default_power_limit_w", lambda: int(nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)) / 1000.0),
    ):
        entry[field], why = _ask(nvml, value)
        if why:
            unknown[field] = why
    if unknown:
        entry["unknown_because"] = unknown
    return entry


def _ask(nvml: ModuleType, query: Any) -> tuple[Any, str]:
    """(answer, "") or (UNKNOWN, NVML's reason): an unsupported query is a fact about the GPU, not an error."""
    try:
        return query(), ""
    except nvml.NVMLError as err:
        return UNKNOWN, f"NVML: {err}"
    except AttributeError as err:  # a pynvml too old to have the call
        return UNKNOWN, f"pynvml has no {err.name or 'such call'}"
    except ProcessesUnreadable as err:
        return UNKNOWN, str(err)


class ProcessesUnreadable(RuntimeError):
    """NVML could list no process of the GPU (unsupported, or an old pynvml): the fact is unknown, not "none"."""


def other_processes(nvml: ModuleType, handle: Any, own: Collection[int]) -> list[dict[str, Any]]:
    """Compute processes on the GPU (read by the function the vllm backend uses) that are not this process or its
    descendants: pid, name, GPU memory (MiB). A display server draws, it does not share the benchmark's compute."""
    memory, problem = running_processes(nvml, handle, kinds=("compute",))
    if problem and not memory:
        raise ProcessesUnreadable(problem)
    found = []
    for pid, used in memory.items():
        if pid in own:
            continue
        entry = {
            "pid": pid,
            "name": _process_name(nvml, pid),
            "used_memory_mib": round(int(used) / MIB, 1) if used is not None else None,
        }
        if not _exists_here(pid):  # the driver reports the host's pids: from a container, anyone's (even ours)
            entry["note"] = "not a process of this PID namespace (a container?): its owner cannot be told"
        found.append(entry)
    return found


def _exists_here(pid: int) -> bool:
    try:
        import psutil

        return bool(psutil.pid_exists(pid))
    except Exception:  # psutil missing: assume it is, rather than add a note that may be wrong
        return True


def _process_name(nvml: ModuleType, pid: int) -> str | None:
    """NVML's name for the pid (it also knows processes outside this PID namespace), else the OS's, else None."""
    try:
        return _text(nvml.nvmlSystemGetProcessName(pid)) or None
    except Exception:
        pass
    try:
        import psutil

        return str(psutil.Process(pid).name())
    except Exception:
        return None


def _mig_mode(nvml: ModuleType, handle: Any) -> str:
    current = nvml.nvmlDeviceGetMigMode(handle)[0]
    return "enabled" if int(current) == int(getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)) else "disabled"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
