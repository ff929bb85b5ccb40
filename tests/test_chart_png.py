"""reports/chart_png.py: the stdlib chart renderer (PNG encoding, lines, text, ticks, axes, legends).

Every image is decoded by test_report.decode_png (zlib, CRCs, filters), not by the writer's own code.
"""

from __future__ import annotations

import pytest

from keeptraining.reports import chart_png
from test_report import decode_png, png_size

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _pixels(canvas: chart_png.Canvas) -> list[list[tuple[int, int, int]]]:
    return decode_png(canvas.png())


def test_png_is_valid_and_round_trips_every_pixel() -> None:
    canvas = chart_png.Canvas(7, 5)
    canvas.dot(0, 0, RED)
    canvas.rect(2, 1, 4, 3, BLUE)
    data = canvas.png()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and png_size(data) == (7, 5)
    pixels = decode_png(data)
    assert pixels[0][0] == RED and pixels[0][1] == chart_png.WHITE
    assert {(x, y) for y, row in enumerate(pixels) for x, p in enumerate(row) if p == BLUE} == {
        (x, y) for x in range(2, 5) for y in range(1, 4)
    }


def test_a_canvas_needs_a_size() -> None:
    with pytest.raises(ValueError, match="positive size"):
        chart_png.Canvas(0, 10)


def test_lines_are_thick_dashed_and_clipped() -> None:
    canvas = chart_png.Canvas(100, 20)
    canvas.line(0, 5, 99, 5, RED, width=2, dash=(8, 5))
    canvas.line(-1000, 15, 5000, 15, BLUE)  # far outside on both ends: clipped, not an error
    pixels = _pixels(canvas)
    red_rows = {y for y, row in enumerate(pixels) if RED in row}
    assert red_rows == {5, 6}  # two pixels thick
    xs = [x for x, p in enumerate(pixels[5]) if p == RED]
    assert xs[:8] == list(range(8)) and not set(range(9, 13)) & set(xs) and 13 in xs  # 8 on, 5 off
    assert pixels[15].count(BLUE) > 50


def test_clip_keeps_drawing_inside_the_plot() -> None:
    canvas = chart_png.Canvas(50, 50)
    canvas.set_clip(10, 10, 39, 39)
    canvas.line(0, 25, 49, 25, RED)
    canvas.reset_clip()
    xs = [x for x, p in enumerate(_pixels(canvas)[25]) if p == RED]
    assert (min(xs), max(xs)) == (10, 39)


def test_text_is_drawn_aligned_and_turned() -> None:
    canvas = chart_png.Canvas(200, 100)
    canvas.text(100, 10, "Epoch 10", RED, 2, align="center")
    canvas.text(20, 90, "acc", BLUE, 1, vertical=True)
    pixels = _pixels(canvas)
    red = [(x, y) for y, row in enumerate(pixels) for x, p in enumerate(row) if p == RED]
    xs, ys = [x for x, _ in red], [y for _, y in red]
    assert max(ys) - min(ys) + 1 <= 14 and min(ys) >= 10  # 7 rows at scale 2, below the anchor
    assert abs((min(xs) + max(xs)) / 2 - 100) <= 3  # centred
    blue = [(x, y) for y, row in enumerate(pixels) for x, p in enumerate(row) if p == BLUE]
    bx, by = [x for x, _ in blue], [y for _, y in blue]
    assert max(by) - min(by) > max(bx) - min(bx)  # vertical text: taller than wide
    assert max(by) <= 90  # read upwards from the anchor


def test_text_outside_ascii_is_spelled_or_replaced() -> None:
    assert chart_png.plain("acc ≥ 0.9 – ✅ é") == "acc >= 0.9 - ? ?"
    assert chart_png.text_width("ab", 2) == 24
    canvas = chart_png.Canvas(60, 20)
    canvas.text(0, 0, "\x00\x1b[31m", RED)  # control characters: drawn as '?', never interpreted
    assert any(RED in row for row in _pixels(canvas))


@pytest.mark.parametrize(
    ("low", "high", "count", "integer", "expected"),
    [
        (0.3, 1.0, 10, False, [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        (0.0, 1.0, 6, False, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (1, 30, 10, True, [5, 10, 15, 20, 25, 30]),
        (1, 3, 10, True, [1, 2, 3]),  # never a fraction of an epoch
        (5, 5, 6, True, [5]),
    ],
)
def test_nice_ticks(low: float, high: float, count: int, integer: bool, expected: list[float]) -> None:
    assert chart_png.nice_ticks(low, high, count, integer=integer) == expected


def test_tick_labels_share_their_decimals() -> None:
    ticks = chart_png.nice_ticks(0.8, 1.0, 6)
    assert [chart_png.tick_label(t, ticks) for t in ticks] == ["0.80", "0.85", "0.90", "0.95", "1.00"]
    assert chart_png.tick_label(20.0, [0.0, 20.0]) == "20"


def test_axes_map_data_to_pixels_and_draw_a_legend() -> None:
    canvas = chart_png.Canvas(300, 200)
    ax = chart_png.Axes(canvas, (50, 20, 290, 170), (0, 10), (0.0, 1.0))
    assert (ax.px(0), ax.px(10), ax.py(0.0), ax.py(1.0)) == (50, 290, 170, 20)
    ax.frame(
        x_ticks=[(0, "0"), (10, "10")],
        y_ticks=[(0.0, "0.0"), (1.0, "1.0")],
        x_label="epoch",
        y_label="accuracy",
        title="t",
    )
    ax.plot([0, 10], [0.0, 1.0], BLUE, marker="o")
    ax.hline(0.5, RED, dash=None)
    ax.legend([chart_png.LegendEntry("threshold 0.5", RED)], corner="upper left")
    pixels = _pixels(canvas)
    assert pixels[95].count(RED) > 150  # the threshold at y = 0.5: row 95
    assert pixels[round(ax.py(0.25))][round(ax.px(2.5))] == BLUE  # the diagonal, a quarter of the way up
    log = chart_png.Axes(canvas, (0, 0, 100, 100), (0.001, 0.1), (0, 1), xlog=True)
    assert round(log.px(0.01)) == 50


def test_a_long_title_wraps_onto_two_lines_then_shrinks() -> None:
    canvas = chart_png.Canvas(300, 100)
    assert chart_png.title(canvas, "short", top=10) == 30  # one line at scale 2: 10 + 20
    assert chart_png.title(chart_png.Canvas(300, 100), "word " * 8, top=10) == 50  # two lines at scale 2
    assert chart_png.title(chart_png.Canvas(300, 100), "word " * 20, top=10) == 30  # scale 1, cut to 2 lines


def test_markers_are_left_out_where_points_crowd() -> None:
    canvas = chart_png.Canvas(200, 100)
    ax = chart_png.Axes(canvas, (0, 0, 199, 99), (0, 99), (0.0, 1.0))
    ax.plot(list(range(100)), [0.5] * 100, BLUE, width=1, marker="s")  # 2 pixels apart: no markers
    ax.plot([10, 90], [0.2, 0.2], RED, width=1, marker="s")  # far apart: a 7-pixel square on each
    pixels = _pixels(canvas)
    assert {y for y, row in enumerate(pixels) if BLUE in row} == {round(ax.py(0.5))}
    assert len({y for y, row in enumerate(pixels) if RED in row}) == 7
