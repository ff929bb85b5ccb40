"""A round of parallel trials (``parallel: N``): its plan, its trials' results, the merge, the verdict.

The plan (``plan_round``) is the next N jobs of the search, from the ledger and the configuration
alone: every trial job of a round plans it from the same restored ledger and trains its own slot,
and the merge plans it again to know what each slot was meant to train. A trial's result is a
one-record ledger in its own folder (``write_result``), beside its ``attempt-NNN/`` output.

The merge (``merge_round``) reads each slot's result as untrusted input (on GitHub it comes back
from another job's artifact): it must pass the ledger's own checks (schema, paths) and be exactly
the planned job (attempt, trial, rung, values, epochs, round), with an outcome that fits its
metric. A slot whose result is missing (the job failed or timed out before recording, or never
ran) or refused is recorded as a failed trial, from the plan. The records are appended in slot
order (promotions, then new trials in order: what ``search.validated_trials`` expects), each
accepted slot's output folder is moved into the state folder (plain files and folders only),
and the ledger is saved once.

``decide`` judges the round as one: reached when any trial reached the threshold, failed when
every trial failed, else the search's budget and what the next round trains.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from keeptraining.config.settings import Config
from keeptraining.contract import metrics as metrics_mod
from keeptraining.engine import search, step, strategy
from keeptraining.engine.plan import CHAIN_FAILED, CHAIN_REACHED, CONTINUE, Decision
from keeptraining.engine.search import TrialRun
from keeptraining.errors import InternalError, LedgerError, quote
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.state import ledger as ledger_mod
from keeptraining.state import safe_paths
from keeptraining.state.folder import move_aside, state_folder_errors
from keeptraining.state.ledger import FAILED, REACHED, Attempt, Ledger

MAX_TREE_DEPTH = 8  # folders inside a trial's output folder that are moved into the state folder


# --------------------------------------------------------------------------- the plan


def plan_round(
    config: Config, ledger: Ledger, pending: Sequence[TrialRun] = (), slots: int | None = None
) -> list[TrialRun]:
    """The round's jobs in slot order: ``slots`` (default ``config.parallel``) at most, no more than the
    attempts left, and all of them together within ``max_epochs_total`` (the later slots get what the
    earlier left). ``pending``: jobs planned earlier and not merged yet (a local chain without rounds,
    parallel.py): they hold their attempts and epochs, and the search plans around them."""
    done = (ledger.last.attempt if ledger.last else 0) + len(pending)
    slots = min(config.parallel if slots is None else slots, config.max_attempts - done)
    if slots < 1:
        return []
    jobs = search.next_runs(config, ledger, slots, pending)
    if config.max_epochs_total is None:
        return jobs
    left = max(
        config.max_epochs_total - ledger.total_epochs_trained() - sum(job.epochs_to_train for job in pending),
        0,
    )
    planned = []
    for job in jobs:
        if left <= 0:
            break
        trains = min(job.epochs_to_train, left)
        planned.append(replace(job, epochs=job.initial_epoch + trains))
        left -= trains
    return planned


def round_number(ledger: Ledger) -> int:
    """The number of the next round (1 for the first)."""
    return max((a.round or 0 for a in ledger.attempts), default=0) + 1


def first_attempt(ledger: Ledger) -> int:
    """The attempt number of the round's slot 1."""
    return (ledger.last.attempt if ledger.last else 0) + 1


# --------------------------------------------------------------------------- a trial's result


def write_result(folder: Path, record: Attempt) -> None:
    """A trial's record, as a one-record ledger in its folder (beside its ``attempt-NNN/``)."""
    ledger_mod.save(folder, Ledger(chain={}, attempts=[record]))


class _Unusable(Exception):
    """A slot's result that is missing or refused: the trial is recorded as failed, with this reason."""


