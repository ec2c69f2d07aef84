"""The optimum backend: optimum-benchmark's ``energy_star`` scenario, run in its own environment and read back.

AI Energy Score runs optimum-benchmark; this backend runs the same scenario for a test's model and task, so a result
here is the reference method, not an imitation of it. optimum-benchmark 0.6.0 needs ``transformers<5`` and codecarbon,
which conflict with the pytorch backend's stack, so it lives in a separate virtual environment (made by
``scripts/setup_optimum_env.sh``) and runs as a subprocess (:mod:`.optimum_worker`).

optimum-benchmark meters its own phases with codecarbon, so the runner's metered flow does not apply: the runner calls
:meth:`OptimumBackend.run_protocol`, which
1. generates the scenario's configuration from our task table (dataset, columns, samples, batch size 1, generation
   kwargs, warm-up) with the test's model, processor, device and overrides; the registry package ships the scenario
   but not AI Energy Score's ``energy_star/*.yaml`` files;
2. hands optimum-benchmark the samples: the official Hub dataset by its id, anything else (a local file, our offline
   sample sets) written as a one-file dataset folder, the only local form its ``load_dataset`` call accepts;
3. reads ``benchmark_report.json`` (kWh per phase and scope) and codecarbon's per-phase files (durations, hardware)
   into :class:`~pytest_aienergyscore.records.Phase` objects, with every figure's scope, kind and meter stated;
4. returns the generated config, optimum-benchmark's log and codecarbon's files as attachments for the run folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasets import DatasetInfo, load_samples
from ..energy import (
    CONFIDENCE_LOW,
    CONFIDENCE_OK,
    CONFIDENCE_UNTRUSTWORTHY,
    JOULES_PER_WH,
    DeviceEnergy,
    Measurement,
)
from ..records import Phase
from ..tasks import TaskSpec
from .base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress

if TYPE_CHECKING:
    from ..runner import BenchmarkRequest
    from ..settings import Settings

WORKER_MODULE = "pytest_aienergyscore.backends.optimum_worker"
OPTIMUM_BENCHMARK_VERSION = "0.6.0"
SETUP_HINT = "create it with bash scripts/setup_optimum_env.sh or point --optimum-python at one"
DEFAULT_ENVIRONMENT = ".venv-optimum/bin/python under the rootdir"

JOULES_PER_KWH = JOULES_PER_WH * 1000.0
# codecarbon reads GPU energy from NVML's counter (updated about every 100 ms) at each phase's edges; windows shorter
# than 10 and 50 of its updates are flagged as our own meters flag them.
CODECARBON_PERIOD_S = 0.1
UNTRUSTWORTHY_S = 10 * CODECARBON_PERIOD_S
LOW_CONFIDENCE_S = 50 * CODECARBON_PERIOD_S
ATTACHMENT_MAX_BYTES = 256 * 1024
LOG_TAIL_BYTES = 64 * 1024

# optimum-benchmark's task names for ours. Summarization goes as text2text-generation (with t5_task "summarization"):
# energy_star runs its own "summarization" task as one forward pass per document, not as the protocol's generation.
OPTIMUM_TASKS: Mapping[str, str] = {
    "text_generation": "text-generation",
    "reasoning": "text-generation",
    "summarization": "text2text-generation",
    "question_answering": "question-answering",
    "text_classification": "text-classification",
    "sentence_similarity": "sentence-similarity",
    "image_classification": "image-classification",
    "object_detection": "object-detection",
    "automatic_speech_recognition": "automatic-speech-recognition",
    "image_captioning": "image-to-text",
    "image_generation": "text-to-image",
}
# Which scenario option names the column of each of our roles.
COLUMN_OPTIONS: Mapping[str, str] = {
    "text": "text_column_name",
    "prompt": "text_column_name",
    "question": "question_column_name",
    "context": "context_column_name",
    "sentence1": "sentence1_column_name",
    "sentence2": "sentence2_column_name",
    "image": "image_column_name",
    "audio": "audio_column_name",
}
# Report phase -> our phase, and the codecarbon file that holds its window (decode is derived from "generate").
REPORT_PHASES: Mapping[str, tuple[str, str]] = {
    "preprocess_dataset": ("preprocess", "preprocess_dataset"),
    "prefill": ("prefill", "prefill"),
    "decode": ("decode", "generate"),
    "forward": ("forward", "forward"),
    "call": ("call", "call"),
}
UNREPORTED_PHASES = ("load_dataset", "load_model")
CODECARBON_PHASES = ("load_dataset", "preprocess_dataset", "load_model", "prefill", "generate", "forward", "call")
# codecarbon CPU modes that read a hardware counter; every other mode (cpu_load, constant) is an estimate.
MEASURED_CPU_MODES = ("intel_rapl", "intel_power_gadget", "windows_emi", "apple_powermetrics")
# Files the worker leaves, and the names they keep in the run folder (ours already has a benchmark_report.json).
ATTACHMENT_NAMES: Mapping[str, str] = {
    "energy_star_config.yaml": "optimum_energy_star_config.yaml",
    "optimum_request.json": "optimum_request.json",
    "benchmark_config.json": "optimum_benchmark_config.json",
    "benchmark_report.json": "optimum_benchmark_report.json",
    "worker_result.json": "optimum_worker_result.json",
    "worker_error.json": "optimum_worker_error.json",
}
LOG_FILE = "optimum.log"
DATASET_ATTACHMENT = "optimum_dataset_train.jsonl"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.msgpack", "*.h5", "*.onnx", "*.ckpt")

_EXIT_BROKEN_ENVIRONMENT = 3  # optimum_worker.EXIT_BROKEN_ENVIRONMENT, repeated: the worker module is not imported
_checked_environments: dict[str, str | None] = {}


@dataclass(frozen=True)
class ResolvedModel:
    """A model as optimum-benchmark should load it: where it is and what it is (so it never probes the Hub)."""

    path: str
    processor_path: str
    library: str | None
    model_type: str | None
    architectures: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetRef:
    """How optimum-benchmark gets the samples: a Hub id or a local folder, with the scenario's column options."""

    name: str
    columns: Mapping[str, str]
    how: str
    local: bool = False
    split: str = "train"


