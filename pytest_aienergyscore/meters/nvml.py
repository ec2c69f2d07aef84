"""GPU energy from NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since driver load).

Why this shape:
- NVML numbers GPUs in PCI order and ignores ``CUDA_VISIBLE_DEVICES``; the benchmark names CUDA ordinals. We map each
  ordinal to its NVML handle through the visible-devices list (indices or UUID prefixes), or through torch's device
  UUID when torch has already initialised CUDA, so only the GPUs the benchmark uses are metered.
- Queued kernels are not yet energy: before each read we synchronise the metered devices when torch has started CUDA.
- The counter updates about every 100 ms, so windows under 1 s are flagged untrustworthy and under 5 s low confidence.
- GPUs older than Volta have no counter: we then integrate sampled power in a thread and name the meter
  ``nvml-power`` so that nobody mistakes it for the counter.
- A GPU draws tens of watts even when idle, so a counter that stands still for a second or more is stalled or is not
  the GPU's: such a window is invalid rather than a silent zero.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from pytest_aienergyscore.meters.base import Meter, MeterUnavailable, Reading, now
from pytest_aienergyscore.records.confidence import too_short_to_trust

WRAP_MJ = 2**64
POWER_SAMPLE_PERIOD_S = 0.02


def load_pynvml() -> ModuleType:
    """Import and initialise NVML, or say in one line why it cannot be used."""
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable("pynvml is not installed (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
    except Exception as err:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise MeterUnavailable(f"NVML could not start: {err} (no NVIDIA driver or GPU here)") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_nvml_indices(nvml: ModuleType, env: dict[str, str] | None = None) -> list[int]:
    """NVML indices of the GPUs CUDA shows to this process, in CUDA ordinal order (CUDA_VISIBLE_DEVICES rules)."""
    env = dict(os.environ) if env is None else env
    count = int(nvml.nvmlDeviceGetCount())
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(count))
    uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    indices: list[int] = []
    for entry in (e.strip() for e in raw.split(",")):
        if entry.isdigit():  # an index, never a UUID prefix; an index past the last GPU ends the list
            if int(entry) >= count:
                break
            found = int(entry)
        else:
            matches = [i for i, u in enumerate(uuids) if entry and (u.startswith(entry) or u[4:].startswith(entry))]
            if len(matches) != 1:
                break  # CUDA stops at the first entry it cannot resolve
            found = matches[0]
        if found in indices:
            break
        indices.append(found)
    return indices


def _torch_uuid(ordinal: int) -> str | None:
    """The UUID torch reports for a CUDA ordinal, only if torch is already imported and CUDA initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        uuid = str(torch.cuda.get_device_properties(ordinal).uuid)
    except Exception:
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


