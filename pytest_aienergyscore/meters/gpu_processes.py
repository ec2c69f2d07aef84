"""Which processes hold each GPU, from NVML's lists of running processes.

Why: a GPU meter says how much energy a GPU used, not whose work it was. Knowing which processes hold each GPU lets a
benchmark meter exactly the GPUs a local server runs on, and lets a session say when another process shares a
metered GPU. Three facts of NVML shape this module:

- NVML numbers GPUs in PCI order and ignores ``CUDA_VISIBLE_DEVICES``, so every GPU is named by its UUID and by the
  CUDA ordinal this process sees it under, through the NVML meter's own mapping (None when CUDA hides the GPU here).
- A GPU's processes come in two lists, compute (CUDA) and graphics; a process doing both is in both. Some GPUs or
  configurations (MIG, old drivers) cannot list them: that GPU says why instead of claiming it is free.
- The driver knows no PID namespaces: it reports the host's pids. Inside a container with its own PID namespace those
  pids are not this machine's processes, which :func:`foreign_pids` tells, so that nobody matches them by accident.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pytest_aienergyscore.meters.nvml import _text, _torch_uuid, visible_nvml_indices

NVML_METERS = ("nvml", "nvml-power")  # the meters that read this machine's GPUs through NVML
_QUERIES = (("compute", "nvmlDeviceGetComputeRunningProcesses"), ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"))


@dataclass(frozen=True)
class GpuProcesses:
    """The processes holding one GPU: pids (NVML's, i.e. the host's), each pid's GPU memory in bytes (None where the
    driver cannot tell), and ``unreadable`` saying why the list is missing or partial (then ``pids`` is not all)."""

    nvml_index: int
    uuid: str
    ordinal: int | None
    pids: tuple[int, ...] = ()
    memory: Mapping[int, int | None] = field(default_factory=dict)
    unreadable: str | None = None

    @property
    def device(self) -> str:
        """The name the meters give this GPU (``cuda:N``), or its UUID when CUDA hides it from this process."""
        return f"cuda:{self.ordinal}" if self.ordinal is not None else self.uuid

    def to_dict(self) -> dict[str, Any]:
        return {"cuda": self.ordinal, "uuid": self.uuid, "pids": list(self.pids), "unreadable": self.unreadable}


def gpu_pids(nvml: ModuleType, env: Mapping[str, str] | None = None) -> list[GpuProcesses]:
    """Every GPU NVML sees (NVML order), with the pids holding it; ``nvml`` is an initialised pynvml module."""
    ordinals = cuda_ordinals(nvml, env)
    found = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        memory, unreadable = running_processes(nvml, handle)
        found.append(GpuProcesses(index, uuid, ordinals.get(uuid), tuple(sorted(memory)), memory, unreadable))
    return found


def cuda_ordinals(nvml: ModuleType, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """UUID -> CUDA ordinal for the GPUs this process can use, mapped as NvmlMeter maps them (torch's own UUID for
    an ordinal once torch started CUDA, else the CUDA_VISIBLE_DEVICES rules), so both name a GPU alike."""
    visible = visible_nvml_indices(nvml, dict(os.environ) if env is None else dict(env))
    ordinals: dict[str, int] = {}
    for ordinal, index in enumerate(visible):
        uuid = _torch_uuid(ordinal) or _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))
        ordinals[uuid] = ordinal
    return ordinals


def running_processes(
    nvml: ModuleType, handle: Any, kinds: Sequence[str] = ("compute", "graphics")
) -> tuple[dict[int, int | None], str | None]:
    """pid -> GPU memory over the asked lists; the reason a list could not be read, if one could not."""
    memory: dict[int, int | None] = {}
    problems = []
    for kind, query in _QUERIES:
        if kind not in kinds:
            continue
        getter = getattr(nvml, query, None)
        if getter is None:
            problems.append(f"this pynvml has no {query}")
            continue
        try:
            processes = getter(handle)
        except nvml.NVMLError as err:
            problems.append(f"NVML cannot list {kind} processes: {err}")
            continue
        for process in processes:
            pid, used = int(process.pid), getattr(process, "usedGpuMemory", None)
            if used is None:
                memory.setdefault(pid, None)
            else:  # in both lists: the larger figure (the driver reports the same allocation in each)
                memory[pid] = max(int(used), memory.get(pid) or 0)
    return memory, "; ".join(problems) or None


def gpus_held_by(gpus: Iterable[GpuProcesses], pids: Iterable[int]) -> list[GpuProcesses]:
    """The GPUs that any of ``pids`` holds, in NVML order."""
    wanted = set(pids)
    return [gpu for gpu in gpus if wanted.intersection(gpu.pids)]


def foreign_pids(gpus: Iterable[GpuProcesses], exists: Any = None) -> set[int]:
    """The pids NVML lists that are no process of this machine's PID namespace: their owners cannot be told here
    (a container without ``--pid=host``), so a GPU holding one may be anyone's."""
    if exists is None:
        import psutil

        exists = psutil.pid_exists
    return {pid for gpu in gpus for pid in gpu.pids if not exists(pid)}


def metered_gpus_differ(used: Sequence[Mapping[str, Any]], meter_info: Mapping[str, Any], user: str) -> str | None:
    """One line when an NVML meter meters other GPUs than ``user`` runs on; None when the sets agree or the meter
    reads no GPU of this machine through NVML.

    ``used`` holds ``{"cuda": ordinal or None, "uuid": ...}`` per GPU (``GpuProcesses.to_dict``); ``meter_info`` is the
    meter's ``info().to_dict()``. GPUs are compared by UUID, which NVML and CUDA agree on whatever the ordinals.
    """
    if meter_info.get("name") not in NVML_METERS:
        return None
    metered = [d for d in meter_info.get("devices", ()) if d.get("scope") == "gpu"]
    if all(d.get("uuid") for d in metered):
        same = {d["uuid"] for d in metered} == {g.get("uuid") for g in used}
    else:  # NVML gave no UUID for a metered GPU: the ordinals are all there is to compare
        same = {d.get("device") for d in metered} == {f"cuda:{g.get('cuda')}" for g in used}
    if same:
        return None
    runs_on = "[" + ", ".join(str(g["cuda"]) if g.get("cuda") is not None else str(g.get("uuid")) for g in used) + "]"
    meters = "[" + ", ".join(str(d.get("device", "?")).removeprefix("cuda:") for d in metered) + "]"
    hidden = [str(g.get("uuid")) for g in used if g.get("cuda") is None]
    if hidden:
        shown = ", ".join(hidden)
        advice = f"make {shown} visible to this process (CUDA_VISIBLE_DEVICES), then pass them to --energy-gpus"
    else:
        advice = f"pass --energy-gpus {','.join(str(g['cuda']) for g in used)}"
    return f"{user} runs on GPUs {runs_on}; --energy-gpus meters {meters}; {advice}"
