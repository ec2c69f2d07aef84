"""--energy-shard as a user meets it: which tests a share runs, the header line, the errors, shard.json on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.records.store import RECORDS_FILE, RecordStore

PLAIN_AND_CUSTOM = """
import pytest

@pytest.mark.parametrize("n", range(6))
def test_custom(energy_meter, n):
    with energy_meter.measure("forward", samples=1):
        sum(range(100))

@pytest.mark.parametrize("n", range(3))
def test_plain(n):
    pass
"""


@pytest.fixture
def bench(bench: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    """No scheduler variable leaks in from a shell that itself runs under Kubernetes or Slurm."""
    for name in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_JOB_ID"):
        clean_env.delenv(name, raising=False)
    return bench


def _model(folder: Path, layers: int) -> str:
    """A model folder with a config only: enough to be sized, never loaded (the runs below only collect)."""
    folder.mkdir(parents=True)
    config = {"hidden_size": 256, "num_hidden_layers": layers, "vocab_size": 1000, "num_attention_heads": 4}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def _selected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line and not line.startswith(("energy shard", "ERROR"))]


def test_each_share_runs_its_part_and_the_shares_together_run_every_test_once(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    seen: list[str] = []
    for index in range(3):
        result = bench.runpytest(
            "-p", "no:cacheprovider", "--co", "-q", f"--energy-shard={index}/3", "--energy-run-id=r"
        )
        assert result.ret == 0
        seen += _selected(result)
    all_tests = _selected(bench.runpytest("-p", "no:cacheprovider", "--co", "-q"))
    assert len(all_tests) == 9
    assert sorted(seen) == sorted(all_tests)


def test_the_other_shares_are_deselected_through_pytest(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-shard=1/2", "--energy-run-id=sweep")
    result.assert_outcomes(passed=4, deselected=5)  # 3 of 6 benchmarks, 1 of 3 plain tests


def test_the_header_says_which_share_where_its_index_came_from_and_its_part_of_the_sweep(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    clean_env.setenv("JOB_COMPLETION_INDEX", "1")
    result = bench.runpytest("-p", "no:cacheprovider", "--co", "--energy-shard=auto/2", "--energy-run-id=sweep")
    result.stdout.fnmatch_lines(
        ["energy shard 1/2 (index 1 from JOB_COMPLETION_INDEX): 3 of 6 benchmarks, expected cost 50% of the sweep, *"]
    )


def test_benchmarks_are_balanced_by_model_size_times_task_work(bench: pytest.Pytester, tmp_path: Path) -> None:
    big, small = _model(tmp_path / "big", 12), _model(tmp_path / "small", 1)
    bench.makepyfile(
        test_sweep=f"""
        import pytest

        @pytest.mark.parametrize("model", [{big!r}, {small!r}])
        @pytest.mark.parametrize("task", ["text_generation", "text_classification"])
        def test_sweep(energy_star, model, task):
            energy_star(task=task, model=model)
        """
    )
    shares = [
        _selected(bench.runpytest("-p", "no:cacheprovider", "--co", "-q", f"--energy-shard={i}/2", "--energy-run-id=r"))
        for i in (0, 1)
    ]
    big_generation = [nodeid for nodeid in shares[0] + shares[1] if "text_generation-" in nodeid and "big" in nodeid]
    assert [big_generation] == [share for share in shares if big_generation[0] in share]  # the heaviest runs alone


def test_durations_of_a_previous_run_decide_the_shares(bench: pytest.Pytester, tmp_path: Path) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    store = RecordStore(tmp_path / "previous" / RECORDS_FILE)
    for n, seconds in enumerate([100.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        store.append(Record(f"test_mixed.py::test_custom[{n}]", "pytorch", started_at=10.0, finished_at=10 + seconds))
    durations = f"--energy-shard-durations={tmp_path / 'previous'}"
    result = bench.runpytest(
        "-p", "no:cacheprovider", "--co", "-q", "--energy-shard=0/2", "--energy-run-id=r", durations
    )
    assert [n for n in _selected(result) if "custom" in n] == ["test_mixed.py::test_custom[0]"]
    result.stdout.fnmatch_lines(["energy shard 0/2 *: 1 of 6 benchmarks, expected cost 95% of the sweep*"])


def test_auto_without_a_scheduler_variable_stops_the_run_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-shard=auto/4", "--energy-run-id=sweep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --energy-shard auto/4: neither JOB_COMPLETION_INDEX nor SLURM_ARRAY_TASK_ID*"])
    assert "Traceback" not in result.stderr.str()


def test_several_shares_without_a_run_id_stop_the_run_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-shard=0/4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --energy-shard with 4 shares needs --energy-run-id ID*"])


def test_shard_json_is_unfinished_while_the_share_runs_and_finished_after(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_watch="""
        import json
        from pathlib import Path

        def test_watch(energy_meter):
            with energy_meter.measure("forward", samples=1):
                state = json.loads(Path("results/sweep/shard-0-of-1/shard.json").read_text())
            assert state["finished"] is False and state["assigned"] == ["test_watch.py::test_watch"]
        """
    )
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-shard=0/1", "--energy-run-id=sweep")
    result.assert_outcomes(passed=1)
    folder = bench.path / "results" / "sweep" / "shard-0-of-1"
    state = json.loads((folder / "shard.json").read_text())
    assert (state["finished"], state["exitstatus"], state["run_id"]) == (True, 0, "sweep")
    assert (folder / RECORDS_FILE).is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["shard"] == {"run_id": "sweep", "index": 0, "count": 1}


def test_a_share_that_finished_is_refused_a_second_run(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    args = ("-p", "no:cacheprovider", "--energy-shard=1/2", "--energy-run-id=sweep")
    assert bench.runpytest(*args).ret == 0
    again = bench.runpytest(*args)
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    again.stderr.fnmatch_lines(["ERROR: */sweep/shard-1-of-2 already holds a finished shard *remove that folder*"])


def test_without_a_shard_option_the_shard_hooks_are_neither_registered_nor_imported(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_look="""
        import sys

        def test_look(request, energy_meter):
            assert request.config.pluginmanager.get_plugin("aienergyscore-shard") is None
            assert not [m for m in sys.modules if m.startswith("pytest_aienergyscore.session.shard")]
        """
    )
    bench.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_durations_path_without_records_stops_the_run_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    args = ("--energy-shard=0/2", "--energy-run-id=sweep", "--energy-shard-durations=nowhere")
    result = bench.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --energy-shard-durations: */nowhere holds no records.jsonl of a previous run"])
    assert "Traceback" not in result.stderr.str()


def test_a_results_folder_that_cannot_be_made_stops_the_share_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    (bench.path / "results").mkdir()
    (bench.path / "results" / "sweep").write_text("a file where the sweep's folder must be")
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-shard=0/2", "--energy-run-id=sweep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: cannot write */results/sweep/shard-0-of-2/shard.json: *"])


def test_a_share_run_by_xdist_workers_writes_its_shard_json_and_finishes_it(bench: pytest.Pytester) -> None:
    """The xdist controller collects nothing: it starts the shard, its first worker fills in the share's
    benchmarks, and the controller finishes it; a second run of the finished share is refused."""
    bench.makepyfile(test_mixed=PLAIN_AND_CUSTOM)
    args = ("-p", "no:cacheprovider", "--energy-shard=0/2", "--energy-run-id=sweep")
    serial = json.loads(_run_share(bench, args, "serial"))
    result = bench.runpytest_subprocess(*args, "-n", "2")
    assert result.ret == 0
    folder = bench.path / "results" / "sweep" / "shard-0-of-2"
    state = json.loads((folder / "shard.json").read_text())
    assert (state["finished"], state["exitstatus"], state["index"], state["count"]) == (True, 0, 0, 2)
    assert state["assigned"] == serial["assigned"] and state["partition"] == serial["partition"]
    assert state["expected_cost"] == serial["expected_cost"] and state["assigned"]
    measured = [record.nodeid for record in RecordStore(folder / RECORDS_FILE)]
    assert sorted(measured) == state["assigned"]
    again = bench.runpytest_subprocess(*args, "-n", "2")
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    again.stderr.fnmatch_lines(["ERROR: */sweep/shard-0-of-2 already holds a finished shard *"])


def _run_share(bench: pytest.Pytester, args: tuple[str, ...], run_id: str) -> str:
    """The shard.json a serial run of the same share writes, under another run id."""
    assert bench.runpytest_subprocess(*args[:-1], f"--energy-run-id={run_id}").ret == 0
    return (bench.path / "results" / run_id / "shard-0-of-2" / "shard.json").read_text()
