"""Custom phases as a user writes them under ``energy_meter``, run by pytest with the estimate meter: nested windows
are parts of their parent, repeated windows of one name add up, repetitions are averaged; checked in the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.records.figures import JOULES_PER_WH
from pytest_aienergyscore.report.table import NESTED_NOTE
from tests.test_plugin import run_folders, session_dirs

BURN = """
import pytest

def burn(n=300_000):
    return sum(i * i for i in range(n))
"""


def run_one(bench: pytest.Pytester, body: str, **outcomes: int) -> tuple[pytest.RunResult, dict[str, Any], dict]:
    """Run one benchmark test file; return pytest's result, GPU_ENERGY_SUMMARY.json and benchmark_report.json."""
    bench.makepyfile(test_bench=BURN + body)
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(**(outcomes or {"passed": 1}))
    [folder] = run_folders(session_dirs(bench.path)[0])
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    report = json.loads((folder / "benchmark_report.json").read_text())
    assert (folder / "GPU_ENERGY_WH.txt").read_text() == f"{summary['total_wh_unrounded']:.2f}\n"
    return result, summary, report


def window_wh(report: dict[str, Any], name: str) -> list[float]:
    """Each recorded window of a phase, in Wh of the headline scope, read back from benchmark_report.json."""
    scope = report["summary"]["device"]
    return [
        sum(d["joules"] for d in p["measurement"]["devices"] if d["scope"] == scope) / JOULES_PER_WH
        for p in report["phases"]
        if p["name"] == name
    ]


NESTED = """
def test_nested(energy_meter):
    energy_meter.set(model="org/m", task="text_generation")
    with energy_meter.measure("outer", samples=3):
        with energy_meter.measure("inner_a", samples=3):
            burn()
        with energy_meter.measure("inner_b", samples=3):
            burn()
        burn()
"""


def test_a_nested_run_totals_the_outer_window_and_reports_the_inner_ones_as_its_parts(bench: pytest.Pytester) -> None:
    result, summary, report = run_one(bench, NESTED)
    [outer], [inner_a], [inner_b] = (window_wh(report, name) for name in ("outer", "inner_a", "inner_b"))
    assert 0 < inner_a + inner_b <= outer * (1 + 1e-9)
    assert summary["total_wh_unrounded"] == pytest.approx(outer, rel=1e-12)
    assert summary["phases_wh"] == pytest.approx({"outer": outer})
    assert summary["wh_per_1000_queries"] == pytest.approx(outer / 3 * 1000)
    assert {p["name"]: p["parent"] for p in report["phases"]} == {"inner_a": "outer", "inner_b": "outer", "outer": None}
    parts = {p["name"]: p for p in summary["phases"]}
    assert [p["name"] for p in summary["phases"]] == ["outer", "inner_a", "inner_b"]
    assert parts["inner_a"]["parent"] == "outer" and not parts["inner_a"]["in_total"]
    assert parts["inner_b"]["wh"] == pytest.approx(inner_b) and parts["outer"]["in_total"]
    out = "\n".join(result.outlines)
    assert "(outer>inner_a=" in out and "(outer>inner_b=" in out and NESTED_NOTE in out


def test_a_loop_of_windows_with_one_name_totals_their_sum_and_their_samples(bench: pytest.Pytester) -> None:
    _, summary, report = run_one(
        bench,
        """
def test_batches(energy_meter):
    energy_meter.set(model="org/m", task="text_generation")
    for batch in range(3):
        with energy_meter.measure("decode", samples=2, tokens=10):
            burn()
""",
    )
    decode = window_wh(report, "decode")
    assert len(decode) == 3 and min(decode) > 0
    assert summary["total_wh_unrounded"] == pytest.approx(sum(decode), rel=1e-12)
    assert summary["phases_wh"]["decode"] == pytest.approx(sum(decode), rel=1e-12)
    assert summary["samples"] == {"decode": 6} and summary["tokens"] == {"decode": 30}
    assert summary["queries"] == 6 and summary["repetitions"] == 1
    assert summary["phases"][0]["windows"] == 3


def test_repetitions_under_energy_meter_are_averaged_after_each_adds_up_its_windows(bench: pytest.Pytester) -> None:
    _, summary, report = run_one(
        bench,
        """
def test_repeated(energy_meter):
    for repetition in range(3):
        for batch in range(2):
            with energy_meter.measure("decode", samples=2, repetition=repetition):
                burn()
""",
    )
    decode = window_wh(report, "decode")
    per_repetition = [decode[0] + decode[1], decode[2] + decode[3], decode[4] + decode[5]]
    assert summary["total_wh_unrounded"] == pytest.approx(sum(per_repetition) / 3, rel=1e-12)
    assert summary["repetitions"] == 3 and summary["samples"] == {"decode": 4} and summary["queries"] == 4


def test_inner_phases_of_a_window_that_raised_take_its_place_in_the_total(bench: pytest.Pytester) -> None:
    _, summary, report = run_one(
        bench,
        """
def test_fails_late(energy_meter):
    with energy_meter.measure("outer"):
        with energy_meter.measure("inner", samples=2):
            burn()
        raise RuntimeError("boom")
""",
        failed=1,
    )
    [inner] = window_wh(report, "inner")
    assert window_wh(report, "outer") == [] and report["outcome"] == "failed"
    assert [p["parent"] for p in report["phases"]] == [None]
    assert summary["total_wh_unrounded"] == pytest.approx(inner, rel=1e-12) and inner > 0


def test_a_phase_name_with_a_slash_fails_the_test_in_one_line(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_bench="""
def test_slash(energy_meter):
    with energy_meter.measure("model/decode"):
        pass
"""
    )
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert "phase name 'model/decode' is not allowed; use a non-empty name without '/'" in out
    assert "Traceback" not in out and "recorder.py" not in out
    assert not any(Path(bench.path, "results").glob("*/*/GPU_ENERGY_SUMMARY.json"))
