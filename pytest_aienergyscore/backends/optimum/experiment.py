"""What optimum-benchmark is told to run: its energy_star configuration, generated from our protocol table.

AI Energy Score's ``energy_star/*.yaml`` files are not shipped with the registry package, so the configuration is
built here from the same table the other backends read (dataset, columns, samples, batch size 1, generation kwargs,
warm-up), with the test's model, processor, device and overrides. Everything in this module is decided before the
worker starts: the model as optimum-benchmark should load it, the device ids it understands, and the samples in the
only forms its ``load_dataset`` call accepts (a Hub id, or a one-file local folder).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.base import BackendError, LoadRequest
from pytest_aienergyscore.backends.optimum.reading import read_json
from pytest_aienergyscore.rules.datasets import DatasetInfo
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

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
DATASET_ATTACHMENT = "optimum_dataset_train.jsonl"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.msgpack", "*.h5", "*.onnx", "*.ckpt")


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


# -- model, device, dtype ---------------------------------------------------------------------------------------


def resolve_model(request: LoadRequest) -> ResolvedModel:
    """Like the pytorch backend: a local folder, an offline package's model, or a cached Hub id (else skip)."""
    from pytest_aienergyscore.backends.models import check_architecture, resolve_model_path

    path = resolve_model_path(request.model)
    processor = resolve_model_path(request.processor) if request.processor else path
    folder = Path(path)
    if not folder.is_dir():  # a Hub id optimum-benchmark may download itself (the Hub is reachable)
        return ResolvedModel(path, processor, None, None)
    if (folder / "model_index.json").is_file():
        return ResolvedModel(path, processor, "diffusers", None)
    config = read_json(folder / "config.json")
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
    if not any(v4_tokenizer_config(read_json(c)) != read_json(c) for c in configs):
        return path, False
    shutil.copytree(folder, scratch, ignore=shutil.ignore_patterns(*WEIGHT_PATTERNS), dirs_exist_ok=True)
    for config_file in scratch.rglob(TOKENIZER_CONFIG):
        fixed = v4_tokenizer_config(read_json(config_file))
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
    from pytest_aienergyscore.backends.models import pick_dtype

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