@dataclass
class ProtocolResult:
    """What one optimum-benchmark run gives the record: phases, counts, dataset facts, notes and files."""

    phases: list[Phase]
    queries: int
    counts: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerRun:
    """One finished worker: optimum-benchmark's report, codecarbon's files and our counts."""

    report: dict[str, Any]
    codecarbon: dict[str, dict[str, Any]]
    result: dict[str, Any]
    wall_s: float


class OptimumBackend(Backend):
    """optimum-benchmark's energy_star scenario in its own environment; it meters its own phases."""

    name = "optimum"
    cpu_scope = "machine"  # codecarbon runs with tracking_mode="machine"

    def __init__(self) -> None:
        self.model: ResolvedModel | None = None

    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Resolve the model here (optimum-benchmark loads it in its own process): unavailable models skip early."""
        self.model = resolve_model(request)
        return {
            "model_class": self.model.architectures[0] if self.model.architectures else None,
            "model_type": self.model.model_type,
            "library": self.model.library,
            "dtype": torch_dtype(request.task, request.device),
            "device": request.device,
            "parameters": safetensors_parameters(Path(self.model.path)),
            "path": self.model.path,
            "loaded_by": "optimum-benchmark, in its own environment",
        }

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        raise BackendError("the optimum backend runs optimum-benchmark's whole protocol: use run_protocol")

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        raise BackendError("the optimum backend runs optimum-benchmark's whole protocol: use run_protocol")

    def run_protocol(self, request: BenchmarkRequest, run_dir: Path, settings: Settings) -> ProtocolResult:
        """Run energy_star once per repetition and read its figures; the runner records them as they are."""
        python = check_environment(settings.optimum_python)
        plan = self.plan(request, run_dir)
        runs: list[WorkerRun] = []
        phases: list[Phase] = []
        attachments = dataset_attachment(plan.dataset)
        for repetition in range(request.repeat):
            folder = run_dir if request.repeat == 1 else run_dir / f"repetition-{repetition}"
            run = run_worker(python, plan.config, folder, local_dataset=plan.dataset.local)
            runs.append(run)
            phases.extend(phases_from_report(run, request.task, plan.config, plan.device, plan.device_ids, repetition))
            prefix = "" if request.repeat == 1 else f"repetition-{repetition}_"
            attachments.update({prefix + name: text for name, text in collect_attachments(folder).items()})
        return plan.result(runs, phases, attachments)

    def plan(self, request: BenchmarkRequest, run_dir: Path) -> RunPlan:
        """Everything decided before optimum-benchmark starts: samples, dataset folder, processor, configuration."""
        if self.model is None:
            raise BackendError("no model is loaded")
        task = request.task
        samples, info = load_samples(task, request.dataset, request.samples)
        run_dir.mkdir(parents=True, exist_ok=True)
        dataset = dataset_for_optimum(task, samples, info, run_dir / "dataset")
        processor, adapted = transformers4_processor(self.model.processor_path, run_dir / "processor")
        device, device_ids = optimum_device(request.device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        config = build_request(
            task,
            replace(self.model, processor_path=processor),
            dataset,
            samples=len(samples),
            warmup=request.warmup,
            overrides=request.overrides,
            device=device,
            device_ids=device_ids,
            dtype=torch_dtype(task, request.device),
            trust_remote_code=request.trust_remote_code,
        )
        return RunPlan(task, info, dataset, config, device, device_ids, adapted)


@dataclass
class RunPlan:
    """One benchmark's inputs to optimum-benchmark, and how its runs become a :class:`ProtocolResult`."""

    task: TaskSpec
    info: DatasetInfo
    dataset: DatasetRef
    config: dict[str, Any]
    device: str
    device_ids: str | None
    adapted_processor: bool

    def result(self, runs: list[WorkerRun], phases: list[Phase], attachments: dict[str, str]) -> ProtocolResult:
        last = runs[-1]
        notes = protocol_notes(self.task, self.info, last)
        if self.adapted_processor:
            notes.append(
                "the processor's tokenizer_config.json was written by transformers 5; optimum-benchmark "
                "(transformers 4) read a copy with its extra_special_tokens list as additional_special_tokens"
            )
        self.info.used = int(last.result.get("samples") or self.info.used)
        return ProtocolResult(
            phases=phases,
            queries=self.info.used,
            counts={"samples": last.result.get("samples"), "input_tokens": last.result.get("input_tokens")},
            dataset={**self.info.to_dict(), "passed_to_optimum_benchmark_as": self.dataset.how},
            notes=notes,
            metadata={"optimum": run_metadata(runs, self.config, self.dataset)},
            attachments=attachments,
        )


