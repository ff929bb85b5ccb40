"""``keeptraining attempt``: one GitHub workflow run's worth of work.

Train one attempt (``chain.run_attempt``), then, in this order: dispatch the
next attempt when the chain continues, write the step outputs and the job
summary, set the commit status, and mail when the chain has ended. When the state
of the run to resume could not be restored (``restore.problem``), the attempt is
recorded as failed without training.

Every failure leaves through one place, ``_fail`` (the pypa publish action's
habit): whatever ends the attempt (training, metric, image build, no engine, a
configuration or state problem found late, dispatch, a bug) is recorded in the
ledger where that is safe, and the step outputs (``chain-status: failed``), the
job summary with the error and the log tail, and the failure mail are written
before the error leaves through the CLI as an ``::error::`` and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import chain, search, slices, step, strategy
from keeptraining.errors import (
    ConfigError,
    InternalError,
    KeeptrainingError,
    LedgerError,
    NotifyError,
    RestoreError,
)
from keeptraining.github import commit_status, dispatch, restore
from keeptraining.jobs import champion_check
from keeptraining.jobs.inputs import (
    JobInputs,
    attempt_label,
    attempt_number,
    chain_info,
    github_context,
    run_info,
    run_url,
    timed_run_info,
    token,
    wants_dispatch,
)
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import mail as notify
from keeptraining.reports import model_card
from keeptraining.reports import summary as report
from keeptraining.state import ledger
from keeptraining.state import lock as state_lock

# A merge job's "training": the round's trials, merged (jobs/rounds.py's merge).
Merge = Callable[
    [JobInputs, Config, Mapping[str, str], Mapping[str, Any], RestoreError | None], chain.AttemptReport
]


def explicit_epochs(config: Config) -> int | None:
    """Epochs given for *this* attempt (flag or action input), not the first-attempt default."""
    return config.epochs if config.sources.get("epochs") in ("command line", "action inputs") else None


@dataclass
class _Progress:
    """How far the attempt got: what ``_fail`` can still record and report."""

    ws: chain.Workspace | None = None
    info: dict[str, Any] = field(default_factory=dict)
    locked: bool = False
    report: chain.AttemptReport | None = None
    next_run: dict[str, Any] = field(default_factory=dict)
    statuses: dispatch.GitHubContext | None = None  # where the commit status goes (None: nowhere)


def run(
    inputs: JobInputs, config: Config, env: Mapping[str, str] = os.environ, *, merge: Merge | None = None
) -> int:
    """One attempt (with ``merge``: a round's merge job, whose training is merging the round's trials);
    outputs, summary and (at the end of a chain) mail, on every way out."""
    progress = _Progress()
    with contextlib.ExitStack() as stack:
        try:
            progress.info = chain_info(inputs, env)  # the chain's inputs first: a bad one is named first
            attempt_number(inputs, env)
            restore.parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
            if config.commit_status and progress.info.get("commit"):  # inputs valid: GitHub may be called
                progress.statuses = github_context(env, token(env), progress.info)
            progress.ws = chain.workspace(config, inputs.repo)
            stack.enter_context(state_lock.hold(progress.ws.state_dir))
            progress.locked = True
            _train_and_dispatch(inputs, config, env, progress, merge)
        except KeyboardInterrupt:  # SIGINT/SIGTERM: the chain recorded it; say how to go on, then stop
            _interrupted(config, env, progress)
            raise
        except Exception as exc:  # every failure, a bug included, goes through _fail
            error = exc if isinstance(exc, KeeptrainingError) else InternalError.from_exception(exc)
            raise _fail(inputs, config, env, progress, error) from None
        result = progress.report
        assert result is not None
        if gha.in_actions(env):
            chain.prune_checkpoints(progress.ws.state_dir, result.ledger, _promotable(config, result.ledger))
        _write_outputs(result.record, result.ledger, result.decision, progress.next_run)
        _write_summary(config, result, progress.next_run)
        _post_status(
            progress,
            commit_status.verdict(
                config, result.ledger, result.decision, run_url(env), progress.next_run.get("url")
            ),
        )
        if result.decision.kind == strategy.CHAIN_REACHED:  # the data's files, for the publish job's card
            model_card.record_data_files(config, progress.ws.state_dir, env)
            _against_champion(config, inputs.repo, progress.ws.state_dir, result, env)
        if result.decision.kind != strategy.CONTINUE:
            notify_end(config, result, progress.ws.state_dir)
    return 0


def _against_champion(
    config: Config, repo: Path, state_dir: Path, result: chain.AttemptReport, env: Mapping[str, str]
) -> None:
    """On the default branch: the champion evaluated with this commit's code (champion_check.py); a worse
    model is published but not marked latest, and the summary and the mail say why."""
    checked = champion_check.after_reached(config, repo, state_dir, result.record.metric or 0.0, env)
    if checked is not None:
        gha.write_summary(f"**{report.md_escape(checked.reason)}**", env)
        if not checked.latest:
            result.decision = dataclasses.replace(result.decision, hint=checked.reason)


def _post_status(progress: _Progress, status: commit_status.Status) -> None:
    """The commit status on the chain's commit, when there is somewhere to post it."""
    if progress.statuses is not None:
        commit_status.post(progress.statuses, str(progress.info["commit"]), status)


