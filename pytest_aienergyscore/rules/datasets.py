"""A task's samples: the official dataset (Hub, or its local cache), a local file, or our own offline sample set.

Why the care: a result is only meaningful with its data stated. Every load returns a :class:`DatasetInfo` that says
where the samples came from, whether that is the official AI Energy Score dataset, how many were asked for, found,
dropped as empty, and used. Loading is not metered; preprocessing (tokenising, feature extraction) is, by the runner.
Images are decoded to PIL and audio to float arrays here, so the metered phases see only the model's own work.
"""

from __future__ import annotations

import csv
import io
import json
import os
import wave
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.rules.quality import reference_values
from pytest_aienergyscore.rules.tasks import PROTOCOL_SAMPLES, TaskSpec

if TYPE_CHECKING:  # importlib.resources.abc is new in Python 3.11
    from importlib.resources.abc import Traversable

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DatasetError(ValueError):
    """A dataset that cannot be used for a task; the message names it and says what is wrong in one line."""


@dataclass
class DatasetInfo:
    """Where a benchmark's samples came from and what happened to them on the way in."""

    name: str
    source: str
    official: bool
    requested: int
    available: int = 0
    dropped_empty: int = 0
    used: int = 0
    truncated: int = 0
    note: str = ""
    columns: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_samples(
    task: TaskSpec, dataset: str | None = None, num_samples: int | None = None
) -> tuple[list[dict[str, Any]], DatasetInfo]:
    """Samples for ``task`` (columns renamed to the task's roles) and the facts about them."""
    requested = num_samples or PROTOCOL_SAMPLES
    if num_samples is not None and num_samples < 1:
        raise DatasetError(f"--energy-samples {num_samples}: must be a whole number >= 1")
    if dataset:
        path = Path(dataset).expanduser()
        if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
            rows, base = _read_local(path), path.parent
            info = DatasetInfo(str(path), "local file", False, requested)
        else:
            rows, base = _read_hub(dataset), None
            info = DatasetInfo(dataset, "hub", dataset == task.dataset, requested)
    else:
        rows, base, info = _official_or_offline(task, requested)
    return _select(task, rows, base, info)


def _official_or_offline(task: TaskSpec, requested: int) -> tuple[list[dict[str, Any]], Path | None, DatasetInfo]:
    try:
        rows = _read_hub(task.dataset)
        return rows, None, DatasetInfo(task.dataset, "hub", True, requested)
    except DatasetError as hub_error:
        offline = offline_sample_set(task)
        if offline is None:
            raise DatasetError(
                f"task {task.name}: {hub_error}; no offline sample set ships for this task, "
                "pass --energy-dataset PATH (jsonl, json, csv or parquet)"
            ) from None
        ref = _samples_folder() / f"{offline}.jsonl"
        rows = [json.loads(line) for line in ref.read_text(encoding="utf-8").splitlines() if line.strip()]
        info = DatasetInfo(
            f"pytest-aienergyscore offline samples ({offline}.jsonl)",
            "offline samples",
            False,
            requested,
            note=f"the official dataset {task.dataset} could not be had ({hub_error}); "
            "used this project's own offline sample set instead: not comparable with the leaderboard",
        )
        return rows, None, info


def _samples_folder() -> Traversable:
    return resources.files("pytest_aienergyscore") / "data" / "samples"


def offline_sample_set(task: TaskSpec) -> str | None:
    """The name of our offline sample set for a task (its file without ``.jsonl``), None when none ships.

    A set stands in for one official dataset and is named after it (``AIEnergyScore/text_generation`` ->
    ``text_generation.jsonl``), so every task reading that dataset (text generation and reasoning) shares it, and
    no list of task names is kept here beside the task table.
    """
    name = task.dataset.rsplit("/", 1)[-1]
    return name if (_samples_folder() / f"{name}.jsonl").is_file() else None


