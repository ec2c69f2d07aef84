"""Inside the optimum worker: which GPUs codecarbon read, and which GPUs the model ran on, by NVML UUID.

The plugin accepts codecarbon's GPU figure as NVML's counter only when these are the same GPUs (see
:mod:`.gpu`). This module runs in optimum-benchmark's environment beside :mod:`.worker`: the
standard library at module level, torch and pynvml (both there) inside the functions, nothing else of the plugin.
"""

from __future__ import annotations

import os
from typing import Any


def note_model_devices(scenario_class: Any, devices: list[str]) -> None:
    """Wrap model loading so the devices the model's weights landed on are noted after its window has closed."""
    original = scenario_class.run_model_loading_tracking

    def load_and_note(self: Any) -> None:
        original(self)
        devices.extend(model_devices(getattr(self.backend, "pretrained_model", None)))

    scenario_class.run_model_loading_tracking = load_and_note


def model_devices(model: Any) -> list[str]:
    """The CUDA devices a loaded model's weights are on: every parameter's (a model split over GPUs has several), or
    a diffusers pipeline's ``device``."""
    found: set[str] = set()
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        found.update(str(p.device) for p in parameters())
    elif getattr(model, "device", None) is not None:
        found.add(str(model.device))
    return sorted(device for device in found if device.startswith("cuda"))


def gpu_facts(trackers: list[Any], devices: list[str]) -> dict[str, Any]:
    """Which GPUs codecarbon read and which the model ran on, by UUID. A fact that cannot be read becomes a
    ``problem`` line (the plugin then refuses the GPU figure, naming the guard), never a failed benchmark."""
    facts: dict[str, Any] = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "model_devices": devices}
    problems = []
    try:
        facts.update(codecarbon_gpus(trackers))
    except Exception as err:  # codecarbon's internals moved: say so, the plugin refuses what it cannot trace
        problems.append(f"which GPUs codecarbon read: {type(err).__name__}: {err}")
    try:
        facts["model_uuids"] = sorted({cuda_uuid(device) for device in devices})
    except Exception as err:
        problems.append(f"which GPU the model ran on: {type(err).__name__}: {err}")
    if not devices:
        problems.append("no model weights were found on a CUDA device")
    if problems:
        facts["problem"] = "; ".join(problems)
    return facts


def codecarbon_gpus(trackers: list[Any]) -> dict[str, Any]:
    """The UUIDs of the NVML handles codecarbon's GPU hardware read its counters from, and whether it averaged power
    samples instead (a GPU without the counter). Its GPU ids are NVML indices, which ignore CUDA_VISIBLE_DEVICES,
    so the handle it holds, not an index mapped by us, says which GPU it read."""
    import pynvml

    tracked = []
    hardware = getattr(trackers[-1], "_hardware", []) if trackers else []
    for item in (h for h in hardware if type(h).__name__ == "GPU"):
        wanted = set(item._get_gpu_ids())
        for device in item.devices.devices:
            if device.gpu_index in wanted:
                tracked.append(
                    {
                        "nvml_index": device.gpu_index,
                        "uuid": _text(pynvml.nvmlDeviceGetUUID(device.handle)),
                        "power_fallback": bool(getattr(device, "_use_power_fallback", False)),
                    }
                )
    return {
        "codecarbon_gpus": tracked,
        "tracked_uuids": sorted(t["uuid"] for t in tracked),
        "power_fallback": [t["power_fallback"] for t in tracked],
    }


def cuda_uuid(device: str) -> str:
    """The NVML UUID of a CUDA device of this process: torch's own answer, else its ordinal mapped through
    CUDA_VISIBLE_DEVICES (optimum-benchmark sets it with CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML's order)."""
    import torch

    index = int(device.partition(":")[2] or torch.cuda.current_device())
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    return visible_uuid(index, os.environ.get("CUDA_VISIBLE_DEVICES"))


def visible_uuid(index: int, visible: str | None) -> str:
    """NVML's UUID of CUDA ordinal ``index`` under CUDA_VISIBLE_DEVICES (indices in PCI order, or UUID prefixes)."""
    import pynvml

    pynvml.nvmlInit()
    count = int(pynvml.nvmlDeviceGetCount())
    uuids = [_text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    entries = (
        [e.strip() for e in visible.split(",") if e.strip()] if visible is not None else list(map(str, range(count)))
    )
    if index >= len(entries):
        raise LookupError(f"CUDA device {index} is not among CUDA_VISIBLE_DEVICES={visible}")
    entry = entries[index]
    if entry.isdigit():
        if int(entry) >= count:
            raise LookupError(f"CUDA_VISIBLE_DEVICES entry {entry} is past NVML's {count} GPUs")
        return uuids[int(entry)]
    matches = [u for u in uuids if u.startswith(entry) or u[4:].startswith(entry)]
    if len(matches) != 1:
        raise LookupError(f"CUDA_VISIBLE_DEVICES entry {entry!r} names {len(matches)} GPUs")
    return matches[0]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
