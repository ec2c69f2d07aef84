"""The task metrics, each computed by a well-kept library, never by our own metric code.

Why these libraries: torchmetrics for accuracy, macro-F1, SQuAD exact match/F1 and Spearman, because it is one
package (9 MB, pure Python) on top of torch, which the backends need anyway, and its SQuAD metric carries SQuAD's own
answer normalisation; scikit-learn would add 51 MB plus scipy's 113 MB for the same two classification figures.
``jiwer`` for WER and ``rouge-score`` (Google's reference implementation) for ROUGE-L, as the issue asks.
pycocotools for mAP: torchmetrics' MeanAveragePrecision needs torchvision, whose registry wheel for the CPU torch of
our environments does not load (its compiled operators are built for CUDA), and pycocotools' COCOeval is what
torchmetrics itself calls underneath, so the figure is the same COCO mAP.

Every import is inside its function: the package is imported by the runner of every benchmark, and only a benchmark
that is scored pays for a metric library. Each function returns plain floats.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from importlib import metadata
from typing import Any


def library(name: str) -> str:
    """``"torchmetrics 1.9.0"``: which library (and release) produced a figure, for the record."""
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def accuracy_and_macro_f1(predicted: Sequence[int | str], reference: Sequence[int | str]) -> tuple[float, float]:
    """Share of exact class matches, and the unweighted mean of the per-class F1 over the classes that occur
    (in the references or the predictions): a model that always answers the majority class scores low on it."""
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    classes = sorted(set(predicted) | set(reference), key=str)
    index = {label: i for i, label in enumerate(classes)}
    preds = torch.tensor([index[p] for p in predicted])
    target = torch.tensor([index[r] for r in reference])
    n = max(len(classes), 2)  # torchmetrics needs at least two classes; an absent one is left out of the macro mean
    accuracy = multiclass_accuracy(preds, target, num_classes=n, average="micro")
    f1 = multiclass_f1_score(preds, target, num_classes=n, average="macro")
    return float(accuracy), float(f1)


def squad_exact_match_and_f1(predicted: Sequence[str], answers: Sequence[Sequence[str]]) -> tuple[float, float]:
    """SQuAD's exact match and token F1 (best over each question's gold answers), as shares between 0 and 1."""
    from torchmetrics.functional.text import squad

    preds = [{"prediction_text": text, "id": str(i)} for i, text in enumerate(predicted)]
    target: list[dict[str, Any]] = [
        {"answers": {"text": list(golds), "answer_start": [0] * len(golds)}, "id": str(i)}
        for i, golds in enumerate(answers)
    ]
    scores = squad(preds, target)
    return float(scores["exact_match"]) / 100.0, float(scores["f1"]) / 100.0


def word_error_rate(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """Corpus WER (all edits over all reference words) after lower-casing and removing punctuation, so that a model
    that writes "Hello, world." is not charged against a reference transcribed as "HELLO WORLD"."""
    import jiwer

    normalise = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return float(
        jiwer.wer(list(reference), list(predicted), reference_transform=normalise, hypothesis_transform=normalise)
    )


def rouge_l(predicted: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F-measure (with the Porter stemmer, as summarisation papers report it); with several references
    for one sample, the best of them counts."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score_multi(list(golds), text)["rougeL"].fmeasure
        for text, golds in zip(predicted, references, strict=True)
    ]
    return sum(scores) / len(scores)


def spearman(predicted: Sequence[float], reference: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank), the measure STS benchmarks report: it asks only
    whether the model orders the pairs as the gold scores do, whatever the scale of its similarity."""
    import torch
    from torchmetrics.functional import spearman_corrcoef

    rho = spearman_corrcoef(
        torch.tensor(list(predicted), dtype=torch.float64), torch.tensor(list(reference), dtype=torch.float64)
    )
    return float(rho)


def mean_average_precision(
    predicted: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@.5 over all images. ``predicted`` holds per image ``boxes`` ([x1, y1, x2, y2]
    pixels), ``scores`` and ``labels``; ``reference`` holds ``boxes`` in the same format and ``labels``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth, detections = _coco_records(predicted, reference)
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its whole table; the record keeps the figures
        ground = COCO()
        ground.dataset = truth
        ground.createIndex()
        found = ground.loadRes(detections) if detections else COCO()
        evaluation = COCOeval(ground, found, iouType="bbox")
        if detections:
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
    if not detections:  # nothing found: no precision anywhere (COCOeval cannot run on an empty result set)
        return {"map": 0.0, "map_50": 0.0}
    stats = evaluation.stats
    return {"map": max(float(stats[0]), 0.0), "map_50": max(float(stats[1]), 0.0)}


def _coco_records(
    predicted: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO's ground-truth dataset and result list (boxes as x, y, width, height) from per-image box lists."""

    def xywh(box: Sequence[float]) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    categories: set[int] = set()
    for image_id, (pred, gold) in enumerate(zip(predicted, reference, strict=True), 1):
        images.append({"id": image_id})
        for box, label in zip(gold["boxes"], gold["labels"], strict=True):
            wh = xywh(box)
            categories.add(int(label))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": wh,
                    "area": wh[2] * wh[3],
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(pred["boxes"], pred["scores"], pred["labels"], strict=True):
            categories.add(int(label))
            detections.append(
                {"image_id": image_id, "category_id": int(label), "bbox": xywh(box), "score": float(score)}
            )
    truth = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(categories)]}
    return truth, detections
