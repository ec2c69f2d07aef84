"""One picture per session: this session's models among the published models of each task benchmarked.

A panel per leaderboard task (per task and model class for text generation and reasoning, whose stars are binned per
class): the published models as grey dots, this session's results as coloured diamonds (a row per model), Wh per
1,000 queries on a log axis (the published energies span three orders of magnitude), and the five star bands shaded
behind them so that a reader sees at once which band a result falls in. Results that are not comparable are drawn
hollow.

matplotlib is imported only when the picture is drawn, through its object API (no pyplot), so that a user's own
plotting state is never touched.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.records.atomic import write_if_changed
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.rating import leaderboard_task
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS

PLOT_FILE = "energy_plot.png"
EXTRA = "pytest-aienergyscore[label]"
MAX_ROWS = 24  # rows of this session's results in one panel
BAND_COLOURS = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027")  # 5 stars ... 1 star


@dataclass
class Panel:
    """One task (and class): the published energies and this session's points, all in Wh per 1,000 queries."""

    task: str
    model_class: str | None
    published: list[tuple[str, float]] = field(default_factory=list)
    ours: list[tuple[str, float, bool]] = field(default_factory=list)  # (label, value, comparable)
    bands: tuple[float, ...] | None = None

    @property
    def title(self) -> str:
        klass = f", class {self.model_class}" if self.model_class else ""
        unknown = " (class unknown: no star bands)" if self.bands is None else ""
        return f"{self.task}{klass}{unknown}"


def _short(model: str | None) -> str:
    return (model or "unknown").rstrip("/").rsplit("/", 1)[-1][:40]


def panels(records: Sequence[Record]) -> list[Panel]:
    """The panels for a session's records; records whose task has no published results are left out."""
    found: dict[tuple[str, str | None], Panel] = {}
    for record in records:
        task = leaderboard_task(record.task)
        value = record.wh_per_1000_queries()
        if task is None or value is None or value <= 0:
            continue
        klass = None
        if task in CLASSED_TASKS and record.model_class:
            klass = record.model_class.upper()
        panel = found.get((task, klass))
        if panel is None:
            panel = found[(task, klass)] = _new_panel(task, klass)
        panel.ours.append((_short(record.model), value, not not_comparable_reasons(record)))
    return list(found.values())


def _new_panel(task: str, klass: str | None) -> Panel:
    rows = score.published_results(task)
    if task in CLASSED_TASKS and klass in MODEL_CLASSES:
        rows = [row for row in rows if row.model_class == klass]
    panel = Panel(task, klass, published=[(row.model, row.wh_per_1k) for row in rows])
    if task not in CLASSED_TASKS or klass in MODEL_CLASSES:
        bins = score.star_bins(task, klass if task in CLASSED_TASKS else None)
        panel.bands = tuple(edge * 1000.0 for edge in (bins.low, *bins.edges, bins.high))
    return panel


def _limits(panel: Panel) -> tuple[float, float]:
    values = [v for _, v in panel.published] + [v for _, v, _ in panel.ours] + list(panel.bands or ())
    return min(values) / 2.0, max(values) * 2.0


def session_rows(panel: Panel) -> list[tuple[str, list[tuple[float, bool]]]]:
    """This session's points by model, one row each (a model run several ways shows its results side by side), at
    most MAX_ROWS: the models beyond share a last row, so that a session of hundreds of benchmarks still draws a
    picture one can read (and draws it in a second, not in minutes)."""
    rows: dict[str, list[tuple[float, bool]]] = {}
    for name, value, comparable in panel.ours:
        rows.setdefault(name, []).append((value, comparable))
    named = list(rows.items())
    if len(named) <= MAX_ROWS:
        return named
    rest = named[MAX_ROWS - 1 :]
    return [*named[: MAX_ROWS - 1], (f"{len(rest)} more models", [p for _, points in rest for p in points])]


def _draw_panel(ax: Any, panel: Panel, rows: list[tuple[str, list[tuple[float, bool]]]]) -> None:
    low, high = _limits(panel)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    if panel.bands:
        edges = [low, *panel.bands[1:5], high]
        for stars, (left, right) in zip(range(5, 0, -1), itertools.pairwise(edges), strict=True):
            ax.axvspan(left, right, color=BAND_COLOURS[5 - stars], alpha=0.22, linewidth=0)
            centre = (left * right) ** 0.5
            ax.text(centre, 1.02, f"{stars}★", transform=ax.get_xaxis_transform(), ha="center", va="bottom", size=8)
    ys = [0.0] * len(panel.published)
    ax.scatter([v for _, v in panel.published], ys, s=22, color="#6b7280", alpha=0.8, label="published", zorder=3)
    for index, (_, points) in enumerate(rows, start=1):
        for comparable in (True, False):
            values = [value for value, ok in points if ok is comparable]
            if values:
                face = "#2563eb" if comparable else "white"
                ax.scatter(
                    values, [index] * len(values), s=70, marker="D", facecolor=face, edgecolor="#2563eb",
                    linewidth=1.6, zorder=4,
                )  # fmt: skip
    ax.set_yticks(range(len(rows) + 1), [f"published ({len(panel.published)})", *(name for name, _ in rows)])
    ax.set_ylim(-0.8, len(rows) + 0.8)
    ax.set_title(panel.title, loc="left", size=10, pad=14)
    ax.grid(axis="x", which="both", color="#d1d5db", linewidth=0.5, alpha=0.6)


def plot_png(records: Sequence[Record]) -> bytes | None:
    """The session plot as PNG bytes; None when no record has a task with published results."""
    found = panels(records)
    if not found:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [session_rows(panel) for panel in found]
    heights = [1.4 + 0.35 * len(r) for r in rows]
    figure = Figure(figsize=(9, sum(heights) + 0.9), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(found), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, panel, panel_rows in zip(axes, found, rows, strict=True):
        _draw_panel(ax, panel, panel_rows)
    axes[-1].set_xlabel("GPU energy, Wh per 1,000 queries (log scale); hollow: not comparable with the leaderboard")
    figure.suptitle("This session against the AI Energy Score leaderboard", size=12)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def draw_plot(records: Sequence[Record], path: Path) -> Path | None:
    """Write the session plot to ``path`` (whole, and only when it changed); None when there is nothing to draw."""
    data = plot_png(records)
    if data is None:
        return None
    write_if_changed(path, data)
    return path


def write_plot(records: Sequence[Record], session_dir: Path) -> tuple[Path | None, str | None]:
    """(plot path or None, note), by :func:`write_picture`'s rule."""
    return write_picture(lambda: plot_png(records), session_dir / PLOT_FILE)


def write_picture(draw: Callable[[], bytes | None], path: Path) -> tuple[Path | None, str | None]:
    """(path or None, note): the one rule of every session picture. One that cannot be drawn is a note, never a
    failed session; nothing to draw (``draw`` gives None) is neither; one that cannot be written raises WriteFailed,
    as every other result file does."""
    try:
        data = draw()
    except ImportError as err:
        return None, f"{path.name} not drawn: matplotlib is not installed ({err}); pip install '{EXTRA}'"
    except Exception as err:  # a picture must never cost a session its results
        return None, f"{path.name} not drawn: {type(err).__name__}: {err}"
    if data is None:
        return None, None
    write_if_changed(path, data)
    return path, None
