"""Slices: an attempt that needs longer than one run trains across runs.

A run's training may stop before the attempt's epochs because its time ran out: the script
stopped at an epoch boundary before ``KT_DEADLINE`` (``time_budget.py``) and says so with
``"stopped": "deadline"`` in its metrics.json, or keeptraining stopped it at its ``timeout``,
or the run was cancelled (SIGINT/SIGTERM). When the run saved at least one more epoch (the
Keras adapter saves the checkpoint and metrics.json at every epoch end), it is a *slice* of
the attempt, not a failure:

* the attempt keeps one ledger record across its runs; its outcome is ``sliced`` while it is
  unfinished, and ``slices`` holds one entry per run that stopped early (where and why);
* the next run continues the same attempt: the same number, the same target epochs, the same
  trial and rung of a search, from the slice's checkpoint. It writes into
  ``attempt-NNN/slice-K/`` (K: the run's number within the attempt), so the checkpoint it
  resumes stays untouched until it has saved its own;
* history, epochs trained and durations add up over the runs; ``max_attempts`` counts
  attempts, not runs, and ``max_slices`` bounds the runs of one attempt. A run that stops
  without a new epoch (a deadline that leaves no room for one, a timeout shorter than an
  epoch) fails the attempt: the next run would do the same.

On GitHub a continued run is dispatched as attempt ``N.K`` (the workflow's run-name prints it:
``attempt 3.2``), so re-run protection tells the runs of one attempt apart. A cancelled run is
not continued by itself: its summary says how to continue it by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keeptraining.config.settings import Config
from keeptraining.contract import check as contract_check
from keeptraining.contract import env
from keeptraining.contract import metrics as metrics_mod
from keeptraining.engine.plan import CONTINUE, Decision, Plan
from keeptraining.errors import ConfigError, KeeptrainingError, SliceError
from keeptraining.output import wording
from keeptraining.state.ledger import FAILED, SLICED, Attempt, Ledger

DEADLINE = "deadline"  # the script stopped at KT_DEADLINE (metrics.json "stopped")
TIMEOUT = "timeout"  # keeptraining stopped it at `timeout`
INTERRUPTED = "interrupted"  # the run was cancelled (SIGINT / SIGTERM)
_WHY = {
    DEADLINE: "this run's time ran out",
    TIMEOUT: "this run reached its timeout",
    INTERRUPTED: "this run was cancelled",
}
_LABEL = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,4}))?")


def label(attempt: int, run: int = 1) -> str:
    """``3`` for an attempt's first run, ``3.2`` for its second: what a dispatch passes as ``attempt`` (and
    the training script gets as ``KT_ATTEMPT``)."""
    return env.attempt_label(attempt, run)


def parse_label(text: str) -> tuple[int, int] | None:
    """``"3.2"`` -> ``(3, 2)``, ``"3"`` -> ``(3, 1)``; None when it is neither (digits only, ASCII) or
    not written the way ``label`` writes it (``1.0``, ``1.1``, ``01.02``, ``0.2``: attempts count from
    1, a run after the dot is 2 or more, and no number has a leading zero)."""
    match = _LABEL.fullmatch(text.strip()) if text.isascii() else None
    if not match:
        return None
    parsed = int(match[1]), int(match[2] or 1)
    return parsed if parsed[0] >= 1 and label(*parsed) == text.strip() else None


def check_run(ledger: Ledger, attempt: int, run: int) -> None:
    """A dispatch's ``N.K`` against the ledger: the K-th run of attempt N exists only when the ledger's
    last attempt is N, unfinished, and K is its next run (else a re-run or a forged input would
    record a run the chain never planned)."""
    if run <= 1:
        return
    last = ledger.last
    if last is not None and last.attempt == attempt and last.outcome == SLICED and run_number(last) == run:
        return
    expected = (
        f"the ledger's next run is {label(last.attempt, run_number(last))}"
        if last is not None and last.outcome == SLICED
        else f"the ledger's last attempt ({last.attempt if last else 'none'}) is not unfinished"
    )
    raise ConfigError(
        f"input attempt = {label(attempt, run)} names run {run} of attempt {attempt}, but {expected}.",
        hint="Dispatch the run the ledger continues, or start a new chain.",
    )


def continued(ledger: Ledger, number: int) -> Attempt | None:
    """The unfinished record that run ``number`` continues, if the ledger's last attempt is it."""
    last = ledger.last
    return last if last is not None and last.attempt == number and last.outcome == SLICED else None


