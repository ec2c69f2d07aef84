"""AI Energy Score's model classes (A up to 20B parameters, B up to 66B, C above) and the one-GPU rule for A and B.

How a parameter count is read from a model's files is tested in tests/backends/test_models.py; here, the rule alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_aienergyscore.rules import model_class as modelclass


def meter_info(gpus: int) -> dict[str, Any]:
    """What a meter says of itself: one device entry per metered GPU."""
    return {"name": "nvml", "devices": [{"device": f"cuda:{i}", "scope": "gpu"} for i in range(gpus)]}


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [(1, "A"), (20_000_000_000, "A"), (20_000_000_001, "B"), (66_000_000_000, "B"), (66_000_000_001, "C")],
)
def test_class_boundaries(parameters: int, expected: str) -> None:
    assert modelclass.classify(parameters) == expected
    assert expected in modelclass.MODEL_CLASSES


def test_gpu_count_comes_from_the_meters_devices() -> None:
    assert modelclass.gpus_in(meter_info(2)) == 2
    assert modelclass.gpus_in({"devices": [{"device": "cpu", "scope": "cpu"}]}) == 0


@pytest.mark.parametrize("klass", ["A", "B"])
def test_class_a_and_b_on_two_gpus_are_refused(klass: str) -> None:
    with pytest.raises(modelclass.MultiGpuRefused, match=f"class {klass} models are benchmarked on one GPU") as info:
        modelclass.check_gpu_count(klass, modelclass.gpus_in(meter_info(2)), allow_multi_gpu=False)
    assert "--energy-allow-multi-gpu" in str(info.value) and "\n" not in str(info.value)
    assert modelclass.check_gpu_count(klass, 2, allow_multi_gpu=True) is True


def test_a_server_on_several_gpus_is_told_to_serve_the_model_on_one() -> None:
    with pytest.raises(modelclass.MultiGpuRefused, match="the vllm server runs on 4 GPUs; serve the model on one GPU"):
        modelclass.check_gpu_count("A", 4, allow_multi_gpu=False, server="the vllm server")


@pytest.mark.parametrize(("klass", "gpus"), [("A", 1), ("B", 0), ("C", 8), (None, 2)])
def test_what_the_rule_lets_through_unmarked(klass: str | None, gpus: int) -> None:
    assert modelclass.check_gpu_count(klass, gpus, allow_multi_gpu=False) is False
