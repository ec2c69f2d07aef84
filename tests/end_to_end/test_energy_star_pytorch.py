"""Every AI Energy Score task, and reasoning, through the real pytorch backend with tiny models built offline,
driven as a user would drive it: a benchmark file run by pytest, then the files it leaves are checked."""

from __future__ import annotations

import json
import math
import struct
import wave
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.rules.tasks import TASKS
from tests.support.tiny_models import TINY_TASKS, build_tiny_model

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")

REPO = Path(__file__).resolve().parents[2]
TINY_CACHE = REPO / ".cache" / "tiny-models"
ROWS = 3

PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
]

# Extra generation/call arguments that keep tiny models fast: reasoning would otherwise run to 8,192 tokens.
OVERRIDES: dict[str, dict[str, Any]] = {
    "reasoning": {"max_new_tokens": 6},
    "image_generation": {"num_inference_steps": 2, "height": 16, "width": 16},
}


def _image(path: Path, shade: int) -> str:
    from PIL import Image

    Image.new("RGB", (40, 32), (shade, 255 - shade, 128)).save(path)
    return path.name


def _wav(path: Path, rate: int, seconds: float, freq: float) -> str:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path.name


def dataset_rows(task: str, folder: Path) -> list[dict[str, Any]]:
    """A tiny dataset in the task's official column names; images and audio as files beside it."""
    columns = TASKS[task].columns
    rows: list[dict[str, Any]] = []
    for i in range(ROWS):
        if "image" in columns:
            rows.append({"image": _image(folder / f"img{i}.png", 40 * i)})
        elif "audio" in columns:  # 8 kHz on purpose: the backend must resample to the model's 16 kHz
            rows.append({"audio": _wav(folder / f"clip{i}.wav", 8000, 0.5 + 0.25 * i, 220 * (i + 1))})
        elif "question" in columns:
            rows.append({"question": f"Who counts ships {i}?", "context": PROMPTS[i] + " The keeper counts ships."})
        elif "sentence1" in columns:
            rows.append({"sentence1": PROMPTS[i], "sentence2": PROMPTS[(i + 1) % ROWS]})
        else:
            rows.append({next(iter(columns.values())): PROMPTS[i]})
    return rows


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    return {task: build_tiny_model(task, TINY_CACHE / task) for task in TINY_TASKS}


@pytest.fixture
def star_project(pytester: pytest.Pytester, clean_env, tiny_models) -> pytest.Pytester:
    """A project whose benchmark file runs energy_star for every task on its tiny model and tiny dataset."""
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    cases = {}
    for task in TINY_TASKS:
        folder = pytester.mkdir(f"data_{task}")
        dataset = folder / "samples.jsonl"
        dataset.write_text("\n".join(json.dumps(r) for r in dataset_rows(task, folder)) + "\n")
        cases[task] = {"model": str(tiny_models[task]), "dataset": str(dataset), "overrides": OVERRIDES.get(task, {})}
    (pytester.path / "cases.json").write_text(json.dumps(cases))
    pytester.makepyfile(
        test_all_tasks="""
        import json, pathlib, pytest

        CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

        @pytest.mark.parametrize("task", sorted(CASES))
        def test_task(energy_star, task):
            case = CASES[task]
            record = energy_star(task=task, model=case["model"], dataset=case["dataset"], **case["overrides"])
            assert record.task == task
        """
    )
    return pytester


def summaries(root: Path) -> dict[str, dict[str, Any]]:
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    out = {}
    for folder in session.iterdir():
        if folder.is_dir():
            summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
            report = json.loads((folder / "benchmark_report.json").read_text())
            out[summary["task"]] = {"summary": summary, "report": report, "folder": folder}
    return out


def test_every_task_runs_through_the_pytorch_backend(star_project: pytest.Pytester) -> None:
    result = star_project.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=1")
    result.assert_outcomes(passed=len(TINY_TASKS))
    found = summaries(star_project.path)
    assert set(found) == set(TINY_TASKS)
    for task, item in found.items():
        spec, summary, report = TASKS[task], item["summary"], item["report"]
        assert list(summary["phases_wh"]) == list(spec.phases), task
        assert all(v >= 0 for v in summary["phases_wh"].values()), task
        assert summary["queries"] == ROWS and summary["samples"] == dict.fromkeys(spec.phases, ROWS), task
        assert summary["backend"] == "pytorch" and summary["energy_kind"] == "estimate"
        assert report["dataset"]["source"] == "local file" and report["dataset"]["official"] is False
        assert report["dataset"]["used"] == ROWS
        assert report["metadata"]["model_facts"]["device"] == "cpu"
        assert report["metadata"]["model_facts"]["dtype"] == "float32"  # fp32 on the CPU, every task
        assert report["metadata"]["warmup_runs"] == 1
        assert (item["folder"].with_name(item["folder"].name + ".zip")).exists()