def read_result(config: Config, folder: Path, job: TrialRun, number: int, round_no: int) -> Attempt:
    """Slot ``number``'s record from ``folder``, if it is exactly the planned job; else ``_Unusable``."""
    if not folder.is_dir() or folder.is_symlink() or not ledger_mod.ledger_path(folder).is_file():
        raise _Unusable(
            "its job left no result (it failed, timed out or was cancelled before it recorded the trial)"
        )
    try:
        result = ledger_mod.load(folder)
    except LedgerError as exc:
        raise _Unusable(f"its result was refused: {exc.message}") from None
    if len(result.attempts) != 1:
        raise _Unusable(f"its result holds {len(result.attempts)} records instead of one")
    record = result.attempts[0]
    resumed = (
        f"attempt-{job.resume_from.attempt:03d}/{job.resume_from.checkpoint}"
        if job.resume_from is not None and job.resume_from.checkpoint
        else None
    )
    planned = {
        "attempt": number,
        "trial": job.trial,
        "rung": job.rung,
        "trial_params": job.params,
        "epochs": job.epochs,
        "round": round_no,
    }
    for name, value in planned.items():
        if getattr(record, name) != value:
            raise _Unusable(
                f"it recorded {name} = {quote(getattr(record, name), 60)}, but the round's plan "
                f"says {quote(value, 60)}"
            )
    problem = metrics_mod.trained_out_of_bounds(  # the bounds of a metrics.json, for a slot's record
        epochs_reached=record.epochs_reached,
        epochs_trained=record.epochs_trained,
        history=len(record.history),
        asked=job.epochs,
        initial=record.initial_epoch,
    )
    if not problem and len(record.slices) > config.max_slices:
        problem = f"it lists {len(record.slices)} runs, more than max_slices = {config.max_slices}"
    if problem:
        raise _Unusable(f"its result is out of bounds: {problem}")
    if record.initial_epoch > job.initial_epoch or record.resumed_from not in (None, resumed):
        raise _Unusable(
            f"it resumed {quote(record.resumed_from, 60)} at epoch {record.initial_epoch}, "
            f"not the planned {quote(resumed, 60)}"
        )
    if record.outcome != FAILED and (
        record.metric is None or (record.metric >= config.threshold) != (record.outcome == REACHED)
    ):
        raise _Unusable(f"its outcome {record.outcome!r} does not fit its {config.metric} {record.metric!r}")
    return record


def failed_record(config: Config, job: TrialRun, number: int, slot: int, round_no: int, why: str) -> Attempt:
    """The record of a slot that trained nothing usable (no result, a refused one, no engine...)."""
    record = step.new_record(config, job.plan(number), config.backend or "docker", job=job)
    record.error, record.round, record.runner = f"Trial slot {slot}: {why}", round_no, {"slot": slot}
    return record


# --------------------------------------------------------------------------- the merge


def merge_round(
    config: Config,
    state_dir: Path,
    ledger: Ledger,
    jobs: list[TrialRun],
    folders: dict[int, Path],
    *,
    round_no: int,
) -> list[Attempt]:
    """Append the round's records to ``ledger`` (slot order), move each accepted slot's output folder
    into ``state_dir``, save the ledger once; return the records."""
    first = first_attempt(ledger)
    records = [
        merge_one(
            config,
            state_dir,
            ledger,
            job,
            folders.get(slot, Path("/nonexistent")),
            number=first + slot - 1,
            slot=slot,
            round_no=round_no,
            save=False,
        )
        for slot, job in enumerate(jobs, start=1)
    ]
    ledger_mod.save(state_dir, ledger)
    return records


def merge_one(
    config: Config,
    state_dir: Path,
    ledger: Ledger,
    job: TrialRun,
    folder: Path,
    *,
    number: int,
    slot: int,
    round_no: int,
    save: bool = True,
) -> Attempt:
    """Append one trial's record (attempt ``number``, the ledger's next) from ``folder`` to ``ledger``,
    its output moved into ``state_dir``; a missing or refused result is recorded as a failed trial."""
    if number != first_attempt(ledger):
        raise InternalError(f"Attempt {number} cannot follow attempt {first_attempt(ledger) - 1}.")
    with state_folder_errors(f"make the state folder {state_dir}"):
        state_dir.mkdir(parents=True, exist_ok=True)  # a new chain's first round: nothing was restored
    try:
        record = read_result(config, folder, job, number, round_no)
        _move_output(folder, state_dir, number)
    except _Unusable as why:
        gha.warn(
            f"Attempt {number} (round {round_no}, slot {slot}, trial {job.trial}) is recorded as "
            f"failed: {why}.",
            title="Trial without a result",
        )
        record = failed_record(config, job, number, slot, round_no, f"{why}.")
    ledger.attempts.append(record)
    if save:
        ledger_mod.save(state_dir, ledger)
    return record


def _move_output(folder: Path, state_dir: Path, number: int) -> None:
    """``folder/attempt-NNN`` into ``state_dir``: plain files and folders only (a link the training
    script left is not carried over). A folder already there that the ledger does not record is moved
    aside into ``unrecorded/``, never deleted."""
    source = ledger_mod.attempt_dir(folder, number)
    if not source.is_dir() or source.is_symlink():
        return  # a trial that failed before it had an output folder
    target = ledger_mod.attempt_dir(state_dir, number)
    with state_folder_errors(f"move the trial's output {source} into {state_dir}"):
        if os.path.lexists(target):
            move_aside(state_dir, target, target.name)
        skipped = _move_plain(source, target, 0)
    if skipped:
        gha.warn(
            f"Attempt {number}'s output held {len(skipped)} entries that are not plain files or folders "
            f"({quote(', '.join(skipped[:5]), 100)}); they were not kept.",
            title="Trial output filtered",
        )


