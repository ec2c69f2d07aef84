"""Our offline sample sets carry references written for this project, so offline runs can report quality: each set
must hold its task's columns, its references must have the shape the scorers read, and the gold values must be
worth scoring against (a span really at its offset, balanced labels, similarity scores spread over the scale)."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from typing import Any

import pytest

from pytest_aienergyscore.rules.datasets import load_samples, offline_sample_set
from pytest_aienergyscore.rules.tasks import TASKS, get_task

SAMPLE_FILES = ("text_generation", "sentence_similarity", "text_classification", "extractive_qa")


def rows_of(name: str) -> list[dict[str, Any]]:
    text = (resources.files("pytest_aienergyscore") / "data" / "samples" / f"{name}.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("task", ["sentence_similarity", "text_classification", "question_answering"])
def test_every_row_of_an_offline_set_holds_its_tasks_columns_filled_in(task: str) -> None:
    spec = get_task(task)
    name = offline_sample_set(spec)
    assert name is not None
    for number, row in enumerate(rows_of(name), 1):
        for column in spec.columns.values():
            assert isinstance(row.get(column), str) and row[column].strip(), (name, number, column)


def test_every_shipped_sample_file_stands_in_for_an_official_dataset_of_the_task_table() -> None:
    official = {spec.dataset.rsplit("/", 1)[-1] for spec in TASKS.values()}
    shipped = {
        p.name[: -len(".jsonl")]
        for p in (resources.files("pytest_aienergyscore") / "data" / "samples").iterdir()
        if p.name.endswith(".jsonl")
    }
    assert shipped == set(SAMPLE_FILES)
    assert shipped <= official


def test_every_extractive_qa_answer_is_the_span_of_its_context_at_its_offset() -> None:
    rows = rows_of("extractive_qa")
    assert len(rows) >= 30
    for number, row in enumerate(rows, 1):
        answers = row["answers"]
        assert len(answers["text"]) == len(answers["answer_start"]) >= 1, number
        for text, start in zip(answers["text"], answers["answer_start"], strict=True):
            assert text.strip() and isinstance(start, int), number
            assert row["context"][start : start + len(text)] == text, (number, text, start)


def test_the_classification_labels_are_balanced_and_their_names_agree_with_them() -> None:
    rows = rows_of("text_classification")
    assert len(rows) >= 60
    assert Counter(row["label"] for row in rows) == {0: len(rows) // 2, 1: len(rows) // 2}
    assert all(row["label_name"] == ("positive" if row["label"] else "negative") for row in rows)
    assert len({row["text"] for row in rows}) == len(rows)
    for first in range(1, len(rows) + 1):  # any first N rows a run takes stay balanced within one
        ones = sum(row["label"] for row in rows[:first])
        assert abs(2 * ones - first) <= 1, first


def test_the_gold_similarity_scores_lie_on_the_sts_scale_and_spread_over_it() -> None:
    rows = rows_of("sentence_similarity")
    assert len(rows) == 100
    scores = [row["score"] for row in rows]
    assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
    bands = Counter(min(int(s), 4) for s in scores)  # 0-1, 1-2, 2-3, 3-4, 4-5
    assert set(bands) == {0, 1, 2, 3, 4} and min(bands.values()) >= 5, bands
    assert max(bands.values()) <= 45, bands  # not nearly all paraphrases: a rank correlation must mean something
    assert len({(row["sentence1"], row["sentence2"]) for row in rows}) == len(rows)


@pytest.mark.parametrize(
    ("task", "file", "available"),
    [("text_classification", "text_classification", 60), ("question_answering", "extractive_qa", 30)],
)
def test_a_new_offline_set_loads_in_place_of_its_official_dataset_and_says_so(
    task: str, file: str, available: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HF_HUB_OFFLINE", "1"
    )  # the official dataset is not in the cache here: the offline set stands in
    samples, info = load_samples(get_task(task), num_samples=5)
    assert info.source == "offline samples" and info.official is False
    assert info.name == f"pytest-aienergyscore offline samples ({file}.jsonl)"
    assert "not comparable" in info.note
    assert info.available == available and info.used == len(samples) == 5
    assert set(samples[0]) >= set(get_task(task).columns)
