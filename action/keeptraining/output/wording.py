"""How keeptraining says a result, in one place.

The verdict of a chain (reached, below and continuing, exhausted, failed) is
worded here once, with one precision (metrics to 4 decimals, thresholds as
written), and the same sentence is what the CLI prints, the job summary heads
with and the mail carries as its subject. Text from the ledger or the training
script is flattened to one printable line first.
"""

from __future__ import annotations

import math
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` as one printable line (control characters and newlines become spaces)."""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


def fmt_threshold(value: float) -> str:
    """0.9 -> '0.90', 0.925 -> '0.925': at least two decimals, never a rounded-off digit."""
    text = f"{value:.2f}"
    return text if math.isclose(float(text), value, abs_tol=1e-12) else f"{value:g}"


def fmt_metric(value: float) -> str:
    """A metric value as every message shows it: 4 decimals."""
    return f"{value:.4f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def reached(metric: str, value: float, threshold: float, attempt: int, epochs: int) -> str:
    return (
        f"Threshold reached: {one_line(metric, 40)} {fmt_metric(value)} ≥ {fmt_threshold(threshold)} "
        f"at attempt {attempt} ({plural(epochs, 'epoch')})"
    )


def below(
    metric: str,
    value: float,
    threshold: float,
    attempt: int,
    epochs: int,
    next_epochs: int | None,
    *,
    next_step: str = "",
) -> str:
    """Below the threshold; ``next_step`` words the next attempt when it is not "trains to N epochs"."""
    after = (
        f"; next attempt {attempt + 1} {next_step or f'trains to {next_epochs} epochs'}"
        if next_epochs or next_step
        else ""
    )
    return (
        f"Below threshold: {one_line(metric, 40)} {fmt_metric(value)} < {fmt_threshold(threshold)} "
        f"at attempt {attempt} ({plural(epochs, 'epoch')}){after}"
    )


def early_stopped(
    metric: str, value: float, threshold: float, attempt: int, epochs: int, best: tuple[float, int] | None
) -> str:
    """Ended below the threshold because the script's own EarlyStopping stopped the training."""
    best_text = (
        f"; best {one_line(metric, 40)} {fmt_metric(best[0])} at attempt {best[1]}"
        if best is not None and best[1] != attempt
        else ""
    )
    return (
        f"Stopped by the script's EarlyStopping: {one_line(metric, 40)} {fmt_metric(value)} < "
        f"{fmt_threshold(threshold)} at attempt {attempt} ({plural(epochs, 'epoch')}), no further "
        f"attempt{best_text}"
    )


def exhausted(
    metric: str,
    attempts: int,
    best: tuple[float, int] | None,
    *,
    max_epochs: int | None = None,
    within: str = "",
    detail: str = "",
) -> str:
    """Ended below the threshold: after max_attempts, at the epoch budget (``max_epochs``), or at
    another budget named by ``within`` (e.g. "within max_epochs_total 60"); ``detail`` follows the best."""
    best_text = (
        f"best {one_line(metric, 40)} {fmt_metric(best[0])} at attempt {best[1]}"
        if best is not None
        else "no attempt reported a metric"
    )
    if max_epochs and not within:
        within = f"within max_epochs {max_epochs}"
    where = f"{within} ({plural(attempts, 'attempt')})" if within else f"after {plural(attempts, 'attempt')}"
    return f"Threshold not reached {where}: {best_text}{' ' + detail if detail and best else ''}"


def hopeless(metric: str, attempts: int, best: tuple[float, int] | None, projection: str) -> str:
    """Ended below the threshold because its own learning curve cannot reach it within the budget
    (``projection``: projection.describe's line, the projected value and at which epochs)."""
    best_text = (
        f"best {one_line(metric, 40)} {fmt_metric(best[0])} at attempt {best[1]}"
        if best is not None
        else "no attempt reported a metric"
    )
    return (
        f"Threshold not reached after {plural(attempts, 'attempt')}, stopped on the projection: "
        f"{best_text}; {one_line(projection, 300)}"
    )


def round_below(
    metric: str, value: float, threshold: float, round_no: int, attempt: int, epochs: int, next_step: str
) -> str:
    """A round of parallel trials ended below the threshold: its best trial, and the next round."""
    return (
        f"Below threshold: {one_line(metric, 40)} {fmt_metric(value)} < {fmt_threshold(threshold)} "
        f"in round {round_no} (best: attempt {attempt}, {plural(epochs, 'epoch')}); "
        f"next round {next_step}"
    )


def round_failed(round_no: int, trials: int, error: str) -> str:
    """Every trial of a round failed: the chain ends."""
    return f"Round {round_no} failed: all {plural(trials, 'trial')} failed; the first: {one_line(error, 300)}"


def failed(attempt: int | None, error: str) -> str:
    who = f"Attempt {attempt}" if attempt is not None else "The attempt"
    return f"{who} failed: {one_line(error, 300)}"


def superseded(commit: str, attempt: int) -> str:
    """A newer chain took over the branch: this one ends without dispatching."""
    return (
        f"Superseded: commit {one_line(commit[:12], 12)} started a newer chain on this branch; "
        f"this chain ends at attempt {attempt} without dispatching attempt {attempt + 1}"
    )


def fmt_delta(value: float) -> str:
    """A difference of metrics, signed, 4 decimals: +0.0123, -0.0040, ±0.0000."""
    return "±0.0000" if f"{abs(value):.4f}" == "0.0000" else f"{value:+.4f}"


def comparison(
    metric: str, candidate: float, champion: float | None, tolerance: float, threshold: float, passed: bool
) -> str:
    """A pull request's (or ``compare``'s) verdict: the candidate against the champion, or against the
    threshold when there is no champion yet."""
    name = one_line(metric, 40)
    if champion is None:
        sign = "≥" if passed else "<"
        return (
            f"{'Passed' if passed else 'Failed'}: no champion yet; candidate {name} "
            f"{fmt_metric(candidate)} {sign} threshold {fmt_threshold(threshold)}"
        )
    delta = fmt_delta(candidate - champion)
    allowed = f" (tolerance {tolerance:g})" if tolerance else ""
    if passed:
        how = (
            "better than"
            if candidate > champion
            else "as good as"
            if candidate >= champion
            else "within tolerance of"
        )
        return (
            f"Passed: candidate {name} {fmt_metric(candidate)} is {how} the champion's "
            f"{fmt_metric(champion)} ({delta}){allowed}"
        )
    return (
        f"Failed: candidate {name} {fmt_metric(candidate)} is worse than the champion's "
        f"{fmt_metric(champion)} ({delta}){allowed}"
    )
