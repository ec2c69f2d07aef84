"""``aienergyscore doctor``: which meters work on this machine and why not, and on a GPU how far to trust NVML.

On a GPU it measures three things the measurement rules depend on: how often the energy counter really updates,
the idle power (reported beside results, never subtracted), and the counter against power integrated over a fixed
matrix-multiply load (the two should agree within a few percent).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from typing import Any

from pytest_aienergyscore.meters import MeterUnavailable, create_meter


def meter_status(name: str, gpus: tuple[int, ...] = (0,)) -> dict[str, Any]:
    try:
        meter = create_meter(name, gpus)
    except MeterUnavailable as err:
        return {"ok": False, "reason": str(err)}
    try:
        info = meter.info()
        return {"ok": True, "meter": info.name, "kind": info.kind, "devices": list(info.devices)}
    finally:
        meter.close()


def counter_update_period(nvml: Any, handle: Any, seconds: float = 1.5) -> dict[str, Any]:
    """Median time between changes of the total-energy counter, polled in a tight loop."""
    changes = []
    last = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != last:
            changes.append(time.perf_counter())
            last = value
    intervals = [b - a for a, b in itertools.pairwise(changes)]
    return {
        "updates_seen": len(changes),
        "median_period_s": statistics.median(intervals) if intervals else None,
        "polled_s": seconds,
    }


class _PowerIntegrator:
    """Samples power every 10 ms in a thread and integrates it, to compare against the counter."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0))
            time.sleep(0.01)

    def __enter__(self) -> _PowerIntegrator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def joules(self) -> float:
        s = self.samples
        return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(s))

    def mean_watts(self) -> float | None:
        return statistics.fmean(w for _, w in self.samples) if self.samples else None


def idle_power(nvml: Any, handle: Any, seconds: float = 2.0) -> dict[str, Any]:
    start = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    t0 = time.perf_counter()
    with _PowerIntegrator(nvml, handle) as sampler:
        time.sleep(seconds)
    elapsed = time.perf_counter() - t0
    counter_j = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start) / 1000.0
    return {"counter_w": counter_j / elapsed, "sampled_mean_w": sampler.mean_watts(), "seconds": elapsed}


def load_check(nvml: Any, handle: Any, seconds: float = 8.0) -> dict[str, Any]:
    """Counter vs integrated power while cuda:0 multiplies matrices for a fixed time."""
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no CUDA device"}
    a = torch.randn(4096, 4096, device="cuda:0", dtype=torch.float16)
    torch.cuda.synchronize()
    start = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    t0 = time.perf_counter()
    iterations = 0
    with _PowerIntegrator(nvml, handle) as sampler:
        while time.perf_counter() - t0 < seconds:
            for _ in range(20):
                a = (a @ a).clamp_(-1, 1)
            torch.cuda.synchronize()
            iterations += 20
    elapsed = time.perf_counter() - t0
    counter_j = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start) / 1000.0
    integrated = sampler.joules()
    return {
        "seconds": elapsed,
        "matmuls": iterations,
        "counter_j": counter_j,
        "integrated_power_j": integrated,
        "counter_over_integrated": counter_j / integrated if integrated else None,
        "mean_power_w": counter_j / elapsed,
    }


def gpu_checks() -> dict[str, Any]:
    from pytest_aienergyscore.meters.nvml import load_pynvml

    try:
        nvml = load_pynvml()
    except MeterUnavailable as err:
        return {"skipped": str(err)}
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    try:
        return {
            "device": str(nvml.nvmlDeviceGetName(handle)),
            "counter_update": counter_update_period(nvml, handle),
            "idle_power": idle_power(nvml, handle),
            "load": load_check(nvml, handle),
        }
    except nvml.NVMLError as err:
        return {"error": f"NVML: {err}"}


def run_doctor(gpu: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"meters": {name: meter_status(name) for name in ("nvml", "rapl", "estimate")}}
    auto = create_meter("auto")
    report["auto"] = {"chosen": auto.name, "reason": auto.reason}
    auto.close()
    if gpu and report["meters"]["nvml"]["ok"]:
        report["gpu"] = gpu_checks()
    else:
        report["gpu"] = {"skipped": report["meters"]["nvml"].get("reason", "GPU checks not asked for")}
    return report


def format_report(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, status in report["meters"].items():
        lines.append(f"{name:9} {'works' if status['ok'] else 'unavailable'}: " + _status_detail(status))
    lines.append(f"auto      -> {report['auto']['chosen']} ({report['auto']['reason']})")
    gpu = report["gpu"]
    if "skipped" in gpu:
        lines.append(f"gpu checks skipped: {gpu['skipped']}")
    elif "error" in gpu:
        lines.append(f"gpu checks failed: {gpu['error']}")
    else:
        period = gpu["counter_update"]["median_period_s"]
        lines.append(f"gpu {gpu['device']}: counter updates every {period if period is None else f'{period:.3f}'} s")
        lines.append(f"idle power: {gpu['idle_power']['counter_w']:.1f} W (counter)")
        load = gpu["load"]
        if "skipped" in load:
            lines.append(f"load check skipped: {load['skipped']}")
        else:
            lines.append(
                f"load {load['seconds']:.1f} s: counter {load['counter_j']:.1f} J vs integrated power "
                f"{load['integrated_power_j']:.1f} J (ratio {load['counter_over_integrated']:.3f})"
            )
    return lines


def _status_detail(status: dict[str, Any]) -> str:
    if not status["ok"]:
        return str(status["reason"])
    return ", ".join(str(d.get("name") or d.get("method") or d["device"]) for d in status["devices"])
