"""The picture of ``aienergyscore compare --plot``: per benchmark, one bar per run (the first is the baseline), with
error bars of one standard deviation over the run's repetitions.

Why it is shaped this way: a table of percentages hides whether a change is large against the noise; bars with their
repetitions' spread show it at a glance. One panel per benchmark with its own scale, since benchmarks differ by
orders of magnitude. Like :mod:`.plot`, matplotlib is imported only when the picture is drawn, through its object API.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_aienergyscore.records.atomic import write_bytes

EXTRA = "pytest-aienergyscore[label]"
MAX_PANELS = 24  # benchmarks drawn; a larger comparison is read in its table
BASELINE_COLOUR, RUN_COLOUR, LAST_COLOUR = "#9ca3af", "#93c5fd", "#2563eb"


@dataclass(frozen=True)
class PlotSeries:
    """One benchmark: each run's (label, figure or None when absent, standard deviation or None)."""

    benchmark: str
    runs: Sequence[tuple[str, float | None, float | None]]


def _colours(count: int) -> list[str]:
    """The baseline grey, the last run strong blue, the runs between light blue."""
    return [BASELINE_COLOUR if i == 0 else LAST_COLOUR if i == count - 1 else RUN_COLOUR for i in range(count)]


def compare_png(series: Sequence[PlotSeries]) -> bytes:
    """The comparison as PNG bytes (ImportError without matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(series)[:MAX_PANELS]
    runs = max((len(s.runs) for s in shown), default=1)
    figure = Figure(figsize=(max(5.0, 1.0 + 0.7 * runs), 0.4 + 2.4 * max(len(shown), 1)), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
    for ax, one in zip(axes, shown, strict=False):
        labels = [label for label, _, _ in one.runs]
        values = [value if value is not None else 0.0 for _, value, _ in one.runs]
        errors = [spread or 0.0 for _, _, spread in one.runs]
        ax.bar(labels, values, yerr=errors, capsize=4, color=_colours(len(labels)), edgecolor="#374151")
        for index, (_, value, _) in enumerate(one.runs):
            if value is None:
                ax.text(index, 0, "absent", ha="center", va="bottom", size=8)
        ax.set_title(one.benchmark, loc="left", size=10)
        ax.set_ylabel("Wh / 1k queries", size=8)
        ax.grid(axis="y", color="#d1d5db", linewidth=0.5)
    hidden = len(series) - len(shown)
    more = f" ({hidden} more benchmarks in the table)" if hidden > 0 else ""
    figure.suptitle(f"Baseline (grey) against each run; error bars: 1 s.d. over repetitions{more}", size=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_compare_plot(series: Sequence[PlotSeries], path: Path) -> Path:
    """Write the picture whole (a reader never sees half a PNG); ImportError without matplotlib."""
    return write_bytes(path, compare_png(series))
