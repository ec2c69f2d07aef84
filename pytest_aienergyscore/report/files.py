"""The standard AI Energy Score files of one run folder, and the session summary (json + csv).

``GPU_ENERGY_WH.txt`` and the first keys of ``GPU_ENERGY_SUMMARY.json`` keep AI Energy Score's names and rounding
exactly; everything we add sits beside them under new keys, so their tools keep working and ours say more:
which device the energy is of, which meter produced it, whether it is an estimate, and why it is not comparable.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..records import Record
from .comparability import not_comparable_reasons
from .paths import run_folder_name, safe_part, unique_child
from .rating import rules_summary

ENERGY_TXT = "GPU_ENERGY_WH.txt"
ENERGY_SUMMARY = "GPU_ENERGY_SUMMARY.json"
REPORT = "benchmark_report.json"
LOG = "run.log"

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
    "comparable",
    "model_class",
    "stars",
    "stars_indicative",
    "warnings",
    "run_folder",
    "archive",
)


def energy_summary(record: Record) -> dict[str, Any]:
    """GPU_ENERGY_SUMMARY.json: AI Energy Score's keys first (rounded as its summariser does), then ours."""
    device = record.headline_scope()
    phases = {name: record.phase_wh(name) for name in record.phase_names()}
    total = sum(phases.values())
    reasons = not_comparable_reasons(record)
    queries = record.query_count()
    return {
        "units": "Wh",
        "total": round(total, 2),
        "format": "optimum" if record.backend == "optimum" else "pytest_aienergyscore",
        "preprocess_wh": round(phases.get("preprocess", 0.0), 2),
        "prefill_wh": round(phases.get("prefill", 0.0), 2),
        "decode_wh": round(phases.get("decode", 0.0), 2),
        # our keys, added beside the standard ones
        "total_wh_unrounded": total,
        "phases_wh": phases,
        "device": device,
        "energy_scope": f"{device} energy only" if device == "gpu" else "CPU energy of the whole benchmark process",
        "energy_kind": record.energy_kind(),
        "meter": record.meter_name(),
        "meter_reason": record.meter.get("reason"),
        "devices": [d["device"] for d in record.meter.get("devices", ())],
        "queries": queries,
        "wh_per_1000_queries": record.wh_per_1000_queries(),
        "per_1000_scaled_from": queries if queries not in (None, 1000) else None,
        "repetitions": record.repetitions(),
        "samples": {p.name: p.samples for p in record.phases if p.repetition == 0},
        "tokens": {p.name: p.tokens for p in record.phases if p.repetition == 0 and p.tokens is not None},
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


def write_run_folder(record: Record, session_dir: Path) -> Path:
    """Create this record's run folder (never reusing an existing one) and write its files into it."""
    folder = unique_child(session_dir, run_folder_name(record.task, record.model, record.backend))
    summary = energy_summary(record)
    total = summary["total_wh_unrounded"]
    (folder / ENERGY_TXT).write_text(f"{total:.2f}\n", encoding="utf-8")
    _write_json(folder / ENERGY_SUMMARY, summary)
    report = record.to_dict()
    report.pop("log", None)
    report["attachments"] = _write_attachments(folder, record.attachments)
    report["summary"] = summary
    _write_json(folder / REPORT, report)
    (folder / LOG).write_text(record.log or "(no output was captured for this benchmark)\n", encoding="utf-8")
    _write_label(folder, summary, report)
    return folder


def _write_label(folder: Path, summary: dict[str, Any], report: dict[str, Any]) -> None:
    """label.png beside the files (so it is in the archive); a label that cannot be drawn is a note in run.log."""
    from .label import LABEL_FILE, write_label

    problem = write_label(folder / LABEL_FILE, summary, report)
    if problem:
        with (folder / LOG).open("a", encoding="utf-8") as fh:
            fh.write(f"\n{LABEL_FILE} not drawn: {problem}\n")


def _write_attachments(folder: Path, attachments: dict[str, str]) -> list[str]:
    """A backend's own files (its config, log, meter files) beside ours; a name that would replace one of ours, or
    that is not filesystem-safe, is made safe and prefixed. Returns the names written, for benchmark_report.json."""
    ours = {ENERGY_TXT, ENERGY_SUMMARY, REPORT, LOG, "MANIFEST.sha256", "label.png"}
    written: list[str] = []
    for name, text in attachments.items():
        stem, dot, suffix = name.rpartition(".")
        safe = f"{safe_part(stem, 'attachment')}.{safe_part(suffix, 'txt')}" if dot else safe_part(name, "attachment")
        if safe in ours or safe in written:
            safe = f"attachment-{len(written)}-{safe}"
        (folder / safe).write_text(text, encoding="utf-8")
        written.append(safe)
    return written


def summary_row(record: Record, folder: Path | None, archive: Path | None) -> dict[str, Any]:
    summary = energy_summary(record)
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
        "comparable": summary["comparable"],
        "model_class": summary["model_class"],
        "stars": summary["stars"],
        "stars_indicative": summary["stars_indicative"],
        "warnings": len(summary["warnings"]),
        "run_folder": str(folder) if folder else None,
        "archive": str(archive) if archive else None,
    }


def write_session_summary(
    session_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any], columns: tuple[str, ...] = SUMMARY_COLUMNS
) -> tuple[Path, Path]:
    """summary.json (meta + rows) and summary.csv (``columns`` of each row; merged summaries add ``host``)."""
    json_path = session_dir / "summary.json"
    _write_json(json_path, {**meta, "benchmarks": rows})
    csv_path = session_dir / "summary.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