def test_token_counts_come_from_the_tokenizer(star_project: pytest.Pytester, tiny_models) -> None:
    from transformers import AutoTokenizer

    star_project.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0", "-k", "text_gen")
    item = summaries(star_project.path)["text_generation"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["text_generation"])
    expected_input = sum(len(tokenizer(p)["input_ids"]) for p in PROMPTS)
    tokens = item["summary"]["tokens"]
    assert tokens["preprocess"] == tokens["prefill"] == expected_input
    assert tokens["decode"] == ROWS * (10 - 1)  # min = max = 10 new tokens; the first belongs to prefill
    decode = next(p for p in item["report"]["phases"] if p["name"] == "decode")
    assert decode["details"]["generated_tokens"] == ROWS * 10
    assert decode["details"]["method"].startswith("generate pass minus prefill pass")
    assert decode["details"]["uncertainty_j"] >= 0


def test_repeat_reports_mean_stdev_and_cv(star_project: pytest.Pytester) -> None:
    result = star_project.runpytest(
        "-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0", "--energy-repeat=3", "-k", "text_class"
    )
    result.assert_outcomes(passed=1)
    report = summaries(star_project.path)["text_classification"]["report"]
    stats = report["metadata"]["repeat_stats"]
    assert set(stats) == {"preprocess", "forward"}
    assert stats["forward"]["n"] == 3 and stats["forward"]["stdev_j"] >= 0
    forward = [p["measurement"] for p in report["phases"] if p["name"] == "forward"]
    assert len(forward) == 3


BAD_INPUT = """
import json, pathlib, pytest

HERE = pathlib.Path(__file__).parent
CASES = json.loads((HERE / "cases.json").read_text())

def test_unknown_task(energy_star):
    energy_star(task="text_telepathy", model=CASES["text_generation"]["model"])

def test_unknown_model(energy_star):
    energy_star(task="text_classification", model="nobody/no-such-model-anywhere")

def test_model_not_for_the_task(energy_star):
    energy_star(task="text_classification", model=CASES["text_generation"]["model"],
                dataset=CASES["text_classification"]["dataset"])

def test_dataset_missing_columns(energy_star):
    path = HERE / "wrong.jsonl"
    path.write_text(json.dumps({"prompt": "hello"}) + "\\n")
    energy_star(task="text_classification", model=CASES["text_classification"]["model"], dataset=str(path))

def test_empty_dataset(energy_star):
    path = HERE / "empty.jsonl"
    path.write_text("")
    energy_star(task="text_classification", model=CASES["text_classification"]["model"], dataset=str(path))

def test_all_samples_empty(energy_star):
    path = HERE / "blank.jsonl"
    path.write_text(json.dumps({"text": "  "}) + "\\n" + json.dumps({"text": None}) + "\\n")
    energy_star(task="text_classification", model=CASES["text_classification"]["model"], dataset=str(path))

def test_a_good_one_still_runs(energy_star):
    case = CASES["text_classification"]
    energy_star(task="text_classification", model=case["model"], dataset=case["dataset"])
"""

EXPECTED_ERRORS = {
    "test_unknown_task": "unknown task 'text_telepathy'; allowed: text_generation, reasoning",
    "test_unknown_model": "model 'nobody/no-such-model-anywhere' cannot be had here",
    "test_model_not_for_the_task": "(LlamaForCausalLM) is not a text_classification model",
    "test_dataset_missing_columns": "lacks the column(s) text that task text_classification needs (it has: prompt)",
    "test_empty_dataset": "is empty",
    "test_all_samples_empty": "has no non-empty samples for task text_classification",
}


def test_bad_input_fails_that_test_in_one_line_and_others_go_on(star_project: pytest.Pytester, monkeypatch) -> None:
    star_project.makepyfile(test_all_tasks=BAD_INPUT)
    monkeypatch.setenv("COLUMNS", "400")  # short summary lines are cut to the terminal width
    result = star_project.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0", "-rf")
    result.assert_outcomes(passed=1, failed=len(EXPECTED_ERRORS))
    out = "\n".join(result.outlines)
    assert "Traceback" not in out and "pytest_aienergyscore/" not in out and "During handling" not in out
    for test, message in EXPECTED_ERRORS.items():
        line = next(x for x in result.outlines if x.startswith(f"FAILED test_all_tasks.py::{test} - "))
        assert message in line, (test, line)


def test_offline_sample_set_is_used_and_said_when_the_official_dataset_cannot_be_had(
    pytester: pytest.Pytester, clean_env, tiny_models
) -> None:
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_models["sentence_similarity"]
    pytester.makepyfile(
        test_offline=f"""
        def test_sts(energy_star):
            energy_star(task="sentence_similarity", model={str(model)!r}, samples=7)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=0").assert_outcomes(passed=1)
    item = summaries(pytester.path)["sentence_similarity"]
    dataset = item["report"]["dataset"]
    assert dataset["source"] == "offline samples" and dataset["official"] is False
    assert dataset["used"] == 7 and dataset["available"] == 100
    assert any("offline sample set" in note for note in item["report"]["notes"])
    assert item["summary"]["per_1000_scaled_from"] == 7
    assert any("7 queries instead of the protocol's 1000" in r for r in item["summary"]["not_comparable_reasons"])