def run_number(record: Attempt) -> int:
    """The number, within its attempt, of the run that continues ``record``."""
    return len(record.slices) + 1


def plan(record: Attempt) -> Plan:
    """The next run of an unfinished attempt: same target, from the epochs it has, its own checkpoint."""
    return Plan(record.attempt, record.epochs, record.epochs_reached or 0, record, run_number(record))


def folder(record: Attempt) -> str:
    """Where the next run of ``record`` writes, inside the attempt's folder."""
    return f"slice-{run_number(record)}"


def stop_reason(found: metrics_mod.Metrics, record: Attempt, plan: Plan, threshold: float) -> str | None:
    """``deadline`` when the script stopped at KT_DEADLINE short of the attempt's epochs and the
    threshold; None when the run is the attempt's last."""
    if found.stopped != DEADLINE or found.value >= threshold:
        return None
    reached = record.epochs_reached
    return DEADLINE if reached is None or reached < plan.epochs else None


def salvage(run: Attempt, out_dir: Path, output: str, config: Config, plan: Plan) -> bool:
    """What a run that was stopped (timeout, cancellation) saved: when its metrics.json and
    checkpoint show epochs beyond where it started, fill ``run`` with them (outcome ``sliced``).

    Everything here was written by the training script: read through ``metrics.read`` and
    checked like a finished run's; anything unusable means no progress, never an error. Only
    ``metrics.json`` counts (its ``epochs`` beside its checkpoint): Keras's ``Epoch i/N`` lines
    also name the epoch that was cut short.
    """
    try:
        found = metrics_mod.read(out_dir, output, config.metric)
        trained = contract_check.assess(found, output, plan, config.threshold)
        metrics_mod.check_epochs(found, asked=plan.epochs, initial=trained.initial_epoch)
    except KeeptrainingError:
        return False
    if found.source != metrics_mod.METRICS_FILE or found.epochs is None:
        return False
    reached = trained.epochs_reached
    if found.checkpoint is None or reached is None or reached <= trained.initial_epoch:
        return False
    run.initial_epoch = trained.initial_epoch
    if not trained.resumed:
        run.resumed_from = None
    run.metric, run.metric_source, run.metric_line = found.value, found.label, found.line
    run.history, run.epochs_reached, run.epochs_trained = found.history, reached, trained.epochs_trained
    run.epochs_source, run.adapter, run.checkpoint = trained.epochs_source, found.adapter, found.checkpoint
    run.train_s = round(found.train_s, 3) if found.train_s is not None else None
    run.outcome = SLICED
    return True


def check(run: Attempt, stopped: str | None, plan: Plan, continuing: Attempt | None, config: Config) -> None:
    """SliceError when a run that stopped early cannot be continued: it saved no new epoch or
    no checkpoint, or the attempt has used its ``max_slices`` runs."""
    if run.outcome != SLICED or stopped is None:
        return
    number = plan.attempt
    if run.checkpoint is None or run.epochs_reached is None or run.epochs_reached <= run.initial_epoch:
        raise SliceError(
            f"Attempt {number}'s run stopped ({stopped}) before it finished an epoch it could save, so "
            "the next run would do the same.",
            hint="Give each run more time (time_budget, timeout, or the job's timeout-minutes), or make "
            "the script save its checkpoint and report its epochs (the Keras adapter does both).",
        )
    runs = (len(continuing.slices) if continuing is not None else 0) + 1
    if runs >= config.max_slices:
        raise SliceError(
            f"Attempt {number} is at epoch {run.epochs_reached} of {run.epochs} after {runs} runs "
            f"(max_slices = {config.max_slices}): it does not get through its epochs across runs.",
            hint="Give each run more time (time_budget, timeout, or the job's timeout-minutes), train fewer "
            "epochs per attempt (epoch_step), or raise max_slices.",
        )


def merge(continuing: Attempt | None, run: Attempt, stopped: str | None, sub: str | None) -> Attempt:
    """The attempt's record after ``run``: ``run`` itself when it is the attempt's first; else
    ``continuing`` carried on by it (history, epochs and durations add up, the newest checkpoint
    counts). ``sub`` is the run's folder inside the attempt's; ``stopped`` why it ended early."""
    if sub is not None and run.checkpoint is not None:
        run.checkpoint = f"{sub}/{run.checkpoint}"
    start = run.initial_epoch
    if continuing is None:
        record = run
        progressed = run.checkpoint is not None and run.epochs_reached is not None
    else:
        record = continuing
        before = continuing.epochs_reached or 0
        progressed = run.checkpoint is not None and (run.epochs_reached or 0) > before
        start = before
        _carry_on(record, run, progressed, restarted=run.initial_epoch < before)
    if stopped is not None and (record.outcome == SLICED or progressed):
        entry = _entry(record, run, stopped, start)
        if record.outcome == FAILED:  # the run that ended the attempt: runs() must not count it twice
            entry["failed"] = True
        record.slices = [*record.slices, entry]
    return record


