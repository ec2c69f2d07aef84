"""Baseline files: what a session's figures look like when saved, the machine fingerprint they carry, and loading
them back with every figure checked.

Why it is shaped this way:
- A baseline is matched by test id and carries the machine fingerprint it was measured on (GPU model, driver, power
  limit, backend, meter). Energy from another machine is not evidence of a regression, so the fingerprint facts and
  how two of them differ are kept here, beside the file that stores them.
- A bad baseline file must stop the session before hours of benchmarks run, in one line: :func:`load_baseline`
  validates the schema tag, the version and every figure, and raises :class:`BaselineError`.
- A baseline is written whole or not at all, and an incomplete session only updates it (:func:`save_baseline`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.gate.quality_verdicts import quality_entry, quality_entry_problem
from pytest_aienergyscore.records.record import Record

BASELINE_SCHEMA = "pytest-aienergyscore/baseline"
BASELINE_VERSION = 1

FINGERPRINT_LABELS = {
    "gpu_models": "GPU model",
    "driver": "driver",
    "power_limit_w": "power limit (W)",
    "backend": "backend",
    "meter": "meter",
    "cpu": "CPU",
}


class BaselineError(ValueError):
    """A baseline file that cannot be used, in one line that names the file and the problem."""


# -- figures of one benchmark and their fingerprint ----------------------------------------------------------------


def repetition_totals_wh(record: Record) -> list[float]:
    """The benchmark's total Wh in each repetition, in its headline scope: outermost phases only, the windows of a
    phase added up within a repetition (:meth:`Record.repetition_totals_wh`), so their mean is the record's total."""
    return record.repetition_totals_wh()


def fingerprint(record: Record) -> dict[str, Any]:
    """What a figure depends on besides the model: comparing across different fingerprints compares machines."""
    gpus = record.environment.get("gpus") or []
    meter = f"{record.meter_name()} ({record.energy_kind()})"
    methods = sorted({str(d["method"]) for d in record.meter.get("devices", ()) if d.get("method")})
    if methods:
        meter += ": " + "; ".join(methods)
    facts: dict[str, Any] = {
        "gpu_models": sorted(str(g.get("name")) for g in gpus),
        "driver": ",".join(sorted({str(g.get("driver")) for g in gpus if g.get("driver")})) or None,
        "power_limit_w": sorted(float(g["power_limit_w"]) for g in gpus if g.get("power_limit_w") is not None),
        "backend": record.backend,
        "meter": meter,
    }
    if record.headline_scope() == "cpu":
        facts["cpu"] = record.environment.get("cpu")
    return facts


def fingerprint_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each fingerprint fact that differs, worded for a person; facts one side does not record are not compared."""
    differences = []
    for key, label in FINGERPRINT_LABELS.items():
        if key in baseline and key in current and baseline[key] != current[key]:
            differences.append(f"{label} {_fact(baseline[key])} in the baseline, {_fact(current[key])} now")
    return differences


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def benchmark_entry(record: Record) -> dict[str, Any]:
    """The figures of one benchmark as a baseline keeps them (and as the gate compares them)."""
    totals = repetition_totals_wh(record)
    queries = record.query_count()
    return {
        "task": record.task,
        "model": record.model,
        "backend": record.backend,
        "device": record.headline_scope(),
        "meter": record.meter_name(),
        "energy_kind": record.energy_kind(),
        "outcome": record.outcome,
        "queries": queries,
        "repetitions": len(totals),
        "total_wh": record.total_wh(),
        "wh_per_1000_queries": record.wh_per_1000_queries(),
        "repetition_total_wh": totals,
        "repetition_wh_per_1000_queries": [t / queries * 1000.0 for t in totals] if queries else None,
        "fingerprint": fingerprint(record),
        "quality": quality_entry(record),  # absent from files saved before quality was kept: read as None
    }


# -- baseline files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline file; ``exists`` is False when the file was not there (a first CI run, say)."""

    path: Path
    benchmarks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    created: str | None = None
    exists: bool = True


def baseline_document(records: Iterable[Record], session_id: str) -> dict[str, Any]:
    """The JSON document --energy-save-baseline writes. Benchmarks that did not pass are left out (partial work)."""
    entries = {r.nodeid: benchmark_entry(r) for r in records if r.outcome == "passed"}
    first = next(iter(entries.values()), None)
    return {
        "schema": BASELINE_SCHEMA,
        "version": BASELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": session_id,
        "fingerprint": first["fingerprint"] if first else {},
        "benchmarks": entries,
    }


