"""Why a result can or cannot stand beside the published AI Energy Score leaderboard, reason by reason."""

from __future__ import annotations

from pytest_aienergyscore.records.confidence import too_short_to_trust
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.rules.gpu_survey import survey_reasons
from pytest_aienergyscore.rules.model_class import gpus_in
from pytest_aienergyscore.rules.protocol import UnknownVariant, protocol_for
from pytest_aienergyscore.rules.tasks import TaskSpec, UnknownTask, get_task

REFERENCE_GPU = "H100 80GB"
PROTOCOL_QUERIES = 1000
# Meters whose GPU figure is the delta of NVML's total-energy counter: ours, and codecarbon's as the optimum backend
# accepts it (right GPU by UUID, above zero, version recorded; else its windows are invalid).
NVML_COUNTER_METERS = ("nvml", "codecarbon-nvml")


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
    if record.headline_scope() == "gpu" and meter not in NVML_COUNTER_METERS:
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
    reasons.extend(_gpu_state_reasons(record))
    return reasons


def _window_s(phase: Phase) -> float:
    """The metered window's length: a derived decode's is its generation pass, which is what was metered."""
    return float(phase.details.get("generate_s") or phase.measurement.duration_s)


def _gpu_state_reasons(record: Record) -> list[str]:
    """A GPU shared with another process, split by MIG or capped below its default power limit (surveyed before the
    first benchmark), and GPU windows under a second, shorter than ten updates of NVML's counter (issue 12)."""
    server = (record.metadata.get("model_facts") or {}).get("server_pids") or ()  # a local server is the workload
    reasons = survey_reasons(record.environment.get("gpu_state") or [], workload_pids=set(server))
    short = sorted(
        {
            p.name
            for p in record.phases
            if "gpu" in p.measurement.scopes() and too_short_to_trust(_window_s(p), p.measurement.counter_period_s)
        }
    )
    if short:
        reasons.append(f"GPU window of {', '.join(short)} is too short to trust (under ten counter updates)")
    return reasons


# -- AI Energy Score's rules (issue 7): GPUs per class, the protocol's parameters, the official dataset, the class --


def _multi_gpu_reasons(record: Record) -> list[str]:
    """Class A and B models run on one GPU on the leaderboard (class C models may need several)."""
    gpus = gpus_in(record.meter)
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
    """Work other than the leaderboard's: overrides, a variant of our own, extra chat-template switches, or a
    recorded protocol that no longer matches the table (a record from an older version of the table)."""
    reasons = []
    overrides = record.metadata.get("overrides") or {}
    if overrides:
        changed = ", ".join(f"{key}={value!r}" for key, value in sorted(overrides.items()))
        reasons.append(f"protocol parameters changed: {changed}")
    extra = record.metadata.get("chat_template_extra") or {}
    if extra:
        switches = ", ".join(f"{key}={value!r}" for key, value in sorted(extra.items()))
        reasons.append(f"chat-template switches added to the protocol: {switches}")
    used = record.metadata.get("protocol")
    task = _task(record)
    if not isinstance(used, dict) or task is None:
        return reasons
    variant = str(used.get("variant") or "default")
    try:
        expected = protocol_for(task.name, variant=variant).to_dict()
    except UnknownVariant:
        return [*reasons, f"protocol variant {variant!r} is not one of the {task.name} task's"]
    if not expected["comparable"]:
        reasons.append(f"protocol variant {variant!r} is pytest-aienergyscore's own, not the leaderboard's method")
    keys = ("phases", "generate_kwargs", "call_kwargs", "preprocessing", "samples", "batch_size")
    differ = [key for key in keys if key in used and used[key] != expected.get(key, used[key])]
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
    if task is not None and task.classed and not record.model_class:
        return [f"model class unknown: {task.name} is compared within class A, B or C (give --energy-model-class)"]
    return []


def _task(record: Record) -> TaskSpec | None:
    try:
        return get_task(record.task) if record.task else None
    except UnknownTask:
        return None


REMOTE_METERS = ("dcgm",)  # meters that read the GPUs of the machine that served the model, wherever it is


def _remote_server_reasons(record: Record) -> list[str]:
    """A model served on another host is metered only by a meter that reads that host's GPUs: a local meter measured
    this machine (an idle GPU, or someone else's work), whatever its figures look like."""
    facts = record.metadata.get("model_facts") or {}
    if facts.get("server_local") is not False:
        return []
    if all(name in REMOTE_METERS for name in record.meter_name().split(",")):
        return []
    return [
        "the model ran on a remote server; the local meter measured this machine, not the server: "
        "use --energy-meter dcgm"
    ]


def _substitute_reasons(record: Record) -> list[str]:
    """A stand-in for the named model (an offline package's 4-bit conversion, say) is not the model benchmarked."""
    facts = record.metadata.get("model_facts") or {}
    substitute = facts.get("substitute") if isinstance(facts, dict) else None
    if isinstance(substitute, dict) and not substitute.get("comparable"):
        return [f"offline stand-in for {record.model}: {substitute.get('note')}"]
    return []


def rules_reasons(record: Record) -> list[str]:
    """The reasons that come from AI Energy Score's rules rather than from how the energy was measured."""
    return [
        *_multi_gpu_reasons(record),
        *_protocol_reasons(record),
        *_substitute_reasons(record),
        *_dataset_reasons(record),
        *_class_reasons(record),
        *_remote_server_reasons(record),
    ]
