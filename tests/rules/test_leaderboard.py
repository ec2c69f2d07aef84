"""Tests for the AI Energy Score star rating rebuilt from the packaged leaderboard data."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from importlib import resources

import pytest

from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.leaderboard import PublishedResult
from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS, TASKS

# 246 rows as filed: 166 in the ten Feb 2025 files, 18 in Dec 2025 reasoning.csv and 62 in Dec 2025
# text_generation.csv. The 62 include 40 re-listed Feb 2025 rows (test date "Feb 25", rounded to 6 decimals), and two
# Feb 2025 files list a model twice, so 246 - 40 - 2 = 204 rows remain after de-duplication.
RAW_ROWS = 246
RELISTED_FEB_ROWS = 40
SAME_FILE_DUPLICATES = 2
DEDUPLICATED_ROWS = RAW_ROWS - RELISTED_FEB_ROWS - SAME_FILE_DUPLICATES

# The CSVs must stay byte-for-byte copies of the published files (see SOURCES.md); a line-ending conversion on
# checkout, for instance, would show up here.
CSV_SHA256 = {
    "2025-02/asr.csv": "e585162d91583294ac93c9cc5b21b9d78e59f5abfb9200824d4433133f649654",
    "2025-02/image_captioning.csv": "a73aaf3f252585668cd7b2b13d64d22157169006e300ba6602b7b957f875c265",
    "2025-02/image_classification.csv": "7dbde120cf75c25de1202ee39f222975896b630584182c0dd66be488f31905dd",
    "2025-02/image_generation.csv": "ae4b8e82b4d864ce88c3f20be68512e9749ac907d30e8145ec8fa6ee7bb5e77a",
    "2025-02/object_detection.csv": "e57682578e59833f2f4f8912089042512b6383b0e3ce88fc1d4adba973be532d",
    "2025-02/question_answering.csv": "f85ea5c48a58cb23d16265650c9a82771f951389bac659479f222f86c535534e",
    "2025-02/sentence_similarity.csv": "dc09f621631cb8aafb8e80199173009fc8d75bcfe40cececa87932160a9918d9",
    "2025-02/summarization.csv": "ef765a1ac94a758c3b1025d433845a0082e692995f908be52430a3e527b831a1",
    "2025-02/text_classification.csv": "b291b8f8e78f592c6a1c75f14378d83f7b20d84075c3ce0e2c136b2be984f63d",
    "2025-02/text_generation.csv": "e3f51b780f4e5d10aa07fa6ed7ac5bb3c3c290926a2668920eb9fe4e2b2cd839",
    "2025-12/reasoning.csv": "0b2d687103e4dd0f319548cca24ba5038a20b388a16495348c01f51325e8bdbb",
    "2025-12/text_generation.csv": "40944c24b70444e4388929830aa3b79f5a69d0bf462171e12a724dd9717db8e9",
}

# Every task of the task table is on the leaderboard (the table is the one list of task names).
ALL_TASKS = tuple(spec.leaderboard_task for spec in TASKS.values() if spec.leaderboard_task)


def _all_published() -> list[PublishedResult]:
    """Every de-duplicated row of every task and edition."""
    rows: list[PublishedResult] = []
    for task in score.TASKS:
        for edition in score.EDITIONS:
            try:
                rows.extend(score.published_results(task, edition))
            except ValueError:  # this edition did not publish the task
                continue
    return rows


def _row_id(row: PublishedResult) -> str:
    return f"{row.edition}/{row.task}/{row.model_class or '-'}/{row.raw_model}/{row.kwh_per_1k}"


def _recomputed(row: PublishedResult) -> int:
    return score.star_bins(row.task, row.model_class, row.edition).stars(row.kwh_per_1k)


# --- data and files -------------------------------------------------------------------------------------------------


def test_packaged_csvs_are_byte_identical_copies() -> None:
    base = resources.files("pytest_aienergyscore").joinpath("data").joinpath("leaderboard")
    for relpath, digest in CSV_SHA256.items():
        edition, name = relpath.split("/")
        data = base.joinpath(edition).joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, relpath
    assert base.joinpath("SOURCES.md").is_file()


def test_task_files_cover_all_tasks_with_current_edition() -> None:
    assert tuple(score.TASK_FILES) == ALL_TASKS
    assert len(ALL_TASKS) == len(CSV_SHA256) - 1  # one file per task, and text generation in both editions
    assert score.TASK_FILES["text_generation"] == "2025-12/text_generation.csv"
    assert score.TASK_FILES["reasoning"] == "2025-12/reasoning.csv"
    assert score.TASK_FILES["automatic_speech_recognition"] == "2025-02/asr.csv"
    for task in ALL_TASKS:
        expected = "2025-12" if task in {"text_generation", "reasoning"} else "2025-02"  # what Dec 2025 published
        assert score.CURRENT_EDITION[task] == expected
        assert score.TASK_FILES[task].startswith(expected + "/")
        assert score.TASK_FILES[task] in CSV_SHA256


# --- every published star is reproduced -----------------------------------------------------------------------------


@pytest.mark.parametrize("row", score.raw_published_rows(), ids=_row_id)
def test_published_star_is_reproduced(row: PublishedResult) -> None:
    assert _recomputed(row) == row.stars


def test_every_raw_row_is_checked_and_reproduced() -> None:
    rows = score.raw_published_rows()
    checked = 0
    mismatches = []
    for row in rows:
        checked += 1
        if _recomputed(row) != row.stars:
            mismatches.append(row)
    assert mismatches == []
    # All 246 rows as filed, duplicates and re-listings included: each is checked against its own edition's bins.
    assert checked == RAW_ROWS
    # Raw rows per (task, edition): the 80 Feb 2025 text generation rows are the Feb file's 40 plus the Dec file's
    # 40 re-listings; image classification and object detection each hold one same-file duplicate.
    counts = Counter((row.task, row.edition) for row in rows)
    assert counts == {
        ("text_generation", "2025-02"): 80,
        ("text_generation", "2025-12"): 22,
        ("reasoning", "2025-12"): 18,
        ("summarization", "2025-02"): 11,
        ("question_answering", "2025-02"): 18,
        ("text_classification", "2025-02"): 13,
        ("sentence_similarity", "2025-02"): 19,
        ("image_classification", "2025-02"): 23,
        ("object_detection", "2025-02"): 7,
        ("automatic_speech_recognition", "2025-02"): 13,
        ("image_captioning", "2025-02"): 10,
        ("image_generation", "2025-02"): 12,
    }


def test_deduplicated_count() -> None:
    assert len(_all_published()) == DEDUPLICATED_ROWS == 204


def test_relisted_feb_rows_match_the_originals() -> None:
    feb = {r.model: r for r in score.published_results("text_generation", "2025-02")}
    relisted = [r for r in score.raw_published_rows() if r.task == "text_generation" and r.edition == "2025-02"]
    assert len(relisted) == 2 * RELISTED_FEB_ROWS
    for row in relisted:
        original = feb[row.model]
        assert row.stars == original.stars
        assert row.model_class == original.model_class
        assert row.kwh_per_1k == pytest.approx(original.kwh_per_1k, abs=5e-7)
    # The full-precision Feb 2025 file wins the de-duplication.
    assert feb["microsoft/phi-4"].kwh_per_1k == 0.028741175


def test_dec_2025_bins_exclude_feb_rows() -> None:
    # With the re-listed Feb 2025 rows in range, phi-4 (published 1 star) would get 4; Dec bins span Dec rows only.
    bins = score.star_bins("text_generation", "A", "2025-12")
    assert (bins.low, bins.high) == (0.0042, 0.08182)
    assert bins.stars(0.028741) == 4
    assert score.star_bins("text_generation", "A", "2025-02").stars(0.028741) == 1
    assert all(r.edition == "2025-12" for r in score.published_results("text_generation"))
    assert len(score.published_results("text_generation")) == 22


def test_stars_for_converts_wh_to_kwh() -> None:
    # Our unit is Wh per 1,000 queries; the leaderboard's is kWh per 1,000 queries.
    for task in ALL_TASKS:
        for row in score.published_results(task):
            assert score.stars_for(task, row.kwh_per_1k * 1000.0, row.model_class) == row.stars, _row_id(row)
    # distil-whisper/distil-large-v2: 0.021521125 kWh/1k published, 4 stars.
    assert score.stars_for("automatic_speech_recognition", 21.521125) == 4
    # Passing kWh by mistake would look like a near-zero figure and get 5 stars.
    assert score.stars_for("automatic_speech_recognition", 0.021521125) == 5


def test_wh_per_1k_property() -> None:
    row = score.published_results("automatic_speech_recognition")[0]
    assert row.wh_per_1k == pytest.approx(row.kwh_per_1k * 1000.0)


# --- bins, boundaries and clamping ----------------------------------------------------------------------------------


def test_bins_have_equal_width() -> None:
    bins = score.star_bins("image_generation")
    assert bins.low == 0.186811914
    assert bins.high == 1.639845472
    width = (bins.high - bins.low) / 5
    assert bins.edges == pytest.approx(tuple(bins.low + i * width for i in range(1, 5)))
    assert len(bins.edges) == 4


def test_boundaries_and_clamping() -> None:
    bins = score.StarBins.from_range(0.0, 5.0)
    assert bins.edges == (1.0, 2.0, 3.0, 4.0)
    assert bins.stars(0.0) == 5  # the minimum
    assert bins.stars(5.0) == 1  # the maximum
    assert [bins.stars(edge) for edge in bins.edges] == [5, 4, 3, 2]  # an inner edge gets the higher star
    assert [bins.stars(edge + 1e-9) for edge in bins.edges] == [4, 3, 2, 1]
    assert bins.stars(-0.0) == 5
    assert bins.stars(5.0 + 1e-9) == 1
    assert bins.stars(1e9) == 1
    assert bins.stars(math.inf) == 1
    with pytest.raises(ValueError, match="non-negative"):
        bins.stars(math.nan)
    with pytest.raises(ValueError, match="non-negative"):
        bins.stars(-1.0)


def test_stars_for_clamps_outside_published_range() -> None:
    bins = score.star_bins("reasoning", "B")
    assert score.stars_for("reasoning", 0.0, "B") == 5
    assert score.stars_for("reasoning", bins.low * 1000.0 / 2, "B") == 5
    assert score.stars_for("reasoning", bins.high * 1000.0 * 10, "B") == 1
    assert score.stars_for("summarization", 1e-6) == 5
    assert score.stars_for("summarization", 1e6) == 1


def test_minimum_and_maximum_of_every_group_get_5_and_1() -> None:
    for row in _all_published():
        bins = score.star_bins(row.task, row.model_class, row.edition)
        if row.kwh_per_1k == bins.low:
            assert row.stars == 5
        if row.kwh_per_1k == bins.high:
            assert row.stars == 1


# --- argument checking ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["text_generation", "reasoning"])
def test_class_required_for_llm_tasks(task: str) -> None:
    with pytest.raises(ValueError, match=rf"^{task} .*A, B, C") as info:
        score.stars_for(task, 10.0)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=task):
        score.star_bins(task)
    with pytest.raises(ValueError, match="A, B, C"):
        score.stars_for(task, 10.0, "D")
    assert score.stars_for(task, 10.0, "a") == score.stars_for(task, 10.0, "A")


def test_class_rejected_for_unclassed_task() -> None:
    with pytest.raises(ValueError, match="summarization"):
        score.stars_for("summarization", 1.0, "A")


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="'asr'") as info:
        score.stars_for("asr", 1.0)
    message = str(info.value)
    for task in ALL_TASKS:
        assert task in message
    with pytest.raises(ValueError, match="'nope'"):
        score.published_results("nope")
    with pytest.raises(ValueError, match="'nope'"):
        score.star_bins("nope")


def test_unknown_edition() -> None:
    with pytest.raises(ValueError, match="2025-12"):
        score.published_results("reasoning", "2025-02")
    with pytest.raises(ValueError, match="2025-02"):
        score.star_bins("automatic_speech_recognition", edition="2025-12")


# --- flaws in the published data are cleaned ------------------------------------------------------------------------


def test_no_asterisk_in_model_names() -> None:
    for row in score.raw_published_rows():
        assert "*" not in row.model, row.raw_model
        assert "*" not in row.provider, row.raw_model
    granite = [r for r in score.published_results("text_generation") if "granite-4.0-h-tiny" in r.model]
    assert [(r.model, r.provider, r.raw_model) for r in granite] == [
        ("ibm-granite/granite-4.0-h-tiny", "ibm-granite", "ibm-granite/*granite-4.0-h-tiny")
    ]


def test_reasoning_effort_split_from_model_names() -> None:
    rows = score.published_results("reasoning")
    for row in rows:
        assert not any(ch.isspace() for ch in row.model), row.raw_model
        assert "(" not in row.model and ")" not in row.model, row.raw_model
        assert not row.model.lower().endswith(("low", "medium", "high")), row.raw_model
        assert row.reasoning_effort in {None, "low", "medium", "high"}
    efforts = {(r.model, r.reasoning_effort) for r in rows if r.reasoning_effort is not None}
    assert efforts == {
        (model, effort)
        for model in ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
        for effort in ("low", "medium", "high")
    }
    high = next(r for r in rows if r.model == "openai/gpt-oss-120b" and r.reasoning_effort == "high")
    assert (high.raw_model, high.kwh_per_1k, high.stars, high.model_class) == (
        "openai/gpt-oss-120b high",
        8.50362,
        1,
        "C",
    )


def test_effort_cleaning_accepts_parenthesised_form() -> None:
    assert score._clean_model("openai/gpt-oss-20b (High)") == ("openai/gpt-oss-20b", "high")
    assert score._clean_model(" org/*model ") == ("org/model", None)
    with pytest.raises(ValueError, match="unexpected annotation"):
        score._clean_model("org/model turbo")


def test_no_duplicate_rows() -> None:
    rows = _all_published()
    keys = [(r.task, r.edition, r.model, r.model_class, r.reasoning_effort) for r in rows]
    assert len(keys) == len(set(keys))
    # The two same-file duplicates keep their first listed row.
    swin = [r for r in score.published_results("image_classification") if r.model.endswith("window12-192-22k")]
    assert [r.kwh_per_1k for r in swin] == [0.001290521]
    detr = [r for r in score.published_results("object_detection") if r.model == "facebook/detr-resnet-50-dc5"]
    assert [r.kwh_per_1k for r in detr] == [0.003291817]


def test_results_are_well_formed_and_immutable() -> None:
    for row in _all_published():
        assert row.provider == row.model.split("/")[0]
        assert row.stars in {1, 2, 3, 4, 5}
        assert row.kwh_per_1k > 0
        if row.task in CLASSED_TASKS:
            assert row.model_class in MODEL_CLASSES
        else:
            assert row.model_class is None
            assert row.reasoning_effort is None
    row = score.published_results("summarization")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.stars = 1  # type: ignore[misc]
    results = score.published_results("summarization")
    results.clear()
    assert len(score.published_results("summarization")) == 11
