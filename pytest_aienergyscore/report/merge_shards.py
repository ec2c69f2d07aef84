"""The shards of a fleet sweep as ``aienergyscore merge`` finds them: which ran to the end and which did not.

Each shard of a sweep writes ``<output>/<run id>/shard-<i>-of-<n>/shard.json`` when it starts (``finished``
false) and completes it when its session ends. A shard whose file still says ``finished: false`` died or is still
running; an index of ``0..n-1`` with no file at all never started, or its folder was never gathered. Either way
the merged results lack its benchmarks, and a leaderboard that silently leaves out a quarter of a sweep reads as
if those models had never been asked for: so the merged summary names every such shard, its host and what it was
given to run.

Nothing here reads a clock: what the summary says comes from the shards' own files, so merging twice gives the
same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_aienergyscore.records.atomic import is_temporary

SHARD_FILE = "shard.json"


@dataclass(frozen=True)
class ShardInfo:
    """One shard's ``shard.json`` (or, with ``folder`` None, an index no file was found for)."""

    run_id: str
    index: int
    count: int
    folder: Path | None
    host: str | None = None
    assigned: tuple[str, ...] | None = None
    finished: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    exitstatus: int | None = None

    @property
    def name(self) -> str:
        return f"shard {self.index} of {self.count} of run {self.run_id}"


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} {value!r} is not a whole number")
    return value


def parse_shard(data: Any, folder: Path) -> ShardInfo:
    """A ``shard.json``'s content as a :class:`ShardInfo`; ValueError naming the first bad value."""
    if not isinstance(data, dict):
        raise ValueError(f"{data!r} is not an object")
    run_id, index, count = data.get("run_id"), _int(data, "index"), _int(data, "count")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id {run_id!r} is not a name")
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"index {index} of count {count}: allowed 0 <= index < count")
    assigned = data.get("assigned")
    if assigned is not None and not (isinstance(assigned, list) and all(isinstance(a, str) for a in assigned)):
        raise ValueError(f"assigned {assigned!r} is not a list of test ids")
    exitstatus = data.get("exitstatus")
    return ShardInfo(
        run_id=run_id,
        index=index,
        count=count,
        folder=folder,
        host=str(data["host"]) if data.get("host") else None,
        assigned=tuple(assigned) if assigned is not None else None,
        finished=data.get("finished") is True,
        started_at=str(data["started_at"]) if data.get("started_at") else None,
        finished_at=str(data["finished_at"]) if data.get("finished_at") else None,
        exitstatus=exitstatus if isinstance(exitstatus, int) and not isinstance(exitstatus, bool) else None,
    )


def find_shards(folder: Path, problems: list[str]) -> list[ShardInfo]:
    """Every readable ``shard.json`` under ``folder`` (the folder itself included); a damaged one is one line in
    ``problems`` and counts as missing, so its shard is still named as unfinished."""
    found = []
    candidates = [folder / SHARD_FILE] if (folder / SHARD_FILE).is_file() else []
    candidates += sorted(folder.rglob(f"*/{SHARD_FILE}"))
    for path in candidates:
        if is_temporary(path.relative_to(folder)):
            continue
        try:
            found.append(parse_shard(json.loads(path.read_text(encoding="utf-8")), path.parent))
        except (OSError, ValueError) as err:
            problems.append(f"{path}: not a shard file ({err}); skipped")
    return found


def _better(old: ShardInfo, new: ShardInfo) -> bool:
    """Of two files for one shard (a folder given twice, or a shard run again elsewhere), the finished one wins."""
    return new.finished and not old.finished


def collect_shards(found: Iterable[ShardInfo]) -> list[ShardInfo]:
    """One entry per (run id, count, index), finished files first, and an entry with no folder for each index of
    ``0..count-1`` that no file was found for; ordered by run id, count and index."""
    by_key: dict[tuple[str, int, int], ShardInfo] = {}
    for shard in found:
        key = (shard.run_id, shard.count, shard.index)
        if key not in by_key or _better(by_key[key], shard):
            by_key[key] = shard
    for run_id, count in {(run_id, count) for run_id, count, _ in by_key}:
        for index in range(count):
            by_key.setdefault((run_id, count, index), ShardInfo(run_id, index, count, None))
    return [by_key[key] for key in sorted(by_key)]


def _shown(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def shard_entry(shard: ShardInfo, measured: Sequence[str]) -> dict[str, Any]:
    """A shard as the merged summary lists it: who ran it, whether it finished, and how much of its share has a
    record (``measured``: the test ids found in its folder)."""
    return {
        "run_id": shard.run_id,
        "index": shard.index,
        "count": shard.count,
        "host": shard.host,
        "finished": shard.finished,
        "exitstatus": shard.exitstatus,
        "started_at": shard.started_at,
        "finished_at": shard.finished_at,
        "assigned": len(shard.assigned) if shard.assigned is not None else None,
        "measured": len(measured),
        "folder": _shown(shard.folder),
    }


def unfinished_entry(shard: ShardInfo, measured: Sequence[str]) -> dict[str, Any]:
    """An unfinished shard as the merged summary names it: why it counts as unfinished, its host, every benchmark
    it was given and those of them that have no record (what a rerun of that shard has to do)."""
    measured_set = set(measured)
    assigned = list(shard.assigned) if shard.assigned is not None else None
    return {
        "run_id": shard.run_id,
        "index": shard.index,
        "count": shard.count,
        "host": shard.host,
        "reason": unfinished_reason(shard),
        "started_at": shard.started_at,
        "assigned": assigned,
        "not_measured": [a for a in assigned if a not in measured_set] if assigned is not None else None,
        "folder": _shown(shard.folder),
    }


def unfinished_reason(shard: ShardInfo) -> str:
    if shard.folder is None:
        return f"no {SHARD_FILE}: the shard never started, or its folder was not among those merged"
    started = f" (started {shard.started_at})" if shard.started_at else ""
    return f"{SHARD_FILE} says it did not finish{started}: it died, was stopped, or is still running"


def warning_line(entry: Mapping[str, Any]) -> str:
    """One line per unfinished shard, for the terminal."""
    host = f"on {entry['host']}" if entry["host"] else "host unknown"
    assigned = entry["assigned"]
    share = (
        f"{len(assigned)} benchmark(s) assigned, {len(entry['not_measured'])} without a record"
        if assigned is not None
        else "its benchmarks are unknown"
    )
    name = f"shard {entry['index']} of {entry['count']} of run {entry['run_id']}"
    return f"{name} did not finish ({host}): {share}; {entry['reason']}"
