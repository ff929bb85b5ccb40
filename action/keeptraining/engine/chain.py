"""One attempt, and the chain of attempts, on top of the ledger.

``run_attempt`` is what a GitHub workflow run does (``keeptraining attempt``):
read the ledger, plan this attempt, train, read the metric, append one record,
decide. ``run_chain`` repeats it in one process (``keeptraining run``). Both
produce the same ledger. A failed attempt is recorded, never thrown away: the
caller gets the failure in ``AttemptReport.error`` after the ledger is saved.
Whatever ends the attempt once it is under way (training, metric, image build,
engine, a bug) is recorded as ``failed`` with its real error; "interrupted" is
only for Ctrl-C and SIGTERM. A run whose time ran out before the attempt's epochs
(``KT_DEADLINE``, ``timeout``, a cancellation after saved epochs) leaves the attempt
``sliced``: the next run continues it in ``attempt-NNN/slice-K/`` (slices.py).

The training itself is step.py's (shared with parallel slots); the state folder's
operations are state/folder.py's. Paths from the restored state or the training
script go through ``safe_paths``: the checkpoint resumed from and the checkpoints
pruned are regular files inside the state folder, reached without crossing a
symbolic link. An attempt folder that the ledger does not record is moved aside,
never deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptraining.backends.base import echo_line
from keeptraining.backends.select import Backend
from keeptraining.config.settings import Config
from keeptraining.engine import cost, projection, search, slices, step, strategy
from keeptraining.engine.plan import Decision, Plan
from keeptraining.engine.step import INTERRUPTED, contract_env, train_request
from keeptraining.errors import ConfigError, KeeptrainingError, LedgerError, PathRefused
from keeptraining.output import workflow_commands as gha
from keeptraining.state import ledger as ledger_mod
from keeptraining.state import safe_paths
from keeptraining.state.folder import (
    UNRECORDED_DIR,
    Workspace,
    archive_previous,
    fresh_output_dir,
    move_aside,
    relative,
    state_folder_errors,
    workspace,
)
from keeptraining.state.ledger import FAILED, SLICED, Attempt, Ledger

# Named here too: the chain's callers (the jobs, the CLI, the benchmarks) find them where they always were.
__all__ = [
    "INTERRUPTED",
    "UNRECORDED_DIR",
    "AttemptReport",
    "Workspace",
    "archive_previous",
    "contract_env",
    "move_aside",
    "prune_checkpoints",
    "record_failure",
    "record_unrestored",
    "run_attempt",
    "run_chain",
    "state_folder_errors",
    "train_request",
    "workspace",
]

Say = Callable[[str], None]


@dataclass
class AttemptReport:
    record: Attempt
    decision: Decision
    ledger: Ledger
    error: KeeptrainingError | None = None  # set when the attempt failed (already recorded)
    log_tail: str = ""


def chain_record(config: Config, ledger: Ledger, chain_info: dict[str, Any] | None) -> None:
    """The chain's own facts in the ledger: its target, and where it runs (commit, branch...)."""
    ledger.chain = {
        **ledger.chain,
        "threshold": config.threshold,
        "metric": config.metric,
        **(chain_info or {}),
    }


def _attempt_number(ledger: Ledger, attempt: int | None, config: Config, say: Say) -> int:
    last = ledger.last
    if attempt is not None:
        number = attempt
    elif last is None:
        number = 1
    else:  # the next attempt, or the last one again when it failed (a search goes on past it) or
        #    is unfinished (its next run continues it: slices.py)
        retry = last.outcome == FAILED and config.strategy != search.SEARCH
        number = last.attempt if retry or last.outcome == SLICED else last.attempt + 1
    if number < 1:
        raise ConfigError(f"attempt = {number} is not valid; attempts are numbered from 1.")
    if number > config.max_attempts:
        raise ConfigError(
            f"attempt = {number} is beyond max_attempts = {config.max_attempts}.",
            hint="Raise max_attempts, or start a new chain at attempt 1.",
        )
    retry_of_failed = last is not None and number == last.attempt and last.outcome in (FAILED, SLICED)
    if last is not None and last.outcome == SLICED and number != last.attempt:
        raise LedgerError(
            f"Attempt {last.attempt} is unfinished: its last run stopped at epoch "
            f"{last.epochs_reached} of {last.epochs} and the next run continues it.",
            hint=f"Continue attempt {last.attempt} (on GitHub: attempt "
            f"{slices.label(last.attempt, slices.run_number(last))}), or start a new "
            "chain.",
        )
    if last is not None and number <= last.attempt and not retry_of_failed:
        raise LedgerError(
            f"Attempt {number} is already recorded in the ledger (outcome: "
            f"{next(a.outcome for a in ledger.attempts if a.attempt == number)}).",
            hint=f"Continue with attempt {last.attempt + 1}, or start a new chain.",
        )
    if last is not None and number > last.attempt + 1:
        raise LedgerError(
            f"Attempt {number} does not follow the ledger's last attempt {last.attempt}.",
            hint=f"Run attempt {last.attempt + 1} next, or start a new chain.",
        )
    if last is None and number > 1:
        gha.warn(
            f"No ledger found for attempt {number}: this attempt trains from scratch.", title="No chain state"
        )
    return number


