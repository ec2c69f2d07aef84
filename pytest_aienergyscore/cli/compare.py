"""``aienergyscore compare A B [C ...]``: saved runs or results folders side by side, each benchmark's Wh per 1,000
queries in every run, the change of the last against the first, and the gate's verdict by the same rules as a
session (:func:`..gate.verdicts.compare_entry`: the drift rule when the runs before the last are a history of 5 or
more, else Welch's test on repetitions, else the threshold).

Why it is shaped this way: pytest-benchmark users compare saved runs offline (``pytest-benchmark compare``); a
folder of saved runs is read in its numbered order, so ``compare .energy/<machine>`` is the whole history of a
machine. Results folders are read from ``records.jsonl`` (every figure, with repetitions) or, failing that, from
``summary.json`` (one figure per benchmark, so the threshold alone decides).

Quality: a cheaper run that answers worse is no improvement, so where a run carries a quality figure the table shows
it beside the energy, and the last run's quality is compared with the run before it by the session gate's rule
(:func:`..gate.verdicts.compare_quality`, ``--quality-drop PCT`` as ``--energy-quality-drop``). The run before, not
the first: a quality figure is scored on fixed samples with deterministic outputs, so it has no noise for a history
to average, and the step that lost it is the one a reader must find.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotations only: the gate is imported when a comparison is drawn
    from pytest_aienergyscore.gate.verdicts import GateOutcome, GateSettings, Verdict

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
            return _checked([_saved(load_run(path))])
        if path.is_dir():
            saved = list_runs(path)
            if saved:
                return _checked([_saved(load_run(file)) for _, file in saved])
            if (path / RECORDS_FILE).is_file():
                return _checked([_from_records(path, warnings)])
            if (path / SUMMARY_JSON).is_file():
                return _checked([_from_summary(path, warnings)])
    except HistoryError as err:
        raise SourceError(str(err)) from None
    raise SourceError(f"{path}: not {ALLOWED}")


def _checked(runs: list[Run]) -> list[Run]:
    """The runs, once every quality figure in them is one the gate can read: a hand-edited or damaged file must be
    one line naming the value, not a traceback when the table formats it."""
    from pytest_aienergyscore.gate.quality_verdicts import quality_entry_problem

    for run in runs:
        for test, entry in run.entries.items():
            problem = quality_entry_problem(entry.get("quality"))
            if problem is not None:
                raise SourceError(f"{run.path}: {test}: {problem}")
    return runs


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
        "quality": _summary_quality(row.get("quality")),
    }


def _summary_quality(kept: Any) -> dict[str, Any] | None:
    """The summary row's quality as the gate compares it: None where it was never scored or could not be (a row
    with ``{"metric": null, "reason": ...}``), the figure as written otherwise (checked by :func:`_checked`)."""
    from pytest_aienergyscore.records.quality import QUALITY_KEY, quality_of

    if kept is not None and not isinstance(kept, dict):
        return kept  # not a quality at all: _checked names it
    return quality_of({QUALITY_KEY: kept})


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


def quality_cell(entry: dict[str, Any] | None) -> str:
    """A run's quality for a benchmark as the gate's verdicts name it (``accuracy 0.912``); "-" without one."""
    from pytest_aienergyscore.gate.quality_verdicts import describe

    scored = (entry or {}).get("quality")
    return describe(scored) if scored else "-"


def has_quality(runs: list[Run]) -> bool:
    """Whether any run carries a quality figure: only then has the table its quality columns and verdict rows, so a
    comparison of runs never scored reads as it did before quality was kept."""
    return any(entry.get("quality") for run in runs for entry in run.entries.values())


def run_before_last(runs: list[Run], test: str) -> Run | None:
    """The run whose quality the last run's is compared with: the nearest earlier run that holds the benchmark."""
    return next((run for run in reversed(runs[:-1]) if test in run.entries), None)


def quality_verdict(runs: list[Run], test: str, gate: GateSettings) -> tuple[Verdict | None, str | None]:
    """The quality verdict of the last run against the run before it, by the session gate's rule; or why it could
    not be compared (a warning, never a failure); (None, None) where there is nothing to compare."""
    from pytest_aienergyscore.gate.verdicts import compare_quality

    before, now = run_before_last(runs, test), runs[-1].entries.get(test)
    if before is None or now is None:
        return None, None
    return compare_quality(test, now, before.entries[test], gate)


def _run_cells(runs: list[Run], test: str, with_quality: bool) -> list[str]:
    """Each run's figure for the benchmark, followed by its quality where the table shows quality."""
    from pytest_aienergyscore.report.gate_table import format_figure

    cells: list[str] = []
    for run in runs:
        entry = run.entries.get(test)
        cells += [format_figure(figure_of(entry)), *([quality_cell(entry)] if with_quality else [])]
    return cells


