"""Records with chosen energy and quality, for the tests of what the reports, the gate and the plots make of quality.

The figures are chosen, not measured: these tests check what is done with a quality figure once a record holds one
(the scoring itself is tested in tests/quality/), so a record is built as the runner stores it.
"""

from __future__ import annotations

from typing import Any

from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.quality import QUALITY_KEY
from pytest_aienergyscore.records.record import Phase, Record

OFFLINE_REFERENCES = "pytest-aienergyscore offline sample set: labels written for this project"


def quality(metric: str, value: float, higher_is_better: bool = True, rate: bool = False, **more: Any) -> dict:
    """A quality dict in the record's shape (records/quality.py), built-in unless ``source`` says otherwise."""
    return {
        "metric": metric,
        "value": value,
        "higher_is_better": higher_is_better,
        "samples": more.pop("samples", 100),
        "rate": rate,
        "source": more.pop("source", "built-in"),
        "references": more.pop(
            "references", "pytest-aienergyscore offline sample set: labels written for this project"
        ),
        **more,
    }


def scored_record(
    model: str,
    wh_per_1k: float,
    scored: dict[str, Any] | None,
    task: str = "text_classification",
    queries: int = 100,
    test: str | None = None,
) -> Record:
    """A passed benchmark of ``model`` that used ``wh_per_1k`` Wh per 1,000 queries (CPU, RAPL: measured, not
    comparable with the GPU leaderboard) and holds ``scored`` as its quality (None: never scored)."""
    joules = wh_per_1k * queries / 1000.0 * 3600.0
    device = DeviceEnergy("cpu", "cpu", joules, "measured", "rapl")
    window = Measurement("forward", "rapl", "measured", 10.0, (device,))
    metadata = {QUALITY_KEY: scored} if scored is not None else {}
    return Record(
        test or f"test_q.py::test_bench[{model}]",
        "pytorch",
        model=model,
        task=task,
        phases=[Phase("forward", window, samples=queries)],
        environment={"gpus": [], "cpu": "x86"},
        metadata=metadata,
    )
