"""One training step: what the chain (chain.run_attempt) and a parallel slot (parallel.train_slot) share.

``train`` says the start line (with this run's time budget), warns when the network is not contained,
opens the data cache (a chain's runs only: its session is one chain's at a time), runs the backend,
reads the metric into the record (``fill_from_result``) and ends the record on every way out:

* trained: the metric and the outcome (``sliced`` when the run stopped before the attempt's epochs
  and the attempt may go on in a later run; a parallel trial that stops short failed);
* a domain error (training, metric, image build, engine): outcome ``failed`` with its one-line error;
* a bug: ``failed`` with the InternalError's message, never as an interruption;
* Ctrl-C or SIGTERM: ``duration_s`` so far, ``failed`` with ``INTERRUPTED`` (or ``sliced`` when the
  chain's attempt saved an epoch to go on from); the interrupt goes on.

The caller's ``keep`` stores the record (the chain's ledger, a trial's one-record result) whatever
happened. The record helpers (``new_record``, ``attempt_line``, ``error_text``) are the one way a
record is built and said.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining import adapter
from keeptraining.backends.base import LogFile, TrainRequest, TrainResult
from keeptraining.backends.docker import network
from keeptraining.backends.select import Backend
from keeptraining.config.settings import Config
from keeptraining.contract import check as contract_check
from keeptraining.contract import env as kt_env
from keeptraining.contract import failures
from keeptraining.contract import kept as kept_mod
from keeptraining.contract import metrics as metrics_mod
from keeptraining.engine import search, slices, time_budget
from keeptraining.engine.plan import Plan
from keeptraining.errors import (
    InternalError,
    KeeptrainingError,
    LedgerError,
    PathRefused,
    TrainingError,
    TrainingTimeout,
)
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.state import data_cache, safe_paths
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.folder import Workspace
from keeptraining.state.ledger import BELOW, FAILED, REACHED, SLICED, Attempt

INTERRUPTED = "interrupted (Ctrl-C or cancellation); the attempt's output folder is kept"
ERROR_LIMIT = 2000  # characters of an error kept in the ledger

Say = Callable[[str], None]
Keep = Callable[[Attempt, "str | None"], Attempt]


# --------------------------------------------------------------------------- records


def now() -> str:
    """The current UTC time as the ledger records it."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def new_record(
    config: Config,
    plan: Plan,
    backend: str,
    *,
    resumed_from: str | None = None,
    run_info: dict[str, Any] | None = None,
    job: search.TrialRun | None = None,
) -> Attempt:
    """The attempt's record (a search trial's, with ``job``), failed until the training proves otherwise."""
    record = Attempt(
        attempt=plan.attempt,
        epochs=plan.epochs,
        initial_epoch=plan.initial_epoch,
        resumed_from=resumed_from,
        outcome=FAILED,
        started_at=now(),
        params={
            "backend": backend,
            "resume": config.resume,
            "hyperparameters": dict(config.hyperparameters),
            "network": config.network,
            "cache": config.cache,
        },
        run=dict(run_info or {}),
    )
    if job:
        record.trial, record.rung, record.trial_params = job.trial, job.rung, dict(job.params)
    return record


def error_text(error: KeeptrainingError | str) -> str:
    """An error as the ledger records it: one line, at most ``ERROR_LIMIT`` characters."""
    text = error.message if isinstance(error, KeeptrainingError) else error
    return wording.one_line(text, ERROR_LIMIT)


def log_tail(result: TrainResult | None, error: KeeptrainingError | None) -> str:
    """The end of the training's log: the result's, else the one the error carries."""
    if result is not None:
        return result.log_tail
    return str(getattr(error, "log_tail", "") or "")


