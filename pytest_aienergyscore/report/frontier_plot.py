"""Energy against quality: what each model's energy bought, one panel per task (and model class, and metric).

A model that uses half the energy and gets half the answers wrong is not twice as efficient, so a model team needs
both figures in one picture: Wh per 1,000 queries across (log scale, as in :mod:`.plot`: energies span orders of
magnitude), the task's quality metric up (its direction said on the axis), every model of the session that has a
quality figure as a point, the models no other model beats on both (the frontier) joined by a line, and the published
leaderboard's energy range for the task (and class) as a shaded band, so a reader sees where the session's models
sit among the published ones. The leaderboard publishes no quality, so its range is a band, not points.

Drawn at the session's end as ``frontier.png`` in the session folder when at least one benchmark has quality.
matplotlib is imported only when the picture is drawn, through its object API (no pyplot), so a user's own plotting
state is never touched.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_aienergyscore.records.quality import quality_of
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.report.plot import write_picture
from pytest_aienergyscore.rules import leaderboard as score
from pytest_aienergyscore.rules.comparability import not_comparable_reasons
from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.rating import leaderboard_task
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FRONTIER_FILE = "frontier.png"
BAND_GID = "leaderboard-band"  # the band's id in the figure, so that tests (and readers of an SVG) can find it
FRONTIER_GID = "frontier"
MAX_NAMED = 24  # points named in one panel; a session of hundreds of models keeps its points but not every name
POINT_COLOUR = "#2563eb"
BAND_COLOUR = "#9ca3af"


@dataclass(frozen=True)
class FrontierPoint:
    """One benchmark: its model, energy (in the scope its meter measured, named in ``covers``) and quality."""

    label: str
    wh_per_1k: float
    quality: float
    comparable: bool
    covers: str  # device/meter, e.g. gpu/nvml or cpu/estimate: every energy figure says what it is


@dataclass
class FrontierPanel:
    """One task (and class) and one metric: the session's points and the published energy range of that task."""

    task: str
    model_class: str | None
    metric: str
    higher_is_better: bool
    points: list[FrontierPoint] = field(default_factory=list)
    band: tuple[float, float] | None = None  # published Wh per 1,000 queries, lowest to highest
    published: int = 0  # how many published models the band spans

    @property
    def title(self) -> str:
        klass = f", class {self.model_class}" if self.model_class else ""
        return f"{self.task}{klass}: {self.metric}"

    @property
    def quality_label(self) -> str:
        return f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better)"


def _short(model: str | None) -> str:
    return (model or "unknown").rstrip("/").rsplit("/", 1)[-1][:40]


def frontier_panels(records: Sequence[Record]) -> list[FrontierPanel]:
    """The panels for a session's records: every record with a quality figure and a per-1,000-queries energy (a
    benchmark cut short has none: its partial work per query would read as a cheap model)."""
    found: dict[tuple[str, str | None, str, bool], FrontierPanel] = {}
    for record in records:
        scored = quality_of(record.metadata)
        energy = record.wh_per_1000_queries()
        if scored is None or energy is None or energy <= 0:
            continue
        task = record.task or "unknown task"
        klass = record.model_class.upper() if task in CLASSED_TASKS and record.model_class else None
        key = (task, klass, str(scored["metric"]), bool(scored["higher_is_better"]))
        panel = found.get(key)
        if panel is None:
            panel = found[key] = FrontierPanel(*key)
            panel.band, panel.published = published_range(task, klass)
        covers = f"{record.headline_scope()}/{record.meter_name()}"
        point = FrontierPoint(
            _short(record.model), energy, float(scored["value"]), not not_comparable_reasons(record), covers
        )
        panel.points.append(point)
    return list(found.values())