def _promotable(config: Config, book: ledger.Ledger) -> set[int]:
    """Attempts whose checkpoints a search may still promote (kept by pruning)."""
    if config.strategy != search.SEARCH:
        return set()
    try:
        return search.attempts_to_keep(config, book)
    except KeeptrainingError:  # a ledger the search cannot read: keep the default pruning
        return set()


def _train_and_dispatch(
    inputs: JobInputs, config: Config, env: Mapping[str, str], progress: _Progress, merge: Merge | None
) -> None:
    """Train, record, and dispatch the next attempt; raises whatever ended the attempt."""
    given = token(env)
    dispatching = wants_dispatch(inputs, env)
    if dispatching and not (given and env.get("GITHUB_REPOSITORY")):
        raise ConfigError(
            "--dispatch needs GITHUB_REPOSITORY and a token in GITHUB_TOKEN.",
            hint="Run it inside GitHub Actions with `github-token: ${{ github.token }}` "
            "and `permissions: actions: write`.",
        )
    number = attempt_number(inputs, env)
    assert progress.ws is not None
    unrestored = restore.problem(env, progress.ws.state_dir, str(progress.info.get("commit", "")), number)
    github = github_context(env, given, progress.info)
    _post_status(progress, commit_status.starting(config, number, run_url(env)))
    if dispatching and github is not None:
        _warn_without_attempt_marker(github, *(attempt_label(inputs, env) or (1, 1)))
    if merge is not None:  # the merge job of a round of parallel trials
        result = merge(inputs, config, env, progress.info, unrestored)
    else:
        result = _train(inputs, config, env, progress, number, unrestored)
    progress.report = result
    # A search goes on past a failed trial (CONTINUE after a failure); any other failure ends here.
    if result.error is not None and result.decision.kind != strategy.CONTINUE:
        raise result.error
    print(result.decision.reason)
    if result.error is not None:
        gha.warn(
            f"Trial of attempt {result.record.attempt} failed; the search goes on: {result.error.message}",
            title=result.error.title,
        )
    if dispatching and result.decision.kind == strategy.CONTINUE:
        progress.next_run = _dispatch(result, progress.info, given, env, config)
        ledger.save(progress.ws.state_dir, result.ledger)


def _train(
    inputs: JobInputs,
    config: Config,
    env: Mapping[str, str],
    progress: _Progress,
    number: int | None,
    unrestored: RestoreError | None,
) -> chain.AttemptReport:
    """The attempt's training; when the state to resume was not restored, its failure, recorded."""
    if unrestored is not None:
        return chain.record_unrestored(
            config,
            inputs.repo,
            unrestored,
            attempt=number,
            epochs=explicit_epochs(config),
            chain_info=progress.info,
            run_info=run_info(env),
        )
    label = attempt_label(inputs, env)
    if label is not None and progress.ws is not None:  # N.K: K must be the run the ledger continues
        slices.check_run(ledger.load(progress.ws.state_dir), *label)
    backend = backends.select(config, inputs.repo, allow_local_fallback=False, say=print, on_line=print)
    # The run's start (run_started_at): the attempt's runner minutes count from it (engine/cost.py).
    info = timed_run_info(env, progress.info)
    return chain.run_attempt(
        config,
        inputs.repo,
        backend,
        attempt=number,
        epochs=explicit_epochs(config),
        chain_info=progress.info,
        run_info=info,
    )


