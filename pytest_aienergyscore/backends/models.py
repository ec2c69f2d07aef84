"""A model's files, read the one way every backend reads them: where they are, what they hold, how large the model is.

Each backend loads a model differently (in this process, in optimum-benchmark's environment, behind a server), but
all must agree on which folder a model id means, whether an architecture can do a task, which dtype a task runs in
and how many parameters the model has: the record compares backends on exactly these facts. So they are read here,
once. Nothing here loads a weight: a safetensors file starts with a JSON header listing every tensor's shape, so the
parameter count is the sum of the shapes' products, read in microseconds even for a 400 GB checkpoint. Where a model
has no safetensors (old ``.bin`` checkpoints, a partial download), its ``config.json`` gives an estimate from the
transformer's dimensions; the record says which of the two it was. The class rule itself (A, B, C and the one-GPU
rule) is AI Energy Score's and lives in :mod:`pytest_aienergyscore.rules.model_class`.

Only the standard library at module level: the runner imports this before every benchmark, and the heavy libraries
(huggingface_hub, transformers, torch) are needed only by the functions that use them.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends import offline_models
from pytest_aienergyscore.backends.base import BackendError, ModelUnavailable
from pytest_aienergyscore.rules.model_class import classify
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

SOURCE_SAFETENSORS = "safetensors headers"
SOURCE_CONFIG = "config.json estimate"
SOURCE_LOADED = "loaded model"
SOURCE_OPTION = "--energy-model-class"

# A safetensors header is a few MB at most; anything larger is not a safetensors file.
_MAX_HEADER_BYTES = 100 * 2**20

# Which transformers architectures may serve a task: the auto-mapping names in transformers.models.auto.
ARCHITECTURE_MAPPINGS = {
    "text_generation": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "reasoning": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "summarization": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",),
    "question_answering": ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",),
    "text_classification": ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",),
    "image_classification": ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",),
    "object_detection": ("MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",),
    "automatic_speech_recognition": ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",),
    "image_captioning": ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES"),
}


@dataclass(frozen=True)
class ModelSize:
    """What is known of a model's size: its parameter count and class, and where each came from."""

    parameters: int | None = None
    parameters_source: str | None = None
    model_class: str | None = None
    class_source: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)


