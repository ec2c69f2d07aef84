"""The decode rule: decode = the whole generation pass - the one-token prefill pass, one function for every backend.

The headline is preprocess + the whole generation pass, never biased by a clamp; the split carries its uncertainty;
a negative split is flagged the same way whether the pytorch/vllm runner or optimum-benchmark measured the passes.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from pytest_aienergyscore.backends.optimum.results import WorkerRun, phases_from_report
from pytest_aienergyscore.records.decode import derive_decode, split_details, split_uncertainty_j
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report.files import energy_summary
from pytest_aienergyscore.report.table import rows
from pytest_aienergyscore.rules.tasks import TASKS

KWH = 3.6e6  # joules
UUID = "GPU-aa000000-1111-2222-3333-000000000000"
NEGATIVE_SPLIT = (
    r"^decode split within noise: prefill pass 120 J > generate pass 100 J on cuda:0 \(uncertainty ±\S+ J\); "
    r"the total is unaffected$"
)


def _window(name: str, joules: float, seconds: float, *, confidence: str = "ok", period: float = 0.1) -> Measurement:
    """A window as the NVML meter gives it to the runner (pytorch and vllm backends)."""
    device = DeviceEnergy("cuda:0", "gpu", joules, "measured", "nvml")
    return Measurement(name, "nvml", "measured", seconds, (device,), counter_period_s=period, confidence=confidence)


def _pytorch_phases(prefill_j: float, generate_j: float) -> list[Phase]:
    """What runner._generative_phases records: preprocess, prefill, and decode derived by the rule."""
    prefill, generate = _window("prefill", prefill_j, 6.0), _window("generate", generate_j, 8.0)
    decode = derive_decode(prefill, generate)
    return [
        Phase("preprocess", _window("preprocess", 30.0, 5.0), 4),
        Phase("prefill", prefill, 4),
        Phase("decode", decode, 4, 36, details=split_details(prefill, generate)),
    ]


def _optimum_phases(prefill_j: float, generate_j: float) -> list[Phase]:
    """The same passes as optimum-benchmark reports them: energy_star's decode is its generate minus its prefill."""

    def energy(gpu_j: float, cpu_j: float = 10.0) -> dict[str, Any]:
        return {"unit": "kWh", "gpu": gpu_j / KWH, "cpu": cpu_j / KWH, "ram": 1.0 / KWH, "total": 0.0}

    def window(seconds: float) -> dict[str, Any]:
        return {"duration": seconds, "gpu_count": 1, "gpu_energy": 0.0, "timestamp": "2026-11-28T12:00:00"}

    report = {
        "preprocess_dataset": {"energy": energy(30.0)},
        "prefill": {"energy": energy(prefill_j)},
        "decode": {"energy": energy(generate_j - prefill_j, 20.0)},
    }
    codecarbon = {"preprocess_dataset": window(5.0), "prefill": window(6.0), "generate": window(8.0)}
    result = {
        "samples": 4,
        "input_tokens": 40,
        "versions": {"codecarbon": "3.3.2"},
        "gpu": {"tracked_uuids": [UUID], "model_uuids": [UUID], "power_fallback": [False]},
    }
    config = {"scenario": {"generate_kwargs": {"max_new_tokens": 10, "min_new_tokens": 10}}}
    run = WorkerRun(report, codecarbon, result, 30.0)
    return phases_from_report(run, TASKS["text_generation"], config, "cuda", "0", 0)


def _phase(phases: list[Phase], name: str) -> Phase:
    return next(p for p in phases if p.name == name)


def test_a_positive_split_is_generate_minus_prefill_on_each_device() -> None:
    prefill = _window("prefill", 40.0, 6.0, confidence="low")
    generate = _window("generate", 100.0, 8.0)
    decode = derive_decode(prefill, generate)
    assert [(d.device, d.scope, d.joules, d.meter) for d in decode.devices] == [("cuda:0", "gpu", 60.0, "nvml")]
    assert decode.valid and decode.warnings == ()
    assert decode.confidence == "low"  # the weaker of the two passes
    assert decode.duration_s == pytest.approx(2.0)


