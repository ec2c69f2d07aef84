"""Finding a task's references in the loaded samples, and checking their shape before any metric reads them.

Why a shape check per metric: the official datasets' reference columns could not be established from a source
(:mod:`pytest_aienergyscore.rules.quality`), so a candidate column is used only when its values really have the shape
the metric needs; a column of the right name but the wrong content (a free-text ``label``, say) must give "no quality,
because ...", never a wrong figure or a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_aienergyscore.rules.quality import QualityRule

# What a reference of each metric looks like, in words, for the reason given when no column fits.
SHAPES = {
    "accuracy": "a class index or a label name",
    "exact_match": "SQuAD answers {'text': [...], 'answer_start': [...]}",
    "wer": "a transcript",
    "rouge_l": "a reference text (or a list of them)",
    "spearman": "a number (gold similarity)",
    "map": "COCO objects {'bbox': [[x, y, w, h], ...], 'category': [...]}",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _texts(value: Any) -> list[str] | None:
    """A reference text or list of texts as a list of non-empty texts; None when it is neither."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        return None
    kept = [item for item in items if item.strip()]
    return kept or None


def _label(value: Any) -> int | str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    return None


def _answers(value: Any) -> list[str] | None:
    """SQuAD answers' texts; None for an empty list too (see :func:`_unanswerable`)."""
    if not isinstance(value, Mapping):
        return None
    return _texts(value.get("text"))


def _objects(value: Any) -> dict[str, list[Any]] | None:
    """COCO-style objects as boxes [x1, y1, x2, y2] and integer labels; None for any other shape."""
    if not isinstance(value, Mapping):
        return None
    boxes = value.get("bbox")
    labels = next((value[key] for key in ("category", "label", "labels") if key in value), None)
    if not isinstance(boxes, list) or not isinstance(labels, list) or len(boxes) != len(labels):
        return None
    if not all(isinstance(b, (list, tuple)) and len(b) == 4 and all(map(_is_number, b)) for b in boxes):
        return None
    if not all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        return None
    return {"boxes": [[x, y, x + w, y + h] for x, y, w, h in boxes], "labels": labels}


_READERS = {
    "accuracy": _label,
    "exact_match": _answers,
    "wer": lambda value: value if isinstance(value, str) and value.strip() else None,
    "rouge_l": _texts,
    "spearman": lambda value: float(value) if _is_number(value) else None,
    "map": _objects,
}


def read_reference(metric: str, value: Any) -> Any:
    """The reference as the metric reads it, or None when ``value`` does not have the metric's shape."""
    return _READERS[metric](value)


def find_column(rule: QualityRule, samples: Sequence[Mapping[str, Any]]) -> str | None:
    """The first candidate column that every sample carrying it fills in the metric's shape (a missing or empty
    value leaves that sample out), and that at least one sample fills: a column with any wrongly shaped value is
    passed over rather than half used."""
    assert rule.metric is not None
    for column in rule.reference_columns:
        values = [sample[column] for sample in samples if column in sample and not _blank(sample[column])]
        readable = [read_reference(rule.metric, value) for value in values]
        if any(item is not None for item in readable) and all(
            item is not None or _unanswerable(rule.metric, value) for value, item in zip(values, readable, strict=True)
        ):
            return column
    return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple)) and not value)


def _unanswerable(metric: str, value: Any) -> bool:
    """A SQuAD 2 question without an answer (empty text list): the right shape, but nothing for SQuAD's metric to
    compare with, so that sample is left out and counted rather than the column refused."""
    return metric == "exact_match" and isinstance(value, Mapping) and value.get("text") == []