# -- finding the model's files ---------------------------------------------------------------------------------------


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it: only then may an offline stand-in replace a Hub model."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def local_model_folder(model: str) -> Path | None:
    """A folder holding the model's files: the path itself, or a Hub id's snapshot in the local Hugging Face cache.

    Never downloads: the class must be decided before a long benchmark starts, also offline, and a backend must
    load the same files the class was read from.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached, hub library missing, offline: the caller falls back
        return _scan_hub_cache(model)


def _scan_hub_cache(model: str) -> Path | None:
    """The newest snapshot of ``model`` in the Hub cache layout, when huggingface_hub cannot say (not installed)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    cache = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = cache / f"models--{model.replace('/', '--')}" / "snapshots"
    folders = sorted(snapshots.glob("*/"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return folders[-1] if folders else None


def resolve_model_path(model: str) -> str:
    """A local folder; a Hub id's snapshot in the local cache; the Hub id itself while the Hub can be reached; and
    only when it cannot (``HF_HUB_OFFLINE``), a stand-in shipped by an offline package (see
    :func:`substitute_facts`). The folder is found by :func:`local_model_folder`, the same rule the model's class is
    read by, so the class always describes the files that are loaded."""
    local = local_model_folder(model)
    if local is not None:
        return str(local)
    if not hub_offline():
        return model
    try:
        offline = offline_models.resolve_offline_model(model)
    except offline_models.ModelUnavailable as err:
        raise ModelUnavailable(str(err)) from None
    if offline is not None:
        return str(offline)
    raise ModelUnavailable(
        f"model {model!r} cannot be had here: not a local folder, not shipped by an offline model package, "
        "not in the Hugging Face cache, and the Hub is offline (HF_HUB_OFFLINE=1)"
    )


def substitute_facts(model: str, path: str) -> dict[str, Any]:
    """Facts for the record when ``path`` is an offline stand-in for ``model`` rather than the model's own files."""
    if Path(model).expanduser().is_dir() or path == model:
        return {}
    found = offline_models.substitute_for(model)
    if found is None:
        return {}
    note, comparable = found
    return {"substitute": {"note": note, "comparable": comparable}, "notes": [f"offline stand-in: {note}"]}


# -- what the config says --------------------------------------------------------------------------------------------


def read_config(folder: str | Path | None) -> dict[str, Any]:
    """A folder's ``config.json`` as a mapping; {} when there is none or it is not a JSON object, so that a model
    without a readable config is simply one whose facts are unknown, never a traceback."""
    if not folder:
        return {}
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def local_model_type(path: str | None) -> str | None:
    """``model_type`` from a local folder's config.json: it picks T5-family protocols. None when it cannot be read."""
    value = read_config(path).get("model_type")
    return str(value) if value else None


def quantization_config(folder: Path) -> dict[str, Any]:
    """``quantization_config`` from a folder's config.json ({} for an unquantised model or no config)."""
    found = read_config(folder).get("quantization_config")
    return dict(found) if isinstance(found, dict) else {}


def check_architecture(protocol: Protocol, model: str, path: str) -> None:
    """Refuse a model that is not for the protocol's work, before loading it with a randomly initialised head: the
    task's architectures, or a seq2seq one where the protocol is text2text generation (the T5 configs)."""
    task = protocol.task
    text2text = protocol.optimum_task == "text2text-generation"
    names = ARCHITECTURE_MAPPINGS["summarization"] if text2text else ARCHITECTURE_MAPPINGS.get(task)
    architectures = [str(name) for name in read_config(path).get("architectures") or []]
    if not names or not architectures:
        return
    from transformers.models.auto import modeling_auto

    allowed: set[str] = set()
    for name in names:
        for value in getattr(modeling_auto, name, {}).values():
            allowed.update(value if isinstance(value, (tuple, list)) else (value,))
    if not allowed.intersection(architectures):
        raise BackendError(
            f"model {model!r} ({', '.join(architectures)}) is not a {task} model; "
            f"{task} needs an architecture such as {sorted(allowed)[0]}"
        )


def pick_dtype(task: TaskSpec, device: str) -> Any:
    """fp32, except text generation in bf16 (fp16 without bf16 support) on a GPU: AI Energy Score's precision, the
    same for the backend that loads the model here and for the one that hands optimum-benchmark a dtype name."""
    import torch

    if task.half_precision and device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# -- counting parameters from files ----------------------------------------------------------------------------------


# Quantised checkpoints store several values in one element, plus scales that are not parameters. Without unpacking,
# gpt-oss-20b's MXFP4 experts (two 4-bit values a byte) count as about 12B and a class B model reads as class A.
_AUXILIARY_SUFFIXES = (
    "_scales",  # MXFP4 block scales (gpt-oss)
    ".absmax",
    ".quant_map",
    ".nested_absmax",
    ".nested_quant_map",
    "quant_state.bitsandbytes__nf4",
    "quant_state.bitsandbytes__fp4",  # bitsandbytes 4-bit state
    ".qzeros",
    ".scales",
    ".g_idx",  # GPTQ / AWQ
    ".weight_scale",
    ".input_scale",
    ".weight_zero_point",  # FP8 / compressed-tensors
)


def _values_per_element(name: str, dtype: str, quantization: Mapping[str, Any]) -> int:
    """How many model parameters one stored element holds: 2 for 4-bit values packed in bytes, 32/bits for GPTQ's
    and AWQ's int32 ``qweight``, 0 for scales and other quantisation state, else 1."""
    if name.endswith(_AUXILIARY_SUFFIXES):
        return 0 if quantization else 1
    method = str(quantization.get("quant_method", "")).lower()
    bits = int(quantization.get("bits") or quantization.get("w_bit") or 4)
    if dtype == "U8" and (name.endswith("_blocks") or method == "mxfp4"):
        return 2
    if dtype == "U8" and method == "bitsandbytes" and quantization.get("load_in_4bit"):
        return 2
    if dtype == "I32" and name.endswith("qweight"):
        return 32 // bits
    return 1


def safetensors_parameters(path: Path, quantization: Mapping[str, Any] | None = None) -> int:
    """Parameters stored in one safetensors file, from its JSON header only, packed quantised values unpacked."""
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (size,) = struct.unpack("<Q", prefix)
        if size > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: header of {size} bytes, not a safetensors file")
        header = json.loads(fh.read(size))
    quant = quantization or {}
    return sum(
        math.prod(entry["shape"]) * _values_per_element(name, str(entry.get("dtype", "")), quant)
        for name, entry in header.items()
        if name != "__metadata__"
    )


def _safetensors_files(folder: Path) -> list[Path]:
    """The weight files of one model folder: the shards an index names, else every top-level safetensors file."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(folder.glob("*.safetensors"))


def _component_folders(folder: Path) -> list[Path]:
    """A diffusers pipeline keeps each component's weights in its own sub-folder; other models use the folder."""
    index = folder / "model_index.json"
    if not index.is_file():
        return [folder]
    components = json.loads(index.read_text(encoding="utf-8"))
    return [folder / name for name, value in components.items() if isinstance(value, list) and (folder / name).is_dir()]


def count_from_safetensors(folder: Path) -> int | None:
    """Parameters from the headers of every weight file, or None when a file is missing or unreadable."""
    files = [f for component in _component_folders(folder) for f in _safetensors_files(component)]
    if not files:
        return None
    try:
        return sum(safetensors_parameters(f, quantization_config(f.parent)) for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _first(config: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = config.get(name)
        if value is not None:
            return value
    return None


def estimate_from_config(config: Mapping[str, Any]) -> int | None:
    """A decoder transformer's parameters from its dimensions: embeddings, attention, MLP (gated, mixture of experts).

    Good to a few percent for the Llama/Mistral/Qwen/GPT families, which is all a class boundary at 20B or 66B needs.
    Returns None when the config lacks the dimensions (not a transformer language model).
    """
    nested = config.get("text_config")
    text: Mapping[str, Any] = nested if isinstance(nested, Mapping) else config
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    layers = _first(text, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _first(text, "vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (hidden, layers, vocab)):
        return None
    heads = _first(text, "num_attention_heads", "n_head") or 1
    kv_heads = _first(text, "num_key_value_heads") or heads
    head_dim = _first(text, "head_dim") or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    intermediate = _first(text, "moe_intermediate_size", "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    gated = str(text.get("hidden_act", "")).lower() in ("silu", "swiglu", "gelu_pytorch_tanh", "geglu")
    mlp = (3 if gated else 2) * hidden * intermediate
    experts = _first(text, "num_local_experts", "num_experts", "n_routed_experts") or 1
    shared = _first(text, "n_shared_experts", "num_shared_experts") or 0
    embeddings = vocab * hidden * (1 if text.get("tie_word_embeddings", True) else 2)
    return int(embeddings + layers * (attention + mlp * (experts + shared)))


def count_parameters(folder: Path) -> tuple[int, str] | None:
    """(parameters, how they were counted) for a local model folder, without loading weights; None if unknowable."""
    counted = count_from_safetensors(folder)
    if counted:
        return counted, SOURCE_SAFETENSORS
    estimated = estimate_from_config(read_config(folder))
    return (estimated, SOURCE_CONFIG) if estimated else None


# -- the size, for the class rule ------------------------------------------------------------------------------------


def model_size(candidates: Iterable[str | None], override: str | None = None, loaded: int | None = None) -> ModelSize:
    """The size of a model, from the first candidate (model id or folder) whose files tell it.

    ``override`` (``--energy-model-class``) decides the class whatever the count says, since it exists for the cases
    where the count is wrong or missing; ``loaded`` is the parameter count of a model a backend already loaded, used
    only when no file tells.
    """
    counted: tuple[int, str] | None = None
    for candidate in candidates:
        folder = local_model_folder(candidate) if candidate else None
        counted = count_parameters(folder) if folder is not None else None
        if counted:
            break
    if counted is None and loaded:
        counted = (int(loaded), SOURCE_LOADED)
    parameters, source = counted if counted else (None, None)
    if override:
        return ModelSize(parameters, source, override.strip().upper(), SOURCE_OPTION)
    if parameters is None:
        return ModelSize()
    return ModelSize(parameters, source, classify(parameters), f"{parameters:,} parameters ({source})")
