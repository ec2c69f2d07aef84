"""AI Energy Score's model classes, and the one-GPU rule that goes with them.

The leaderboard compares text generation models only within a size class: A up to 20 billion parameters, B up to 66
billion, C above. This module holds the rule alone, as a function of a parameter count: how the count is read from
a model's files (safetensors headers, config.json) is the backends' business
(:mod:`pytest_aienergyscore.backends.models`), and where it cannot be had (a model behind a vLLM endpoint)
``--energy-model-class`` says the class.

The class also decides how many GPUs a benchmark may use: the leaderboard runs class A and B models on one GPU, so a
class A or B model metered on more than one is refused unless ``--energy-allow-multi-gpu`` (then it is not
comparable). Only the standard library is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODEL_CLASSES = ("A", "B", "C")
CLASS_A_MAX = 20_000_000_000
CLASS_B_MAX = 66_000_000_000


class MultiGpuRefused(ValueError):
    """A class A or B model metered on more than one GPU, without ``--energy-allow-multi-gpu``."""


def classify(parameters: int) -> str:
    """A (<= 20B parameters), B (<= 66B) or C (above): AI Energy Score's table."""
    if parameters <= CLASS_A_MAX:
        return "A"
    return "B" if parameters <= CLASS_B_MAX else "C"


def gpus_in(meter_info: Mapping[str, Any]) -> int:
    """How many GPUs a benchmark is metered on: the GPU devices of the meter (``--energy-gpus`` under NVML)."""
    return sum(1 for device in meter_info.get("devices", ()) if device.get("scope") == "gpu")


def check_gpu_count(model_class: str | None, gpus: int, allow_multi_gpu: bool, server: str | None = None) -> bool:
    """Apply the one-GPU rule for class A and B models; True when ``--energy-allow-multi-gpu`` let a run through.

    Raises :class:`MultiGpuRefused` otherwise, because a class A or B result on several GPUs would sit among the
    leaderboard's single-GPU results without anyone noticing the difference. ``server`` names a local server whose
    GPUs are counted: the fix is then to serve the model on one GPU, which no option of ours can do.
    """
    if gpus <= 1 or model_class not in ("A", "B"):
        return False
    if allow_multi_gpu:
        return True
    counted = (
        f"{server} runs on {gpus} GPUs; serve the model on one GPU"
        if server
        else f"{gpus} GPUs are metered; use --energy-gpus with one GPU"
    )
    raise MultiGpuRefused(
        f"class {model_class} models are benchmarked on one GPU (AI Energy Score's rule), but {counted}, "
        "or --energy-allow-multi-gpu to run anyway (the result is then not comparable)"
    )
