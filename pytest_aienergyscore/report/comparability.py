"""Why a result can or cannot stand beside the published AI Energy Score leaderboard, reason by reason."""

from __future__ import annotations

from ..records import Record
from ..tasks import TaskSpec, UnknownTask, get_task

REFERENCE_GPU = "H100 80GB"
PROTOCOL_QUERIES = 1000


def _is_reference_gpu(name: str | None) -> bool:
    text = (name or "").upper().replace("-", " ")
    return "H100" in text and "80GB" in text.replace(" ", "") if text else False


def not_comparable_reasons(record: Record) -> list[str]:
    """Every reason this record is not comparable with the leaderboard; empty means comparable."""
    reasons = []
    if record.headline_scope() != "gpu":
        reasons.append("ran on the CPU: no GPU energy was measured")
    if record.energy_kind() == "estimate":
        reasons.append("energy is an estimate from CPU time, not a measurement")
    meter = record.meter_name()
    if record.headline_scope() == "gpu" and meter != "nvml":
        reasons.append(f"GPU energy from {meter}, not NVML's energy counter")
    gpus = record.environment.get("gpus") or []
    if record.headline_scope() == "gpu" and not all(_is_reference_gpu(g.get("name")) for g in gpus):
        names = ", ".join(sorted({str(g.get("name")) for g in gpus})) or "unknown"
        reasons.append(f"GPU is {names}, not an {REFERENCE_GPU}")
    queries = record.query_count()
    if queries != PROTOCOL_QUERIES:
        reasons.append(f"{queries or 0} queries instead of the protocol's {PROTOCOL_QUERIES} (figure scaled)")
    if not record.all_valid():
        reasons.append("a metered window was invalid (see warnings)")
    if record.outcome != "passed":
        reasons.append(f"the benchmark did not finish cleanly ({record.outcome})")
    reasons.extend(rules_reasons(record))
    return reasons


# -- AI Energy Score's rules (issue 7): GPUs per class, the protocol's parameters, the official dataset, the class --


def _gpu_count(record: Record) -> int:
    return sum(1 for device in record.meter.get("devices", ()) if device.get("scope") == "gpu")


def _multi_gpu_reasons(record: Record) -> list[str]:
    """Class A and B models run on one GPU on the leaderboard (class C models may need several)."""
    gpus = _gpu_count(record)
    if gpus <= 1 or record.model_class == "C":
        return []
    if record.metadata.get("multi_gpu_allowed"):
        return [
            f"class {record.model_class} model ran on {gpus} GPUs with --energy-allow-multi-gpu; "
            "the leaderboard runs class A and B models on one GPU"
        ]
    which = f"class {record.model_class}" if record.model_class else "a model of unknown class"
    return [f"ran on {gpus} GPUs, {which}: only class C models are benchmarked on more than one GPU"]


def _protocol_reasons(record: Record) -> list[str]:
    """Generation/call parameters other than the task's (energy_star overrides, or a changed protocol)."""
    reasons = []
    overrides = record.metadata.get("overrides") or {}
    if overrides:
        changed = ", ".join(f"{key}={value!r}" for key, value in sorted(overrides.items()))
        reasons.append(f"protocol parameters changed: {changed}")
    used = record.metadata.get("protocol")
    task = _task(record)
    if isinstance(used, dict) and task is not None:
        expected = task.protocol()
        keys = ("generate_kwargs", "call_kwargs", "reasoning", "reasoning_kwargs")
        differ = [key for key in keys if key in used and used[key] != expected[key]]
        if differ:
            reasons.append(f"protocol parameters differ from the {task.name} task's: {', '.join(differ)}")
    return reasons


def _dataset_reasons(record: Record) -> list[str]:
    if record.dataset.get("official") is False:
        task = _task(record)
        official = f"the official {task.dataset}" if task is not None else "the task's official dataset"
        return [f"dataset {record.dataset.get('name') or 'unknown'} is not {official}"]
    return []


def _class_reasons(record: Record) -> list[str]:
    task = _task(record)
    if task is not None and task.name in ("text_generation", "reasoning") and not record.model_class:
        return [f"model class unknown: {task.name} is compared within class A, B or C (give --energy-model-class)"]
    return []


def _task(record: Record) -> TaskSpec | None:
    try:
        return get_task(record.task) if record.task else None
    except UnknownTask:
        return None


def rules_reasons(record: Record) -> list[str]:
    """The reasons that come from AI Energy Score's rules rather than from how the energy was measured."""
    return [
        *_multi_gpu_reasons(record),
        *_protocol_reasons(record),
        *_dataset_reasons(record),
        *_class_reasons(record),
    ]
