"""History end to end: sessions saved with --energy-autosave, gated with --energy-compare, then compared offline
with ``aienergyscore compare`` (and its plot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main
from tests.gate.figures import FIXED, FIXED_ID

# A benchmark whose work is WORK iterations: doubling it doubles the CPU time the estimate meter turns into energy.
WORK = """
import os

def test_work(energy_meter):
    energy_meter.set(model="org/work", task="text_classification")
    with energy_meter.measure("forward", samples=10):
        sum(i * i for i in range(int(os.environ["WORK"])))
"""
RUN = ("-p", "no:cacheprovider")


@pytest.fixture(autouse=True)
def _no_history_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIENERGYSCORE_AUTOSAVE", "AIENERGYSCORE_COMPARE"):
        monkeypatch.delenv(name, raising=False)


def _gate_rows(result: pytest.RunResult, test: str) -> list[str]:
    out = result.outlines
    start = next(i for i, line in enumerate(out) if line.startswith("energy gate against "))
    return [line for line in out[start:] if line.startswith(test)]


def _saved(root: Path) -> list[Path]:
    return sorted(root.glob(".energy/*/[0-9][0-9][0-9][0-9]_*.json"))


def test_two_autosaved_sessions_then_compare_fails_the_one_whose_work_doubled(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.makepyfile(test_work=WORK)
    monkeypatch.setenv("WORK", "1500000")
    first = bench.runpytest(*RUN, "--energy-autosave", "--energy-compare")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["warning: no saved run of this machine in *.energy* to compare with*"])
    monkeypatch.setenv("WORK", "3000000")
    second = bench.runpytest(*RUN, "--energy-autosave", "--energy-compare", "--energy-fail-above=10")
    assert second.ret == 1
    second.stdout.fnmatch_lines(["compared with saved run 0001: *0001_nocommit_*.json", "saved as run 0002: *"])
    second.stdout.fnmatch_lines(
        ["energy gate against saved run 0001 (*-estimate-*) (Wh per 1,000 queries unless marked):"]
    )
    [row] = _gate_rows(second, "test_work")
    assert "regression (threshold: no noise estimate, single runs)" in row
    assert any(line.startswith("energy gate FAILED: 1 regression") for line in second.outlines)
    gate = json.loads(sorted((bench.path / "results").glob("*/gate.json"))[-1].read_text())
    assert gate["failed"] and gate["verdicts"][0]["rule"] == "threshold" and "0001_" in gate["baseline"]

    runs = _saved(bench.path)
    assert [p.name[:4] for p in runs] == ["0001", "0002"]
    plot = bench.path / "compare.png"
    capsys.readouterr()
    assert main(["compare", str(runs[0]), str(runs[1]), "--plot", str(plot), "--fail-above", "10"]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("test_work") and "regression" in line for line in out.splitlines())
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_drift_rule_decides_once_saved_runs_hold_the_benchmark_five_times_or_more(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    for wh in ("1.0", "1.08", "1.06", "0.95", "1.03", "0.97", "1.05", "0.93"):  # +-8 % of drift between sessions
        monkeypatch.setenv("FIXED_WH", wh)
        assert bench.runpytest(*RUN, "--energy-autosave").ret == 0
    monkeypatch.setenv("FIXED_WH", "1.12")  # +20 % on the last run (0.93): the threshold alone would fail it
    drift = bench.runpytest(*RUN, "--energy-compare", "--energy-fail-above=10")
    assert drift.ret == 0
    [row] = _gate_rows(drift, "test_fixed")
    assert "+20.4%" in row and "within noise (history: +10.3% vs median within 3-sigma band of 8 runs" in row
    monkeypatch.setenv("FIXED_WH", "1.6")
    regression = bench.runpytest(*RUN, "--energy-compare", "--energy-fail-above=10")
    assert regression.ret == 1
    [row] = _gate_rows(regression, "test_fixed")
    assert "regression (history: +57.6% vs median > 3-sigma band of 8 runs" in row
    gate = json.loads(sorted((bench.path / "results").glob("*/gate.json"))[-1].read_text())
    assert gate["verdicts"][0]["rule"] == "history" and gate["verdicts"][0]["test"] == FIXED_ID


def test_a_missing_history_warns_and_is_an_error_when_a_baseline_is_required(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0")
    required = bench.runpytest(*RUN, "--energy-compare", "--energy-require-baseline")
    assert required.ret == 1
    required.stdout.fnmatch_lines(
        ["error: --energy-compare: no saved run of this machine in *--energy-require-baseline*"]
    )
    named = bench.runpytest(*RUN, "--energy-compare=7")
    assert named.ret == 1
    named.stdout.fnmatch_lines(["error: --energy-compare: no saved run 0007 in * (the latest there: none)"])


def test_an_explicit_baseline_wins_over_compare_and_says_so(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_fixed=FIXED)
    monkeypatch.setenv("FIXED_WH", "1.0")
    assert bench.runpytest(*RUN, "--energy-autosave", "--energy-save-baseline=base.json").ret == 0
    result = bench.runpytest(*RUN, "--energy-baseline=base.json", "--energy-compare")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["--energy-baseline *base.json is used; --energy-compare=latest is not (an explicit*"])
    gate = json.loads(sorted((bench.path / "results").glob("*/gate.json"))[-1].read_text())
    assert gate["baseline"].endswith("base.json")


def test_a_missing_or_damaged_compared_file_stops_the_session_before_any_benchmark(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_work=WORK)
    (bench.path / "damaged.json").write_text('{"benchmarks": []}')
    for name, why in (("missing.json", "no such saved run"), ("damaged.json", 'not a saved run; expected "schema"')):
        result = bench.runpytest(*RUN, f"--energy-compare={name}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.errlines if line.startswith("ERROR:")]
        assert len(errors) == 1, result.errlines
        assert errors[0].startswith(f"ERROR: --energy-compare (command line): {bench.path / name}: {why}")
        assert not (bench.path / "results").exists()  # nothing ran, nothing was measured to lose
