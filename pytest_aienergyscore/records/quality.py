"""What a benchmark's energy bought: the quality figure kept beside its energy, in one shape for every source.

A built-in metric (the task's, scored by :mod:`pytest_aienergyscore.quality`), a test's own function
(``energy_star(quality=fn)``) and ``energy_meter.set(quality=...)`` all end up as one dict in the record's metadata
under ``quality``, checked here, so that the reports, the gate and the plots read one shape:

``{"metric": "accuracy", "value": 0.91, "higher_is_better": True, "samples": 1000, "rate": True, "source": ...}``

``rate`` marks a share of correct answers (accuracy, exact match): only then does ``wh_per_1000_correct`` mean
something. A benchmark whose outputs cannot be scored keeps ``{"metric": None, "reason": "..."}``, so the report
says why there is no figure instead of leaving a blank. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

QUALITY_KEY = "quality"
REQUIRED = ("metric", "value", "higher_is_better")


class QualityError(ValueError):
    """A quality figure that cannot be kept; the message names the bad value and what is allowed, in one line."""


def check_quality(value: Any, where: str, samples: int | None = None) -> dict[str, Any]:
    """``value`` as a quality dict, or QualityError naming ``where`` it came from (``energy_meter.set(quality=...)``,
    a test's quality function) and what is wrong. ``samples`` is filled in when the source did not give it."""
    if not isinstance(value, Mapping):
        raise QualityError(f"{where} returned {value!r}; allowed: a dict with keys metric, value, higher_is_better")
    missing = [key for key in REQUIRED if key not in value]
    if missing:
        needs = "needs metric, value, higher_is_better"
        raise QualityError(f"{where}: {dict(value)!r} lacks {', '.join(missing)}; {needs}")
    metric, number, higher = value["metric"], value["value"], value["higher_is_better"]
    if not isinstance(metric, str) or not metric.strip():
        raise QualityError(f"{where}: metric {metric!r} must be a non-empty name (e.g. 'accuracy')")
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise QualityError(f"{where}: value {number!r} of {metric} must be a finite number")
    if not isinstance(higher, bool):
        raise QualityError(f"{where}: higher_is_better {higher!r} of {metric} must be True or False")
    checked = dict(value)
    checked["value"] = float(number)
    checked.setdefault("samples", samples)
    checked.setdefault("rate", False)
    checked.setdefault("source", "custom")
    return checked


def no_quality(reason: str) -> dict[str, Any]:
    """The record's answer when nothing could be scored, with the reason the reports show."""
    return {"metric": None, "reason": reason}


def quality_of(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The scored quality in a record's metadata; None when there is none (not scored, or scored as impossible)."""
    quality = metadata.get(QUALITY_KEY)
    if isinstance(quality, Mapping) and quality.get("metric") and quality.get("value") is not None:
        return dict(quality)
    return None


def wh_per_1000_correct(wh_per_1000_queries: float | None, quality: Mapping[str, Any] | None) -> float | None:
    """Energy per 1,000 correct answers: only for a rate of correct answers above zero (a share of 0 buys nothing,
    and a correlation or an error rate is not a count of correct answers)."""
    if wh_per_1000_queries is None or not quality or not quality.get("rate"):
        return None
    share = float(quality["value"])
    return wh_per_1000_queries / share if share > 0 else None