def run_attempt(
    config: Config,
    repo_root: Path,
    backend: Backend,
    *,
    attempt: int | None = None,
    epochs: int | None = None,
    chain_info: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
) -> AttemptReport:
    """Train one attempt (or the next run of an unfinished one), record it, and decide what comes next."""
    ws, clock = workspace(config, repo_root), time.monotonic()  # clock: the attempt's start (cost.py)
    ledger = ledger_mod.load(ws.state_dir)
    number = _attempt_number(ledger, attempt, config, say)
    continuing = slices.continued(ledger, number)  # an unfinished attempt: this run carries it on
    retry = any(a.attempt == number and a.outcome == FAILED for a in ledger.attempts)
    ledger.attempts = [a for a in ledger.attempts if a.attempt < number]  # a failed retry is replaced
    job, planned = _plan_run(config, ledger, number, continuing, epochs)
    plan, resume_path = step.resume_path(ws, planned)
    sub = slices.folder(continuing) if continuing is not None else None
    out_dir = fresh_output_dir(ws.state_dir, number, replace=retry, sub=sub)
    chain_record(config, ledger, chain_info)
    previous = ledger.last
    title, resumed = _title(config, plan, job, continuing)
    record = step.new_record(
        config, plan, backend.name, resumed_from=relative(ws, resume_path), run_info=run_info, job=job
    )

    def keep(run: Attempt, stopped: str | None) -> Attempt:
        merged = slices.merge(continuing, run, stopped, sub)
        _account(config, ledger, merged, run, run_info, clock)
        ledger_mod.save(ws.state_dir, ledger)
        return merged

    params = job.params if job else (continuing.trial_params if continuing is not None else {})
    outcome = step.train(
        step.Run(
            config,
            ws,
            backend,
            plan,
            resume_path,
            out_dir,
            record,
            title,
            resumed,
            params=params,
            previous=previous,
            continuing=continuing,
            say=say,
            on_line=on_line,
        ),
        keep,
    )
    decision = strategy.decide(config, ledger)
    say(step.attempt_line(outcome.record, config))
    return AttemptReport(outcome.record, decision, ledger, outcome.error, outcome.log_tail)


def _account(
    config: Config,
    ledger: Ledger,
    record: Attempt,
    run: Attempt,
    run_info: dict[str, Any] | None,
    clock: float,
) -> None:
    """Append ``record`` (after ``run``, this run's own record) to the ledger with its runner minutes,
    counted from the job's start when known (cost.py) or the attempt's (``clock``, monotonic), and the
    projection of the learning curve after it (projection.py)."""
    started = time.time() - (time.monotonic() - clock)
    cost.account(record, run, run_info, os.environ, started, config.runner_kind)
    ledger.attempts.append(record)
    record.projection = _projection(config, ledger, record)


def _projection(config: Config, ledger: Ledger, record: Attempt) -> dict[str, Any]:
    """Where the learning curve is heading after ``record`` (the chain's, or a search trial's), for the
    ledger; empty when there is too little to say, and never an error of the attempt."""
    if record.outcome in (FAILED, SLICED):
        return {}
    try:
        if config.strategy == search.SEARCH:
            return search.trial_projection(config, ledger, record)
        return projection.record(projection.of_chain(config, ledger), config.threshold)
    except KeeptrainingError:
        return {}


def _plan_run(
    config: Config, ledger: Ledger, number: int, continuing: Attempt | None, epochs: int | None
) -> tuple[search.TrialRun | None, Plan]:
    """(the search's job, if a trial runs anew; the plan): a new attempt, or an unfinished one's next run."""
    if continuing is not None:
        return None, _continue_plan(config, ledger, continuing, epochs)
    if config.strategy == search.SEARCH:
        job = search.next_run(config, ledger)
        return job, job.plan(number)
    return None, strategy.plan(config, ledger, number, epochs)


def _continue_plan(config: Config, ledger: Ledger, record: Attempt, epochs: int | None) -> Plan:
    """The plan of the next run of an unfinished attempt; a search's trial is checked like any other."""
    if epochs is not None and epochs != record.epochs:
        gha.warn(
            f"Attempt {record.attempt} is unfinished and trains on to its {record.epochs} epochs; "
            f"the epochs given for this run ({epochs}) are not used.",
            title="Attempt continued",
        )
    if config.strategy == search.SEARCH:  # the trial's values come from the ledger: check them first
        search.validated_trials(Ledger(attempts=[*ledger.attempts, record]), config.search_settings())
    return slices.plan(record)


