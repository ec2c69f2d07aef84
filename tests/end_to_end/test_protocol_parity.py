"""Parity with optimum-benchmark: the definition of "the leaderboard's method".

For every task optimum-benchmark's ``energy_star`` scenario can run on a CPU, the same benchmark file runs twice, as a
user would run it: once with ``--backend optimum`` (optimum-benchmark 0.6.0 itself, in its own environment) and once
with ``--backend pytorch``, on the same tiny offline model and the same samples (one text longer than the model's
window, so truncation is exercised). Then the work each did is compared from the two ``benchmark_report.json``
files: phases, samples per phase, input tokens, new tokens per sample, generate and forward calls, images, their
size and scheduler steps. Both backends count that work from what actually ran (the optimum worker wraps
energy_star's calls, the pytorch backend counts its own), so equal counts mean equal work, and any difference is a
place where our backend is not the leaderboard's method.

Both sessions run once per module (one pytest process per backend for every task) to keep start-up costs down.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.rules.protocol import protocol_for
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON
from tests.support.tiny_models import build_tiny_model

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.optimum

REPO = Path(__file__).resolve().parents[2]
TINY_CACHE = REPO / ".cache" / "tiny-models"
SAMPLES = 4
RATE = 16_000


@dataclass(frozen=True)
class Case:
    """One parity check: a task, the tiny model that runs it, and the protocol variant that model selects."""

    task: str
    model: str  # a tiny model's name in tests/tiny_models.py
    variant: str = "default"
    model_type: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


# The T5 cases cover energy_star's three text2text preprocessing paths: one prefix (summarization; text classification
# takes the same path), question + context prefixes, and generation's window less its new tokens. Every case runs its
# protocol unchanged: speech recognition, captioning and T5 question answering generate the scenario's 100 tokens.


CASES: Mapping[str, Case] = {
    "text_generation": Case("text_generation", "text_generation"),
    "text_generation_with_t5": Case("text_generation", "t5", "t5", "t5"),
    "summarization": Case("summarization", "summarization"),
    "summarization_with_t5": Case("summarization", "t5", "t5", "t5"),
    "question_answering": Case("question_answering", "question_answering"),
    "question_answering_with_t5": Case("question_answering", "t5", "t5", "t5"),
    "text_classification": Case("text_classification", "text_classification"),
    "sentence_similarity": Case("sentence_similarity", "sentence_similarity"),
    "image_classification": Case("image_classification", "image_classification"),
    "object_detection": Case("object_detection", "object_detection"),
    "automatic_speech_recognition": Case("automatic_speech_recognition", "automatic_speech_recognition"),
    "image_captioning": Case("image_captioning", "image_captioning"),
    "image_generation": Case("image_generation", "image_generation"),
}
# Tasks whose inputs are not text: no input tokens, nothing to truncate.
# (image generation's prompts are tokenised inside the pipeline's call, and counted by neither backend)
NOT_TEXT = (
    "image_classification",
    "object_detection",
    "automatic_speech_recognition",
    "image_captioning",
    "image_generation",
)
TEXT_CASES = [name for name, case in CASES.items() if case.task not in NOT_TEXT]

# Tasks energy_star cannot run the leaderboard's way, and why.
LEFT_OUT: Mapping[str, str] = {
    "reasoning": (
        "energy_star refuses min_new_tokens != max_new_tokens, and the leaderboard's reasoning rows (1 to 8,192 "
        "sampled tokens) come from AI Energy Score's own runner, not from optimum-benchmark"
    ),
}

# What each phase's details must agree on (the contract both backends follow).
WORK_KEYS: Mapping[str, tuple[str, ...]] = {
    "prefill": ("generate_calls", "new_tokens_per_sample"),
    "decode": ("generate_calls", "new_tokens_per_sample"),
    "forward": ("forward_calls",),
    "call": ("images", "image_size", "scheduler_steps"),
}

# Words enough that the long text passes every tiny model's window, T5's 512 tokens included.
_SENTENCE = "energy models measure tokens quickly across small graphics cards while the score compares them. "
LONG_TEXT = (_SENTENCE * 65).strip()
TEXTS = [
    "Tell me about the weather in spring.",
    LONG_TEXT,
    "What is two plus two?",
    "Summarize the plot of a story about a fox and a dog.",
]
PROMPTS = ["a blue house next to a green tree", "a red bus at night", "a cat on a sofa", "a lighthouse in a storm"]
IMAGE_SIZES = [(40, 30), (64, 64), (20, 50), (100, 80)]


def _audio(index: int) -> dict[str, Any]:
    """A quarter-second sine at 16 kHz, as a struct of plain numbers (the form a local dataset carries)."""
    pitch = 220.0 * (index + 1)
    n = RATE // 4
    return {
        "array": [round(0.5 * math.sin(2 * math.pi * pitch * t / RATE), 6) for t in range(n)],
        "sampling_rate": RATE,
    }


def write_samples(folder: Path) -> Path:
    """One local dataset for every task: each reads its own columns from the same rows, in both sessions."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(SAMPLES):
        image = folder / f"image-{index}.png"
        Image.new("RGB", IMAGE_SIZES[index], (40 * index, 200 - 30 * index, 90)).save(image)
        rows.append(
            {
                "text": TEXTS[index],
                "question": ["Who counts ships?", "What is measured?", "Where?", "Why?"][index],
                "context": TEXTS[(index + 1) % SAMPLES],
                "sentence1": TEXTS[index],
                "sentence2": TEXTS[(index + 2) % SAMPLES],
                "image": image.name,
                "audio": _audio(index),
                "prompt": PROMPTS[index],
            }
        )
    path = folder / "samples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


