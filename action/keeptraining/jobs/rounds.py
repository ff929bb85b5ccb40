"""The GitHub jobs of a round of parallel trials (``parallel: N``, the reusable workflow).

A round is one workflow run: a matrix of N trial jobs, then one merge job.

* ``keeptraining trial`` (``run_trial``), in each trial job: restore the previous round's chain
  state like any attempt (restore.py), plan the round from it (rounds.plan_round) and train this
  job's slot into ``.keeptraining-trial/slot-<k>/``, which the action uploads as the artifact
  ``keeptraining-trial-<k>``.
  A trial that fails is recorded as failed there and the job succeeds: the round goes on, the merge
  decides. A slot the round does not need (the budget or the grid has fewer trials left) trains
  nothing. A trial job never dispatches, mails or holds the SMTP secrets.
* ``keeptraining merge``, in the merge job (``needs`` every trial job, runs even when one failed):
  jobs/attempt.run with ``merge=merge``, whose training is ``merge``: the same restored state, the
  trials' artifacts downloaded into ``.keeptraining-trials/slot-<k>/``, merged
  (rounds.merge_round), decided as one round; then, as for any attempt, the dispatch of the next
  round (exactly once: a re-run of a trial job re-runs the merge, which finds the next round
  already dispatched), outputs, summary, commit status and, at the end, the one mail.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import chain, cost, parallel, rounds, strategy
from keeptraining.errors import ConfigError, KeeptrainingError, LedgerError, RestoreError, TrainingError
from keeptraining.github import commit_status, restore
from keeptraining.jobs import inputs as job_inputs
from keeptraining.jobs.inputs import JobInputs
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import rounds_table as round_report
from keeptraining.reports import summary as report
from keeptraining.state import ledger as ledger_mod
from keeptraining.state import lock as state_lock

# A trial job writes its result into <TRIAL_DIR>/slot-<k>/ and uploads <TRIAL_DIR> as the artifact
# keeptraining-trial-<k>; the merge job downloads every keeptraining-trial-* into one folder
# (merge-multiple: download-artifact puts a lone artifact straight into its path, so the slot's
# folder travels inside the artifact), giving <TRIALS_DIR>/slot-<k>/.
TRIAL_DIR = ".keeptraining-trial"
TRIALS_DIR = ".keeptraining-trials"


def _round_start(inputs: JobInputs, env: Mapping[str, str], ledger: ledger_mod.Ledger) -> int:
    """The round's first attempt, from the restored ledger; the ``attempt`` input must agree."""
    first = rounds.first_attempt(ledger)
    given = job_inputs.attempt_number(inputs, env)
    if given is not None and given != first:
        hint = (
            f"Dispatch attempt {first} with the run of the previous round as resume-run-id, or start a "
            f"new chain. {restore.fresh_chain_hint()}"
        )
        raise LedgerError(
            f"This round starts at attempt {first} (the chain state's next), not attempt {given}.", hint=hint
        )
    return first


# --------------------------------------------------------------------------- a trial job


def run_trial(inputs: JobInputs, config: Config, env: Mapping[str, str] = os.environ) -> int:
    """``keeptraining trial``: train this job's slot of the round; the merge job records and decides."""
    try:
        return _trial(inputs, config, env)
    except KeeptrainingError as exc:
        gha.set_outputs({"slot": "", "chain-status": strategy.CHAIN_FAILED})
        gha.write_summary(
            report.failure_summary(
                wording.one_line(f"Trial job failed: {exc.message}", 300), exc.title, exc.message, exc.hint
            )
        )
        raise


def _trial(inputs: JobInputs, config: Config, env: Mapping[str, str]) -> int:
    slot = job_inputs.slot_number(inputs, env)
    info = job_inputs.chain_info(inputs, env)
    restore.parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
    ws = chain.workspace(config, inputs.repo)
    with state_lock.hold(ws.state_dir):
        problem = restore.problem(
            env, ws.state_dir, str(info.get("commit", "")), job_inputs.attempt_number(inputs, env)
        )
        if problem is not None:
            raise RestoreError(
                f"Trial slot {slot} cannot train: {problem.message}",
                hint="The merge job of this round records it and ends the chain.",
            )
        ledger = ledger_mod.load(ws.state_dir)
        first = _round_start(inputs, env, ledger)
        jobs = rounds.plan_round(config, ledger)
        folder = _fresh_trial_dir(ws.repo_root / TRIAL_DIR) / f"slot-{slot}"
        if slot > len(jobs):
            print(
                f"Slot {slot} trains nothing: this round has {wording.plural(len(jobs), 'trial')} "
                "(the search's budget or grid has no more)."
            )
            gha.set_outputs({"slot": "", "chain-status": strategy.CONTINUE})
            return 0
        round_no, job = rounds.round_number(ledger), jobs[slot - 1]
        if slot == 1:
            _post_round_status(config, env, info, round_no, first, len(jobs))
        record, error = _train(inputs, config, env, ws, ledger, job, slot, folder, round_no)
    gha.set_outputs(
        {
            "slot": str(slot),
            "attempt": str(record.attempt),
            "trial": str(record.trial),
            "accuracy": f"{record.metric:.4f}" if record.metric is not None else "",
            "outcome": record.outcome,
            "chain-status": strategy.CONTINUE,
        }
    )
    gha.write_summary(round_report.trial_summary(record, config))
    if error is not None:
        gha.warn(
            f"Trial {record.trial} (attempt {record.attempt}, slot {slot}) failed; it is recorded, and "
            f"the round's merge job decides: {error.message}",
            title=error.title,
        )
    return 0


