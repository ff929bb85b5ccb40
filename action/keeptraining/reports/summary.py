"""Everything a person reads about a chain: tables, charts, the verdict, the job summary.

Pure functions of the ledger and the configuration, except ``render_chart``, which
writes one PNG. Every value that comes from the ledger (error messages, branch
names, URLs) is untrusted: it is flattened to one line for the terminal, escaped
for markdown and HTML, and links are kept only for ``http(s)`` URLs.

Epochs: an attempt's ``history`` holds the validation metric of the epochs that
attempt trained, starting at epoch ``initial_epoch + 1``. With ``resume`` the
attempts continue each other (epochs 1-10, 11-20, 21-30 …); with ``resume: false``
every attempt restarts at epoch 1, so their epochs overlap. Charts therefore draw
one line per *lineage* (a fresh start and the attempts that resumed from it), and
within a lineage the latest value of each epoch.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptraining.config.settings import Config
from keeptraining.engine import cost, slices, strategy
from keeptraining.engine.plan import (
    CHAIN_FAILED,
    CHAIN_REACHED,
    CHAIN_STOPPED,
    CONTINUE,
    EXHAUSTED,
    SUPERSEDED,
    Decision,
)
from keeptraining.output.wording import fmt_threshold, one_line
from keeptraining.reports import chart_png
from keeptraining.reports import rounds_table as round_report
from keeptraining.reports import search_table as search_report
from keeptraining.reports.markup import CHART_SIZE_PX, html_text, md_escape, safe_url
from keeptraining.state import safe_paths
from keeptraining.state.ledger import FAILED, SLICED, Attempt, Ledger

MERMAID_MAX_POINTS = 60  # more epochs than this are sampled so the x-axis stays readable

_CONTROL_NOT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # log text keeps its line breaks


def _metric(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One attempt as people read it; raw values, escaped by each renderer."""

    attempt: int
    epochs_from: int
    epochs_to: int
    trained: int
    metric: str  # formatted, "-" when none
    duration: str  # seconds, formatted
    outcome: str  # reached | below | failed | sliced
    error: str  # one-line reason when failed
    run_url: str | None  # http(s) only
    runs: int = 1  # the attempt's runs so far (slices.py: an attempt may train across runs)
    ends: tuple[int, ...] = ()  # epochs after which one of its runs stopped early

    @property
    def label(self) -> str:
        """``3``, or ``3 (2 runs)`` for an attempt that trained across runs."""
        return f"{self.attempt} ({self.runs} runs)" if self.runs > 1 else str(self.attempt)


def epochs_done(record: Attempt) -> int:
    """Epochs the model has after this attempt (its target when it did not report)."""
    if record.epochs_reached is not None:
        return record.epochs_reached
    if record.outcome == FAILED and record.history:
        return record.initial_epoch + len(record.history)
    return record.epochs


def rows(ledger: Ledger) -> list[Row]:
    return [
        Row(
            attempt=a.attempt,
            epochs_from=a.initial_epoch,
            epochs_to=epochs_done(a),
            trained=a.epochs_trained,
            metric=_metric(a.metric),
            duration=f"{a.duration_s:.1f}",
            outcome=a.outcome,
            error=one_line(a.error or "", 200),
            run_url=safe_url((a.run or {}).get("url")),
            runs=slices.runs(a),
            ends=tuple(slices.ends(a)),
        )
        for a in ledger.attempts
    ]


def outcome_text(row: Row, limit: int) -> str:
    """The outcome column: the error of a failed attempt, where the runs of a sliced one ended."""
    if row.outcome == FAILED and row.error:
        return one_line(f"failed: {row.error}", limit)
    if row.outcome == SLICED:
        return "sliced: continues in the next run"
    if row.ends:
        return one_line(f"{row.outcome} (runs ended after epoch {', '.join(map(str, row.ends))})", limit)
    return row.outcome


def attempts_table(ledger: Ledger, config: Config) -> str:
    """A plain-text, aligned table of the attempts for the terminal (and the mail's text part)."""
    header = ["Attempt", "Epochs", "Trained", one_line(config.metric, 20), "Duration s", "Outcome"]
    body = [
        [
            r.label,
            f"{r.epochs_from}->{r.epochs_to}",
            str(r.trained),
            r.metric,
            r.duration,
            outcome_text(r, 70),
        ]
        for r in rows(ledger)
    ]
    if not body:
        return "No attempts yet."
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {0, 1, 2, 3, 4}  # numbers right-aligned; the outcome (last) left-aligned

    def fmt(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])