BENCHMARK_FILE = """
import json, pathlib, pytest

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

@pytest.mark.parametrize("case", sorted(CASES))
def test_case(energy_star, case):
    energy_star(task=CASES[case]["task"], model=CASES[case]["model"], **CASES[case]["overrides"])
"""


def write_project(root: Path, cases: Mapping[str, Case]) -> Path:
    """A user's project: one benchmark per case, tiny models from the shared cache, one samples file."""
    root.mkdir(parents=True, exist_ok=True)
    models = {case.model for case in cases.values()}
    paths = {name: str(build_tiny_model(name, TINY_CACHE / name)) for name in sorted(models)}
    listing = {
        name: {"task": case.task, "model": paths[case.model], "overrides": dict(case.overrides)}
        for name, case in cases.items()
    }
    (root / "cases.json").write_text(json.dumps(listing, indent=1))
    (root / "test_bench.py").write_text(BENCHMARK_FILE)
    (root / "pytest.ini").write_text("[pytest]\n")
    return write_samples(root / "data")


def user_env() -> dict[str, str]:
    """This environment without our own settings, offline, as a user's shell would be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE_", "BENCHMARK_BACKEND", "PYTEST_"))}
    env.update(HF_HUB_OFFLINE="1", COLUMNS="200")
    return env


def run_session(root: Path, dataset: Path, backend: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rA",
        f"--backend={backend}",
        f"--optimum-python={OPTIMUM_PYTHON}",
        "--energy-meter=estimate",
        f"--energy-samples={SAMPLES}",
        "--energy-warmup=1",
        f"--energy-dataset={dataset}",
    ]
    return subprocess.run(command, cwd=root, env=user_env(), capture_output=True, text=True, timeout=900)


def reports_by_case(root: Path) -> dict[str, dict[str, Any]]:
    """Each benchmark's ``benchmark_report.json``, keyed by its case (the parametrize id of its node)."""
    found = {}
    for path in (root / "results").rglob("benchmark_report.json"):
        report = json.loads(path.read_text())
        nodeid = str(report.get("nodeid", ""))
        if nodeid.endswith("]"):
            found[nodeid.rsplit("[", 1)[1][:-1]] = report
    return found


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    """Every case run once with --backend optimum and once with --backend pytorch, on the same models and samples."""
    if not OPTIMUM_PYTHON.exists():
        pytest.skip(MISSING)
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in ("optimum", "pytorch"):
        root = tmp_path_factory.mktemp(backend)
        dataset = write_project(root, CASES)
        done = run_session(root, dataset, backend)
        reports = reports_by_case(root)
        runs[backend] = {"reports": reports, "output": {"text": done.stdout[-6000:] + done.stderr[-3000:]}}
    return runs


