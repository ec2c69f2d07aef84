"""One shard of a fleet sweep: its index from the scheduler, its run id, its folder and shard.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.session.shard_run import (
    ShardError,
    ShardPlan,
    check_rerun,
    finish_shard,
    plan_shard,
    read_shard_json,
    start_shard,
)


def test_an_explicit_index_needs_no_scheduler_variable() -> None:
    assert plan_shard((2, 4), "sweep", {}) == ShardPlan(2, 4, "--energy-shard", "sweep")


def test_auto_reads_the_kubernetes_job_completion_index() -> None:
    plan = plan_shard((None, 4), "sweep", {"JOB_COMPLETION_INDEX": "3", "SLURM_ARRAY_TASK_ID": "0"})
    assert (plan.index, plan.index_source) == (3, "JOB_COMPLETION_INDEX")


def test_auto_reads_the_slurm_array_task_id_as_it_is_so_a_task_run_again_alone_keeps_its_share() -> None:
    # ``sbatch --array=3`` to run task 3 again: Slurm sets SLURM_ARRAY_TASK_MIN=3 too, and share 3 must still run
    plan = plan_shard((None, 4), "sweep", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3"})
    assert (plan.index, plan.index_source) == (3, "SLURM_ARRAY_TASK_ID")


def test_auto_without_a_scheduler_variable_is_a_one_line_error_naming_both() -> None:
    with pytest.raises(ShardError, match=r"auto/4: neither JOB_COMPLETION_INDEX nor SLURM_ARRAY_TASK_ID is set") as e:
        plan_shard((None, 4), "sweep", {})
    assert "\n" not in str(e.value)


def test_an_index_beyond_the_count_names_the_variable_its_value_and_the_range() -> None:
    with pytest.raises(ShardError, match=r"JOB_COMPLETION_INDEX=4 is not a share of 4; allowed: 0 to 3"):
        plan_shard((None, 4), "sweep", {"JOB_COMPLETION_INDEX": "4"})


def test_a_slurm_array_numbered_past_the_count_is_out_of_range() -> None:
    with pytest.raises(ShardError, match=r"SLURM_ARRAY_TASK_ID=2 is not a share of 2; allowed: 0 to 1"):
        plan_shard((None, 2), "sweep", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1"})


def test_an_index_that_is_not_a_number_is_named_with_its_value() -> None:
    with pytest.raises(ShardError, match=r"JOB_COMPLETION_INDEX='two' is not a share index; allowed: whole numbers"):
        plan_shard((None, 4), "sweep", {"JOB_COMPLETION_INDEX": "two"})


def test_the_run_id_defaults_to_the_slurm_array_job_id() -> None:
    assert plan_shard((0, 4), None, {"SLURM_ARRAY_JOB_ID": "812345"}).run_id == "812345"


def test_the_run_id_option_wins_over_slurms() -> None:
    assert plan_shard((0, 4), "mine", {"SLURM_ARRAY_JOB_ID": "812345"}).run_id == "mine"


def test_several_shares_without_a_run_id_are_a_usage_error_naming_the_option() -> None:
    with pytest.raises(ShardError, match=r"4 shares needs --energy-run-id ID"):
        plan_shard((0, 4), None, {})


def test_a_single_share_without_a_run_id_is_a_plain_session(tmp_path: Path) -> None:
    plan = plan_shard((0, 1), None, {})
    assert plan.run_id is None and plan.folder(tmp_path) is None


def test_a_shard_writes_under_its_run_id_in_a_folder_named_after_its_share(tmp_path: Path) -> None:
    assert ShardPlan(1, 4, "--energy-shard", "sweep").folder(tmp_path) == tmp_path / "sweep" / "shard-1-of-4"


def test_shard_json_says_not_finished_at_start_and_finished_at_the_end(tmp_path: Path) -> None:
    folder = tmp_path / "sweep" / "shard-1-of-4"
    plan = ShardPlan(1, 4, "JOB_COMPLETION_INDEX", "sweep")
    state = start_shard(folder, plan, ["b::2", "b::1"], 12.5, "0123abcd")
    started = read_shard_json(folder)
    assert started is not None
    keys = ("run_id", "index", "count", "assigned", "expected_cost", "partition", "finished")
    assert {k: started[k] for k in keys} == {
        "run_id": "sweep",
        "index": 1,
        "count": 4,
        "assigned": ["b::1", "b::2"],
        "expected_cost": 12.5,
        "partition": "0123abcd",
        "finished": False,
    }
    assert started["finished_at"] is None and started["exitstatus"] is None and started["host"]
    finish_shard(folder, state, 1)  # failed tests are results: the share's work was done
    ended = json.loads((folder / "shard.json").read_text())
    assert (ended["finished"], ended["exitstatus"], ended["started_at"]) == (True, 1, started["started_at"])
    assert ended["finished_at"] is not None


def test_an_interrupted_shard_is_not_finished(tmp_path: Path) -> None:
    folder = tmp_path / "shard-0-of-2"
    state = start_shard(folder, ShardPlan(0, 2, "--energy-shard", "r"), [], 0.0)
    assert finish_shard(folder, state, 2)["finished"] is False


def test_a_finished_share_is_refused_a_second_run(tmp_path: Path) -> None:
    folder = tmp_path / "shard-0-of-2"
    finish_shard(folder, start_shard(folder, ShardPlan(0, 2, "--energy-shard", "r"), [], 0.0), 0)
    with pytest.raises(ShardError, match=r"shard-0-of-2 already holds a finished shard .* remove that folder"):
        check_rerun(folder)


def test_a_retry_of_a_shard_that_died_sets_its_records_aside_and_starts_clean(tmp_path: Path) -> None:
    folder = tmp_path / "shard-0-of-2"
    plan = ShardPlan(0, 2, "JOB_COMPLETION_INDEX", "r")
    start_shard(folder, plan, [], 0.0)
    (folder / "records.jsonl").write_text('{"nodeid": "dead attempt"}\n')
    start_shard(folder, plan, [], 0.0)  # the scheduler's retry of the same index
    assert not (folder / "records.jsonl").exists()
    assert (folder / "records.attempt-1.jsonl").read_text() == '{"nodeid": "dead attempt"}\n'
    assert read_shard_json(folder)["finished"] is False  # type: ignore[index]