def attempts_markdown(ledger: Ledger, config: Config) -> str:
    """The attempts as a GitHub markdown table; each attempt links to its run when known."""
    lines = [
        f"| Attempt | Epochs | Trained | {md_escape(config.metric, 40)} | Duration (s) | Outcome |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows(ledger):
        attempt = f"[{r.label}]({r.run_url})" if r.run_url else r.label
        lines.append(
            f"| {attempt} | {r.epochs_from} → {r.epochs_to} | {r.trained} | {r.metric} | {r.duration} "
            f"| {md_escape(outcome_text(r, 160))} |"
        )
    if len(lines) == 2:
        return "_No attempts yet._"
    return "\n".join(lines)


# --------------------------------------------------------------------------- verdict


def verdict(ledger: Ledger, config: Config, decision: Decision) -> str:
    """One line that says how the chain stands (or ended): the decision's own words (wording.py)."""
    return one_line(decision.reason, 300)


# --------------------------------------------------------------------------- chart data


@dataclass(frozen=True)
class Lineage:
    """A fresh start and the attempts that resumed from it: epoch -> latest value."""

    attempts: tuple[int, ...]
    values: dict[int, float]


def points(record: Attempt) -> list[tuple[int, float]]:
    """(epoch, value) of one attempt; epochs start at ``initial_epoch + 1``; non-finite values dropped."""
    out = []
    for i, value in enumerate(record.history):
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append((record.initial_epoch + 1 + i, number))
    return out


def lineages(ledger: Ledger) -> list[Lineage]:
    groups: list[tuple[list[int], dict[int, float]]] = []
    for record in ledger.attempts:
        if not groups or record.initial_epoch == 0:
            groups.append(([], {}))
        numbers, values = groups[-1]
        numbers.append(record.attempt)
        for epoch, value in points(record):
            values[epoch] = value  # a later attempt's value of the same epoch wins
    return [Lineage(tuple(n), v) for n, v in groups if v]


def _y_range(values: list[float], threshold: float) -> tuple[float, float]:
    lo = min([*values, threshold])
    hi = max([*values, threshold])
    bottom = max(0.0, math.floor((lo - 0.05) * 10) / 10)
    top = math.ceil((hi + 0.02) * 10) / 10
    if hi <= 1.0:
        top = min(1.0, top)
    if top - bottom < 0.1:
        bottom = max(0.0, top - 0.1)
    return round(bottom, 2), round(top, 2)


def mermaid_chart(ledger: Ledger, config: Config) -> str:
    """A mermaid ``xychart-beta`` block: the metric per epoch and the threshold as a second line.

    One line per lineage (with ``resume`` that is one line for the whole chain; with
    ``resume: false`` one per attempt, each starting at epoch 1). Mermaid has no gaps
    and no legend: an epoch a lineage lacks inside its range repeats its previous
    value, and the lines are named in a comment and the caption below the block.
    """
    metric = re.sub(r"[^A-Za-z0-9_ .-]", "", config.metric)[:40] or "metric"
    groups = lineages(ledger)
    if not groups:
        return "_No per-epoch values to chart yet._"
    first = min(min(g.values) for g in groups)
    last = max(max(g.values) for g in groups)
    epochs = list(range(first, last + 1))
    if len(epochs) > MERMAID_MAX_POINTS:
        step = math.ceil(len(epochs) / MERMAID_MAX_POINTS)
        epochs = epochs[::step] if epochs[::step][-1] == last else [*epochs[::step], last]

    series: list[tuple[str, list[float]]] = []
    for group in groups:
        end = max(group.values)
        known = sorted(group.values)
        row: list[float] = []
        for epoch in epochs:
            if epoch > end:
                break  # a shorter line simply ends (mermaid pairs values with the first categories)
            earlier = [e for e in known if e <= epoch]
            row.append(group.values[earlier[-1]] if earlier else group.values[known[0]])
        label = (
            "attempt" + ("s " if len(group.attempts) > 1 else " ") + ", ".join(str(n) for n in group.attempts)
        )
        series.append((label, row))

    bottom, top = _y_range([v for _, row in series for v in row], config.threshold)
    threshold = fmt_threshold(config.threshold)
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{metric} per epoch (threshold {threshold})"',
        f'    x-axis "epoch" [{", ".join(str(e) for e in epochs)}]',
        f'    y-axis "{metric}" {bottom:g} --> {top:g}',
    ]
    for label, row in series:
        lines.append(f"    %% {label}")
        lines.append(f"    line [{', '.join(f'{v:.4f}' for v in row)}]")
    lines.append("    %% threshold")
    lines.append(f"    line [{', '.join(threshold for _ in epochs)}]")
    lines.append("```")
    names = "; ".join(label for label, _ in series)
    caption = (
        f"_Lines: {md_escape(metric)} per epoch ({md_escape(names)}), then the threshold {threshold} (flat)._"
    )
    ends = sorted({e for record in ledger.attempts for e in slices.ends(record)})
    if ends:
        caption += (
            f" _A run ended after epoch {', '.join(map(str, ends))}: its attempt went on in the next run._"
        )
    return "\n".join(lines) + "\n\n" + caption


