"""The figures inference people compare beside Wh per 1,000 queries, and grams of CO2e, derived in one place.

Every report (run files, the session summary, the exports, the terminal table) reads them from here, so a J/token in
a dashboard is the same number as in summary.csv. Each figure divides the same energy the headline does (the
record's headline scope: gpu, or the cpu energy of the device that did the work, measured or estimated), and says
so beside it. Standard library only.

- Output tokens: the ``generated_tokens`` of the outermost ``decode`` phase (the whole generation pass's new
  tokens, each sample's first token included: the runner and the optimum backend record them there, counted by the
  tokenizer or read from the server's ``usage``), combined over windows and repetitions like every phase figure.
- Images: the ``images`` the ``call`` phase's details counted (image generation).
- Latency and throughput: what the vllm backend measured per request in the generation pass (its decode details).
- CO2e: energy x the intensity the user gave (``--energy-carbon-intensity``); nothing is looked up.
"""

from __future__ import annotations

from typing import Any

from pytest_aienergyscore.records.figures import JOULES_PER_WH
from pytest_aienergyscore.records.record import Record, combine

# Where a session's --energy-carbon-intensity travels with each record (record.metadata), so that files rebuilt
# later by `aienergyscore report` say the same grams as the session did.
CARBON_INTENSITY_KEY = "carbon_intensity_g_per_kwh"
CARBON_SOURCE = "user-given (--energy-carbon-intensity)"
OUTPUT_TOKENS_COUNTED = (
    "generated_tokens of the decode phase: the whole generation pass's new tokens (each sample's first included), "
    "from the tokenizer or the server's usage"
)
LATENCY_KEYS = ("ttft_s", "latency_s")
THROUGHPUT_KEYS = ("output_tokens_per_s", "requests_per_s")


def _count(record: Record, phase: str, key: str) -> float | None:
    """A count a phase's details carry, combined over windows and repetitions by the one rule (None when absent)."""

    def value(window: Any) -> float | None:
        number = window.details.get(key)
        return float(number) if isinstance(number, (int, float)) and not isinstance(number, bool) else None

    combined = combine([w for w in record.windows(phase) if w.parent is None], value)
    return int(combined) if combined is not None and combined.is_integer() else combined


def output_tokens(record: Record) -> float | None:
    """The benchmark's output tokens (see the module's docstring for which); None for non-generative work."""
    return _count(record, "decode", "generated_tokens")


def images(record: Record) -> float | None:
    """The images an image-generation benchmark made (the call phase's count); None for other work."""
    return _count(record, "call", "images")


def _ratio(top: float, bottom: float | None) -> float | None:
    return top / bottom if bottom else None


def latency(record: Record) -> dict[str, Any] | None:
    """Time to first token and per-request latency (mean, p50/p90/p99, seconds) and throughput, as the vllm backend
    measured them in the generation pass of the first repetition (percentiles of repetitions do not average)."""
    windows = [w for w in record.windows("decode") if w.parent is None and w.repetition == 0]
    details = windows[0].details if windows else {}
    if not any(details.get(key) is not None for key in LATENCY_KEYS):
        return None
    figures = {key: details.get(key) for key in (*LATENCY_KEYS, *THROUGHPUT_KEYS)}
    if figures["output_tokens_per_s"] is None and details.get("wall_s"):  # records from before it was kept
        figures["output_tokens_per_s"] = _ratio(float(details.get("completion_tokens") or 0), details["wall_s"])
    return {
        **figures,
        "concurrency": details.get("concurrency"),
        "measured": "per request, in the generation pass (repetition 1), by the client",
    }


def inference_figures(record: Record) -> dict[str, Any]:
    """Energy per output token and per image, and the latency figures, each beside the energy scope it divides.
    None where a figure does not apply (no tokens counted, no images) or the work is partial (see Record)."""
    scope = record.headline_scope()
    wh = record.total_wh()
    joules = wh * JOULES_PER_WH
    whole = record.partial_work() is None  # partial work per token would read as cheap tokens
    tokens = output_tokens(record) if whole else None
    made = images(record) if whole else None
    return {
        "energy_scope": scope,
        "energy_kind": record.energy_kind(),
        "meter": record.meter_name(),
        "output_tokens": tokens,
        "output_tokens_counted": OUTPUT_TOKENS_COUNTED if tokens is not None else None,
        "joules_per_output_token": _ratio(joules, tokens),
        "output_tokens_per_joule": _ratio(tokens, joules) if tokens is not None else None,
        "images": made,
        "images_per_wh": _ratio(made, wh) if made is not None else None,
        "latency": latency(record),
    }


# -- carbon -----------------------------------------------------------------------------------------------------------


def carbon_intensity(record: Record) -> float | None:
    """The g CO2e/kWh the user gave for the session that measured this record, or None."""
    value = record.metadata.get(CARBON_INTENSITY_KEY)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def co2e_g(wh: float | None, intensity: float) -> float | None:
    """Grams of CO2e for ``wh`` at ``intensity`` g/kWh."""
    return None if wh is None else wh / 1000.0 * intensity


def carbon_figures(record: Record) -> dict[str, Any] | None:
    """Grams of CO2e beside each energy figure of the headline (total, per 1,000 queries, each outermost phase),
    labelled with the intensity used; None when none was given."""
    intensity = carbon_intensity(record)
    if intensity is None:
        return None
    return {
        "co2e_g": co2e_g(record.total_wh(), intensity),
        "co2e_g_per_1000_queries": co2e_g(record.wh_per_1000_queries(), intensity),
        "phases_co2e_g": {name: co2e_g(record.phase_wh(name), intensity) for name in record.phase_names()},
        "carbon_intensity_g_per_kwh": intensity,
        "carbon_intensity_source": CARBON_SOURCE,
        "energy_scope": record.headline_scope(),
    }


def carbon_note(records: list[Record]) -> str | None:
    """The line under the results table that says how grams of CO2e were reached; None when no intensity was given.
    Records of several sessions may differ: each intensity is named."""
    given = list(dict.fromkeys(i for i in map(carbon_intensity, records) if i is not None))
    if not given:
        return None
    at = " and ".join(f"{i:g} g/kWh" for i in given)
    return f"CO2e at {at} (given with --energy-carbon-intensity): grams beside each energy figure in summary.json/csv"
