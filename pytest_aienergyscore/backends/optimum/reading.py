"""Lenient readers of what the worker and the model folders leave on disk: a missing or torn file reads as empty.

The worker may die at any point, so none of its files can be trusted to exist or to be whole; reading them must never
turn a clear failure (the worker's own error line) into a traceback from here. The log's tail is what a reader needs
(the final exception), and a whole log of a long run is too big to attach.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LOG_FILE = "optimum.log"  # optimum-benchmark's output, written by the worker process into its run folder
LOG_TAIL_BYTES = 64 * 1024


def tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a log, saying how much was left out; empty when it cannot be read."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - limit, 0))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else f"[... first {size - limit} bytes left out ...]\n" + text


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is missing, torn or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
