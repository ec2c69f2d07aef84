"""The optimum backend: configuration generated from the task table, optimum-benchmark's report read into records,
and real optimum-benchmark runs in its own environment (the machine's, made by ``aienergyscore setup optimum``).

The unit tests need no optimum environment. The end-to-end tests run the real thing on CPU with tiny offline models,
the way a user would (``pytest`` in a project, default backend), and are skipped with a reason when the environment
is missing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends import BackendError
from pytest_aienergyscore.backends.optimum.backend import OptimumBackend
from pytest_aienergyscore.backends.optimum.experiment import (
    ResolvedModel,
    build_request,
    config_yaml,
    dataset_for_optimum,
    generation_kwargs,
    optimum_device,
    transformers4_processor,
)
from pytest_aienergyscore.backends.optimum.gpu import CounterRead, CounterSpan, counter_span, gpu_cross_check
from pytest_aienergyscore.backends.optimum.launch import run_worker
from pytest_aienergyscore.backends.optimum.results import (
    WorkerRun,
    codecarbon_note,
    cpu_energy_kind,
    gpu_metadata,
    phases_from_report,
)
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.files import write_run_folder
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.datasets import DatasetInfo
from pytest_aienergyscore.rules.tasks import TASKS
from tests.support.fake_pynvml import FakeGpu, make_gpus, make_pynvml
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON
from tests.support.tiny_models import build_tiny_model

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.optimum

REPO = Path(__file__).resolve().parents[3]
TINY_CACHE = REPO / ".cache" / "tiny-models"
SAMPLES = 4
PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
    "Summarize the plot of a story about a fox and a dog.",
]
KWH = 3.6e6  # joules

needs_env = pytest.mark.skipif(not OPTIMUM_PYTHON.exists(), reason=MISSING)


# -- configuration ------------------------------------------------------------------------------------------------


def _model(path: str = "/models/m") -> ResolvedModel:
    return ResolvedModel(path, path + "-processor", "transformers", "llama", ("LlamaForCausalLM",))


def _request(task: str, variant: str | None = None, **kwargs: Any) -> dict[str, Any]:
    spec = TASKS[task]
    dataset = dataset_for_optimum(spec, [], DatasetInfo(spec.dataset, "hub", True, 1000), Path("unused"))
    options: dict[str, Any] = {
        "samples": 1000,
        "warmup": 10,
        "overrides": {},
        "device": "cpu",
        "device_ids": None,
        "dtype": "float32",
        "trust_remote_code": False,
    }
    options.update(kwargs)
    return build_request(spec.protocol_for(variant=variant), _model(), dataset, **options)


def test_text_generation_config_follows_the_task_table() -> None:
    config = _request("text_generation")
    backend, scenario = config["backend"], config["scenario"]
    assert backend == {
        "model": "/models/m",
        "processor": "/models/m-processor",
        "task": "text-generation",
        "library": "transformers",
        "model_type": "llama",
        "device": "cpu",
        "device_ids": None,
        "torch_dtype": "float32",
        "no_weights": False,
    }
    assert scenario["dataset_name"] == "AIEnergyScore/text_generation" and scenario["text_column_name"] == "text"
    assert scenario["num_samples"] == 1000 and scenario["input_shapes"] == {"batch_size": 1}
    assert scenario["warmup_runs"] == 10
    assert scenario["generate_kwargs"] == dict(TASKS["text_generation"].generate_kwargs)
    assert scenario["generate_kwargs"]["min_new_tokens"] == scenario["generate_kwargs"]["max_new_tokens"] == 10
    assert scenario["memory"] is False and scenario["energy"] is True  # the memory tracker inflates energy windows


def test_overrides_samples_device_and_trust_reach_the_config() -> None:
    config = _request(
        "text_generation",
        samples=5,
        warmup=1,
        overrides={"max_new_tokens": 4},
        device="cuda",
        device_ids="3",
        dtype="bfloat16",
        trust_remote_code=True,
    )
    assert config["scenario"]["num_samples"] == 5 and config["scenario"]["warmup_runs"] == 1
    assert config["scenario"]["generate_kwargs"]["max_new_tokens"] == 4
    assert config["scenario"]["generate_kwargs"]["min_new_tokens"] == 4  # energy_star refuses min != max
    assert (config["backend"]["device"], config["backend"]["device_ids"]) == ("cuda", "3")
    assert config["backend"]["torch_dtype"] == "bfloat16"
    assert config["backend"]["model_kwargs"] == {"trust_remote_code": True}


@pytest.mark.parametrize(
    ("task", "columns"),
    [
        ("question_answering", {"question_column_name": "question", "context_column_name": "context"}),
        ("sentence_similarity", {"sentence1_column_name": "sentence1", "sentence2_column_name": "sentence2"}),
        ("image_classification", {"image_column_name": "image"}),
        ("automatic_speech_recognition", {"audio_column_name": "audio"}),
        ("image_generation", {"text_column_name": "prompt"}),
    ],
)
def test_each_task_names_its_columns(task: str, columns: dict[str, str]) -> None:
    scenario = _request(task)["scenario"]
    assert {key: scenario[key] for key in columns} == columns
    assert scenario["dataset_name"] == TASKS[task].dataset


def test_summarization_is_energy_stars_own_forward_task_as_in_the_protocol_table() -> None:
    config = _request("summarization")
    assert config["backend"]["task"] == "summarization" and "generate_kwargs" not in config["scenario"]
    assert "t5_task" not in config["scenario"]


def test_a_t5_summarizer_runs_the_t5_config_with_its_prefix() -> None:
    config = _request("summarization", variant="t5")
    assert config["backend"]["task"] == "text2text-generation"
    assert config["scenario"]["t5_task"] == "summarization" and config["scenario"]["dataset_prefix1"] == "summarize: "
    assert config["scenario"]["generate_kwargs"]["max_new_tokens"] == 10


def test_our_generating_summarization_variant_reaches_the_config_as_text2text_generation() -> None:
    config = _request("summarization", variant="generate")
    assert config["backend"]["task"] == "text2text-generation" and config["scenario"]["t5_task"] == "summarization"
    assert config["scenario"]["generate_kwargs"]["max_new_tokens"] == 10


def test_call_and_forward_tasks_get_their_kwargs() -> None:
    call = _request("image_generation", overrides={"num_inference_steps": 2})["scenario"]
    assert call["call_kwargs"] == {"num_inference_steps": 2, "num_images_per_prompt": 1}  # no forced size
    assert "generate_kwargs" not in call
    forward = _request("text_classification", overrides={"output_hidden_states": True})["scenario"]
    assert forward["forward_kwargs"] == {"output_hidden_states": True}


def test_reasoning_cannot_run_with_a_token_range_and_says_what_to_do() -> None:
    with pytest.raises(BackendError, match=r"needs min_new_tokens == max_new_tokens.*1 to 8192.*max_new_tokens=N"):
        _request("reasoning")
    config = _request("reasoning", overrides={"max_new_tokens": 64})["scenario"]
    assert config["reasoning"] is True and "enable_thinking" not in config["reasoning_params"]
    assert config["generate_kwargs"]["min_new_tokens"] == 64


def test_generation_kwargs_keep_both_overrides_when_both_are_given() -> None:
    protocol = TASKS["text_generation"].default_protocol
    kwargs = generation_kwargs(protocol, {"max_new_tokens": 3, "min_new_tokens": 3})
    assert (kwargs["min_new_tokens"], kwargs["max_new_tokens"]) == (3, 3)
    with pytest.raises(BackendError):
        generation_kwargs(protocol, {"max_new_tokens": 3, "min_new_tokens": 2})


def test_generated_yaml_is_the_same_configuration() -> None:
    yaml = pytest.importorskip("yaml")
    config = _request("text_generation", overrides={"max_new_tokens": 4})
    document = yaml.safe_load(config_yaml(config))
    assert document["scenario"] == config["scenario"]
    assert document["backend"] == {k: v for k, v in config["backend"].items() if v is not None}
    assert document["defaults"][0] == "benchmark" and {"scenario": "energy_star"} in document["defaults"]


@pytest.mark.parametrize(
    ("device", "visible", "expected"),
    [("cpu", "0", ("cpu", None)), ("cuda:1", None, ("cuda", "1")), ("cuda:1", "4, 6", ("cuda", "6"))],
)
def test_device_maps_to_optimum_ids(device: str, visible: str | None, expected: tuple[str, str | None]) -> None:
    assert optimum_device(device, visible) == expected


def test_device_ids_that_optimum_cannot_take_are_refused() -> None:
    with pytest.raises(BackendError, match="UUID"):
        optimum_device("cuda:0", "GPU-1234abcd")
    with pytest.raises(BackendError, match="not among"):
        optimum_device("cuda:2", "0,1")


def test_local_samples_become_a_one_file_folder(tmp_path: Path) -> None:
    spec = TASKS["question_answering"]
    samples = [{"question": "Who?", "context": "Nobody."}, {"question": "Where?", "context": "Here."}]
    ref = dataset_for_optimum(spec, samples, DatasetInfo("x.jsonl", "local file", False, 2), tmp_path / "d")
    assert ref.local and ref.name == str(tmp_path / "d")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["train.jsonl"]  # one file: split "train"
    rows = [json.loads(line) for line in (tmp_path / "d" / "train.jsonl").read_text().splitlines()]
    assert rows == samples
    images = TASKS["image_classification"]
    from PIL import Image

    pictures = [{"image": Image.new("RGB", (8, 6), (i * 60, 0, 0))} for i in range(2)]
    ref = dataset_for_optimum(images, pictures, DatasetInfo("i.jsonl", "local file", False, 2), tmp_path / "i")
    assert ref.columns == {"image_column_name": "image"}
    metadata = [json.loads(line) for line in (tmp_path / "i" / "metadata.jsonl").read_text().splitlines()]
    assert metadata == [{"file_name": "00000.png"}, {"file_name": "00001.png"}]  # datasets' imagefolder layout
    with Image.open(tmp_path / "i" / "00001.png") as png:
        assert png.size == (8, 6) and png.getpixel((0, 0)) == (60, 0, 0)


def test_local_audio_goes_as_plain_numbers_that_datasets_reads_without_a_decoder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    numpy = pytest.importorskip("numpy")
    audio = TASKS["automatic_speech_recognition"]
    samples = [{"audio": {"array": numpy.array([0.25, -0.5, 1.0], dtype="float32"), "sampling_rate": 16000}}]
    ref = dataset_for_optimum(audio, samples, DatasetInfo("a.jsonl", "local file", False, 1), tmp_path / "a")
    assert ref.columns == {"audio_column_name": "audio"} and [p.name for p in (tmp_path / "a").iterdir()] == [
        "train.jsonl"
    ]
    # what energy_star's ASR preprocessor gets from load_dataset(name)["train"]: a dict with the array and its rate
    [row] = datasets.load_dataset(ref.name, split="train", cache_dir=str(tmp_path / "cache"))
    assert row["audio"] == {"array": [0.25, -0.5, 1.0], "sampling_rate": 16000}
    with pytest.raises(BackendError, match=r"must be \{'array': \[floats\], 'sampling_rate': int\}"):
        dataset_for_optimum(audio, [{"audio": {"path": "x.wav"}}], DatasetInfo("b", "local", False, 1), tmp_path / "b")


# -- reading the report --------------------------------------------------------------------------------------------


def _energy(cpu: float, ram: float, gpu: float = 0.0) -> dict[str, Any]:
    return {"unit": "kWh", "cpu": cpu, "ram": ram, "gpu": gpu, "total": cpu + ram + gpu}


def _window(duration: float, gpus: int = 0) -> dict[str, Any]:
    return {"duration": duration, "gpu_count": gpus, "ram_power": 20.0, "timestamp": "2026-11-28T12:00:00"}


CPU_LOAD: list[dict[str, Any]] = [
    {"class": "CPU", "mode": "cpu_load", "description": "CPU(Cpu Load)"},
    {"class": "RAM", "mode": None},
]


# What the worker counted while energy_star ran 5 samples (worker_result.json's "work"); one sample stopped early.
GENERATION_WORK = {
    "prefill": {"samples": 5, "generate_calls": 5, "new_tokens_per_sample": {"1": 5}, "forward_calls": 5},
    "generate": {"samples": 5, "generate_calls": 5, "new_tokens_per_sample": {"10": 4, "7": 1}},
}


def _run(
    report: dict[str, Any],
    codecarbon: dict[str, Any],
    hardware: list[dict[str, Any]] = CPU_LOAD,
    work: dict[str, Any] | None = None,
) -> WorkerRun:
    result = {"samples": 5, "input_tokens": 40, "codecarbon_hardware": hardware, "work": work or GENERATION_WORK}
    return WorkerRun(report, codecarbon, result, 1.0)


GENERATION_REPORT = {
    "load_dataset": {"energy": _energy(1e-8, 2e-7)},
    "preprocess_dataset": {"energy": _energy(1.5e-8, 1.3e-7)},
    "load_model": {"energy": _energy(4e-8, 4e-7)},
    "prefill": {"energy": _energy(5e-8, 1.2e-7)},
    "decode": {"energy": _energy(9e-8, 2.4e-7)},
}
GENERATION_WINDOWS = {
    "preprocess_dataset": _window(0.2),
    "prefill": _window(2.0),
    "generate": _window(12.0),
}


def test_phases_are_read_in_joules_with_scope_kind_and_meter() -> None:
    spec = TASKS["text_generation"]
    config = _request("text_generation", samples=5)
    phases = phases_from_report(_run(GENERATION_REPORT, GENERATION_WINDOWS), spec, config, "cpu", None, 0)
    assert [p.name for p in phases] == ["preprocess", "prefill", "decode"]  # load_* are not AI Energy Score phases
    prefill = phases[1].measurement
    assert prefill.joules("cpu") == pytest.approx(5e-8 * KWH) and prefill.joules("ram") == pytest.approx(1.2e-7 * KWH)
    assert {(d.scope, d.kind, d.meter) for d in prefill.devices} == {
        ("cpu", "estimate", "codecarbon"),
        ("ram", "estimate", "codecarbon"),
    }
    assert prefill.duration_s == 2.0 and prefill.confidence == "low"
    assert phases[2].measurement.duration_s == pytest.approx(10.0)  # generate window minus prefill window
    assert phases[0].measurement.confidence == "untrustworthy"
    assert [(p.samples, p.tokens) for p in phases] == [(5, 40), (5, 40), (5, 4 * 10 + 7 - 5)]
    record = Record(nodeid="t", backend="optimum", task="text_generation", phases=phases, queries=5)
    assert record.headline_scope() == "cpu" and record.energy_kind() == "estimate"
    assert record.phase_wh("decode") == pytest.approx(9e-8 * 1000)  # kWh to Wh, CPU scope only


def test_each_phase_carries_the_work_the_worker_counted_not_the_configured_work() -> None:
    spec = TASKS["text_generation"]
    config = _request("text_generation", samples=5)  # asks for 10 new tokens per sample
    _, prefill, decode = phases_from_report(_run(GENERATION_REPORT, GENERATION_WINDOWS), spec, config, "cpu", None, 0)
    assert {k: prefill.details[k] for k in ("generate_calls", "new_tokens_per_sample", "first_tokens")} == {
        "generate_calls": 5,
        "new_tokens_per_sample": {"1": 5},
        "first_tokens": 5,
    }
    assert decode.details["new_tokens_per_sample"] == {"10": 4, "7": 1} and decode.details["generate_calls"] == 5
    assert decode.details["generated_tokens"] == 47 and decode.tokens == 42  # first tokens belong to prefill
    assert "forward_calls" not in prefill.details  # only the contract's keys, the same as the pytorch backend's
    forward_work = {"forward": {"samples": 5, "forward_calls": 5}}
    report = {"preprocess_dataset": {"energy": _energy(1e-8, 1e-8)}, "forward": {"energy": _energy(1e-7, 2e-7)}}
    classify = _request("text_classification", samples=5)
    phases = phases_from_report(
        _run(report, {}, work=forward_work), TASKS["text_classification"], classify, "cpu", None, 0
    )
    assert phases[1].details["forward_calls"] == 5 and (phases[1].samples, phases[1].tokens) == (5, 40)
    call_work = {"call": {"samples": 5, "images": 5, "image_size": [16, 16], "scheduler_steps": 150}}
    report = {"preprocess_dataset": {"energy": _energy(1e-8, 1e-8)}, "call": {"energy": _energy(1e-7, 2e-7)}}
    draw = _request("image_generation", samples=5)
    phases = phases_from_report(_run(report, {}, work=call_work), TASKS["image_generation"], draw, "cpu", None, 0)
    assert {k: phases[1].details[k] for k in ("images", "image_size", "scheduler_steps")} == {
        "images": 5,
        "image_size": [16, 16],
        "scheduler_steps": 150,
    }
    unknown = phases_from_report(_run(report, {}, work={"other": {}}), TASKS["image_generation"], draw, "cpu", None, 0)
    assert unknown[1].samples is None and unknown[1].details["images"] is None  # never filled in from the config


def test_a_negative_decode_goes_through_the_decode_rule_kept_valid_and_flagged() -> None:
    report = dict(GENERATION_REPORT, decode={"energy": _energy(-7.7e-9, -1.9e-8)})
    spec = TASKS["text_generation"]
    phases = phases_from_report(_run(report, GENERATION_WINDOWS), spec, _request("text_generation"), "cpu", None, 0)
    decode = phases[2]
    assert decode.measurement.valid and decode.measurement.confidence == "untrustworthy"
    assert decode.measurement.joules("cpu") == pytest.approx(-7.7e-9 * KWH)  # never clamped
    flagged = [w for w in decode.measurement.warnings if w.startswith("decode split within noise: prefill pass")]
    assert len(flagged) == 2 and any("on cpu (uncertainty ±" in w for w in flagged)  # cpu and ram went negative
    assert all(w.endswith("the total is unaffected") for w in flagged)
    assert decode.details["uncertainty_by_scope_j"]["cpu"] > 0
    assert decode.details["generate_j"] == pytest.approx((5e-8 + 1.2e-7 - 7.7e-9 - 1.9e-8) * KWH)
    record = Record(nodeid="t", backend="optimum", phases=phases)
    assert record.all_valid()
    assert record.total_wh() * 3600 == pytest.approx((1.5e-8 + 5e-8 - 7.7e-9) * KWH)  # preprocess + generate, CPU


def test_gpu_energy_is_kept_only_when_optimum_measured_a_gpu() -> None:
    report = {"preprocess_dataset": {"energy": _energy(1e-8, 1e-8)}, "forward": {"energy": _energy(1e-7, 2e-7, 3e-6)}}
    windows = {"preprocess_dataset": _window(6.0, gpus=1), "forward": _window(8.0, gpus=1)}
    spec = TASKS["text_classification"]
    config = _request("text_classification", device="cuda", device_ids="0")
    phases = phases_from_report(_run(report, windows), spec, config, "cuda", "0", 0)
    forward = phases[1].measurement
    gpu = next(d for d in forward.devices if d.scope == "gpu")
    assert (gpu.device, gpu.kind, gpu.meter) == ("cuda:0", "measured", "codecarbon-nvml")
    assert gpu.joules == pytest.approx(3e-6 * KWH)
    assert forward.meter == "codecarbon-nvml" and forward.kind == "measured" and forward.confidence == "ok"
    record = Record(nodeid="t", backend="optimum", phases=phases)
    assert record.headline_scope() == "gpu" and record.energy_kind() == "measured"
    cpu_only = phases_from_report(_run(report, windows), spec, _request("text_classification"), "cpu", None, 0)
    assert all(d.scope != "gpu" for p in cpu_only for d in p.measurement.devices)


def test_cpu_energy_is_measured_only_from_a_counter() -> None:
    assert cpu_energy_kind([{"class": "CPU", "mode": "intel_rapl"}]) == "measured"
    assert cpu_energy_kind([{"class": "CPU", "mode": "cpu_load"}]) == "estimate"
    assert cpu_energy_kind([]) == "estimate"
    note = codecarbon_note(CPU_LOAD, GENERATION_WINDOWS)
    assert "TDP x its load" in note and "constant power (20 W here)" in note and "--energy-meter does not" in note


def test_a_report_in_other_units_is_refused() -> None:
    report = {"forward": {"energy": {**_energy(1e-8, 1e-8), "unit": "J"}}}
    with pytest.raises(BackendError, match="in 'J'"):
        phases_from_report(
            _run(report, {}), TASKS["text_classification"], _request("text_classification"), "cpu", None, 0
        )


# -- GPU energy: codecarbon's NVML figure, its guards, and our own reading around the worker ------------------------

UUIDS = [gpu.uuid for gpu in make_gpus(3)]
H100 = {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
# codecarbon's windows of a forward task on one GPU: joules and seconds (8,060 J over 38 s in all)
GPU_WINDOWS = {"load_dataset": (140.0, 2.0), "preprocess_dataset": (420.0, 6.0), "load_model": (1500.0, 10.0)}
GPU_WINDOWS["forward"] = (6000.0, 20.0)


def _gpu_facts(tracked: str = UUIDS[0], model: str = UUIDS[0], fallback: bool = False) -> dict[str, Any]:
    return {"tracked_uuids": [tracked], "model_uuids": [model], "power_fallback": [fallback]}


def _gpu_result(codecarbon: str | None = "3.3.2", **facts: Any) -> dict[str, Any]:
    """worker_result.json of a GPU run as the worker writes it."""
    versions = {"optimum-benchmark": "0.6.0", **({"codecarbon": codecarbon} if codecarbon else {})}
    return {
        "samples": 5,
        "input_tokens": 40,
        "codecarbon_hardware": CPU_LOAD,
        "versions": versions,
        "gpu": _gpu_facts(**facts),
    }


def _gpu_files(windows: dict[str, tuple[float, float]] = GPU_WINDOWS) -> tuple[dict[str, Any], dict[str, Any]]:
    """benchmark_report.json and the <phase>_codecarbon.json files of a GPU run (codecarbon's kWh, its durations)."""
    report = {name: {"energy": _energy(1e-7, 2e-7, joules / KWH)} for name, (joules, _) in windows.items()}
    codecarbon = {
        name: {**_window(seconds, gpus=1), "gpu_energy": joules / KWH} for name, (joules, seconds) in windows.items()
    }
    return report, codecarbon


def _gpu_phases(result: dict[str, Any], windows: dict[str, tuple[float, float]] = GPU_WINDOWS) -> list[Any]:
    report, codecarbon = _gpu_files(windows)
    config = _request("text_classification", device="cuda", device_ids="0")
    run = WorkerRun(report, codecarbon, result, 40.0)
    return phases_from_report(run, TASKS["text_classification"], config, "cuda", "0", 0)


def test_codecarbon_gpu_energy_is_accepted_as_nvmls_counter_when_every_guard_passes() -> None:
    phases = _gpu_phases(_gpu_result())
    forward = phases[1].measurement
    assert forward.valid and forward.warnings == ()
    gpu = next(d for d in forward.devices if d.scope == "gpu")
    assert (gpu.kind, gpu.meter, gpu.joules) == ("measured", "codecarbon-nvml", pytest.approx(6000.0))
    record = Record(
        nodeid="t", backend="optimum", task="text_classification", phases=phases, queries=1000, environment=H100
    )
    assert record.all_valid() and record.meter_name() == "codecarbon-nvml"
    assert not any("energy counter" in reason for reason in not_comparable_reasons(record))


def test_a_gpu_other_than_the_models_makes_every_gpu_window_invalid_naming_the_guard() -> None:
    phases = _gpu_phases(_gpu_result(tracked=UUIDS[1], model=UUIDS[0]))
    for phase in phases:
        assert not phase.measurement.valid
        assert (
            f"GPU energy not accepted (guard: same GPU by UUID): codecarbon tracked {UUIDS[1]}, the model ran on "
            f"{UUIDS[0]}"
        ) in phase.measurement.warnings
    unknown = _gpu_phases({**_gpu_result(), "gpu": {"problem": "which GPUs codecarbon read: AttributeError: x"}})
    assert not unknown[1].measurement.valid
    assert any("(guard: same GPU by UUID)" in w and "AttributeError: x" in w for w in unknown[1].measurement.warnings)


def test_a_gpu_run_where_codecarbon_tracked_no_gpu_is_not_passed_off_as_a_cpu_result() -> None:
    windows = {name: (0.0, seconds) for name, (_, seconds) in GPU_WINDOWS.items()}
    result = {**_gpu_result(), "gpu": {"tracked_uuids": [], "model_uuids": [UUIDS[0]], "power_fallback": []}}
    phases = _gpu_phases(result, windows)
    record = Record(nodeid="t", backend="optimum", phases=phases)
    assert record.headline_scope() == "gpu" and not record.all_valid()
    assert (
        f"GPU energy not accepted (guard: same GPU by UUID): codecarbon tracked no GPU, the model ran on {UUIDS[0]}"
    ) in phases[1].measurement.warnings


def test_a_window_of_a_second_or_more_without_gpu_energy_is_invalid_naming_the_guard() -> None:
    windows = {**GPU_WINDOWS, "preprocess_dataset": (0.0, 0.5), "forward": (0.0, 20.0)}
    phases = _gpu_phases(_gpu_result(), windows)
    preprocess, forward = (p.measurement for p in phases)
    assert not forward.valid
    assert any(
        w.startswith("GPU energy not accepted (guard: above zero): codecarbon read 0 J") for w in forward.warnings
    )
    assert preprocess.valid and preprocess.confidence == "untrustworthy"  # under a second: flagged as short, no more


def test_a_gpu_figure_without_codecarbons_version_is_invalid_naming_the_guard() -> None:
    forward = _gpu_phases(_gpu_result(codecarbon=None))[1].measurement
    assert not forward.valid
    assert any(w.startswith("GPU energy not accepted (guard: codecarbon version recorded)") for w in forward.warnings)


def test_codecarbon_averaging_power_is_not_called_nvmls_counter() -> None:
    phases = _gpu_phases(_gpu_result(fallback=True))
    assert {d.meter for p in phases for d in p.measurement.devices if d.scope == "gpu"} == {"codecarbon-nvml-power"}
    record = Record(nodeid="t", backend="optimum", phases=phases, queries=1000, environment=H100)
    assert "GPU energy from codecarbon-nvml-power, not NVML's energy counter" in not_comparable_reasons(record)


def _span(ours_j: float, seconds: float, limit_w: float | None = 700.0) -> CounterSpan:
    return CounterSpan({UUIDS[0]: ours_j, UUIDS[1]: 99.0}, seconds, {UUIDS[0]: limit_w, UUIDS[1]: 300.0})


def _check(span: CounterSpan | None, facts: dict[str, Any] | None = None) -> dict[str, Any] | None:
    _, codecarbon = _gpu_files()
    result = {"gpu": facts or _gpu_facts()}
    return gpu_cross_check(span, result, codecarbon, ["preprocess_dataset", "forward"])


def test_the_cross_check_records_both_figures_and_agrees_when_the_windows_fit_in_ours() -> None:
    check = _check(_span(9000.0, 60.0))
    assert check is not None and check["agrees"] and check["disagreement"] is None
    assert check["gpus"] == [UUIDS[0]] and check["ours_j"] == 9000.0 and check["ours_s"] == 60.0
    assert check["codecarbon_windows_j"] == pytest.approx(8060.0)  # all windows, load_* included
    assert check["codecarbon_phases_j"] == pytest.approx(6420.0)  # the AI Energy Score phases alone
    assert check["outside_windows_j"] == pytest.approx(940.0) and check["outside_windows_s"] == pytest.approx(22.0)
    assert check["allowance_j"] == pytest.approx(0.05 * 9000.0 + math.sqrt(2 * (7**2 + 7**2 + 15**2 + 30**2)))


def test_codecarbon_windows_above_our_reading_by_more_than_five_percent_disagree() -> None:
    near = _check(_span(8060.0 / 1.04, 60.0))  # 4 % above ours: within the allowance
    assert near is not None and near["agrees"]
    check = _check(_span(7000.0, 60.0))
    assert check is not None and not check["agrees"]
    assert "more than our NVML reading over the whole worker (7000 J) (15.1% more)" in check["disagreement"]


def test_our_reading_beyond_what_the_time_outside_the_windows_allows_disagrees() -> None:
    check = _check(_span(30000.0, 45.0))  # 21,940 J outside the windows in 7 s: 3 kW, over the 700 W limit
    assert check is not None and not check["agrees"]
    assert "more than 7.0 s outside them at the 700 W power limit could spend" in check["disagreement"]
    unbounded = _check(_span(30000.0, 45.0, limit_w=None))  # no power limit: only the first check can be made
    assert unbounded is not None and unbounded["agrees"] and unbounded["power_limit_w"] is None


def test_the_cross_check_says_why_it_was_not_made() -> None:
    assert _check(None) is None  # a CPU run
    failed = _check(CounterSpan(problem="NVML could not start: Driver Not Loaded"))
    assert failed == {
        "meter": "nvml",
        "skipped": "our NVML reading around the worker failed: NVML could not start: Driver Not Loaded",
    }
    other = _check(_span(9000.0, 60.0), _gpu_facts(tracked=UUIDS[2], model=UUIDS[2]))
    assert (
        other is not None
        and other["skipped"] == f"no reading of ours to compare: {UUIDS[2]} not among the GPUs we read"
    )


def test_a_counter_that_went_backwards_gives_no_figure() -> None:
    before = CounterRead(10.0, {UUIDS[0]: 5_000_000, UUIDS[1]: 1_000}, {UUIDS[0]: 700.0})
    after = CounterRead(70.0, {UUIDS[0]: 9_000, UUIDS[1]: 3_500}, {UUIDS[0]: 700.0})
    span = counter_span(before, after)
    assert span.joules == {UUIDS[1]: 2.5} and span.duration_s == 60.0
    assert span.problem == f"the counter of {UUIDS[0]} went backwards (driver reload?)"
    assert counter_span("no driver", after).problem == "no driver"


def _fake_worker(tmp_path: Path, files: dict[str, Any]) -> Path:
    """An executable standing in for optimum's python: it leaves the worker's files in the run folder and exits."""
    out = tmp_path / "worker-files"
    out.mkdir()
    for name, data in files.items():
        (out / name).write_text(json.dumps(data))
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\ncp '{out}'/* .\n")
    script.chmod(0o755)
    return script


def _worker_files(result: dict[str, Any]) -> dict[str, Any]:
    report, codecarbon = _gpu_files()
    return {
        "benchmark_report.json": report,
        "worker_result.json": result,
        **{f"{name}_codecarbon.json": data for name, data in codecarbon.items()},
    }


# The fake worker exits at once, so no time lies outside codecarbon's windows: ours agrees within the 5 % allowance.
@pytest.mark.parametrize(("ours_j", "agrees"), [(8300.0, True), (7000.0, False)])
def test_our_nvml_reading_around_the_worker_cross_checks_codecarbons_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ours_j: float, agrees: bool
) -> None:
    gpus = [FakeGpu(UUIDS[0], energy_mj=[1_000_000, 1_000_000 + int(ours_j * 1000)]), FakeGpu(UUIDS[1], energy_mj=7)]
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    python = _fake_worker(tmp_path, _worker_files(_gpu_result()))
    config = _request("text_classification", device="cuda", device_ids="0")
    run = run_worker(python, config, tmp_path / "run", local_dataset=False)
    assert gpus[0].energy_queries == 2  # right before the worker started, right after it exited
    assert run.gpu_counter is not None and run.gpu_counter.joules[UUIDS[0]] == pytest.approx(ours_j)
    [check] = gpu_metadata([run])["gpu_cross_check"]
    assert check["ours_j"] == pytest.approx(ours_j) and check["codecarbon_windows_j"] == pytest.approx(8060.0)
    assert check["agrees"] is agrees
    phases = phases_from_report(run, TASKS["text_classification"], config, "cuda", "0", 0)
    warned = [w for p in phases for w in p.measurement.warnings if w.startswith("GPU cross-check")]
    assert len(warned) == (0 if agrees else 1)
    assert all(p.measurement.valid for p in phases)  # a disagreement is a warning, the windows stay valid
    if not agrees:
        assert warned[0] in phases[0].measurement.warnings  # said once, on the run's first phase


def test_a_cpu_run_reads_no_gpu_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = make_gpus(1)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpus))
    result = {"samples": 5, "input_tokens": 40, "codecarbon_hardware": CPU_LOAD, "versions": {"codecarbon": "3"}}
    python = _fake_worker(tmp_path, _worker_files(result))
    run = run_worker(python, _request("text_classification"), tmp_path / "run", local_dataset=False)
    assert run.gpu_counter is None and gpus[0].energy_queries == 0
    assert gpu_metadata([run]) == {}


def test_without_nvml_here_the_gpu_run_goes_on_and_says_why_nothing_was_cross_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml([], init_error=9))
    python = _fake_worker(tmp_path, _worker_files(_gpu_result()))
    run = run_worker(
        python, _request("text_classification", device="cuda", device_ids="0"), tmp_path / "r", local_dataset=False
    )
    [check] = gpu_metadata([run])["gpu_cross_check"]
    assert check["skipped"].startswith("our NVML reading around the worker failed: NVML could not start: Driver Not")


# -- transformers 5 folders for transformers 4 ---------------------------------------------------------------------


def test_a_transformers5_tokenizer_config_is_adapted_in_a_copy_without_weights(tmp_path: Path) -> None:
    model = build_tiny_model("text_generation", TINY_CACHE / "text_generation")
    path, adapted = transformers4_processor(str(model), tmp_path / "processor")
    assert adapted and path == str(tmp_path / "processor")
    config = json.loads((tmp_path / "processor" / "tokenizer_config.json").read_text())
    assert "extra_special_tokens" not in config and "<|im_start|>" in config["additional_special_tokens"]
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert not list((tmp_path / "processor").glob("*.safetensors"))
    original = json.loads((model / "tokenizer_config.json").read_text())
    assert isinstance(original["extra_special_tokens"], list)  # the model's own folder is never touched
    same, changed = transformers4_processor(str(tmp_path / "processor"), tmp_path / "again")
    assert (same, changed) == (str(tmp_path / "processor"), False)


# -- attachments in the run folder --------------------------------------------------------------------------------


def test_attachments_are_written_beside_the_standard_files(tmp_path: Path) -> None:
    spec = TASKS["text_classification"]
    config = _request("text_classification")
    report = {"preprocess_dataset": {"energy": _energy(1e-8, 1e-8)}, "forward": {"energy": _energy(1e-7, 2e-7)}}
    phases = phases_from_report(_run(report, {}), spec, config, "cpu", None, 0)
    attachments = {
        "optimum.log": "log text\n",
        "prefill_codecarbon.json": "{}",
        "../GPU_ENERGY_WH.txt": "x",
        "run.log": "y",
    }
    record = Record("t::x", "optimum", model="m", task="text_classification", phases=phases, attachments=attachments)
    record.metadata["output_format"] = OptimumBackend.output_format  # what the runner records from the backend
    folder = write_run_folder(record, tmp_path)
    assert (folder / "optimum.log").read_text() == "log text\n"
    assert (folder / "prefill_codecarbon.json").read_text() == "{}"
    assert (folder / "GPU_ENERGY_WH.txt").read_text() != "x"  # ours are never replaced
    assert (folder / "run.log").read_text() != "y"
    report_json = json.loads((folder / "benchmark_report.json").read_text())
    assert "optimum.log" in report_json["attachments"] and len(report_json["attachments"]) == 4
    assert all((folder / name).is_file() for name in report_json["attachments"])
    assert json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())["format"] == "optimum"


# -- real optimum-benchmark, end to end ----------------------------------------------------------------------------

BENCHMARK_FILE = """
import json, pathlib, pytest

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

@pytest.mark.parametrize("task", sorted(CASES))
def test_task(energy_star, task):
    energy_star(task=task, model=CASES[task]["model"], dataset=CASES[task]["dataset"])
"""


def _project(root: Path) -> Path:
    """A user's project: a benchmark file over text_generation and text_classification, tiny models, tiny data."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    cases = {
        task: {"model": str(build_tiny_model(task, TINY_CACHE / task)), "dataset": str(data)}
        for task in ("text_generation", "text_classification")
    }
    (root / "cases.json").write_text(json.dumps(cases))
    (root / "test_bench.py").write_text(BENCHMARK_FILE)
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def _user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE_", "BENCHMARK_BACKEND", "PYTEST_"))}
    env.update(HF_HUB_OFFLINE="1", AIENERGYSCORE_METER="estimate", COLUMNS="200", **extra)
    return env


def _session_files(root: Path) -> dict[str, dict[str, Any]]:
    """Per task: the run folder and its parsed GPU_ENERGY_SUMMARY.json and benchmark_report.json."""
    [session] = [p for p in (root / "results").iterdir() if p.is_dir()]
    found = {}
    for folder in session.iterdir():
        if folder.is_dir() and (folder / "GPU_ENERGY_SUMMARY.json").is_file():
            summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
            report = json.loads((folder / "benchmark_report.json").read_text())
            found[summary["task"]] = {"folder": folder, "summary": summary, "report": report}
    return found


def _run_pytest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--energy-warmup=1", "-rA", *args]
    return subprocess.run(command, cwd=root, env=_user_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    """The same benchmark file run once with the default backend (optimum) and once with --backend pytorch."""
    if not OPTIMUM_PYTHON.exists():
        pytest.skip(MISSING)
    runs = {}
    for backend, args in (("optimum", ()), ("pytorch", ("--backend=pytorch",))):
        root = _project(tmp_path_factory.mktemp(backend))
        done = _run_pytest(root, f"--optimum-python={OPTIMUM_PYTHON}", *args)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        runs[backend] = {"stdout": {"text": done.stdout}, **_session_files(root)}
    return runs


@needs_env
def test_default_backend_runs_real_optimum_benchmark_and_writes_the_files(both_backends: dict[str, Any]) -> None:
    optimum = both_backends["optimum"]
    assert "aienergyscore: backend optimum (default)" in optimum["stdout"]["text"]
    for task in ("text_generation", "text_classification"):
        folder, summary, report = (optimum[task][key] for key in ("folder", "summary", "report"))
        assert summary["format"] == "optimum" and summary["backend"] == "optimum"
        assert list(summary["phases_wh"]) == list(TASKS[task].phases)
        assert all(value > 0 for value in summary["phases_wh"].values()), summary["phases_wh"]
        assert summary["meter"] == "codecarbon" and summary["energy_kind"] == "estimate" and summary["device"] == "cpu"
        assert (folder / "GPU_ENERGY_WH.txt").read_text() == f"{summary['total_wh_unrounded']:.2f}\n"
        for phase in report["phases"]:
            assert {d["scope"] for d in phase["measurement"]["devices"]} == {"cpu", "ram"}
        meta = report["metadata"]["optimum"]
        assert meta["versions"]["optimum-benchmark"] == "0.6.0" and meta["versions"]["transformers"].startswith("4.")
        assert meta["blocked_connections"] == []  # codecarbon's location lookup never ran
        assert any("codecarbon's estimate" in note for note in report["notes"])
        names = set(report["attachments"])
        expected = {"optimum_energy_star_config.yaml", "optimum_benchmark_report.json", "optimum.log"}
        assert expected | {"preprocess_dataset_codecarbon.json", "optimum_dataset_train.jsonl"} <= names
        ours = json.loads((folder / "optimum_benchmark_report.json").read_text())
        assert set(ours) >= {"load_dataset", "preprocess_dataset", "load_model"}
        assert "Running dataset preprocessing tracking" in (folder / "optimum.log").read_text()
        with zipfile.ZipFile(folder.with_name(folder.name + ".zip")) as archive:
            assert {f"{folder.name}/{name}" for name in expected} <= set(archive.namelist())


@needs_env
def test_the_generated_config_is_kept_and_says_what_ran(both_backends: dict[str, Any]) -> None:
    yaml = pytest.importorskip("yaml")
    folder = both_backends["optimum"]["text_generation"]["folder"]
    config = yaml.safe_load((folder / "optimum_energy_star_config.yaml").read_text())
    assert config["backend"]["task"] == "text-generation" and config["backend"]["device"] == "cpu"
    assert config["scenario"]["num_samples"] == SAMPLES and config["scenario"]["warmup_runs"] == 1
    assert config["scenario"]["generate_kwargs"]["max_new_tokens"] == 10
    ran = json.loads((folder / "optimum_benchmark_config.json").read_text())
    assert ran["scenario"]["num_samples"] == SAMPLES and ran["launcher"]["name"] == "inline"
    assert ran["scenario"]["memory"] is False


@needs_env
def test_optimum_and_pytorch_agree_on_sample_and_token_counts(both_backends: dict[str, Any]) -> None:
    for task in ("text_generation", "text_classification"):
        optimum, pytorch = both_backends["optimum"][task]["summary"], both_backends["pytorch"][task]["summary"]
        assert optimum["queries"] == pytorch["queries"] == SAMPLES
        assert optimum["samples"] == pytorch["samples"]
        assert optimum["tokens"] == pytorch["tokens"], task
    assert both_backends["optimum"]["text_generation"]["summary"]["tokens"]["decode"] == SAMPLES * 9


ERRORS_FILE = """
import json, pathlib

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

def test_model_without_weights(energy_star):
    energy_star(task="text_classification", model=CASES["broken"], dataset=CASES["dataset"])

def test_bad_override(energy_star):
    energy_star(task="text_classification", model=CASES["good"], dataset=CASES["dataset"], not_an_argument=1)

def test_something_else():
    assert 1 + 1 == 2
"""


@needs_env
def test_errors_inside_optimum_benchmark_fail_that_test_in_one_line(pytester: pytest.Pytester, clean_env) -> None:
    good = build_tiny_model("text_classification", TINY_CACHE / "text_classification")
    broken = pytester.path / "broken-model"
    shutil.copytree(good, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (pytester.path / "prompts.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    cases = {"good": str(good), "broken": str(broken), "dataset": str(pytester.path / "prompts.jsonl")}
    (pytester.path / "cases.json").write_text(json.dumps(cases))
    pytester.makepyfile(test_errors=ERRORS_FILE)
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    clean_env.setenv("COLUMNS", "400")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--optimum-python={OPTIMUM_PYTHON}", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    out = "\n".join(result.outlines)
    assert "Traceback" not in out and "HYDRA" not in out and 'File "' not in out
    tests = ("test_model_without_weights", "test_bad_override")
    assert all(any(x.startswith(f"FAILED test_errors.py::{t} - ") for x in result.outlines) for t in tests)
    messages = [x for x in result.outlines if x.startswith("optimum-benchmark failed: ")]  # the full one-liners
    assert len(messages) == 2
    assert "OSError: Error no file named" in messages[0] and "broken-model" in messages[0]
    assert "TypeError: " in messages[1] and "unexpected keyword argument 'not_an_argument'" in messages[1]
    for message in messages:
        log = Path(message.rsplit("(log: ", 1)[1].rstrip(")"))
        assert log.is_file() and "Traceback" in log.read_text()  # the whole story stays on disk


def test_missing_environment_fails_each_optimum_test_in_one_line(pytester: pytest.Pytester, clean_env) -> None:
    model = build_tiny_model("text_classification", TINY_CACHE / "text_classification")
    pytester.makepyfile(
        test_env=f"""
        def test_one(energy_star):
            energy_star(task="text_classification", model={str(model)!r}, samples=2)
        """
    )
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    clean_env.setenv("COLUMNS", "400")
    result = pytester.runpytest("-p", "no:cacheprovider", "--optimum-python=/nowhere/bin/python", "-rf")
    result.assert_outcomes(failed=1)
    assert any(
        "optimum environment /nowhere/bin/python not found (no such file); "
        "make it with `aienergyscore setup optimum` or point --optimum-python at one" in line
        for line in result.outlines
    )
    # a new user's machine: nothing named and nothing in the cache; the one line names the command to run
    clean_env.delenv("AIENERGYSCORE_OPTIMUM_PYTHON", raising=False)
    clean_env.setenv("XDG_CACHE_HOME", str(pytester.path / "fresh-cache"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(failed=1)
    expected = pytester.path / "fresh-cache" / "pytest-aienergyscore" / "optimum-env" / "bin" / "python"
    assert any(
        f"nothing at {expected}); run `aienergyscore setup optimum` to make it" in line for line in result.outlines
    ), result.outlines
