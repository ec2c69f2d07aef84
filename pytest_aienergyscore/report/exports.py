"""The session's energy figures in the formats CI dashboards already read.

- a Markdown summary, appended to ``$GITHUB_STEP_SUMMARY`` when GitHub Actions sets it;
- pytest-benchmark-shaped JSON (``--energy-json``), so tools that read pytest-benchmark files can chart energy;
- github-action-benchmark's ``customSmallerIsBetter`` list and Bencher's BMF object, written beside the summary;
- JUnit XML properties and pytest-benchmark ``extra_info`` for one test's record.

Every export states the unit and keeps the device, meter and estimate label next to the number, so a CPU estimate can
never pass for a GPU measurement on a dashboard. The figure is Wh per 1,000 queries where the queries are known, else
the benchmark's total Wh (and the unit says which).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import fmean, median, quantiles, stdev
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.records.atomic import WriteFailed, write_bytes, write_text
from pytest_aienergyscore.records.inference_figures import carbon_figures, carbon_note, inference_figures
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.environment import plugin_version
from pytest_aienergyscore.report.table import NESTED_NOTE, QUALITY_COLUMN, QUALITY_NOTE, markdown_table, result_table
from pytest_aienergyscore.rules.comparability import not_comparable_reasons

if TYPE_CHECKING:
    from pytest_aienergyscore.gate.verdicts import GateOutcome

GITHUB_BENCHMARK_FILE = "github-action-benchmark.json"
BENCHER_FILE = "bencher-bmf.json"
UNIT_PER_1K = "Wh/1k queries"
UNIT_TOTAL = "Wh"
BMF_PER_1K = "energy-wh-per-1k-queries"
BMF_TOTAL = "energy-wh"


# -- one record's headline figure -----------------------------------------------------------------------------------


def headline(record: Record) -> tuple[float, str, list[float]]:
    """(figure, unit, per-repetition figures): Wh per 1,000 queries when queries are known and the benchmark ran to
    its end, else total Wh."""
    from pytest_aienergyscore.gate.baselines import repetition_totals_wh

    totals = repetition_totals_wh(record)
    queries = record.query_count()
    if queries and not record.partial_work():  # partial work per query would read as a cheap whole workload
        return record.total_wh() / queries * 1000.0, UNIT_PER_1K, [t / queries * 1000.0 for t in totals]
    return record.total_wh(), UNIT_TOTAL, totals


def _labels(record: Record) -> str:
    parts = [f"{record.headline_scope()}/{record.meter_name()}", record.energy_kind()]
    if record.query_count():
        parts.append(f"{record.query_count()} queries")
    parts.append(f"{record.repetitions()} repetition(s)")
    if not_comparable_reasons(record):
        parts.append("not comparable with the leaderboard")
    figures = inference_figures(record)
    if figures["joules_per_output_token"] is not None:
        parts.append(f"{figures['joules_per_output_token']:.6g} J/output token")
    if figures["images_per_wh"] is not None:
        parts.append(f"{figures['images_per_wh']:.6g} images/Wh")
    carbon = carbon_figures(record)
    if carbon is not None and carbon["co2e_g"] is not None:
        parts.append(f"{carbon['co2e_g']:.6g} g CO2e at {carbon['carbon_intensity_g_per_kwh']:g} g/kWh (user-given)")
    return ", ".join(parts)


# Bencher measure slugs of the inference figures (same energy scope as the headline measure) and of the CO2e.
BMF_INFERENCE = {
    "joules_per_output_token": "energy-j-per-output-token",
    "output_tokens_per_joule": "output-tokens-per-joule",
    "images_per_wh": "images-per-wh",
}
BMF_LATENCY = {"ttft_s": "time-to-first-token", "latency_s": "request-latency"}
BMF_THROUGHPUT = {"output_tokens_per_s": "output-tokens-per-s", "requests_per_s": "requests-per-s"}
BMF_CO2E = "co2e-g"


def extra_measures(record: Record) -> dict[str, dict[str, float]]:
    """Bencher measures beside the energy: per output token or image, latency (p50/p90/p99, seconds), throughput,
    and grams of CO2e when an intensity was given. Only the figures the record has."""
    figures = inference_figures(record)
    measures = {slug: {"value": float(figures[key])} for key, slug in BMF_INFERENCE.items() if figures[key] is not None}
    latency = figures["latency"] or {}
    for key, slug in BMF_LATENCY.items():
        spread = latency.get(key) or {}
        measures |= {f"{slug}-{p}-s": {"value": spread[p]} for p in ("p50", "p90", "p99") if spread.get(p) is not None}
    measures |= {slug: {"value": float(latency[key])} for key, slug in BMF_THROUGHPUT.items() if latency.get(key)}
    carbon = carbon_figures(record)
    if carbon is not None and carbon["co2e_g"] is not None:
        measures[BMF_CO2E] = {"value": carbon["co2e_g"]}
    return measures


# -- github-action-benchmark and Bencher ----------------------------------------------------------------------------


def custom_smaller_is_better(records: Sequence[Record]) -> list[dict[str, Any]]:
    """github-action-benchmark's ``customSmallerIsBetter`` input: one entry per benchmark, named by test id."""
    entries = []
    for record in records:
        value, unit, series = headline(record)
        entry: dict[str, Any] = {"name": record.nodeid, "unit": unit, "value": value, "extra": _labels(record)}
        if len(series) > 1:
            entry["range"] = f"± {stdev(series):.6g}"
        entries.append(entry)
    return entries


