"""What a person reads about a search: the best values, every trial, and a chart.

Used by summary.py (terminal, job summary, chart.png) and mail.py (the mail) when
``strategy: search``. Like summary.py, every value from the ledger is escaped for where it
goes; a ledger that does not validate against the search (search.validated_trials) gives no
search section rather than an error, so a failure report is never lost for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from keeptraining.config.settings import Config
from keeptraining.engine import search
from keeptraining.engine.search import Trial
from keeptraining.errors import LedgerError
from keeptraining.reports import chart_png, markup
from keeptraining.state import safe_paths
from keeptraining.state.ledger import SLICED, Ledger

# Status of a trial, as the tables show it.
REACHED = "reached"
FAILED = "failed"
PROMOTABLE = "may be promoted"
STOPPED = "stopped"  # below the threshold and not among the best of its rung: not continued
UNFINISHED = "unfinished"  # its run's time ran out: its next run goes on (slices.py)
_STATUS_COLOURS = {
    REACHED: "#1a7f37",
    FAILED: "#cf222e",
    PROMOTABLE: "#0969da",
    STOPPED: "#8c959f",
    UNFINISHED: "#0969da",
}


@dataclass(frozen=True)
class TrialRow:
    number: int
    values: dict[str, str]  # name -> formatted value
    rung: int
    epochs: int
    result: float | None  # the trial's best metric
    status: str
    attempts: tuple[int, ...]


def trials(ledger: Ledger, config: Config) -> list[Trial]:
    """The ledger's trials, or none when it does not fit this search."""
    if config.strategy != search.SEARCH or not ledger.attempts:
        return []
    try:
        return search.validated_trials(ledger, config.search_settings())
    except LedgerError:
        return []


def status(trial: Trial, all_trials: list[Trial], config: Config, ledger: Ledger) -> str:
    if trial.reached:
        return REACHED
    if trial.failed:
        return FAILED
    if trial.last.outcome == SLICED:
        return UNFINISHED
    settings = config.search_settings()
    left = config.max_attempts - (ledger.last.attempt if ledger.last else 0)
    if any(t.reached for t in all_trials):
        left = 0  # the search has ended: nothing will be promoted any more
    grows = config.max_epochs is None or trial.epochs < config.max_epochs
    if grows and search.may_be_promoted(trial, all_trials, settings.reduction_factor, left):
        return PROMOTABLE
    return STOPPED


def rows(ledger: Ledger, config: Config) -> list[TrialRow]:
    found = trials(ledger, config)
    return [
        TrialRow(
            t.number,
            {k: search.format_value(v) for k, v in t.params.items()},
            t.rung,
            t.epochs,
            t.best,
            status(t, found, config, ledger),
            tuple(r.attempt for r in t.runs),
        )
        for t in found
    ]


def best_line(ledger: Ledger, config: Config) -> str:
    """``Best trial 3: accuracy 0.9312 with learning_rate=0.03, optimizer=adam (30 epochs, attempt 9).``"""
    best = search.best_trial(trials(ledger, config))
    if best is None or best.best is None:
        return ""
    run = max((r for r in best.runs if r.metric is not None), key=lambda r: r.metric or 0.0)
    where = ""
    if run.round is not None:  # parallel trials: which round, slot and runner trained it
        runner = run.runner or {}
        name = f" on {markup.one_line(runner['runner'], 100)}" if runner.get("runner") else ""
        where = f", round {run.round} slot {runner.get('slot', '?')}{name}"
    return (
        f"Best trial {best.number}: {markup.one_line(config.metric, 40)} {best.best:.4f} with "
        f"{markup.one_line(search.values_text(best.params), 300)} ({best.epochs} epochs, "
        f"attempt {run.attempt}{where})."
    )


