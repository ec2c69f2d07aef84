"""Merging a fleet sweep: its shards (finished, unfinished, missing), a stable byte-for-byte result, the leaderboard."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pytest_aienergyscore.records.quality import QUALITY_KEY
from pytest_aienergyscore.report.merge import write_merged
from pytest_aienergyscore.report.merge_shards import parse_shard
from pytest_aienergyscore.report.merge_tables import gpu_cell, leaderboard_lines
from tests.support.sweep import H100, gpu_record, write_shard


def _ids(n: int) -> list[str]:
    return [f"benchmarks/test_sweep.py::test_model[m{i}]" for i in range(n)]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Run ``sweep-7`` of 3 shards: shard 0 finished both its benchmarks, shard 1 died after one of its two, and
    shard 2 left no folder at all."""
    run = tmp_path / "results" / "sweep-7"
    ids = _ids(4)
    write_shard(run, 0, 3, "node-a", [gpu_record(ids[0], "org/m0", 2.0), gpu_record(ids[2], "org/m2", 0.5)])
    write_shard(run, 1, 3, "node-b", [gpu_record(ids[1], "org/m1", 1.0)], finished=False, assigned=[ids[1], ids[3]])
    return run


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_a_shard_whose_file_says_it_did_not_finish_is_named_with_its_host_and_what_it_lacks(sweep, tmp_path) -> None:
    merged = write_merged([sweep], tmp_path / "merged")
    died = _summary(tmp_path / "merged")["unfinished_shards"][0]
    assert (died["run_id"], died["index"], died["count"], died["host"]) == ("sweep-7", 1, 3, "node-b")
    assert died["assigned"] == [_ids(4)[1], _ids(4)[3]] and died["not_measured"] == [_ids(4)[3]]
    assert "did not finish (started 2026-12-01T10:00:00+00:00)" in died["reason"]
    assert merged.warnings[0].startswith("shard 1 of 3 of run sweep-7 did not finish (on node-b): 2 benchmark(s)")


def test_the_merged_html_report_names_each_unfinished_shard_above_its_results(sweep, tmp_path) -> None:
    merged = write_merged([sweep], tmp_path / "merged")
    assert merged.html is not None
    page = merged.html.read_text(encoding="utf-8")
    section = page[page.index('<section id="unfinished">') : page.index('<section id="results-section">')]
    assert "shard 1 of 3 of run sweep-7 did not finish (on node-b): 2 benchmark(s) assigned, 1 without a record" in (
        section
    )
    assert "shard 2 of 3 of run sweep-7 did not finish (host unknown)" in section


def test_the_merged_html_report_of_a_finished_sweep_has_no_unfinished_section(sweep, tmp_path) -> None:
    finished = tmp_path / "finished"
    write_shard(finished, 0, 1, "node-a", [gpu_record(_ids(1)[0], "org/m0", 2.0)])
    merged = write_merged([finished], tmp_path / "merged")
    assert merged.html is not None and 'id="unfinished"' not in merged.html.read_text(encoding="utf-8")


def test_a_shard_index_with_no_folder_is_named_as_never_started(sweep, tmp_path) -> None:
    merged = write_merged([sweep], tmp_path / "merged")
    summary = _summary(tmp_path / "merged")
    missing = summary["unfinished_shards"][1]
    assert (missing["index"], missing["host"], missing["assigned"], missing["folder"]) == (2, None, None, None)
    assert "no shard.json: the shard never started" in missing["reason"]
    assert len(merged.warnings) == 2 and "host unknown): its benchmarks are unknown" in merged.warnings[1]
    assert [(s["index"], s["finished"], s["measured"]) for s in summary["shards"]] == [
        (0, True, 2),
        (1, False, 1),
        (2, False, 0),
    ]


def test_a_sweep_whose_shards_all_finished_lists_them_and_no_unfinished_one(sweep, tmp_path) -> None:
    write_shard(sweep, 1, 3, "node-b", [gpu_record(_ids(4)[3], "org/m3", 3.0)], assigned=_ids(4)[1::2])
    write_shard(sweep, 2, 3, "node-c", [])
    merged = write_merged([sweep], tmp_path / "merged")
    summary = _summary(tmp_path / "merged")
    assert summary["unfinished_shards"] == [] and merged.warnings == []
    assert [s["host"] for s in summary["shards"]] == ["node-a", "node-b", "node-c"]
    assert summary["session"] == "sweep sweep-7 (3 shards)"


