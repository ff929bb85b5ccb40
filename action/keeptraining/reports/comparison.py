"""A comparison of candidate and champion, as people read it: the terminal, the PR comment, the summary.

The PR comment is found again by ``MARKER`` (an HTML comment GitHub does not show): later runs
of the same pull request edit that comment in place, never add a second one. The same markdown
is the job summary. Every value shown is a number formatted here, or text escaped here; links
are kept only for ``http(s)`` URLs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from keeptraining.engine.compare import Comparison
from keeptraining.output.wording import fmt_delta, fmt_metric, fmt_threshold, plural
from keeptraining.reports.summary import MERMAID_MAX_POINTS, md_escape, safe_url

#: Identifies keeptraining's comment on a pull request (hidden in the rendered comment).
MARKER = "<!-- keeptraining:pr-check -->"


def _epochs(value: int | None) -> str:
    return "?" if value is None else str(value)


def compared_at(comparison: Comparison) -> str:
    """Why the candidate has fewer epochs than asked, or an empty string."""
    if not comparison.short:
        return ""
    why = "at its time budget" if comparison.candidate.stopped == "deadline" else "early (the script stopped)"
    return (
        f"The candidate stopped {why} after {_epochs(comparison.candidate.epochs)} of "
        f"{comparison.epochs_asked} epochs: it was compared at "
        f"{plural(comparison.candidate.epochs or 0, 'epoch')}."
    )


def text(comparison: Comparison) -> str:
    """The terminal's lines: both values, the delta and the verdict."""
    metric = comparison.metric
    lines = []
    if comparison.champion is not None and comparison.champion_eval is not None:
        recorded = (
            f", {fmt_metric(comparison.champion.value)} when published"
            if comparison.champion.value is not None
            else ""
        )
        lines.append(
            f"Champion  {comparison.champion.name}: {metric} "
            f"{fmt_metric(comparison.champion_eval.value)} at {comparison.champion.epochs} epochs "
            f"(evaluated with this code and data{recorded})"
        )
    lines.append(
        f"Candidate (this code): {metric} {fmt_metric(comparison.candidate.value)} at "
        f"{_epochs(comparison.candidate.epochs)} epochs"
    )
    if comparison.delta is not None:
        lines.append(f"Delta: {fmt_delta(comparison.delta)} (tolerance {comparison.tolerance:g})")
    else:
        lines.append(f"No champion yet: judged against the threshold {fmt_threshold(comparison.threshold)}.")
    note = compared_at(comparison)
    if note:
        lines.append(note)
    lines.append(comparison.verdict())
    return "\n".join(lines)


def _sampled(epochs: list[int]) -> list[int]:
    if len(epochs) <= MERMAID_MAX_POINTS:
        return epochs
    step = math.ceil(len(epochs) / MERMAID_MAX_POINTS)
    sample = epochs[::step]
    return sample if sample[-1] == epochs[-1] else [*sample, epochs[-1]]


def mermaid_chart(comparison: Comparison) -> str:
    """The candidate's metric per epoch against the champion's evaluated value (flat), and the
    threshold when there is no champion. Mermaid has no legend: the caption names the lines."""
    history = comparison.candidate.history
    if not history:
        return "_The candidate reported no per-epoch values to chart._"
    metric = re.sub(r"[^A-Za-z0-9_ .-]", "", comparison.metric)[:40] or "metric"
    first = (comparison.candidate.epochs or len(history)) - len(history) + 1
    epochs = _sampled(list(range(first, first + len(history))))
    row = [history[e - first] for e in epochs]
    if comparison.champion_eval is not None:
        flat, flat_name = comparison.champion_eval.value, "the champion (evaluated with this code)"
    else:
        flat, flat_name = comparison.threshold, "the threshold"
    values = [*row, flat]
    bottom = max(0.0, math.floor((min(values) - 0.05) * 10) / 10)
    top = min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    if top - bottom < 0.1:
        bottom = max(0.0, top - 0.1)
    against = "champion" if comparison.champion_eval else "threshold"
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{metric} per epoch: candidate vs {against}"',
        f'    x-axis "epoch" [{", ".join(str(e) for e in epochs)}]',
        f'    y-axis "{metric}" {bottom:g} --> {top:g}',
        "    %% candidate",
        f"    line [{', '.join(f'{v:.4f}' for v in row)}]",
        f"    %% {flat_name}",
        f"    line [{', '.join(f'{flat:.4f}' for _ in epochs)}]",
        "```",
    ]
    caption = f"_Lines: the candidate's {md_escape(metric)} per epoch, then {flat_name} (flat)._"
    return "\n".join(lines) + "\n\n" + caption


def _link(label: str, url: str | None) -> str:
    safe = safe_url(url)
    return f"[{md_escape(label)}]({safe})" if safe else md_escape(label)


def markdown(
    comparison: Comparison,
    *,
    run_url: str | None = None,
    head_sha: str | None = None,
    extra_links: Sequence[tuple[str, str | None]] = (),
) -> str:
    """The PR comment (with ``MARKER``) and the job summary: the verdict, a table, the chart, links."""
    icon = "✅" if comparison.passed else "❌"
    metric = md_escape(comparison.metric, 40)
    lines = [
        MARKER,
        f"### {icon} keeptraining: candidate vs champion",
        "",
        f"**{md_escape(comparison.verdict())}**",
        "",
    ]
    lines += ["| | " + metric + " | epochs | |", "| --- | ---: | ---: | --- |"]
    champion = comparison.champion
    if champion is not None and comparison.champion_eval is not None:
        where = _link(champion.name or "champion", champion.url)
        recorded = f"; published at {fmt_metric(champion.value)}" if champion.value is not None else ""
        lines.append(
            f"| Champion {where} | {fmt_metric(comparison.champion_eval.value)} | "
            f"{champion.epochs} | evaluated with this code and data{recorded} |"
        )
    candidate = comparison.candidate
    commit = f" `{head_sha[:7]}`" if head_sha and re.fullmatch(r"[0-9a-fA-F]{7,64}", head_sha) else ""
    lines.append(
        f"| Candidate{commit} | {fmt_metric(candidate.value)} | {_epochs(candidate.epochs)} | "
        f"trained from scratch in {candidate.duration_s:.1f} s |"
    )
    if comparison.delta is not None:
        delta = fmt_delta(comparison.delta)
        lines.append(f"| **Delta** | **{delta}** | | tolerance {comparison.tolerance:g} |")
    else:
        lines.append(f"| Threshold | {fmt_threshold(comparison.threshold)} | | no champion yet |")
    note = compared_at(comparison)
    if note:
        lines += ["", f"⏱️ {md_escape(note)}"]
    lines += ["", mermaid_chart(comparison), ""]
    links = [_link("this run", run_url)] if safe_url(run_url) else []
    links += [_link(label, url) for label, url in extra_links if safe_url(url)]
    if links:
        lines.append("Links: " + " · ".join(links))
    return "\n".join(lines).rstrip() + "\n"
