"""report.py: tables, verdicts, mermaid chart, PNG chart and job summary of realistic chains.

``make_config`` / ``make_ledger`` build the sample chains that test_notify.py uses too:
three resumed attempts of 10/20/30 epochs at 0.71, 0.86, 0.93.
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from keeptraining.config.settings import Config, resolve
from keeptraining.engine import strategy
from keeptraining.reports import summary as report
from keeptraining.state.ledger import BELOW, FAILED, REACHED, Attempt, Ledger

REPO = "owner/repo"
SERVER = "https://github.com"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RUN_URL = f"{SERVER}/{REPO}/actions/runs/{{}}"
ENDS = [0.71, 0.86, 0.93]  # validation accuracy at the end of attempts 1, 2, 3
STARTS = [0.35, 0.72, 0.865]


def make_config(**overrides: Any) -> Config:
    values: dict[str, Any] = {"threshold": 0.9, "max_attempts": 10}
    values.update(overrides)
    return resolve(values)


def _history(start: float, end: float, n: int) -> list[float]:
    return [round(start + (end - start) * i / (n - 1), 4) for i in range(n)]


def make_ledger(kind: str = "reached", *, threshold: float = 0.9, resume: bool = True) -> Ledger:
    """A chain of 3 attempts (10, 20, 30 epochs). kind: reached | exhausted | failed | continue.

    reached/exhausted: attempt 3 ends at 0.93 (above 0.9; below a 0.95 threshold);
    failed: attempt 2 crashed after 4 epochs; continue: attempts 1-2 only, 2 dispatched 3.
    resume=False: every attempt starts again at epoch 0.
    """
    attempts: list[Attempt] = []
    count = 2 if kind in ("failed", "continue") else 3
    for i in range(count):
        n = i + 1
        epochs = 10 * n
        initial = 10 * i if resume else 0
        start, end = (STARTS[i], ENDS[i]) if resume else (0.35, ENDS[i])
        history = _history(start, end, epochs - initial)
        record = Attempt(
            attempt=n,
            epochs=epochs,
            initial_epoch=initial,
            resumed_from=f"attempt-{n - 1:03d}/model.keras" if resume and i else None,
            outcome=REACHED if end >= threshold else BELOW,
            metric=end,
            epochs_reached=epochs,
            epochs_trained=epochs - initial,
            history=history,
            duration_s=12.5 * (epochs - initial) / 10,
            checkpoint=f"attempt-{n:03d}/model.keras",
            started_at=f"2025-05-01T10:0{n}:00Z",
            run={"id": 1000 + n, "url": RUN_URL.format(1000 + n)},
        )
        attempts.append(record)
    if kind == "failed":
        last = attempts[-1]
        last.outcome = FAILED
        last.metric = None
        last.epochs_reached = None
        last.epochs_trained = 4
        last.history = last.history[:4]
        last.checkpoint = None
        last.error = "Training command exited with status 1 (MemoryError: out of memory)"
    for earlier, later in itertools.pairwise(attempts):
        earlier.dispatched = {"run_id": later.run["id"], "url": later.run["url"]}
    if kind == "continue":
        attempts[-1].dispatched = {"run_id": 1003, "url": RUN_URL.format(1003)}
    chain = {
        "threshold": threshold,
        "metric": "accuracy",
        "commit": COMMIT,
        "branch": "main",
        "repository": REPO,
        "server_url": SERVER,
        "run_url": RUN_URL.format(1000 + count),
    }
    return Ledger(chain=chain, attempts=attempts)


def chain_case(kind: str, *, resume: bool = True) -> tuple[Config, Ledger, strategy.Decision]:
    """(config, ledger, decision) for a chain ending in ``kind`` (or still going: continue)."""
    threshold = 0.95 if kind == "exhausted" else 0.9
    config = make_config(threshold=threshold, max_attempts=3 if kind == "exhausted" else 10, resume=resume)
    ledger = make_ledger(kind, threshold=threshold, resume=resume)
    decision = strategy.decide(config, ledger)
    expected = {
        "reached": strategy.CHAIN_REACHED,
        "exhausted": strategy.EXHAUSTED,
        "failed": strategy.CHAIN_FAILED,
        "continue": strategy.CONTINUE,
    }[kind]
    assert decision.kind == expected
    return config, ledger, decision


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_png(data: bytes) -> list[list[tuple[int, int, int]]]:
    """The pixels of an 8-bit RGB or RGBA PNG, row by row (RGB; any of the five row filters),
    decoded here, independently of the writer, with zlib: chunk CRCs checked, IEND required."""
    width, height = png_size(data)
    bit_depth, colour_type = data[24], data[25]
    assert bit_depth == 8 and colour_type in (2, 6), (bit_depth, colour_type)
    channels = 3 if colour_type == 2 else 4
    pos, idat, kinds = 8, b"", []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        kinds.append(kind)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    stride = width * channels
    assert len(raw) == height * (stride + 1)
    rows: list[list[tuple[int, int, int]]] = []
    previous = bytearray(stride)
    for y in range(height):
        filter_type, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            guess = left + up - corner
            paeth = min(
                (abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner)
            )[2]
            line[i] = (line[i] + (0, left, up, (left + up) // 2, paeth)[filter_type]) & 0xFF
        rows.append([tuple(line[x * channels : x * channels + 3]) for x in range(width)])  # type: ignore[misc]
        previous = line
    return rows


HOSTILE = "boom | `rm -rf /` <script>alert(1)</script>\n::error::pwned [x](javascript:alert(1)) **b**"


# --------------------------------------------------------------------------- verdicts


def _verdict(kind: str) -> str:
    config, ledger, decision = chain_case(kind)
    return report.verdict(ledger, config, decision)


def test_verdicts_of_each_ending() -> None:
    assert _verdict("reached") == "Threshold reached: accuracy 0.9300 ≥ 0.90 at attempt 3 (30 epochs)"
    assert (
        _verdict("exhausted") == "Threshold not reached after 3 attempts: best accuracy 0.9300 at attempt 3"
    )
    assert (
        _verdict("failed")
        == "Attempt 2 failed: Training command exited with status 1 (MemoryError: out of memory)"
    )
    assert (
        _verdict("continue") == "Below threshold: accuracy 0.8600 < 0.90 at attempt 2 (20 epochs); "
        "next attempt 3 trains to 30 epochs"
    )


def test_verdict_is_one_line_even_for_a_multiline_error() -> None:
    config, ledger, _ = chain_case("failed")
    ledger.attempts[-1].error = HOSTILE
    text = report.verdict(ledger, config, strategy.decide(config, ledger))
    assert "\n" not in text and text.startswith("Attempt 2 failed: boom |")


# --------------------------------------------------------------------------- tables


def test_terminal_table_is_aligned() -> None:
    config, ledger, _ = chain_case("reached")
    lines = report.attempts_table(ledger, config).splitlines()
    assert len(lines) == 2 + 3
    header, rule, *body = lines
    assert header.split() == ["Attempt", "Epochs", "Trained", "accuracy", "Duration", "s", "Outcome"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert [row.split()[1] for row in body] == ["0->10", "10->20", "20->30"]
    assert [row.split()[3] for row in body] == ["0.7100", "0.8600", "0.9300"]
    column = header.index("Outcome")
    assert all(row[column:].split()[0] in ("below", "reached") for row in body)
    right_edge = header.index("accuracy") + len("accuracy")  # numbers are right-aligned under it
    assert all(row[right_edge - 6 : right_edge] in ("0.7100", "0.8600", "0.9300") for row in body)
    assert all(row[column - 2 : column] == "  " for row in body)


def test_terminal_table_shows_the_failure_on_one_line() -> None:
    config, ledger, _ = chain_case("failed")
    ledger.attempts[-1].error = HOSTILE
    lines = report.attempts_table(ledger, config).splitlines()
    assert len(lines) == 4
    assert "failed: boom" in lines[-1]
    assert not any(line.startswith("::") for line in lines)


def test_markdown_table_links_runs() -> None:
    config, ledger, _ = chain_case("reached")
    table = report.attempts_markdown(ledger, config)
    lines = table.splitlines()
    assert lines[0] == "| Attempt | Epochs | Trained | accuracy | Duration (s) | Outcome |"
    assert len(lines) == 5
    assert f"[3]({RUN_URL.format(1003)})" in lines[-1]
    assert "20 → 30" in lines[-1] and "0.9300" in lines[-1]


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_table_escapes_a_hostile_value() -> None:
    config, ledger, _ = chain_case("failed")
    ledger.attempts[-1].error = HOSTILE
    ledger.attempts[-1].run["url"] = "javascript:alert(1)"
    ledger.attempts[0].run["url"] = "https://github.com/owner/repo/actions/runs/1001?x=<b>|`y`"
    table = report.attempts_markdown(ledger, config)
    lines = table.splitlines()
    assert len(lines) == 4  # the newline did not add a row
    assert all(_unescaped_pipes(line) == 7 for line in lines)  # the pipe did not add a cell
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "`" not in table.replace("\\`", "")  # no live code span
    assert "javascript:" not in table.replace("javascript\\:", "")  # no live link to it
    assert "[2](" not in table  # the hostile URL is not linked
    assert "[1](https://github.com/owner/repo/actions/runs/1001?x=%3Cb%3E%7C%60y%60)" in table
    assert not any(line.lstrip().startswith("::") for line in lines)
    assert "\\*\\*b\\*\\*" in table


def test_empty_ledger_renders_without_error(tmp_path: Path) -> None:
    config = make_config()
    ledger = Ledger()
    decision = strategy.decide(config, ledger)
    assert "No attempts" in report.attempts_table(ledger, config)
    assert "No attempts" in report.attempts_markdown(ledger, config)
    assert "xychart-beta" not in report.mermaid_chart(ledger, config)
    assert png_size(report.render_chart(ledger, config, tmp_path / "c.png", decision).read_bytes())[0] > 0
    assert report.job_summary(ledger, config, decision).startswith("## ")


# --------------------------------------------------------------------------- mermaid


def _mermaid_lines(block: str) -> list[list[float]]:
    return [[float(v) for v in m.split(",")] for m in re.findall(r"^\s*line \[([^\]]*)\]", block, re.M)]


def test_mermaid_chart_of_a_resumed_chain() -> None:
    config, ledger, _ = chain_case("reached")
    block = report.mermaid_chart(ledger, config)
    assert block.startswith("```mermaid\nxychart-beta\n")
    assert 'x-axis "epoch" [' + ", ".join(str(e) for e in range(1, 31)) + "]" in block
    assert re.search(r'y-axis "accuracy" 0\.\d+ --> 1\b', block)
    metric_line, threshold_line = _mermaid_lines(block)  # exactly two lines
    assert len(metric_line) == len(threshold_line) == 30
    assert metric_line[0] == 0.35 and metric_line[9] == 0.71 and metric_line[19] == 0.86
    assert metric_line[-1] == 0.93
    assert set(threshold_line) == {0.9}
    assert block.count("```") == 2


def test_mermaid_chart_without_resume_draws_one_line_per_attempt() -> None:
    config, ledger, _ = chain_case("reached", resume=False)
    block = report.mermaid_chart(ledger, config)
    lines = _mermaid_lines(block)
    assert [len(line) for line in lines] == [10, 20, 30, 30]  # attempts 1-3, threshold
    assert [line[-1] for line in lines[:3]] == ENDS
    assert all(line[0] == 0.35 for line in lines[:3])  # each restarts at epoch 1


def test_mermaid_chart_samples_long_chains() -> None:
    config = make_config()
    record = Attempt(
        attempt=1,
        epochs=500,
        initial_epoch=0,
        resumed_from=None,
        outcome=BELOW,
        metric=0.8,
        epochs_reached=500,
        epochs_trained=500,
        history=_history(0.1, 0.8, 500),
    )
    block = report.mermaid_chart(Ledger(attempts=[record]), config)
    axis = re.search(r'x-axis "epoch" \[([^\]]*)\]', block)
    assert axis is not None
    epochs = [int(e) for e in axis.group(1).split(",")]
    assert epochs[0] == 1 and epochs[-1] == 500 and len(epochs) <= report.MERMAID_MAX_POINTS + 1
    assert all(len(line) == len(epochs) for line in _mermaid_lines(block))


# --------------------------------------------------------------------------- PNG chart

CRIMSON = (220, 20, 60)  # the threshold's colour
TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # attempts 1 and 2


def _rows_with(pixels: list[list[tuple[int, int, int]]], colour: tuple[int, int, int]) -> dict[int, int]:
    """Row -> how many pixels of that row have ``colour``."""
    counts = {y: row.count(colour) for y, row in enumerate(pixels)}
    return {y: n for y, n in counts.items() if n}


@pytest.mark.parametrize("kind", ["reached", "exhausted", "failed", "continue"])
def test_chart_png_is_valid_and_sized(kind: str, tmp_path: Path) -> None:
    config, ledger, decision = chain_case(kind)
    path = report.render_chart(ledger, config, tmp_path / "out" / "chart.png", decision)
    assert path == tmp_path / "out" / "chart.png"
    data = path.read_bytes()
    width, height = png_size(data)
    assert (width, height) == report.CHART_SIZE_PX
    pixels = decode_png(data)
    assert len(pixels) == height and {len(row) for row in pixels} == {width}
    colours = {p for row in pixels for p in row}
    assert len(colours) >= 5  # background, text, grid, the attempts, the threshold: not a blank canvas
    assert 2_000 < len(data) < 500_000
    # The threshold: a dashed crimson line across the plot, 2 pixels thick, where 0.9 lies on the y-axis.
    threshold_rows = {y: n for y, n in _rows_with(pixels, CRIMSON).items() if n > width // 3}
    assert len(threshold_rows) == 2 and max(threshold_rows) - min(threshold_rows) == 1
    row = pixels[min(threshold_rows)]
    xs = [x for x, p in enumerate(row) if p == CRIMSON and x < width - 200]  # left of the legend
    assert any(b - a > 1 for a, b in itertools.pairwise(xs)), "the threshold line is dashed"
    # Attempts 1 and 2 in their own colours; attempt 1 (0.35 -> 0.71) lies below the threshold's row.
    blue, orange = _rows_with(pixels, TAB_BLUE), _rows_with(pixels, TAB_ORANGE)
    assert sum(blue.values()) > 100 and sum(orange.values()) > 100
    plot_blue = [y for y in blue if y > min(threshold_rows) + 3]
    assert plot_blue and max(plot_blue) - min(plot_blue) > 100  # a rising line, not a dot


def test_chart_png_scales_values_to_the_axis(tmp_path: Path) -> None:
    """Where the threshold is drawn follows the y-axis: a higher threshold is drawn higher."""
    rows = []
    for threshold in (0.8, 0.9, 0.95):
        config, ledger, decision = chain_case("exhausted")
        config = make_config(threshold=threshold)
        pixels = decode_png(report.render_chart(ledger, config, tmp_path / "c.png", decision).read_bytes())
        rows.append(min(y for y, n in _rows_with(pixels, CRIMSON).items() if n > 300))
    assert rows[0] > rows[1] > rows[2]  # image rows grow downwards


def test_chart_png_needs_no_plotting_library(tmp_path: Path) -> None:
    """chart.png is drawn without matplotlib (keeptraining's install no longer has it)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    script = (
        "import sys\nfor name in ('matplotlib', 'numpy', 'PIL'): sys.modules[name] = None\n"
        "from pathlib import Path\nfrom test_report import chain_case\n"
        "from keeptraining.reports import summary\n"
        "config, ledger, decision = chain_case('reached')\n"
        f"summary.render_chart(ledger, config, Path({str(tmp_path / 'c.png')!r}), decision)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parent, timeout=120)
    assert png_size((tmp_path / "c.png").read_bytes()) == report.CHART_SIZE_PX


def test_chart_without_resume_and_hostile_error(tmp_path: Path) -> None:
    config, ledger, decision = chain_case("failed", resume=False)
    ledger.attempts[-1].error = "$\\frac{1}{0}$ $$ {unbalanced " + HOSTILE  # no mathtext parsing
    data = report.render_chart(ledger, config, tmp_path / "chart.png", decision).read_bytes()
    assert png_size(data) == report.CHART_SIZE_PX


# --------------------------------------------------------------------------- job summary


def test_job_summary_has_table_chart_provenance_and_next_run() -> None:
    config, ledger, decision = chain_case("continue")
    next_run = {"run_id": 1003, "url": RUN_URL.format(1003)}
    summary = report.job_summary(ledger, config, decision, next_run)
    assert summary.startswith("## 🔁 keeptraining: Below threshold")
    assert report.attempts_markdown(ledger, config) in summary
    assert "```mermaid\nxychart-beta" in summary
    assert f"<code>{COMMIT[:12]}</code>" in summary and f"/{REPO}/commit/{COMMIT}" in summary
    assert "<code>main</code>" in summary
    assert f"[run 1003]({RUN_URL.format(1003)})" in summary
    assert "attempt 3, 30 epochs" in summary


def test_job_summary_of_a_finished_chain_escapes_provenance() -> None:
    config, ledger, decision = chain_case("reached")
    ledger.chain["branch"] = "feat/<img src=x onerror=alert(1)>`x`"
    summary = report.job_summary(ledger, config, decision)
    assert summary.startswith("## ✅ keeptraining: Threshold reached")
    assert "<img" not in summary and "&lt;img src=x" in summary
    assert "Next attempt" not in summary


def test_job_summary_says_where_the_metric_came_from_and_warns() -> None:
    ledger = make_ledger()
    last = ledger.attempts[-1]
    last.metric_source, last.metric_line = "stdout (result line)", "Test accuracy: 0.93 <b>|"
    last.warnings = ["the script trained to epoch 15, not to KT_EPOCHS=30 *now*"]
    text = report.job_summary(ledger, make_config(), strategy.decide(make_config(), ledger))
    assert (
        "**accuracy read from:** stdout \\(result line\\): <code>Test accuracy: 0.93 &lt;b&gt;|</code>"
    ) in text
    assert "> **Warning:** the script trained to epoch 15, not to KT\\_EPOCHS=30 \\*now\\*" in text
    last.metric_source, last.metric_line, last.warnings = "evaluate", None, []
    text = report.job_summary(ledger, make_config(), strategy.decide(make_config(), ledger))
    assert "**accuracy read from:** evaluate\n" in text and "Warning" not in text
