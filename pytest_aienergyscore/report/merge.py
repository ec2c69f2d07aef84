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

from pytest_aienergyscore.records.atomic import is_temporary
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.records.store import RECORDS_FILE, read_store
from pytest_aienergyscore.report.files import REPORT, SUMMARY_COLUMNS, summary_row, write_session_summary

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
        data.pop("record_sha256", None)
        return Record.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path}: not a benchmark report ({err})") from None


def _reports(folder: Path, pattern: str, problems: list[str]) -> list[tuple[Path, Record]]:
    """(report path, record) of every readable benchmark_report.json matching ``pattern`` under ``folder``. Files
    still being written (or left by a writer that died) are not results; a damaged one is skipped with a line in
    ``problems``, so one bad file never costs the others their place in the summary."""
    found = []
    for report in sorted(folder.glob(pattern)):
        if is_temporary(report.relative_to(folder)):
            continue
        try:
            found.append((report, _report_record(report)))
        except ValueError as err:
            problems.append(f"{err}; skipped")
    return found


def _runs_of_session(store: Path, problems: list[str]) -> list[MergedRun]:
    """A session's records, each matched with its run folder (same test and start time) when that was written."""
    folders = {
        (record.nodeid, record.started_at): report.parent
        for report, record in _reports(store.parent, f"*/{REPORT}", problems)
    }
    records, skipped = read_store(store)
    problems.extend(skipped)
    return [MergedRun(r, _host(r, store.parent.name), folders.get((r.nodeid, r.started_at))) for r in records]


def find_runs(folder: Path, problems: list[str] | None = None) -> list[MergedRun]:
    """Every benchmark under ``folder``: from session stores first, then from run folders outside any session.
    What had to be skipped (a torn record, a damaged report) is added to ``problems``, one line each."""
    problems = [] if problems is None else problems
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such results folder")
    stores = [s for s in sorted(folder.rglob(RECORDS_FILE)) if not is_temporary(s.relative_to(folder))]
    runs = [run for store in stores for run in _runs_of_session(store, problems)]
    sessions = {store.parent for store in stores}
    for report, record in _reports(folder, f"**/{REPORT}", problems):
        if report.parent.parent not in sessions:
            runs.append(MergedRun(record, _host(record, folder.name), report.parent))
    return runs


def merge_runs(folders: Sequence[Path], problems: list[str] | None = None) -> list[MergedRun]:
    """All benchmarks of all folders, each once (a folder given twice, or inside another, adds nothing)."""
    seen: set[tuple[str, str, float]] = set()
    merged = []
    for folder in folders:
        for run in find_runs(folder, problems):
            key = (run.host, run.record.nodeid, run.record.started_at)
            if key not in seen:
                seen.add(key)
                merged.append(run)
    return merged


def write_merged_summary(
    folders: Sequence[Path], out: Path, problems: list[str] | None = None
) -> tuple[list[MergedRun], Path, Path]:
    """Write ``out``/summary.json and summary.csv over every host's benchmarks; ValueError when there are none.
    Lines skipped on the way are added to ``problems`` and kept in summary.json under ``skipped``."""
    problems = [] if problems is None else problems
    runs = merge_runs(folders, problems)
    if not runs:
        raise ValueError("no benchmark records or run folders found in " + ", ".join(str(f) for f in folders))
    rows = [{"host": run.host, **summary_row(run.record, run.folder, run.archive)} for run in runs]
    meta = {
        "merged_from": [str(f) for f in folders],
        "hosts": sorted({run.host for run in runs}),
        "benchmark_count": len(runs),
        "skipped": list(problems),
    }
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = write_session_summary(out, rows, meta, MERGED_COLUMNS)
    return runs, json_path, csv_path
