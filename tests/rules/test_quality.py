"""The quality table: every task has a rule, a rule says where its references may be, and the dataset loader carries
those reference columns along with each sample (and nothing else), so the metrics can read them after the phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.quality.references import SHAPES
from pytest_aienergyscore.rules.datasets import load_samples
from pytest_aienergyscore.rules.quality import RULES, can_score, quality_rule, reference_values
from pytest_aienergyscore.rules.tasks import TASKS


def test_every_task_of_the_task_table_has_a_quality_rule() -> None:
    assert set(RULES) == set(TASKS)


def test_every_rule_with_a_metric_names_where_references_may_be_and_how_they_look() -> None:
    for rule in RULES.values():
        if rule.metric is not None:
            assert rule.reference_columns, rule.task
            assert rule.metric in SHAPES, rule.task


def test_a_task_without_references_says_why() -> None:
    for rule in RULES.values():
        if rule.metric is None or rule.needs_variant:
            assert rule.reason, rule.task


def test_only_shares_of_correct_answers_are_rates() -> None:
    rates = {rule.task for rule in RULES.values() if rule.rate}
    assert rates == {"text_classification", "image_classification", "question_answering"}


def test_a_task_missing_from_the_table_gets_no_metric_rather_than_an_error() -> None:
    rule = quality_rule("teleportation")
    assert rule.metric is None
    assert "teleportation" in rule.reason
    assert not can_score("teleportation")


def test_a_variant_that_produces_outputs_is_needed_where_the_protocol_does_not() -> None:
    assert not can_score("sentence_similarity")
    assert not can_score("sentence_similarity", "default")
    assert can_score("sentence_similarity", "embed-pair")


def test_reference_values_keeps_the_reference_columns_only() -> None:
    row = {"text": "great film", "label": 1, "label_name": "positive", "review_id": "abc"}
    assert reference_values("text_classification", row, TASKS["text_classification"].columns) == {
        "label": 1,
        "label_name": "positive",
    }


def test_an_input_column_is_never_taken_as_a_reference() -> None:
    # image captioning looks for a "text" reference; a dataset whose input column were "text" must not score
    # a model against its own input.
    assert reference_values("image_captioning", {"text": "a caption"}, {"image": "text"}) == {}


def test_a_reference_value_that_is_not_plain_json_is_left_behind() -> None:
    # a backend may write the samples to a file for its worker: only plain values travel with them
    row = {"image": object(), "objects": {"bbox": [[1, 2, 3, 4]], "category": [1], "mask": b"\x00"}}
    assert reference_values("object_detection", row, TASKS["object_detection"].columns) == {}


def test_loaded_samples_carry_their_references_beside_the_task_columns(tmp_path: Path) -> None:
    rows = [
        {"text": "A delight from start to end.", "label": 1, "label_name": "positive", "source": "x"},
        {"text": "Dull and far too long.", "label": 0, "label_name": "negative", "source": "y"},
    ]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    samples, info = load_samples(TASKS["text_classification"], str(path), 2)
    assert samples == [{k: v for k, v in row.items() if k != "source"} for row in rows]
    assert info.used == 2


def test_a_gold_similarity_score_rides_along_with_its_sentence_pair(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "score": 4.5}) + "\n", encoding="utf-8")
    samples, _ = load_samples(TASKS["sentence_similarity"], str(path), 1)
    assert samples == [{"sentence1": "a", "sentence2": "b", "score": 4.5}]


@pytest.mark.parametrize("task", ["text_classification", "question_answering", "sentence_similarity"])
def test_our_offline_sets_references_are_among_the_columns_looked_for(task: str) -> None:
    assert quality_rule(task).offline_columns
    assert set(quality_rule(task).offline_columns) <= set(quality_rule(task).reference_columns)
