"""The task table is the one list of task names: the lists others need (classed tasks, the reasoning switch, the
leaderboard's files) are derived from it, and each derivation agrees with what AI Energy Score published."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS, TASKS, with_reasoning


def test_the_classed_tasks_are_exactly_those_whose_published_rows_carry_a_model_class() -> None:
    with_class = {row.task for row in score.raw_published_rows() if row.model_class}
    assert CLASSED_TASKS == with_class == {"text_generation", "reasoning"}


def test_only_classed_tasks_need_a_class_for_their_stars() -> None:
    for task in score.TASKS:
        if task in CLASSED_TASKS:
            with pytest.raises(ValueError, match="binned per model class"):
                score.star_bins(task)
        else:
            assert score.star_bins(task).low > 0


@pytest.mark.parametrize(
    ("task", "on", "expected"),
    [
        ("text_generation", True, "reasoning"),
        ("text_generation", False, "text_generation"),
        ("reasoning", False, "text_generation"),
        ("reasoning", True, "reasoning"),
        ("summarization", True, None),
        ("summarization", False, None),
        ("image_captioning", True, None),
    ],
)
def test_reasoning_switches_text_generation_and_nothing_else(task: str, on: bool, expected: str | None) -> None:
    assert with_reasoning(task, on) == expected


def test_every_task_with_a_reasoning_switch_is_text_generation_or_its_reasoning_row() -> None:
    switchable = {name for name in TASKS if with_reasoning(name, True) is not None}
    assert switchable == {"text_generation", "reasoning"}
    assert all(TASKS[with_reasoning(name, True) or ""].reasoning for name in switchable)


def test_the_feb_2025_edition_files_every_task_but_reasoning() -> None:
    published = {row.task for row in score.raw_published_rows() if row.edition == "2025-02"}
    assert set(score.EDITION_FILES["2025-02"]) == published == set(TASKS) - {"reasoning"}
