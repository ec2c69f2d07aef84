"""AI Energy Score's model classes, and the one-GPU rule that goes with them.

The leaderboard compares text generation models only within a size class: A up to 20 billion parameters, B up to 66
billion, C above. The class is decided here from the parameter count, and the count is read without loading a single
weight: a safetensors file starts with a JSON header listing every tensor's shape, so the count is the sum of the
shapes' products, read in microseconds even for a 400 GB checkpoint. Where a model has no safetensors (old ``.bin``
checkpoints, a partial download), its ``config.json`` gives an estimate from the transformer's dimensions; the record
says which of the two it was. Where neither can be had (a model behind a vLLM endpoint), ``--energy-model-class``
says it.

The class also decides how many GPUs a benchmark may use: the leaderboard runs class A and B models on one GPU, so a
class A or B model metered on more than one is refused unless ``--energy-allow-multi-gpu`` (then it is not
comparable). Only the standard library is imported here.
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

MODEL_CLASSES = ("A", "B", "C")
CLASS_A_MAX = 20_000_000_000
CLASS_B_MAX = 66_000_000_000
# A safetensors header is a few MB at most; anything larger is not a safetensors file.
_MAX_HEADER_BYTES = 100 * 2**20

SOURCE_SAFETENSORS = "safetensors headers"
SOURCE_CONFIG = "config.json estimate"
SOURCE_LOADED = "loaded model"
SOURCE_OPTION = "--energy-model-class"


class MultiGpuRefused(ValueError):
    """A class A or B model metered on more than one GPU, without ``--energy-allow-multi-gpu``."""


@dataclass(frozen=True)
class ModelSize:
    """What is known of a model's size: its parameter count and class, and where each came from."""

    parameters: int | None = None
    parameters_source: str | None = None
    model_class: str | None = None
    class_source: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)


def classify(parameters: int) -> str:
    """A (<= 20B parameters), B (<= 66B) or C (above): AI Energy Score's table."""
    if parameters <= CLASS_A_MAX:
        return "A"
    return "B" if parameters <= CLASS_B_MAX else "C"


# -- counting from files ---------------------------------------------------------------------------------------------


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


def quantization_config(folder: Path) -> dict[str, Any]:
    """``quantization_config`` from a folder's config.json ({} for an unquantised model or no config)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = config.get("quantization_config") if isinstance(config, dict) else None
    return dict(found) if isinstance(found, dict) else {}


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
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        estimated = estimate_from_config(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return (estimated, SOURCE_CONFIG) if estimated else None


# -- finding the model's files -------------------------------------------------------------------------------------


def local_model_folder(model: str) -> Path | None:
    """A folder holding the model's files: the path itself, or a Hub id's snapshot in the local Hugging Face cache.

    Never downloads: the class must be decided before a long benchmark starts, also offline.
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


# -- deciding ------------------------------------------------------------------------------------------------------


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


def gpus_in(meter_info: Mapping[str, Any]) -> int:
    """How many GPUs a benchmark is metered on: the GPU devices of the meter (``--energy-gpus`` under NVML)."""
    return sum(1 for device in meter_info.get("devices", ()) if device.get("scope") == "gpu")


def check_gpu_count(model_class: str | None, gpus: int, allow_multi_gpu: bool, server: str | None = None) -> bool:
    """Apply the one-GPU rule for class A and B models; True when ``--energy-allow-multi-gpu`` let a run through.

    Raises :class:`MultiGpuRefused` otherwise, because a class A or B result on several GPUs would sit among the
    leaderboard's single-GPU results without anyone noticing the difference. ``server`` names a local server whose
    GPUs are counted: the fix is then to serve the model on one GPU, which no option of ours can do.
    """
    if gpus <= 1 or model_class not in ("A", "B"):
        return False
    if allow_multi_gpu:
        return True
    counted = (
        f"{server} runs on {gpus} GPUs; serve the model on one GPU"
        if server
        else f"{gpus} GPUs are metered; use --energy-gpus with one GPU"
    )
    raise MultiGpuRefused(
        f"class {model_class} models are benchmarked on one GPU (AI Energy Score's rule), but {counted}, "
        "or --energy-allow-multi-gpu to run anyway (the result is then not comparable)"
    )
