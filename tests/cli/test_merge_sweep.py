"""``aienergyscore merge`` over a fleet sweep's run folder: real session folders split into shards as the shards of
``--energy-shard`` leave them, one of which died halfway."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main as cli_main

FOUR = """
import pytest

@pytest.mark.parametrize("name", ["m0", "m1", "m2", "m3"])
def test_model(energy_meter, name):
    energy_meter.set(model=f"org/{name}", task="text_classification")
    with energy_meter.measure("forward", samples=3):
        sum(range(50_000))
"""


def _shard(session: Path, run: Path, index: int, count: int, host: str, assigned: list[str], measured: int) -> None:
    """A copy of ``session`` holding only the first ``measured`` of ``assigned`` (records and run folders), as shard
    ``index`` on ``host`` leaves it; its shard.json says finished only when it measured all it was given."""
    folder = run / f"shard-{index}-of-{count}"
    shutil.copytree(session, folder)
    keep = set(assigned[:measured])
    lines = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    kept = [line for line in lines if line["nodeid"] in keep]
    for line in kept:
        line["environment"]["hostname"] = host
    (folder / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    for report in folder.glob("*/benchmark_report.json"):
        if json.loads(report.read_text())["nodeid"] not in keep:
            shutil.rmtree(report.parent)
            report.parent.with_name(report.parent.name + ".zip").unlink()
    finished = measured == len(assigned)
    shard = {"run_id": run.name, "index": index, "count": count, "host": host, "assigned": assigned}
    shard |= {"expected_cost": 1.0, "started_at": "2026-12-01T10:00:00+00:00", "finished": finished}
    shard |= {"finished_at": "2026-12-01T10:05:00+00:00" if finished else None, "exitstatus": 0 if finished else None}
    (folder / "shard.json").write_text(json.dumps(shard))


@pytest.fixture
def sweep(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """results/sweep-1 (relative to the working folder) of two shards: shard 0 measured both its benchmarks on
    pod-0, shard 1 measured one of its two on pod-1 and died."""
    bench.makepyfile(test_sweep=FOUR)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    [session] = [p for p in (bench.path / "results").iterdir() if p.is_dir()]
    ids = [f"test_sweep.py::test_model[m{i}]" for i in range(4)]
    monkeypatch.chdir(bench.path)
    run = Path("results") / "sweep-1"
    _shard(session, run, 0, 2, "pod-0", ids[0::2], measured=2)
    _shard(session, run, 1, 2, "pod-1", ids[1::2], measured=1)
    return run


def test_merging_a_sweep_names_the_shard_that_died_and_writes_the_session_files(sweep: Path, capsys) -> None:
    assert cli_main(["merge", str(sweep), "-o", "merged"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "aienergyscore merge: warning: shard 1 of 2 of run sweep-1 did not finish (on pod-1): 2 benchmark(s) "
        "assigned, 1 without a record; shard.json says it did not finish (started 2026-12-01T10:00:00+00:00): it "
        "died, was stopped, or is still running"
    ]
    assert "text_classification, class unknown (3 benchmarks)" in out and "merged 3 benchmark(s) from 2 host(s)" in out
    summary = json.loads(Path("merged/summary.json").read_text())
    [died] = summary["unfinished_shards"]
    assert (died["index"], died["host"], died["not_measured"]) == (1, "pod-1", ["test_sweep.py::test_model[m3]"])
    with open("merged/summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["test"][-4:], row["host"]) for row in rows] == [
        ("[m0]", "pod-0"),
        ("[m1]", "pod-1"),
        ("[m2]", "pod-0"),
    ]
    assert all(row["run_folder"].startswith("results/sweep-1/shard-") for row in rows)  # as given, not absolute
    page = Path("merged/report.html").read_text()
    assert "sweep sweep-1 (2 shards, 1 unfinished)" in page
    assert page.count('alt="energy label of test_sweep.py::test_model[') == 3  # each run folder's label, found
    assert "**Incomplete sweep:**" in Path("merged/leaderboard.md").read_text()


def test_merging_a_sweep_twice_gives_the_same_bytes(sweep: Path, capsys) -> None:
    assert cli_main(["merge", str(sweep), "-o", "first"]) == 0
    assert cli_main(["merge", str(sweep), "-o", "first"]) == 0
    shutil.copytree("first", "copy")
    for path in Path("first").iterdir():
        path.unlink()
    assert cli_main(["merge", str(sweep), "-o", "first"]) == 0
    assert {p.name: p.read_bytes() for p in Path("first").iterdir()} == {
        p.name: p.read_bytes() for p in Path("copy").iterdir()
    }
