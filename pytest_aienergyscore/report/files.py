"""The standard AI Energy Score files of one run folder, and the session summary (json + csv).

``GPU_ENERGY_WH.txt`` and the first keys of ``GPU_ENERGY_SUMMARY.json`` keep AI Energy Score's names and rounding
exactly; everything we add sits beside them under new keys, so their tools keep working and ours say more:
which device the energy is of, which meter produced it, whether it is an estimate, and why it is not comparable.

:func:`write_session_files` is the one writer of a session's files, at the session's end and for
``aienergyscore report``: every file and folder appears whole or not at all, a record whose folder is there already
is not written again, and a file that cannot be written is one line, never a lost session.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.records.atomic import (
    WriteFailed,
    discard,
    is_temporary,
    json_bytes,
    remove_stale,
    temporary,
    write_if_changed,
    writing,
)
from pytest_aienergyscore.records.figures import JOULES_PER_WH
from pytest_aienergyscore.records.inference_figures import carbon_figures, inference_figures
from pytest_aienergyscore.records.quality import quality_of, wh_per_1000_correct
from pytest_aienergyscore.records.record import Phase, Record, combine
from pytest_aienergyscore.records.store import record_sha256
from pytest_aienergyscore.report.archive import MANIFEST, ensure_archive
from pytest_aienergyscore.report.label import LABEL_FILE, label_png
from pytest_aienergyscore.report.paths import run_folder_name, safe_part
from pytest_aienergyscore.report.quality_view import quality_columns, quality_summary
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.gpu_survey import idle_watts
from pytest_aienergyscore.rules.rating import rules_summary

ENERGY_TXT = "GPU_ENERGY_WH.txt"
ENERGY_SUMMARY = "GPU_ENERGY_SUMMARY.json"
REPORT = "benchmark_report.json"
LOG = "run.log"
SUMMARY_JSON = "summary.json"

SUMMARY_COLUMNS = (
    "test",
    "task",
    "model",
    "backend",
    "device",
    "meter",
    "energy_kind",
    "queries",
    "repetitions",
    "preprocess_wh",
    "prefill_wh",
    "decode_wh",
    "forward_wh",
    "call_wh",
    "total_wh",
    "wh_per_1000_queries",
    "joules_per_output_token",
    "output_tokens_per_joule",
    "images_per_wh",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "output_tokens_per_s",
    "requests_per_s",
    "co2e_g",
    "co2e_g_per_1000_queries",
    "carbon_intensity_g_per_kwh",
    "comparable",
    "model_class",
    "stars",
    "stars_indicative",
    "warnings",
    "run_folder",
    "archive",
    # what the energy bought (issue 17): added at the end, so that readers of the columns above keep working
    "quality_metric",
    "quality_value",
    "wh_per_1000_correct",
)


def energy_summary(record: Record) -> dict[str, Any]:
    """GPU_ENERGY_SUMMARY.json: AI Energy Score's keys first (rounded as its summariser does), then ours."""
    device = record.headline_scope()
    phases = {name: record.phase_wh(name) for name in record.phase_names()}  # outermost: they make the total
    total = record.total_wh()
    reasons = not_comparable_reasons(record)
    queries = record.query_count()
    return {
        "units": "Wh",
        "total": round(total, 2),
        "format": record.metadata.get("output_format") or "pytest_aienergyscore",  # declared by the backend
        "preprocess_wh": round(phases.get("preprocess", 0.0), 2),
        "prefill_wh": round(phases.get("prefill", 0.0), 2),
        "decode_wh": round(phases.get("decode", 0.0), 2),
        # our keys, added beside the standard ones
        "decode_uncertainty_wh": decode_uncertainty_wh(record),
        "total_wh_unrounded": total,
        "phases_wh": phases,
        "phases": record.phase_breakdown(),  # every phase; inner ones (parent set) are parts of it, not added again
        "device": device,
        "energy_scope": energy_scope(record, device),
        "gpu_idle_power_w": idle_watts(record.environment.get("gpu_state") or []),  # beside, never subtracted
        "energy_kind": record.energy_kind(),
        "meter": record.meter_name(),
        "meter_reason": record.meter.get("reason"),
        "devices": [d["device"] for d in record.meter.get("devices", ())],
        "queries": queries,
        "wh_per_1000_queries": record.wh_per_1000_queries(),
        "partial_work": record.partial_work(),  # why there is no per-1,000 figure and no stars, when it is so
        "per_1000_scaled_from": queries if queries not in (None, 1000) else None,
        "repetitions": record.repetitions(),
        # J per output token, images per Wh, latency: each beside the energy scope it divides
        "inference_figures": inference_figures(record),
        # grams of CO2e beside each energy figure, at the intensity the user gave; None when none was given
        "carbon": carbon_figures(record),
        # what the energy bought: the task's metric (or the test's own) on the metered samples, or why there is none
        "quality": quality_summary(record),
        "wh_per_1000_correct": wh_per_1000_correct(record.wh_per_1000_queries(), quality_of(record.metadata)),
        "samples": {name: record.phase_samples(name) for name in phases},
        "tokens": {name: record.phase_tokens(name) for name in phases if record.phase_tokens(name) is not None},
        "hardware": {
            "gpus": record.environment.get("gpus"),
            "cpu": record.environment.get("cpu"),
            "cpu_count": record.environment.get("cpu_count"),
            "memory_gib": record.environment.get("memory_gib"),
        },
        "comparable": not reasons,
        "not_comparable_reasons": reasons,
        **rules_summary(record, reasons),
        "warnings": record.warnings(),
        "task": record.task,
        "model": record.model,
        "backend": record.backend,
        "test": record.nodeid,
    }


