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

import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from pytest_aienergyscore.records.atomic import write_bytes
from pytest_aienergyscore.report.safe_zip import checked_members, open_archive, read_small
from pytest_aienergyscore.rules.tasks import UnknownTask, get_task

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


RUN_JSON_LIMIT = 64 << 20  # a summary or report larger than this is not one this plugin wrote


def read_run(source: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(summary, report) of a run folder or of a submission zip made from one; ValueError (one line) for anything
    else. A zip may come from someone else: it passes :mod:`.safe_zip`'s checks and its JSON is read capped."""
    if source.is_dir():
        report_path = source / "benchmark_report.json"
        summary = _run_json("GPU_ENERGY_SUMMARY.json", _read_capped_file(source / "GPU_ENERGY_SUMMARY.json"))
        report = _run_json(report_path.name, _read_capped_file(report_path)) if report_path.is_file() else None
        return summary, report
    with open_archive(source) as zf:
        members = {info.filename: info for info in checked_members(zf)}
        found = [n for n in members if n.rsplit("/", 1)[-1] == "GPU_ENERGY_SUMMARY.json"]
        if len(found) != 1:
            raise ValueError(f"{source}: expected one GPU_ENERGY_SUMMARY.json in the archive, found {len(found)}")
        summary = _run_json(found[0], read_small(zf, members[found[0]], RUN_JSON_LIMIT))
        report_name = found[0].rsplit("/", 1)[0] + "/benchmark_report.json" if "/" in found[0] else ""
        info = members.get(report_name)
        report = _run_json(report_name, read_small(zf, info, RUN_JSON_LIMIT)) if info is not None else None
    return summary, report


def _read_capped_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > RUN_JSON_LIMIT:
        raise ValueError(f"{path.name} holds {size} bytes, more than the {RUN_JSON_LIMIT} expected")
    return path.read_bytes()


def _run_json(name: str, data: bytes) -> dict[str, Any]:
    """A JSON object, or ValueError naming the file: not JSON, nested beyond what a parser follows, or no object."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to be a run's file") from None
    except ValueError as err:
        raise ValueError(f"{name} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} holds a {type(value).__name__}, not the JSON object a run writes")
    return value


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
#
# A session may end with hundreds of labels, so a label is not drawn from scratch: what every label shares (frame,
# header, panel, captions, footer) is drawn once, supersampled, and kept; the rows of stars and the rounded boxes
# likewise, once per shape. A label is a copy of that background with its own parts pasted and its text set at
# the final size (FreeType anti-aliases text by itself). It is saved as a 256-colour PNG in a fixed palette of the
# label's own colours and their blends: a tenth of the time and a third of the bytes of a true-colour PNG, and the
# same picture to the eye.


class _Surface:
    """Drawing in label pixels (520 x 728) on an image ``scale`` times that size."""

    scale = 1

    def __init__(self, image: Image.Image) -> None:
        from PIL import ImageDraw

        self.image = image
        self.draw: ImageDraw.ImageDraw = ImageDraw.Draw(image)

    def s(self, value: float) -> int:
        return round(value * self.scale)

    def font(self, weight: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(weight, size * self.scale)

    def width(self, text: str, weight: str, size: int) -> float:
        return self.draw.textlength(text, font=self.font(weight, size)) / self.scale

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


class _Canvas(_Surface):
    """A supersampled drawing of ``size`` label pixels: smooth star edges and rounded corners once scaled down."""

    scale = SUPERSAMPLE

    def __init__(self, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
        from PIL import Image

        self.size = size
        super().__init__(Image.new("RGB", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), "white"))

    def finish(self) -> Image.Image:
        from PIL import Image

        return self.image.resize(self.size, Image.Resampling.LANCZOS)


class _Page(_Surface):
    """One label at its final size, on a copy of the shared background. Boxes come from cached smooth patches and
    text from cached glyph masks: most strings (captions, hardware, reasons) repeat from label to label, and
    setting type is most of what a label costs. The result is the same pixels as drawing the text."""

    def text(self, xy: tuple[float, float], text: str, weight: str, size: int, fill: str, anchor: str = "la") -> None:
        mask, (left, top) = _text_mask(text, self.font(weight, size), anchor)
        self.image.paste(fill, (round(xy[0]) + left, round(xy[1]) + top), mask)

    def width(self, text: str, weight: str, size: int) -> float:
        return _text_width(text, self.font(weight, size))

    def box(
        self, xyxy: tuple[float, float, float, float], radius: float, fill: str, outline: str | None = None
    ) -> None:
        x0, y0, x1, y1 = xyxy
        self.image.paste(_box_patch(round(x1 - x0), round(y1 - y0), radius, fill, outline), (round(x0), round(y0)))


Font = Union["ImageFont.FreeTypeFont", "ImageFont.ImageFont"]


@lru_cache(maxsize=4096)
def _text_mask(text: str, font: Font, anchor: str) -> tuple[Image.Image, tuple[int, int]]:
    """``text`` in ``font`` as an "L" coverage mask and the offset of its top left from the anchor point."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = (round(v) for v in font.getbbox(text, anchor=anchor))
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255, anchor=anchor)
    return mask, (left, top)


