"""The energy label of one result: a 520 x 728 PNG (meant to be shown at 260 x 364) drawn with Pillow.

Everything on it comes from the run folder's own files (``GPU_ENERGY_SUMMARY.json``, ``benchmark_report.json``), so a
label can be drawn again later from a folder or a submission zip with ``aienergyscore label``. The layout reads top
to bottom in the order people ask: which model, which task, how many stars, how much energy, measured on what, and
whether it can stand beside the leaderboard. What it shows is read in :mod:`.label_data`; the surfaces and fonts it
is drawn on are in :mod:`.label_canvas`; this module holds the layout and the PNG.

Pillow is imported only when a label is drawn.
"""

from __future__ import annotations

import io
import math
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.records.atomic import write_bytes
from pytest_aienergyscore.report.label_canvas import HEIGHT, WIDTH, Canvas, Font, Page, Surface, load_font
from pytest_aienergyscore.report.label_data import LabelData, label_data

if TYPE_CHECKING:
    from PIL import Image

LABEL_FILE = "label.png"
DISPLAY_SIZE = (260, 364)

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


# -- the layout ----------------------------------------------------------------------------------------------------
#
# A session may end with hundreds of labels, so a label is not drawn from scratch: what every label shares (frame,
# header, panel, captions, footer) is drawn once, supersampled, and kept; the rows of stars and the rounded boxes
# likewise, once per shape. A label is a copy of that background with its own parts pasted and its text set at
# the final size (FreeType anti-aliases text by itself). It is saved as a 256-colour PNG in a fixed palette of the
# label's own colours and their blends: a tenth of the time and a third of the bytes of a true-colour PNG, and the
# same picture to the eye.


STAR_ROW_TOP = STAR_Y - STAR_OUTER - 4
STAR_ROW_SIZE = (WIDTH - 2 * MARGIN, 2 * STAR_OUTER + 8)


# An indicative label (not comparable, or an estimate) must not pass for an official one once cropped: its stars are
# outlines only and the words run in a band through the middle of every star.
STAMP_WORDS = "INDICATIVE, NOT COMPARABLE"
STAMP_BAND = (STAR_Y - 14, STAR_Y + 14)  # label rows the band covers
STAMP_INSET = 8  # the words run from MARGIN + 8 to WIDTH - MARGIN - 8: past the outer points of the end stars
HOLLOW_EDGE = 3  # a hollow star's outline is drawn thicker than a filled one's, so the count still reads


@cache
def _star_row(earned: int, hollow: bool = False, stamped: bool = False) -> Image.Image:
    """The five stars, the first ``earned`` filled (outlined only when ``hollow``), as a patch that goes at
    (MARGIN, STAR_ROW_TOP); ``stamped`` runs the indicative band through them."""
    canvas = Canvas(STAR_ROW_SIZE)
    for index, (cx, cy) in enumerate(STAR_CENTERS):
        filled = index < earned
        points = star_points(cx - MARGIN, cy - STAR_ROW_TOP, STAR_OUTER)
        edge = STAR_EDGE if filled else STAR_EMPTY_EDGE
        if hollow:
            canvas.polygon(points, None, edge, width=HOLLOW_EDGE)
        else:
            canvas.polygon(points, STAR_FILL if filled else STAR_EMPTY, edge)
    if stamped:
        _stamp(canvas)
    return canvas.finish()


def _stamp(c: Surface) -> None:
    """The band across the star row (row-patch coordinates), its words spread letter by letter over the whole row so
    that every star, and any crop of one, carries part of them."""
    top, bottom = (y - STAR_ROW_TOP for y in STAMP_BAND)
    right = STAR_ROW_SIZE[0]
    c.draw.rectangle([0, c.s(top), c.s(right), c.s(bottom)], fill=WARN_FILL)
    for y in (top, bottom - 1.5):
        c.draw.rectangle([0, c.s(y), c.s(right), c.s(y + 1.5)], fill=WARN_EDGE)
    widths = [c.width(ch, "extrabold", 20) for ch in STAMP_WORDS]
    tracking = (right - 2 * STAMP_INSET - sum(widths)) / (len(STAMP_WORDS) - 1)
    x: float = STAMP_INSET
    for ch, width in zip(STAMP_WORDS, widths, strict=True):
        c.text((x, (top + bottom) / 2), ch, "extrabold", 20, WARN_TEXT, anchor="lm")
        x += width + tracking


def _background(edition: str | None) -> Image.Image:
    return _background_in(edition, load_font("regular", 15))


@cache
def _background_in(edition: str | None, font: Font) -> Image.Image:
    """Everything labels of one star edition share: frame, header, the energy panel, captions and the footer; kept
    per set of fonts (``font`` stands for them), so a label never mixes two."""
    c = Canvas()
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


def _header(c: Surface) -> None:
    c.draw.rectangle([0, 0, c.s(WIDTH), c.s(96)], fill=HEADER)
    c.text((MARGIN, 14), "AI Energy Score", "extrabold", 36, "white")
    c.text((MARGIN, 62), "INFERENCE ENERGY LABEL", "semibold", 17, HEADER_TEXT)
    bolt = [(478, 18), (452, 52), (468, 52), (458, 80), (488, 42), (471, 42), (482, 18)]
    c.polygon([(x, y) for x, y in bolt], fill=STAR_FILL, outline=STAR_FILL)


def _identity(c: Surface, data: LabelData) -> None:
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


def _stars(c: Surface, data: LabelData) -> None:
    row = _star_row(data.stars or 0) if data.official else _star_row(data.stars or 0, hollow=True, stamped=True)
    c.image.paste(row, (MARGIN, STAR_ROW_TOP))
    if data.stars is None:
        note = (data.stars_note or "not rated").split(" (")[0]  # the label has room for the gist only
        caption, size = c.fit(f"No stars: {note}", "semibold", (20, 18), WIDTH - 2 * MARGIN)
        c.text((WIDTH / 2, 348), caption, "semibold", size, MUTED, anchor="mm")
        return
    caption = f"{data.stars} of 5 stars" + (" (indicative)" if data.indicative else "")
    c.text((WIDTH / 2, 348), caption, "bold", 22, INK, anchor="mm")


def _energy(c: Surface, data: LabelData) -> None:
    number = format_energy(data.wh_per_1k)
    c.text((MARGIN + 20, 420), number, "extrabold", 52, INK, anchor="ls")
    unit_x = MARGIN + 20 + c.width(number, "extrabold", 52) + 10
    c.text((unit_x, 420), "Wh", "bold", 26, MUTED, anchor="ls")


def _details(c: Surface, data: LabelData) -> None:
    key_width = 104
    for index, value in enumerate((data.hardware, data.measured, data.date)):
        text = c.fit(value, "regular", (18, 16), WIDTH - 2 * MARGIN - key_width)[0]
        c.text((MARGIN + key_width, 508 + index * 29), text, "regular", 18, INK, anchor="lm")


def _note(c: Surface, data: LabelData) -> None:
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


def _footer(c: Surface, edition: str | None) -> None:
    suffix = f" · stars vs. leaderboard {edition}" if edition else ""
    c.text((WIDTH / 2, 713), f"pytest-aienergyscore{suffix}", "regular", 15, MUTED, anchor="mm")


def render_label(data: LabelData) -> Image.Image:
    """The label as a 520 x 728 RGB image."""
    page = Page(_background(data.edition).copy())
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
    "STAMP_BAND",
    "STAMP_WORDS",
    "STAR_CENTERS",
    "WIDTH",
    "label_png",
    "render_label",
    "write_label",
]
