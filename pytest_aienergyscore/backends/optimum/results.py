"""optimum-benchmark's report and the worker's files, turned into our phases, measurements, notes and attachments.

optimum-benchmark meters its own phases with codecarbon and reports kWh per phase and scope; codecarbon's per-phase
files hold each window's duration and hardware, and the worker's own file the work it counted while energy_star ran.
Here every figure becomes joules with its scope, kind and meter stated, decode goes through the decode rule every
backend uses, and codecarbon's GPU figure is accepted only through the guards of :mod:`.gpu`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.base import BackendError
from pytest_aienergyscore.backends.optimum.experiment import DATASET_ATTACHMENT, DatasetRef
from pytest_aienergyscore.backends.optimum.gpu import (
    CounterSpan,
    GpuAcceptance,
    accept_codecarbon_gpu,
    cross_check_warning,
    gpu_cross_check,
    window_problems,
)
from pytest_aienergyscore.backends.optimum.reading import LOG_FILE, LOG_TAIL_BYTES, tail
from pytest_aienergyscore.records.confidence import window_confidence
from pytest_aienergyscore.records.decode import derive_decode, split_details
from pytest_aienergyscore.records.figures import JOULES_PER_WH, DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase
from pytest_aienergyscore.rules.datasets import DatasetInfo
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

JOULES_PER_KWH = JOULES_PER_WH * 1000.0
# codecarbon reads GPU energy from NVML's counter (updated about every 100 ms) at each phase's edges; windows shorter
# than 10 and 50 of its updates are flagged as our own meters flag them.
CODECARBON_PERIOD_S = 0.1
ATTACHMENT_MAX_BYTES = 256 * 1024

# Report phase -> our phase, and the codecarbon file that holds its window (decode is derived from "generate").
REPORT_PHASES: Mapping[str, tuple[str, str]] = {
    "preprocess_dataset": ("preprocess", "preprocess_dataset"),
    "prefill": ("prefill", "prefill"),
    "decode": ("decode", "generate"),
    "forward": ("forward", "forward"),
    "call": ("call", "call"),
}
UNREPORTED_PHASES = ("load_dataset", "load_model")
ENERGY_SCOPES = ("cpu", "ram", "gpu", "total")
CODECARBON_PHASES = ("load_dataset", "preprocess_dataset", "load_model", "prefill", "generate", "forward", "call")
# codecarbon CPU modes that read a hardware counter; every other mode (cpu_load, constant) is an estimate.
MEASURED_CPU_MODES = ("intel_rapl", "intel_power_gadget", "windows_emi", "apple_powermetrics")
# Files the worker leaves, and the names they keep in the run folder (ours already has a benchmark_report.json).
ATTACHMENT_NAMES: Mapping[str, str] = {
    "energy_star_config.yaml": "optimum_energy_star_config.yaml",
    "optimum_request.json": "optimum_request.json",
    "benchmark_config.json": "optimum_benchmark_config.json",
    "benchmark_report.json": "optimum_benchmark_report.json",
    "worker_result.json": "optimum_worker_result.json",
    "worker_error.json": "optimum_worker_error.json",
}


@dataclass(frozen=True)
class WorkerRun:
    """One finished worker: optimum-benchmark's report, codecarbon's files, our counts, and (GPU runs) our own reading
    of NVML's counter around the whole worker, which cross-checks codecarbon's GPU figure."""

    report: dict[str, Any]
    codecarbon: dict[str, dict[str, Any]]
    result: dict[str, Any]
    wall_s: float
    gpu_counter: CounterSpan | None = None

    def gpu_cross_check(self) -> dict[str, Any] | None:
        phase_windows = [window for _, window in REPORT_PHASES.values()]  # the AI Energy Score phases' windows
        return gpu_cross_check(self.gpu_counter, self.result, self.codecarbon, phase_windows)


# -- report reading -------------------------------------------------------------------------------------------------


def phases_from_report(
    run: WorkerRun, task: TaskSpec, config: Mapping[str, Any], device: str, device_ids: str | None, repetition: int
) -> list[Phase]:
    """Our phases from optimum-benchmark's report, in AI Energy Score's order, with counts attached.

    Decode goes through the decode rule every backend uses: energy_star reports decode as its generate window minus
    its prefill window, so the generate window is rebuilt as prefill + decode and split again by
    :func:`~pytest_aienergyscore.records.decode.derive_decode` (never clamped, flagged alike when negative).
    """
    gpu = device == "cuda"  # a GPU scope even where codecarbon saw no GPU: its guards then say why it is not valid
    reader = _EnergyReader(
        run.codecarbon,
        gpu_device=f"cuda:{device_ids}" if gpu else None,
        cpu_kind=cpu_energy_kind(run.result.get("codecarbon_hardware") or []),
        gpu=accept_codecarbon_gpu(run.result) if gpu else GpuAcceptance(),
    )
    counts = phase_counts(run.result, config, task)
    measured: dict[str, Measurement] = {}
    phases = []
    for key, (name, window) in REPORT_PHASES.items():
        energy = _energy_of(run.report, key)
        if energy is None:
            continue
        details: dict[str, Any] = {}
        if name == "decode":
            prefill = measured.get("prefill")
            if prefill is None or _energy_of(run.report, "prefill") is None:
                raise BackendError("optimum-benchmark reported a decode energy without the prefill it is split from")
            generate = reader.read("generate", _added(_energy_of(run.report, "prefill") or {}, energy), window)
            measured[name] = derive_decode(prefill, generate)
            details = split_details(prefill, generate)
        else:
            measured[name] = reader.read(name, energy, window, label="window" if window == key else None)
        samples, tokens, extra = counts.get(name, (None, None, {}))
        phases.append(Phase(name, measured[name], samples, tokens, repetition, {**details, **extra}))
    if not phases:
        raise BackendError("optimum-benchmark's report holds no energy for any phase (was energy tracking off?)")
    return _with_cross_check_warning(phases, run)


def _energy_of(report: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    entry = report.get(key)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("energy"), Mapping):
        return None
    return entry["energy"]


def _added(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two reported energies added scope by scope (same unit): energy_star's prefill + decode is its generate window."""
    added = {scope: float(first.get(scope) or 0.0) + float(second.get(scope) or 0.0) for scope in ENERGY_SCOPES}
    return {"unit": second.get("unit", "kWh"), **added}


