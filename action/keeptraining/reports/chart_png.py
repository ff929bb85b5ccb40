"""A small chart renderer: lines, bars, points, axes, text and legends to a PNG, stdlib only.

It draws ``chart.png`` (summary.py, search_table.py) without matplotlib and its numpy, pillow,
fontTools and kiwisolver, which were most of keeptraining's install for this one picture.
``Canvas`` is an RGB pixel buffer (``png`` encodes it with zlib and struct); ``Axes`` maps data
to a rectangle of it and draws the frame, ticks, grid, labels and legend. Text uses a built-in
5x7 bitmap font (printable ASCII; anything else is drawn as ``?``), scaled by whole pixels, so
no font file is read and what is drawn is the same on every runner. Nothing is anti-aliased.
"""

from __future__ import annotations

import itertools
import math
import struct
import textwrap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

Colour = tuple[int, int, int]

WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
TEXT: Colour = (36, 41, 47)
GREY: Colour = (110, 119, 129)
GRID: Colour = (228, 231, 235)
CRIMSON: Colour = (220, 20, 60)  # the threshold
ORANGE: Colour = (255, 127, 14)
# matplotlib's "tab10", so the attempts keep the colours they had.
PALETTE: tuple[Colour, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def hex_colour(text: str) -> Colour:
    """``#1a7f37`` -> (26, 127, 55)."""
    value = text.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


# --------------------------------------------------------------------------- font

# 5x7 glyphs of printable ASCII (0x20-0x7e), column by column, bit 0 the top row.
_FONT = bytes.fromhex(
    "0000000000"
    "00005f0000"
    "0007000700"
    "147f147f14"
    "242a7f2a12"
    "2313086462"
    "3649552250"
    "0005030000"
    "001c224100"
    "0041221c00"
    "082a1c2a08"
    "08083e0808"
    "0050300000"
    "0808080808"
    "0060600000"
    "2010080402"
    "3e5149453e"
    "00427f4000"
    "4261514946"
    "2141454b31"
    "1814127f10"
    "2745454539"
    "3c4a494930"
    "0171090503"
    "3649494936"
    "064949291e"
    "0036360000"
    "0056360000"
    "0008142241"
    "1414141414"
    "4122140800"
    "0201510906"
    "324979413e"
    "7e1111117e"
    "7f49494936"
    "3e41414122"
    "7f4141221c"
    "7f49494941"
    "7f09090101"
    "3e41415132"
    "7f0808087f"
    "00417f4100"
    "2040413f01"
    "7f08142241"
    "7f40404040"
    "7f0204027f"
    "7f0408107f"
    "3e4141413e"
    "7f09090906"
    "3e4151215e"
    "7f09192946"
    "4649494931"
    "01017f0101"
    "3f4040403f"
    "1f2040201f"
    "7f2018207f"
    "6314081463"
    "0304780403"
    "6151494543"
    "00007f4141"
    "0204081020"
    "41417f0000"
    "0402010204"
    "4040404040"
    "0001020400"
    "2054545478"
    "7f48444438"
    "3844444420"
    "384444487f"
    "3854545418"
    "087e090102"
    "081454543c"
    "7f08040478"
    "00447d4000"
    "2040443d00"
    "007f102844"
    "00417f4000"
    "7c04180478"
    "7c08040478"
    "3844444438"
    "7c14141408"
    "081414187c"
    "7c08040408"
    "4854545420"
    "043f444020"
    "3c4040207c"
    "1c2040201c"
    "3c4030403c"
    "4428102844"
    "0c5050503c"
    "4464544c44"
    "0008364100"
    "00007f0000"
    "0041360800"
    "0804081008"
)
GLYPH_W, GLYPH_H = 5, 7
_SPELLED = {
    "≥": ">=",
    "≤": "<=",
    "–": "-",
    "—": "-",
    "·": ".",
    "…": "...",
    "×": "x",
    "→": "->",
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
    "τ": "t",
    "σ": "s",
    "\t": " ",
}


def plain(text: str) -> str:
    """What the font can draw: a few symbols spelled out, other characters as ``?``."""
    out = []
    for char in text:
        spelled = _SPELLED.get(char, char)
        out.append("".join(c if " " <= c <= "~" else "?" for c in spelled))
    return "".join(out)


def text_width(text: str, scale: int = 1) -> int:
    """Pixels ``text`` takes at ``scale`` (one pixel between characters, at scale 1)."""
    return len(plain(text)) * (GLYPH_W + 1) * scale


# --------------------------------------------------------------------------- canvas


class Canvas:
    """An RGB image in memory; drawing clips to the canvas (and to ``clip`` when it is set)."""

    def __init__(self, width: int, height: int, background: Colour = WHITE) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"a canvas needs a positive size, not {width}x{height}")
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))
        self.clip: tuple[int, int, int, int] = (0, 0, width - 1, height - 1)

    def reset_clip(self) -> None:
        self.clip = (0, 0, self.width - 1, self.height - 1)

    def set_clip(self, x0: int, y0: int, x1: int, y1: int) -> None:
        self.clip = (max(0, x0), max(0, y0), min(self.width - 1, x1), min(self.height - 1, y1))

    def pixel(self, x: int, y: int) -> Colour:
        i = (y * self.width + x) * 3
        return (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2])

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        """Fill the rectangle with corners (x0, y0) and (x1, y1), both included."""
        cx0, cy0, cx1, cy1 = self.clip
        x0, x1 = max(min(x0, x1), cx0), min(max(x0, x1), cx1)
        y0, y1 = max(min(y0, y1), cy0), min(max(y0, y1), cy1)
        if x0 > x1 or y0 > y1:
            return
        row = bytes(colour) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def dot(self, x: int, y: int, colour: Colour, size: int = 1) -> None:
        """A square of ``size`` pixels centred on (x, y)."""
        half = (size - 1) // 2
        self.rect(x - half, y - half, x - half + size - 1, y - half + size - 1, colour)

    def line(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        colour: Colour,
        width: int = 1,
        dash: tuple[int, int] | None = None,
    ) -> None:
        """A straight line ``width`` pixels thick; ``dash`` = (pixels drawn, pixels skipped).

        The segment is first cut to the clip rectangle (Liang-Barsky), so a point far outside costs
        nothing; dashes keep their phase from the segment's start."""
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            return
        margin = width
        cx0, cy0, cx1, cy1 = (
            self.clip[0] - margin,
            self.clip[1] - margin,
            self.clip[2] + margin,
            self.clip[3] + margin,
        )
        dx, dy = x1 - x0, y1 - y0
        t0, t1 = 0.0, 1.0
        for p, q in ((-dx, x0 - cx0), (dx, cx1 - x0), (-dy, y0 - cy0), (dy, cy1 - y0)):
            if p == 0:
                if q < 0:
                    return  # parallel to this edge and outside it
                continue
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return
        length = max(abs(dx), abs(dy))
        first, last = round(t0 * length), round(t1 * length)
        for i in range(first, last + 1):
            if dash and i % (dash[0] + dash[1]) >= dash[0]:
                continue
            t = i / length if length else 0.0
            self.dot(round(x0 + dx * t), round(y0 + dy * t), colour, width)

    def polyline(
        self,
        points: Sequence[tuple[float, float]],
        colour: Colour,
        width: int = 1,
        dash: tuple[int, int] | None = None,
    ) -> None:
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            self.line(x0, y0, x1, y1, colour, width, dash)

    def marker(self, x: float, y: float, shape: str, colour: Colour, size: int = 7) -> None:
        """A filled marker: ``o`` disc, ``s`` square, ``^``/``v`` triangles, ``D`` diamond."""
        cx, cy, r, half = round(x), round(y), size / 2, size // 2
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                if shape == "s":
                    inside = True
                elif shape == "D":
                    inside = abs(dx) + abs(dy) <= r
                elif shape == "^":
                    inside = abs(dx) <= (dy + r) / 2 + 0.5
                elif shape == "v":
                    inside = abs(dx) <= (r - dy) / 2 + 0.5
                else:
                    inside = dx * dx + dy * dy <= r * r
                if inside:
                    self.dot(cx + dx, cy + dy, colour)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        colour: Colour = TEXT,
        scale: int = 1,
        *,
        align: str = "left",
        valign: str = "top",
        vertical: bool = False,
    ) -> None:
        """``text`` anchored at (x, y): ``align`` left/center/right, ``valign`` top/middle/bottom;
        ``vertical`` draws it turned a quarter to the left (read bottom to top), for a y-axis label."""
        shown = plain(text)
        length = text_width(shown, scale) - scale
        height = GLYPH_H * scale
        shift = {"left": 0, "center": length // 2, "right": length}[align]
        drop = {"top": 0, "middle": height // 2, "bottom": height}[valign]
        ox, oy = round(x), round(y)
        for index, char in enumerate(shown):
            start = (ord(char) - 0x20) * GLYPH_W
            for column in range(GLYPH_W):
                bits = _FONT[start + column]
                for row in range(GLYPH_H):
                    if not bits >> row & 1:
                        continue
                    along = index * (GLYPH_W + 1) * scale + column * scale - shift
                    across = row * scale - drop
                    if vertical:  # along the text goes up, across goes right
                        px, py = ox + across, oy - along - scale + 1
                    else:
                        px, py = ox + along, oy + across
                    self.rect(px, py, px + scale - 1, py + scale - 1, colour)

    def png(self) -> bytes:
        """The image as PNG bytes: 8-bit RGB, no interlace, every row with filter 0 ("none")."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b"")
        )


# --------------------------------------------------------------------------- ticks


def nice_ticks(low: float, high: float, count: int = 6, *, integer: bool = False) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 times a power of ten) from ``low`` to ``high``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the spacing of ``ticks`` needs (0.85, 0.9 -> "0.85", "0.90")."""
    steps = [abs(b - a) for a, b in itertools.pairwise(ticks) if b != a]
    step = min(steps) if steps else abs(value) or 1.0
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


# --------------------------------------------------------------------------- axes


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: Colour
    dashed: bool = False
    marker: str = ""
    box: bool = False  # a filled square (bars), not a line


class Axes:
    """A plot area of ``canvas`` (the rectangle x0, y0 - x1, y1) showing x in ``xlim`` and y in ``ylim``."""

    def __init__(
        self,
        canvas: Canvas,
        box: tuple[int, int, int, int],
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        *,
        xlog: bool = False,
    ) -> None:
        self.canvas = canvas
        self.x0, self.y0, self.x1, self.y1 = box
        self.xlog = xlog
        lo, hi = (math.log10(v) for v in xlim) if xlog else xlim
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.xlim = (lo, hi)
        ylo, yhi = ylim
        if yhi == ylo:
            ylo, yhi = ylo - 0.5, yhi + 0.5
        self.ylim = (ylo, yhi)

    def px(self, x: float) -> float:
        value = math.log10(x) if self.xlog else x
        lo, hi = self.xlim
        return self.x0 + (value - lo) / (hi - lo) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        lo, hi = self.ylim
        return self.y1 - (y - lo) / (hi - lo) * (self.y1 - self.y0)

    def frame(
        self,
        *,
        x_ticks: Sequence[tuple[float, str]],
        y_ticks: Sequence[tuple[float, str]],
        x_label: str = "",
        y_label: str = "",
        title: str = "",
        scale: int = 1,
        grid: bool = True,
    ) -> None:
        """Grid, the box, tick marks with their labels, the axis labels and the title."""
        c = self.canvas
        c.reset_clip()
        for value, _ in y_ticks:
            y = round(self.py(value))
            if grid and self.y0 < y < self.y1:
                c.line(self.x0, y, self.x1, y, GRID)
        for value, _ in x_ticks:
            x = round(self.px(value))
            if grid and self.x0 < x < self.x1:
                c.line(x, self.y0, x, self.y1, GRID)
        for x0, y0, x1, y1 in (
            (self.x0, self.y0, self.x1, self.y0),
            (self.x0, self.y1, self.x1, self.y1),
            (self.x0, self.y0, self.x0, self.y1),
            (self.x1, self.y0, self.x1, self.y1),
        ):
            c.line(x0, y0, x1, y1, GREY)
        widest = 0
        for value, label in y_ticks:
            y = round(self.py(value))
            c.line(self.x0 - 4, y, self.x0, y, GREY)
            c.text(self.x0 - 7, y, label, TEXT, scale, align="right", valign="middle")
            widest = max(widest, text_width(label, scale))
        for value, label in x_ticks:
            x = round(self.px(value))
            c.line(x, self.y1, x, self.y1 + 4, GREY)
            c.text(x, self.y1 + 7, label, TEXT, scale, align="center")
        if x_label:
            c.text(
                (self.x0 + self.x1) / 2, self.y1 + 12 + GLYPH_H * scale, x_label, TEXT, scale, align="center"
            )
        if y_label:
            c.text(
                self.x0 - 14 - widest - GLYPH_H * scale,
                (self.y0 + self.y1) / 2,
                y_label,
                TEXT,
                scale,
                align="center",
                vertical=True,
            )
        if title:
            c.text((self.x0 + self.x1) / 2, self.y0 - 8, title, TEXT, scale, align="center", valign="bottom")

    def _inside(self) -> None:
        self.canvas.set_clip(self.x0 + 1, self.y0 + 1, self.x1 - 1, self.y1 - 1)

    def plot(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        colour: Colour,
        *,
        width: int = 2,
        dashed: bool = False,
        marker: str = "",
    ) -> None:
        """A line through the points, dotted when ``dashed``; a marker on each point, unless they are
        closer than the markers' size."""
        self._inside()
        pts = [(self.px(x), self.py(y)) for x, y in zip(xs, ys, strict=True)]
        self.canvas.polyline(pts, colour, width, (3, 3) if dashed else None)
        crowded = len(pts) > 1 and abs(pts[-1][0] - pts[0][0]) / (len(pts) - 1) < 6  # markers would touch
        if marker and not crowded:
            for x, y in pts:
                self.canvas.marker(x, y, marker, colour)
        self.canvas.reset_clip()

    def hline(
        self, y: float, colour: Colour, *, width: int = 2, dash: tuple[int, int] | None = (8, 5)
    ) -> None:
        self._inside()
        py = self.py(y)
        self.canvas.line(self.x0, py, self.x1, py, colour, width, dash)
        self.canvas.reset_clip()

    def vline(
        self, x: float, colour: Colour, *, width: int = 1, dash: tuple[int, int] | None = (2, 3)
    ) -> None:
        self._inside()
        px = self.px(x)
        self.canvas.line(px, self.y0, px, self.y1, colour, width, dash)
        self.canvas.reset_clip()

    def bars(
        self, xs: Sequence[float], ys: Sequence[float], colours: Sequence[Colour], width: float = 0.8
    ) -> None:
        """Bars from the bottom of the axes (or 0, when it shows) up to each y; ``width`` in x units."""
        self._inside()
        base = self.py(max(self.ylim[0], 0.0))
        for x, y, colour in zip(xs, ys, colours, strict=True):
            left, right = self.px(x - width / 2), self.px(x + width / 2)
            self.canvas.rect(
                round(left), round(self.py(y)), max(round(left), round(right) - 1), round(base), colour
            )
        self.canvas.reset_clip()

    def scatter(
        self, xs: Sequence[float], ys: Sequence[float], colours: Sequence[Colour], size: int = 7
    ) -> None:
        self._inside()
        for x, y, colour in zip(xs, ys, colours, strict=True):
            if math.isfinite(x) and math.isfinite(y):
                self.canvas.marker(self.px(x), self.py(y), "o", colour, size)
        self.canvas.reset_clip()

    def note(self, text: str, scale: int = 1) -> None:
        """A grey message in the middle of the plot area (e.g. nothing to draw yet)."""
        self.canvas.text(
            (self.x0 + self.x1) / 2,
            (self.y0 + self.y1) / 2,
            text,
            GREY,
            scale,
            align="center",
            valign="middle",
        )

    def legend(self, entries: Sequence[LegendEntry], scale: int = 1, *, corner: str = "lower right") -> None:
        """A boxed legend inside the plot area: a line (or square) of each colour, then its label."""
        if not entries:
            return
        c = self.canvas
        sample = 24
        line_h = (GLYPH_H + 5) * scale
        width = sample + 8 + max(text_width(e.label, scale) for e in entries) + 10
        height = line_h * len(entries) + 8
        left = self.x1 - 8 - width if corner.endswith("right") else self.x0 + 8
        top = self.y1 - 8 - height if corner.startswith("lower") else self.y0 + 8
        c.rect(left, top, left + width, top + height, WHITE)
        right, bottom = left + width, top + height
        for x0, y0, x1, y1 in (
            (left, top, right, top),
            (left, bottom, right, bottom),
            (left, top, left, bottom),
            (right, top, right, bottom),
        ):
            c.line(x0, y0, x1, y1, GRID)
        for i, entry in enumerate(entries):
            y = top + 5 + i * line_h + (GLYPH_H * scale) // 2
            if entry.box:
                c.rect(left + 6, y - 4, left + 6 + sample - 8, y + 4, entry.colour)
            else:
                c.line(left + 6, y, left + 6 + sample, y, entry.colour, 2, (4, 3) if entry.dashed else None)
                if entry.marker:
                    c.marker(left + 6 + sample / 2, y, entry.marker, entry.colour)
            c.text(left + sample + 14, y, entry.label, TEXT, scale, valign="middle")


def legend_row(canvas: Canvas, x: float, y: int, entries: Sequence[LegendEntry], scale: int = 1) -> None:
    """A legend on one line, centred on ``x`` (for figures whose plots leave no room for a box)."""
    sample, gap = 18, 16
    widths = [sample + 6 + text_width(e.label, scale) for e in entries]
    left = round(x - (sum(widths) + gap * (len(entries) - 1)) / 2)
    middle = y + (GLYPH_H * scale) // 2
    for entry, width in zip(entries, widths, strict=True):
        if entry.box:
            canvas.rect(left, middle - 4, left + sample - 6, middle + 4, entry.colour)
        else:
            dash = (4, 3) if entry.dashed else None
            canvas.line(left, middle, left + sample, middle, entry.colour, 2, dash)
        canvas.text(left + sample + 6, middle, entry.label, TEXT, scale, valign="middle")
        left += width + gap


def title(canvas: Canvas, text: str, top: int = 10, scale: int = 2) -> int:
    """``text`` centred at the top, at ``scale``, on two lines when one is too narrow (else smaller);
    the row below it."""
    room = max(1, (canvas.width - 20) // ((GLYPH_W + 1) * scale))
    lines = textwrap.wrap(plain(text), room) or [""]
    if len(lines) > 2:
        scale, lines = 1, textwrap.wrap(plain(text), (canvas.width - 20) // (GLYPH_W + 1))[:2]
    for i, line in enumerate(lines):
        canvas.text(canvas.width / 2, top + i * (GLYPH_H + 3) * scale, line, TEXT, scale, align="center")
    return top + len(lines) * (GLYPH_H + 3) * scale
