"""``aienergyscore merge``: one summary from the results folders of several machines.

Each GPU host runs the benchmarks (the Docker image, or pytest) and keeps its own results folder; CI gathers those
folders and merges them here. A folder may be a results root holding sessions, one session folder (its
``records.jsonl`` is the source of truth) or bare run folders (their ``benchmark_report.json``, as the Docker image
leaves them). Every row names the host it ran on, so identical test ids from two machines stay apart.

A fleet sweep (``--energy-shard``) leaves ``<output>/<run id>/shard-<i>-of-<n>/`` folders, each a session folder
with a ``shard.json``: merging the run folder names every shard that did not finish (:mod:`.merge_shards`). Besides
the summary, the merge writes what a session writes for a reader: the plot, the HTML report (the session's own
writers) and a leaderboard per task and model class (:mod:`.merge_tables`).

Merging the same folders twice gives the same bytes: rows in test id then host order whatever the order of the
folders, no time of the merge in any file, and paths as they were given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.records.atomic import is_temporary, write_if_changed
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.records.store import RECORDS_FILE, read_store
from pytest_aienergyscore.report.files import REPORT, SUMMARY_COLUMNS, summary_row, write_session_summary
from pytest_aienergyscore.report.merge_shards import (
    ShardInfo,
    collect_shards,
    find_shards,
    shard_entry,
    unfinished_entry,
    warning_line,
)
from pytest_aienergyscore.report.merge_tables import LEADERBOARD_FILE, leaderboard_lines, leaderboard_markdown

MERGED_COLUMNS = ("host", *SUMMARY_COLUMNS)


@dataclass(frozen=True)
class MergedRun:
    """One benchmark found in a results folder, with the host that ran it and its files when they exist."""

    record: Record
    host: str
    folder: Path | None
    session: Path | None = None  # the session folder whose records.jsonl held it (a shard's folder in a sweep)

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
    session = store.parent
    return [MergedRun(r, _host(r, session.name), folders.get((r.nodeid, r.started_at)), session) for r in records]


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
    """All benchmarks of all folders, each once (a folder given twice, or inside another, adds nothing), in test id
    then host order: the shards of a sweep finish in any order, and the merge must not depend on it."""
    seen: set[tuple[str, str, float]] = set()
    merged = []
    for folder in folders:
        for run in find_runs(folder, problems):
            key = (run.host, run.record.nodeid, run.record.started_at)
            if key not in seen:
                seen.add(key)
                merged.append(run)
    return sorted(merged, key=lambda run: (run.record.nodeid, run.host, run.record.started_at))


def _measured(shard: ShardInfo, runs: Sequence[MergedRun]) -> list[str]:
    """The test ids that have a record in this shard's folder."""
    if shard.folder is None:
        return []
    folder = shard.folder.resolve()
    return [run.record.nodeid for run in runs if run.session is not None and run.session.resolve() == folder]


def shard_status(
    folders: Sequence[Path], runs: Sequence[MergedRun], problems: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every shard of every sweep found, the unfinished ones) as the merged summary lists them; both empty when
    the folders hold no sweep."""
    found = [shard for folder in folders for shard in find_shards(folder, problems)]
    shards = collect_shards(found)
    measured = [_measured(shard, runs) for shard in shards]
    listed = [shard_entry(shard, ids) for shard, ids in zip(shards, measured, strict=True)]
    unfinished = [unfinished_entry(s, ids) for s, ids in zip(shards, measured, strict=True) if not s.finished]
    return listed, unfinished


def merged_name(shards: Sequence[dict[str, Any]], unfinished: Sequence[dict[str, Any]], out: Path) -> str:
    """What the merge is of, for the summary's ``session`` and the headings of the report and leaderboard: the
    sweep's run ids and how many shards did not finish (so the HTML page says so at its top), or the output folder."""
    runs = sorted({str(shard["run_id"]) for shard in shards})
    if not runs:
        return f"merged results {out.name}"
    missing = f", {len(unfinished)} unfinished" if unfinished else ""
    return f"sweep {', '.join(runs)} ({len(shards)} shard{'s' * (len(shards) != 1)}{missing})"


@dataclass
class MergedFiles:
    """What a merge found and wrote; ``warnings`` (one line per unfinished shard) and ``notes`` are for the terminal."""

    runs: list[MergedRun]
    summary_json: Path
    summary_csv: Path
    leaderboard: Path
    leaderboard_lines: list[str]
    plot: Path | None = None
    frontier: Path | None = None
    html: Path | None = None
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_merged(folders: Sequence[Path], out: Path, problems: list[str] | None = None) -> MergedFiles:
    """Every file of a merge in ``out``: summary.json and summary.csv (with the shards of a sweep and the unfinished
    ones), leaderboard.md, the plot and the HTML report. ValueError when no benchmark was found; lines skipped on the
    way are added to ``problems`` and kept in summary.json under ``skipped``."""
    problems = [] if problems is None else problems
    runs = merge_runs(folders, problems)
    if not runs:
        raise ValueError("no benchmark records or run folders found in " + ", ".join(str(f) for f in folders))
    shards, unfinished = shard_status(folders, runs, problems)
    name = merged_name(shards, unfinished, out)
    rows = [{"host": run.host, **summary_row(run.record, run.folder, run.archive)} for run in runs]
    meta = {
        "session": name,
        "merged_from": [str(f) for f in folders],
        "hosts": sorted({run.host for run in runs}),
        "benchmark_count": len(runs),
        "shards": shards,
        "unfinished_shards": unfinished,
        "skipped": list(problems),
    }
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = write_session_summary(out, rows, meta, MERGED_COLUMNS)
    warnings = [warning_line(entry) for entry in unfinished]
    leaderboard = out / LEADERBOARD_FILE
    write_if_changed(leaderboard, leaderboard_markdown(runs, f"Leaderboard: {name}", warnings).encode("utf-8"))
    merged = MergedFiles(
        runs, json_path, csv_path, leaderboard, leaderboard_lines(runs), unfinished=unfinished, warnings=warnings
    )
    _write_pictures(merged, out, {**meta, "benchmarks": rows})
    return merged


def _picture(written: tuple[Path | None, str | None], path: Path, notes: list[str]) -> Path | None:
    """One picture a writer drew (or did not, with its note); an earlier merge's picture of other runs at ``path``
    is removed when none was drawn now, so it cannot pass for this one's."""
    picture, note = written
    if note:
        notes.append(note)
    if picture is None:
        path.unlink(missing_ok=True)
    return picture


def _write_pictures(merged: MergedFiles, out: Path, summary: dict[str, Any]) -> None:
    """The session plot, the energy-against-quality plot and the HTML report of the merged runs, through the
    session's own writers; a plot that cannot be drawn is a note, as at the end of a session."""
    from pytest_aienergyscore.report.frontier_plot import FRONTIER_FILE, write_frontier
    from pytest_aienergyscore.report.html import HTML_FILE, SessionView, write_html
    from pytest_aienergyscore.report.plot import PLOT_FILE, write_plot

    records = [run.record for run in merged.runs]
    merged.plot = _picture(write_plot(records, out), out / PLOT_FILE, merged.notes)
    merged.frontier = _picture(write_frontier(records, out), out / FRONTIER_FILE, merged.notes)
    view = SessionView(out, records, [run.folder for run in merged.runs], summary)
    view.plot = merged.plot.read_bytes() if merged.plot is not None else None
    view.frontier = merged.frontier.read_bytes() if merged.frontier is not None else None
    [merged.html] = write_html(view, [out / HTML_FILE])