def decode_uncertainty_wh(record: Record) -> float | None:
    """How far decode_wh may be off from the meters' granularity (in the headline's scope, as decode_wh is), combined
    over windows and repetitions like the figure itself. None without a decode phase or one that carries none."""
    scope = record.headline_scope()

    def joules(phase: Phase) -> float | None:
        by_scope = phase.details.get("uncertainty_by_scope_j")
        if isinstance(by_scope, dict) and scope in by_scope:
            return float(by_scope[scope])
        value = phase.details.get("uncertainty_j")  # records written before the split was given per scope
        return float(value) if value is not None else None

    combined = combine(record.windows("decode"), joules)
    return combined / JOULES_PER_WH if combined is not None else None


def energy_scope(record: Record, device: str) -> str:
    """What the headline figure covers, in the words of the meter that produced it: RAPL and the machine-scope
    estimate count every process on the machine, only the process-scope estimate is this process's."""
    if device == "gpu":
        return "gpu energy only"
    described = (record.meter.get("details") or {}).get("energy_scope")
    if described and record.meter.get("name") == record.meter_name():
        return str(described)
    if record.meter_name().startswith("codecarbon"):  # optimum-benchmark runs codecarbon in its machine mode
        return f"{device} energy of the whole machine, as codecarbon reports it"
    return f"{device} energy as {record.meter_name()} reports it"


# -- writing: run folders, archives, the session summary ---------------------------------------------------------


@dataclass
class RunContent:
    """Every file of one run folder, as bytes, and the summary they were made from."""

    summary: dict[str, Any]
    files: dict[str, bytes]


