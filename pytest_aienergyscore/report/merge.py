"""``aienergyscore merge``: one summary from the results folders of several machines.

Each GPU host runs the benchmarks (the Docker image, or pytest) and keeps its own results folder; CI gathers those
folders and merges them here. A folder may be a results root holding sessions, one session folder (its
``records.jsonl`` is the source of truth) or bare run folders (their ``benchmark_report.json``, as the Docker image
leaves them). Every row names the host it ran on, so identical test ids from two machines stay apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..records import Record, load_records
from .files import REPORT, SUMMARY_COLUMNS, summary_row, write_session_summary

MERGED_COLUMNS = ("host", *SUMMARY_COLUMNS)


@dataclass(frozen=True)
class MergedRun:
    """One benchmark found in a results folder, with the host that ran it and its files when they exist."""

    record: Record
    host: str
    folder: Path | None

    @property
    def archive(self) -> Path | None:
        if self.folder is None:
            return None
        zipped = self.folder.with_name(self.folder.name + ".zip")
        return zipped if zipped.exists() else None


def _host(record: Record, fallback: str) -> str:
    return str(record.environment.get("hostname") or fallback)


def _report_record(path: Path) -> Record:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("summary", None)
        return Record.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path}: not a benchmark report ({err})") from None


def _runs_of_session(store: Path) -> list[MergedRun]:
    """A session's records, each matched with its run folder (same test and start time) when that was written."""
    folders = {}
    for report in sorted(store.parent.glob(f"*/{REPORT}")):
        record = _report_record(report)
        folders[(record.nodeid, record.started_at)] = report.parent
    return [
        MergedRun(r, _host(r, store.parent.name), folders.get((r.nodeid, r.started_at))) for r in load_records(store)
    ]


def find_runs(folder: Path) -> list[MergedRun]:
    """Every benchmark under ``folder``: from session stores first, then from run folders outside any session."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such results folder")
    stores = sorted(folder.rglob("records.jsonl"))
    runs = [run for store in stores for run in _runs_of_session(store)]
    sessions = {store.parent for store in stores}
    for report in sorted(folder.rglob(REPORT)):
        if report.parent.parent not in sessions:
            record = _report_record(report)
            runs.append(MergedRun(record, _host(record, folder.name), report.parent))
    return runs


def merge_runs(folders: Sequence[Path]) -> list[MergedRun]:
    """All benchmarks of all folders, each once (a folder given twice, or inside another, adds nothing)."""
    seen: set[tuple[str, str, float]] = set()
    merged = []
    for folder in folders:
        for run in find_runs(folder):
            key = (run.host, run.record.nodeid, run.record.started_at)
            if key not in seen:
                seen.add(key)
                merged.append(run)
    return merged


def write_merged_summary(folders: Sequence[Path], out: Path) -> tuple[list[MergedRun], Path, Path]:
    """Write ``out``/summary.json and summary.csv over every host's benchmarks; ValueError when there are none."""
    runs = merge_runs(folders)
    if not runs:
        raise ValueError("no benchmark records or run folders found in " + ", ".join(str(f) for f in folders))
    rows = [{"host": run.host, **summary_row(run.record, run.folder, run.archive)} for run in runs]
    meta = {
        "merged_from": [str(f) for f in folders],
        "hosts": sorted({run.host for run in runs}),
        "benchmark_count": len(runs),
    }
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = write_session_summary(out, rows, meta, MERGED_COLUMNS)
    return runs, json_path, csv_path
