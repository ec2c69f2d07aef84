"""The quality of a benchmark as the reports show it: the summary files' keys and columns, the HTML page's words.

The figure itself is the record's (:mod:`pytest_aienergyscore.records.quality`: the one shape, and the one rule for
energy per correct answer); this module only chooses what each file shows of it, so that the summary, the CSV, the
HTML page and the frontier plot cannot disagree on a figure or on why there is none.
"""

from __future__ import annotations

from typing import Any

from pytest_aienergyscore.records.quality import QUALITY_KEY, quality_of, wh_per_1000_correct
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.table import format_wh

# The keys of a scored quality that GPU_ENERGY_SUMMARY.json repeats (benchmark_report.json keeps the record's whole).
QUALITY_SUMMARY_KEYS = ("metric", "value", "samples", "higher_is_better", "rate", "source", "references")
QUALITY_OPTIONAL_KEYS = ("library", "also")  # the scoring library's version, the task's other metrics


def quality_summary(record: Record) -> dict[str, Any] | None:
    """The record's quality as the summary files show it: the scored figure with where its references came from,
    ``{"metric": None, "reason": ...}`` when the outputs could not be scored (so a reader learns why, not a blank),
    and None when the benchmark was never scored (a custom benchmark that gave no quality)."""
    scored = quality_of(record.metadata)
    if scored is not None:
        shown = {key: scored.get(key) for key in QUALITY_SUMMARY_KEYS}
        return shown | {key: scored[key] for key in QUALITY_OPTIONAL_KEYS if scored.get(key) is not None}
    reason = quality_reason(record)
    return {"metric": None, "reason": reason} if reason is not None else None


def quality_reason(record: Record) -> str | None:
    """Why the record has no quality figure, as its scorer said; None when it has one or was never scored."""
    kept = record.metadata.get(QUALITY_KEY)
    if quality_of(record.metadata) is None and isinstance(kept, dict) and kept.get("reason"):
        return str(kept["reason"])
    return None


def quality_columns(quality: dict[str, Any] | None, per_correct: float | None) -> dict[str, Any]:
    """The quality as flat summary columns: the metric's name and value (empty when there is none; the reason is in
    the run's GPU_ENERGY_SUMMARY.json) and the energy per 1,000 correct answers where the metric is a rate."""
    scored = quality if quality and quality.get("metric") else {}
    return {
        "quality_metric": scored.get("metric"),
        "quality_value": scored.get("value"),
        "wh_per_1000_correct": per_correct,
    }


QUALITY_SORT_OFFSET = 1e12  # lifts every value above zero, so that its zero-padded text sorts as the number does


def quality_sort_key(record: Record) -> str:
    """What the HTML table sorts the quality column by: the metric, then the value (a table of several tasks mixes
    metrics, whose values mean nothing to each other); "" (sorted last) without a figure."""
    scored = quality_of(record.metadata)
    if scored is None:
        return ""
    return f"{scored['metric']} {float(scored['value']) + QUALITY_SORT_OFFSET:030.9f}"


def quality_text(record: Record) -> str | None:
    """The quality in words for the facts list: figure, direction, samples, source and references; or the reason
    there is none; None for a benchmark never scored."""
    scored = quality_of(record.metadata)
    if scored is None:
        reason = quality_reason(record)
        return f"none: {reason}" if reason else None
    direction = "higher is better" if scored.get("higher_is_better") else "lower is better"
    parts = [f"{scored['metric']} {float(scored['value']):.4g} ({direction})"]
    if scored.get("samples") is not None:
        parts.append(f"on {scored['samples']} samples")
    source = ", ".join(str(scored[key]) for key in ("source", "library") if scored.get(key))
    parts += [f"{source} metric"] if source else []
    parts += [f"references: {scored['references']}"] if scored.get("references") else []
    also = scored.get("also")
    if isinstance(also, dict) and also:
        parts.append("also " + ", ".join(f"{name} {float(value):.4g}" for name, value in also.items()))
    return "; ".join(parts)


def per_correct_text(record: Record) -> str | None:
    """Wh per 1,000 correct answers, only where the metric is a share of correct answers."""
    figure = wh_per_1000_correct(record.wh_per_1000_queries(), quality_of(record.metadata))
    return None if figure is None else f"{format_wh(figure)} Wh per 1,000 correct answers ({record.energy_kind()})"
