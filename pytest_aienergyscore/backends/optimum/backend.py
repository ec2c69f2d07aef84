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
   into :class:`~pytest_aienergyscore.records.record.Phase` objects, with every figure's scope, kind and meter stated;
4. returns the generated config, optimum-benchmark's log and codecarbon's files as attachments for the run folder.
"""

from __future__ import annotations

import contextlib
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

from pytest_aienergyscore.backends.base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.optimum.gpu import (
    CounterSpan,
    GpuAcceptance,
    accept_codecarbon_gpu,
    counter_span,
    cross_check_warning,
    gpu_cross_check,
    read_counters_or_why,
    window_problems,
)
from pytest_aienergyscore.records.figures import (
    CONFIDENCE_LOW,
    CONFIDENCE_OK,
    CONFIDENCE_UNTRUSTWORTHY,
    JOULES_PER_WH,
    DeviceEnergy,
    Measurement,
    derive_decode,
    split_details,
)
from pytest_aienergyscore.records.record import Phase
from pytest_aienergyscore.rules.datasets import DatasetInfo, load_samples
from pytest_aienergyscore.rules.model_class import count_from_safetensors
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

if TYPE_CHECKING:
    from pytest_aienergyscore.config.settings import Settings
    from pytest_aienergyscore.session.runner import BenchmarkRequest

WORKER_MODULE = "pytest_aienergyscore.backends.optimum.worker"
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
ENERGY_SCOPES = ("cpu", "ram", "gpu", "total")
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
    """One finished worker: optimum-benchmark's report, codecarbon's files, our counts, and (GPU runs) our own reading
    of NVML's counter around the whole worker, which cross-checks codecarbon's GPU figure."""

    report: dict[str, Any]
    codecarbon: dict[str, dict[str, Any]]
    result: dict[str, Any]
    wall_s: float
    gpu_counter: CounterSpan | None = None

    def gpu_cross_check(self) -> dict[str, Any] | None:
        phase_windows = [window for _, window in REPORT_PHASES.values()]  # the AI Energy Score phases' windows
        return gpu_cross_check(self.gpu_counter, self.result, self.codecarbon, phase_windows)


class OptimumBackend(Backend):
    """optimum-benchmark's energy_star scenario in its own environment; it meters its own phases."""

    name = "optimum"
    cpu_scope = "machine"  # codecarbon runs with tracking_mode="machine"
    meters_itself = True  # codecarbon inside optimum-benchmark meters every phase: see run_protocol
    output_format = "optimum"  # its figures are optimum-benchmark's, as AI Energy Score's summariser reads them

    def __init__(self) -> None:
        self.model: ResolvedModel | None = None

    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Resolve the model here (optimum-benchmark loads it in its own process): unavailable models skip early."""
        from pytest_aienergyscore.backends.pytorch.backend import substitute_facts

        self.model = resolve_model(request)
        self.protocol = request.protocol(self.model.model_type)
        if self.protocol.pre("embed_separately"):
            raise BackendError(
                f"protocol variant {self.protocol.variant!r} embeds each sentence on its own, which "
                "optimum-benchmark's energy_star cannot do; use --backend pytorch for it"
            )
        return {
            "model_class": self.model.architectures[0] if self.model.architectures else None,
            "model_type": self.model.model_type,
            "library": self.model.library,
            "dtype": torch_dtype(request.task, request.device),
            "device": request.device,
            "parameters": count_from_safetensors(Path(self.model.path)),
            "path": self.model.path,
            "loaded_by": "optimum-benchmark, in its own environment",
            **substitute_facts(request.model, self.model.path),
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
        assert self.protocol is not None
        config = build_request(
            self.protocol,
            replace(self.model, processor_path=processor),
            dataset,
            samples=len(samples),
            warmup=request.warmup,
            overrides=request.overrides,
            device=device,
            device_ids=device_ids,
            dtype=torch_dtype(task, request.device),
            trust_remote_code=request.trust_remote_code,
            extra=task.chat_template_extra,
        )
        return RunPlan(task, info, dataset, config, device, device_ids, adapted, self.protocol)


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
    protocol: Protocol

    def result(self, runs: list[WorkerRun], phases: list[Phase], attachments: dict[str, str]) -> ProtocolResult:
        last = runs[-1]
        notes = protocol_notes(self.task, self.info, last, self.protocol)
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
    from pytest_aienergyscore.backends.pytorch.backend import check_architecture, resolve_model_path

    path = resolve_model_path(request.model)
    processor = resolve_model_path(request.processor) if request.processor else path
    folder = Path(path)
    if not folder.is_dir():  # a Hub id optimum-benchmark may download itself (the Hub is reachable)
        return ResolvedModel(path, processor, None, None)
    if (folder / "model_index.json").is_file():
        return ResolvedModel(path, processor, "diffusers", None)
    config = _read_json(folder / "config.json")
    architectures = tuple(str(a) for a in config.get("architectures") or ())
    model_type = config.get("model_type")
    check_architecture(request.protocol(str(model_type) if model_type else None), request.model, path)
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
    from pytest_aienergyscore.backends.pytorch.backend import pick_dtype

    return str(pick_dtype(task, device)).replace("torch.", "")


# -- configuration ----------------------------------------------------------------------------------------------


def generation_kwargs(protocol: Protocol, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol's generation kwargs with the test's overrides.

    energy_star refuses ``min_new_tokens != max_new_tokens``; the protocol fixes both to one number, so an override of
    only one of them moves both (as energy_star itself does when given one). Reasoning's 1 to 8,192 cannot run there.
    """
    kwargs = protocol.generate(overrides)
    given = [key for key in ("max_new_tokens", "min_new_tokens") if key in overrides]
    if len(given) == 1:
        kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = overrides[given[0]]
    if kwargs.get("max_new_tokens") != kwargs.get("min_new_tokens"):
        raise BackendError(
            f"optimum-benchmark's energy_star needs min_new_tokens == max_new_tokens, {protocol.task} uses "
            f"{kwargs.get('min_new_tokens')} to {kwargs.get('max_new_tokens')}; pass max_new_tokens=N to the "
            "benchmark or use --backend pytorch"
        )
    return kwargs


