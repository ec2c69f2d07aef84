"""The plugin's side of the answers optimum-benchmark's run gives back for quality scoring.

energy_star discards its outputs; the worker keeps them when asked (:mod:`.worker_outputs`) and writes them,
readable, to ``outputs.jsonl`` in the run folder. This module decides what to ask for (which task has an answer a
metric can read, and in which pass), and reads the file back, checked against the samples the plugin handed over:
energy_star drops empty rows and takes the first N, as :func:`~pytest_aienergyscore.rules.datasets.load_samples`
does, so line i is sample i, and a file that does not hold exactly one line per sample is not used at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

OUTPUTS_FILE = "outputs.jsonl"  # the worker's name for it (worker_outputs.OUTPUTS_FILE: that module is worker-only)

# What a forward pass's answer is, for the tasks whose forward output a metric can read. Sentence similarity (the
# pair as one sequence through the base model) and summarization (one forward pass) give no answer; image generation
# has no references.
FORWARD_ANSWERS = {
    "text_classification": "class",
    "image_classification": "class",
    "question_answering": "span",
    "object_detection": "boxes",
}


def answer_kind(task: TaskSpec, protocol: Protocol) -> str | None:
    """How the task's answer reads ("text", "class", "span", "boxes"), or None when its protocol gives none."""
    if protocol.is_generative:
        return "text"
    if protocol.kind == "forward":
        return FORWARD_ANSWERS.get(task.name)
    return None


def keep_request(kind: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's ``keep_outputs`` entry: the kind of answer, and for detection each image's size, since boxes
    are given in the original image's pixels and the worker sees only the resized pixel values."""
    request: dict[str, Any] = {"answer": kind}
    if kind == "boxes":
        request["image_sizes"] = [list(sample["image"].size) for sample in samples]
    return request


def read_outputs(run_dir: Path, result: dict[str, Any], samples: int) -> tuple[list[Any] | None, str | None]:
    """(answers in sample order, None) from the worker's file, or (None, why there are none)."""
    said = result.get("outputs")
    if not isinstance(said, dict):
        return None, "optimum-benchmark's worker kept no outputs"
    if said.get("error"):
        return None, str(said["error"])
    path = run_dir / OUTPUTS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        answers = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as err:
        return None, f"{path} could not be read: {err}"
    if len(answers) != samples:
        return None, f"{path} holds {len(answers)} answers for {samples} samples: they cannot be matched"
    return answers, None