def _move_plain(source: Path, target: Path, depth: int) -> list[str]:
    """Move the regular files and folders under ``source`` to ``target``; return what was left out."""
    target.mkdir()
    skipped = []
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and depth < MAX_TREE_DEPTH:
                skipped += _move_plain(Path(entry.path), target / entry.name, depth + 1)
            elif entry.is_file(follow_symlinks=False):
                try:
                    os.replace(entry.path, target / entry.name)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    safe_paths.copy_file(source, entry.name, target / entry.name, "a trial's output file")
            else:
                skipped.append(entry.name)
    return skipped


# --------------------------------------------------------------------------- the verdict


def representative(records: list[Attempt]) -> Attempt:
    """The round's record that speaks for it (outputs, mail): its best trial, else its first."""
    scored = [r for r in records if r.outcome != FAILED and r.metric is not None]
    return max(scored, key=lambda r: (r.metric or 0.0, -r.attempt)) if scored else records[0]


def _epochs(record: Attempt) -> int:
    return record.epochs_reached if record.epochs_reached is not None else record.epochs


def _next_step(jobs: list[TrialRun]) -> str:
    promoted = [f"trial {j.trial} to rung {j.rung}" for j in jobs if j.rung > 0]
    new = len(jobs) - len(promoted)
    parts = ([f"promotes {', '.join(promoted)}"] if promoted else []) + (
        [f"starts {wording.plural(new, 'new trial')}"] if new else []
    )
    return f"trains {wording.plural(len(jobs), 'trial')}: {' and '.join(parts)}"


def decide(config: Config, ledger: Ledger, records: list[Attempt]) -> Decision:
    """After a round (``records``, the ledger's last attempts): reached, failed, or the search's verdict."""
    round_no = records[-1].round or 0
    reached = [r for r in records if r.outcome == REACHED and r.metric is not None]
    if reached:
        best = representative(reached)
        assert best.metric is not None
        text = wording.reached(config.metric, best.metric, config.threshold, best.attempt, _epochs(best))
        values = search.values_text(best.trial_params)
        return Decision(CHAIN_REACHED, f"{text} (trial {best.trial}: {values})")
    if all(r.outcome == FAILED for r in records):
        return Decision(
            CHAIN_FAILED,
            wording.round_failed(round_no, len(records), records[0].error or "no metric was recorded"),
        )
    verdict = search.decide(config, ledger, round_size=len(records))
    if verdict.kind != CONTINUE:
        return verdict
    best = representative(records)
    assert best.metric is not None
    text = wording.round_below(
        config.metric,
        best.metric,
        config.threshold,
        round_no,
        best.attempt,
        _epochs(best),
        _next_step(plan_round(config, ledger)),
    )
    return Decision(CONTINUE, text, verdict.next_epochs)


def round_line(records: list[Attempt], config: Config) -> str:
    """One line per trial of the round, for the terminal."""
    lines = [
        f"  slot {(r.runner or {}).get('slot', '?')}: attempt {r.attempt}, trial {r.trial} "
        f"rung {r.rung}: {trial_result(r, config)}"
        for r in records
    ]
    return f"Round {records[-1].round}:\n" + "\n".join(lines)


def trial_result(record: Attempt, config: Config) -> str:
    """``accuracy 0.9035 (reached)``, or ``failed: why`` for a trial without a metric."""
    if record.metric is not None:
        return f"{config.metric} {wording.fmt_metric(record.metric)} ({record.outcome})"
    return f"failed: {wording.one_line(record.error or '', 120)}"


def decide_trial(config: Config, ledger: Ledger, record: Attempt) -> Decision:
    """After one merged trial of a local chain without rounds (``record``, the ledger's last attempt):
    reached; failed when the last ``parallel`` trials all failed (as a round of failures); else the
    search's verdict (its budget: the caller waits for the trials still training before it ends)."""
    if record.outcome == REACHED:
        return decide(config, ledger, [record])
    recent = ledger.attempts[-config.parallel :]
    if len(recent) == config.parallel and all(r.outcome == FAILED for r in recent):
        return Decision(
            CHAIN_FAILED,
            wording.failed(
                record.attempt, f"the last {len(recent)} trials failed; the first of them: {recent[0].error}"
            ),
        )
    return search.decide(config, ledger, round_size=config.parallel)


def verdict(config: Config, ledger: Ledger) -> Decision:
    """How the chain stands after its last attempt: its last round's verdict when it ended with one.
    A chain of parallel trials that has a trial at the threshold has ended there, whatever trials
    were stopped after it."""
    last = ledger.last
    if last is None or last.round is None:
        return strategy.decide(config, ledger)
    reached = [a for a in ledger.attempts if a.round is not None and a.outcome == REACHED]
    if reached:
        return decide(config, ledger, reached)
    return decide(config, ledger, [a for a in ledger.attempts if a.round == last.round])