def published_range(task: str, model_class: str | None) -> tuple[tuple[float, float] | None, int]:
    """The leaderboard's lowest and highest Wh per 1,000 queries for the task (within the class, for the tasks whose
    stars are binned per class, when the class is known), and how many models that spans; (None, 0) for a task the
    leaderboard does not publish."""
    published = leaderboard_task(task)
    if published is None:
        return None, 0
    rows = score.published_results(published)
    if published in CLASSED_TASKS and model_class in MODEL_CLASSES:
        rows = [row for row in rows if row.model_class == model_class]
    values = [row.wh_per_1k for row in rows if row.wh_per_1k > 0]
    return ((min(values), max(values)), len(values)) if values else (None, 0)


def frontier(points: Sequence[FrontierPoint], higher_is_better: bool) -> list[FrontierPoint]:
    """The points no other point beats on both energy and quality, from the cheapest up: each one further along buys
    better quality with more energy. The line a model team reads first."""
    sign = 1.0 if higher_is_better else -1.0
    best: list[FrontierPoint] = []
    for point in sorted(points, key=lambda p: (p.wh_per_1k, -sign * p.quality)):
        if not best or sign * point.quality > sign * best[-1].quality:
            best.append(point)
    return best


def _limits(panel: FrontierPanel) -> tuple[float, float]:
    values = [p.wh_per_1k for p in panel.points] + list(panel.band or ())
    return min(values) / 2.0, max(values) * 2.0


def _draw_panel(ax: Axes, panel: FrontierPanel) -> None:
    ax.set_xscale("log")
    ax.set_xlim(*_limits(panel))
    if panel.band is not None:
        low, high = panel.band
        label = f"published GPU energy range ({panel.published} models; the leaderboard publishes no quality)"
        ax.axvspan(low, high, color=BAND_COLOUR, alpha=0.25, linewidth=0, gid=BAND_GID, label=label)
    best = frontier(panel.points, panel.higher_is_better)
    if len(best) > 1:
        ax.plot(
            [p.wh_per_1k for p in best], [p.quality for p in best], color=POINT_COLOUR, linewidth=1.2,
            linestyle="--", zorder=3, gid=FRONTIER_GID, label="frontier: no model beats these on both",
        )  # fmt: skip
    for comparable in (True, False):
        chosen = [p for p in panel.points if p.comparable is comparable]
        if chosen:
            ax.scatter(
                [p.wh_per_1k for p in chosen], [p.quality for p in chosen], s=60, marker="D", linewidth=1.6,
                facecolor=POINT_COLOUR if comparable else "white", edgecolor=POINT_COLOUR, zorder=4,
                label="this session" + ("" if comparable else ", not comparable with the leaderboard (hollow)"),
            )  # fmt: skip
    for point in panel.points[:MAX_NAMED]:
        ax.annotate(
            f"{point.label} [{point.covers}]", (point.wh_per_1k, point.quality), xytext=(5, 4),
            textcoords="offset points", size=7,
        )  # fmt: skip
    ax.set_title(panel.title, loc="left", size=10)
    ax.set_xlabel("energy, Wh per 1,000 queries (log scale; [device/meter] of each point)")
    ax.set_ylabel(panel.quality_label)
    ax.grid(which="both", color="#d1d5db", linewidth=0.5, alpha=0.6)
    ax.legend(loc="best", fontsize=7, frameon=False)


def frontier_figure(records: Sequence[Record]) -> Figure | None:
    """The picture as a matplotlib Figure (what the tests read back); None when no record has quality."""
    found = frontier_panels(records)
    if not found:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 0.6 + 4.2 * len(found)), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(found), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, found, strict=True):
        _draw_panel(ax, panel)
    figure.suptitle("Energy against quality: what each model's energy bought", size=12)
    return figure


def frontier_png(records: Sequence[Record]) -> bytes | None:
    """The picture as PNG bytes; None when no record has quality."""
    figure = frontier_figure(records)
    if figure is None:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_frontier(records: Sequence[Record], session_dir: Path) -> tuple[Path | None, str | None]:
    """(frontier.png or None, note), by the session pictures' one rule (:func:`.plot.write_picture`)."""
    if not any(quality_of(record.metadata) for record in records):
        return None, None  # the common case costs no import
    return write_picture(lambda: frontier_png(records), session_dir / FRONTIER_FILE)