def _carry_on(record: Attempt, run: Attempt, progressed: bool, *, restarted: bool) -> None:
    """Add ``run``'s results to the attempt's ``record`` (in place); ``restarted``: the run did
    not resume the checkpoint it was offered (and trained from scratch)."""
    if progressed:
        if restarted:  # the attempt's model is now this run's, from scratch
            record.history, record.initial_epoch, record.resumed_from = list(run.history), 0, None
        else:
            record.history = [*record.history, *run.history]
        record.metric, record.metric_source = run.metric, run.metric_source
        record.metric_line = run.metric_line
        record.epochs_reached, record.checkpoint = run.epochs_reached, run.checkpoint
        record.epochs_source, record.epochs_ignored, record.adapter = (
            run.epochs_source,
            run.epochs_ignored,
            run.adapter,
        )
    record.epochs_trained += run.epochs_trained
    record.duration_s = round(record.duration_s + run.duration_s, 3)
    if run.train_s is not None:
        record.train_s = round((record.train_s or 0.0) + run.train_s, 3)
    record.warnings = [*record.warnings, *run.warnings][-50:]
    record.outcome, record.error = run.outcome, run.error
    record.run, record.dispatched = run.run, run.dispatched  # the latest run; it has dispatched nothing yet


def _entry(record: Attempt, run: Attempt, stopped: str, start: int) -> dict[str, Any]:
    """One run that stopped before its attempt's epochs: where, why, and its checkpoint."""
    return {
        "run_id": str(run.run.get("id") or ""),
        "run_url": str(run.run.get("url") or ""),
        "started_at": run.started_at,
        "from_epoch": start,
        "epochs_reached": record.epochs_reached if record.epochs_reached is not None else start,
        "epochs_trained": run.epochs_trained,
        "duration_s": run.duration_s,
        "stopped": stopped,
        "checkpoint": record.checkpoint,
    }


def ends(record: Attempt) -> list[int]:
    """The epochs after which a run of this attempt stopped (where the chart marks them)."""
    found = []
    for item in record.slices:
        value = item.get("epochs_reached") if isinstance(item, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > record.initial_epoch:
            found.append(value)
    return found


def runs(record: Attempt) -> int:
    """How many runs the attempt has taken so far (a failed last run may be among its slices)."""
    last = record.slices[-1] if record.slices else None
    counted = record.outcome == SLICED or (isinstance(last, dict) and last.get("failed") is True)
    return len(record.slices) + (0 if counted else 1)


def first_run_id(record: Attempt) -> str | None:
    """The run the attempt started in (its record's ``run`` is its latest)."""
    for item in record.slices[:1]:
        if isinstance(item, dict) and item.get("run_id"):
            return str(item["run_id"])
    value = record.run.get("id")
    return str(value) if value else None


def old_checkpoints(record: Attempt) -> list[str]:
    """Checkpoints of earlier runs of the attempt that its newest checkpoint supersedes."""
    names = {
        str(item.get("checkpoint"))
        for item in record.slices
        if isinstance(item, dict) and isinstance(item.get("checkpoint"), str)
    }
    return sorted(names - {str(record.checkpoint)})


def why(record: Attempt) -> str:
    """Why the attempt's latest run stopped early, in words."""
    stopped = record.slices[-1].get("stopped") if record.slices else None
    return _WHY.get(str(stopped), _WHY[DEADLINE])


def decide(config: Config, ledger: Ledger) -> Decision:
    """The last attempt is unfinished: its next run continues it."""
    last = ledger.last
    assert last is not None and last.outcome == SLICED
    so_far = (
        f"{wording.one_line(config.metric, 40)} {wording.fmt_metric(last.metric)} so far; "
        if last.metric is not None
        else ""
    )
    reason = (
        f"Attempt {last.attempt} continues in the next run: {why(last)} at "
        f"epoch {last.epochs_reached or 0} of {last.epochs} ({so_far}run {len(last.slices)} of at "
        f"most {config.max_slices})"
    )
    return Decision(CONTINUE, reason, last.epochs, next_run=run_number(last))