def save_baseline(records: Iterable[Record], path: Path, session_id: str, complete: bool = True) -> Path:
    """Write a baseline whole or not at all, synced: a reader never sees half a file (even when it is the file just
    compared), and a crash right after leaves the old file or the new one.

    Only a complete session (every benchmark run to its end) replaces the file. An incomplete one (interrupted,
    stopped by -x, a selection of the tests) updates the entries of the benchmarks that passed in it and keeps
    every other entry, so that a Ctrl-C never shrinks a full baseline to the few benchmarks that had finished; the
    file it updates must be a valid baseline (BaselineError otherwise, and nothing is written).
    """
    from pytest_aienergyscore.records.atomic import WriteFailed, write_text

    document = baseline_document(records, session_id)
    if not complete and path.exists():
        earlier = load_baseline(path)
        document["benchmarks"] = {**earlier.benchmarks, **document["benchmarks"]}
        document["fingerprint"] = document["fingerprint"] or dict(earlier.fingerprint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteFailed(path, err) from None
    return write_text(path, json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", durable=True)


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file; BaselineError (one line) for anything unreadable, corrupted or foreign."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BaselineError(f"{path}: cannot be read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BaselineError(f"{path}: corrupted, not valid JSON ({err})") from None
    except RecursionError:
        raise BaselineError(f"{path}: corrupted, JSON nested deeper than {MAX_BASELINE_DEPTH} levels") from None
    if _nested_deeper(data, MAX_BASELINE_DEPTH):
        raise BaselineError(f"{path}: corrupted, JSON nested deeper than {MAX_BASELINE_DEPTH} levels")
    _check_header(path, data)
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, dict):
        raise BaselineError(f"{path}: corrupted, 'benchmarks' is not an object of test id -> figures")
    for test, entry in benchmarks.items():
        _check_entry(path, test, entry)
    fp = data.get("fingerprint", {})
    if not isinstance(fp, dict):
        raise BaselineError(f"{path}: corrupted, 'fingerprint' is not an object")
    return Baseline(path, benchmarks, fp, str(data.get("created")) if data.get("created") else None)


MAX_BASELINE_DEPTH = 32  # a baseline nests 4 levels; anything far deeper would only exhaust the recursion later


def _nested_deeper(data: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels; iterative, so depth itself cannot overflow it."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _check_header(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        hint = ""
        if isinstance(data, dict) and "machine_info" in data and "benchmarks" in data:
            hint = " (it looks like a pytest-benchmark file)"
        raise BaselineError(
            f"{path}: not a pytest-aienergyscore baseline{hint}; expected a JSON object with "
            f'"schema": "{BASELINE_SCHEMA}", as --energy-save-baseline writes'
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BaselineError(f"{path}: corrupted, 'version' must be a whole number >= 1, not {version!r}")
    if version > BASELINE_VERSION:
        raise BaselineError(
            f"{path}: baseline version {version} was written by a newer pytest-aienergyscore; "
            f"this one reads version {BASELINE_VERSION}"
        )


def _is_figure(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_entry(path: Path, test: str, entry: Any) -> None:
    where = f"{path}: corrupted, benchmark {test!r}"
    if not isinstance(entry, dict):
        raise BaselineError(f"{where} is not an object")
    if not _is_figure(entry.get("total_wh")):
        raise BaselineError(f"{where}: total_wh must be a number >= 0, not {entry.get('total_wh')!r}")
    per_1k = entry.get("wh_per_1000_queries")
    if per_1k is not None and not _is_figure(per_1k):
        raise BaselineError(f"{where}: wh_per_1000_queries must be a number >= 0 or null, not {per_1k!r}")
    for key in ("repetition_total_wh", "repetition_wh_per_1000_queries"):
        values = entry.get(key)
        if values is None and key == "repetition_wh_per_1000_queries":
            continue
        if not isinstance(values, list) or not values or not all(_is_figure(v) for v in values):
            raise BaselineError(f"{where}: {key} must be a non-empty list of numbers >= 0")
    if "fingerprint" in entry and not isinstance(entry["fingerprint"], dict):
        raise BaselineError(f"{where}: fingerprint is not an object")
    problem = quality_entry_problem(entry.get("quality"))
    if problem is not None:
        raise BaselineError(f"{where}: {problem}")


def baseline_for_session(path: Path | None, require: bool) -> Baseline | None:
    """The session's baseline: None without --energy-baseline; a missing file is an error only when required."""
    if path is None:
        return None
    if not path.exists():
        if require:
            raise BaselineError(f"{path}: no such baseline file, and --energy-require-baseline was given")
        return Baseline(path, exists=False)
    return load_baseline(path)