# --------------------------------------------------------------------------- PNG chart

_MARKERS = ("o", "s", "^", "D", "v")
_LEGEND_MAX = 8  # attempts named in the legend; more are summed up in one entry


def _plot_attempts(ax: chart_png.Axes, ledger: Ledger) -> list[chart_png.LegendEntry]:
    """Each attempt's curve, the resumed-from boundaries and where a run ended; their legend entries."""
    entries: list[chart_png.LegendEntry] = []
    for x in sorted({r.initial_epoch + 0.5 for r in ledger.attempts if r.initial_epoch > 0}):
        ax.vline(x, (160, 160, 160))
    ends = sorted({e for record in ledger.attempts for e in slices.ends(record)})
    for epoch in ends:  # where a run stopped and the attempt went on in the next
        ax.vline(epoch + 0.5, chart_png.ORANGE, width=2, dash=(6, 4))
    drawn = 0
    for index, record in enumerate(ledger.attempts):
        pts = points(record)
        if not pts:
            continue
        colour = chart_png.PALETTE[index % len(chart_png.PALETTE)]
        marker = _MARKERS[index % len(_MARKERS)]
        failed = record.outcome == FAILED
        ax.plot([p[0] for p in pts], [p[1] for p in pts], colour, dashed=failed, marker=marker)
        drawn += 1
        if drawn <= _LEGEND_MAX:
            label = f"attempt {record.attempt}" + (" (failed)" if failed else "")
            entries.append(chart_png.LegendEntry(label, colour, failed, marker))
    if drawn > _LEGEND_MAX:
        entries.append(chart_png.LegendEntry(f"... {drawn - _LEGEND_MAX} more attempts", chart_png.GREY))
    if ends:
        entries.append(chart_png.LegendEntry("a run ended; the attempt went on", chart_png.ORANGE, True))
    return entries