def build_request(
    protocol: Protocol,
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
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The worker's request: optimum-benchmark's backend and scenario options, from the protocol table."""
    backend: dict[str, Any] = {
        "model": model.path,
        "processor": model.processor_path,
        "task": protocol.optimum_task,
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
    if protocol.is_generative:
        scenario["generate_kwargs"] = generation_kwargs(protocol, overrides)
    elif protocol.kind == "call":
        scenario["call_kwargs"] = protocol.call(overrides)
    elif overrides:
        scenario["forward_kwargs"] = dict(overrides)
    scenario.update({key: value.value for key, value in protocol.optimum_scenario.items()})  # T5 task and prefixes
    template = protocol.pre("chat_template")
    if template:  # energy_star passes enable_thinking=True itself; passing it again would be a duplicate
        scenario["reasoning"] = True
        scenario["reasoning_params"] = {k: v for k, v in (extra or {}).items() if k != "enable_thinking"}
    return {"name": f"energy_star_{protocol.task}", "backend": backend, "scenario": scenario}


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
        "# (with codecarbon's online tracker disabled, as pytest_aienergyscore/backends/optimum/worker.py does).\n"
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
    """Text samples as ``train.jsonl``; images as PNG files with a ``metadata.jsonl`` (datasets' imagefolder); audio
    as a struct column ``{"array": [...], "sampling_rate": n}`` in ``train.jsonl``.

    Audio goes as plain numbers because ``load_dataset("json")`` then yields the dict energy_star's ASR preprocessor
    reads (``audio["array"]``, ``audio["sampling_rate"]``) with no audio decoder, which that environment lacks.
    """
    roles = set(task.columns)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, sample in enumerate(samples):
        row = dict(sample)
        if "image" in roles:
            name = f"{index:05d}.png"
            sample["image"].save(folder / name)
            del row["image"]
            row["file_name"] = name
        if "audio" in roles:
            row["audio"] = audio_struct(sample["audio"])
        rows.append(json.dumps(row, ensure_ascii=False))
    target = "metadata.jsonl" if "image" in roles else "train.jsonl"
    (folder / target).write_text("\n".join(rows) + "\n", encoding="utf-8")


def audio_struct(audio: Mapping[str, Any]) -> dict[str, Any]:
    """One decoded audio sample as JSON numbers: floats (numpy's included) and an integer sampling rate."""
    try:
        return {"array": [float(x) for x in audio["array"]], "sampling_rate": int(audio["sampling_rate"])}
    except (KeyError, TypeError, ValueError) as err:
        raise BackendError(
            f"an audio sample for optimum-benchmark must be {{'array': [floats], 'sampling_rate': int}} ({err})"
        ) from None


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
    package = Path(__file__).resolve().parents[2]
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
    before = read_counters_or_why() if config["backend"].get("device") == "cuda" else None
    started = time.perf_counter()
    with (run_dir / LOG_FILE).open("wb") as log:
        returncode = run_in_own_group(command, run_dir, env, log)
    wall = time.perf_counter() - started
    span = counter_span(before, read_counters_or_why()) if before is not None else None
    if returncode != 0:
        raise worker_failure(returncode, run_dir, python)
    report = _read_json(run_dir / "benchmark_report.json")
    if not report:
        raise BackendError(f"optimum-benchmark wrote no report (log: {run_dir / LOG_FILE})")
    codecarbon = {name: _read_json(run_dir / f"{name}_codecarbon.json") for name in CODECARBON_PHASES}
    codecarbon = {name: data for name, data in codecarbon.items() if data}
    return WorkerRun(report, codecarbon, _read_json(run_dir / "worker_result.json"), wall, span)


WORKER_STOP_GRACE_S = 10.0  # after SIGTERM, the worker's process group gets this long to exit before SIGKILL


class _Terminated(BaseException):
    """SIGTERM reached pytest while the worker ran: unwinds like Ctrl-C, so that the worker is stopped first."""


def run_in_own_group(command: list[str], cwd: Path, env: dict[str, str], log: Any) -> int:
    """Run the worker in its own session (process group) and stop that whole group when pytest is stopped.

    Why: a Ctrl-C at the terminal then reaches pytest alone, which stops the worker and every process it started
    (optimum-benchmark may run the benchmark in a child) with SIGTERM, then SIGKILL; SIGTERM to pytest, which by
    default ends pytest at once and leaves the worker running on the GPU, stops the worker the same way and then ends
    pytest as it would have. Returns the worker's exit status.
    """
    output = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": subprocess.STDOUT}
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, **output)
    previous = _raise_on_sigterm()
    try:
        return process.wait()
    except _Terminated:
        _stop_group(process)
        _restore_sigterm(previous)
        previous = None
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the handler pytest had: by default, pytest ends here
        raise BackendError("optimum-benchmark was stopped: pytest received SIGTERM") from None
    except BaseException:  # Ctrl-C, or anything else that ends the wait: the worker must not outlive it
        _stop_group(process)
        raise
    finally:
        _restore_sigterm(previous)


def _raise_on_sigterm() -> Any:
    """Make SIGTERM raise _Terminated while the worker runs; the handler it replaced, or None when it was left alone
    (not the main thread, SIGTERM ignored, or a handler Python did not set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return None

    def terminated(signum: int, frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, terminated)
    return previous


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's whole process group, up to WORKER_STOP_GRACE_S for it to go, then SIGKILL to what is
    left; a second Ctrl-C meanwhile skips to the SIGKILL."""
    group = process.pid  # its own session: the group id is its pid
    try:
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_GRACE_S
        while _group_alive(group, process) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _signal_group(group, signal.SIGKILL)
        process.wait()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(group, signum)


def _group_alive(group: int, process: subprocess.Popen[bytes]) -> bool:
    process.poll()  # reap the worker itself once it exits, so that it does not count as alive
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


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
    """Our phases from optimum-benchmark's report, in AI Energy Score's order, with counts attached.

    Decode goes through the decode rule every backend uses: energy_star reports decode as its generate window minus
    its prefill window, so the generate window is rebuilt as prefill + decode and split again by
    :func:`~pytest_aienergyscore.records.figures.derive_decode` (never clamped, flagged alike when negative).
    """
    gpu = device == "cuda"  # a GPU scope even where codecarbon saw no GPU: its guards then say why it is not valid
    reader = _EnergyReader(
        run.codecarbon,
        gpu_device=f"cuda:{device_ids}" if gpu else None,
        cpu_kind=cpu_energy_kind(run.result.get("codecarbon_hardware") or []),
        gpu=accept_codecarbon_gpu(run.result) if gpu else GpuAcceptance(),
    )
    counts = phase_counts(run.result, config, task)
    measured: dict[str, Measurement] = {}
    phases = []
    for key, (name, window) in REPORT_PHASES.items():
        energy = _energy_of(run.report, key)
        if energy is None:
            continue
        details: dict[str, Any] = {}
        if name == "decode":
            prefill = measured.get("prefill")
            if prefill is None or _energy_of(run.report, "prefill") is None:
                raise BackendError("optimum-benchmark reported a decode energy without the prefill it is split from")
            generate = reader.read("generate", _added(_energy_of(run.report, "prefill") or {}, energy), window)
            measured[name] = derive_decode(prefill, generate)
            details = split_details(prefill, generate)
        else:
            measured[name] = reader.read(name, energy, window, label="window" if window == key else None)
        samples, tokens, extra = counts.get(name, (None, None, {}))
        phases.append(Phase(name, measured[name], samples, tokens, repetition, {**details, **extra}))
    if not phases:
        raise BackendError("optimum-benchmark's report holds no energy for any phase (was energy tracking off?)")
    return _with_cross_check_warning(phases, run)


def _energy_of(report: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    entry = report.get(key)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("energy"), Mapping):
        return None
    return entry["energy"]


def _added(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two reported energies added scope by scope (same unit): energy_star's prefill + decode is its generate window."""
    added = {scope: float(first.get(scope) or 0.0) + float(second.get(scope) or 0.0) for scope in ENERGY_SCOPES}
    return {"unit": second.get("unit", "kWh"), **added}


def _with_cross_check_warning(phases: list[Phase], run: WorkerRun) -> list[Phase]:
    """A disagreement between codecarbon and our own reading is a warning of the run, kept once on its first phase
    (it concerns the whole worker, not one window); the windows stay valid."""
    warning = cross_check_warning(run.gpu_cross_check())
    if warning is None:
        return phases
    first = phases[0]
    measurement = replace(first.measurement, warnings=(*first.measurement.warnings, warning))
    return [replace(first, measurement=measurement), *phases[1:]]


@dataclass(frozen=True)
class _EnergyReader:
    """Reads one reported window's kWh into a Measurement, with this run's devices, kinds and GPU guards."""

    codecarbon: Mapping[str, Mapping[str, Any]]
    gpu_device: str | None
    cpu_kind: str
    gpu: GpuAcceptance

    def read(self, name: str, energy: Mapping[str, Any], window: str, label: str | None = None) -> Measurement:
        return read_energy(
            name,
            energy,
            self.codecarbon.get(window, {}),
            gpu_device=self.gpu_device,
            cpu_kind=self.cpu_kind,
            window_label=label or f"{window} window",
            gpu=self.gpu,
        )


def read_energy(
    name: str,
    energy: Mapping[str, Any],
    window: Mapping[str, Any],
    *,
    gpu_device: str | None,
    cpu_kind: str,
    window_label: str = "window",
    gpu: GpuAcceptance | None = None,
) -> Measurement:
    """One window's kWh per scope -> joules per device, as reported: never clamped. A window is invalid when a figure
    is negative (a single window is a counter delta or a power x time, never below zero) or when codecarbon's GPU
    figure fails a guard (:mod:`.optimum_gpu`)."""
    unit = str(energy.get("unit", "kWh"))
    if unit != "kWh":
        raise BackendError(f"optimum-benchmark reported {name} energy in {unit!r}; this version reads kWh")
    gpu = gpu or GpuAcceptance()
    scopes = [("gpu", gpu_device, "measured", gpu.meter)] if gpu_device else []
    scopes += [("cpu", "cpu", cpu_kind, "codecarbon"), ("ram", "ram", "estimate", "codecarbon")]
    devices = [
        DeviceEnergy(str(device), scope, float(energy.get(scope) or 0.0) * JOULES_PER_KWH, kind, meter)
        for scope, device, kind, meter in scopes
    ]
    duration = float(window.get("duration") or 0.0)
    problems = [
        f"optimum-benchmark reported a negative {d.scope} energy ({d.joules / JOULES_PER_KWH:.3g} kWh) for one "
        "window: not valid"
        for d in devices
        if d.joules < 0
    ]
    if gpu_device:
        problems = [*gpu.problems, *window_problems(devices[0].joules, duration), *problems]
    warnings = list(problems)
    confidence = _confidence(duration, warnings, window_label)
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
        valid=not problems,
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


def _timestamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def cpu_energy_kind(hardware: list[dict[str, Any]]) -> str:
    """measured when codecarbon read a CPU energy counter (RAPL...), else estimate (TDP x load, or TDP)."""
    modes = [item.get("mode") for item in hardware if item.get("class") == "CPU"]
    return "measured" if modes and all(mode in MEASURED_CPU_MODES for mode in modes) else "estimate"


# Our phase -> the worker's window whose work it reports (decode's work is the whole generation pass), and the work
# facts its details carry, under the names the pytorch backend uses: the parity tests compare them key for key.
WORK_WINDOWS: Mapping[str, str] = {"prefill": "prefill", "decode": "generate", "forward": "forward", "call": "call"}
WORK_KEYS: Mapping[str, tuple[str, ...]] = {
    "prefill": ("generate_calls", "new_tokens_per_sample"),
    "decode": ("generate_calls", "new_tokens_per_sample"),
    "forward": ("forward_calls",),
    "call": ("images", "image_size", "scheduler_steps"),
}


def total_new_tokens(histogram: Mapping[str, Any] | None) -> int | None:
    """The new tokens of a pass from its {"<new tokens>": samples} histogram; None when any count is unknown."""
    if not histogram:
        return None
    try:
        return sum(int(tokens) * int(samples) for tokens, samples in histogram.items())
    except (TypeError, ValueError):
        return None


def phase_counts(
    result: Mapping[str, Any], config: Mapping[str, Any], task: TaskSpec
) -> dict[str, tuple[int | None, int | None, dict[str, Any]]]:
    """Samples, tokens and work per phase, as the worker counted them while energy_star ran (never derived from the
    configuration: what was asked for is not evidence of what ran). Counted the way the pytorch backend counts, so
    records from both backends compare key for key; a run without the worker's work counts gives None."""
    input_tokens: int | None = result.get("input_tokens")
    work: Mapping[str, Any] = result.get("work") or {}
    scenario = config["scenario"]
    generate = dict(result.get("generate_kwargs") or scenario.get("generate_kwargs") or {})
    call = dict(result.get("call_kwargs") or scenario.get("call_kwargs") or {})
    counts: dict[str, tuple[int | None, int | None, dict[str, Any]]] = {
        "preprocess": (result.get("samples"), input_tokens, {}),
    }
    for name, window in WORK_WINDOWS.items():
        facts: Mapping[str, Any] = work.get(window) or {}
        samples: int | None = facts.get("samples")
        details: dict[str, Any] = {key: facts.get(key) for key in WORK_KEYS[name]}
        new = total_new_tokens(facts.get("new_tokens_per_sample"))
        tokens: int | None = input_tokens
        if name == "prefill":
            details.update(first_tokens=new, generate_kwargs=generate)
        elif name == "decode":
            # the first new token of each sample belongs to prefill (optimum-benchmark's own decode volume)
            tokens = max(new - samples, 0) if new is not None and samples is not None else None
            details.update(
                method="optimum-benchmark: generate pass minus prefill pass, both over the whole dataset",
                generated_tokens=new,
                generate_kwargs=generate,
            )
        elif name == "call":
            tokens = None
            details["call_kwargs"] = call
        counts[name] = (samples, tokens, details)
    return counts


# -- notes, metadata, attachments --------------------------------------------------------------------------------


def protocol_notes(task: TaskSpec, info: DatasetInfo, run: WorkerRun, protocol: Protocol) -> list[str]:
    """What a reader must know to read these figures: dataset, meter, and where the method differs."""
    notes = []
    if not info.official:
        notes.append(info.note or f"dataset {info.name} is not the official {task.dataset}")
    elif info.note:
        notes.append(info.note)
    notes.append(codecarbon_note(run.result.get("codecarbon_hardware") or [], run.codecarbon))
    check = run.gpu_cross_check()
    if check and check.get("skipped"):
        notes.append(f"codecarbon's GPU figure was not cross-checked: {check['skipped']}")
    if protocol.note:
        notes.append(protocol.note)
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
        **gpu_metadata(runs),
    }


def gpu_metadata(runs: list[WorkerRun]) -> dict[str, Any]:
    """For GPU runs: which GPU codecarbon tracked and which the model ran on (per run, by UUID), and both figures of
    the cross-check, codecarbon's windows and our own reading around the worker (one per repetition)."""
    if all(run.gpu_counter is None and not run.result.get("gpu") for run in runs):
        return {}
    return {
        "gpu": [run.result.get("gpu") for run in runs],
        "gpu_cross_check": [run.gpu_cross_check() for run in runs],
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
