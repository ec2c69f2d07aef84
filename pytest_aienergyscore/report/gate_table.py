"""The energy gate's verdicts as a table, for the terminal and the Markdown job summary.

The gate (below ``report/`` in the layers) gives its verdicts as data, :class:`GateOutcome`; how they read in a
table is decided here, through the same renderer as the results table (:mod:`.table`).
"""

from __future__ import annotations

from pytest_aienergyscore.gate.quality_verdicts import QUALITY
from pytest_aienergyscore.gate.verdicts import GateOutcome, Verdict
from pytest_aienergyscore.report.table import Column, markdown_table, text_table

VERDICT_COLUMNS = (
    Column("benchmark"),
    Column("figure"),
    Column("baseline", numeric=True),
    Column("current", numeric=True),
    Column("change", numeric=True),
    Column("verdict"),
)
METRIC_LABELS = {"wh_per_1000_queries": "Wh/1k queries", "total_wh": "total Wh"}


def figure_label(verdict: Verdict) -> str:
    """What a verdict compares: an energy figure, or a quality metric (named, so WER and accuracy read apart)."""
    if verdict.kind == QUALITY:
        return f"{verdict.metric} (quality)"
    return METRIC_LABELS.get(verdict.metric or "", "-")


def format_figure(value: float | None) -> str:
    """Three decimals with thousands separators, or scientific below 0.01 so a small figure never reads as 0."""
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:,.3f}"
    return f"{value:.3e}"


def format_change(change: float | None) -> str:
    """A signed percentage: a rise must never be mistaken for a fall."""
    return "-" if change is None else f"{change:+.1f}%"


def verdict_rows(outcome: GateOutcome, full_ids: bool = False) -> list[tuple[str, ...]]:
    """One row per verdict; the terminal shows the test's name, Markdown (read in a browser) its whole id."""
    return [
        (
            v.test if full_ids else v.test.rsplit("::", 1)[-1],
            figure_label(v),
            format_figure(v.baseline),
            format_figure(v.current),
            format_change(v.change_pct),
            v.label(),
        )
        for v in outcome.verdicts
    ]


def render_gate(outcome: GateOutcome) -> list[str]:
    """The verdict table, then the notes, then the headline; as plain lines for the terminal."""
    lines = text_table(VERDICT_COLUMNS, verdict_rows(outcome))
    lines += [note if note.startswith("warning:") else f"note: {note}" for note in outcome.notes]
    return [*lines, outcome.headline()]


def gate_markdown(outcome: GateOutcome) -> list[str]:
    """The gate's section of the Markdown job summary: heading, verdicts, notes as a list, the headline in bold."""
    lines = [f"### Energy gate: {'FAILED' if outcome.failed else 'passed'}", ""]
    lines += markdown_table(VERDICT_COLUMNS, verdict_rows(outcome, full_ids=True))
    return lines + [""] + [f"- {note}" for note in outcome.notes] + ["", f"**{outcome.headline()}**"]