def run_content(record: Record, data: dict[str, Any] | None = None) -> RunContent:
    """The run folder's files in memory: written once into the folder and zipped from the same bytes, so the
    manifest hashes exactly what was written. ``data``: the record's to_dict(), when the caller has it."""
    summary = energy_summary(record)
    report = record.to_dict() if data is None else dict(data)
    record_hash = record_sha256(record, report)  # before anything is added to the report
    log = report.pop("log", None) or "(no output was captured for this benchmark)\n"
    attachments = _attachment_files(record.attachments)
    report["attachments"] = list(attachments)
    report["summary"] = summary
    report["record_sha256"] = record_hash  # which record this folder holds (see RunFolders)
    files = {
        ENERGY_TXT: f"{summary['total_wh_unrounded']:.2f}\n".encode(),
        ENERGY_SUMMARY: json_bytes(summary),
        REPORT: json_bytes(report),
        **attachments,
    }
    label, problem = _label(summary, report)
    if label is not None:
        files[LABEL_FILE] = label
    else:
        log += f"\n{LABEL_FILE} not drawn: {problem}\n"
    files[LOG] = log.encode("utf-8")
    return RunContent(summary, files)


def _label(summary: dict[str, Any], report: dict[str, Any]) -> tuple[bytes | None, str | None]:
    """label.png's bytes (so it is in the archive), or why it could not be drawn, for a note in run.log."""
    try:
        return label_png(summary, report), None
    except ImportError as err:
        return None, f"Pillow is not installed ({err}); pip install 'pytest-aienergyscore[label]'"
    except Exception as err:  # a picture must never cost a session its measurements
        return None, f"{type(err).__name__}: {err}"


def _attachment_files(attachments: dict[str, str]) -> dict[str, bytes]:
    """A backend's own files (its config, log, meter files) beside ours; a name that would replace one of ours, or
    that is not filesystem-safe, is made safe and prefixed. benchmark_report.json lists the names written."""
    ours = {ENERGY_TXT, ENERGY_SUMMARY, REPORT, LOG, MANIFEST, LABEL_FILE}
    written: dict[str, bytes] = {}
    for name, text in attachments.items():
        stem, dot, suffix = name.rpartition(".")
        safe = f"{safe_part(stem, 'attachment')}.{safe_part(suffix, 'txt')}" if dot else safe_part(name, "attachment")
        if safe in ours or safe in written:
            safe = f"attachment-{len(written)}-{safe}"
        written[safe] = text.encode("utf-8")
    return written


class RunFolders:
    """The run folders of one session folder and the record each holds (``record_sha256`` in its
    benchmark_report.json), so that a record whose folder is already there is not written again: a second
    ``aienergyscore report``, or one after an interrupted session end, writes only what is missing.

    A folder is filled under a temporary name and renamed once whole, so a folder under its real name is always
    complete; a zip is built the same way. Names already taken (by a folder, a zip, or an earlier record of this
    run) get ``-2``, ``-3``..., as before.
    """

    def __init__(self, session_dir: Path) -> None:
        self.session_dir = session_dir
        self._holding: dict[str, Path] | None = None  # record hash -> its folder
        self._taken: set[str] = set()

    def _scan(self) -> dict[str, Path]:
        if self._holding is None:
            self._holding = {}
            entries = sorted(self.session_dir.iterdir()) if self.session_dir.is_dir() else []
            for entry in entries:
                if is_temporary(Path(entry.name)):
                    continue
                self._taken.add(entry.name.removesuffix(".zip"))
                held = _record_held(entry) if entry.is_dir() else None
                if held is not None:
                    self._holding.setdefault(held, entry)
        return self._holding

    def write(self, record: Record) -> tuple[Path, RunContent | None]:
        """This record's folder, written now unless it was there already (then no content is returned)."""
        data = record.to_dict()
        record_hash = record_sha256(record, data)
        found = self._scan().get(record_hash)
        if found is not None:
            return found, None
        content = run_content(record, data)
        folder = self.session_dir / self._free_name(run_folder_name(record.task, record.model, record.backend))
        _publish_folder(folder, content.files)
        self._scan()[record_hash] = folder
        return folder, content

    def _free_name(self, name: str) -> str:
        for n in range(1, 100_000):
            candidate = name if n == 1 else f"{name}-{n}"
            path = self.session_dir / candidate
            if candidate in self._taken or path.exists() or path.with_name(candidate + ".zip").exists():
                continue
            self._taken.add(candidate)
            return candidate
        raise RuntimeError(f"no free folder name for {name} under {self.session_dir}")