def attempt_line(record: Attempt, config: Config) -> str:
    """The terminal's line after an attempt (or a trial)."""
    if record.outcome == FAILED:
        return f"Attempt {record.attempt} failed after {record.duration_s:.1f} s: {record.error}"
    if record.outcome == SLICED:
        runs = wording.plural(len(record.slices), "run")
        return (
            f"Attempt {record.attempt}: at epoch {record.epochs_reached} of {record.epochs} when "
            f"{slices.why(record)}; the next run continues it ({runs} so far, "
            f"{record.epochs_trained} epochs trained, {record.duration_s:.1f} s)"
        )
    sign = "≥" if record.outcome == REACHED else "<"
    reached = "an unknown number of" if record.epochs_reached is None else record.epochs_reached
    return (
        f"Attempt {record.attempt}: {config.metric} {wording.fmt_metric(record.metric or 0.0)} {sign} "
        f"{wording.fmt_threshold(config.threshold)} "
        f"after {reached} epochs ({record.epochs_trained} trained, "
        f"{record.duration_s:.1f} s)"
    )


def start_line(title: str, plan: Plan, resumed: str, backend: str, budget: time_budget.Budget) -> str:
    """``<title> epochs 10 -> 20<resumed> on docker; training time: ... ==`` (the title opens with ``==``)."""
    return (
        f"{title} epochs {plan.initial_epoch} -> {plan.epochs}{resumed} on {backend}; "
        f"training time: {budget.describe()} =="
    )


# --------------------------------------------------------------------------- the checkpoint offered


def resume_path(ws: Workspace, plan: Plan) -> tuple[Plan, Path | None]:
    """The checkpoint to resume from; a missing one means fresh training, said out loud.

    Only a regular file inside the attempt's folder, reached without a symbolic link,
    is ever offered (LedgerError otherwise, before anything is read or mounted).
    """
    previous = plan.resume_from
    if previous is None or previous.checkpoint is None:
        return plan, None
    folder = ledger_mod.attempt_dir(ws.state_dir, previous.attempt)
    try:
        if folder.is_symlink():
            raise PathRefused(f"{folder.name} is a symbolic link; attempt folders are plain folders.")
        present = folder.is_dir() and safe_paths.is_file(
            folder, previous.checkpoint, f"attempt {previous.attempt}'s checkpoint"
        )
    except PathRefused as exc:
        raise LedgerError(
            f"Refusing to resume: {exc.message}",
            hint="Delete the state folder (or the restored artifact) to start a fresh chain.",
        ) from None
    if not present:
        gha.warn(
            f"The checkpoint of attempt {previous.attempt} is missing "
            f"({folder / previous.checkpoint}); attempt {plan.attempt} trains from scratch.",
            title="Checkpoint missing",
        )
        return Plan(plan.attempt, plan.epochs, 0, None, plan.run), None
    return plan, folder / previous.checkpoint


# --------------------------------------------------------------------------- the request


def contract_env(config: Config, plan: Plan, params: dict[str, Any] | None = None) -> dict[str, str]:
    """The training contract's variables for ``plan`` (contract/env.py names them), with a search
    trial's values (``params``) over the configuration's hyperparameters."""
    return {
        **kt_env.environment(
            plan,
            threshold=config.threshold,
            metric=config.metric,
            adapt=config.adapt,
            hps=config.hyperparameters,
        ),
        **kt_env.hyperparameters(params or {}),
    }


def train_request(
    config: Config,
    ws: Workspace,
    plan: Plan,
    params: dict[str, Any],
    out_dir: Path,
    on_line: Callable[[str], None] | None,
    *,
    resume_path: Path | None,
    budget: time_budget.Budget,
    **resources: Any,
) -> TrainRequest:
    """What the backend runs for one attempt of the chain or one trial of a round: the training contract's
    variables (with a search trial's values), this run's time budget, and the configuration's limits.
    ``resources``: the data cache's folder, and a parallel trial's cores, memory watch and cancel event."""
    return TrainRequest(
        code_dir=ws.code_dir,
        command=ws.command,
        output_dir=out_dir,
        env=contract_env(config, plan, params),
        timeout=config.timeout,
        budget=budget,
        resume_from=resume_path,
        on_line=on_line,
        memory_limit=config.memory_limit,
        cpus=config.cpus,
        gpus=config.gpus,
        adapter_dir=adapter.folder() if config.adapt != "none" else None,
        network=config.network,
        state_dir=ws.state_dir,
        **resources,
    )


# --------------------------------------------------------------------------- one training step