class NvmlMeter(Meter):
    """Measured GPU energy of the chosen CUDA devices."""

    name = "nvml"
    kind = "measured"
    counter_period_s = 0.1

    def __init__(
        self, ordinals: Sequence[int] = (0,), nvml: ModuleType | None = None, env: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.nvml = nvml if nvml is not None else load_pynvml()
        self.ordinals = tuple(ordinals)
        self._env = dict(os.environ) if env is None else env
        self._handles = self._resolve_handles(self._env)
        # Exact integers relative to the first reading: absolute mJ as floats lose joules near 2**64.
        self._first_mj: dict[str, int] = {}
        self._last_mj: dict[str, int] = {}
        self._offset_mj: dict[str, int] = {}
        self._resets = 0
        self._sampler: _PowerSampler | None = None
        if not all(self._has_counter(h) for h in self._handles.values()):
            self.name = "nvml-power"
            self.counter_period_s = 0.1
            self._sampler = _PowerSampler(self.nvml, self._handles)
            self._sampler.start()
        else:
            for key, handle in self._handles.items():
                self._last_mj[key] = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                self._first_mj[key] = self._last_mj[key]
                self._offset_mj[key] = 0

    def _resolve_handles(self, env: dict[str, str]) -> dict[str, Any]:
        visible = visible_nvml_indices(self.nvml, env)
        handles: dict[str, Any] = {}
        for ordinal in self.ordinals:
            uuid = _torch_uuid(ordinal)
            if uuid is not None:
                handle = self.nvml.nvmlDeviceGetHandleByUUID(uuid)
            elif ordinal < len(visible):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(visible[ordinal])
            else:
                raise MeterUnavailable(
                    f"--energy-gpus {ordinal}: this process sees {len(visible)} GPU(s) "
                    f"(ordinals 0..{len(visible) - 1}; CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')})"
                )
            handles[f"cuda:{ordinal}"] = handle
        return handles

    def _has_counter(self, handle: Any) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except self.nvml.NVMLError:
            return False
        return True

    def synchronize(self) -> None:
        torch = sys.modules.get("torch")
        if torch is None:
            return
        try:
            if torch.cuda.is_initialized():
                for ordinal in self.ordinals:
                    torch.cuda.synchronize(ordinal)
        except Exception:  # a broken CUDA context must not hide the measurement that follows
            return

    def read(self) -> Reading:
        mono, wall = now()
        if self._sampler is not None:
            return Reading(mono, wall, self._sampler.joules())
        joules: dict[str, float] = {}
        for key, handle in self._handles.items():
            raw = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            last = self._last_mj[key]
            if raw < last:
                if last > WRAP_MJ // 2:  # 64-bit wrap: continue counting
                    self._offset_mj[key] += WRAP_MJ
                else:  # driver reload: the counter restarted; windows across it are invalid
                    self._resets += 1
                    self._offset_mj[key] += last
            self._last_mj[key] = raw
            joules[key] = (raw + self._offset_mj[key] - self._first_mj[key]) / 1000.0
        return Reading(mono, wall, joules, resets=self._resets)

    def device_scopes(self) -> dict[str, str]:
        return dict.fromkeys(self._handles, "gpu")

    def validate_window(self, start: Reading, end: Reading) -> list[str]:
        """A window of a second or more (ten counter updates) in which a GPU's energy did not grow is unusable."""
        duration = end.monotonic - start.monotonic
        if too_short_to_trust(duration, self.counter_period_s):  # too short for the counter to have moved
            return []
        source = "sampled power" if self._sampler is not None else "energy counter"
        return [
            f"{key}: the NVML {source} did not move in {duration:.2f} s although a GPU always draws power: "
            "energy not usable (stalled counter, or not this GPU)"
            for key in self._handles
            if end.joules.get(key, 0.0) <= start.joules.get(key, 0.0)
        ]

    def scope_description(self) -> str:
        return (
            f"GPU energy of {', '.join(self._handles)} (NVML, whole-GPU counters: every process on these GPUs); "
            "CPU and RAM not included"
        )

    def survey_gpus(self, idle_seconds: float) -> list[dict[str, Any]]:
        """Who else uses each metered GPU, its MIG mode and power limits, and its idle power (gpu_state.py)."""
        from pytest_aienergyscore.meters.gpu_state import survey

        return survey(self, self.nvml, self._handles, idle_seconds)

    def device_facts(self) -> tuple[dict[str, Any], ...]:
        facts = []
        for key, handle in self._handles.items():
            fact: dict[str, Any] = {"device": key, "scope": "gpu"}
            for field, getter, convert in (
                ("name", "nvmlDeviceGetName", _text),
                ("uuid", "nvmlDeviceGetUUID", _text),
                ("power_limit_w", "nvmlDeviceGetPowerManagementLimit", lambda v: int(v) / 1000.0),
            ):
                try:
                    fact[field] = convert(getattr(self.nvml, getter)(handle))
                except Exception:
                    fact[field] = None
            try:
                fact["driver"] = _text(self.nvml.nvmlSystemGetDriverVersion())
            except Exception:
                fact["driver"] = None
            fact["counter"] = "power sampling" if self._sampler else "total energy (mJ)"
            facts.append(fact)
        return tuple(facts)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


class _PowerSampler:
    """Integrates nvmlDeviceGetPowerUsage (mW) over time with the trapezoid rule, for GPUs without the counter."""

    def __init__(self, nvml: ModuleType, handles: dict[str, Any]) -> None:
        self.nvml = nvml
        self.handles = handles
        self._lock = threading.Lock()
        self._joules = dict.fromkeys(handles, 0.0)
        self._last: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aienergyscore-nvml-power", daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        t = time.perf_counter()
        with self._lock:
            for key, handle in self.handles.items():
                watts = int(self.nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
                if key in self._last:
                    t0, w0 = self._last[key]
                    self._joules[key] += (t - t0) * (w0 + watts) / 2.0
                self._last[key] = (t, watts)

    def _run(self) -> None:
        while not self._stop.wait(POWER_SAMPLE_PERIOD_S):
            self._sample()

    def joules(self) -> dict[str, float]:
        self._sample()
        with self._lock:
            return dict(self._joules)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