def _metric(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def trials_table(ledger: Ledger, config: Config) -> str:
    """Every trial as an aligned text table (terminal and the mail's text part)."""
    found = rows(ledger, config)
    if not found:
        return ""
    names = list(found[0].values)
    header = [
        "Trial",
        *(markup.one_line(n, 24) for n in names),
        "Rung",
        "Epochs",
        markup.one_line(config.metric, 20),
        "Status",
    ]
    body = [
        [
            str(r.number),
            *(markup.one_line(r.values[n], 24) for n in names),
            str(r.rung),
            str(r.epochs),
            _metric(r.result),
            r.status,
        ]
        for r in found
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def trials_markdown(ledger: Ledger, config: Config) -> str:
    found = rows(ledger, config)
    if not found:
        return ""
    names = list(found[0].values)
    lines = [
        "| Trial | "
        + " | ".join(markup.md_escape(n, 40) for n in names)
        + f" | Rung | Epochs | {markup.md_escape(config.metric, 40)} | Status | Attempts |",
        "| ---: | " + " | ".join("---" for _ in names) + " | ---: | ---: | ---: | --- | --- |",
    ]
    for r in found:
        cells = " | ".join(markup.md_escape(r.values[n], 60) for n in names)
        lines.append(
            f"| {r.number} | {cells} | {r.rung} | {r.epochs} | {_metric(r.result)} | {r.status} "
            f"| {', '.join(str(a) for a in r.attempts)} |"
        )
    return "\n".join(lines)


def trials_html(ledger: Ledger, config: Config) -> str:
    found = rows(ledger, config)
    if not found:
        return ""
    names = list(found[0].values)
    cell = 'style="padding:4px 10px;border:1px solid #ddd"'
    head = "".join(
        f"<th {cell}>{markup.html_text(h, 40)}</th>"
        for h in ["Trial", *names, "Rung", "Epochs", config.metric, "Status"]
    )
    out = [f'<table style="border-collapse:collapse;font-size:14px"><tr>{head}</tr>']
    for r in found:
        values = [
            str(r.number),
            *(r.values[n] for n in names),
            str(r.rung),
            str(r.epochs),
            _metric(r.result),
            r.status,
        ]
        out.append("<tr>" + "".join(f"<td {cell}>{markup.html_text(v, 60)}</td>" for v in values) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def mermaid_chart(ledger: Ledger, config: Config) -> str:
    """A mermaid bar chart of each trial's best result, with the threshold as a line."""
    found = [r for r in rows(ledger, config) if r.result is not None]
    if not found:
        return "_No trial has reported a result yet._"
    metric = "".join(c for c in config.metric if c.isalnum() or c in "_ .-")[:40] or "metric"
    threshold = markup.fmt_threshold(config.threshold)
    values = [r.result or 0.0 for r in found]
    low = max(0.0, math.floor((min([*values, config.threshold]) - 0.05) * 10) / 10)
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'    title "best {metric} per trial (threshold {threshold})"',
            f'    x-axis "trial" [{", ".join(str(r.number) for r in found)}]',
            f'    y-axis "{metric}" {low:g} --> 1',
            f"    bar [{', '.join(f'{v:.4f}' for v in values)}]",
            f"    line [{', '.join(threshold for _ in found)}]",
            "```",
        ]
    )


def _mermaid_label(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "_.+-")[:24] or "?"


def mermaid_param_charts(ledger: Ledger, config: Config) -> str:
    """One mermaid bar chart per parameter: the best result at each value tried, values in order."""
    found = [r for r in rows(ledger, config) if r.result is not None]
    metric = _mermaid_label(config.metric)
    blocks = []
    for param in config.search_settings().space:
        best: dict[str, float] = {}
        for r in found:
            label = r.values[param.name]
            best[label] = max(best.get(label, 0.0), r.result or 0.0)
        if not best:
            continue
        order = (
            [search.format_value(c) for c in param.choices]
            if param.type == "categorical"
            else sorted(best, key=float)
        )
        labels = [label for label in order if label in best]
        categories = ", ".join('"' + _mermaid_label(x) + '"' for x in labels)
        blocks.append(
            "\n".join(
                [
                    "```mermaid",
                    "xychart-beta",
                    f'    title "best {metric} by {_mermaid_label(param.name)}"',
                    f'    x-axis "{_mermaid_label(param.name)}" [{categories}]',
                    f'    y-axis "{metric}" 0 --> 1',
                    f"    bar [{', '.join(f'{best[x]:.4f}' for x in labels)}]",
                    "```",
                ]
            )
        )
    return "\n\n".join(blocks)


def summary_markdown(ledger: Ledger, config: Config) -> str:
    """The search part of the job summary: the best values, every trial, the chart."""
    table = trials_markdown(ledger, config)
    if not table:
        return ""
    best = best_line(ledger, config)
    return "\n\n".join(
        p
        for p in [
            "### Search",
            markup.md_escape(best, 400) if best else "",
            table,
            mermaid_chart(ledger, config),
            mermaid_param_charts(ledger, config),
        ]
        if p
    )


def _legend(canvas: chart_png.Canvas, centre: float, y: int, scored: list[TrialRow], config: Config) -> None:
    """The legend row under the title: the statuses shown, then the threshold's line."""
    shown = sorted({r.status for r in scored}, key=list(_STATUS_COLOURS).index)
    legend = [chart_png.LegendEntry(s, chart_png.hex_colour(_STATUS_COLOURS[s]), box=True) for s in shown]
    chart_png.legend_row(
        canvas,
        centre,
        y,
        [
            *legend,
            chart_png.LegendEntry(
                f"threshold {markup.fmt_threshold(config.threshold)}", chart_png.CRIMSON, True
            ),
        ],
    )


def render_chart(ledger: Ledger, config: Config, path: Path) -> Path:
    """chart.png for a search: each trial's result, then each parameter against the result (chart_png)."""
    found = rows(ledger, config)
    params = list(config.search_settings().space)
    panels = 1 + len(params)
    columns = min(panels, 3)
    lines = math.ceil(panels / columns)
    width, height = markup.CHART_SIZE_PX
    height = max(height, 300 * lines)
    canvas = chart_png.Canvas(width, height)
    scale = 2 if columns <= 2 else 1
    metric = markup.one_line(config.metric, 40)
    scored = [r for r in found if r.result is not None]
    title = markup.one_line(best_line(ledger, config) or "No trial has reported a result yet.", 200)
    legend_at = chart_png.title(canvas, title) + 4
    cell_w, top = width // columns, legend_at + 18
    cell_h = (height - top) // lines

    def box(index: int) -> tuple[int, int, int, int]:
        x, y = index % columns * cell_w, top + index // columns * cell_h
        return (x + 44 + 8 * scale, y + 14 + 8 * scale, x + cell_w - 14, y + cell_h - 26 - 12 * scale)

    values = [r.result or 0.0 for r in scored]
    low = max(0.0, math.floor((min([*values, config.threshold]) - 0.05) * 10) / 10)
    ylim = (low, max(1.0, *values, config.threshold))
    y_ticks = chart_png.nice_ticks(*ylim, 5)
    y_labelled = [(y, chart_png.tick_label(y, y_ticks)) for y in y_ticks]
    numbers = [r.number for r in scored] or [1]
    ax = chart_png.Axes(canvas, box(0), (min(numbers) - 0.7, max(numbers) + 0.7), ylim)
    trial_ticks = chart_png.nice_ticks(min(numbers), max(numbers), 8, integer=True)
    ax.frame(
        x_ticks=[(x, f"{x:.0f}") for x in trial_ticks],
        y_ticks=y_labelled,
        x_label="trial",
        y_label=metric,
        title=f"{metric} per trial",
        scale=scale,
    )
    colours = [chart_png.hex_colour(_STATUS_COLOURS[r.status]) for r in scored]
    ax.bars([float(r.number) for r in scored], values, colours)
    ax.hline(config.threshold, chart_png.CRIMSON)
    if not scored:
        ax.note("no results yet", scale)
    _legend(canvas, width / 2, legend_at, scored, config)
    for i, param in enumerate(params, start=1):
        _param_panel(canvas, box(i), param, scored, config, (ylim, y_labelled), scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_paths.atomic_write(path, canvas.png())  # replaces a planted link, never writes through it
    return path


def _param_panel(
    canvas: chart_png.Canvas,
    box: tuple[int, int, int, int],
    param: search.Param,
    scored: list[TrialRow],
    config: Config,
    y_axis: tuple[tuple[float, float], list[tuple[float, str]]],
    scale: int,
) -> None:
    """One parameter against the result; categories at fixed positions, a log axis for log ranges."""
    ylim, y_ticks = y_axis
    x_ticks: list[tuple[float, str]]
    if param.type == "categorical":
        labels = [search.format_value(c) for c in param.choices]
        xs: list[float] = [
            float(labels.index(r.values[param.name])) if r.values[param.name] in labels else math.nan
            for r in scored
        ]
        ax = chart_png.Axes(canvas, box, (-0.5, len(labels) - 0.5), ylim)
        x_ticks = [(float(i), markup.one_line(label, 12)) for i, label in enumerate(labels)]
    else:
        xs = [float(r.values[param.name]) for r in scored]
        finite = [x for x in xs if math.isfinite(x) and (x > 0 or not param.log)]
        lo, hi = (min(finite), max(finite)) if finite else (1.0, 10.0)
        if param.log and lo > 0:
            ax = chart_png.Axes(canvas, box, (lo / 1.5, hi * 1.5), ylim, xlog=True)
            decades = range(math.floor(math.log10(lo / 1.5)), math.ceil(math.log10(hi * 1.5)) + 1)
            x_ticks = [(10.0**d, f"{10.0**d:g}") for d in decades if lo / 1.5 <= 10.0**d <= hi * 1.5]
        else:
            pad = (hi - lo) * 0.08 or 0.5
            ax = chart_png.Axes(canvas, box, (lo - pad, hi + pad), ylim)
            ticks = chart_png.nice_ticks(lo - pad, hi + pad, 5, integer=param.type == "int")
            x_ticks = [(t, chart_png.tick_label(t, ticks)) for t in ticks]
    ax.frame(x_ticks=x_ticks, y_ticks=y_ticks, x_label=markup.one_line(param.name, 40), scale=scale)
    ax.hline(config.threshold, chart_png.CRIMSON)
    ax.scatter(
        xs,
        [r.result or 0.0 for r in scored],
        [chart_png.hex_colour(_STATUS_COLOURS[r.status]) for r in scored],
    )
