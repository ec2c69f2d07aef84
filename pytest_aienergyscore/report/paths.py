"""Folder names derived from task and model that are safe on every filesystem and never overwrite an earlier run."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
MAX_PART = 80


def safe_part(text: str | None, fallback: str = "unknown") -> str:
    """One path component: ASCII letters, digits, ``.``, ``_`` and ``-`` only; no leading dots; never empty."""
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    part = _UNSAFE.sub("_", ascii_text.replace("/", "--")).strip("._-")[:MAX_PART].strip("._-")
    if not part or part.lower() in _RESERVED:
        part = f"{fallback}_{part}" if part else fallback
    return part


def run_folder_name(task: str | None, model: str | None, backend: str | None) -> str:
    return "__".join((safe_part(task, "task"), safe_part(model, "model"), safe_part(backend, "backend")))


def unique_child(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken (also by a zip of that name). Created atomically."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = parent / (name if n == 1 else f"{name}-{n}")
        if candidate.with_name(candidate.name + ".zip").exists():
            continue
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"no free folder name for {name} under {parent}")
