"""A result's AI Energy Score stars: placed in the published bins of its task (and class), with why, when not.

The stars are only as good as the comparison: a result that is not comparable with the leaderboard (CPU, another GPU,
fewer queries, changed parameters) still gets the stars its figure would earn, because that is useful for one's own
comparisons, but they are marked *indicative* everywhere they are shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS, UnknownTask, get_task


@dataclass(frozen=True)
class Rating:
    """Stars (None when they cannot be given, with ``note`` saying why) and the bins they came from."""

    stars: int | None
    indicative: bool
    note: str | None = None
    task: str | None = None
    model_class: str | None = None
    edition: str | None = None
    bins_wh: tuple[float, ...] | None = None  # low, four inner edges, high; Wh per 1,000 queries

    def text(self) -> str:
        """``3/5``, ``3/5*`` when indicative, ``-`` when there are no stars."""
        if self.stars is None:
            return "-"
        return f"{self.stars}/5" + ("*" if self.indicative else "")


def leaderboard_task(task: str | None) -> str | None:
    """The leaderboard's name of one of our tasks (or an alias of one), None when it has no published results."""
    if not task:
        return None
    try:
        return get_task(task).leaderboard_task
    except UnknownTask:
        return None


def rate(record: Record, reasons: list[str] | None = None) -> Rating:
    """The record's stars in the current edition's bins of its task (and model class for text generation)."""
    indicative = bool(not_comparable_reasons(record) if reasons is None else reasons)
    task = leaderboard_task(record.task)
    if task is None:
        return Rating(None, indicative, f"task {record.task!r} is not on the leaderboard")
    partial = record.partial_work()
    if partial:  # stars from part of the work would rate a workload that never ran
        return Rating(None, indicative, partial, task)
    model_class = record.model_class.upper() if record.model_class else None
    if task in CLASSED_TASKS and model_class not in MODEL_CLASSES:
        return Rating(None, indicative, "model class unknown (--energy-model-class)", task)
    value = record.wh_per_1000_queries()
    if value is None:
        return Rating(None, indicative, "no query count", task, model_class)
    klass = model_class if task in CLASSED_TASKS else None
    bins = score.star_bins(task, klass)
    return Rating(
        stars=bins.stars(value / 1000.0),
        indicative=indicative,
        task=task,
        model_class=klass,
        edition=score.CURRENT_EDITION[task],
        bins_wh=tuple(edge * 1000.0 for edge in (bins.low, *bins.edges, bins.high)),
    )


def rules_summary(record: Record, reasons: list[str]) -> dict[str, Any]:
    """The GPU_ENERGY_SUMMARY.json keys of the rules: class, parameters, stars and the bins that gave them."""
    rating = rate(record, reasons)
    size = record.metadata.get("model_size") or {}
    return {
        "model_class": record.model_class,
        "parameters": size.get("parameters"),
        "model_class_source": size.get("class_source"),
        "stars": rating.stars,
        "stars_indicative": rating.indicative if rating.stars is not None else None,
        "stars_note": rating.note,
        "star_bins": {
            "units": "Wh per 1000 queries",
            "task": rating.task,
            "model_class": rating.model_class,
            "edition": rating.edition,
            "edges": list(rating.bins_wh) if rating.bins_wh else None,
        },
        "scored_at": time.strftime("%Y-%m-%d", time.localtime(record.finished_at or time.time())),
    }
