"""``aienergyscore compare`` with quality: each run's quality beside its energy, and ``--quality-drop PCT`` failing
when the last run's quality fell against the run before it, by the session gate's own rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.cli.main import main
from pytest_aienergyscore.gate.history import save_run
from tests.gate.figures import gate_record
from tests.support.quality_records import quality


def _run(tmp_path: Path, per_rep: list[float], scored: dict[str, Any] | None) -> Path:
    """A saved run of test_x, as the existing compare tests make them, holding ``scored`` as its quality."""
    record = gate_record(per_rep)
    if scored is not None:
        record.metadata["quality"] = scored
    return save_run([record], tmp_path / ".energy", tmp_path, "s")


def _rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("test_x")]


def test_each_runs_quality_stands_beside_its_energy_and_its_change_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path, [1.0], quality("accuracy", 0.912))
    second = _run(tmp_path, [1.5], quality("accuracy", 0.905))
    assert main(["compare", str(first), str(second)]) == 0  # no --quality-drop: reported, never failed
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("benchmark"))
    assert header.split() == ["benchmark", "0001", "quality", "0002", "quality", "change", "verdict"]
    energy, kept = _rows(out)
    assert energy.split()[:8] == ["test_x", "1.000", "accuracy", "0.912", "1.500", "accuracy", "0.905", "+50.0%"]
    assert kept.split()[:2] == ["test_x", "-0.8%"]
    assert kept.endswith("quality kept: accuracy 0.912 -> 0.905, 0.8% worse, within 5% (reported only)")
    assert "quality: 0 drop, 0 gain, 1 kept; changes over 5% reported" in out


def test_a_quality_drop_over_the_threshold_exits_1_and_one_within_it_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path, [1.0], quality("accuracy", 0.9))
    second = _run(tmp_path, [1.0], quality("accuracy", 0.8))
    assert main(["compare", str(first), str(second), "--quality-drop", "5"]) == 1
    out = capsys.readouterr().out
    assert _rows(out)[1].endswith("quality drop: accuracy 0.900 -> 0.800, 11.1% worse, over --energy-quality-drop 5%")
    assert "energy gate FAILED" in out and "quality: 1 drop, 0 gain, 0 kept; fails on a drop over 5%" in out
    assert main(["compare", str(first), str(second), "--quality-drop", "15"]) == 0
    capsys.readouterr()
    assert main(["compare", str(first), str(second), "--energy-quality-drop", "5"]) == 1  # the flag the label quotes


def test_a_metric_better_lower_drops_when_it_rises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _run(tmp_path, [1.0], quality("wer", 0.10, higher_is_better=False))
    second = _run(tmp_path, [1.0], quality("wer", 0.12, higher_is_better=False))
    assert main(["compare", str(first), str(second), "--quality-drop", "10"]) == 1
    assert "quality drop: wer 0.100 -> 0.120, 20.0% worse" in _rows(capsys.readouterr().out)[1]


def test_the_last_runs_quality_is_compared_with_the_run_before_it_not_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in (0.95, 0.80, 0.80):  # against the first, 0.80 would be a 15.8% drop
        folder = _run(tmp_path, [1.0], quality("accuracy", value)).parent
    assert main(["compare", str(folder), "--quality-drop", "5"]) == 0
    out = capsys.readouterr().out
    assert _rows(out)[1].endswith("quality kept: accuracy 0.800 -> 0.800, unchanged")
    assert "the last run's quality against the run before it" in out


def test_quality_on_one_side_only_is_a_warning_never_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path, [1.0], None)
    second = _run(tmp_path, [1.0], quality("accuracy", 0.5))
    assert main(["compare", str(first), str(second), "--quality-drop", "5"]) == 0
    out = capsys.readouterr().out
    [energy] = _rows(out)  # no quality verdict row: nothing was compared
    assert energy.split()[:5] == ["test_x", "1.000", "-", "1.000", "accuracy"]
    assert "warning: quality of t.py::test_x not compared, not a failure: quality only in this session" in out


def test_a_quality_drop_with_no_quality_in_any_run_warns_that_it_gates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _run(tmp_path, [1.0], None), _run(tmp_path, [1.0], None)
    assert main(["compare", str(first), str(second), "--quality-drop", "5"]) == 0
    out = capsys.readouterr().out
    assert "warning: --quality-drop 5%: no run compared has a quality figure, so quality gates nothing" in out
    assert "quality" not in next(line for line in out.splitlines() if line.startswith("benchmark"))


def test_a_session_summary_brings_its_quality_into_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = _run(tmp_path, [1.0], quality("accuracy", 0.9))
    folder = tmp_path / "2026-01-02_00-00-00"
    folder.mkdir()
    row = {"test": "t.py::test_x", "total_wh": 1.0, "wh_per_1000_queries": 1.0, "quality": quality("accuracy", 0.6)}
    (folder / "summary.json").write_text(json.dumps({"session": "s", "benchmarks": [row]}))
    assert main(["compare", str(saved), str(folder), "--quality-drop", "5"]) == 1
    assert "quality drop: accuracy 0.900 -> 0.600" in _rows(capsys.readouterr().out)[1]


def test_a_damaged_quality_in_a_run_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path, [1.0], quality("accuracy", 0.9))
    second = _run(tmp_path, [1.0], quality("accuracy", 0.9))
    data = json.loads(second.read_text())
    data["records"][0]["metadata"]["quality"]["value"] = "high"
    second.write_text(json.dumps(data))
    assert main(["compare", str(first), str(second)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{second}: t.py::test_x: quality.value of accuracy must be a finite number, not 'high'" in err


def test_a_quality_drop_that_is_not_a_percentage_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path, [1.0], None)
    with pytest.raises(SystemExit):
        main(["compare", str(run), str(run), "--quality-drop", "-3"])
    err = capsys.readouterr().err
    assert "argument --quality-drop/--energy-quality-drop: invalid value '-3'; allowed: a percentage >= 0" in err


def test_quality_warnings_stop_after_five_benchmarks_and_say_how_many_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(scored: dict[str, Any] | None) -> Path:
        records = [gate_record([1.0]) for _ in range(7)]
        for number, record in enumerate(records):
            record.nodeid = f"t.py::test_{number}"
            record.metadata["quality"] = scored
        return save_run(records, tmp_path / ".energy", tmp_path, "s")

    first, second = run(None), run(quality("accuracy", 0.9))
    assert main(["compare", str(first), str(second)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 6 and warnings[-1] == "warning: and 2 more benchmark(s) whose quality was not compared"
