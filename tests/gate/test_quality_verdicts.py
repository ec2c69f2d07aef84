"""The gate's watch on quality (--energy-quality-drop PCT): a drop in the metric's own direction fails, a figure on
one side only warns, baselines and saved runs keep each benchmark's quality (old files still load), and a session
whose quality fell exits 1 with a verdict line naming the metric, both values and the drop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.gate.baselines import (
    Baseline,
    BaselineError,
    benchmark_entry,
    load_baseline,
    save_baseline,
)
from pytest_aienergyscore.gate.history import as_baseline, load_run, save_run
from pytest_aienergyscore.gate.quality_verdicts import QUALITY, QUALITY_DROP, QUALITY_GAIN, QUALITY_KEPT
from pytest_aienergyscore.gate.verdicts import GateSettings, Verdict, compare_quality, evaluate, write_gate_file
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.gate_table import render_gate
from pytest_aienergyscore.report.html import _read_gate
from tests.support.quality_records import quality, scored_record

TEST = "test_q.py::test_bench[org/m]"


def _entry(scored: dict[str, Any] | None, wh: float = 1.0) -> dict[str, Any]:
    return benchmark_entry(scored_record("org/m", wh, scored))


def _compare(
    before: dict[str, Any] | None, now: dict[str, Any] | None, drop: float | None = 5.0
) -> tuple[Verdict | None, str | None]:
    return compare_quality(TEST, _entry(now), _entry(before), GateSettings(quality_drop=drop))


def test_accuracy_falling_beyond_the_threshold_fails_and_the_line_names_the_metric_both_values_and_the_drop() -> None:
    verdict, problem = _compare(quality("accuracy", 0.92, rate=True), quality("accuracy", 0.81, rate=True))
    assert problem is None and verdict is not None
    assert verdict.kind == QUALITY and verdict.status == QUALITY_DROP and verdict.fails
    assert verdict.change_pct == pytest.approx((0.81 - 0.92) / 0.92 * 100)
    assert verdict.label() == ("quality drop: accuracy 0.920 -> 0.810, 12.0% worse, over --energy-quality-drop 5%")


def test_wer_rising_is_a_drop_and_wer_falling_is_a_gain() -> None:
    rising, _ = _compare(quality("wer", 0.10, higher_is_better=False), quality("wer", 0.12, higher_is_better=False))
    assert rising is not None and rising.status == QUALITY_DROP and rising.fails
    assert "20.0% worse" in rising.label()
    falling, _ = _compare(quality("wer", 0.10, higher_is_better=False), quality("wer", 0.08, higher_is_better=False))
    assert falling is not None and falling.status == QUALITY_GAIN and not falling.fails
    assert "20.0% better" in falling.label()


def test_a_drop_within_the_threshold_is_kept_and_without_the_option_a_drop_never_fails() -> None:
    kept, _ = _compare(quality("spearman", 0.80), quality("spearman", 0.78))  # 2.5% worse, under 5%
    assert kept is not None and kept.status == QUALITY_KEPT and not kept.fails
    reported, _ = _compare(quality("spearman", 0.80), quality("spearman", 0.40), drop=None)
    assert reported is not None and reported.status == QUALITY_DROP and not reported.fails
    assert reported.label().endswith("50.0% worse, over 5% (reported only)")


def test_a_step_the_wrong_way_from_a_perfect_zero_error_fails_whatever_the_threshold() -> None:
    verdict, _ = _compare(quality("wer", 0.0, higher_is_better=False), quality("wer", 0.01, higher_is_better=False), 99)
    assert verdict is not None and verdict.status == QUALITY_DROP and verdict.fails and verdict.change_pct is None
    assert "from 0 worse" in verdict.label()


@pytest.mark.parametrize(
    ("before", "now", "why"),
    [
        (None, quality("accuracy", 0.9), "quality only in this session (accuracy 0.900): the baseline has none"),
        (quality("accuracy", 0.9), None, "quality only in the baseline (accuracy 0.900): this session has none"),
        (quality("accuracy", 0.9), quality("macro_f1", 0.5), "quality metric accuracy in the baseline, macro_f1 now"),
        (quality("accuracy", 0.9), quality("accuracy", 0.5, samples=10), "on 100 samples in the baseline, 10 now"),
    ],
)
def test_quality_that_cannot_be_compared_is_a_reason_never_a_verdict(
    before: dict[str, Any] | None, now: dict[str, Any] | None, why: str
) -> None:
    verdict, problem = _compare(before, now)
    assert verdict is None and problem is not None and why in problem


def test_in_the_gate_a_one_sided_quality_is_a_warning_line_and_the_session_passes() -> None:
    old = Baseline(Path("base.json"), {TEST: {**_entry(None), "quality": None}})
    outcome = evaluate([scored_record("org/m", 1.0, quality("accuracy", 0.5))], old, GateSettings(quality_drop=1.0))
    assert outcome is not None and not outcome.failed
    assert [v.kind for v in outcome.verdicts] == ["energy"]
    assert outcome.notes[0] == (
        f"warning: quality of {TEST} not compared, not a failure: quality only in this session (accuracy 0.500): "
        "the baseline has none"
    )
    assert outcome.notes[0] in render_gate(outcome)  # printed as a warning, not as a "note: warning: ..."


def test_many_one_sided_benchmarks_warn_five_times_then_count_the_rest() -> None:
    records = [scored_record(f"org/m{n}", 1.0, quality("accuracy", 0.5), test=f"t.py::test_{n}") for n in range(8)]
    baseline = Baseline(Path("base.json"), {r.nodeid: {**benchmark_entry(r), "quality": None} for r in records})
    outcome = evaluate(records, baseline, GateSettings())
    assert outcome is not None
    warnings = [note for note in outcome.notes if note.startswith("warning:")]
    assert len(warnings) == 6 and warnings[-1] == "warning: and 3 more benchmark(s) whose quality was not compared"


def test_the_gate_table_headline_and_gate_file_show_the_quality_verdict(tmp_path: Path) -> None:
    before = Baseline(Path("base.json"), {TEST: _entry(quality("accuracy", 0.9, rate=True))})
    now = scored_record("org/m", 1.0, quality("accuracy", 0.6, rate=True))
    outcome = evaluate([now], before, GateSettings(quality_drop=10.0))
    assert outcome is not None and outcome.failed
    lines = render_gate(outcome)
    [row] = [line for line in lines if "(quality)" in line]
    assert row.split()[:5] == ["test_bench[org/m]", "accuracy", "(quality)", "0.900", "0.600"]
    assert "quality drop: accuracy 0.900 -> 0.600, 33.3% worse" in row
    assert lines[-1].endswith("; quality: 1 drop, 0 gain, 0 kept; fails on a drop over 10%")
    assert lines[-1].startswith("energy gate FAILED: 0 regression, 0 improvement, 0 within noise, 1 within threshold")
    written = json.loads(write_gate_file(outcome, tmp_path).read_text())
    assert written["quality_drop_pct"] == 10.0
    assert written["verdicts"][1]["kind"] == QUALITY and written["verdicts"][1]["status"] == QUALITY_DROP
    again, problem = _read_gate(tmp_path / "gate.json")  # the HTML page reads the same verdicts back
    assert problem is None and again is not None and again.headline() == outcome.headline()


def test_a_baseline_keeps_each_benchmarks_quality_and_one_saved_before_quality_still_loads(tmp_path: Path) -> None:
    path = save_baseline(
        [scored_record("org/m", 1.0, quality("wer", 0.2, higher_is_better=False))], tmp_path / "b", "s"
    )
    entry = load_baseline(path).benchmarks[TEST]
    assert entry["quality"] == {"metric": "wer", "value": 0.2, "higher_is_better": False, "samples": 100, "rate": False}
    data = json.loads(path.read_text())
    del data["benchmarks"][TEST]["quality"]  # as every baseline written before quality was kept
    path.write_text(json.dumps(data))
    assert "quality" not in load_baseline(path).benchmarks[TEST]


def test_a_baseline_with_a_damaged_quality_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    path = save_baseline([scored_record("org/m", 1.0, quality("accuracy", 0.9))], tmp_path / "b.json", "s")
    data = json.loads(path.read_text())
    data["benchmarks"][TEST]["quality"]["value"] = "high"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError) as caught:
        load_baseline(path)
    message = str(caught.value)
    assert "\n" not in message and f"benchmark '{TEST}'" in message
    assert "quality.value of accuracy must be a finite number, not 'high'" in message


def test_a_saved_run_keeps_the_whole_quality_and_compares_it_as_a_baseline(tmp_path: Path) -> None:
    record = scored_record("org/m", 1.0, quality("accuracy", 0.9, rate=True, also={"macro_f1": 0.8}))
    saved = load_run(save_run([record], tmp_path / ".energy", tmp_path, "s"))
    [back] = saved.records
    assert isinstance(back, Record) and back.metadata["quality"]["also"] == {"macro_f1": 0.8}
    outcome = evaluate(
        [scored_record("org/m", 1.0, quality("accuracy", 0.7, rate=True))],
        as_baseline(saved),
        GateSettings(None, quality_drop=5),
    )
    assert outcome is not None and outcome.failed and outcome.verdicts[1].status == QUALITY_DROP


# -- in a pytest session -------------------------------------------------------------------------------------------

# A benchmark whose energy is fixed (a recorded phase) and whose quality is what QUALITY says.
SCORED = """
import os
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase

