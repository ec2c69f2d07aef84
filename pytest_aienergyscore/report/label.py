"""The energy label of one result: a 520 x 728 PNG (meant to be shown at 260 x 364) drawn with Pillow.

Everything on it comes from the run folder's own files (``GPU_ENERGY_SUMMARY.json``, ``benchmark_report.json``), so a
label can be drawn again later from a folder or a submission zip with ``aienergyscore label``. The layout reads top
to bottom in the order people ask: which model, which task, how many stars, how much energy, measured on what, and
whether it can stand beside the leaderboard. Text is set in Open Sans from the ``ttf-opensans`` package (the
``label`` extra), never a system font, so the label looks the same on every machine; without the package Pillow's
own font is used, with a warning.

Pillow is imported only when a label is drawn.
"""

from __future__ import annotations

import json
import math
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tasks import UnknownTask, get_task

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

LABEL_FILE = "label.png"
WIDTH, HEIGHT = 520, 728
DISPLAY_SIZE = (260, 364)
SUPERSAMPLE = 2  # drawn at twice the size and scaled down: smooth star edges and rounded corners

MARGIN = 28
STAR_OUTER = 36
STAR_GAP = 18
STAR_Y = 290
STAR_CENTERS = tuple(
    (round(WIDTH / 2 + (i - 2) * (2 * STAR_OUTER + STAR_GAP)), STAR_Y) for i in range(5)
)  # left to right: the first ``stars`` of them are filled

INK = "#111827"
MUTED = "#4b5563"
HEADER = "#14532d"
HEADER_TEXT = "#dcfce7"
STAR_FILL = "#f59e0b"
STAR_EDGE = "#b45309"
STAR_EMPTY = "#e5e7eb"
STAR_EMPTY_EDGE = "#9ca3af"
PANEL = "#f3f4f6"
CHIP = "#ecfdf5"
CHIP_EDGE = "#6ee7b7"
CHIP_TEXT = "#065f46"
WARN_FILL = "#fef3c7"
WARN_EDGE = "#f59e0b"
WARN_TEXT = "#78350f"
OK_FILL = "#dcfce7"
OK_EDGE = "#22c55e"

ENERGY_CAPTION = "Inference Energy (Wh) per 1k queries"
_FONT_FILES = {
    "regular": "OpenSans-Regular.ttf",
    "semibold": "OpenSans-SemiBold.ttf",
    "bold": "OpenSans-Bold.ttf",
    "extrabold": "OpenSans-ExtraBold.ttf",
}


@dataclass(frozen=True)
class LabelData:
    """What a label shows, taken from a run's files."""

    model: str
    provider: str
    task: str
    model_class: str | None
    date: str
    hardware: str
    measured: str
    wh_per_1k: float | None
    stars: int | None
    indicative: bool
    stars_note: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    edition: str | None = None


# -- data -------------------------------------------------------------------------------------------------------


def _model_and_provider(model: str | None) -> tuple[str, str]:
    """Hub ids read as provider/name; a local folder shows its name and says it is local."""
    if not model:
        return "unknown model", "unknown"
    if model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1:
        return Path(model).name or model, "local model"
    provider, _, name = model.rpartition("/")
    return name, provider or "unknown"


def _task_title(task: str | None) -> str:
    try:
        return get_task(task).title if task else "unknown task"
    except UnknownTask:
        return str(task)


def _hardware(summary: dict[str, Any]) -> str:
    hardware = summary.get("hardware") or {}
    if summary.get("device") == "gpu":
        names = [str(g.get("name") or "unknown GPU") for g in hardware.get("gpus") or []]
        if not names:
            return "unknown GPU"
        counts = {name: names.count(name) for name in dict.fromkeys(names)}
        return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items())
    return f"CPU: {hardware.get('cpu') or 'unknown'}"


def _measured(summary: dict[str, Any]) -> str:
    meter = str(summary.get("meter") or "unknown")
    how = {
        "nvml": "NVML energy counter",
        "nvml-power": "NVML power sampling",
        "rapl": "RAPL counters",
        "estimate": "CPU-time estimate",
    }.get(meter, meter)
    queries = summary.get("queries")
    return f"{how}, {queries:,} queries" if isinstance(queries, int) else how


