"""Quality beside energy through the real pytorch backend, driven as a user drives it: a benchmark file whose
datasets carry references, run by pytest; every task with references records its metric on every sample, a test's
own function is called with the samples and the answers, and a protocol that yields no answer says why."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import tests.end_to_end.test_energy_star_pytorch as star  # a module import: its tests are not collected twice
from tests.support.tiny_models import build_tiny_model

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchmetrics")

SHORT = {"max_new_tokens": 4, "min_new_tokens": 4}

# Per case: task, variant, reference columns (one value per row), the metric expected, generation overrides.
CASES: dict[str, dict[str, Any]] = {
    "text_classification": {"references": {"label": [1, 0, 1]}, "metric": "accuracy"},
    "image_classification": {"references": {"label": [0, 1, 2]}, "metric": "accuracy"},
    "question_answering": {
        "references": {
            "answers": [{"text": ["The keeper counts ships"], "answer_start": [len(p) + 1]} for p in star.PROMPTS]
        },
        "metric": "exact_match",
    },
    "sentence_similarity": {
        "variant": "embed-pair",
        "references": {"score": [4.5, 1.0, 2.5]},
        "metric": "spearman",
    },
    "object_detection": {
        "references": {"objects": [{"bbox": [[4.0, 4.0, 20.0, 16.0]], "category": [1]}] * star.ROWS},
        "metric": "map",
    },
    "automatic_speech_recognition": {
        "references": {"text": ["a low tone", "a middle tone", "a high tone"]},
        "metric": "wer",
        "overrides": SHORT,
    },
    "image_captioning": {
        "references": {"caption": ["a green picture", "a grey picture", "a red picture"]},
        "metric": "rouge_l",
        "overrides": SHORT,
    },
    "summarization": {
        "variant": "generate",
        "references": {"highlights": ["weather in spring", "a lighthouse keeper", "two plus two"]},
        "metric": "rouge_l",
    },
}


@pytest.fixture
def quality_project(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project whose benchmark file runs energy_star on each case's tiny model and referenced dataset."""
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    cases = {}
    for task, case in CASES.items():
        folder = pytester.mkdir(f"data_{task}")
        rows = star.dataset_rows(task, folder)
        for column, values in case["references"].items():
            for row, value in zip(rows, values, strict=True):
                row[column] = value
        (folder / "samples.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
        cases[task] = {
            "model": str(build_tiny_model(task, star.TINY_CACHE / task)),
            "dataset": str(folder / "samples.jsonl"),
            "variant": case.get("variant"),
            "overrides": case.get("overrides", {}),
        }
    (pytester.path / "cases.json").write_text(json.dumps(cases))
    pytester.makepyfile(
        test_quality="""
        import json, pathlib, pytest

        CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

        @pytest.mark.parametrize("task", sorted(CASES))
        def test_task(energy_star, task):
            case = CASES[task]
            energy_star(task=task, model=case["model"], dataset=case["dataset"], variant=case["variant"],
                        **case["overrides"])

        def longest(samples, outputs):
            return {"metric": "longest_answer", "value": max(len(o) for o in outputs), "higher_is_better": True}

        def test_own_metric(energy_star):
            case = CASES["question_answering"]
            energy_star(task="question_answering", model=case["model"], dataset=case["dataset"], quality=longest)

        def test_protocol_without_answers(energy_star):
            case = CASES["summarization"]
            energy_star(task="summarization", model=case["model"], dataset=case["dataset"])
        """
    )
    return pytester


def reports(root: Path) -> dict[str, dict[str, Any]]:
    """Each run folder's benchmark_report.json, by the test's id."""
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    found = {}
    for folder in session.iterdir():
        if folder.is_dir() and (folder / "benchmark_report.json").is_file():
            report = json.loads((folder / "benchmark_report.json").read_text())
            found[report["nodeid"].split("::")[-1]] = report
    return found


def test_every_task_with_references_records_its_metric_and_what_it_covers(quality_project: pytest.Pytester) -> None:
    result = quality_project.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0")
    result.assert_outcomes(passed=len(CASES) + 2)
    found = reports(quality_project.path)
    for task, case in CASES.items():
        quality = found[f"test_task[{task}]"]["metadata"]["quality"]
        assert quality["metric"] == case["metric"], (task, quality)
        assert quality["samples"] == star.ROWS and quality["source"] == "built-in", task
        assert math.isfinite(quality["value"]), task
        assert "samples.jsonl" in quality["references"], task
    own = found["test_own_metric"]["metadata"]["quality"]
    assert own["metric"] == "longest_answer" and own["source"] == "custom" and own["samples"] == star.ROWS
    assert own["value"] == max(len(o) for o in answers_of(quality_project.path)) > 0
    none = found["test_protocol_without_answers"]
    assert none["metadata"]["quality"]["metric"] is None
    assert any("variant='generate'" in note for note in none["notes"])


def answers_of(root: Path) -> list[str]:
    """The QA answers as the backend reads them, computed again here with the same tiny model and samples."""
    from pytest_aienergyscore.backends.base import LoadRequest
    from pytest_aienergyscore.backends.pytorch.backend import PytorchBackend
    from pytest_aienergyscore.rules.datasets import load_samples
    from pytest_aienergyscore.rules.tasks import TASKS

    task = TASKS["question_answering"]
    backend = PytorchBackend()
    backend.load(LoadRequest(str(build_tiny_model(task.name, star.TINY_CACHE / task.name)), None, task, "cpu"))
    samples, _ = load_samples(task, str(root / "data_question_answering" / "samples.jsonl"), star.ROWS)
    backend.keep_outputs = True
    work = backend.run("forward", backend.preprocess(samples), {}, lambda n: None)
    assert work.outputs is not None
    return backend.readable_outputs(work.outputs)