def test_scored(energy_meter):
    energy_meter.set(model="org/scored", task="text_classification")
    energy_meter.set(quality={"metric": "accuracy", "value": float(os.environ["QUALITY"]), "higher_is_better": True})
    device = DeviceEnergy("cpu", "cpu", 3600.0, "estimate", "estimate")
    window = Measurement("forward", "estimate", "estimate", 10.0, (device,), counter_period_s=0.001)
    energy_meter.add_phase(Phase("forward", window, samples=1000))
"""


def test_a_session_whose_quality_fell_beyond_the_threshold_exits_1_with_the_verdict_line(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_scored=SCORED)
    monkeypatch.setenv("QUALITY", "0.9")
    saved = bench.runpytest("-p", "no:cacheprovider", "--energy-save-baseline=base.json", "--energy-quality-drop=5")
    saved.assert_outcomes(passed=1)
    assert "warning: no --energy-baseline PATH: nothing was compared, the energy gate did not run" in saved.outlines
    assert any(line.startswith("energy against quality: ") for line in saved.outlines)  # frontier.png's path
    monkeypatch.setenv("QUALITY", "0.8")
    kept = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-quality-drop=15")
    assert kept.ret == 0
    fell = bench.runpytest("-p", "no:cacheprovider", "--energy-baseline=base.json", "--energy-quality-drop=5")
    fell.assert_outcomes(passed=1)
    assert fell.ret == 1
    [row] = [line for line in fell.outlines if "(quality)" in line]
    assert row.startswith("test_scored  accuracy (quality)")
    assert row.endswith("quality drop: accuracy 0.900 -> 0.800, 11.1% worse, over --energy-quality-drop 5%")
    assert any(line.startswith("energy gate FAILED") and "quality: 1 drop" in line for line in fell.outlines)


def test_a_session_compared_with_its_saved_run_fails_on_a_quality_drop(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.makepyfile(test_scored=SCORED)
    monkeypatch.setenv("QUALITY", "0.9")
    bench.runpytest("-p", "no:cacheprovider", "--energy-autosave").assert_outcomes(passed=1)
    monkeypatch.setenv("QUALITY", "0.5")
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-compare", "--energy-quality-drop=5")
    assert result.ret == 1
    assert any("quality drop: accuracy 0.900 -> 0.500" in line for line in result.outlines)
