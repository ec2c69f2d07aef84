"""Writing result files so that nobody ever finds half of one.

Every file is written under a temporary name in its own folder (``.NAME.tmp-PID``) and renamed over ``NAME`` only once
it is whole, so a full disk, a Ctrl-C or a killed process leaves the old file or the new one, never a torn or
empty one. A write that fails removes its temporary file and raises :class:`WriteFailed`, whose message is one line
naming the file and the reason. Whole folders are built the same way (see ``files.RunFolders``).

``durable=True`` also syncs the data to the disk before the rename: for files that are the only copy of what they
hold (a baseline). Run folders, archives and summaries are rebuilt from ``records.jsonl`` (synced at every append)
by ``aienergyscore report``, so they skip the sync: at a few milliseconds a file it would cost a large session more
than everything else its end does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"
_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")


class WriteFailed(OSError):
    """A result file that could not be written, as one line naming it; the disk holds what it held before."""

    def __init__(self, path: Path, err: BaseException) -> None:
        reason = (err.strerror or str(err)) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
        super().__init__(err.errno if isinstance(err, OSError) else None, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def temporary(path: Path) -> Path:
    """The temporary name ``path`` is written under: hidden, in the same folder (so the rename cannot cross disks),
    and carrying this process's id so that a later run knows whether its writer is still alive."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` (relative to the folder searched) is, or lies inside, something still being written or left
    by a writer that died: readers of a results folder skip those."""
    return any(_TEMPORARY.match(part) for part in path.parts)


@dataclass
class Writing:
    """What a block under :func:`writing` is writing now (a folder's writer moves it file by file), for the error."""

    path: Path


@contextmanager
def writing(path: Path, tmp: Path) -> Iterator[Writing]:
    """Around the writing of ``tmp`` (renamed over ``path`` inside the block): whatever the block raises, the
    temporary is removed, and an OSError becomes one :class:`WriteFailed` line naming what was being written."""
    current = Writing(path)
    try:
        yield current
    except BaseException as err:
        discard(tmp)
        if isinstance(err, OSError):
            raise WriteFailed(current.path, err) from None
        raise


def write_bytes(path: Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` whole or not at all."""
    tmp = temporary(path)
    with writing(path, tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    return path


def write_text(path: Path, text: str, durable: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable)


def json_bytes(data: Any) -> bytes:
    """Our JSON files' one format: indented, in the order given, anything unknown as its string, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


def write_json(path: Path, data: Any, durable: bool = False) -> Path:
    return write_bytes(path, json_bytes(data), durable)


def write_if_changed(path: Path, data: bytes, durable: bool = False) -> bool:
    """Write ``data`` unless ``path`` already holds exactly it; True when written. Keeps a rewrite of the same
    results from touching files (their times, a sync tool's idea of what changed)."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass  # absent or unreadable: written below, or the write says why
    write_bytes(path, data, durable)
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Remove what dead writers left in ``folder`` (their temporary files and folders); returns what was removed.
    A writer that is still running (another ``aienergyscore report`` on the same folder) keeps its own."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = _TEMPORARY.match(entry.name)
        if found and not _alive(int(found.group(1))):
            discard(entry)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one thing at a time: anything of ours still here was abandoned
    if os.name == "nt":  # signal 0 is not a probe on Windows: keep what may still be in use
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def discard(path: Path) -> None:
    """Remove a temporary file or folder; a failure here must not hide the error that led to it."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return