def _record_held(folder: Path) -> str | None:
    try:
        held = json.loads((folder / REPORT).read_bytes()).get("record_sha256")
    except (OSError, ValueError, AttributeError):
        return None  # not a run folder of ours, or one written before folders named their record
    return held if isinstance(held, str) else None


def _publish_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary folder and rename it to ``folder`` once every file is in."""
    tmp = temporary(folder)
    with writing(folder, tmp) as current:
        discard(tmp)  # ours (this process's id) and unfinished, if anything
        tmp.mkdir(parents=True)
        for name, data in files.items():
            current.path = folder / name
            (tmp / name).write_bytes(data)
        current.path = folder
        os.rename(tmp, folder)


def write_run_folder(record: Record, session_dir: Path) -> Path:
    """This record's run folder under ``session_dir``: written whole, or the one already holding it."""
    return RunFolders(session_dir).write(record)[0]


def summary_row(
    record: Record, folder: Path | None, archive: Path | None, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    summary = summary or energy_summary(record)
    return {
        "test": record.nodeid,
        "task": record.task,
        "model": record.model,
        "backend": record.backend,
        "device": summary["device"],
        "meter": summary["meter"],
        "energy_kind": summary["energy_kind"],
        "queries": summary["queries"],
        "repetitions": summary["repetitions"],
        **{f"{name}_wh": record.phase_wh(name) for name in ("preprocess", "prefill", "decode", "forward", "call")},
        "total_wh": summary["total_wh_unrounded"],
        "wh_per_1000_queries": summary["wh_per_1000_queries"],
        **inference_columns(summary["inference_figures"]),
        **carbon_columns(summary["carbon"]),
        "comparable": summary["comparable"],
        "model_class": summary["model_class"],
        "stars": summary["stars"],
        "stars_indicative": summary["stars_indicative"],
        "warnings": len(summary["warnings"]),
        "run_folder": str(folder) if folder else None,
        "archive": str(archive) if archive else None,
        **quality_columns(summary["quality"], summary["wh_per_1000_correct"]),
    }


def inference_columns(figures: dict[str, Any]) -> dict[str, Any]:
    """The inference figures as flat summary columns (a CSV has no nesting); the energy scope they divide is the
    row's ``device`` column."""
    latency = figures.get("latency") or {}
    ttft, request = latency.get("ttft_s") or {}, latency.get("latency_s") or {}
    return {
        "joules_per_output_token": figures.get("joules_per_output_token"),
        "output_tokens_per_joule": figures.get("output_tokens_per_joule"),
        "images_per_wh": figures.get("images_per_wh"),
        **{f"ttft_{p}_s": ttft.get(p) for p in ("p50", "p90", "p99")},
        **{f"latency_{p}_s": request.get(p) for p in ("p50", "p90", "p99")},
        "output_tokens_per_s": latency.get("output_tokens_per_s"),
        "requests_per_s": latency.get("requests_per_s"),
    }


def carbon_columns(carbon: dict[str, Any] | None) -> dict[str, Any]:
    """Grams of CO2e of the total and per 1,000 queries, and the intensity they were reached at (empty without)."""
    carbon = carbon or {}
    keys = ("co2e_g", "co2e_g_per_1000_queries", "carbon_intensity_g_per_kwh")
    return {key: carbon.get(key) for key in keys}


def write_session_summary(
    session_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any], columns: tuple[str, ...] = SUMMARY_COLUMNS
) -> tuple[Path, Path]:
    """summary.json (meta + rows) and summary.csv (``columns`` of each row; merged summaries add ``host``), each
    written whole, and not at all when it already holds the same."""
    json_path = session_dir / SUMMARY_JSON
    write_if_changed(json_path, json_bytes({**meta, "benchmarks": rows}))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = session_dir / "summary.csv"
    write_if_changed(csv_path, buffer.getvalue().encode("utf-8"))
    return json_path, csv_path