@dataclass
class Run:
    """One training run: the attempt's plan, where it writes, and how it may end."""

    config: Config
    ws: Workspace
    backend: Backend
    plan: Plan  # as offered: resume_path() already checked its checkpoint
    resume_path: Path | None
    out_dir: Path
    record: Attempt  # new_record(), filled in by the training
    title: str  # the start line's head, e.g. "== Attempt 2/10:"
    resumed: str  # the start line's " from attempt 1's checkpoint"
    params: dict[str, Any] = field(default_factory=dict)  # a search trial's values
    previous: Attempt | None = None  # the ledger's last attempt (the contract check's repeat rule)
    continuing: Attempt | None = None  # the sliced attempt this run carries on (the chain's)
    sliceable: bool = True  # a run stopped before its epochs goes on later (a chain); else it failed
    cache: bool = True  # the data cache (a chain's; parallel trials share no session)
    resources: dict[str, Any] = field(default_factory=dict)  # cores, memory watch, cancel event
    say: Say = print
    on_line: Callable[[str], None] | None = None


@dataclass
class Outcome:
    record: Attempt  # as kept
    error: KeeptrainingError | None  # what failed it (already recorded); None when it trained
    result: TrainResult | None
    log_tail: str


def train(run: Run, keep: Keep) -> Outcome:
    """Train ``run`` and keep its record (``keep(record, why it stopped short)``) on every way out."""
    config, record = run.config, run.record
    budget = time_budget.budget(config, os.environ)
    run.say(start_line(run.title, run.plan, run.resumed, run.backend.name, budget))
    log = LogFile.create(run.out_dir)
    network.warn_if_not_contained(config.network, run.backend.name)
    cache = data_cache.open_session(config, run.ws.state_dir, say=run.say) if run.cache else None
    request = train_request(
        config,
        run.ws,
        run.plan,
        run.params,
        run.out_dir,
        log.sink(run.on_line),
        resume_path=run.resume_path,
        budget=budget,
        **({"cache_dir": cache.data_dir} if cache else {}),
        **run.resources,
    )
    error: KeeptrainingError | None = None
    result: TrainResult | None = None
    stopped: str | None = None  # why this run ended before the attempt's epochs (slices.py)
    started = time.monotonic()
    try:
        result = _backend_run(run.backend, request, cache)
        record.duration_s = round(result.duration, 3)
        stopped = fill_from_result(record, result, run.out_dir, config, run.plan, run.say, run.previous)
        _check_stop(run, stopped, result)
    except KeeptrainingError as exc:  # training, metric, image build, engine: the attempt failed
        error = exc
        record.outcome, record.error = FAILED, error_text(exc)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM (runner cancellation): record it, keep what exists
        stopped, record.outcome, record.error = slices.INTERRUPTED, FAILED, INTERRUPTED
        record.duration_s = round(time.monotonic() - started, 3)
        if run.sliceable and (
            slices.salvage(record, run.out_dir, "", config, run.plan) or run.continuing is not None
        ):
            record.outcome, record.error = SLICED, None  # the next run goes on from the last saved epoch
        raise
    except Exception as exc:  # a bug: recorded as a failure like any other, never as an interruption
        error = InternalError.from_exception(exc)
        record.outcome, record.error = FAILED, error.message
    finally:
        log.close()
        kept = keep(record, stopped)
    return Outcome(kept, error, result, log_tail(result, error))


def _backend_run(backend: Backend, request: TrainRequest, cache: data_cache.Session | None) -> TrainResult:
    """The backend's training; the data cache keeps the downloads unless the training was cut short."""
    result: TrainResult | None = None
    try:
        result = backend.run(request)
        return result
    finally:  # whatever the metric says
        if cache is not None:
            cache.close(complete=result is not None and not result.timed_out)


def _check_stop(run: Run, stopped: str | None, result: TrainResult) -> None:
    """A run that stopped before its epochs: a chain's attempt goes on later (slices.check); a parallel
    trial is one job or process, not continued across runs: it failed."""
    if run.sliceable:
        slices.check(run.record, stopped, run.plan, run.continuing, run.config)
        return
    if stopped is not None:
        run.record.outcome = FAILED
        raise TrainingTimeout(
            f"Trial {run.record.trial} stopped at epoch {run.record.epochs_reached} of {run.plan.epochs} "
            f"({stopped}): a parallel trial trains its epochs in one run.",
            hint="Raise `timeout` (and the trial jobs' timeout-minutes), or train fewer epochs a trial.",
            log_tail=result.log_tail,
        )


