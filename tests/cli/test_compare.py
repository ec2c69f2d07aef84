"""``aienergyscore compare``: saved runs, folders of them and session folders, side by side, with the gate's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main
from pytest_aienergyscore.gate.history import save_run
from pytest_aienergyscore.records.store import write_records
from tests.gate.figures import gate_record


def _run(tmp_path: Path, per_rep: list[float]) -> Path:
    return save_run([gate_record(per_rep)], tmp_path / ".energy", tmp_path, "s")


def _rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("test_x")]


def test_two_saved_runs_show_each_figure_the_change_and_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _run(tmp_path, [1.0, 1.02, 0.98]), _run(tmp_path, [1.5, 1.52, 1.48])
    assert main(["compare", str(first), str(second)]) == 0  # no --fail-above: reported, never failed
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f"0001: {first}", f"0002: {second}"]
    [row] = _rows(out)
    assert row.split()[:4] == ["test_x", "1.000", "1.500", "+50.0%"] and "regression (welch: p<0.001)" in row
    assert main(["compare", str(first), str(second), "--fail-above", "10"]) == 1


def test_a_folder_of_saved_runs_is_read_in_order_and_its_history_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for wh in (1.0, 1.08, 0.93, 1.05, 0.96, 1.02, 2.0):
        folder = _run(tmp_path, [wh]).parent
    assert main(["compare", str(folder), "--fail-above", "10"]) == 1
    [row] = _rows(capsys.readouterr().out)
    assert row.split()[1:8] == ["1.000", "1.080", "0.930", "1.050", "0.960", "1.020", "2.000"]
    assert "regression (history: +" in row and "3-sigma band of 6 runs" in row


def test_session_folders_are_read_from_their_records_or_their_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_records, with_summary = tmp_path / "2026-01-01_00-00-00", tmp_path / "2026-01-02_00-00-00"
    write_records(with_records / "records.jsonl", [gate_record([1.0])])
    with_summary.mkdir()
    row = {"test": "t.py::test_x", "total_wh": 1.2, "wh_per_1000_queries": 1.2, "repetitions": 1}
    (with_summary / "summary.json").write_text(json.dumps({"session": "s", "benchmarks": [row]}))
    assert main(["compare", str(with_records), str(with_summary)]) == 0
    captured = capsys.readouterr()
    [line] = _rows(captured.out)
    assert "+20.0%" in line and "threshold: no noise estimate" in line
    assert "summary.json only (no records.jsonl)" in captured.err


def test_a_path_that_is_none_of_these_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path, [1.0])
    assert main(["compare", str(run), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'nowhere'}: not a saved run (.json" in err
    (tmp_path / "other.json").write_text("{}")
    assert main(["compare", str(run), str(tmp_path / "other.json")]) == 2
    assert "other.json: not a saved run; expected" in capsys.readouterr().err
    assert main(["compare", str(run)]) == 2
    assert "1 run found, need 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(run), str(run), "--fail-above", "ten"])
    assert "invalid value 'ten'; allowed: a percentage >= 0" in capsys.readouterr().err


def test_the_plot_draws_every_run_of_every_benchmark_as_a_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib.figure")
    first, second = _run(tmp_path, [1.0, 1.1, 0.9]), _run(tmp_path, [1.3, 1.4, 1.2])
    plot = tmp_path / "out" / "compare.png"
    plot.parent.mkdir()
    assert main(["compare", str(first), str(second), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG") and f"plot: {plot}" in capsys.readouterr().out
