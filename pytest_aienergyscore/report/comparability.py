"""Why a result can or cannot stand beside the published AI Energy Score leaderboard, reason by reason."""

from __future__ import annotations

from ..records import Record

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
    return reasons