def render_chart(ledger: Ledger, config: Config, path: Path, decision: Decision | None = None) -> Path:
    """Draw the metric per epoch, one colour/marker per attempt, the threshold dashed, to a 900x450 PNG.

    Drawn by chart_png (stdlib only): no plotting library to install, nothing global to switch.
    """
    if decision is None:
        decision = strategy.decide(config, ledger)
    if config.strategy == "search":
        return search_report.render_chart(ledger, config, path)
    metric = one_line(config.metric, 40)
    width, height = CHART_SIZE_PX
    plotted = [v for record in ledger.attempts for _, v in points(record)]
    epochs = [e for record in ledger.attempts for e, _ in points(record)]
    bottom, top = _y_range(plotted, config.threshold) if plotted else (0.0, 1.0)
    first, last = (min(epochs), max(epochs)) if epochs else (0, 10)
    pad = max(0.5, (last - first) * 0.03)
    canvas = chart_png.Canvas(width, height)
    below = chart_png.title(canvas, one_line(verdict(ledger, config, decision), 150))
    ax = chart_png.Axes(
        canvas, (92, below + 16, width - 20, height - 58), (first - pad, last + pad), (bottom, top)
    )
    x_ticks = chart_png.nice_ticks(first, last, 10, integer=True)
    y_ticks = chart_png.nice_ticks(bottom, top, 6)
    ax.frame(
        x_ticks=[(x, f"{x:.0f}") for x in x_ticks],
        y_ticks=[(y, chart_png.tick_label(y, y_ticks)) for y in y_ticks],
        x_label="epoch",
        y_label=f"validation {metric}",
        scale=2,
    )
    entries = _plot_attempts(ax, ledger)
    ax.hline(config.threshold, chart_png.CRIMSON)
    entries.append(
        chart_png.LegendEntry(f"threshold {fmt_threshold(config.threshold)}", chart_png.CRIMSON, dashed=True)
    )
    if not plotted:
        ax.note("no per-epoch values recorded", 2)
    ax.legend(entries, 2 if len(entries) <= 6 else 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_paths.atomic_write(path, canvas.png())  # replaces a planted link, never writes through it
    return path


# --------------------------------------------------------------------------- job summary

_ICONS = {
    CHAIN_REACHED: "✅",
    EXHAUSTED: "⚠️",
    CHAIN_STOPPED: "🛑",
    CHAIN_FAILED: "❌",
    CONTINUE: "🔁",
    SUPERSEDED: "⏭️",
    "interrupted": "⏹️",
}  # a cancelled run (attempt_step: nothing dispatched, nothing mailed)


def _code(value: object) -> str:
    return f"<code>{html_text(value, 100)}</code>"


def provenance_markdown(chain: dict[str, Any]) -> str:
    """Commit / branch / repository as a markdown line ('' when none is known)."""
    parts = []
    commit = chain.get("commit")
    repo = chain.get("repository")
    server = safe_url(chain.get("server_url"))
    if commit:
        short = _code(str(commit)[:12])
        is_sha = isinstance(commit, str) and re.fullmatch(r"[0-9a-fA-F]{7,64}", commit) is not None
        if is_sha and server and isinstance(repo, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            short = f"[{short}]({server.rstrip('/')}/{repo}/commit/{commit})"
        parts.append(f"commit {short}")
    if chain.get("branch"):
        parts.append(f"branch {_code(chain['branch'])}")
    if repo:
        parts.append(f"repository {_code(repo)}")
    return ("**Trained:** " + ", ".join(parts)) if parts else ""


def result_markdown(ledger: Ledger, config: Config) -> str:
    """Where the last attempt's metric came from (the output line, when it was read from one),
    and the training-contract warnings it raised ('' when there is nothing to say)."""
    last = ledger.last
    if last is None:
        return ""
    out = []
    if last.metric is not None and last.metric_source:
        line = f": <code>{html_text(last.metric_line, 200)}</code>" if last.metric_line else ""
        out.append(f"**{md_escape(config.metric, 40)} read from:** {md_escape(last.metric_source, 60)}{line}")
    out += [f"> **Warning:** {md_escape(text, 500)}" for text in last.warnings[:5]]
    return "\n\n".join(out)


_COUNTED_FROM = {
    "run_started_at": "the run's start",
    "action": "the action's start",
    "attempt": "the attempt's start",
}


def cost_lines(ledger: Ledger, config: Config) -> list[str]:
    """What the chain cost and where it was heading, as plain lines: the runner minutes and their estimated
    cost per runner kind (engine/cost.py), and the last attempt's projection (engine/projection.py)."""
    out = []
    totals = cost.ledger_totals(ledger, config.price_per_minute, config.runner_prices)
    if totals:
        priced = [t for t in totals if t.cost is not None]
        money = f"; estimated cost ${sum(t.cost or 0.0 for t in priced):.2f}" if priced else ""
        counted_from = [a.minutes_from for a in ledger.attempts if a.minutes is not None]
        counted_from += [j.minutes_from for j in ledger.jobs]
        sources = sorted({_COUNTED_FROM.get(str(source), "") for source in counted_from} - {""})
        counted = f"; counted from {' or '.join(sources)}" if sources else ""
        out.append(f"Runner minutes: {cost.describe(totals)}{money}{counted}")
    last = ledger.last
    record = last.projection if last is not None else {}
    if record and all(isinstance(record.get(k), (int, float)) for k in ("projected", "bound", "at_epochs")):
        sign = "<" if record.get("hopeless") else "≥"
        out.append(
            f"Projection after attempt {last.attempt if last else ''}: {one_line(config.metric, 40)} "
            f"{float(record['projected']):.4f} at {int(record['at_epochs'])} epochs, optimistic bound "
            f"{min(float(record['bound']), 1.0):.4f} {sign} {fmt_threshold(config.threshold)}"
        )
    return out


def cost_markdown(ledger: Ledger, config: Config) -> str:
    """``cost_lines`` for the job summary ('' when there is nothing to say)."""
    return "\n\n".join(
        f"**{md_escape(line.split(': ', 1)[0])}:** {md_escape(line.split(': ', 1)[1], 600)}"
        for line in cost_lines(ledger, config)
    )


def failure_markdown(title: str, message: str, hint: str = "", log_tail: str = "") -> str:
    """The error that ended an attempt, what to do, and the end of its log (escaped, folded)."""
    out = [f"**{md_escape(title, 100)}:** {md_escape(message, 2000)}"]
    if hint:
        out += ["", f"_{md_escape(hint, 1000)}_"]
    if log_tail.strip():
        lines = "\n".join(log_tail.rstrip().splitlines()[-60:])[-8000:]
        text = html.escape(_CONTROL_NOT_NEWLINE.sub("", lines), quote=True)
        out += [
            "",
            "<details open><summary>Last lines of the log</summary>",
            "",
            f"<pre>{text}</pre>",
            "",
            "</details>",
        ]
    return "\n".join(out)


def failure_summary(verdict_text: str, title: str, message: str, hint: str = "") -> str:
    """The job summary of a run that failed before its configuration could even be read."""
    return (
        f"## {_ICONS[CHAIN_FAILED]} keeptraining: {md_escape(verdict_text, 300)}\n\n"
        + failure_markdown(title, message, hint)
        + "\n"
    )


def job_summary(
    ledger: Ledger,
    config: Config,
    decision: Decision,
    next_run: dict[str, Any] | None = None,
    *,
    failure: str = "",
) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: verdict, the failure (``failure_markdown``) if
    any, table, chart, provenance, next run."""
    icon = _ICONS.get(decision.kind, "")
    out = [f"## {icon} keeptraining: {md_escape(verdict(ledger, config, decision))}".replace("  ", " "), ""]
    if failure:
        out += [failure, ""]
    if config.strategy == "search":
        out += [search_report.summary_markdown(ledger, config), ""]
        if config.parallel > 1 or any(a.round for a in ledger.attempts):  # rounds of parallel trials
            out += [round_report.rounds_markdown(ledger, config), ""]
        out += ["### Attempts", ""]
        out += [attempts_markdown(ledger, config), ""]
    else:
        out += [attempts_markdown(ledger, config), ""]
    result = "\n\n".join(
        part for part in (result_markdown(ledger, config), cost_markdown(ledger, config)) if part
    )
    if result:
        out += [result, ""]
    if config.strategy != "search":
        out += [mermaid_chart(ledger, config), ""]
    provenance = provenance_markdown(ledger.chain)
    if provenance:
        out += [provenance, ""]
    if next_run is None and ledger.last is not None and ledger.last.dispatched:
        next_run = ledger.last.dispatched
    if next_run:
        url = safe_url(next_run.get("url") or next_run.get("html_url"))
        run_id = next_run.get("run_id") or next_run.get("id")
        name = f"run {md_escape(run_id)}" if run_id else "the next run"
        link = f"[{name}]({url})" if url else name
        detail = []
        attempt, run = next_run.get("attempt"), next_run.get("run")
        if isinstance(attempt, int) and not isinstance(attempt, bool):
            detail.append("attempt " + slices.label(attempt, run if isinstance(run, int) else 1))
        elif ledger.last is not None:
            detail.append(f"attempt {ledger.last.attempt + 1}")
        if decision.next_epochs:
            detail.append(f"{decision.next_epochs} epochs")
        head = (
            "Next run of this attempt dispatched"
            if isinstance(run, int) and run > 1
            else "Next attempt dispatched"
        )
        out += [f"**{head}:** {link}" + (f" ({', '.join(detail)})" if detail else ""), ""]
    return "\n".join(out).rstrip() + "\n"
