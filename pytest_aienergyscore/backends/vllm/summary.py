"""What a phase's requests add up to, for the record: counts, where the token counts came from, latencies,
failures, and the steady state's energy per token and per request.

Kept apart from the load generator because it runs once, after the phase, and is read by people: every figure says
how it was counted, and the line that fails a benchmark with too many failed requests is written here.
"""

from __future__ import annotations

import math
from typing import Any

from pytest_aienergyscore.backends.vllm.load import MAX_FAILURE_RATE, Load
from pytest_aienergyscore.backends.vllm.stream import Result


def percentiles(values: list[float]) -> dict[str, float] | None:
    """Mean and nearest-rank p50/p90/p99, in seconds."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        # the ceil(p x n)-th value; round(p x n + 0.5) rounded half to even, one rank too high whenever p x n is whole
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered) - 1e-9) - 1))]

    return {"mean": sum(ordered) / len(ordered), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99)}


def phase_details(load: Load, wall_s: float) -> dict[str, Any]:
    """Counts, token source, latencies, throughput, failures and the steady state of one phase, for the record."""
    done = [r for r in load.results if r is not None]
    ok = [r for r in done if r.ok]
    prompt = [r.prompt_tokens for r in ok]
    counted = sum(1 for r in ok if not r.from_usage)
    source = "server usage"
    if counted:
        source = "counted streamed chunks: the server sent no usage" if counted == len(ok) else "mixed"
    errors = list(dict.fromkeys(r.error for r in done if r.error))
    return {
        "concurrency": load.concurrency,
        "requests": load.total,
        "succeeded": len(ok),
        "failed": len(done) - len(ok),
        "not_sent": load.total - len(done),
        "failure_rate": (len(done) - len(ok)) / load.total if load.total else 0.0,
        "max_failure_rate": MAX_FAILURE_RATE,
        "retries": sum(r.retries for r in done),
        "errors": errors[:5],
        "prompt_tokens": sum(p for p in prompt if p is not None) if prompt and None not in prompt else None,
        "completion_tokens": sum(r.completion_tokens or 0 for r in ok),
        "token_count_source": source,
        "ttft_s": percentiles([r.first_token - r.started for r in ok if r.first_token is not None]),
        "latency_s": percentiles([r.ended - r.started for r in ok]),
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        # the succeeded requests' completion tokens over the phase's wall time, summed once the phase is over
        "output_tokens_per_s": sum(r.completion_tokens or 0 for r in ok) / wall_s if wall_s > 0 else None,
        "steady_state": steady_state_details(load, ok),
    }


def steady_state_details(load: Load, ok: list[Result]) -> dict[str, Any] | None:
    """ML.ENERGY-style figures of the window with N requests in flight: its energy per token and per request.

    Requests completed inside the window count whole; tokens are counted as generated evenly between a request's
    first token and its end, so that requests running across an edge count only their share inside the window.
    """
    if load.concurrency <= 1:
        return None
    steady = load.steady
    if steady.started is None or steady.ended is None:
        return {"reached": False, "why": f"never {load.concurrency} requests in flight (fewer requests than that?)"}
    start, end = steady.started, steady.ended
    requests = sum(1 for r in ok if start <= r.ended <= end)
    tokens = 0.0
    for r in ok:
        first = r.first_token if r.first_token is not None else r.started
        span = r.ended - first
        overlap = max(0.0, min(end, r.ended) - max(start, first))
        if span > 0:
            tokens += (r.completion_tokens or 0) * overlap / span
        elif start <= r.ended <= end:
            tokens += r.completion_tokens or 0
    details: dict[str, Any] = {
        "reached": True,
        "window": "from the moment N requests were in flight until the queue drained",
        "started_at": steady.started_wall,
        "ended_at": steady.ended_wall,
        "duration_s": end - start,
        "requests_completed": requests,
        "tokens": tokens,
        "tokens_method": "each request's completion tokens spread evenly from its first token to its end",
        "energy_source": None,
    }
    details.update(_steady_energy(load, tokens, requests))
    return details


def _steady_energy(load: Load, tokens: float, requests: int) -> dict[str, Any]:
    """The window's energy and what it comes to per token and per request, or why it was not metered."""
    steady = load.steady
    m = steady.measurement
    if m is None:
        return {"why_not_metered": steady.problem or "no meter was handed to the backend"}
    joules = m.joules()
    return {
        "energy_source": "metered",
        "energy_j": joules,
        "meter": m.meter,
        "kind": m.kind,
        "confidence": m.confidence,
        "warnings": list(m.warnings),
        "j_per_token": joules / tokens if tokens else None,
        "j_per_request": joules / requests if requests else None,
    }


def failure_error(load: Load, endpoint: str) -> str:
    """The one line that fails the benchmark when more than 5% of its requests failed."""
    done = [r for r in load.results if r is not None]
    failed = sum(1 for r in done if not r.ok)
    share = failed / load.total * 100 if load.total else 0.0
    last = next((r.error for r in reversed(done) if r.error), "unknown")
    unsent = load.total - len(done)
    stopped = f"; stopped early, {unsent} not sent" if unsent else ""
    return (
        f"{failed} of {load.total} requests to {endpoint} failed ({share:.1f}% > {MAX_FAILURE_RATE:.0%} allowed)"
        f"{stopped}; last error: {last}"
    )