def fill_from_result(
    record: Attempt,
    result: TrainResult,
    out_dir: Path,
    config: Config,
    plan: Plan,
    say: Say,
    previous: Attempt | None = None,
) -> str | None:
    """Turn the process result and its metrics into the record; raise on failure.

    Returns why the run stopped before the attempt's epochs (``slices.DEADLINE``,
    ``slices.TIMEOUT``), None when it trained to its end.
    """
    if result.image:  # the training image (docker), which the model card names
        record.params["image"] = result.image
    if result.image_digest:
        record.params["image_digest"] = result.image_digest
    if result.timed_out and slices.salvage(record, out_dir, result.output, config, plan):
        gha.warn(
            f"Attempt {record.attempt} reached this run's timeout of {config.timeout:g} s and was "
            f"stopped after epoch {record.epochs_reached}: the epoch it was training is lost, the "
            "attempt goes on in the next run from the last one it saved.",
            title="Training timed out",
        )
        return slices.TIMEOUT
    _raise_if_failed(result, record, config, out_dir, plan)
    found = metrics_mod.read(out_dir, result.output, config.metric)
    trained = contract_check.assess(found, result.output, plan, config.threshold)
    if not trained.resumed:
        record.resumed_from = None
    record.initial_epoch = trained.initial_epoch
    metrics_mod.check_epochs(found, asked=plan.epochs, initial=record.initial_epoch)
    _copy_metrics(record, found, trained)
    if found.line:
        say(f"{config.metric} read from the output line: {found.line}")
    if config.resume and found.value < config.threshold:
        missing = contract_check.missing_checkpoint(record, out_dir)
        trained.warnings += [missing] if missing else []
    record.warnings = trained.warnings
    for text in trained.warnings:
        gha.warn(text, title="Training contract")
    contract_check.stop_if_ignored_again(previous, record)
    record.outcome = REACHED if found.value >= config.threshold else BELOW
    stopped = slices.stop_reason(found, record, plan, config.threshold)
    if stopped is not None:
        record.outcome = SLICED
    return stopped


def _raise_if_failed(result: TrainResult, record: Attempt, config: Config, out_dir: Path, plan: Plan) -> None:
    """A run that timed out (with nothing to go on from) or exited non-zero failed; what a failed
    run saved before failing is kept in ``record`` (contract/kept.py)."""
    if result.timed_out:
        raise TrainingTimeout(
            f"Attempt {record.attempt} ran past the timeout of {config.timeout:g} s and was stopped.",
            hint="Raise `timeout`, or train fewer epochs per attempt.",
            log_tail=result.log_tail,
        )
    if result.exit_code != 0:
        detail = f" ({result.detail})" if result.detail else ""
        offline = network.explain(result.offline, f"{result.output}\n{result.errors}") or failures.explain(
            result.output, result.errors, container=record.params.get("backend") == "docker"
        )
        kept = kept_mod.keep_trained(record, out_dir, result.output, config.metric, plan, config.threshold)
        raise TrainingError(
            f"The training command exited with code {result.exit_code}{detail}."
            f"{offline.message if offline else ''}" + (kept_mod.said(record) if kept else ""),
            hint=offline.hint if offline else "The last lines of its log are shown above.",
            log_tail=result.log_tail,
        )


def _copy_metrics(record: Attempt, found: metrics_mod.Metrics, trained: contract_check.Trained) -> None:
    record.metric = found.value
    record.metric_source = found.label
    record.metric_line = found.line
    record.history = found.history
    record.epochs_reached = trained.epochs_reached
    record.epochs_trained = trained.epochs_trained
    record.epochs_source = trained.epochs_source
    record.epochs_ignored = trained.ignored
    record.early_stopped = found.stopped == metrics_mod.EARLY_STOPPING
    record.adapter = found.adapter
    record.train_s = round(found.train_s, 3) if found.train_s is not None else None
    record.checkpoint = found.checkpoint
