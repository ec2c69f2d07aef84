"""The gate's watch on quality (``--energy-quality-drop PCT``): what a benchmark's energy bought, compared with the
baseline's the same way its energy is.

Why it is shaped this way:
- A cheaper model that answers worse is not an improvement: CI must be able to fail on a quality drop as it fails on
  an energy rise. A drop is measured in the metric's own direction (``higher_is_better``): accuracy falling and WER
  rising are both drops.
- Quality is only compared like with like: the same metric, the same direction, scored on the same number of
  samples. Anything else, or a figure on one side only (a baseline saved before quality was scored, a scorer that
  could not run), is a warning that says why, never a failure: the gate must not fail on what it cannot judge.
- The figure is scored on fixed samples with deterministic outputs, so the threshold alone decides (no noise rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_aienergyscore.records.quality import quality_of
from pytest_aienergyscore.records.record import Record

QUALITY = "quality"  # Verdict.kind of a quality verdict (an energy verdict's kind is "energy")
QUALITY_DROP = "quality drop"
QUALITY_GAIN = "quality gain"
QUALITY_KEPT = "quality kept"
QUALITY_STATUSES = (QUALITY_DROP, QUALITY_GAIN, QUALITY_KEPT)


def quality_entry(record: Record) -> dict[str, Any] | None:
    """The quality a baseline keeps for one benchmark (and the gate compares): None when it was not scored."""
    scored = quality_of(record.metadata)
    if scored is None:
        return None
    keys = ("metric", "value", "higher_is_better", "samples", "rate")
    return {key: scored.get(key) for key in keys}


def quality_entry_problem(value: Any) -> str | None:
    """What is wrong with a baseline entry's ``quality`` (None or a dict as :func:`quality_entry` writes), in words
    for a one-line BaselineError; None when it is usable."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"quality must be an object or null, not {value!r}"
    metric, number = value.get("metric"), value.get("value")
    if not isinstance(metric, str) or not metric:
        return f"quality.metric must be a metric's name, not {metric!r}"
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        return f"quality.value of {metric} must be a finite number, not {number!r}"
    if not isinstance(value.get("higher_is_better"), bool):
        return f"quality.higher_is_better of {metric} must be true or false, not {value.get('higher_is_better')!r}"
    return None


def describe(quality: Mapping[str, Any]) -> str:
    """``accuracy 0.920``: a figure with its metric, as the warnings and labels name it."""
    return f"{quality['metric']} {float(quality['value']):.3f}"


def one_sided(base: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str | None:
    """Why two quality figures cannot be compared (a figure on one side only, another metric, direction or sample
    count); None when they can."""
    if base is None and now is not None:
        return f"quality only in this session ({describe(now)}): the baseline has none"
    if now is None and base is not None:
        return f"quality only in the baseline ({describe(base)}): this session has none"
    assert base is not None and now is not None
    if base["metric"] != now["metric"]:
        return f"quality metric {base['metric']} in the baseline, {now['metric']} now"
    if bool(base["higher_is_better"]) != bool(now["higher_is_better"]):
        return f"{now['metric']} is better higher on one side and lower on the other"
    if base.get("samples") and now.get("samples") and base["samples"] != now["samples"]:
        return f"{now['metric']} scored on {base['samples']} samples in the baseline, {now['samples']} now"
    return None


def worse_pct(before: float, now: float, higher_is_better: bool) -> float:
    """How much worse ``now`` is than ``before``, in percent of the baseline, in the metric's direction (negative:
    better). From a baseline of 0, any step the wrong way is infinitely worse: no threshold lets it pass."""
    worse = (before - now) if higher_is_better else (now - before)
    if before == 0:
        return 0.0 if worse == 0 else math.copysign(math.inf, worse)
    return worse / abs(before) * 100.0


def quality_status(worse: float, threshold: float) -> str:
    """Drop beyond the threshold, gain beyond it, or kept within it."""
    if worse > threshold:
        return QUALITY_DROP
    if worse < -threshold:
        return QUALITY_GAIN
    return QUALITY_KEPT


def quality_label(status: str, metric: str | None, before: float | None, now: float | None, reason: str) -> str:
    """The verdict line: the metric, both values and how far it moved (``quality drop: accuracy 0.920 -> 0.810,
    12.0% worse, over 5%``)."""
    if before is None or now is None:
        return f"not compared: {reason}" if reason else "not compared"
    return f"{status}: {metric} {before:.3f} -> {now:.3f}, {reason}"


def movement(worse: float, threshold: float, gates: bool) -> str:
    """How far the figure moved, against which threshold: the verdict's reason (``12.0% worse, over
    --energy-quality-drop 5%``)."""
    if worse == 0:
        return "unchanged"
    size = "from 0" if math.isinf(worse) else f"{abs(worse):.1f}%"
    direction = "worse" if worse > 0 else "better"
    over = "over" if abs(worse) > threshold else "within"
    rule = f"--energy-quality-drop {threshold:g}%" if gates else f"{threshold:g}% (reported only)"
    return f"{size} {direction}, {over} {rule}"
