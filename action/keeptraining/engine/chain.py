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

Paths from the restored state or the training script go through ``safe_paths``:
the checkpoint resumed from and the checkpoints pruned are regular files inside
the state folder, reached without crossing a symbolic link. An attempt folder
that the ledger does not record is moved aside, never deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining import adapter
from keeptraining.backends.base import LogFile, TrainRequest, TrainResult, echo_line
from keeptraining.backends.docker import network
from keeptraining.backends.select import Backend
from keeptraining.config.settings import Config
from keeptraining.contract import check as contract_check
from keeptraining.contract import metrics as metrics_mod
from keeptraining.engine import search, slices, strategy, time_budget
from keeptraining.engine.strategy import Decision, Plan
from keeptraining.errors import (
    ConfigError,
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
from keeptraining.state.ledger import BELOW, FAILED, REACHED, SLICED, Attempt, Ledger

UNRECORDED_DIR = "unrecorded"  # attempt folders the ledger does not know, moved aside (never deleted)
INTERRUPTED = "interrupted (Ctrl-C or cancellation); the attempt's output folder is kept"

Say = Callable[[str], None]


@dataclass
class AttemptReport:
    record: Attempt
    decision: Decision
    ledger: Ledger
    error: KeeptrainingError | None = None  # set when the attempt failed (already recorded)
    log_tail: str = ""


@dataclass
class Workspace:
    """Where things are: the repository, the training code, the chain's state."""

    repo_root: Path
    code_dir: Path
    state_dir: Path
    command: list[str] = field(default_factory=list)


def workspace(config: Config, repo_root: Path) -> Workspace:
    """Resolve and check paths; the code folder must stay inside the repository."""
    root = repo_root.resolve()
    try:
        code_dir = (root / config.code_path).resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise ConfigError(f"code_path = {config.code_path!r} cannot be resolved: {exc}.") from None
    if not code_dir.is_relative_to(root):
        raise ConfigError(f"code_path = {config.code_path!r} resolves to {code_dir}, outside the "
                          f"repository {root}.",
                          hint="Use a folder inside the repository, e.g. `code_path: ml_code`.")
    if not code_dir.is_dir():
        raise ConfigError(f"code_path = {config.code_path!r}: no such folder in {root}.",
                          hint="Point code_path at the folder that holds your training script.")
    try:
        command = shlex.split(config.train_command)
    except ValueError as exc:
        raise ConfigError(f"train_command = {config.train_command!r} cannot be split: {exc}.") from None
    if not command:
        raise ConfigError("train_command is empty.", hint="e.g. `train_command: python nn.py`.")
    state_dir = Path(config.state_dir)
    state_dir = state_dir if state_dir.is_absolute() else root / state_dir
    ledger_mod.check_state_dir(state_dir)
    return Workspace(root, code_dir, state_dir, command)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


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
        raise ConfigError(f"attempt = {number} is beyond max_attempts = {config.max_attempts}.",
                          hint="Raise max_attempts, or start a new chain at attempt 1.")
    retry_of_failed = last is not None and number == last.attempt and last.outcome in (FAILED, SLICED)
    if last is not None and last.outcome == SLICED and number != last.attempt:
        raise LedgerError(f"Attempt {last.attempt} is unfinished: its last run stopped at epoch "
                          f"{last.epochs_reached} of {last.epochs} and the next run continues it.",
                          hint=f"Continue attempt {last.attempt} (on GitHub: attempt "
                               f"{slices.label(last.attempt, slices.run_number(last))}), or start a new "
                               "chain.")
    if last is not None and number <= last.attempt and not retry_of_failed:
        raise LedgerError(f"Attempt {number} is already recorded in the ledger (outcome: "
                          f"{next(a.outcome for a in ledger.attempts if a.attempt == number)}).",
                          hint=f"Continue with attempt {last.attempt + 1}, or start a new chain.")
    if last is not None and number > last.attempt + 1:
        raise LedgerError(f"Attempt {number} does not follow the ledger's last attempt {last.attempt}.",
                          hint=f"Run attempt {last.attempt + 1} next, or start a new chain.")
    if last is None and number > 1:
        gha.warn(f"No ledger found for attempt {number}: this attempt trains from scratch.",
                 title="No chain state")
    return number


def _resume_path(ws: Workspace, plan: Plan) -> tuple[Plan, Path | None]:
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
        present = folder.is_dir() and safe_paths.is_file(folder, previous.checkpoint,
                                                         f"attempt {previous.attempt}'s checkpoint")
    except PathRefused as exc:
        raise LedgerError(f"Refusing to resume: {exc.message}",
                          hint="Delete the state folder (or the restored artifact) to start a fresh chain."
                          ) from None
    if not present:
        gha.warn(f"The checkpoint of attempt {previous.attempt} is missing "
                 f"({folder / previous.checkpoint}); attempt {plan.attempt} trains from scratch.",
                 title="Checkpoint missing")
        return Plan(plan.attempt, plan.epochs, 0, None), None
    return plan, folder / previous.checkpoint


def _fresh_output_dir(ws: Workspace, number: int, *, replace: bool, sub: str | None = None) -> Path:
    """An empty output folder for attempt ``number`` (``sub``: for a later run of it, inside its folder).

    What is already there goes only when ``replace`` (the ledger records this attempt
    as failed: a retry replaces it); anything the ledger does not record (a lost ledger
    write, a folder from elsewhere) is moved aside into ``unrecorded/``, never deleted.
    """
    out_dir = ledger_mod.attempt_dir(ws.state_dir, number)
    if sub is not None:
        out_dir, replace = out_dir / sub, False
    with state_folder_errors(f"prepare the output folder {out_dir}"):
        if os.path.lexists(out_dir):
            if replace and out_dir.is_dir() and not out_dir.is_symlink():
                shutil.rmtree(out_dir)
            else:
                name = f"{out_dir.parent.name}-{out_dir.name}" if sub else out_dir.name
                aside = move_aside(ws.state_dir, out_dir, name)
                gha.warn(f"{out_dir} is not recorded in the ledger; it was moved to {aside}, not deleted.",
                         title="Unrecorded attempt folder kept")
        out_dir.mkdir(parents=True)
    return out_dir


@contextlib.contextmanager
def state_folder_errors(action: str, hint: str = "Make the state folder writable (and free disk space).") \
        -> Iterator[None]:
    """Work on the state folder's files: a refused path, or an OS error as "Cannot <action>: why."
    (with ``hint``), becomes a LedgerError."""
    try:
        yield
    except PathRefused as exc:
        raise LedgerError(exc.message) from None
    except OSError as exc:
        raise LedgerError(f"Cannot {action}: {exc.strerror or exc}.", hint=hint) from None


def move_aside(state_dir: Path, path: Path, name: str) -> Path:
    """Move ``path``, which the ledger does not record, to ``<state_dir>/unrecorded/<name>-<UTC time>``
    (never deleted); returns where it went."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = safe_paths.plain_dir(state_dir / UNRECORDED_DIR, "The unrecorded folder") / f"{name}-{stamp}"
    os.rename(path, aside)
    return aside


def contract_env(config: Config, plan: Plan) -> dict[str, str]:
    env = {
        "KT_EPOCHS": str(plan.epochs),
        "KT_INITIAL_EPOCH": str(plan.initial_epoch),
        "KT_THRESHOLD": repr(config.threshold),
        "KT_METRIC": config.metric,
        "KT_ATTEMPT": str(plan.attempt),
        "KT_ADAPT": config.adapt,
    }
    for name, value in config.hyperparameters.items():
        env[f"KT_HP_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def train_request(config: Config, ws: Workspace, plan: Plan, params: dict[str, Any], out_dir: Path,
                  on_line: Callable[[str], None] | None, *, resume_path: Path | None,
                  budget: time_budget.Budget, **resources: Any) -> TrainRequest:
    """What the backend runs for one attempt of the chain or one trial of a round: the training contract's
    variables (with a search trial's values), this run's time budget, and the configuration's limits.
    ``resources``: the data cache's folder, and a parallel trial's cores, memory watch and cancel event."""
    return TrainRequest(code_dir=ws.code_dir, command=ws.command, output_dir=out_dir,
                        env={**contract_env(config, plan), **search.hp_env(params)},
                        timeout=config.timeout, budget=budget, resume_from=resume_path, on_line=on_line,
                        memory_limit=config.memory_limit, cpus=config.cpus, gpus=config.gpus,
                        adapter_dir=adapter.folder() if config.adapt != "none" else None,
                        network=config.network, **resources)


def run_attempt(config: Config, repo_root: Path, backend: Backend, *, attempt: int | None = None,
                epochs: int | None = None, chain_info: dict[str, Any] | None = None,
                run_info: dict[str, Any] | None = None, say: Say = print,
                on_line: Callable[[str], None] | None = echo_line) -> AttemptReport:
    """Train one attempt (or the next run of an unfinished one), record it, and decide what comes next."""
    ws = workspace(config, repo_root)
    ledger = ledger_mod.load(ws.state_dir)
    number = _attempt_number(ledger, attempt, config, say)
    continuing = slices.continued(ledger, number)  # an unfinished attempt: this run carries it on
    retry = any(a.attempt == number and a.outcome == FAILED for a in ledger.attempts)
    ledger.attempts = [a for a in ledger.attempts if a.attempt < number]  # a failed retry is replaced
    job, planned = _plan_run(config, ledger, number, continuing, epochs)
    plan, resume_path = _resume_path(ws, planned)
    sub = slices.folder(continuing) if continuing is not None else None
    out_dir = _fresh_output_dir(ws, number, replace=retry, sub=sub)
    ledger.chain = {**ledger.chain, "threshold": config.threshold, "metric": config.metric,
                    **(chain_info or {})}
    budget = time_budget.budget(config, os.environ)
    say(_start_line(config, plan, job, continuing, backend.name, budget))
    run = _new_record(config, plan, backend.name, _relative(ws, resume_path), run_info, job)
    params = job.params if job else (continuing.trial_params if continuing is not None else {})
    error: KeeptrainingError | None = None
    result: TrainResult | None = None
    stopped: str | None = None  # why this run ended before the attempt's epochs (slices.py)
    log = LogFile.create(out_dir)
    network.warn_if_not_contained(config.network, backend.name)
    cache = data_cache.open_session(config, ws.state_dir, say=say)
    request = train_request(config, ws, plan, params, out_dir, log.sink(on_line), resume_path=resume_path,
                            budget=budget, cache_dir=cache.data_dir if cache else None)
    started = time.monotonic()
    try:
        result = _train(backend, request, cache)
        run.duration_s = round(result.duration, 3)
        stopped = _fill_from_result(run, result, out_dir, config, plan, say, ledger.last)
        slices.check(run, stopped, plan, continuing, config)
    except KeeptrainingError as exc:  # training, metric, image build, engine: the attempt failed
        error = exc
        run.outcome, run.error = FAILED, _one_line(exc.message)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM (runner cancellation): record it, keep what exists
        stopped, run.error = slices.INTERRUPTED, INTERRUPTED
        run.duration_s = round(time.monotonic() - started, 3)
        if slices.salvage(run, out_dir, "", config, plan) or continuing is not None:
            run.outcome, run.error = SLICED, None  # the next run goes on from the last saved epoch
        raise
    except Exception as exc:  # a bug: recorded as a failure like any other, never as an interruption
        error = InternalError.from_exception(exc)
        run.outcome, run.error = FAILED, error.message
    finally:
        log.close()
        record = slices.merge(continuing, run, stopped, sub)
        ledger.attempts.append(record)
        ledger_mod.save(ws.state_dir, ledger)
    decision = strategy.decide(config, ledger)
    say(_attempt_line(record, config))
    return AttemptReport(record, decision, ledger, error, _log_tail(result, error))


def _train(backend: Backend, request: TrainRequest, cache: data_cache.Session | None) -> TrainResult:
    """The backend's training; the data cache keeps the downloads unless the training was cut short."""
    result: TrainResult | None = None
    try:
        result = backend.run(request)
        return result
    finally:  # whatever the metric says
        if cache is not None:
            cache.close(complete=result is not None and not result.timed_out)


def _plan_run(config: Config, ledger: Ledger, number: int, continuing: Attempt | None,
              epochs: int | None) -> tuple[search.TrialRun | None, Plan]:
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
        gha.warn(f"Attempt {record.attempt} is unfinished and trains on to its {record.epochs} epochs; "
                 f"the epochs given for this run ({epochs}) are not used.", title="Attempt continued")
    if config.strategy == search.SEARCH:  # the trial's values come from the ledger: check them first
        search.validated_trials(Ledger(attempts=[*ledger.attempts, record]), config.search_settings())
    return slices.plan(record)


def _start_line(config: Config, plan: Plan, job: search.TrialRun | None, continuing: Attempt | None,
                backend: str, budget: time_budget.Budget) -> str:
    if continuing is not None:
        what = f" run {slices.run_number(continuing)}" + \
            (f" of trial {continuing.trial}" if continuing.trial is not None else "") + ":"
        resumed = " from its previous run's checkpoint" if plan.resume_from else " from scratch"
    else:
        what = f" {job.describe()}:" if job else ""
        resumed = f" from attempt {plan.resume_from.attempt}'s checkpoint" if plan.resume_from \
            else " from scratch"
    return (f"\n== Attempt {plan.attempt}/{config.max_attempts}:{what} epochs {plan.initial_epoch} -> "
            f"{plan.epochs}{resumed} on {backend}; training time: {budget.describe()} ==")


def _new_record(config: Config, plan: Plan, backend: str, resumed_from: str | None,
                run_info: dict[str, Any] | None, job: search.TrialRun | None = None) -> Attempt:
    """The attempt's record (a search trial's, with ``job``), failed until the training proves otherwise."""
    record = Attempt(attempt=plan.attempt, epochs=plan.epochs, initial_epoch=plan.initial_epoch,
                     resumed_from=resumed_from, outcome=FAILED, started_at=_now(),
                     params={"backend": backend, "resume": config.resume,
                             "hyperparameters": dict(config.hyperparameters), "network": config.network,
                             "cache": config.cache},
                     run=dict(run_info or {}))
    if job:
        record.trial, record.rung, record.trial_params = job.trial, job.rung, dict(job.params)
    return record


def _one_line(text: str, limit: int = 2000) -> str:
    return " ".join(text.split())[:limit]


def _log_tail(result: TrainResult | None, error: KeeptrainingError | None) -> str:
    if result is not None:
        return result.log_tail
    return str(getattr(error, "log_tail", "") or "")


def record_failure(config: Config, repo_root: Path, error: KeeptrainingError, *,
                   attempt: int | None = None, chain_info: dict[str, Any] | None = None,
                   run_info: dict[str, Any] | None = None, backend: str = "") -> AttemptReport:
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
    ledger.chain = {**ledger.chain, "threshold": config.threshold, "metric": config.metric,
                    **(chain_info or {})}
    record = _new_record(config, plan, backend or str(config.backend or "docker"), None, run_info)
    record.error = _one_line(error.message)
    record = slices.merge(continuing, record, None, None)
    ledger.attempts.append(record)
    ledger_mod.save(ws.state_dir, ledger)
    return AttemptReport(record, strategy.decide(config, ledger), ledger, error,
                         str(getattr(error, "log_tail", "") or ""))


def record_unrestored(config: Config, repo_root: Path, error: KeeptrainingError, *, attempt: int | None,
                      epochs: int | None = None, chain_info: dict[str, Any] | None = None,
                   run_info: dict[str, Any] | None = None, say: Say = print) -> AttemptReport:
    """An attempt that failed before it could train (the state to resume was not restored):
    recorded as failed in a new ledger. A ledger that arrived but is not this chain's is moved
    aside first (``previous/``), never appended to."""
    ws = workspace(config, repo_root)
    if ledger_mod.ledger_path(ws.state_dir).exists():
        archive_previous(ws.state_dir, say)
    ledger = Ledger(chain={"threshold": config.threshold, "metric": config.metric, **(chain_info or {})})
    record = Attempt(attempt=attempt or 1, epochs=epochs or config.epochs, initial_epoch=0, resumed_from=None,
                     outcome=FAILED, started_at=_now(), error=f"{error.message} {error.hint}".strip(),
                     params={"backend": config.backend or "docker", "resume": config.resume,
                             "hyperparameters": dict(config.hyperparameters)},
                     run=dict(run_info or {}))
    ledger.attempts.append(record)
    ledger_mod.save(ws.state_dir, ledger)
    say(_attempt_line(record, config))
    return AttemptReport(record, strategy.decide(config, ledger), ledger, error)


def _fill_from_result(record: Attempt, result: TrainResult, out_dir: Path, config: Config,
                      plan: Plan, say: Say, previous: Attempt | None = None) -> str | None:
    """Turn the process result and its metrics into the record; raise on failure.

    Returns why the run stopped before the attempt's epochs (``slices.DEADLINE``,
    ``slices.TIMEOUT``), None when it trained to its end.
    """
    if result.image:  # the training image (docker), which the model card names
        record.params["image"] = result.image
    if result.timed_out and slices.salvage(record, out_dir, result.output, config, plan):
        gha.warn(f"Attempt {record.attempt} reached this run's timeout of {config.timeout:g} s and was "
                 f"stopped after epoch {record.epochs_reached}: the epoch it was training is lost, the "
                 "attempt goes on in the next run from the last one it saved.", title="Training timed out")
        return slices.TIMEOUT
    if result.timed_out:
        raise TrainingTimeout(f"Attempt {record.attempt} ran past the timeout of {config.timeout:g} s "
                              "and was stopped.", hint="Raise `timeout`, or train fewer epochs per attempt.",
                              log_tail=result.log_tail)
    if result.exit_code != 0:
        detail = f" ({result.detail})" if result.detail else ""
        offline = network.explain(result.offline, f"{result.output}\n{result.errors}")
        raise TrainingError(f"The training command exited with code {result.exit_code}{detail}."
                            f"{offline.message if offline else ''}",
                            hint=offline.hint if offline else "The last lines of its log are shown above.",
                            log_tail=result.log_tail)
    found = metrics_mod.read(out_dir, result.output, config.metric)
    trained = contract_check.assess(found, result.output, plan, config.threshold)
    if not trained.resumed:
        record.resumed_from = None
    record.initial_epoch = trained.initial_epoch
    metrics_mod.check_epochs(found, asked=plan.epochs, initial=record.initial_epoch)
    record.metric = found.value
    record.metric_source = found.label
    record.metric_line = found.line
    record.history = found.history
    record.epochs_reached = trained.epochs_reached
    record.epochs_trained = trained.epochs_trained
    record.epochs_source = trained.epochs_source
    record.epochs_ignored = trained.ignored
    record.adapter = found.adapter
    record.train_s = round(found.train_s, 3) if found.train_s is not None else None
    record.checkpoint = found.checkpoint
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


def _relative(ws: Workspace, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(ws.state_dir))
    except ValueError:
        return str(path)


def _attempt_line(record: Attempt, config: Config) -> str:
    if record.outcome == FAILED:
        return f"Attempt {record.attempt} failed after {record.duration_s:.1f} s: {record.error}"
    if record.outcome == SLICED:
        runs = wording.plural(len(record.slices), "run")
        return (f"Attempt {record.attempt}: at epoch {record.epochs_reached} of {record.epochs} when "
                f"{slices.why(record)}; the next run continues it ({runs} so far, "
                f"{record.epochs_trained} epochs trained, {record.duration_s:.1f} s)")
    sign = "≥" if record.outcome == REACHED else "<"
    reached = "an unknown number of" if record.epochs_reached is None else record.epochs_reached
    return (f"Attempt {record.attempt}: {config.metric} {wording.fmt_metric(record.metric or 0.0)} {sign} "
            f"{wording.fmt_threshold(config.threshold)} "
            f"after {reached} epochs ({record.epochs_trained} trained, "
            f"{record.duration_s:.1f} s)")


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
                gha.warn(f"Attempt {record.attempt}'s checkpoint was not pruned: {exc}",
                         title="Checkpoint kept")
    return removed


def archive_previous(state_dir: Path, say: Say) -> None:
    """Move an earlier chain's ledger and attempts aside, so a new chain loses nothing."""
    if not os.path.lexists(ledger_mod.ledger_path(state_dir)):
        return
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = state_dir / "previous" / stamp
    try:
        safe_paths.plain_dir(state_dir / "previous", "The previous-chains folder")
        target.mkdir()
        for item in state_dir.iterdir():
            if item.name in (ledger_mod.LEDGER_FILE, ledger_mod.CHART_FILE, UNRECORDED_DIR) \
                    or item.name.startswith("attempt-"):
                os.rename(item, target / item.name)
    except PathRefused as exc:
        raise LedgerError(exc.message) from None
    except OSError as exc:
        raise LedgerError(f"Cannot move the previous chain aside into {target}: {exc.strerror or exc}.",
                          hint="Make the state folder writable, or move its contents away yourself."
                          ) from None
    say(f"The previous chain was moved to {target}.")


def run_chain(config: Config, repo_root: Path, backend: Backend, *, say: Say = print,
              on_line: Callable[[str], None] | None = echo_line,
              chain_info: dict[str, Any] | None = None) -> AttemptReport:
    """Attempts until the threshold is reached, the budget is spent, or one fails."""
    while True:
        report = run_attempt(config, repo_root, backend, say=say, on_line=on_line, chain_info=chain_info)
        if report.decision.kind != strategy.CONTINUE:
            return report
