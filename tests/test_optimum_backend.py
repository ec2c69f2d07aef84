"""The optimum backend: configuration generated from the task table, optimum-benchmark's report read into records,
and real optimum-benchmark runs in its own environment (``.venv-optimum``, made by scripts/setup_optimum_env.sh).

The unit tests need no optimum environment. The end-to-end tests run the real thing on CPU with tiny offline models,
the way a user would (``pytest`` in a project, default backend), and are skipped with a reason when the environment
is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends import BackendError
from pytest_aienergyscore.backends.optimum import (
    ResolvedModel,
    WorkerRun,
    build_request,
    check_environment,
    codecarbon_note,
    config_yaml,
    cpu_energy_kind,
    dataset_for_optimum,
    generation_kwargs,
    last_meaningful_line,
    optimum_device,
    phases_from_report,
    transformers4_processor,
    worker_failure,
)
from pytest_aienergyscore.datasets import DatasetInfo
from pytest_aienergyscore.records import Record
from pytest_aienergyscore.report.files import write_run_folder
from pytest_aienergyscore.settings import build_settings
from pytest_aienergyscore.tasks import TASKS

from .tiny_models import build_tiny_model

# needed by the benchmark runs below; tests/conftest.py imports them outside pytester's in-process runs
pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.optimum

REPO = Path(__file__).resolve().parent.parent
TINY_CACHE = REPO / ".cache" / "tiny-models"
OPTIMUM_PYTHON = REPO / ".venv-optimum" / "bin" / "python"
SAMPLES = 4
PROMPTS = [
    "Tell me about the weather in spring.",
    "Write a short poem about a lighthouse keeper who counts ships at night.",
    "What is two plus two?",
    "Summarize the plot of a story about a fox and a dog.",
]
KWH = 3.6e6  # joules

needs_env = pytest.mark.skipif(
    not OPTIMUM_PYTHON.exists(), reason=f"no optimum environment at {OPTIMUM_PYTHON}: bash scripts/setup_optimum_env.sh"
)


# -- configuration ------------------------------------------------------------------------------------------------


def _model(path: str = "/models/m") -> ResolvedModel:
    return ResolvedModel(path, path + "-processor", "transformers", "llama", ("LlamaForCausalLM",))


def _request(task: str, **kwargs: Any) -> dict[str, Any]:
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
    return build_request(spec, _model(), dataset, **options)


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


def test_summarization_is_generation_as_in_the_task_table() -> None:
    config = _request("summarization")
    assert config["backend"]["task"] == "text2text-generation" and config["scenario"]["t5_task"] == "summarization"
    assert config["scenario"]["generate_kwargs"]["max_new_tokens"] == 10


def test_call_and_forward_tasks_get_their_kwargs() -> None:
    call = _request("image_generation", overrides={"num_inference_steps": 2})["scenario"]
    assert call["call_kwargs"]["num_inference_steps"] == 2 and call["call_kwargs"]["height"] == 512
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
    kwargs = generation_kwargs(TASKS["summarization"], {"max_new_tokens": 3, "min_new_tokens": 3})
    assert (kwargs["min_new_tokens"], kwargs["max_new_tokens"]) == (3, 3)
    with pytest.raises(BackendError):
        generation_kwargs(TASKS["summarization"], {"max_new_tokens": 3, "min_new_tokens": 2})


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
    audio = TASKS["automatic_speech_recognition"]
    with pytest.raises(BackendError, match="local audio dataset"):
        dataset_for_optimum(audio, [{"audio": {}}], DatasetInfo("a.jsonl", "local file", False, 1), tmp_path / "a")


# -- reading the report --------------------------------------------------------------------------------------------


def _energy(cpu: float, ram: float, gpu: float = 0.0) -> dict[str, Any]:
    return {"unit": "kWh", "cpu": cpu, "ram": ram, "gpu": gpu, "total": cpu + ram + gpu}


def _window(duration: float, gpus: int = 0) -> dict[str, Any]:
    return {"duration": duration, "gpu_count": gpus, "ram_power": 20.0, "timestamp": "2026-11-28T12:00:00"}


CPU_LOAD = [{"class": "CPU", "mode": "cpu_load", "description": "CPU(Cpu Load)"}, {"class": "RAM", "mode": None}]


def _run(report: dict[str, Any], codecarbon: dict[str, Any], hardware: list[dict[str, Any]] = CPU_LOAD) -> WorkerRun:
    result = {"samples": 5, "input_tokens": 40, "codecarbon_hardware": hardware}
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
    assert [(p.samples, p.tokens) for p in phases] == [(5, 40), (5, 40), (5, 5 * 9)]
    record = Record(nodeid="t", backend="optimum", task="text_generation", phases=phases, queries=5)
    assert record.headline_scope() == "cpu" and record.energy_kind() == "estimate"
    assert record.phase_wh("decode") == pytest.approx(9e-8 * 1000)  # kWh to Wh, CPU scope only


def test_negative_decode_is_zero_invalid_and_said() -> None:
    report = dict(GENERATION_REPORT, decode={"energy": _energy(-7.7e-9, -1.9e-8)})
    spec = TASKS["text_generation"]
    phases = phases_from_report(_run(report, GENERATION_WINDOWS), spec, _request("text_generation"), "cpu", None, 0)
    decode = phases[2].measurement
    assert decode.valid is False and decode.confidence == "untrustworthy"
    assert all(d.joules == 0.0 for d in decode.devices)
    assert any("negative cpu energy (-7.7e-09 kWh)" in w and "not valid" in w for w in decode.warnings)
    record = Record(nodeid="t", backend="optimum", phases=phases)
    assert not record.all_valid() and record.phase_wh("decode") == 0.0


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


# -- failures ---------------------------------------------------------------------------------------------------------

HYDRA_STYLE_LOG = """[2026-11-28 12:00:00][backend][INFO] - + Loading model
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/optimum_benchmark/cli.py", line 97, in main
    report = Benchmark.launch(config)
             ^^^^^^^^^^^^^^^^^^^^^^^^