def _date(summary: dict[str, Any], report: dict[str, Any] | None) -> str:
    if summary.get("scored_at"):
        return str(summary["scored_at"])
    finished = (report or {}).get("finished_at")
    return time.strftime("%Y-%m-%d", time.localtime(finished if finished else time.time()))


def label_data(summary: dict[str, Any], report: dict[str, Any] | None = None) -> LabelData:
    """The label's content from GPU_ENERGY_SUMMARY.json (and benchmark_report.json, for older summaries)."""
    name, provider = _model_and_provider(summary.get("model"))
    stars = summary.get("stars")
    bins = summary.get("star_bins") or {}
    return LabelData(
        model=name,
        provider=provider,
        task=_task_title(summary.get("task")),
        model_class=summary.get("model_class"),
        date=_date(summary, report),
        hardware=_hardware(summary),
        measured=_measured(summary),
        wh_per_1k=summary.get("wh_per_1000_queries"),
        stars=int(stars) if isinstance(stars, int) else None,
        indicative=not summary.get("comparable", False),
        stars_note=summary.get("stars_note"),
        reasons=tuple(summary.get("not_comparable_reasons") or ()),
        edition=bins.get("edition"),
    )


def read_run(source: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(summary, report) of a run folder or of a submission zip made from one."""
    if source.is_dir():
        summary = json.loads((source / "GPU_ENERGY_SUMMARY.json").read_text(encoding="utf-8"))
        report_path = source / "benchmark_report.json"
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
        return summary, report
    with zipfile.ZipFile(source) as zf:
        names = zf.namelist()
        found = [n for n in names if n.rsplit("/", 1)[-1] == "GPU_ENERGY_SUMMARY.json"]
        if len(found) != 1:
            raise ValueError(f"{source}: expected one GPU_ENERGY_SUMMARY.json in the archive, found {len(found)}")
        summary = json.loads(zf.read(found[0]))
        report_name = found[0].rsplit("/", 1)[0] + "/benchmark_report.json" if "/" in found[0] else ""
        report = json.loads(zf.read(report_name)) if report_name in names else None
    return summary, report


# -- fonts ------------------------------------------------------------------------------------------------------


def font_file(weight: str) -> Path | None:
    """The Open Sans TTF of ``weight`` shipped by the ttf-opensans package, or None when it is not installed."""
    try:
        node = resources.files("ttf_opensans").joinpath("ttf").joinpath(_FONT_FILES[weight])
    except ModuleNotFoundError:
        return None
    path = Path(str(node))
    return path if path.is_file() else None


@cache
def _font(weight: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    path = font_file(weight)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    _warn_missing_font()
    return ImageFont.load_default(size)


@cache
def _warn_missing_font() -> None:
    warnings.warn(
        "ttf-opensans is not installed: the energy label uses Pillow's default font "
        "(pip install 'pytest-aienergyscore[label]')",
        stacklevel=3,
    )


# -- drawing ----------------------------------------------------------------------------------------------------


class _Canvas:
    """Coordinates in label pixels (520 x 728); drawing happens at SUPERSAMPLE times that."""

    def __init__(self) -> None:
        from PIL import Image, ImageDraw

        self.image: Image.Image = Image.new("RGB", (WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE), "white")
        self.draw: ImageDraw.ImageDraw = ImageDraw.Draw(self.image)

    @staticmethod
    def s(value: float) -> int:
        return round(value * SUPERSAMPLE)

    def font(self, weight: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(weight, size * SUPERSAMPLE)

    def width(self, text: str, weight: str, size: int) -> float:
        return self.draw.textlength(text, font=self.font(weight, size)) / SUPERSAMPLE

    def text(self, xy: tuple[float, float], text: str, weight: str, size: int, fill: str, anchor: str = "la") -> None:
        self.draw.text((self.s(xy[0]), self.s(xy[1])), text, font=self.font(weight, size), fill=fill, anchor=anchor)

    def box(
        self, xyxy: tuple[float, float, float, float], radius: float, fill: str, outline: str | None = None
    ) -> None:
        self.draw.rounded_rectangle(
            [self.s(v) for v in xyxy], radius=self.s(radius), fill=fill, outline=outline, width=self.s(1.5)
        )

    def polygon(self, points: list[tuple[float, float]], fill: str, outline: str) -> None:
        self.draw.polygon([(self.s(x), self.s(y)) for x, y in points], fill=fill, outline=outline, width=self.s(2))

    def fit(self, text: str, weight: str, sizes: tuple[int, ...], width: float) -> tuple[str, int]:
        """The largest size at which ``text`` fits ``width``; at the smallest, the text cut with an ellipsis."""
        for size in sizes:
            if self.width(text, weight, size) <= width:
                return text, size
        size = sizes[-1]
        while text and self.width(text + "…", weight, size) > width:
            text = text[:-1]
        return text.rstrip() + "…", size

    def finish(self) -> Image.Image:
        from PIL import Image

        return self.image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)


def star_points(cx: float, cy: float, outer: float, inner_ratio: float = 0.48) -> list[tuple[float, float]]:
    """A five-pointed star with one point up, as ten alternating outer and inner vertices."""
    points = []
    for i in range(10):
        radius = outer if i % 2 == 0 else outer * inner_ratio
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def format_energy(value: float | None) -> str:
    """Three significant figures (2.80, 12.3, 0.0421), never a bare 0.00 for a small real figure."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 0.01:
        decimals = 2 - math.floor(math.log10(magnitude))
        return f"{value:.{decimals}f}"
    return f"{value:.2e}"


def _header(c: _Canvas) -> None:
    c.draw.rectangle([0, 0, c.s(WIDTH), c.s(96)], fill=HEADER)
    c.text((MARGIN, 14), "AI Energy Score", "extrabold", 36, "white")
    c.text((MARGIN, 62), "INFERENCE ENERGY LABEL", "semibold", 17, HEADER_TEXT)
    bolt = [(478, 18), (452, 52), (468, 52), (458, 80), (488, 42), (471, 42), (482, 18)]
    c.polygon([(x, y) for x, y in bolt], fill=STAR_FILL, outline=STAR_FILL)


def _identity(c: _Canvas, data: LabelData) -> None:
    name, size = c.fit(data.model, "bold", (32, 28, 24, 21), WIDTH - 2 * MARGIN)
    c.text((MARGIN, 128), name, "bold", size, INK, anchor="lm")
    provider = c.fit(f"Provider: {data.provider}", "regular", (20,), WIDTH - 2 * MARGIN)[0]
    c.text((MARGIN, 150), provider, "regular", 20, MUTED)
    x: float = MARGIN
    for chip in (data.task, f"Class {data.model_class}" if data.model_class else None):
        if not chip:
            continue
        width = c.width(chip, "semibold", 19) + 24
        c.box((x, 188, x + width, 222), 17, CHIP, CHIP_EDGE)
        c.text((x + 12, 205), chip, "semibold", 19, CHIP_TEXT, anchor="lm")
        x += width + 10


def _stars(c: _Canvas, data: LabelData) -> None:
    earned = data.stars or 0
    for index, (cx, cy) in enumerate(STAR_CENTERS):
        filled = index < earned
        points = star_points(cx, cy, STAR_OUTER)
        c.polygon(points, STAR_FILL if filled else STAR_EMPTY, STAR_EDGE if filled else STAR_EMPTY_EDGE)
    if data.stars is None:
        note = (data.stars_note or "not rated").split(" (")[0]  # the label has room for the gist only
        caption, size = c.fit(f"No stars: {note}", "semibold", (20, 18), WIDTH - 2 * MARGIN)
        c.text((WIDTH / 2, 348), caption, "semibold", size, MUTED, anchor="mm")
        return
    caption = f"{data.stars} of 5 stars" + (" (indicative)" if data.indicative else "")
    c.text((WIDTH / 2, 348), caption, "bold", 22, INK, anchor="mm")


def _energy(c: _Canvas, data: LabelData) -> None:
    c.box((MARGIN, 372, WIDTH - MARGIN, 482), 14, PANEL)
    number = format_energy(data.wh_per_1k)
    c.text((MARGIN + 20, 420), number, "extrabold", 52, INK, anchor="ls")
    unit_x = MARGIN + 20 + c.width(number, "extrabold", 52) + 10
    c.text((unit_x, 420), "Wh", "bold", 26, MUTED, anchor="ls")
    c.text((MARGIN + 20, 454), ENERGY_CAPTION, "semibold", 19, INK, anchor="lm")


def _details(c: _Canvas, data: LabelData) -> None:
    rows = (("Hardware", data.hardware), ("Measured", data.measured), ("Scored", data.date))
    key_width = 104
    for index, (key, value) in enumerate(rows):
        y = 508 + index * 29
        c.text((MARGIN, y), key, "bold", 18, MUTED, anchor="lm")
        text = c.fit(value, "regular", (18, 16), WIDTH - 2 * MARGIN - key_width)[0]
        c.text((MARGIN + key_width, y), text, "regular", 18, INK, anchor="lm")


def _note(c: _Canvas, data: LabelData) -> None:
    """Whether the result can stand beside the leaderboard; if not, the first reasons, one a line."""
    top = 588
    if not data.reasons:
        c.box((MARGIN, top + 28, WIDTH - MARGIN, top + 78), 10, OK_FILL, OK_EDGE)
        c.text((WIDTH / 2, top + 53), "Comparable with the leaderboard", "bold", 19, CHIP_TEXT, anchor="mm")
        return
    shown = list(data.reasons[:3])
    if len(data.reasons) > 3:
        shown[2] = f"and {len(data.reasons) - 2} more reasons (GPU_ENERGY_SUMMARY.json)"
    c.box((MARGIN, top, WIDTH - MARGIN, top + 34 + 22 * len(shown)), 10, WARN_FILL, WARN_EDGE)
    c.text((MARGIN + 14, top + 19), "Not comparable with the leaderboard", "bold", 18, WARN_TEXT, anchor="lm")
    width = WIDTH - 2 * MARGIN - 44
    for index, reason in enumerate(shown):
        y = top + 44 + index * 22
        c.text((MARGIN + 16, y), "•", "bold", 17, WARN_TEXT, anchor="lm")
        c.text((MARGIN + 30, y), c.fit(reason, "regular", (17,), width)[0], "regular", 17, WARN_TEXT, anchor="lm")


def _footer(c: _Canvas, data: LabelData) -> None:
    edition = f" · stars vs. leaderboard {data.edition}" if data.edition else ""
    c.text((WIDTH / 2, 713), f"pytest-aienergyscore{edition}", "regular", 15, MUTED, anchor="mm")


def render_label(data: LabelData) -> Image.Image:
    """The label as a 520 x 728 RGB image."""
    canvas = _Canvas()
    c = canvas
    c.box((1, 1, WIDTH - 1, HEIGHT - 1), 0, "white", HEADER)
    _header(c)
    _identity(c, data)
    _stars(c, data)
    _energy(c, data)
    _details(c, data)
    _note(c, data)
    _footer(c, data)
    return canvas.finish()


def write_label(path: Path, summary: dict[str, Any], report: dict[str, Any] | None = None) -> str | None:
    """Draw and save the label; returns why not (Pillow missing, a bad summary) instead of failing a session."""
    try:
        image = render_label(label_data(summary, report))
        image.save(path, format="PNG", dpi=(144, 144))
    except ImportError as err:
        return f"Pillow is not installed ({err}); pip install 'pytest-aienergyscore[label]'"
    except Exception as err:  # a picture must never cost a session its measurements
        return f"{type(err).__name__}: {err}"
    return None


__all__ = [
    "DISPLAY_SIZE",
    "ENERGY_CAPTION",
    "HEIGHT",
    "LABEL_FILE",
    "STAR_CENTERS",
    "WIDTH",
    "LabelData",
    "label_data",
    "read_run",
    "render_label",
    "write_label",
]