# Failures reported without touching the ledger: the configuration, the ledger itself (or its
# lock), the mail. Any other failure before training (no engine, a bug) is the attempt's failure.
_NOT_RECORDED = (ConfigError, LedgerError, NotifyError)


def _fail(
    inputs: JobInputs, config: Config, env: Mapping[str, str], progress: _Progress, error: KeeptrainingError
) -> KeeptrainingError:
    """The one way out of a failed attempt: record, outputs, summary, mail; returns the error to raise."""
    result = progress.report
    if result is None and progress.locked and not isinstance(error, _NOT_RECORDED):
        result = _record_early(inputs, config, env, progress, error)
    elif result is not None and result.error is not error:  # trained, then dispatch (or a bug) failed
        result.record.error = step.error_text(error)
        _save_quietly(progress, result.ledger)
    record = result.record if result is not None else None
    book = result.ledger if result is not None else _readable_ledger(progress, error)
    number = record.attempt if record is not None else _attempt_input(inputs, env)
    decision = strategy.Decision(
        strategy.CHAIN_FAILED, wording.failed(number, error.message), hint=error.hint
    )
    log_tail = result.log_tail if result is not None else str(getattr(error, "log_tail", "") or "")
    if progress.ws is not None and result is not None and gha.in_actions(env):
        chain.prune_checkpoints(progress.ws.state_dir, book, _promotable(config, book))
    _write_outputs(record, book, decision, {}, attempt=number)
    failure = report.failure_markdown(error.title, error.message, error.hint, log_tail)
    gha.write_summary(report.job_summary(book, config, decision, failure=failure))
    _post_status(progress, commit_status.verdict(config, book, decision, run_url(env)))
    final = chain.AttemptReport(record or _placeholder(number), decision, book, error, log_tail)
    try:
        notify_end(config, final, _state_dir(config, inputs, progress))
    except NotifyError as exc:  # the attempt's error is the one to report; the mail's is a warning
        gha.warn(exc.message, title=exc.title)
    return error


def fail_before_config(error: KeeptrainingError) -> None:
    """A configuration that cannot be read: outputs and a summary (no mail: its settings are in it)."""
    gha.set_outputs(
        {
            "accuracy": "",
            "threshold-reached": "false",
            "dispatched": "false",
            "next-epochs": "",
            "next-run-url": "",
            "chain-status": strategy.CHAIN_FAILED,
        }
    )
    text = wording.failed(None, error.message)
    gha.write_summary(report.failure_summary(text, error.title, error.message, error.hint))


def _record_early(
    inputs: JobInputs, config: Config, env: Mapping[str, str], progress: _Progress, error: KeeptrainingError
) -> chain.AttemptReport | None:
    """Record an attempt that failed before training (no engine, a bug); None if that cannot be done."""
    try:
        return chain.record_failure(
            config,
            inputs.repo,
            error,
            attempt=attempt_number(inputs, env),
            chain_info=progress.info,
            run_info=run_info(env),
        )
    except Exception as exc:  # the failure path must not fail: report the first error, not this one
        why = exc.message if isinstance(exc, KeeptrainingError) else f"{type(exc).__name__}: {exc}"
        gha.warn(
            f"The failed attempt could not be recorded in the ledger: {why}", title="Attempt not recorded"
        )
        return None


def _save_quietly(progress: _Progress, book: ledger.Ledger) -> None:
    if progress.ws is None:
        return
    try:
        ledger.save(progress.ws.state_dir, book)
    except KeeptrainingError as exc:
        gha.warn(exc.message, title=exc.title)


def _readable_ledger(progress: _Progress, error: KeeptrainingError) -> ledger.Ledger:
    """The ledger as it is, for the summary and the mail; an empty one if it is the problem."""
    if progress.ws is None or isinstance(error, LedgerError):
        return ledger.Ledger()
    try:
        return ledger.load(progress.ws.state_dir)
    except KeeptrainingError:
        return ledger.Ledger()