@lru_cache(maxsize=4096)
def _text_width(text: str, font: Font) -> float:
    return float(font.getlength(text))


@lru_cache(maxsize=256)
def _box_patch(width: int, height: int, radius: float, fill: str, outline: str | None) -> Image.Image:
    """A rounded box on white, drawn supersampled (chips and notes sit on the white page)."""
    canvas = _Canvas((width + 1, height + 1))
    canvas.box((0, 0, width, height), radius, fill, outline)
    return canvas.finish()


STAR_ROW_TOP = STAR_Y - STAR_OUTER - 4
STAR_ROW_SIZE = (WIDTH - 2 * MARGIN, 2 * STAR_OUTER + 8)


@cache
def _star_row(earned: int) -> Image.Image:
    """The five stars, the first ``earned`` filled, as a patch that goes at (MARGIN, STAR_ROW_TOP)."""
    canvas = _Canvas(STAR_ROW_SIZE)
    for index, (cx, cy) in enumerate(STAR_CENTERS):
        filled = index < earned
        points = star_points(cx - MARGIN, cy - STAR_ROW_TOP, STAR_OUTER)
        canvas.polygon(points, STAR_FILL if filled else STAR_EMPTY, STAR_EDGE if filled else STAR_EMPTY_EDGE)
    return canvas.finish()


def _background(edition: str | None) -> Image.Image:
    return _background_in(edition, _font("regular", 15))


@cache
def _background_in(edition: str | None, font: Font) -> Image.Image:
    """Everything labels of one star edition share: frame, header, the energy panel, captions and the footer; kept
    per set of fonts (``font`` stands for them), so a label never mixes two."""
    c = _Canvas()
    c.box((1, 1, WIDTH - 1, HEIGHT - 1), 0, "white", HEADER)
    _header(c)
    c.box((MARGIN, 372, WIDTH - MARGIN, 482), 14, PANEL)
    c.text((MARGIN + 20, 454), ENERGY_CAPTION, "semibold", 19, INK, anchor="lm")
    for index, key in enumerate(DETAIL_KEYS):
        c.text((MARGIN, 508 + index * 29), key, "bold", 18, MUTED, anchor="lm")
    _footer(c, edition)
    return c.finish()


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


DETAIL_KEYS = ("Hardware", "Measured", "Scored")


def _header(c: _Surface) -> None:
    c.draw.rectangle([0, 0, c.s(WIDTH), c.s(96)], fill=HEADER)
    c.text((MARGIN, 14), "AI Energy Score", "extrabold", 36, "white")
    c.text((MARGIN, 62), "INFERENCE ENERGY LABEL", "semibold", 17, HEADER_TEXT)
    bolt = [(478, 18), (452, 52), (468, 52), (458, 80), (488, 42), (471, 42), (482, 18)]
    c.polygon([(x, y) for x, y in bolt], fill=STAR_FILL, outline=STAR_FILL)


def _identity(c: _Surface, data: LabelData) -> None:
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


def _stars(c: _Surface, data: LabelData) -> None:
    c.image.paste(_star_row(data.stars or 0), (MARGIN, STAR_ROW_TOP))
    if data.stars is None:
        note = (data.stars_note or "not rated").split(" (")[0]  # the label has room for the gist only
        caption, size = c.fit(f"No stars: {note}", "semibold", (20, 18), WIDTH - 2 * MARGIN)
        c.text((WIDTH / 2, 348), caption, "semibold", size, MUTED, anchor="mm")
        return
    caption = f"{data.stars} of 5 stars" + (" (indicative)" if data.indicative else "")
    c.text((WIDTH / 2, 348), caption, "bold", 22, INK, anchor="mm")