def _with_cross_check_warning(phases: list[Phase], run: WorkerRun) -> list[Phase]:
    """A disagreement between codecarbon and our own reading is a warning of the run, kept once on its first phase
    (it concerns the whole worker, not one window); the windows stay valid."""
    warning = cross_check_warning(run.gpu_cross_check())
    if warning is None:
        return phases
    first = phases[0]
    measurement = replace(first.measurement, warnings=(*first.measurement.warnings, warning))
    return [replace(first, measurement=measurement), *phases[1:]]


@dataclass(frozen=True)
class _EnergyReader:
    """Reads one reported window's kWh into a Measurement, with this run's devices, kinds and GPU guards."""

    codecarbon: Mapping[str, Mapping[str, Any]]
    gpu_device: str | None
    cpu_kind: str
    gpu: GpuAcceptance

    def read(self, name: str, energy: Mapping[str, Any], window: str, label: str | None = None) -> Measurement:
        return read_energy(
            name,
            energy,
            self.codecarbon.get(window, {}),
            gpu_device=self.gpu_device,
            cpu_kind=self.cpu_kind,
            window_label=label or f"{window} window",
            gpu=self.gpu,
        )


def read_energy(
    name: str,
    energy: Mapping[str, Any],
    window: Mapping[str, Any],
    *,
    gpu_device: str | None,
    cpu_kind: str,
    window_label: str = "window",
    gpu: GpuAcceptance | None = None,
) -> Measurement:
    """One window's kWh per scope -> joules per device, as reported: never clamped. A window is invalid when a figure
    is negative (a single window is a counter delta or a power x time, never below zero) or when codecarbon's GPU
    figure fails a guard (:mod:`.gpu`)."""
    unit = str(energy.get("unit", "kWh"))
    if unit != "kWh":
        raise BackendError(f"optimum-benchmark reported {name} energy in {unit!r}; this version reads kWh")
    gpu = gpu or GpuAcceptance()
    scopes = [("gpu", gpu_device, "measured", gpu.meter)] if gpu_device else []
    scopes += [("cpu", "cpu", cpu_kind, "codecarbon"), ("ram", "ram", "estimate", "codecarbon")]
    devices = [
        DeviceEnergy(str(device), scope, float(energy.get(scope) or 0.0) * JOULES_PER_KWH, kind, meter)
        for scope, device, kind, meter in scopes
    ]
    duration = float(window.get("duration") or 0.0)
    problems = [
        f"optimum-benchmark reported a negative {d.scope} energy ({d.joules / JOULES_PER_KWH:.3g} kWh) for one "
        "window: not valid"
        for d in devices
        if d.joules < 0
    ]
    if gpu_device:
        problems = [*gpu.problems, *window_problems(devices[0].joules, duration), *problems]
    warnings = list(problems)
    confidence = _confidence(duration, warnings, window_label)
    head = devices[0]
    return Measurement(
        name=name,
        meter=head.meter,
        kind=head.kind,
        duration_s=duration,
        devices=tuple(devices),
        started_at=_timestamp(window.get("timestamp")),
        counter_period_s=CODECARBON_PERIOD_S,
        confidence=confidence,
        valid=not problems,
        warnings=tuple(warnings),
    )


