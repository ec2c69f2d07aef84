"""``energy_star(quality=fn)``: a test's own metric for the outputs of the protocol run. A non-function is a usage
error found before any model loads; a function is called with the samples and the outputs after the metered phases,
and what it returns is the record's quality (source "custom")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
TINY_CACHE = REPO / ".cache" / "tiny-models"


def run_star(bench: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    bench.makepyfile(test_star=body)
    return bench.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0", *args)


def reports(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("results/*/*/benchmark_report.json"))]


def test_a_quality_argument_that_is_not_a_function_fails_the_test_in_one_line_naming_it(
    bench: pytest.Pytester,
) -> None:
    result = run_star(
        bench,
        """
def test_star(energy_star):
    energy_star(task="text_classification", model="org/not-loaded", quality="accuracy")
""",
    )
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert "energy_star(quality='accuracy'): not callable; pass a function fn(samples, outputs) returning" in out
    assert "Traceback" not in out and "energy_star.py" not in out
    assert not reports(bench.path)  # found before any model loaded: nothing was metered


@pytest.fixture(scope="module")
def tiny_classifier() -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return build_tiny_model("text_classification", TINY_CACHE / "text_classification")


def test_a_tests_own_quality_function_scores_the_outputs_and_becomes_the_records_quality(
    bench: pytest.Pytester, tiny_classifier: Path
) -> None:
    seen = bench.path / "seen.json"
    result = run_star(
        bench,
        f"""
import json

def share_of_label_one(samples, outputs):
    with open({str(seen)!r}, "w") as out:
        json.dump({{"samples": samples, "outputs": outputs}}, out)
    return {{"metric": "share_of_label_one", "value": sum(o["label"] == 1 for o in outputs) / len(outputs),
            "higher_is_better": True}}

def test_star(energy_star):
    record = energy_star(task="text_classification", model={str(tiny_classifier)!r}, samples=4,
                         quality=share_of_label_one)
    assert record.metadata["quality"]["metric"] == "share_of_label_one"
""",
    )
    result.assert_outcomes(passed=1)
    called = json.loads(seen.read_text())
    assert [s["text"] for s in called["samples"]][:1] == [
        "A dull, overlong mess. I checked my watch more often than I watched the screen."  # our offline set's first
    ]
    assert len(called["outputs"]) == 4 and all(set(o) == {"label", "name"} for o in called["outputs"])
    [report] = reports(bench.path)
    quality = report["metadata"]["quality"]
    assert quality["source"] == "custom" and quality["samples"] == 4 and quality["higher_is_better"] is True
    assert quality["value"] == sum(o["label"] == 1 for o in called["outputs"]) / 4


def test_a_quality_function_that_raises_fails_in_one_line_and_keeps_the_energy_measured(
    bench: pytest.Pytester, tiny_classifier: Path
) -> None:
    result = run_star(
        bench,
        f"""
def broken_metric(samples, outputs):
    raise KeyError("label")

def test_star(energy_star):
    energy_star(task="text_classification", model={str(tiny_classifier)!r}, samples=4, quality=broken_metric)
""",
    )
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    [line] = [x for x in result.outlines if "broken_metric" in x and x.startswith("FAILED")] or [""]
    assert line, out
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out
    [report] = reports(bench.path)
    assert [p["name"] for p in report["phases"]] == ["preprocess", "forward"]
    assert "quality" not in report["metadata"] or report["metadata"]["quality"].get("metric") is None