def bencher_bmf(records: Sequence[Record]) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: test id -> measure slug -> value, with the repetitions' range as lower/upper values."""
    document: dict[str, dict[str, dict[str, float]]] = {}
    for record in records:
        value, unit, series = headline(record)
        metric: dict[str, float] = {"value": value}
        if len(series) > 1:
            metric |= {"lower_value": min(series), "upper_value": max(series)}
        measures = {BMF_PER_1K if unit == UNIT_PER_1K else BMF_TOTAL: metric}
        if unit == UNIT_PER_1K:
            measures[BMF_TOTAL] = {"value": record.total_wh()}
        document[record.nodeid] = measures | extra_measures(record)
    return document


# -- pytest-benchmark-shaped JSON -----------------------------------------------------------------------------------


def _stats(series: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's stats keys over the per-repetition figures (energy, not seconds: see extra_info.unit)."""
    data = sorted(series)
    mean = fmean(data)
    sd = stdev(data) if len(data) > 1 else 0.0
    q1, _, q3 = quantiles(data, n=4, method="inclusive") if len(data) > 1 else (data[0], data[0], data[0])
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(not low <= v <= high for v in data)
    sd_outliers = sum(not mean - sd <= v <= mean + sd for v in data)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": sd,
        "rounds": len(data),
        "median": median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": sd_outliers,
        "outliers": f"{sd_outliers};{iqr_outliers}",
        "ld15iqr": min(v for v in data if v >= low),
        "hd15iqr": max(v for v in data if v <= high),
        "ops": 1.0 / mean if mean > 0 else 0.0,
        "total": sum(data),
        "iterations": 1,
        "data": list(series),
    }


def _benchmark_entry(record: Record) -> dict[str, Any]:
    value, unit, series = headline(record)
    return {
        "group": record.task,
        "name": record.nodeid.rsplit("::", 1)[-1],
        "fullname": record.nodeid,
        "params": None,
        "param": None,
        "extra_info": {
            "unit": unit,
            "figure": value,
            "total_wh": record.total_wh(),
            "phases_wh": {name: record.phase_wh(name) for name in record.phase_names()},
            "device": record.headline_scope(),
            "meter": record.meter_name(),
            "energy_kind": record.energy_kind(),
            "queries": record.query_count(),
            "model": record.model,
            "backend": record.backend,
            "outcome": record.outcome,
            "not_comparable_reasons": not_comparable_reasons(record),
            "inference_figures": inference_figures(record),  # J/output token, images/Wh, latency, with their scope
            "carbon": carbon_figures(record),  # grams of CO2e at the user-given intensity, or None
        },
        "options": {
            "disable_gc": False,
            "timer": "energy meter",
            "min_rounds": len(series),
            "max_time": 0.0,
            "min_time": 0.0,
            "warmup": False,
        },
        "stats": _stats(series),
    }


def machine_info(records: Sequence[Record]) -> dict[str, Any]:
    env = records[0].environment if records else {}
    return {
        "node": env.get("hostname") or platform.node(),
        "processor": env.get("cpu") or platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": env.get("python") or platform.python_version(),
        "python_compiler": platform.python_compiler(),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {"brand_raw": env.get("cpu"), "count": env.get("cpu_count")},
        "gpus": env.get("gpus") or [],
    }


