"""Shares of a fleet sweep: each benchmark in exactly one share, balanced by expected cost, alike in every process."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.records.store import RECORDS_FILE, RecordStore
from pytest_aienergyscore.session.shards import (
    Benchmark,
    DurationsError,
    ModelSizer,
    balanced_shares,
    expected_costs,
    fill_unknown,
    parameters_from_name,
    partition_fingerprint,
    read_durations,
    round_robin,
    select_share,
    task_work,
)

MODELS = {"org/small": 135_000_000, "org/medium": 1_000_000_000, "org/large": 7_000_000_000}
TASKS = ("text_generation", "text_classification", "image_generation", "question_answering")


def _sweep() -> list[Benchmark]:
    return [Benchmark(f"test_sweep.py::test_{task}[{model}]", model, task) for model in MODELS for task in TASKS]


def test_every_benchmark_lands_in_exactly_one_share() -> None:
    costs = {f"t::{i}": float(i % 7 + 1) for i in range(50)}
    shares = balanced_shares(costs, 4)
    placed = [nodeid for share in shares for nodeid in share]
    assert sorted(placed) == sorted(costs)
    assert len(placed) == len(set(placed))


def test_the_partition_does_not_depend_on_the_order_tests_were_collected_in() -> None:
    costs = {f"t::{i}": float(i % 5 + 1) for i in range(30)}
    shuffled = list(costs.items())
    random.Random(7).shuffle(shuffled)
    assert balanced_shares(dict(shuffled), 3) == balanced_shares(costs, 3)


def test_the_longest_benchmark_goes_first_onto_the_least_loaded_share() -> None:
    costs = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0}
    # loads after each step: a 7|0, b 7|5, c 7|9, d 10|9, e 10|10
    assert balanced_shares(costs, 2) == [["a", "d"], ["b", "c", "e"]]


def test_equal_costs_are_dealt_in_test_id_order_and_ties_go_to_the_lowest_share() -> None:
    assert balanced_shares({"z": 1.0, "a": 1.0, "m": 1.0}, 2) == [["a", "z"], ["m"]]


def test_more_shares_than_benchmarks_leaves_the_extra_shares_empty() -> None:
    assert balanced_shares({"only": 3.0}, 3) == [["only"], [], []]


def test_tests_that_are_not_benchmarks_are_dealt_round_robin_by_test_id() -> None:
    assert round_robin(["c", "a", "d", "b", "e"], 2) == [["a", "c", "e"], ["b", "d"]]


def test_a_benchmark_costs_its_parameters_times_its_tasks_passes_per_query() -> None:
    costs = expected_costs(_sweep(), parameters=MODELS.get)
    assert costs["test_sweep.py::test_text_generation[org/large]"] == 7_000_000_000 * 11  # 10 tokens + prefill
    assert costs["test_sweep.py::test_text_classification[org/small]"] == 135_000_000 * 1
    assert costs["test_sweep.py::test_image_generation[org/medium]"] == 1_000_000_000 * 30  # 1 image x 30 steps


def test_the_task_work_comes_from_the_protocol_table() -> None:
    assert task_work("text_generation") == 11.0
    assert task_work("automatic_speech_recognition") == 101.0
    assert task_work("image_generation") == 30.0
    assert task_work("object_detection") == 1.0
    assert task_work("not_a_task") is None


def test_custom_energy_meter_code_and_unsizable_models_have_no_known_cost() -> None:
    benchmarks = [
        Benchmark("custom", "org/small", "text_generation", sizable=False),
        Benchmark("no-files", "org/absent", "text_generation"),
        Benchmark("no-task", "org/small", None),
        Benchmark("bad-task", "org/small", "knitting"),
    ]
    assert set(expected_costs(benchmarks, parameters=MODELS.get).values()) == {None}


def test_unknown_costs_weigh_the_median_of_the_known_ones() -> None:
    assert fill_unknown({"a": 1.0, "b": 3.0, "c": 10.0, "d": None}) == {"a": 1.0, "b": 3.0, "c": 10.0, "d": 3.0}


def test_when_no_cost_is_known_every_benchmark_weighs_one() -> None:
    assert fill_unknown({"a": None, "b": None}) == {"a": 1.0, "b": 1.0}


def test_durations_of_a_previous_run_replace_the_parameter_estimate() -> None:
    durations = {"test_sweep.py::test_text_generation[org/small]": 42.0}
    costs = expected_costs(_sweep(), durations, parameters=MODELS.get)
    assert costs["test_sweep.py::test_text_generation[org/small]"] == 42.0
    assert costs["test_sweep.py::test_text_generation[org/large]"] is None  # not in that run: the median later


def test_a_benchmark_heavier_than_a_fair_share_runs_alone_and_no_share_outweighs_it() -> None:
    costs = fill_unknown(expected_costs(_sweep(), parameters=MODELS.get))
    heaviest = max(costs, key=costs.__getitem__)  # the 7B image generation: more than a quarter of the sweep
    shares = balanced_shares(costs, 4)
    assert [heaviest] in shares
    assert max(sum(costs[n] for n in share) for share in shares) == costs[heaviest]  # the best any split can do


def test_forty_benchmarks_of_mixed_cost_split_into_four_shares_within_five_percent() -> None:
    rng = random.Random(18)
    costs = {f"t::{i:02d}": rng.choice([1.0, 7.4, 11.0, 77.0]) * rng.uniform(0.5, 2) for i in range(40)}
    loads = [sum(costs[n] for n in share) for share in balanced_shares(costs, 4)]
    assert max(loads) / min(loads) < 1.05


def test_a_selection_says_how_much_of_the_sweep_it_carries() -> None:
    benchmarks = [Benchmark(f"b{i}", "org/small", "text_classification") for i in range(4)]
    selection = select_share(benchmarks, ["plain1", "plain2", "plain3"], 1, 2, parameters=MODELS.get)
    assert selection.keep == {"b1", "b3", "plain2"}
    assert (selection.benchmarks, selection.total_benchmarks) == (2, 4)
    assert selection.cost_share == pytest.approx(0.5)


def test_a_models_parameters_are_counted_once_per_process(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    config = {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 1000, "num_attention_heads": 4}
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 128, "hidden_act": "silu"}))
    sizer = ModelSizer()
    first = sizer.parameters(str(folder))
    shutil.rmtree(folder)  # a second look at the files would now find nothing
    assert first is not None and first > 64_000
    assert sizer.parameters(str(folder)) == first


@pytest.mark.parametrize(
    ("model", "parameters"),
    [
        ("meta-llama/Llama-3.1-8B", 8_000_000_000),
        ("HuggingFaceTB/SmolLM2-135M", 135_000_000),
        ("Qwen/Qwen2.5-0.5B-Instruct", 500_000_000),
        ("mistralai/Mixtral-8x7B-v0.1", 56_000_000_000),
        ("google-t5/t5-11b", 11_000_000_000),
        ("gpt2", None),
        ("microsoft/phi-3-mini-4k-instruct", None),  # 4k is its context, not its size
        ("openai/whisper-large-v3", None),
    ],
)
def test_a_hub_id_is_sized_by_the_size_in_its_name(model: str, parameters: int | None) -> None:
    assert parameters_from_name(model) == parameters


def test_a_hub_id_is_sized_by_its_name_even_where_this_hosts_hub_cache_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "hub" / "models--org--Tiny-1B" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 10}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert ModelSizer().parameters("org/Tiny-1B") == 1_000_000_000  # the same on a host without that cache


def test_the_partition_fingerprint_is_equal_for_equal_partitions_and_differs_otherwise() -> None:
    costs = {"a": 3.0, "b": 2.0, "c": 1.0}
    same = partition_fingerprint(balanced_shares(dict(reversed(costs.items())), 2))
    assert partition_fingerprint(balanced_shares(costs, 2)) == same
    assert partition_fingerprint(balanced_shares({**costs, "c": 9.0}, 2)) != same


def test_a_model_without_local_files_cannot_be_sized(tmp_path: Path) -> None:
    assert ModelSizer().parameters(str(tmp_path / "absent")) is None


def _record(nodeid: str, started: float, seconds: float) -> Record:
    return Record(nodeid=nodeid, backend="pytorch", started_at=started, finished_at=started + seconds)


def _store(folder: Path, records: list[Record]) -> Path:
    store = RecordStore(folder / RECORDS_FILE)
    for record in records:
        store.append(record)
    return store.path


def test_durations_are_read_from_a_previous_runs_records(tmp_path: Path) -> None:
    store = _store(tmp_path, [_record("a", 100.0, 5.0), _record("b", 100.0, 12.5)])
    assert read_durations(store) == {"a": 5.0, "b": 12.5}


def test_a_summary_json_points_at_the_records_beside_it(tmp_path: Path) -> None:
    _store(tmp_path, [_record("a", 100.0, 5.0)])
    (tmp_path / "summary.json").write_text("{}")
    assert read_durations(tmp_path / "summary.json") == {"a": 5.0}


def test_a_sweep_folder_gives_the_durations_of_all_its_shards_and_the_latest_run_of_a_test(tmp_path: Path) -> None:
    _store(tmp_path / "shard-0-of-2", [_record("a", 100.0, 5.0), _record("b", 100.0, 1.0)])
    _store(tmp_path / "shard-1-of-2", [_record("a", 200.0, 9.0)])
    assert read_durations(tmp_path) == {"a": 9.0, "b": 1.0}


def test_a_durations_path_without_records_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DurationsError, match=r"--energy-shard-durations: .*empty holds no records.jsonl"):
        read_durations(tmp_path / "empty")