def _energy(c: _Surface, data: LabelData) -> None:
    number = format_energy(data.wh_per_1k)
    c.text((MARGIN + 20, 420), number, "extrabold", 52, INK, anchor="ls")
    unit_x = MARGIN + 20 + c.width(number, "extrabold", 52) + 10
    c.text((unit_x, 420), "Wh", "bold", 26, MUTED, anchor="ls")


def _details(c: _Surface, data: LabelData) -> None:
    key_width = 104
    for index, value in enumerate((data.hardware, data.measured, data.date)):
        text = c.fit(value, "regular", (18, 16), WIDTH - 2 * MARGIN - key_width)[0]
        c.text((MARGIN + key_width, 508 + index * 29), text, "regular", 18, INK, anchor="lm")


def _note(c: _Surface, data: LabelData) -> None:
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


def _footer(c: _Surface, edition: str | None) -> None:
    suffix = f" · stars vs. leaderboard {edition}" if edition else ""
    c.text((WIDTH / 2, 713), f"pytest-aienergyscore{suffix}", "regular", 15, MUTED, anchor="mm")


def render_label(data: LabelData) -> Image.Image:
    """The label as a 520 x 728 RGB image."""
    page = _Page(_background(data.edition).copy())
    _identity(page, data)
    _stars(page, data)
    _energy(page, data)
    _details(page, data)
    _note(page, data)
    return page.image


# Which colour is drawn on which: the palette holds each pair and the blends between them (anti-aliased edges).
_COLOUR_PAIRS = (
    (INK, "#ffffff"),
    (MUTED, "#ffffff"),
    (HEADER, "#ffffff"),
    ("#ffffff", HEADER),
    (HEADER_TEXT, HEADER),
    (STAR_FILL, HEADER),
    (STAR_FILL, "#ffffff"),
    (STAR_EDGE, "#ffffff"),
    (STAR_EDGE, STAR_FILL),
    (STAR_EMPTY_EDGE, "#ffffff"),
    (STAR_EMPTY_EDGE, STAR_EMPTY),
    (PANEL, "#ffffff"),
    (INK, PANEL),
    (MUTED, PANEL),
    (CHIP_EDGE, "#ffffff"),
    (CHIP_EDGE, CHIP),
    (CHIP_TEXT, CHIP),
    (WARN_EDGE, "#ffffff"),
    (WARN_EDGE, WARN_FILL),
    (WARN_TEXT, WARN_FILL),
    (OK_EDGE, "#ffffff"),
    (OK_EDGE, OK_FILL),
    (CHIP_TEXT, OK_FILL),
)
_BLEND_STEPS = 10


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@cache
def _palette() -> Image.Image:
    """A "P" image whose palette is the label's colours and ``_BLEND_STEPS`` blends of each pair drawn together."""
    from PIL import Image

    colours: dict[tuple[int, int, int], None] = {}
    for fore, back in _COLOUR_PAIRS:
        a, b = _rgb(fore), _rgb(back)
        for step in range(_BLEND_STEPS + 1):
            t = step / _BLEND_STEPS
            colours[tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))] = None  # type: ignore[index]
    flat = [channel for colour in list(colours)[:256] for channel in colour]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[-3:] * (256 - len(flat) // 3))
    return palette


@lru_cache(maxsize=64)
def _png(data: LabelData) -> bytes:
    """The label as PNG bytes; labels with the same content (a parametrized session) are drawn once."""
    from PIL import Image

    image = render_label(data).quantize(palette=_palette(), dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(144, 144), compress_level=3)  # half the time of 6, a few % larger
    return buffer.getvalue()


def label_png(summary: dict[str, Any], report: dict[str, Any] | None = None) -> bytes:
    """The label of a run as PNG bytes; ImportError without Pillow."""
    return _png(label_data(summary, report))


def write_label(path: Path, summary: dict[str, Any], report: dict[str, Any] | None = None) -> str | None:
    """Draw and save the label (whole or not at all); returns why not (Pillow missing, a bad summary, a file that
    cannot be written) instead of failing a session."""
    try:
        write_bytes(path, label_png(summary, report))
    except ImportError as err:
        return f"Pillow is not installed ({err}); pip install 'pytest-aienergyscore[label]'"
    except OSError as err:
        return str(err)
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
    "label_png",
    "read_run",
    "render_label",
    "write_label",
]