def _energy_verdict(runs: list[Run], test: str, gate: GateSettings) -> Verdict:
    """The energy verdict of the last run against the first, the runs before the last as the drift history."""
    from pytest_aienergyscore.gate.verdicts import NO_BASELINE, Verdict, compare_entry

    first, last = runs[0], runs[-1]
    base, now = first.entries.get(test), last.entries.get(test)
    if base is None or now is None:
        where = first.label if base is None else last.label
        return Verdict(test, NO_BASELINE, reason=f"not in run {where}")
    history = [run.entries[test] for run in runs[:-1] if test in run.entries]
    return compare_entry(test, now, base, gate, history)


def comparison(
    runs: list[Run], fail_above: float | None, quality_drop: float | None = None
) -> tuple[list[tuple[str, ...]], GateOutcome]:
    """The table's rows and the gate's outcome: per benchmark, a row of its energy (and quality) in every run with
    the energy verdict, then, where quality was compared, a row with the quality verdict."""
    from pytest_aienergyscore.gate.verdicts import GateOutcome, GateSettings, add_quality_warnings
    from pytest_aienergyscore.report.gate_table import format_change

    gate = GateSettings(fail_above, quality_drop=quality_drop)
    with_quality = has_quality(runs)
    outcome = GateOutcome([], gate, runs[0].path)
    rows, blank = [], [""] * len(runs) * (2 if with_quality else 1)
    unmatched: list[tuple[str, str]] = []  # (test, why its quality was not compared): warned as the session warns
    for test in dict.fromkeys(t for run in runs for t in run.entries):
        name, verdict = test.rsplit("::", 1)[-1], _energy_verdict(runs, test, gate)
        outcome.verdicts.append(verdict)
        rows.append((name, *_run_cells(runs, test, with_quality), format_change(verdict.change_pct), verdict.label()))
        scored, problem = quality_verdict(runs, test, gate) if with_quality else (None, None)
        if scored is not None:
            outcome.verdicts.append(scored)
            rows.append((name, *blank, format_change(scored.change_pct), scored.label()))
        unmatched += [(test, problem)] if problem is not None else []
    add_quality_warnings(outcome, unmatched)
    if quality_drop is not None and not with_quality:
        outcome.notes.append(
            f"warning: --quality-drop {quality_drop:g}%: no run compared has a quality figure, so quality gates nothing"
        )
    return rows, outcome


QUALITY_LEGEND = (
    "quality: each run's metric and value; the verdict row compares the last run's quality against the run before it"
)


def render_comparison(
    runs: list[Run], fail_above: float | None, quality_drop: float | None = None
) -> tuple[list[str], GateOutcome]:
    """The lines compare prints (legend, table, warnings, headline) and the outcome that decides its exit status."""
    from pytest_aienergyscore.report.table import Column, text_table

    rows, outcome = comparison(runs, fail_above, quality_drop)
    with_quality = has_quality(runs)
    columns = [Column("benchmark", shorten=True)]
    for run in runs:
        columns += [Column(run.label, numeric=True), *([Column("quality")] if with_quality else [])]
    columns += [Column("change", numeric=True), Column("verdict")]
    lines = text_table(columns, rows, max_width=160)
    legend = [f"{run.label}: {run.path}" for run in runs]
    legend += ["Wh per 1,000 queries (total Wh where queries are unknown)", *([QUALITY_LEGEND] if with_quality else [])]
    return [*legend, *lines, *outcome.notes, outcome.headline()], outcome


# -- the command ----------------------------------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    """Print the comparison; exit 2 for a path that is none of what compare reads, 1 when --fail-above or
    --quality-drop fails."""
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
    lines, outcome = render_comparison(runs, args.fail_above, args.quality_drop)
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
        "gate's rules (with 5+ runs before the last, the drift rule: the history's median and spread). Where runs "
        "carry a quality figure, it stands beside each run's energy, and the last run's quality is compared with the "
        "run before it by the gate's quality rule.",
    )
    compare.add_argument("sources", nargs="+", metavar="SOURCE", help="saved runs, folders of them, session folders")
    compare.add_argument("--plot", metavar="FILE", help="also draw each benchmark's runs as bars with error bars (PNG)")
    compare.add_argument(
        "--fail-above", type=_percentage, metavar="PCT", help="exit 1 when a benchmark regresses by more than PCT %%"
    )
    compare.add_argument(
        "--quality-drop",
        "--energy-quality-drop",  # the session's name, which the quality verdicts quote: both work here
        type=_percentage,
        metavar="PCT",
        help="exit 1 when the last run's quality fell by more than PCT %% against the run before it",
    )
    compare.set_defaults(func=run_compare)