def test_a_damaged_shard_file_is_one_skipped_line_and_its_shard_still_counts_as_unfinished(sweep, tmp_path) -> None:
    (sweep / "shard-0-of-3" / "shard.json").write_text('{"run_id": "sweep-7", "index": 5, "count": 3}')
    problems: list[str] = []
    write_merged([sweep], tmp_path / "merged", problems)
    assert len(problems) == 1 and "shard-0-of-3/shard.json: not a shard file (index 5 of count 3" in problems[0]
    unfinished = _summary(tmp_path / "merged")["unfinished_shards"]
    assert [(u["index"], u["folder"]) for u in unfinished] == [(0, None), (1, str(sweep / "shard-1-of-3")), (2, None)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "is not an object"),
        ({"run_id": "r", "index": "1", "count": 2}, "index '1' is not a whole number"),
        ({"run_id": "", "index": 0, "count": 2}, "run_id '' is not a name"),
        ({"run_id": "r", "index": 0, "count": 2, "assigned": "t.py::x"}, "assigned 't.py::x' is not a list"),
    ],
)
def test_a_shard_file_with_a_bad_value_names_it(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(data, Path("x"))


def test_merging_twice_gives_the_same_bytes_in_every_file(sweep, tmp_path) -> None:
    out = tmp_path / "merged"
    first = write_merged([sweep], out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["energy_plot.png", "leaderboard.md", "report.html", "summary.csv", "summary.json"]
    assert first.plot is not None and first.html is not None
    before = {name: (out / name).read_bytes() for name in names}
    for name in names:  # written again, not merely left alone
        (out / name).unlink()
    write_merged([sweep], out)
    assert {name: (out / name).read_bytes() for name in names} == before


def test_rows_come_in_test_id_then_host_order_whatever_the_order_of_the_folders(sweep, tmp_path) -> None:
    other = tmp_path / "other-site" / "sweep-7"
    write_shard(other, 0, 1, "node-0", [gpu_record(_ids(4)[2], "org/m2", 0.6)])
    shards = sorted(sweep.iterdir())
    write_merged([*shards, other], tmp_path / "one")
    write_merged([other, *reversed(shards)], tmp_path / "two")

    def rows(out: Path) -> list[tuple[str, str]]:
        with (out / "summary.csv").open() as fh:
            return [(row["test"].rsplit("[", 1)[1], row["host"]) for row in csv.DictReader(fh)]

    assert (
        rows(tmp_path / "one")
        == rows(tmp_path / "two")
        == [
            ("m0]", "node-a"),
            ("m1]", "node-b"),
            ("m2]", "node-0"),
            ("m2]", "node-a"),
        ]
    )


def test_the_leaderboard_has_a_table_per_task_and_class_lowest_energy_first_with_host_and_gpu(tmp_path) -> None:
    run = tmp_path / "sweep-8"
    records = [
        gpu_record("t.py::test_gen[big]", "org/big", 9.0, task="text_generation", model_class="B", gpu="NVIDIA A100"),
        gpu_record("t.py::test_cls[slow]", "org/slow", 3.0),
        gpu_record("t.py::test_cls[fast]", "org/fast", 0.2),
        gpu_record("t.py::test_gen[small]", "org/small", 1.5, task="text_generation"),
    ]
    write_shard(run, 0, 1, "node-a", records)
    merged = write_merged([run], tmp_path / "merged")
    markdown = (tmp_path / "merged" / "leaderboard.md").read_text()
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections == [
        "## text_classification, class A (2 benchmarks)",
        "## text_generation, class A (1 benchmark)",
        "## text_generation, class B (1 benchmark)",
    ]
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert [row[1] for row in rows] == ["org/fast", "org/slow", "org/small", "org/big"]
    assert rows[0][2:8] == ["0.200", "5/5", "gpu/nvml", H100, "node-a", "pytorch"]
    assert rows[3][5] == "NVIDIA A100" and rows[3][3].endswith("*")  # not an H100: stars are indicative
    assert merged.leaderboard_lines[1] == "text_classification, class A (2 benchmarks)"


def test_a_model_on_two_gpus_shows_them_as_a_count_and_a_cpu_run_as_no_gpu() -> None:
    two = {"gpus": [{"name": H100}, {"name": H100}]}
    assert gpu_cell(two) == f"2x {H100}"
    assert gpu_cell({"gpus": []}) == gpu_cell({}) == "-"


def test_a_quality_column_appears_only_in_the_tables_where_a_row_has_quality(tmp_path) -> None:
    scored = gpu_record("t.py::test_cls[fast]", "org/fast", 0.2)
    scored.metadata[QUALITY_KEY] = {"metric": "accuracy", "value": 0.9123, "higher_is_better": True, "rate": True}
    generation = gpu_record("t.py::test_gen[small]", "org/small", 1.5, task="text_generation")
    write_shard(
        tmp_path / "sweep-9", 0, 1, "node-a", [scored, gpu_record("t.py::test_cls[x]", "org/x", 1.0), generation]
    )
    merged = write_merged([tmp_path / "sweep-9"], tmp_path / "merged")
    lines = merged.leaderboard_lines
    headers = [
        lines[i + 1] for i, line in enumerate(lines) if line.endswith("benchmarks)") or line.endswith("benchmark)")
    ]
    assert "quality" in headers[0] and "quality" not in headers[1]
    [fast] = [line for line in lines if "org/fast" in line]
    [unscored] = [line for line in lines if "org/x" in line]
    assert "5/5    acc 0.91  gpu/nvml" in fast and "5/5    -         gpu/nvml" in unscored


def test_each_sweep_is_checked_against_its_own_shard_count(tmp_path) -> None:
    results = tmp_path / "results"
    write_shard(results / "class-ab", 0, 2, "node-a", [gpu_record("t.py::a", "org/a", 1.0)])
    write_shard(results / "class-ab", 1, 2, "node-b", [gpu_record("t.py::b", "org/b", 1.0)])
    write_shard(results / "class-c", 0, 1, "node-c", [gpu_record("t.py::c", "org/c", 5.0, model_class="C")])
    write_merged([results], tmp_path / "merged")
    summary = _summary(tmp_path / "merged")
    assert [(s["run_id"], s["index"], s["count"]) for s in summary["shards"]] == [
        ("class-ab", 0, 2),
        ("class-ab", 1, 2),
        ("class-c", 0, 1),
    ]
    assert summary["unfinished_shards"] == [] and summary["session"] == "sweep class-ab, class-c (3 shards)"


def test_the_terminal_leaderboard_fits_the_table_width_by_shortening_ids(tmp_path) -> None:
    long_id = "benchmarks/test_a_very_long_file_name_for_sweeps.py::test_model[" + "org/" + "m" * 90 + "]"
    runs = write_merged(
        [write_shard(tmp_path / "sweep-w", 0, 1, "node-a", [gpu_record(long_id, "org/" + "m" * 90, 1.0)]).parent],
        tmp_path / "merged",
    ).runs
    assert max(len(line) for line in leaderboard_lines(runs)) <= 120


def test_a_merge_with_nothing_to_plot_removes_the_plot_an_earlier_merge_left(tmp_path) -> None:
    out = tmp_path / "merged"
    write_shard(tmp_path / "first", 0, 1, "node-a", [gpu_record("t.py::a", "org/a", 1.0)])
    assert write_merged([tmp_path / "first"], out).plot == out / "energy_plot.png"
    write_shard(tmp_path / "second", 0, 1, "node-a", [gpu_record("t.py::b", "org/b", 1.0, task="my_own_task")])
    assert write_merged([tmp_path / "second"], out).plot is None
    assert not (out / "energy_plot.png").exists()
    assert "no energy_plot.png in this session" in (out / "report.html").read_text()


def test_a_merge_draws_energy_against_quality_when_a_run_has_quality_and_removes_a_stale_picture(tmp_path) -> None:
    from pytest_aienergyscore.report.frontier_plot import FRONTIER_FILE

    scored = gpu_record("t.py::test_cls[fast]", "org/fast", 0.2)
    scored.metadata[QUALITY_KEY] = {"metric": "accuracy", "value": 0.9, "higher_is_better": True, "rate": True}
    write_shard(tmp_path / "scored", 0, 1, "node-a", [scored, gpu_record("t.py::test_cls[x]", "org/x", 1.0)])
    out = tmp_path / "merged"
    merged = write_merged([tmp_path / "scored"], out)
    assert merged.frontier == out / FRONTIER_FILE and merged.frontier.read_bytes().startswith(b"\x89PNG")
    assert merged.html is not None and "energy against quality" in merged.html.read_text(encoding="utf-8").lower()
    write_shard(tmp_path / "plain", 0, 1, "node-a", [gpu_record("t.py::test_cls[y]", "org/y", 1.0)])
    again = write_merged([tmp_path / "plain"], out)
    assert again.frontier is None and not (out / FRONTIER_FILE).exists()
