"""``aienergyscore compare A B [C ...]``: saved runs or results folders side by side, each benchmark's Wh per 1,000
queries in every run, the change of the last against the first, and the gate's verdict by the same rules as a
session (:func:`..gate.verdicts.compare_entry`: the drift rule when the runs before the last are a history of 5 or
more, else Welch's test on repetitions, else the threshold).

Why it is shaped this way: pytest-benchmark users compare saved runs offline (``pytest-benchmark compare``); a
folder of saved runs is read in its numbered order, so ``compare .energy/<machine>`` is the whole history of a
machine. Results folders are read from ``records.jsonl`` (every figure, with repetitions) or, failing that, from
``summary.json`` (one figure per benchmark, so the threshold alone decides).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALLOWED = (
    "a saved run (.json, as --energy-autosave writes), a folder of saved runs (.energy/<machine>), or a session "
    "folder (records.jsonl or summary.json)"
)


class SourceError(ValueError):
    """A path given to compare that is none of what it reads, in one line."""


@dataclass
class Run:
    """One column of the comparison: its label and each benchmark's figures, as the gate compares them."""

    label: str
    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_sources(paths: list[Path]) -> tuple[list[Run], list[str]]:
    """Every run the paths hold, in the order given (a folder of saved runs: its runs by number), and warnings."""
    runs: list[Run] = []
    warnings: list[str] = []
    for path in paths:
        runs += _load(path, warnings)
    seen: dict[str, int] = {}
    for run in runs:  # two folders of the same name, or the same run twice: columns must still say which is which
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label}#{seen[run.label]}"
    return runs, warnings


def _load(path: Path, warnings: list[str]) -> list[Run]:
    from pytest_aienergyscore.gate.history import HistoryError, list_runs, load_run
    from pytest_aienergyscore.records.store import RECORDS_FILE
    from pytest_aienergyscore.report.files import SUMMARY_JSON

    try:
        if path.is_file() and path.suffix == ".json":
            return [_saved(load_run(path))]
        if path.is_dir():
            saved = list_runs(path)
            if saved:
                return [_saved(load_run(file)) for _, file in saved]
            if (path / RECORDS_FILE).is_file():
                return [_from_records(path, warnings)]
            if (path / SUMMARY_JSON).is_file():
                return [_from_summary(path, warnings)]
    except HistoryError as err:
        raise SourceError(str(err)) from None
    raise SourceError(f"{path}: not {ALLOWED}")


def _saved(run: Any) -> Run:
    return Run(run.label(), run.path, run.entries())


def _from_records(folder: Path, warnings: list[str]) -> Run:
    from pytest_aienergyscore.gate.baselines import benchmark_entry
    from pytest_aienergyscore.records.store import RECORDS_FILE, read_store

    records, skipped = read_store(folder / RECORDS_FILE)
    warnings += skipped
    if not records:
        raise SourceError(f"{folder / RECORDS_FILE}: no intact record in it; allowed: {ALLOWED}")
    return Run(folder.name, folder, {r.nodeid: benchmark_entry(r) for r in records})


def _from_summary(folder: Path, warnings: list[str]) -> Run:
    """One figure per benchmark: the summary keeps no per-repetition figures, so the threshold alone decides."""
    from pytest_aienergyscore.report.files import SUMMARY_JSON

    try:
        rows = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))["benchmarks"]
        entries = {str(row["test"]): _summary_entry(row) for row in rows}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SourceError(f"{folder / SUMMARY_JSON}: not a session summary ({err}); allowed: {ALLOWED}") from None
    warnings.append(f"{folder}: summary.json only (no records.jsonl): no per-repetition figures")
    return Run(folder.name, folder, entries)


def _summary_entry(row: dict[str, Any]) -> dict[str, Any]:
    total, per_1k = float(row["total_wh"]), row.get("wh_per_1000_queries")
    return {
        "total_wh": total,
        "wh_per_1000_queries": None if per_1k is None else float(per_1k),
        "repetition_total_wh": [total],
        "repetition_wh_per_1000_queries": None if per_1k is None else [float(per_1k)],
        "repetitions": row.get("repetitions"),
    }


# -- the table ------------------------------------------------------------------------------------------------------


def figure_of(entry: dict[str, Any] | None) -> float | None:
    """The figure a run shows for a benchmark: Wh per 1,000 queries, or total Wh where the queries are unknown."""
    if entry is None:
        return None
    value = entry.get("wh_per_1000_queries")
    return float(value) if value is not None else float(entry["total_wh"])