def _title(
    config: Config, plan: Plan, job: search.TrialRun | None, continuing: Attempt | None
) -> tuple[str, str]:
    """The start line's head and its "resumed from" part."""
    if continuing is not None:
        what = (
            f" run {slices.run_number(continuing)}"
            + (f" of trial {continuing.trial}" if continuing.trial is not None else "")
            + ":"
        )
        resumed = " from its previous run's checkpoint" if plan.resume_from else " from scratch"
    else:
        what = f" {job.describe()}:" if job else ""
        resumed = (
            f" from attempt {plan.resume_from.attempt}'s checkpoint" if plan.resume_from else " from scratch"
        )
    return f"\n== Attempt {plan.attempt}/{config.max_attempts}:{what}", resumed


def record_failure(
    config: Config,
    repo_root: Path,
    error: KeeptrainingError,
    *,
    attempt: int | None = None,
    chain_info: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    backend: str = "",
) -> AttemptReport:
    """Record an attempt that failed before it could train (e.g. no Docker engine).

    Raises what stops the recording itself (a configuration or ledger problem):
    those are reported without touching the ledger.
    """
    ws = workspace(config, repo_root)
    ledger = ledger_mod.load(ws.state_dir)
    number = _attempt_number(ledger, attempt, config, lambda _line: None)
    continuing = slices.continued(ledger, number)  # an unfinished attempt keeps what its runs did
    plan = slices.plan(continuing) if continuing is not None else strategy.plan(config, ledger, number)
    ledger.attempts = [a for a in ledger.attempts if a.attempt < number]
    chain_record(config, ledger, chain_info)
    record = step.new_record(config, plan, backend or str(config.backend or "docker"), run_info=run_info)
    record.error = step.error_text(error)
    record = slices.merge(continuing, record, None, None)
    ledger.attempts.append(record)
    ledger_mod.save(ws.state_dir, ledger)
    return AttemptReport(record, strategy.decide(config, ledger), ledger, error, step.log_tail(None, error))


def record_unrestored(
    config: Config,
    repo_root: Path,
    error: KeeptrainingError,
    *,
    attempt: int | None,
    epochs: int | None = None,
    chain_info: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    say: Say = print,
) -> AttemptReport:
    """An attempt that failed before it could train (the state to resume was not restored):
    recorded as failed in a new ledger. A ledger that arrived but is not this chain's is moved
    aside first (``previous/``), never appended to."""
    ws = workspace(config, repo_root)
    if ledger_mod.ledger_path(ws.state_dir).exists():
        archive_previous(ws.state_dir, say)
    ledger = Ledger()
    chain_record(config, ledger, chain_info)
    plan = Plan(attempt or 1, epochs or config.epochs, 0, None)
    record = step.new_record(config, plan, str(config.backend or "docker"), run_info=run_info)
    record.error = step.error_text(f"{error.message} {error.hint}".strip())
    ledger.attempts.append(record)
    ledger_mod.save(ws.state_dir, ledger)
    say(step.attempt_line(record, config))
    return AttemptReport(record, strategy.decide(config, ledger), ledger, error)


def prune_checkpoints(state_dir: Path, ledger: Ledger, also_keep: set[int] | None = None) -> list[Path]:
    """Delete checkpoints no later attempt needs: all but the last one, the best one, and the
    attempts in ``also_keep`` (a search's trials that may still be promoted).

    On GitHub each run uploads the state folder as an artifact; without this, every run
    would upload every earlier checkpoint again. Each earlier run's artifact still holds
    its own checkpoint, so nothing is lost. metrics.json files and the ledger stay.
    Only regular files inside their attempt folder are deleted, never through a link.
    """
    best = ledger.best()
    keep = {a.attempt for a in (ledger.last, best) if a is not None} | (also_keep or set())
    removed = []
    for record in ledger.attempts:
        names = slices.old_checkpoints(record)  # earlier runs' of an attempt that took several
        if record.attempt not in keep and record.checkpoint:
            names.append(record.checkpoint)
        folder = ledger_mod.attempt_dir(state_dir, record.attempt)
        for name in names:
            try:
                if folder.is_symlink() or not folder.is_dir():
                    break
                if safe_paths.unlink_file(folder, name, f"attempt {record.attempt}'s checkpoint"):
                    removed.append(folder / name)
            except (PathRefused, OSError) as exc:
                gha.warn(
                    f"Attempt {record.attempt}'s checkpoint was not pruned: {exc}", title="Checkpoint kept"
                )
    return removed


def run_chain(
    config: Config,
    repo_root: Path,
    backend: Backend,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    chain_info: dict[str, Any] | None = None,
) -> AttemptReport:
    """Attempts until the threshold is reached, the budget is spent, or one fails."""
    while True:
        report = run_attempt(config, repo_root, backend, say=say, on_line=on_line, chain_info=chain_info)
        if report.decision.kind != strategy.CONTINUE:
            return report
