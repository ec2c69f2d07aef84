"""Scoring a benchmark's kept outputs after its metered phases: the task's built-in metric, or the test's own.

Both end as the one quality dict of :mod:`pytest_aienergyscore.records.quality`. A built-in score never raises for
want of references or outputs: energy was measured either way, and the record says why there is no quality figure.
A test's own function is the test's code, so its failure is the test's failure: one QualityError line naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_aienergyscore.quality import metrics
from pytest_aienergyscore.quality.references import SHAPES, find_column, read_reference
from pytest_aienergyscore.records.quality import QualityError, check_quality, no_quality
from pytest_aienergyscore.rules import quality as rules
from pytest_aienergyscore.rules.quality import OFFLINE_REFERENCES, QualityRule, quality_rule
from pytest_aienergyscore.rules.tasks import TaskSpec

QUALITY_EXTRA = "pip install 'pytest-aienergyscore[quality]'"


class OutputShapeError(ValueError):
    """A backend's readable output that is not what the task's metric reads (see the shared output formats)."""


def can_score(task: str, variant: str | None = None, samples: Sequence[Mapping[str, Any]] | None = None) -> bool:
    """Whether a benchmark's outputs are worth keeping for the built-in metric: the task under ``variant`` produces
    something to score and, when the loaded ``samples`` are given, they carry references (text generation on the
    official prompts has none, so nothing is kept for it)."""
    if not rules.can_score(task, variant):
        return False
    return samples is None or find_column(quality_rule(task), samples) is not None


def score_outputs(
    task: TaskSpec, samples: list[dict[str, Any]], outputs: list[Any] | None, dataset_name: str, offline: bool
) -> dict[str, Any]:
    """The task's built-in quality of ``outputs`` (readable, one per sample, in sample order) against the references
    the samples carry; ``no_quality(reason)`` whenever that cannot be done, the reason saying what was missing."""
    rule = quality_rule(task.name)
    if rule.metric is None:
        return no_quality(rule.reason)
    if outputs is None:
        return no_quality(rule.reason if rule.needs_variant else "the backend kept no outputs to score")
    if len(outputs) != len(samples):
        return no_quality(f"{len(outputs)} outputs for {len(samples)} samples: they cannot be paired")
    column = find_column(rule, samples)
    if column is None:
        return no_quality(_no_references(rule, dataset_name))
    pairs = [
        (output, read_reference(rule.metric, sample.get(column)))
        for sample, output in zip(samples, outputs, strict=True)
    ]
    scored = [(output, reference) for output, reference in pairs if output is not None and reference is not None]
    if not scored:
        return no_quality(f"no sample has both an output and a reference in column {column!r}")
    try:
        value, also, library = _SCORERS[rule.metric]([o for o, _ in scored], [r for _, r in scored])
    except OutputShapeError as err:
        return no_quality(f"the backend's outputs cannot be scored for {task.name}: {err}")
    except ImportError as err:
        return no_quality(f"{rule.metric} needs the quality extra ({err.name or err} is missing): {QUALITY_EXTRA}")
    quality = _built_in(rule, value, len(scored), _where(dataset_name, column, offline), library, also)
    if len(scored) < len(samples):
        left = len(samples) - len(scored)
        quality["note"] = f"{left} of {len(samples)} samples left out: no output or no reference in {column!r}"
    return quality


def score_custom(
    fn: Callable[[list[dict[str, Any]], list[Any]], Any], samples: list[dict[str, Any]], outputs: list[Any] | None
) -> dict[str, Any]:
    """A test's own quality function, called with (samples, outputs) after the phases; its result checked, or one
    QualityError line naming the function (what it raised, or what is wrong with what it returned)."""
    where = f"quality function {getattr(fn, '__qualname__', None) or repr(fn)}"
    try:
        value = fn(samples, outputs)  # type: ignore[arg-type]  # None when the backend could keep no outputs
    except Exception as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise QualityError(f"{where} raised {type(err).__name__}{': ' + text if text else ''}") from None
    quality = check_quality(value, where, samples=len(samples))
    quality["source"] = "custom"
    return quality


def _built_in(
    rule: QualityRule, value: float, samples: int, references: str, library: str, also: Mapping[str, float]
) -> dict[str, Any]:
    quality: dict[str, Any] = {
        "metric": rule.metric,
        "value": value,
        "higher_is_better": rule.higher_is_better,
        "samples": samples,
        "rate": rule.rate,
        "source": "built-in",
        "references": references,
        "library": library,
    }
    if also:
        quality["also"] = dict(also)
    return quality


def _where(dataset_name: str, column: str, offline: bool) -> str:
    """Where the references came from, as the reports show it: ours are marked as written for this project."""
    if offline:
        return f"{OFFLINE_REFERENCES} ({dataset_name}, column {column!r})"
    return f"{dataset_name} column {column!r}"


def _no_references(rule: QualityRule, dataset_name: str) -> str:
    looked = ", ".join(repr(column) for column in rule.reference_columns)
    reason = f"no references: {dataset_name} has no column {looked} holding {SHAPES[str(rule.metric)]}"
    return f"{reason} ({rule.reason})" if rule.reason and not rule.needs_variant else reason


# One scorer per metric: (readable outputs, references) -> (value, other figures, library that computed them).
Scored = tuple[float, dict[str, float], str]


def _classification(outputs: Sequence[Any], references: Sequence[int | str]) -> Scored:
    """Class index against an integer reference, the model's label name (any case) against a text one."""
    for output in outputs:
        if not isinstance(output, Mapping) or "label" not in output:
            raise OutputShapeError(f"expected {{'label': int, 'name': str}}, got {output!r:.80}")
    predicted = [
        output["label"] if isinstance(reference, int) else str(output.get("name", "")).strip().lower()
        for output, reference in zip(outputs, references, strict=True)
    ]
    accuracy, macro_f1 = metrics.accuracy_and_macro_f1(predicted, list(references))
    return accuracy, {"macro_f1": macro_f1}, metrics.library("torchmetrics")