def _read_hub(name: str) -> list[dict[str, Any]]:
    """A Hub dataset through ``datasets`` (from its cache when offline). Fails fast when it cannot be had."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"dataset {name!r}: the 'datasets' package is not installed") from None
    try:
        loaded = datasets.load_dataset(name, split="train")
    except Exception as err:  # offline, unknown id, gated: all one story for the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        where = "not in the local cache and the Hub is offline" if offline else reason[:200]
        raise DatasetError(f"dataset {name!r} cannot be loaded: {where}") from None
    return [dict(row) for row in loaded]


def _read_local(path: Path) -> list[dict[str, Any]]:
    """The rows of a local file, each checked to be an object; one line naming the file (and row) for anything
    that cannot be read, so a bad file never shows as a traceback."""
    if not path.is_file():
        raise DatasetError(f"--energy-dataset {path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DatasetError(f"--energy-dataset {path}: unsupported file type {suffix!r}; allowed: {LOCAL_SUFFIXES}")
    try:
        rows = _LOCAL_READERS[suffix](path)
    except DatasetError:
        raise
    except RecursionError:
        raise DatasetError(f"--energy-dataset {path}: cannot be read (JSON nested too deeply)") from None
    except csv.Error as err:
        raise DatasetError(
            f"--energy-dataset {path}: cannot be read as CSV ({err}); a text longer than "
            f"{csv.field_size_limit()} characters needs jsonl or parquet"
        ) from None
    except (ValueError, OSError, EOFError) as err:  # JSON, UTF-8, a truncated parquet (pyarrow's are ValueErrors)
        raise DatasetError(f"--energy-dataset {path}: cannot be read ({_first_line(err)})") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DatasetError(
                f"--energy-dataset {path}: row {number} is a {type(row).__name__}, not an object of column -> value"
            )
    return rows


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DatasetError(f"--energy-dataset {path}: line {number} is not JSON ({err})") from None
    return rows


def _read_json(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DatasetError(f"--energy-dataset {path}: expected a list of objects (or {{'data': [...]}})")
    return rows


def _read_csv(path: Path) -> list[Any]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    return list(pq.read_table(path).to_pylist())


_LOCAL_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, bytes)):
        return len(value) == 0
    return False


def _select(
    task: TaskSpec, rows: list[dict[str, Any]], base: Path | None, info: DatasetInfo
) -> tuple[list[dict[str, Any]], DatasetInfo]:
    info.available = len(rows)
    info.columns = dict(task.columns)
    if not rows:
        raise DatasetError(f"dataset {info.name} is empty")
    present = set(rows[0])
    missing = [col for col in task.columns.values() if col not in present]
    if missing:
        raise DatasetError(
            f"dataset {info.name} lacks the column(s) {', '.join(missing)} that task {task.name} needs "
            f"(it has: {', '.join(sorted(map(str, present))) or 'none'})"
        )
    samples: list[dict[str, Any]] = []
    for number, row in enumerate(rows, 1):
        if len(samples) >= info.requested:
            break
        values = {role: row.get(col) for role, col in task.columns.items()}
        if any(_is_empty(v) for v in values.values()):
            info.dropped_empty += 1
            continue
        try:
            sample = {role: _decode(role, value, base) for role, value in values.items()}
        except DatasetError as err:
            raise DatasetError(f"dataset {info.name} row {number}, column {err}") from None
        # References (labels, answers, gold scores) ride along for the quality metrics, read after the phases.
        samples.append({**reference_values(task.name, row, task.columns), **sample})
    if not samples:
        raise DatasetError(f"dataset {info.name} has no non-empty samples for task {task.name}")
    info.used = len(samples)
    if info.used < info.requested:
        extra = f"only {info.used} usable samples of the {info.requested} asked for"
        info.note = f"{info.note}; {extra}" if info.note else extra
    return samples, info


def _decode(role: str, value: Any, base: Path | None) -> Any:
    """A sample's value as the model takes it; DatasetError (its message starting with the column) otherwise."""
    try:
        if role == "image":
            return load_image(value, base)
        if role == "audio":
            return load_audio(value, base)
    except DatasetError as err:
        raise DatasetError(f"{role!r}: {err}") from None
    if not isinstance(value, str):
        raise DatasetError(f"{role!r}: holds a value of type {type(value).__name__}, not text")
    return value


def load_image(value: Any, base: Path | None = None) -> Any:
    """A PIL RGB image from a PIL image, a path (relative to the dataset file), or ``{"bytes"|"path": ...}``."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        data = value.get("bytes")
        if isinstance(data, (bytes, bytearray)) and data:
            return _open_image(io.BytesIO(data), "the image bytes")
        value = value.get("path")
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        return _open_image(path, str(path))
    raise DatasetError(f"cannot read an image from a value of type {type(value).__name__}")


def _open_image(source: Any, shown: str) -> Any:
    """A decoded RGB image, or one line naming the file: missing, not an image, damaged, or a decompression bomb."""
    from PIL import Image

    try:
        with Image.open(source) as img:
            return img.convert("RGB")
    except (OSError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read an image from {shown} ({_first_line(err)})") from None


def load_audio(value: Any, base: Path | None = None) -> dict[str, Any]:
    """``{"array": list[float], "sampling_rate": int}`` from that same shape or a path to a PCM WAV file."""
    if isinstance(value, dict) and "array" in value:
        try:
            return {"array": list(value["array"]), "sampling_rate": int(value.get("sampling_rate", 16000))}
        except (TypeError, ValueError) as err:
            raise DatasetError(f"cannot read audio from {{'array': ...}} ({_first_line(err)})") from None
    if hasattr(value, "get_all_samples"):  # datasets 4 and later decode audio to a torchcodec AudioDecoder
        return _decoded_audio(value)
    path_value = value.get("path") if isinstance(value, dict) else value
    if isinstance(path_value, str):
        path = Path(path_value)
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            return _read_wav(path)
        except DatasetError:
            raise
        except (OSError, EOFError, wave.Error, ValueError) as err:
            raise DatasetError(f"cannot read audio from {path} ({_first_line(err)})") from None
    raise DatasetError(f"cannot read audio from a value of type {type(value).__name__}")


def _decoded_audio(decoder: Any) -> dict[str, Any]:
    """The same shape from a decoder object (torchcodec's ``AudioDecoder``): all samples, channels averaged."""
    try:
        samples = decoder.get_all_samples()
        data = samples.data  # channels x frames
        mono = data.mean(0) if len(data.shape) > 1 and data.shape[0] > 1 else data.reshape(-1)
        return {"array": [float(x) for x in mono.tolist()], "sampling_rate": int(samples.sample_rate)}
    except (AttributeError, RuntimeError, ValueError, TypeError) as err:
        raise DatasetError(f"cannot decode audio from {type(decoder).__name__}: {err}") from None


def _read_wav(path: Path) -> dict[str, Any]:
    import numpy as np

    with wave.open(str(path), "rb") as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    if width != 2:
        raise DatasetError(f"{path}: only 16-bit PCM WAV is supported (sample width {width} bytes)")
    data = np.frombuffer(frames, dtype="<i2").astype("float32") / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return {"array": data.tolist(), "sampling_rate": rate}