def spread_of(entry: dict[str, Any] | None) -> float | None:
    """The standard deviation over the run's repetitions (None with fewer than two)."""
    if entry is None:
        return None
    series = entry.get("repetition_wh_per_1000_queries") or entry.get("repetition_total_wh") or []
    return statistics.stdev(series) if len(series) >= 2 else None


def comparison(runs: list[Run], fail_above: float | None) -> tuple[list[tuple[str, ...]], Any]:
    """The table's rows and the gate's outcome: the last run against the first, the runs before the last as the
    drift history."""
    from pytest_aienergyscore.gate.verdicts import NO_BASELINE, GateOutcome, GateSettings, Verdict, compare_entry
    from pytest_aienergyscore.report.gate_table import format_change, format_figure

    gate = GateSettings(fail_above)
    first, last = runs[0], runs[-1]
    tests = list(dict.fromkeys(t for run in runs for t in run.entries))
    outcome = GateOutcome([], gate, first.path)
    rows = []
    for test in tests:
        base, now = first.entries.get(test), last.entries.get(test)
        if base is None or now is None:
            where = first.label if base is None else last.label
            verdict = Verdict(test, NO_BASELINE, reason=f"not in run {where}")
        else:
            history = [run.entries[test] for run in runs[:-1] if test in run.entries]
            verdict = compare_entry(test, now, base, gate, history)
        outcome.verdicts.append(verdict)
        figures = [format_figure(figure_of(run.entries.get(test))) for run in runs]
        rows.append((test.rsplit("::", 1)[-1], *figures, format_change(verdict.change_pct), verdict.label()))
    return rows, outcome


def render_comparison(runs: list[Run], fail_above: float | None) -> tuple[list[str], Any]:
    from pytest_aienergyscore.report.table import Column, text_table

    rows, outcome = comparison(runs, fail_above)
    columns = [Column("benchmark", shorten=True), *(Column(run.label, numeric=True) for run in runs)]
    columns += [Column("change", numeric=True), Column("verdict")]
    lines = text_table(columns, rows, max_width=160)
    legend = [f"{run.label}: {run.path}" for run in runs]
    return [*legend, "Wh per 1,000 queries (total Wh where queries are unknown)", *lines, outcome.headline()], outcome


# -- the command ----------------------------------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    """Print the comparison; exit 2 for a path that is none of what compare reads, 1 when --fail-above fails."""
    try:
        runs, warnings = load_sources([Path(p) for p in args.sources])
    except SourceError as err:
        print(f"aienergyscore compare: {err}", file=sys.stderr)
        return 2
    for line in warnings:
        print(f"aienergyscore compare: warning: {line}", file=sys.stderr)
    if len(runs) < 2:
        print(f"aienergyscore compare: {len(runs)} run found, need 2 or more; give {ALLOWED}", file=sys.stderr)
        return 2
    lines, outcome = render_comparison(runs, args.fail_above)
    for line in lines:
        print(line)
    if args.plot:
        status = _plot(runs, Path(args.plot))
        if status:
            return status
    return 1 if outcome.failed else 0


def _plot(runs: list[Run], path: Path) -> int:
    from pytest_aienergyscore.report.compare_plot import EXTRA, PlotSeries, write_compare_plot

    tests = list(dict.fromkeys(t for run in runs for t in run.entries))
    series = [
        PlotSeries(
            test.rsplit("::", 1)[-1],
            [(run.label, figure_of(run.entries.get(test)), spread_of(run.entries.get(test))) for run in runs],
        )
        for test in tests
    ]
    try:
        write_compare_plot(series, path)
    except ImportError as err:
        print(
            f"aienergyscore compare: --plot: matplotlib is not installed ({err}); pip install '{EXTRA}'",
            file=sys.stderr,
        )
        return 1
    print(f"plot: {path}")
    return 0


def _percentage(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value {raw!r}; allowed: a percentage >= 0, such as 10")
    return value


def add_compare_command(sub: Any) -> None:
    """Register ``compare`` on the ``aienergyscore`` command's sub-parsers."""
    compare = sub.add_parser(
        "compare",
        help="saved runs or results folders side by side: each run's Wh per 1,000 queries, change, verdict",
        description=f"Compare runs: each SOURCE is {ALLOWED}. The last run is compared with the first, by the energy "
        "gate's rules (with 5+ runs before the last, the drift rule: the history's median and spread).",
    )
    compare.add_argument("sources", nargs="+", metavar="SOURCE", help="saved runs, folders of them, session folders")
    compare.add_argument("--plot", metavar="FILE", help="also draw each benchmark's runs as bars with error bars (PNG)")
    compare.add_argument(
        "--fail-above", type=_percentage, metavar="PCT", help="exit 1 when a benchmark regresses by more than PCT %%"
    )
    compare.set_defaults(func=run_compare)