def test_a_negative_split_keeps_its_sign_stays_valid_and_is_flagged() -> None:
    decode = derive_decode(_window("prefill", 120.0, 6.0), _window("generate", 100.0, 8.0))
    assert decode.joules() == pytest.approx(-20.0)  # never clamped to zero
    assert decode.valid  # the total it adds up to is sound
    assert decode.confidence == "untrustworthy"
    [warning] = decode.warnings
    assert warning.startswith("decode split within noise: prefill pass 120 J > generate pass 100 J on cuda:0")


def test_a_negative_split_is_flagged_identically_by_every_backend() -> None:
    pytorch = _phase(_pytorch_phases(120.0, 100.0), "decode")
    optimum = _phase(_optimum_phases(120.0, 100.0), "decode")
    for phase in (pytorch, optimum):
        assert phase.measurement.valid and phase.measurement.confidence == "untrustworthy"
        assert phase.measurement.joules("gpu") == pytest.approx(-20.0)
    [said_by_pytorch] = [w for w in pytorch.measurement.warnings if w.startswith("decode split")]
    [said_by_optimum] = [w for w in optimum.measurement.warnings if w.startswith("decode split")]
    assert re.match(NEGATIVE_SPLIT, said_by_pytorch)
    assert said_by_optimum == said_by_pytorch  # same words, same figures, same uncertainty


@pytest.mark.parametrize("phases", [_pytorch_phases, _optimum_phases], ids=["pytorch", "optimum"])
def test_the_total_is_preprocess_plus_the_whole_generation_pass(phases: Any) -> None:
    for prefill_j, generate_j in ((40.0, 100.0), (120.0, 100.0)):
        record = Record(nodeid="t", backend="x", task="text_generation", phases=phases(prefill_j, generate_j))
        assert record.total_wh() * 3600 == pytest.approx(30.0 + generate_j, rel=1e-12)
        summary = energy_summary(record)
        assert summary["decode_wh"] == round((generate_j - prefill_j) / 3600, 2)
        assert summary["phases_wh"]["decode"] == pytest.approx((generate_j - prefill_j) / 3600)  # no writer re-clamps
        assert summary["total_wh_unrounded"] == pytest.approx((30.0 + generate_j) / 3600)


def test_the_table_shows_the_same_negative_decode_as_the_files() -> None:
    record = Record(nodeid="t::x", backend="pytorch", phases=_pytorch_phases(120.0, 100.0), queries=4)
    [row] = rows([record])
    assert "decode=-5.56e-03" in row[2]
    assert "1 warning" in row[-1]


@pytest.mark.parametrize("phases", [_pytorch_phases, _optimum_phases], ids=["pytorch", "optimum"])
def test_every_decode_carries_its_uncertainty_in_the_record_and_the_summary(phases: Any) -> None:
    decode = _phase(phases(40.0, 100.0), "decode")
    details = decode.details
    assert details["uncertainty_j"] > 0 and details["uncertainty_by_scope_j"]["gpu"] > 0
    assert details["generate_j"] >= details["prefill_j"] > 0
    record = Record(nodeid="t", backend="x", phases=phases(40.0, 100.0))
    summary = energy_summary(record)
    assert summary["decode_uncertainty_wh"] == pytest.approx(details["uncertainty_by_scope_j"]["gpu"] / 3600)


def test_the_uncertainty_is_one_counter_period_at_each_of_the_four_edges() -> None:
    prefill, generate = _window("prefill", 60.0, 6.0), _window("generate", 160.0, 8.0)  # 10 W and 20 W
    expected = math.sqrt(2 * (10 * 0.1) ** 2 + 2 * (20 * 0.1) ** 2)
    assert split_uncertainty_j(prefill, generate) == pytest.approx(expected)
    assert split_details(prefill, generate)["uncertainty_by_scope_j"] == {"gpu": pytest.approx(expected)}


def test_a_summary_without_decode_has_no_decode_uncertainty() -> None:
    record = Record(nodeid="t", backend="x", phases=[Phase("forward", _window("forward", 50.0, 6.0), 4)])
    assert energy_summary(record)["decode_uncertainty_wh"] is None