def _attempt_input(inputs: JobInputs, env: Mapping[str, str]) -> int | None:
    try:
        return attempt_number(inputs, env)
    except ConfigError:
        return None


def _placeholder(number: int | None) -> ledger.Attempt:
    return ledger.Attempt(
        attempt=number or 0, epochs=0, initial_epoch=0, resumed_from=None, outcome=ledger.FAILED
    )


def _state_dir(config: Config, inputs: JobInputs, progress: _Progress) -> Path:
    if progress.ws is not None:
        return progress.ws.state_dir
    state = Path(config.state_dir)
    return state if state.is_absolute() else Path(inputs.repo) / state


def notify_end(config: Config, final: chain.AttemptReport, state_dir: Path) -> str | None:
    """The one mail at the end of a chain (reached, exhausted or failed), if configured."""
    if final.decision.kind == strategy.CONTINUE:
        return None
    where = notify.notify(config, final.ledger, final.decision, state_dir=state_dir, log_tail=final.log_tail)
    if where and config.smtp_server:
        print(f"Notification: {where}")
    elif where and gha.in_actions():
        gha.annotate(
            "notice",
            "No smtp-server is configured, so no mail was sent; the message is in "
            "the chain state artifact (outbox/).",
            title="No mail sent",
        )
    return where


def _warn_without_attempt_marker(github: dispatch.GitHubContext, attempt: int, run: int) -> None:
    warning = dispatch.run_name_warning(github, attempt, run)
    if warning:
        gha.annotate("warning", warning, title="Re-run protection needs the attempt in run-name")


def _superseded(result: chain.AttemptReport, outcome: dispatch.DispatchResult) -> None:
    """A newer chain took over the branch: this chain ends (notice; the mail follows)."""
    commit = str(outcome.superseded_by or "")
    result.ledger.chain["superseded_by"] = {"commit": commit, "run_url": outcome.superseded_run_url}
    reason = wording.superseded(commit[:7], (result.ledger.last or result.record).attempt)
    result.decision = strategy.Decision(strategy.SUPERSEDED, reason)
    gha.annotate("notice", reason, title="Chain superseded")


def _dispatch(
    result: chain.AttemptReport, info: Mapping[str, Any], token: str, env: Mapping[str, str], config: Config
) -> dict[str, Any]:
    """Dispatch the next attempt and note it in the attempt's record (the caller saves).

    A search dispatches the attempt number only: the next run reads its trial and values from
    the study in the chain state, so a dispatch input can never choose them.
    """
    record, decision = result.ledger.last or result.record, result.decision  # a round's: its last trial
    assert decision.next_epochs is not None
    # An unfinished attempt continues in its next run (slices.py): the same number, as N.K.
    number = record.attempt if decision.next_run > 1 else record.attempt + 1
    label = slices.label(number, decision.next_run)
    epochs = "" if config.strategy == search.SEARCH else str(decision.next_epochs)
    inputs = {"attempt": label, "epochs": epochs, "commit": str(info.get("commit", ""))}
    if env.get("GITHUB_RUN_ID"):
        inputs["resume-run-id"] = env["GITHUB_RUN_ID"]
    ctx = dispatch.context_from_env(env, token, ref=info.get("branch") or None)
    first_run = slices.first_run_id(result.ledger.attempts[0]) if result.ledger.attempts else None
    outcome = dispatch.dispatch_next(
        ctx,
        chain_commit=str(info.get("commit", "")),
        next_attempt=number,
        inputs=inputs,
        next_run=decision.next_run,
        chain_run_id=first_run,
        known_runs=restore.dispatched_by_earlier_tries(ctx, env),
    )
    if outcome.superseded_by:
        _superseded(result, outcome)
        return {}
    if not outcome.dispatched:
        gha.annotate("notice", outcome.reason, title="Chain not continued")
        return {}
    next_run = {
        "attempt": number,
        "run": decision.next_run,
        "epochs": decision.next_epochs,
        "run_id": outcome.run_id,
        "url": outcome.run_url,
        "reused": outcome.reused,
    }
    record.dispatched = next_run
    if outcome.reused:  # a re-run: the next attempt is already on its way
        print(f"Not dispatched again: {outcome.reason}")
        return next_run
    print(
        f"Dispatched attempt {label} ({decision.next_epochs} epochs)"
        f"{': ' + outcome.run_url if outcome.run_url else ''}"
    )
    return next_run


