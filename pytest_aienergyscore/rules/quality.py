"""Which quality each task can show beside its energy: the metric, where its references live, and why not when not.

One table, so the scorer (:mod:`pytest_aienergyscore.quality`), the runner (keep outputs or not), the dataset loader
(which extra columns to carry along with each sample) and the docs read the same rule.

Where the references of the OFFICIAL datasets are (searched 2026-12-01, about ten minutes): the Hub pages of
``AIEnergyScore/<name>`` (and the older ``EnergyStarAI/<name>``) that are reachable from here show only the file lists:
each dataset is one parquet file with a README.md of 274-311 bytes (the ``dataset_info`` block alone), no prose card,
and the viewer pages were not stored. So no reference column could be established from a source. Each task therefore
lists plausible candidates (the column names its usual source datasets use: ``label`` for IMDB/ImageNet-style
classification, ``answers`` for SQuAD, ``highlights``/``summary`` for CNN-DailyMail/XSum, ``text``/``transcription``
for LibriSpeech/Common Voice, ``objects`` for COCO-style detection, ``caption`` for captioning), and the scorer uses a
column only when the loaded rows really carry it in the shape the metric needs; otherwise the benchmark records "no
quality" with a reason naming the columns looked for.

Our own offline sets (``pytest_aienergyscore/data/samples``) carry references written for this project:
``sentence_similarity.jsonl`` ``score`` (gold similarity 0-5), ``text_classification.jsonl`` ``label`` (0 negative,
1 positive) and ``label_name``, ``extractive_qa.jsonl`` ``answers`` (``{"text": [...], "answer_start": [...]}``).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

OFFLINE_REFERENCES = "pytest-aienergyscore offline sample set: references written for this project"


@dataclass(frozen=True)
class QualityRule:
    """How one task's outputs are scored.

    ``metric`` None means the task has no references at all (``reason`` says why). ``needs_variant`` names the protocol
    variant that produces something to score when the task's own protocol does not (one forward pass of a summariser
    yields no summary), with ``reason`` telling the user so.
    """

    task: str
    metric: str | None
    higher_is_better: bool = True
    rate: bool = False
    also: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    offline_columns: tuple[str, ...] = ()
    needs_variant: str | None = None
    reason: str = ""

    @property
    def reference_columns(self) -> tuple[str, ...]:
        """Every column a loaded row may carry the references in, official candidates first, no repeats."""
        return tuple(dict.fromkeys(self.columns + self.offline_columns))


_GENERATED_TEXT = ("reference", "references", "target", "answer")
_NO_ANSWERS = "the official prompts have no reference answers"

RULES: Mapping[str, QualityRule] = MappingProxyType(
    {
        rule.task: rule
        for rule in (
            QualityRule("text_generation", "rouge_l", columns=_GENERATED_TEXT, reason=_NO_ANSWERS),
            QualityRule("reasoning", "rouge_l", columns=_GENERATED_TEXT, reason=_NO_ANSWERS),
            QualityRule(
                "summarization",
                "rouge_l",
                columns=("highlights", "summary", "reference", "target"),
                needs_variant="generate",
                reason="the protocol is one forward pass, so no summary is generated to score; "
                "variant='generate' generates summaries and scores ROUGE-L",
            ),
            QualityRule(
                "question_answering",
                "exact_match",
                rate=True,
                also=("f1",),
                columns=("answers",),
                offline_columns=("answers",),
            ),
            QualityRule(
                "text_classification",
                "accuracy",
                rate=True,
                also=("macro_f1",),
                columns=("label", "labels"),
                offline_columns=("label", "label_name"),
            ),
            QualityRule(
                "image_classification",
                "accuracy",
                rate=True,
                also=("macro_f1",),
                columns=("label", "labels", "fine_label"),
            ),
            QualityRule(
                "sentence_similarity",
                "spearman",
                columns=("score", "similarity_score", "relatedness_score", "label"),
                offline_columns=("score",),
                needs_variant="embed-pair",
                reason="the protocol encodes the pair as one sequence through the base model, which yields no "
                "similarity score; variant='embed-pair' embeds both sentences and scores Spearman",
            ),
            # COCO-style rows: objects = {"bbox": [[x, y, width, height], ...] in pixels, "category": [int, ...]}
            QualityRule("object_detection", "map", also=("map_50",), columns=("objects",)),
            QualityRule(
                "automatic_speech_recognition",
                "wer",
                higher_is_better=False,
                columns=("text", "transcription", "sentence", "transcript"),
            ),
            QualityRule("image_captioning", "rouge_l", columns=("caption", "captions", "text", "sentences")),
            QualityRule(
                "image_generation",
                None,
                reason="no references exist for generated images (the prompts come without target images)",
            ),
        )
    }
)


def quality_rule(task: str) -> QualityRule:
    """The rule of ``task`` (a name from the task table); a task added to the table without one gets "no metric"
    rather than a KeyError, so a new task never breaks a run for want of a quality rule."""
    return RULES.get(task) or QualityRule(task, None, reason=f"no quality metric is defined for task {task}")


def can_score(task: str, variant: str | None = None) -> bool:
    """Whether a benchmark of ``task`` under ``variant`` yields outputs a built-in metric can read, so the runner keeps
    outputs only when they will be used (the references are checked later, on the loaded rows)."""
    rule = quality_rule(task)
    if rule.metric is None:
        return False
    return rule.needs_variant is None or rule.needs_variant == variant


def reference_values(task: str, row: Mapping[str, Any], roles: Mapping[str, str]) -> dict[str, Any]:
    """The reference columns a dataset row carries for ``task``, kept beside the sample so that the metrics (and a
    test's own quality function) can read them after the phases. The task's input columns are never taken as
    references, and only JSON-plain values travel (a backend may write the samples to a file for its worker)."""
    inputs = set(roles.values())
    return {
        column: row[column]
        for column in quality_rule(task).reference_columns
        if column in row and column not in inputs and _json_plain(row[column])
    }


def _json_plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_plain(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _json_plain(item) for key, item in value.items())
    return False
