"""Where an energy label is drawn: surfaces in label pixels, fonts from the ``ttf-opensans`` package, and the caches
that make drawing hundreds of labels cheap.

Text is set in Open Sans from the ``ttf-opensans`` package (the ``label`` extra), never a system font, so a label
looks the same on every machine; without the package Pillow's own font is used, with a warning. Pillow is imported
only when something is drawn.
"""

from __future__ import annotations

import warnings
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 520, 728
SUPERSAMPLE = 2  # drawn at twice the size and scaled down: smooth star edges and rounded corners

_FONT_FILES = {
    "regular": "OpenSans-Regular.ttf",
    "semibold": "OpenSans-SemiBold.ttf",
    "bold": "OpenSans-Bold.ttf",
    "extrabold": "OpenSans-ExtraBold.ttf",
}


# -- fonts ---------------------------------------------------------------------------------------------------------


def font_file(weight: str) -> Path | None:
    """The Open Sans TTF of ``weight`` shipped by the ttf-opensans package, or None when it is not installed."""
    try:
        node = resources.files("ttf_opensans").joinpath("ttf").joinpath(_FONT_FILES[weight])
    except ModuleNotFoundError:
        return None
    path = Path(str(node))
    return path if path.is_file() else None


@cache
def load_font(weight: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Open Sans at ``weight`` and ``size`` pixels, loaded once: a label sets a dozen strings in four weights."""
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


# -- surfaces ----------------------------------------------------------------------------------------------------
#
# Two ways to draw the same picture: a supersampled Canvas for what is drawn once and kept (the shared background,
# star rows, rounded boxes), and a Page at the final size that pastes those and sets text from cached glyph masks.


class Surface:
    """Drawing in label pixels (520 x 728) on an image ``scale`` times that size."""

    scale = 1

    def __init__(self, image: Image.Image) -> None:
        from PIL import ImageDraw

        self.image = image
        self.draw: ImageDraw.ImageDraw = ImageDraw.Draw(image)

    def s(self, value: float) -> int:
        return round(value * self.scale)

    def font(self, weight: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return load_font(weight, size * self.scale)

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

    def polygon(self, points: list[tuple[float, float]], fill: str | None, outline: str, width: float = 2) -> None:
        """A filled polygon, or only its outline (``fill`` None), ``width`` label pixels thick."""
        self.draw.polygon([(self.s(x), self.s(y)) for x, y in points], fill=fill, outline=outline, width=self.s(width))

    def fit(self, text: str, weight: str, sizes: tuple[int, ...], width: float) -> tuple[str, int]:
        """The largest size at which ``text`` fits ``width``; at the smallest, the text cut with an ellipsis."""
        for size in sizes:
            if self.width(text, weight, size) <= width:
                return text, size
        size = sizes[-1]
        while text and self.width(text + "…", weight, size) > width:
            text = text[:-1]
        return text.rstrip() + "…", size


class Canvas(Surface):
    """A supersampled drawing of ``size`` label pixels: smooth star edges and rounded corners once scaled down."""

    scale = SUPERSAMPLE

    def __init__(self, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
        from PIL import Image

        self.size = size
        super().__init__(Image.new("RGB", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), "white"))

    def finish(self) -> Image.Image:
        from PIL import Image

        return self.image.resize(self.size, Image.Resampling.LANCZOS)


class Page(Surface):
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
    canvas = Canvas((width + 1, height + 1))
    canvas.box((0, 0, width, height), radius, fill, outline)
    return canvas.finish()