INTERRUPTED = "interrupted"  # chain-status of a cancelled run (no dispatch, no mail: the chain has not ended)


def _interrupted(config: Config, env: Mapping[str, str], progress: _Progress) -> None:
    """A cancelled run (SIGINT/SIGTERM; on GitHub the job is killed 10 s later): the chain has
    recorded what the run saved; write the outputs (the state is then uploaded) and a summary
    that says how to continue it. Nothing is dispatched: the run was stopped on purpose."""
    if progress.ws is None or not progress.locked:
        return
    try:
        book = ledger.load(progress.ws.state_dir)
        record = book.last
        if record is None:
            return
        gha.set_outputs(
            {
                "attempt": str(record.attempt),
                "epochs": str(record.epochs_reached or ""),
                "chain-status": INTERRUPTED,
                "dispatched": "false",
                "threshold-reached": "false",
            }
        )
        reason, hint = _how_to_continue(record, progress.info, env)
        decision = strategy.Decision(INTERRUPTED, reason, hint=hint)
        gha.write_summary(
            report.job_summary(book, config, decision, failure=report.failure_markdown("Run cancelled", hint))
        )
    except Exception as exc:  # the interruption is what to report; this is only a warning
        gha.warn(
            f"The cancelled run's outputs and summary could not be written: {exc}", title="Run cancelled"
        )


def _how_to_continue(
    record: ledger.Attempt, info: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[str, str]:
    """What a cancelled run left, and how a person continues the chain from it."""
    commit, this_run = str(info.get("commit", "")), env.get("GITHUB_RUN_ID", "")
    if record.outcome != ledger.SLICED:
        return (
            f"Attempt {record.attempt} was cancelled before it saved an epoch.",
            "Re-run this job to train the attempt again.",
        )
    label = slices.label(record.attempt, slices.run_number(record))
    reason = (
        f"Attempt {record.attempt} was cancelled at epoch {record.epochs_reached} of {record.epochs}; "
        "the epochs it finished are saved in this run's chain state."
    )
    if not this_run:
        return reason, "Run `keeptraining run --continue` (or `keeptraining attempt`) to go on from there."
    return reason, (
        f"To go on from there, run the workflow by hand (Actions → Run workflow) with attempt "
        f"{label}, commit {commit} and resume-run-id {this_run}. (A re-run of this job goes "
        "back to the state of the run it resumed.)"
    )


def _write_outputs(
    record: ledger.Attempt | None,
    book: ledger.Ledger,
    decision: strategy.Decision,
    next_run: Mapping[str, Any],
    *,
    attempt: int | None = None,
) -> None:
    best = book.best()
    reached = record.epochs_reached if record is not None else None
    gha.set_outputs(
        {
            "accuracy": f"{record.metric:.4f}" if record is not None and record.metric is not None else "",
            "threshold-reached": str(record is not None and record.outcome == ledger.REACHED).lower(),
            "epochs": str(reached if reached is not None else record.epochs) if record is not None else "",
            "attempt": str(record.attempt) if record is not None else str(attempt or ""),
            "dispatched": str(bool(next_run)).lower(),
            "next-epochs": str(decision.next_epochs) if decision.kind == strategy.CONTINUE else "",
            "next-run-url": str(next_run.get("url") or ""),
            "chain-status": decision.kind,
            "best-accuracy": f"{best.metric:.4f}" if best and best.metric is not None else "",
        }
    )


def _write_summary(config: Config, result: chain.AttemptReport, next_run: Mapping[str, Any]) -> None:
    gha.write_summary(
        report.job_summary(result.ledger, config, result.decision, next_run=dict(next_run) or None)
    )
    model = model_card.where_the_model_is(result.ledger)  # a reached chain: the artifact and its run
    if model and result.decision.kind == strategy.CHAIN_REACHED:
        gha.write_summary(report.md_escape(model, 600) + "\n")