def _train(
    inputs: JobInputs,
    config: Config,
    env: Mapping[str, str],
    ws: chain.Workspace,
    ledger: ledger_mod.Ledger,
    job: Any,
    slot: int,
    folder: Path,
    round_no: int,
) -> tuple[ledger_mod.Attempt, KeeptrainingError | None]:
    """The slot's training; a backend that cannot run (no engine, a failed image build) is the trial's
    failure, recorded for the merge like any other. Its runner minutes count from the run's start: the
    trial jobs are the run's first jobs (engine/cost.py)."""
    run_info = job_inputs.timed_run_info(env, job_inputs.chain_info(inputs, env))
    try:
        backend = backends.select(config, inputs.repo, allow_local_fallback=False, say=print, on_line=print)
    except KeeptrainingError as exc:
        number = rounds.first_attempt(ledger) + slot - 1
        record = rounds.failed_record(config, job, number, slot, round_no, exc.message)
        record.run, record.runner = dict(run_info), {"slot": slot, **job_inputs.runner_info(env)}
        cost.account(record, record, run_info, env, time.time(), config.runner_kind)
        rounds.write_result(folder, record)
        return record, exc
    record, error, _tail = parallel.train_slot(
        config,
        ws,
        backend,
        ledger,
        job,
        slot,
        folder,
        round_no=round_no,
        run_info=run_info,
        runner=job_inputs.runner_info(env),
        say=print,
    )
    return record, error


def _fresh_trial_dir(folder: Path) -> Path:
    """The trial's result folder, empty (one left on a self-hosted runner by an earlier job goes)."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)
    return folder


def _post_round_status(
    config: Config, env: Mapping[str, str], info: Mapping[str, Any], round_no: int, first: int, count: int
) -> None:
    """Slot 1 sets the commit status to pending while the round trains (the merge sets the verdict)."""
    if not (config.commit_status and info.get("commit")):
        return
    ctx = job_inputs.github_context(env, job_inputs.token(env), info)
    if ctx is None:
        return
    last = first + count - 1
    url = job_inputs.run_info(env).get("url")
    target = f"{config.metric} ≥ {report.fmt_threshold(config.threshold)}"
    status = commit_status.Status(
        "pending",
        f"Training round {round_no}: attempts {first}-{last}/{config.max_attempts}, {target}",
        str(url) if url else None,
    )
    commit_status.post(ctx, str(info["commit"]), status)


# --------------------------------------------------------------------------- the merge job


def merge(
    inputs: JobInputs,
    config: Config,
    env: Mapping[str, str],
    info: Mapping[str, Any],
    unrestored: RestoreError | None,
) -> chain.AttemptReport:
    """The merge job's "training" (jobs/attempt.run with ``merge=merge``): the round's results, merged."""
    if unrestored is not None:  # every trial job met the same state: nothing of this round can be merged
        raise unrestored
    ws = chain.workspace(config, inputs.repo)
    ledger = ledger_mod.load(ws.state_dir)
    _round_start(inputs, env, ledger)
    jobs = rounds.plan_round(config, ledger)
    if not jobs:
        raise LedgerError(
            "This round had no trial to train: the search's budget or grid was used up.",
            hint=restore.fresh_chain_hint(),
        )
    round_no = rounds.round_number(ledger)
    downloads = ws.repo_root / TRIALS_DIR
    folders = {slot: downloads / f"slot-{slot}" for slot in range(1, len(jobs) + 1)}
    ledger.chain = {**ledger.chain, "threshold": config.threshold, "metric": config.metric, **info}
    # The merge job's own runner minutes (from the action's start: the run's start is the trials'),
    # recorded with the round, so that the summary's cost and max_runner_minutes count them.
    ledger.jobs.append(cost.job_minutes("merge", round_no, job_inputs.run_info(env), env, config.runner_kind))
    records = rounds.merge_round(config, ws.state_dir, ledger, jobs, folders, round_no=round_no)
    decision = rounds.decide(config, ledger, records)
    print(rounds.round_line(records, config))
    error = None
    if decision.kind == strategy.CHAIN_FAILED:
        error = TrainingError(
            f"all {wording.plural(len(records), 'trial')} of round {round_no} failed; the "
            f"first: {records[0].error or 'no metric was recorded'}",
            hint="Each trial job's log and summary show its error.",
        )
    return chain.AttemptReport(rounds.representative(records), decision, ledger, error)


def reject_single_job(config: Config, env: Mapping[str, str]) -> None:
    """``keeptraining attempt`` is one attempt: a round of parallel trials needs the trial and merge jobs."""
    role = env.get("KT_INPUT_ROLE", "").strip()
    if role in ("trial", "merge"):
        raise ConfigError(
            f"role = {role} is for `keeptraining {role}`, but this is `keeptraining attempt` "
            "(role: attempt).",
            hint=f"Run `keeptraining {role}` for this job, or set role: attempt.",
        )
    if role not in ("", "attempt"):
        raise ConfigError(f"role = {role[:20]!r} is not valid; expected attempt, trial or merge.")
    if config.parallel > 1:
        raise ConfigError(
            f"parallel = {config.parallel} trains its trials as a matrix of jobs; this job is "
            "one attempt (role: attempt).",
            hint="Call keeptraining's reusable workflow (README: Parallel trials), or run "
            "`keeptraining trial` in a matrix job per slot, then `keeptraining merge`.",
        )