# -- model, device, dtype ---------------------------------------------------------------------------------------


def resolve_model(request: LoadRequest) -> ResolvedModel:
    """Like the pytorch backend: a local folder, an offline package's model, or a cached Hub id (else skip)."""
    from .pytorch import check_architecture, resolve_model_path

    path = resolve_model_path(request.model)
    processor = resolve_model_path(request.processor) if request.processor else path
    folder = Path(path)
    if not folder.is_dir():  # a Hub id optimum-benchmark may download itself (the Hub is reachable)
        return ResolvedModel(path, processor, None, None)
    if (folder / "model_index.json").is_file():
        return ResolvedModel(path, processor, "diffusers", None)
    check_architecture(request.task, request.model, path)
    config = _read_json(folder / "config.json")
    architectures = tuple(str(a) for a in config.get("architectures") or ())
    model_type = config.get("model_type")
    return ResolvedModel(path, processor, "transformers", str(model_type) if model_type else None, architectures)


def transformers4_processor(path: str, scratch: Path) -> tuple[str, bool]:
    """The processor folder as transformers 4 can read it, and whether it had to be adapted.

    transformers 5 saves ``extra_special_tokens`` as a list (4.x wants a mapping, and calls the list
    ``additional_special_tokens``) and may name the generic class ``TokenizersBackend``; optimum-benchmark's loader
    swallows the resulting error and carries on without a tokenizer. A copy without the weights gets fixed configs.
    """
    folder = Path(path)
    configs = sorted(folder.rglob(TOKENIZER_CONFIG)) if folder.is_dir() else []
    if not any(v4_tokenizer_config(_read_json(c)) != _read_json(c) for c in configs):
        return path, False
    shutil.copytree(folder, scratch, ignore=shutil.ignore_patterns(*WEIGHT_PATTERNS), dirs_exist_ok=True)
    for config_file in scratch.rglob(TOKENIZER_CONFIG):
        fixed = v4_tokenizer_config(_read_json(config_file))
        config_file.write_text(json.dumps(fixed, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(scratch), True


def v4_tokenizer_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A tokenizer_config.json mapping in the shape transformers 4.x reads (unchanged when it already is)."""
    fixed = dict(config)
    if fixed.get("tokenizer_class") == "TokenizersBackend":
        fixed["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = fixed.get("extra_special_tokens")
    if isinstance(extra, list):
        del fixed["extra_special_tokens"]
        fixed["additional_special_tokens"] = list(
            dict.fromkeys([*(fixed.get("additional_special_tokens") or []), *extra])
        )
    return fixed


def safetensors_parameters(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (no weights are read): the class A/B/C rule needs it."""
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    total = 0
    for path in files:
        try:
            with path.open("rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
        except (OSError, ValueError):
            return None
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry.get("shape", ()):
                    count *= int(dim)
                total += count
    return total


def optimum_device(device: str, visible: str | None) -> tuple[str, str | None]:
    """optimum-benchmark's ``device`` and ``device_ids`` for a torch device string.

    It wants ``cuda`` plus physical ids (it sets ``CUDA_VISIBLE_DEVICES`` itself, and its own parsing of ``cuda:0``
    fails), so a CUDA ordinal of this process is mapped through this process's ``CUDA_VISIBLE_DEVICES``.
    """
    if not device.startswith("cuda"):
        return "cpu", None
    ordinal = int(device.partition(":")[2] or 0)
    entries = [entry.strip() for entry in (visible or "").split(",") if entry.strip()]
    if not entries:
        return "cuda", str(ordinal)
    if ordinal >= len(entries):
        raise BackendError(f"CUDA device {ordinal} is not among CUDA_VISIBLE_DEVICES={visible}")
    if not entries[ordinal].isdigit():
        raise BackendError(
            f"CUDA_VISIBLE_DEVICES={visible} names GPUs by UUID; optimum-benchmark needs index numbers there"
        )
    return "cuda", entries[ordinal]


def torch_dtype(task: TaskSpec, device: str) -> str:
    """The pytorch backend's rule: fp32, except text generation in bf16 (fp16 without bf16 support) on a GPU."""
    if not (task.half_precision and device.startswith("cuda")):
        return "float32"
    from .pytorch import pick_dtype

    return str(pick_dtype(task, device)).replace("torch.", "")


# -- configuration ----------------------------------------------------------------------------------------------


def generation_kwargs(task: TaskSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The task's generation kwargs with the test's overrides.

    energy_star refuses ``min_new_tokens != max_new_tokens``; the protocol fixes both to one number, so an override of
    only one of them moves both (as energy_star itself does when given one). Reasoning's 1 to 8,192 cannot run there.
    """
    kwargs = {**task.generate_kwargs, **overrides}
    given = [key for key in ("max_new_tokens", "min_new_tokens") if key in overrides]
    if len(given) == 1:
        kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = overrides[given[0]]
    if kwargs.get("max_new_tokens") != kwargs.get("min_new_tokens"):
        raise BackendError(
            f"optimum-benchmark's energy_star needs min_new_tokens == max_new_tokens, {task.name} uses "
            f"{kwargs.get('min_new_tokens')} to {kwargs.get('max_new_tokens')}; pass max_new_tokens=N to the "
            "benchmark or use --backend pytorch"
        )
    return kwargs


def build_request(
    task: TaskSpec,
    model: ResolvedModel,
    dataset: DatasetRef,
    *,
    samples: int,
    warmup: int,
    overrides: Mapping[str, Any],
    device: str,
    device_ids: str | None,
    dtype: str,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """The worker's request: optimum-benchmark's backend and scenario options, from our task table."""
    backend: dict[str, Any] = {
        "model": model.path,
        "processor": model.processor_path,
        "task": OPTIMUM_TASKS[task.name],
        "library": model.library,
        "model_type": model.model_type,
        "device": device,
        "device_ids": device_ids,
        "torch_dtype": dtype if model.library != "diffusers" else None,
        "no_weights": False,
    }
    if trust_remote_code:
        backend["model_kwargs"] = {"trust_remote_code": True}
    scenario: dict[str, Any] = {
        "dataset_name": dataset.name,
        "dataset_config": "",
        "dataset_split": dataset.split,
        "num_samples": samples,
        "input_shapes": {"batch_size": 1},
        "warmup_runs": warmup,
        "energy": True,
        "memory": False,  # its tracker starts a process inside every energy window
        "latency": False,
        **dataset.columns,
    }
    if task.is_generative:
        scenario["generate_kwargs"] = generation_kwargs(task, overrides)
    elif task.kind == "call":
        scenario["call_kwargs"] = {**task.call_kwargs, **overrides}
    elif overrides:
        scenario["forward_kwargs"] = dict(overrides)
    if task.name == "summarization":  # its text2text preprocessing asks which T5-style task it serves
        scenario["t5_task"] = "summarization"
    if task.reasoning:  # energy_star passes enable_thinking=True itself; passing it again would be a duplicate
        scenario["reasoning"] = True
        scenario["reasoning_params"] = {k: v for k, v in task.reasoning_kwargs.items() if k != "enable_thinking"}
    return {"name": f"energy_star_{task.name}", "backend": backend, "scenario": scenario}


def config_yaml(config: Mapping[str, Any]) -> str:
    """The same configuration in optimum-benchmark's CLI (Hydra) form, to rerun it without the plugin."""
    document = {
        "defaults": [
            "benchmark",
            {"scenario": "energy_star"},
            {"launcher": "inline"},
            {"backend": "pytorch"},
            "_self_",
        ],
        "name": config["name"],
        "backend": {k: v for k, v in config["backend"].items() if v is not None},
        "scenario": config["scenario"],
    }
    header = (
        "# optimum-benchmark energy_star configuration generated by pytest-aienergyscore from its task table.\n"
        "# Rerun: optimum-benchmark --config-dir . --config-name optimum_energy_star_config\n"
        "# (with codecarbon's online tracker disabled, as pytest_aienergyscore/backends/optimum_worker.py does).\n"
        f"# A local dataset_name was a scratch folder holding {DATASET_ATTACHMENT} (kept beside this file) as\n"
        "# train.jsonl; a processor folder under backend-runs/ was a weight-less copy with a transformers 4 tokenizer\n"
    )
    return header + _yaml_block(document, 0)


def _yaml_block(data: Mapping[str, Any], indent: int) -> str:
    """Block mappings, flow (JSON) lists and scalars: JSON scalars and flow collections are valid YAML."""
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{pad}{key}:\n{_yaml_block(value, indent + 1)}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value, default=str)}\n")
    return "".join(lines)


# -- dataset ------------------------------------------------------------------------------------------------------


def dataset_for_optimum(task: TaskSpec, samples: list[dict[str, Any]], info: DatasetInfo, folder: Path) -> DatasetRef:
    """The official Hub dataset goes by its id (optimum-benchmark loads it as AI Energy Score does); anything else is
    written as a one-file folder, the only local form its ``load_dataset(name)`` call accepts."""
    if info.source == "hub":
        columns = {COLUMN_OPTIONS[role]: column for role, column in task.columns.items()}
        return DatasetRef(info.name, columns, f"Hub dataset {info.name}")
    write_samples(task, samples, folder)
    columns = {COLUMN_OPTIONS[role]: role for role in task.columns}
    return DatasetRef(str(folder), columns, f"local folder of the {len(samples)} samples used ({info.source})", True)


def write_samples(task: TaskSpec, samples: list[dict[str, Any]], folder: Path) -> None:
    """Text samples as ``train.jsonl``; images as PNG files with a ``metadata.jsonl`` (datasets' imagefolder)."""
    roles = set(task.columns)
    if "audio" in roles:
        raise BackendError(
            "a local audio dataset cannot be handed to optimum-benchmark (its environment has no audio decoder); "
            "use the official Hub dataset or --backend pytorch"
        )
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, sample in enumerate(samples):
        row = dict(sample)
        if "image" in roles:
            name = f"{index:05d}.png"
            sample["image"].save(folder / name)
            del row["image"]
            row["file_name"] = name
        rows.append(json.dumps(row, ensure_ascii=False))
    target = "metadata.jsonl" if "image" in roles else "train.jsonl"
    (folder / target).write_text("\n".join(rows) + "\n", encoding="utf-8")


# -- environment and worker ---------------------------------------------------------------------------------------

_PROBE = """
import sys
from importlib import metadata
problems = []
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        problems.append(name + " is not installed")
        return None
found = version("optimum-benchmark")
if found and found != sys.argv[1]:
    problems.append("optimum-benchmark " + found + " instead of " + sys.argv[1])
found = version("transformers")
if found and int(found.split(".")[0]) >= 5:
    problems.append("transformers " + found + " (optimum-benchmark needs transformers<5)")
for name in ("codecarbon", "pillow", "datasets", "torch"):
    version(name)
print("; ".join(problems) or "ok")
"""


def check_environment(python: Path | None) -> Path:
    """The optimum environment's python, checked once per session: missing or broken is one line saying how to fix."""
    if python is None:
        raise BackendError(
            f"optimum environment not found (no --optimum-python, no AIENERGYSCORE_OPTIMUM_PYTHON and no "
            f"{DEFAULT_ENVIRONMENT}); {SETUP_HINT}"
        )
    if not python.exists():
        raise BackendError(f"optimum environment {python} not found (no such file); {SETUP_HINT}")
    key = str(python)
    if key not in _checked_environments:
        _checked_environments[key] = _probe_environment(python)
    problem = _checked_environments[key]
    if problem:
        raise BackendError(f"optimum environment {python} is broken ({problem}); {SETUP_HINT}")
    return python


def _probe_environment(python: Path) -> str | None:
    """Package metadata only (no torch import): about 50 ms."""
    try:
        done = subprocess.run(
            [str(python), "-s", "-c", _PROBE, OPTIMUM_BENCHMARK_VERSION],
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_env(),
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"cannot run it: {err}"
    text = (done.stdout.strip() or done.stderr.strip() or "no answer").splitlines()[-1]
    if done.returncode != 0:
        return f"it exited with status {done.returncode}: {text}"
    return None if text == "ok" else text


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make another python import our packages instead of its own."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}


def worker_env(run_dir: Path, local_dataset: bool) -> tuple[dict[str, str], bool]:
    """The worker's environment and whether it must block the network (the Hub is offline here)."""
    env = _clean_env()
    shim = run_dir / ".pythonpath"
    shim.mkdir(exist_ok=True)
    package = Path(__file__).resolve().parent.parent
    link = shim / package.name
    if not link.exists():
        link.symlink_to(package, target_is_directory=True)
    env["PYTHONPATH"] = str(shim)  # only our package, never the main environment's site-packages
    env["PYTHONUNBUFFERED"] = "1"
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
    if offline:
        env.update(HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if local_dataset:  # the Arrow cache of a one-run folder belongs to that run
        env["HF_DATASETS_CACHE"] = str(run_dir / ".datasets-cache")
    return env, offline


def run_worker(python: Path, config: dict[str, Any], run_dir: Path, *, local_dataset: bool) -> WorkerRun:
    """Start the worker, wait for it, and read what it wrote; a failure is one line, the log stays on disk."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env, offline = worker_env(run_dir, local_dataset)
    request = {**config, "run_dir": str(run_dir), "block_network": offline}
    (run_dir / "optimum_request.json").write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
    (run_dir / "energy_star_config.yaml").write_text(config_yaml(config), encoding="utf-8")
    command = [str(python), "-s", "-m", WORKER_MODULE, str(run_dir / "optimum_request.json")]
    started = time.perf_counter()
    with (run_dir / LOG_FILE).open("wb") as log:
        status = subprocess.run(command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    if status.returncode != 0:
        raise worker_failure(status.returncode, run_dir, python)
    report = _read_json(run_dir / "benchmark_report.json")
    if not report:
        raise BackendError(f"optimum-benchmark wrote no report (log: {run_dir / LOG_FILE})")
    codecarbon = {name: _read_json(run_dir / f"{name}_codecarbon.json") for name in CODECARBON_PHASES}
    codecarbon = {name: data for name, data in codecarbon.items() if data}
    return WorkerRun(report, codecarbon, _read_json(run_dir / "worker_result.json"), wall)


def worker_failure(returncode: int, run_dir: Path, python: Path) -> BackendError:
    """One line for the test's failure: the exception optimum-benchmark raised, and where its whole log is."""
    log_path = run_dir / LOG_FILE
    error = _read_json(run_dir / "worker_error.json")
    detail = f"{error.get('type')}: {first_line(str(error.get('message', '')))}" if error else ""
    if returncode == _EXIT_BROKEN_ENVIRONMENT:
        return BackendError(f"optimum environment {python} is broken ({detail}); {SETUP_HINT}")
    if not detail:
        detail = last_meaningful_line(_tail(log_path, LOG_TAIL_BYTES)) or "no error message"
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return BackendError(f"optimum-benchmark was killed by {name}{hint}: {detail} (log: {log_path})")
    return BackendError(f"optimum-benchmark failed: {detail} (log: {log_path})")


_NOISE = re.compile(
    r"^(Traceback |\s+File |\s+\^|\s+~|\s*$|During handling|The above exception|Set the environment variable HYDRA|"
    r"optimum_worker: )"
)


def last_meaningful_line(log: str) -> str:
    """The last line of a log that is not traceback framing or a hint (usually the final exception line)."""
    for line in reversed(log.splitlines()):
        if not _NOISE.match(line):
            return first_line(line)
    return ""


def first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- report reading -------------------------------------------------------------------------------------------------


def phases_from_report(
    run: WorkerRun, task: TaskSpec, config: Mapping[str, Any], device: str, device_ids: str | None, repetition: int
) -> list[Phase]:
    """Our phases from optimum-benchmark's report, in AI Energy Score's order, with counts attached."""
    gpu = device == "cuda" and _codecarbon_saw_gpu(run.codecarbon)
    cpu_kind = cpu_energy_kind(run.result.get("codecarbon_hardware") or [])
    counts = phase_counts(run.result, config, task)
    phases = []
    for key, (name, window) in REPORT_PHASES.items():
        entry = run.report.get(key)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("energy"), Mapping):
            continue
        measurement = read_energy(
            name,
            entry["energy"],
            run.codecarbon.get(window, {}),
            gpu_device=f"cuda:{device_ids}" if gpu else None,
            cpu_kind=cpu_kind,
            window_label=f"{window} window" if window != key else "window",
        )
        if name == "decode":
            measurement = _decode_duration(measurement, run.codecarbon)
        samples, tokens, details = counts.get(name, (None, None, {}))
        phases.append(Phase(name, measurement, samples, tokens, repetition, details))
    if not phases:
        raise BackendError("optimum-benchmark's report holds no energy for any phase (was energy tracking off?)")
    return phases


def read_energy(
    name: str,
    energy: Mapping[str, Any],
    window: Mapping[str, Any],
    *,
    gpu_device: str | None,
    cpu_kind: str,
    window_label: str = "window",
) -> Measurement:
    """One phase's kWh per scope -> joules per device. Negative figures (decode = generate - prefill) are never passed
    on: each is set to 0 J and the phase is marked invalid with the reason."""
    unit = str(energy.get("unit", "kWh"))
    if unit != "kWh":
        raise BackendError(f"optimum-benchmark reported {name} energy in {unit!r}; this version reads kWh")
    scopes = [("gpu", gpu_device, "measured", "codecarbon-nvml")] if gpu_device else []
    scopes += [("cpu", "cpu", cpu_kind, "codecarbon"), ("ram", "ram", "estimate", "codecarbon")]
    devices, warnings = [], []
    for scope, device, kind, meter in scopes:
        kwh = float(energy.get(scope) or 0.0)
        joules = kwh * JOULES_PER_KWH
        if joules < 0:
            warnings.append(
                f"optimum-benchmark reported a negative {scope} energy ({kwh:.3g} kWh): its {name} is one pass minus "
                "another and the difference is within noise; recorded as 0 J, not valid"
            )
            joules = 0.0
        devices.append(DeviceEnergy(str(device), scope, joules, kind, meter))
    duration = float(window.get("duration") or 0.0)
    confidence = _confidence(duration, warnings, window_label)
    if warnings and any("negative" in w for w in warnings):
        confidence = CONFIDENCE_UNTRUSTWORTHY
    head = devices[0]
    return Measurement(
        name=name,
        meter=head.meter,
        kind=head.kind,
        duration_s=duration,
        devices=tuple(devices),
        started_at=_timestamp(window.get("timestamp")),
        counter_period_s=CODECARBON_PERIOD_S,
        confidence=confidence,
        valid=not any("negative" in w for w in warnings),
        warnings=tuple(warnings),
    )


def _confidence(duration: float, warnings: list[str], label: str) -> str:
    if duration < UNTRUSTWORTHY_S:
        warnings.append(f"{label} of {duration:.3f} s is shorter than {UNTRUSTWORTHY_S:g} s: not trustworthy")
        return CONFIDENCE_UNTRUSTWORTHY
    if duration < LOW_CONFIDENCE_S:
        warnings.append(f"{label} of {duration:.2f} s is shorter than {LOW_CONFIDENCE_S:g} s: low confidence")
        return CONFIDENCE_LOW
    return CONFIDENCE_OK


def _decode_duration(decode: Measurement, codecarbon: Mapping[str, Mapping[str, Any]]) -> Measurement:
    """Decode's window is derived like its energy: the generate pass's duration minus the prefill pass's."""
    generate = float(codecarbon.get("generate", {}).get("duration") or 0.0)
    prefill = float(codecarbon.get("prefill", {}).get("duration") or 0.0)
    values = decode.to_dict()
    values["duration_s"] = max(generate - prefill, 0.0)
    return Measurement.from_dict(values)


def _timestamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _codecarbon_saw_gpu(codecarbon: Mapping[str, Mapping[str, Any]]) -> bool:
    counts = [data.get("gpu_count") for data in codecarbon.values() if data.get("gpu_count") is not None]
    return not counts or any(float(c or 0) > 0 for c in counts)


def cpu_energy_kind(hardware: list[dict[str, Any]]) -> str:
    """measured when codecarbon read a CPU energy counter (RAPL...), else estimate (TDP x load, or TDP)."""
    modes = [item.get("mode") for item in hardware if item.get("class") == "CPU"]
    return "measured" if modes and all(mode in MEASURED_CPU_MODES for mode in modes) else "estimate"


def phase_counts(
    result: Mapping[str, Any], config: Mapping[str, Any], task: TaskSpec
) -> dict[str, tuple[int | None, int | None, dict[str, Any]]]:
    """Samples and tokens per phase, counted as the pytorch backend counts them, so the two can be compared."""
    samples: int | None = result.get("samples")
    input_tokens: int | None = result.get("input_tokens")
    scenario = config["scenario"]
    generate = dict(result.get("generate_kwargs") or scenario.get("generate_kwargs") or {})
    new_tokens = int(generate.get("max_new_tokens") or 0)
    beams = int(generate.get("num_beams") or 1)
    generated = samples * beams * new_tokens if samples is not None else None
    decode_tokens = samples * beams * (new_tokens - 1) if samples is not None and new_tokens else None
    call = dict(result.get("call_kwargs") or scenario.get("call_kwargs") or {})
    images = samples * int(call.get("num_images_per_prompt") or 1) if samples is not None else None
    decode_details = {
        "method": "optimum-benchmark: generate pass minus prefill pass, both over the whole dataset",
        "generated_tokens": generated,
        "generate_kwargs": generate,
    }
    return {
        "preprocess": (samples, input_tokens, {}),
        "prefill": (samples, input_tokens, {"first_tokens": samples, "generate_kwargs": generate}),
        # decode: the first new token of each sample belongs to prefill (optimum-benchmark's own decode volume)
        "decode": (samples, decode_tokens, decode_details),
        "forward": (samples, input_tokens, {}),
        "call": (samples, None, {"images": images, "call_kwargs": call}),
    }


# -- notes, metadata, attachments --------------------------------------------------------------------------------


def protocol_notes(task: TaskSpec, info: DatasetInfo, run: WorkerRun) -> list[str]:
    """What a reader must know to read these figures: dataset, meter, and where the method differs."""
    notes = []
    if not info.official:
        notes.append(info.note or f"dataset {info.name} is not the official {task.dataset}")
    elif info.note:
        notes.append(info.note)
    notes.append(codecarbon_note(run.result.get("codecarbon_hardware") or [], run.codecarbon))
    if task.name == "sentence_similarity":
        notes.append("optimum-benchmark encodes each sentence pair as one sequence (one forward per query)")
    return notes


def codecarbon_note(hardware: list[dict[str, Any]], codecarbon: Mapping[str, Mapping[str, Any]]) -> str:
    """How codecarbon obtained its CPU and RAM figures on this machine, in one sentence."""
    cpu = next((item for item in hardware if item.get("class") == "CPU"), None)
    mode = cpu.get("mode") if cpu else None
    ram_watts = {float(data["ram_power"]) for data in codecarbon.values() if data.get("ram_power") is not None}
    if mode in MEASURED_CPU_MODES:
        how = f"CPU energy read by codecarbon from {mode}"
    elif mode == "cpu_load":
        how = "CPU energy is codecarbon's estimate: the CPU's TDP x its load (no RAPL counter readable here)"
    elif mode == "constant":
        how = "CPU energy is codecarbon's estimate: a constant TDP (no RAPL counter readable here)"
    else:
        how = "CPU energy from codecarbon (method not reported)"
    ram_how = f" ({', '.join(f'{w:g} W' for w in sorted(ram_watts))} here)" if ram_watts else ""
    return (
        f"energy metered by optimum-benchmark's codecarbon tracker, machine-wide; {how}; RAM energy is codecarbon's "
        f"estimate, a constant power{ram_how} x time; --energy-meter does not apply to --backend optimum"
    )


def run_metadata(runs: list[WorkerRun], config: Mapping[str, Any], dataset: DatasetRef) -> dict[str, Any]:
    """What the record keeps about optimum-benchmark's side: versions, task, unreported phases, wall time."""
    last = runs[-1]
    unreported = {}
    for name in UNREPORTED_PHASES:
        energy = (last.report.get(name) or {}).get("energy") or {}
        if energy:
            unreported[name] = {scope: energy.get(scope) for scope in ("cpu", "ram", "gpu", "total")}
    return {
        "versions": last.result.get("versions", {}),
        "task": config["backend"]["task"],
        "dataset": dataset.how,
        "codecarbon_hardware": last.result.get("codecarbon_hardware", []),
        "unreported_phases_kwh": unreported,
        "worker_wall_s": [round(run.wall_s, 3) for run in runs],
        "blocked_connections": last.result.get("blocked_connections", []),
    }


def collect_attachments(run_dir: Path) -> dict[str, str]:
    """The run's small files for the run folder: generated config, optimum-benchmark's files, codecarbon's, the log."""
    found: dict[str, str] = {}
    for source, target in ATTACHMENT_NAMES.items():
        path = run_dir / source
        if path.is_file() and path.stat().st_size <= ATTACHMENT_MAX_BYTES:
            found[target] = path.read_text(encoding="utf-8", errors="replace")
    for path in sorted(run_dir.glob("*_codecarbon.json")):
        if path.stat().st_size <= ATTACHMENT_MAX_BYTES:
            found[path.name] = path.read_text(encoding="utf-8", errors="replace")
    log = run_dir / LOG_FILE
    if log.is_file():
        found[LOG_FILE] = _tail(log, LOG_TAIL_BYTES)
    return found


def dataset_attachment(dataset: DatasetRef) -> dict[str, str]:
    """The samples optimum-benchmark read from a scratch folder, so that the generated config can be rerun."""
    samples = Path(dataset.name) / "train.jsonl"
    if not dataset.local or not samples.is_file() or samples.stat().st_size > ATTACHMENT_MAX_BYTES:
        return {}
    return {DATASET_ATTACHMENT: samples.read_text(encoding="utf-8", errors="replace")}


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - limit, 0))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else f"[... first {size - limit} bytes left out ...]\n" + text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