def _confidence(duration: float, warnings: list[str], label: str) -> str:
    """The confidence rule (records/confidence.py) for a codecarbon window, its warning named after the window."""
    confidence, warning = window_confidence(duration, CODECARBON_PERIOD_S, "NVML (through codecarbon)")
    if warning:
        warnings.append(f"{label}: {warning}")
    return confidence


def _timestamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def cpu_energy_kind(hardware: list[dict[str, Any]]) -> str:
    """measured when codecarbon read a CPU energy counter (RAPL...), else estimate (TDP x load, or TDP)."""
    modes = [item.get("mode") for item in hardware if item.get("class") == "CPU"]
    return "measured" if modes and all(mode in MEASURED_CPU_MODES for mode in modes) else "estimate"


# Our phase -> the worker's window whose work it reports (decode's work is the whole generation pass), and the work
# facts its details carry, under the names the pytorch backend uses: the parity tests compare them key for key.
WORK_WINDOWS: Mapping[str, str] = {"prefill": "prefill", "decode": "generate", "forward": "forward", "call": "call"}
WORK_KEYS: Mapping[str, tuple[str, ...]] = {
    "prefill": ("generate_calls", "new_tokens_per_sample"),
    "decode": ("generate_calls", "new_tokens_per_sample"),
    "forward": ("forward_calls",),
    "call": ("images", "image_size", "scheduler_steps"),
}


def total_new_tokens(histogram: Mapping[str, Any] | None) -> int | None:
    """The new tokens of a pass from its {"<new tokens>": samples} histogram; None when any count is unknown."""
    if not histogram:
        return None
    try:
        return sum(int(tokens) * int(samples) for tokens, samples in histogram.items())
    except (TypeError, ValueError):
        return None


def phase_counts(
    result: Mapping[str, Any], config: Mapping[str, Any], task: TaskSpec
) -> dict[str, tuple[int | None, int | None, dict[str, Any]]]:
    """Samples, tokens and work per phase, as the worker counted them while energy_star ran (never derived from the
    configuration: what was asked for is not evidence of what ran). Counted the way the pytorch backend counts, so
    records from both backends compare key for key; a run without the worker's work counts gives None."""
    input_tokens: int | None = result.get("input_tokens")
    work: Mapping[str, Any] = result.get("work") or {}
    scenario = config["scenario"]
    generate = dict(result.get("generate_kwargs") or scenario.get("generate_kwargs") or {})
    call = dict(result.get("call_kwargs") or scenario.get("call_kwargs") or {})
    counts: dict[str, tuple[int | None, int | None, dict[str, Any]]] = {
        "preprocess": (result.get("samples"), input_tokens, {}),
    }
    for name, window in WORK_WINDOWS.items():
        facts: Mapping[str, Any] = work.get(window) or {}
        samples: int | None = facts.get("samples")
        details: dict[str, Any] = {key: facts.get(key) for key in WORK_KEYS[name]}
        new = total_new_tokens(facts.get("new_tokens_per_sample"))
        tokens: int | None = input_tokens
        if name == "prefill":
            details.update(first_tokens=new, generate_kwargs=generate)
        elif name == "decode":
            # the first new token of each sample belongs to prefill (optimum-benchmark's own decode volume)
            tokens = max(new - samples, 0) if new is not None and samples is not None else None
            details.update(
                method="optimum-benchmark: generate pass minus prefill pass, both over the whole dataset",
                generated_tokens=new,
                generate_kwargs=generate,
            )
        elif name == "call":
            tokens = None
            details["call_kwargs"] = call
        counts[name] = (samples, tokens, details)
    return counts


# -- notes, metadata, attachments --------------------------------------------------------------------------------


