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
from typing import Any

from .tasks import PROTOCOL_SAMPLES, TaskSpec

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
OFFLINE_SAMPLE_TASKS = {"text_generation": "text_generation", "reasoning": "text_generation"}
OFFLINE_SAMPLE_TASKS["sentence_similarity"] = "sentence_similarity"


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
        offline = OFFLINE_SAMPLE_TASKS.get(task.name)
        if offline is None:
            raise DatasetError(
                f"task {task.name}: {hub_error}; no offline sample set ships for this task, "
                "pass --energy-dataset PATH (jsonl, json, csv or parquet)"
            ) from None
        ref = resources.files("pytest_aienergyscore") / "data" / "samples" / f"{offline}.jsonl"
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
    if not path.is_file():
        raise DatasetError(f"--energy-dataset {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data.get("data", data) if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise DatasetError(f"--energy-dataset {path}: expected a list of objects (or {{'data': [...]}})")
            return rows
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_table(path).to_pylist())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise DatasetError(f"--energy-dataset {path}: cannot be read ({err})") from None
    raise DatasetError(f"--energy-dataset {path}: unsupported file type {suffix!r}; allowed: {LOCAL_SUFFIXES}")


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
    for row in rows:
        if len(samples) >= info.requested:
            break
        values = {role: row.get(col) for role, col in task.columns.items()}
        if any(_is_empty(v) for v in values.values()):
            info.dropped_empty += 1
            continue
        samples.append({role: _decode(role, value, base) for role, value in values.items()})
    if not samples:
        raise DatasetError(f"dataset {info.name} has no non-empty samples for task {task.name}")
    info.used = len(samples)
    if info.used < info.requested:
        extra = f"only {info.used} usable samples of the {info.requested} asked for"
        info.note = f"{info.note}; {extra}" if info.note else extra
    return samples, info


def _decode(role: str, value: Any, base: Path | None) -> Any:
    if role == "image":
        return load_image(value, base)
    if role == "audio":
        return load_audio(value, base)
    return value


def load_image(value: Any, base: Path | None = None) -> Any:
    """A PIL RGB image from a PIL image, a path (relative to the dataset file), or ``{"bytes"|"path": ...}``."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        value = value.get("path")
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        with Image.open(path) as img:
            return img.convert("RGB")
    raise DatasetError(f"cannot read an image from a value of type {type(value).__name__}")


def load_audio(value: Any, base: Path | None = None) -> dict[str, Any]:
    """``{"array": list[float], "sampling_rate": int}`` from that same shape or a path to a PCM WAV file."""
    if isinstance(value, dict) and "array" in value:
        return {"array": list(value["array"]), "sampling_rate": int(value.get("sampling_rate", 16000))}
    path_value = value.get("path") if isinstance(value, dict) else value
    if isinstance(path_value, str):
        path = Path(path_value)
        if not path.is_absolute() and base is not None:
            path = base / path
        return _read_wav(path)
    raise DatasetError(f"cannot read audio from a value of type {type(value).__name__}")


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