@dataclass
class WrittenRun:
    """One record's files: its folder and archive, or the one-line error that kept them from being written."""

    record: Record
    folder: Path | None
    archive: Path | None
    error: str | None = None


@dataclass
class SessionFiles:
    """What writing a session's files did; ``errors`` are one line each, for the end-of-session table."""

    session_dir: Path | None
    runs: list[WrittenRun] = field(default_factory=list)
    summary_json: Path | None = None
    summary_csv: Path | None = None
    plot: Path | None = None
    frontier: Path | None = None  # energy against quality, when some benchmark has quality
    written: int = 0  # run folders written now; the others were there already
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False


def write_session_files(records: Sequence[Record], session_dir: Path, meta: dict[str, Any]) -> SessionFiles:
    """The one writer of a session's files, at the session's end and for ``aienergyscore report``: a run folder
    and archive per record, the summary, the plot. Idempotent (the same records leave the same tree, written
    once) and resumable (what a killed or interrupted writer left half done is removed and written again).

    Nothing here raises for a file that cannot be written: each becomes one line in ``errors`` and the rest goes
    on; a Ctrl-C stops the writing, says how far it got and leaves only whole files behind.
    """
    result = SessionFiles(session_dir)
    try:
        _write_all(records, session_dir, meta, result)
    except KeyboardInterrupt:
        result.interrupted = True
        done = sum(run.folder is not None for run in result.runs)
        result.runs += [WrittenRun(r, None, None, "not written: interrupted") for r in records[len(result.runs) :]]
        result.errors.append(
            f"interrupted while writing {session_dir}: {done} of {len(records)} run folders are there; "
            f"`aienergyscore report {session_dir}` writes the rest"
        )
    return result


def _write_all(records: Sequence[Record], session_dir: Path, meta: dict[str, Any], result: SessionFiles) -> None:
    try:
        session_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        result.errors.append(str(WriteFailed(session_dir, err)))
        result.runs = [WrittenRun(r, None, None, "not written: no session folder") for r in records]
        return
    remove_stale(session_dir)
    folders = RunFolders(session_dir)
    rows = [_write_run(folders, record, result) for record in records]
    if not records:
        return
    try:
        result.summary_json, result.summary_csv = write_session_summary(session_dir, rows, meta)
    except OSError as err:
        result.errors.append(str(err))
    from pytest_aienergyscore.report.frontier_plot import write_frontier
    from pytest_aienergyscore.report.plot import write_plot

    result.plot = _picture(write_plot, records, session_dir, result)
    result.frontier = _picture(write_frontier, records, session_dir, result)


Drawer = Callable[[Sequence[Record], Path], tuple[Path | None, str | None]]


def _picture(draw: Drawer, records: Sequence[Record], session_dir: Path, result: SessionFiles) -> Path | None:
    """One of the session's pictures: its path, or None with a note (not drawn) or an error (not written)."""
    try:
        path, note = draw(records, session_dir)
    except OSError as err:
        result.errors.append(str(err))
        return None
    result.notes += [note] if note else []
    return path


def _write_run(folders: RunFolders, record: Record, result: SessionFiles) -> dict[str, Any]:
    """One record's folder and archive; a failure is an error line naming the file, and the summary row stays."""
    folder: Path | None = None
    archive: Path | None = None
    summary = None
    try:
        folder, content = folders.write(record)
        if content is not None:
            result.written += 1
            summary = content.summary
        archive = ensure_archive(folder, content.files if content is not None else None)
        result.runs.append(WrittenRun(record, folder, archive))
    except Exception as err:  # one unwritable run must not cost the others their files, nor the table
        reason = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
        result.runs.append(WrittenRun(record, folder, archive, reason))
        result.errors.append(f"could not write the files of {record.nodeid}: {reason}")
    return summary_row(record, folder, archive, summary)