def pytest_benchmark_json(records: Sequence[Record], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A document in pytest-benchmark's --benchmark-json shape whose stats are energy per repetition."""
    environ = os.environ if environ is None else environ
    commit = {"id": environ.get("GITHUB_SHA"), "branch": environ.get("GITHUB_REF_NAME")}
    return {
        "machine_info": machine_info(records),
        "commit_info": {k: v for k, v in commit.items() if v},
        "benchmarks": [_benchmark_entry(r) for r in records],
        "datetime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "version": f"pytest-aienergyscore {plugin_version()}",
    }


# -- Markdown -------------------------------------------------------------------------------------------------------


def markdown_summary(records: Sequence[Record], gate: GateOutcome | None, title: str) -> str:
    """The session as GitHub renders it in a job summary: the results table, then the gate's verdicts."""
    lines = [f"## AI Energy Score: {title}", ""]
    table = result_table(records)
    body = [(r.nodeid, *row[1:]) for r, row in zip(records, table.rows, strict=True)]
    lines += markdown_table(table.columns, body)
    if any(r.energy_kind() == "estimate" for r in records):
        lines += ["", "_estimate: CPU time x watts per busy core, not a measurement (no GPU or RAPL counter)._"]
    if any(p.parent for r in records for p in r.phases):
        lines += ["", f"_{NESTED_NOTE}_"]
    if QUALITY_COLUMN in table.columns and any(row[table.columns.index(QUALITY_COLUMN)] == "-" for row in body):
        lines += ["", f"_{QUALITY_NOTE}_"]
    carbon = carbon_note(list(records))
    if carbon:
        lines += ["", f"_{carbon}_"]
    if gate is not None:
        from pytest_aienergyscore.report.gate_table import gate_markdown

        lines += ["", *gate_markdown(gate)]
    return "\n".join(lines) + "\n"


# -- per-test exports ------------------------------------------------------------------------------------------------


def junit_properties(record: Record) -> list[tuple[str, object]]:
    """Properties for the test's <testcase> in --junitxml, so CI test reports carry the energy beside the result."""
    value, unit, _ = headline(record)
    return [
        ("energy_total_wh", f"{record.total_wh():.6g}"),
        ("energy_wh_per_1000_queries", f"{value:.6g}" if unit == UNIT_PER_1K else ""),
        ("energy_meter", record.meter_name()),
        ("energy_device", record.headline_scope()),
        ("energy_kind", record.energy_kind()),
        ("energy_repetitions", str(record.repetitions())),
    ]


def benchmark_extra_info(record: Record, rounds: int | None) -> dict[str, Any]:
    """pytest-benchmark extra_info: the metered energy spread over the rounds pytest-benchmark timed.

    The energy is that of the test's metered phases; when the benchmark fixture ran inside them (the usual way),
    dividing by the rounds gives energy per round, calibration runs included. Without a round count the total stays.
    """
    total = record.total_wh()
    info: dict[str, Any] = {
        "energy_wh": total,
        "energy_meter": record.meter_name(),
        "energy_device": record.headline_scope(),
        "energy_kind": record.energy_kind(),
    }
    if rounds:
        info |= {"energy_rounds": rounds, "energy_wh_per_round": total / rounds}
    return info


# -- writing --------------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> Path:
    """Whole or not at all (see :mod:`.atomic`): a dashboard never reads half an export."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteFailed(path, err) from None
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_ci_exports(
    session_dir: Path,
    records: Sequence[Record],
    gate: GateOutcome | None,
    json_path: Path | None,
    title: str,
    environ: Mapping[str, str] | None = None,
    exports_dir: Path | None = None,
) -> list[Path]:
    """Write every CI export of the session; returns the files written (the step summary among them when set).
    ``exports_dir`` (--energy-exports): the session's exports copied there too, under fixed names."""
    environ = os.environ if environ is None else environ
    written = [
        _write_json(session_dir / GITHUB_BENCHMARK_FILE, custom_smaller_is_better(records)),
        _write_json(session_dir / BENCHER_FILE, bencher_bmf(records)),
    ]
    if exports_dir is not None:
        written += write_fixed_exports(session_dir, exports_dir)
    if json_path is not None:
        written.append(_write_json(json_path, pytest_benchmark_json(records, environ)))
    step_summary = environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown_summary(records, gate, title))
        written.append(Path(step_summary))
    return written


def write_fixed_exports(session_dir: Path, exports_dir: Path) -> list[Path]:
    """The session folder's summary.json, github-action-benchmark.json, bencher-bmf.json and gate.json copied byte
    for byte under the same names into ``exports_dir``, so a CI workflow reads a fixed path instead of globbing a
    timestamped folder. Each copy is whole or absent; a name this session did not write (no gate ran) is removed
    there, so a fixed path never holds an earlier session's verdicts."""
    from pytest_aienergyscore.gate.verdicts import GATE_FILE
    from pytest_aienergyscore.report.files import SUMMARY_JSON

    try:
        exports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        in_the_way = isinstance(err, (FileExistsError, NotADirectoryError))
        raise WriteFailed(
            exports_dir, OSError(err.errno, "a file is in the way of --energy-exports's folder") if in_the_way else err
        ) from None
    written = []
    for name in (SUMMARY_JSON, GITHUB_BENCHMARK_FILE, BENCHER_FILE, GATE_FILE):
        source, target = session_dir / name, exports_dir / name
        if source.resolve() == target.resolve():
            continue  # --energy-exports names the session folder itself
        if source.is_file():
            written.append(write_bytes(target, source.read_bytes()))
        else:
            try:
                target.unlink(missing_ok=True)
            except OSError as err:
                raise WriteFailed(target, err) from None
    return written
