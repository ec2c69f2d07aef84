"""The append-only JSONL store that keeps every :class:`~.records.record.Record` safe the moment its test ends.

A record is appended and flushed to disk at once, so a crash or Ctrl-C later in the session loses nothing already
measured; the session's files are written from this store. Reading skips torn or damaged lines and keeps every
intact record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pytest_aienergyscore.records.record import Record

RECORDS_FILE = "records.jsonl"  # a session folder's store: written as each test ends, read by every reader of one


def record_line(record: Record, data: dict[str, Any] | None = None) -> str:
    """A record as the store keeps it: one line of JSON with sorted keys, so that the same record is always the
    same line, whether it comes from memory or back from the store (its hash names it in its run folder).
    ``data``: the record's :meth:`Record.to_dict`, when the caller has it already."""
    return json.dumps(record.to_dict() if data is None else data, sort_keys=True, default=str)


def record_sha256(record: Record, data: dict[str, Any] | None = None) -> str:
    return hashlib.sha256(record_line(record, data).encode("utf-8")).hexdigest()


class RecordStore:
    """Append-only JSONL file of records: one line per finished benchmark, flushed and synced at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Record) -> None:
        """Add one record durably. A failed append (a full disk) cuts the file back to what it was before raising,
        so no torn line is left for the next record to be glued to; a line torn earlier (a crash mid-write) is
        closed first, so this record starts a line of its own."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (record_line(record) + "\n").encode("utf-8")
        with open(self.path, "a+b", buffering=0) as fh:  # unbuffered: nothing is left to flush after a failure
            size = fh.seek(0, os.SEEK_END)
            if size and _last_byte(fh, size) != b"\n":
                data = b"\n" + data
            try:
                _write_all(fh, data)
                os.fsync(fh.fileno())
            except OSError:
                _cut_back(fh, size)
                raise

    def __iter__(self) -> Iterator[Record]:
        return iter(load_records(self.path))


def _last_byte(fh: BinaryIO, size: int) -> bytes:
    fh.seek(size - 1)
    return fh.read(1)


def _write_all(fh: BinaryIO, data: bytes) -> None:
    """An unbuffered write may take part of the data (a disk filling up): keep writing until all is in or it fails."""
    view = memoryview(data)
    while view:
        written = fh.write(view) or 0
        view = view[written:]


def _cut_back(fh: BinaryIO, size: int) -> None:
    try:
        os.ftruncate(fh.fileno(), size)
    except OSError:
        return  # the reader skips a torn line all the same


def read_store(path: Path) -> tuple[list[Record], list[str]]:
    """Every intact record of a JSONL store, and one line per line of the file that was not a record.

    A torn line (a crash or a full disk mid-write) or a damaged one costs only itself, never the records around it;
    where an older writer glued the next record onto a torn one, that whole record is kept.
    """
    if not path.exists():
        return [], []
    records: list[Record] = []
    skipped: list[str] = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            records.append(_parse(raw.decode("utf-8")))
            continue
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as err:
            problem = str(err).splitlines()[0][:120]
        whole = _whole_record_after_torn_one(raw)
        if whole is not None:
            records.append(whole)
            skipped.append(f"{path}:{number}: the start of a torn record was skipped, the record after it kept")
        else:
            skipped.append(f"{path}:{number}: not a whole record, skipped ({problem})")
    return records, skipped


def _parse(line: str) -> Record:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    return Record.from_dict(data)


def _whole_record_after_torn_one(raw: bytes) -> Record | None:
    """The record that starts inside a damaged line and runs to its end, if there is one."""
    text = raw.decode("utf-8", "replace")
    start = text.find('{"', 1)
    while start != -1:
        try:
            return _parse(text[start:])
        except (ValueError, TypeError, KeyError, AttributeError):
            start = text.find('{"', start + 1)
    return None


def load_records(path: Path) -> list[Record]:
    """Every intact record of a JSONL store (see :func:`read_store` for what is skipped and why)."""
    return read_store(path)[0]


def write_records(path: Path, records: Iterable[Record]) -> None:
    store = RecordStore(path)
    for record in records:
        store.append(record)