def protocol_notes(task: TaskSpec, info: DatasetInfo, run: WorkerRun, protocol: Protocol) -> list[str]:
    """What a reader must know to read these figures: dataset, meter, and where the method differs."""
    notes = []
    if not info.official:
        notes.append(info.note or f"dataset {info.name} is not the official {task.dataset}")
    elif info.note:
        notes.append(info.note)
    notes.append(codecarbon_note(run.result.get("codecarbon_hardware") or [], run.codecarbon))
    check = run.gpu_cross_check()
    if check and check.get("skipped"):
        notes.append(f"codecarbon's GPU figure was not cross-checked: {check['skipped']}")
    if protocol.note:
        notes.append(protocol.note)
    return notes


def codecarbon_note(hardware: list[dict[str, Any]], codecarbon: Mapping[str, Mapping[str, Any]]) -> str:
    """How codecarbon obtained its CPU and RAM figures on this machine, in one sentence."""
    cpu = next((item for item in hardware if item.get("class") == "CPU"), None)
    mode = cpu.get("mode") if cpu else None
    ram_watts = {float(data["ram_power"]) for data in codecarbon.values() if data.get("ram_power") is not None}
    if mode in MEASURED_CPU_MODES:
        how = f"CPU energy read by codecarbon from {mode}"
    elif mode == "cpu_load":
        how = "CPU energy is codecarbon's estimate: the CPU's TDP x its load (no RAPL counter readable here)"
    elif mode == "constant":
        how = "CPU energy is codecarbon's estimate: a constant TDP (no RAPL counter readable here)"
    else:
        how = "CPU energy from codecarbon (method not reported)"
    ram_how = f" ({', '.join(f'{w:g} W' for w in sorted(ram_watts))} here)" if ram_watts else ""
    return (
        f"energy metered by optimum-benchmark's codecarbon tracker, machine-wide; {how}; RAM energy is codecarbon's "
        f"estimate, a constant power{ram_how} x time; --energy-meter does not apply to --backend optimum"
    )


def run_metadata(runs: list[WorkerRun], config: Mapping[str, Any], dataset: DatasetRef) -> dict[str, Any]:
    """What the record keeps about optimum-benchmark's side: versions, task, unreported phases, wall time."""
    last = runs[-1]
    unreported = {}
    for name in UNREPORTED_PHASES:
        energy = (last.report.get(name) or {}).get("energy") or {}
        if energy:
            unreported[name] = {scope: energy.get(scope) for scope in ("cpu", "ram", "gpu", "total")}
    return {
        "versions": last.result.get("versions", {}),
        "task": config["backend"]["task"],
        "dataset": dataset.how,
        "codecarbon_hardware": last.result.get("codecarbon_hardware", []),
        "unreported_phases_kwh": unreported,
        "worker_wall_s": [round(run.wall_s, 3) for run in runs],
        "blocked_connections": last.result.get("blocked_connections", []),
        **gpu_metadata(runs),
    }


def gpu_metadata(runs: list[WorkerRun]) -> dict[str, Any]:
    """For GPU runs: which GPU codecarbon tracked and which the model ran on (per run, by UUID), and both figures of
    the cross-check, codecarbon's windows and our own reading around the worker (one per repetition)."""
    if all(run.gpu_counter is None and not run.result.get("gpu") for run in runs):
        return {}
    return {
        "gpu": [run.result.get("gpu") for run in runs],
        "gpu_cross_check": [run.gpu_cross_check() for run in runs],
    }


def collect_attachments(run_dir: Path) -> dict[str, str]:
    """The run's small files for the run folder: generated config, optimum-benchmark's files, codecarbon's, the log."""
    found: dict[str, str] = {}
    for source, target in ATTACHMENT_NAMES.items():
        path = run_dir / source
        if path.is_file() and path.stat().st_size <= ATTACHMENT_MAX_BYTES:
            found[target] = path.read_text(encoding="utf-8", errors="replace")
    for path in sorted(run_dir.glob("*_codecarbon.json")):
        if path.stat().st_size <= ATTACHMENT_MAX_BYTES:
            found[path.name] = path.read_text(encoding="utf-8", errors="replace")
    log = run_dir / LOG_FILE
    if log.is_file():
        found[LOG_FILE] = tail(log, LOG_TAIL_BYTES)
    return found


def dataset_attachment(dataset: DatasetRef) -> dict[str, str]:
    """The samples optimum-benchmark read from a scratch folder, so that the generated config can be rerun."""
    samples = Path(dataset.name) / "train.jsonl"
    if not dataset.local or not samples.is_file() or samples.stat().st_size > ATTACHMENT_MAX_BYTES:
        return {}
    return {DATASET_ATTACHMENT: samples.read_text(encoding="utf-8", errors="replace")}
