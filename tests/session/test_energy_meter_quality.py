"""``energy_meter.set(quality=...)``: what a custom benchmark's energy bought, checked when it is set and kept in the
record beside the energy; a bad figure fails the test in one line and loses none of the energy measured before it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_aienergyscore.records.quality import QualityError
from pytest_aienergyscore.session.energy_meter import checked_quality
from tests.test_plugin import run_folders, session_dirs

GOOD = {"metric": "accuracy", "value": 0.75, "higher_is_better": True}


def run_bench(bench: pytest.Pytester, body: str, **outcomes: int) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run one benchmark file; pytest's result and the benchmark's report (benchmark_report.json)."""
    bench.makepyfile(test_bench=body)
    result = bench.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(**(outcomes or {"passed": 1}))
    [folder] = run_folders(session_dirs(bench.path)[0])
    return result, json.loads((folder / "benchmark_report.json").read_text())


def test_a_quality_figure_is_kept_with_source_custom_and_the_phases_sample_count(bench: pytest.Pytester) -> None:
    _, report = run_bench(
        bench,
        f"""
def test_scored(energy_meter):
    with energy_meter.measure("forward", samples=4):
        sum(range(1000))
    energy_meter.set(quality={GOOD!r})
""",
    )
    assert report["metadata"]["quality"] == {**GOOD, "samples": 4, "rate": False, "source": "custom"}


def test_a_sample_count_given_with_the_figure_is_kept_as_given(bench: pytest.Pytester) -> None:
    _, report = run_bench(
        bench,
        f"""
def test_scored(energy_meter):
    energy_meter.set(quality={{**{GOOD!r}, "samples": 3, "rate": True}})
    with energy_meter.measure("forward", samples=4):
        sum(range(1000))
""",
    )
    assert report["metadata"]["quality"]["samples"] == 3 and report["metadata"]["quality"]["rate"] is True


def test_a_bad_quality_figure_fails_in_one_line_and_keeps_the_energy_measured_before_it(
    bench: pytest.Pytester,
) -> None:
    result, report = run_bench(
        bench,
        """
def test_scored(energy_meter):
    with energy_meter.measure("forward", samples=4):
        sum(range(100_000))
    energy_meter.set(quality={"metric": "accuracy", "value": "high", "higher_is_better": True})
""",
        failed=1,
    )
    out = "\n".join(result.outlines)
    assert "energy_meter.set(quality=...): value 'high' of accuracy must be a finite number" in out
    assert "Traceback" not in out and "energy_meter.py" not in out
    assert [p["name"] for p in report["phases"]] == ["forward"]
    assert report["phases"][0]["measurement"]["devices"][0]["joules"] > 0
    assert "quality" not in report["metadata"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.9, "energy_meter.set(quality=...): 0.9 is not allowed; allowed: a dict with keys metric, value"),
        ({"metric": "f1", "value": 0.5}, "lacks higher_is_better"),
        ({"metric": "", "value": 0.5, "higher_is_better": True}, "metric '' must be a non-empty name"),
        ({"metric": "wer", "value": float("nan"), "higher_is_better": False}, "value nan of wer must be a finite"),
        ({"metric": "wer", "value": 0.2, "higher_is_better": "no"}, "higher_is_better 'no' of wer must be True"),
        ({**GOOD, "source": "leaderboard"}, "source 'leaderboard' is not allowed; allowed: built-in, custom"),
        ({"metric": None, "reason": " "}, "metric None needs a 'reason' saying why nothing was scored"),
    ],
)
def test_a_bad_quality_figure_is_refused_in_one_line_naming_the_bad_value(value: Any, message: str) -> None:
    with pytest.raises(QualityError) as caught:
        checked_quality(value)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_figure_from_the_built_in_scorer_keeps_its_source_and_where_its_references_came_from() -> None:
    built_in = {**GOOD, "source": "built-in", "references": "our sample set", "library": "scipy 1.x"}
    assert checked_quality(built_in) == {**built_in, "samples": None, "rate": False}


def test_nothing_scored_is_kept_with_its_reason_for_the_reports() -> None:
    assert checked_quality({"metric": None, "reason": "no references"}) == {"metric": None, "reason": "no references"}