OSError: Error no file named model.safetensors found in directory /models/broken.

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def test_the_last_meaningful_log_line_is_the_exception() -> None:
    assert last_meaningful_line(HYDRA_STYLE_LOG) == (
        "OSError: Error no file named model.safetensors found in directory /models/broken."
    )


def test_worker_failure_is_one_line_naming_the_log(tmp_path: Path) -> None:
    (tmp_path / "optimum.log").write_text(HYDRA_STYLE_LOG)
    error = worker_failure(1, tmp_path, Path("/env/bin/python"))
    assert str(error) == (
        "optimum-benchmark failed: OSError: Error no file named model.safetensors found in directory /models/broken. "
        f"(log: {tmp_path / 'optimum.log'})"
    )
    (tmp_path / "worker_error.json").write_text(json.dumps({"type": "TypeError", "message": "bad\nsecond line"}))
    assert "failed: TypeError: bad (log:" in str(worker_failure(1, tmp_path, Path("/env/bin/python")))
    assert "killed by SIGKILL (out of memory?)" in str(worker_failure(-9, tmp_path, Path("/env/bin/python")))
    broken = str(worker_failure(3, tmp_path, Path("/env/bin/python")))
    assert broken.startswith("optimum environment /env/bin/python is broken (TypeError: bad)")


def test_missing_or_broken_environment_says_how_to_create_one(tmp_path: Path) -> None:
    hint = "create it with bash scripts/setup_optimum_env.sh or point --optimum-python at one"
    with pytest.raises(BackendError, match="optimum environment not found") as missing:
        check_environment(None)
    assert hint in str(missing.value)
    with pytest.raises(BackendError, match=f"optimum environment {tmp_path / 'nope'} not found") as absent:
        check_environment(tmp_path / "nope")
    assert hint in str(absent.value)
    # this test's own python is a real interpreter without optimum-benchmark: a broken optimum environment
    with pytest.raises(BackendError, match=r"is broken \(optimum-benchmark is not installed") as broken:
        check_environment(Path(sys.executable))
    assert hint in str(broken.value)


def test_default_environment_is_dot_venv_optimum_under_the_rootdir(tmp_path: Path) -> None:
    assert build_settings({}, {}, {}, cwd=tmp_path, rootdir=tmp_path).optimum_python is None
    python = tmp_path / ".venv-optimum" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert build_settings({}, {}, {}, cwd=tmp_path / "sub", rootdir=tmp_path).optimum_python == python
    given = build_settings({"energy_optimum_python": "env/bin/python"}, {}, {}, cwd=tmp_path / "c", rootdir=tmp_path)
    assert given.optimum_python == tmp_path / "c" / "env" / "bin" / "python"
    ini = build_settings({}, {"energy_optimum_python": "i/bin/python"}, {}, cwd=tmp_path / "c", rootdir=tmp_path)
    assert ini.optimum_python == tmp_path / "i" / "bin" / "python"


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
        pytest.skip(f"no optimum environment at {OPTIMUM_PYTHON}: bash scripts/setup_optimum_env.sh")
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
        "optimum environment /nowhere/bin/python not found (no such file); create it with "
        "bash scripts/setup_optimum_env.sh or point --optimum-python at one" in line
        for line in result.outlines
    )
