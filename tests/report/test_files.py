"""What the standard files say about quality: GPU_ENERGY_SUMMARY.json's own keys, benchmark_report.json's whole
record, the session summary's new columns (at the end, after every existing one) and frontier.png beside them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pytest_aienergyscore.records.quality import no_quality
from pytest_aienergyscore.report.files import (
    ENERGY_SUMMARY,
    REPORT,
    SUMMARY_COLUMNS,
    energy_summary,
    write_session_files,
)
from pytest_aienergyscore.report.frontier_plot import FRONTIER_FILE
from pytest_aienergyscore.report.merge import MERGED_COLUMNS
from tests.support.quality_records import OFFLINE_REFERENCES, quality, scored_record

QUALITY_COLUMNS = ("quality_metric", "quality_value", "wh_per_1000_correct")


def test_the_energy_summary_keeps_the_quality_and_the_energy_per_1000_correct_answers_of_a_rate() -> None:
    record = scored_record("org/m", 2.0, quality("accuracy", 0.8, rate=True, library="torchmetrics 1.5"))
    summary = energy_summary(record)
    assert summary["quality"] == {
        "metric": "accuracy",
        "value": 0.8,
        "samples": 100,
        "higher_is_better": True,
        "rate": True,
        "source": "built-in",
        "references": OFFLINE_REFERENCES,
        "library": "torchmetrics 1.5",
    }
    assert summary["wh_per_1000_correct"] == pytest.approx(2.0 / 0.8)  # 2 Wh buy 800 correct answers per 1,000
    assert summary["total"] == round(2.0 * 100 / 1000, 2)  # AI Energy Score's own keys are untouched


def test_a_metric_that_is_not_a_share_of_correct_answers_has_no_energy_per_correct_answer() -> None:
    summary = energy_summary(scored_record("org/m", 2.0, quality("spearman", 0.8), task="sentence_similarity"))
    assert summary["quality"]["metric"] == "spearman" and summary["quality"]["rate"] is False
    assert summary["wh_per_1000_correct"] is None


def test_a_benchmark_that_could_not_be_scored_says_why_and_one_never_scored_has_no_quality() -> None:
    reason = "image_generation: no references exist for generated images"
    unscorable = energy_summary(scored_record("org/m", 2.0, no_quality(reason), task="image_generation"))
    assert unscorable["quality"] == {"metric": None, "reason": reason}
    assert unscorable["wh_per_1000_correct"] is None
    assert energy_summary(scored_record("org/m", 2.0, None))["quality"] is None


def test_the_quality_columns_come_after_every_existing_summary_column_and_in_the_merged_summary() -> None:
    assert SUMMARY_COLUMNS[-4:] == ("archive", *QUALITY_COLUMNS)
    assert SUMMARY_COLUMNS[:3] == ("test", "task", "model")
    assert ("host", *SUMMARY_COLUMNS) == MERGED_COLUMNS


def test_the_session_files_carry_quality_in_each_run_folder_the_summary_and_the_frontier_plot(tmp_path: Path) -> None:
    scored = scored_record("org/a", 2.0, quality("accuracy", 0.8, rate=True, also={"macro_f1": 0.75}))
    unscored = scored_record("org/b", 1.0, no_quality("no column of labels in the dataset"))
    written = write_session_files([scored, unscored], tmp_path, {"session": "s"})
    assert not written.errors
    folder = written.runs[0].folder
    assert folder is not None
    report = json.loads((folder / REPORT).read_text())
    assert report["metadata"]["quality"]["also"] == {"macro_f1": 0.75}  # the whole record, as it was scored
    assert json.loads((folder / ENERGY_SUMMARY).read_text())["quality"]["value"] == 0.8
    with (tmp_path / "summary.csv").open(newline="") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == SUMMARY_COLUMNS
    assert table[1][-3:] == ["accuracy", "0.8", "2.5"]
    assert table[2][-3:] == ["", "", ""]  # no figure: the reason is in its GPU_ENERGY_SUMMARY.json
    rows = json.loads((tmp_path / "summary.json").read_text())["benchmarks"]
    assert [row["quality_metric"] for row in rows] == ["accuracy", None]
    assert written.frontier == tmp_path / FRONTIER_FILE and written.frontier.read_bytes().startswith(b"\x89PNG")


def test_a_session_without_quality_draws_no_frontier_plot(tmp_path: Path) -> None:
    written = write_session_files([scored_record("org/a", 2.0, None)], tmp_path, {"session": "s"})
    assert written.frontier is None and not (tmp_path / FRONTIER_FILE).exists()