def work_done(report: Mapping[str, Any]) -> dict[str, Any]:
    """The work a benchmark did, as both backends record it: what the parity tests compare."""
    counts = report.get("counts") or {}
    phases: dict[str, Any] = {}
    for phase in report.get("phases") or []:
        details = phase.get("details") or {}
        facts = {"samples": phase.get("samples")}
        facts.update({key: details.get(key) for key in WORK_KEYS.get(phase["name"], ())})
        phases[phase["name"]] = facts
    return {
        "phases": [phase["name"] for phase in report.get("phases") or []],
        "samples": counts.get("samples"),
        "input_tokens": counts.get("input_tokens"),
        "work": phases,
    }


def _report(sessions: Mapping[str, Any], backend: str, case: str) -> dict[str, Any]:
    report = sessions[backend]["reports"].get(case)
    if report is None:
        pytest.fail(f"--backend {backend} wrote no report for {case}:\n{sessions[backend]['output']['text']}")
    assert report["outcome"] == "passed", f"--backend {backend} {case}: {report['outcome']}: {report.get('log', '')}"
    return report


@pytest.mark.parametrize(
    "case",
    [*CASES, *(pytest.param(task, marks=pytest.mark.skip(reason=why)) for task, why in LEFT_OUT.items())],
)
def test_pytorch_backend_does_the_work_energy_star_does(sessions: dict[str, Any], case: str) -> None:
    optimum = work_done(_report(sessions, "optimum", case))
    pytorch = work_done(_report(sessions, "pytorch", case))
    assert pytorch == optimum


@pytest.mark.parametrize("case", list(CASES))
def test_energy_star_did_the_protocol_tables_work(sessions: dict[str, Any], case: str) -> None:
    """optimum-benchmark's own counts against the protocol table: the table says what the tests found upstream."""
    spec = CASES[case]
    protocol = protocol_for(spec.task, spec.model_type)
    assert protocol.variant == spec.variant
    done = work_done(_report(sessions, "optimum", case))
    assert done["phases"] == list(protocol.phases)
    assert done["samples"] == SAMPLES
    assert all(facts["samples"] == SAMPLES for facts in done["work"].values()), done
    if protocol.kind == "generate":
        new_tokens = protocol.generate(spec.overrides)["max_new_tokens"]
        assert done["work"]["prefill"] == {
            "samples": SAMPLES,
            "generate_calls": SAMPLES,
            "new_tokens_per_sample": {"1": SAMPLES},
        }
        assert done["work"]["decode"]["new_tokens_per_sample"] == {str(new_tokens): SAMPLES}
        assert done["work"]["decode"]["generate_calls"] == SAMPLES
    elif protocol.kind == "forward":
        assert done["work"]["forward"]["forward_calls"] == SAMPLES
    else:
        call = done["work"]["call"]
        steps = protocol.call()["num_inference_steps"]
        assert call["images"] == SAMPLES * protocol.call()["num_images_per_prompt"]
        assert call["scheduler_steps"] == SAMPLES * steps
        assert call["image_size"] is not None and len(call["image_size"]) == 2
    if spec.task in NOT_TEXT:
        assert done["input_tokens"] is None
    else:
        assert done["input_tokens"] > 0


@pytest.mark.parametrize("case", TEXT_CASES)
def test_the_long_text_reaches_the_models_window_so_truncation_is_compared(sessions: dict[str, Any], case: str) -> None:
    """Equal input tokens prove equal truncation only if something was cut: the pytorch backend says it was."""
    counts = _report(sessions, "pytorch", case)["counts"]
    assert counts.get("truncated", 0) >= 1, counts