def _texts(outputs: Sequence[Any]) -> list[str]:
    for output in outputs:
        if not isinstance(output, str):
            raise OutputShapeError(f"expected text, got {output!r:.80}")
    return list(outputs)


def _squad(outputs: Sequence[Any], references: Sequence[list[str]]) -> Scored:
    exact, f1 = metrics.squad_exact_match_and_f1(_texts(outputs), references)
    return exact, {"f1": f1}, metrics.library("torchmetrics")


def _wer(outputs: Sequence[Any], references: Sequence[str]) -> Scored:
    return metrics.word_error_rate(_texts(outputs), references), {}, metrics.library("jiwer")


def _rouge(outputs: Sequence[Any], references: Sequence[list[str]]) -> Scored:
    return metrics.rouge_l(_texts(outputs), references), {}, metrics.library("rouge-score")


def _spearman(outputs: Sequence[Any], references: Sequence[float]) -> Scored:
    for output in outputs:
        if isinstance(output, bool) or not isinstance(output, (int, float)):
            raise OutputShapeError(f"expected a similarity score, got {output!r:.80}")
    if len(outputs) < 2:
        raise OutputShapeError("a rank correlation needs at least two scored pairs")
    return metrics.spearman([float(o) for o in outputs], references), {}, metrics.library("torchmetrics")


def _detection(outputs: Sequence[Any], references: Sequence[dict[str, Any]]) -> Scored:
    for output in outputs:
        parts = [output.get(key) for key in ("boxes", "scores", "labels")] if isinstance(output, Mapping) else []
        lists = [part for part in parts if isinstance(part, list)]
        if len(lists) != 3 or len({len(part) for part in lists}) != 1:
            raise OutputShapeError(f"expected {{'boxes', 'scores', 'labels'}} lists of one length, got {output!r:.80}")
    figures = metrics.mean_average_precision(list(outputs), list(references))
    return figures["map"], {"map_50": figures["map_50"]}, metrics.library("pycocotools")


_SCORERS: dict[str, Callable[[Sequence[Any], Sequence[Any]], Scored]] = {
    "accuracy": _classification,
    "exact_match": _squad,
    "wer": _wer,
    "rouge_l": _rouge,
    "spearman": _spearman,
    "map": _detection,
}
