"""``aienergyscore merge``: one summary from the results folders of several hosts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main as cli_main

TWO = """
import pytest

@pytest.mark.parametrize("name", ["small", "large"])
def test_model(energy_meter, name):
    energy_meter.set(model=f"org/{name}", task="text_classification")
    with energy_meter.measure("forward", samples=3):
        sum(range(100_000))
"""


def _as_host(session: Path, target: Path, host: str) -> Path:
    """A copy of a session folder as if another machine had written it (its records name that host)."""
    shutil.copytree(session, target)
    store = target / "records.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines()]
    for record in records:
        record["environment"]["hostname"] = host
    store.write_text("".join(json.dumps(r) + "\n" for r in records))
    for report in target.glob("*/benchmark_report.json"):
        data = json.loads(report.read_text())
        data["environment"]["hostname"] = host
        report.write_text(json.dumps(data))
    return target


@pytest.fixture
def two_hosts(bench: pytest.Pytester) -> tuple[Path, Path]:
    bench.makepyfile(test_two=TWO)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    [session] = [p for p in (bench.path / "results").iterdir() if p.is_dir()]
    return _as_host(session, bench.path / "host-a", "gpu-a"), _as_host(session, bench.path / "host-b", "gpu-b")


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_merge_combines_hosts_into_one_summary_naming_each_host(two_hosts, tmp_path: Path, capsys) -> None:
    a, b = two_hosts
    out = tmp_path / "merged"
    assert cli_main(["merge", str(a), str(b), "-o", str(out)]) == 0
    rows = _rows(out)
    assert [(r["host"], r["model"]) for r in rows] == [  # in test id then host order
        ("gpu-a", "org/large"),
        ("gpu-b", "org/large"),
        ("gpu-a", "org/small"),
        ("gpu-b", "org/small"),
    ]
    assert all(Path(r["run_folder"]).parent in (a, b) for r in rows)  # each row points at its host's run folder
    assert all(r["archive"].endswith(".zip") for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hosts"] == ["gpu-a", "gpu-b"] and summary["benchmark_count"] == 4
    assert summary["shards"] == summary["unfinished_shards"] == []  # not a sweep: no shard is missing
    out_text = capsys.readouterr().out
    assert "merged 4 benchmark(s) from 2 host(s)" in out_text
    assert "text_classification, class unknown (4 benchmarks)" in out_text  # the leaderboard, in the terminal
    assert {p.name for p in out.iterdir()} >= {"leaderboard.md", "report.html", "energy_plot.png"}


def test_merge_reads_bare_run_folders_and_counts_each_benchmark_once(two_hosts, tmp_path: Path) -> None:
    a, b = two_hosts
    (b / "records.jsonl").unlink()  # as the Docker image leaves them: run folders only
    out = tmp_path / "merged"
    assert cli_main(["merge", str(a), str(a.parent / "host-a"), str(b), "-o", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == 4
    assert sorted(r["host"] for r in rows) == ["gpu-a", "gpu-a", "gpu-b", "gpu-b"]
    assert {r["model"] for r in rows if r["host"] == "gpu-b"} == {"org/small", "org/large"}


def test_merge_of_nothing_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert cli_main(["merge", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert cli_main(["merge", str(tmp_path / "absent"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "no benchmark records or run folders found" in err[0] and "no such results folder" in err[1]
    assert not (tmp_path / "out").exists()
