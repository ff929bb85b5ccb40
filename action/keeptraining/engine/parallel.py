"""``parallel: N``: a search trains N trials at once.

On GitHub, a *round* is the next N jobs of the search (``search.next_runs``: the promotions first,
then new trials asked from one study), planned from one ledger, trained side by side, and merged back
into the ledger in the plan's order (rounds.py), which then decides on the round as a whole. The plan
is a function of the ledger and the configuration alone (the sampler is seeded), so whoever plans the
round from the same ledger gets the same jobs: the trial jobs of a GitHub round each plan it and
train their own slot, and the merge job plans it again to check what they send back.

Slot k of a round trains attempt (the ledger's last attempt + k) into ``<folder>/attempt-NNN/`` and
writes its record beside it as a one-record ledger (rounds.write_result); a trial never writes the
chain's ledger. Where the trials run:

* on this machine (``keeptraining run --parallel N``): N slots, one training process (local backend)
  or container (docker) each, with its own output folder, its share of the cores (``cpus``: a
  container's CPUs; a local trial's cores, by default an even share) and ``memory_limit`` (a
  container's memory; a local trial's resident memory). By default there are no rounds: each slot
  starts the next job as soon as it is free (``run_slots``, ASHA's asynchronous form: the planner
  takes the jobs still training as pending). ``--in-rounds`` trains round after round
  (``run_round``), exactly as a GitHub chain does;
* on GitHub: one matrix job per trial (``keeptraining trial``, jobs/rounds.py), then one merge job.

``parallel: 1`` never comes here: it is the chain of chain.py, one trial per attempt.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptraining.backends.base import echo_line
from keeptraining.backends.select import Backend
from keeptraining.config.settings import Config
from keeptraining.engine import chain, cost, rounds, step, strategy
from keeptraining.engine.plan import Plan
from keeptraining.engine.search import TrialRun
from keeptraining.errors import KeeptrainingError, LedgerError
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.folder import Workspace, empty_attempt_dir, fresh_scratch, relative
from keeptraining.state.ledger import FAILED, REACHED, Attempt, Ledger

ROUND_DIR = "round"  # <state_dir>/round/slot-K/: a local round's trials before the merge
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}

Say = Callable[[str], None]


# --------------------------------------------------------------------------- resources


def memory_bytes(limit: str | None) -> int | None:
    """``4g`` -> bytes (the schema has checked the form)."""
    if not limit:
        return None
    unit = _UNITS.get(limit[-1], 1)
    return int(limit.rstrip("kmg")) * unit


def usable_cores() -> list[int]:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_shares(config: Config, slots: int, cores: list[int] | None = None) -> list[tuple[int, ...]]:
    """The cores each of ``slots`` local trials is pinned to: ``cpus`` cores each (rounded up), else
    an even share of ``cores`` (default: the cores this process may use); slots share cores
    round-robin when there are more trials than cores."""
    if cores is None:
        cores = usable_cores()
    width = math.ceil(config.cpus) if config.cpus else len(cores) // max(slots, 1)
    width = min(max(width, 1), len(cores))
    return [tuple(cores[(k * width + i) % len(cores)] for i in range(width)) for k in range(slots)]


# --------------------------------------------------------------------------- one trial


def _slot_record(
    config: Config,
    ws: Workspace,
    backend: Backend,
    job: TrialRun,
    plan: Plan,
    resume_path: Path | None,
    run_info: dict[str, Any] | None,
    *,
    round_no: int,
    slot: int,
    runner: dict[str, Any] | None,
) -> Attempt:
    """The trial's record (its round, slot and runner), failed until the training proves otherwise."""
    record = step.new_record(
        config, plan, backend.name, resumed_from=relative(ws, resume_path), run_info=run_info, job=job
    )
    record.round, record.runner = round_no, {"slot": slot, **(runner or {})}
    return record


def _written_to(folder: Path, config: Config, run_info: dict[str, Any] | None, started: float) -> step.Keep:
    """Keep a trial's record as the one-record ledger in ``folder``, for the merge, with its runner
    minutes (from the job's start when known, else the trial's own ``started``; cost.py)."""

    def keep(trained: Attempt, _stopped: str | None) -> Attempt:
        cost.account(trained, trained, run_info, os.environ, started, config.runner_kind)
        rounds.write_result(folder, trained)
        return trained

    return keep


def train_slot(
    config: Config,
    ws: Workspace,
    backend: Backend,
    ledger: Ledger,
    job: TrialRun,
    slot: int,
    folder: Path,
    *,
    round_no: int,
    run_info: dict[str, Any] | None = None,
    runner: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    cancel: threading.Event | None = None,
    number: int | None = None,
) -> tuple[Attempt, KeeptrainingError | None, str]:
    """Train slot ``slot`` of the round (``job``, planned from ``ledger``) into ``folder``.

    The same training step as ``chain.run_attempt`` (step.train: the start line with the time budget,
    the network warning, the contract, the record on every way out), without the ledger: the record
    goes to ``folder`` as a one-record ledger (whatever ends the training, Ctrl-C included), for the
    merge. No data cache (its session is one chain's at a time); a trial that stops short failed (it is
    not continued across runs). Returns the record, the error that failed it (None when it trained)
    and the end of its log. ``number``: its attempt number (default: the round's, from ``slot``).
    """
    started = time.time()  # the trial's own start: its minutes count from here when the job's is unknown
    number = number or rounds.first_attempt(ledger) + slot - 1
    folder = folder.absolute()  # the training runs in the code folder: its output path must not be relative
    plan, resume_path = step.resume_path(ws, job.plan(number))
    out_dir = empty_attempt_dir(folder, number)
    record = _slot_record(
        config, ws, backend, job, plan, resume_path, run_info, round_no=round_no, slot=slot, runner=runner
    )
    title = f"== Round {round_no}, slot {slot}: attempt {number}, {job.describe()}:"
    resumed = f" from attempt {plan.resume_from.attempt}" if plan.resume_from else ""
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
            params=job.params,
            previous=ledger.last,
            sliceable=False,
            cache=False,
            resources={**(resources or {}), "cancel": cancel},
            say=say,
            on_line=on_line,
        ),
        _written_to(folder, config, run_info, started),
    )
    say(step.attempt_line(outcome.record, config))
    return outcome.record, outcome.error, outcome.log_tail


def local_runner(slot: int, cores: tuple[int, ...] | None) -> dict[str, Any]:
    """Which machine (and cores) trained a local trial, for the ledger."""
    info: dict[str, Any] = {"runner": platform.node()[:100] or "local"}
    if cores:
        info["cores"] = ",".join(str(c) for c in cores)
    return info


# --------------------------------------------------------------------------- a local round


def run_round(
    config: Config,
    repo_root: Path,
    backend: Backend,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    chain_info: dict[str, Any] | None = None,
) -> chain.AttemptReport:
    """One round on this machine: its trials side by side (one process or container each), then
    the merge and the decision. Ctrl-C stops every trial; what they recorded is merged first."""
    ws = chain.workspace(config, repo_root)
    ledger = ledger_mod.load(ws.state_dir)
    jobs = rounds.plan_round(config, ledger)
    if not jobs:
        raise LedgerError(
            "This round has no trial to train: the search's budget or grid is used up.",
            hint="Start a new chain (keeptraining run without --continue).",
        )
    round_no = rounds.round_number(ledger)
    scratch = _fresh_scratch(ws.state_dir, say)
    prepare = getattr(backend, "prepare", None)
    if callable(prepare):  # build (or find) the image once, before the trials start
        prepare()
    cores = core_shares(config, len(jobs)) if backend.name == "local" else [None] * len(jobs)
    rss = memory_bytes(config.memory_limit) if backend.name == "local" else None
    say(f"\n== Round {round_no}: {len(jobs)} trials at once on {backend.name} ==")
    say_one = _one_at_a_time(say)
    cancel = threading.Event()
    outcomes: dict[int, tuple[Attempt, KeeptrainingError | None, str]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="trial") as pool:
        futures = {}
        for slot, job in enumerate(jobs, start=1):
            resources = {"cpu_set": cores[slot - 1], "rss_limit": rss} if backend.name == "local" else {}
            futures[slot] = pool.submit(
                train_slot,
                config,
                ws,
                backend,
                ledger,
                job,
                slot,
                scratch / f"slot-{slot}",
                round_no=round_no,
                runner=local_runner(slot, cores[slot - 1]),
                resources=resources,
                say=say_one,
                on_line=_prefixed(on_line, slot),
                cancel=cancel,
            )
        try:
            concurrent.futures.wait(futures.values())
        except KeyboardInterrupt:
            cancel.set()
            concurrent.futures.wait(futures.values())
            _merge_interrupted(config, ws, ledger, jobs, scratch, round_no, chain_info)
            raise
        for slot, future in futures.items():
            outcomes[slot] = future.result()
    return _merge_local(config, ws, ledger, jobs, scratch, round_no, chain_info, outcomes, say)


def _one_at_a_time(say: Say) -> Say:
    """``say`` for the trials' threads: one whole line at a time."""
    lock = threading.Lock()

    def line(text: str) -> None:
        with lock:
            say(text)

    return line


def _prefixed(on_line: Callable[[str], None] | None, slot: int) -> Callable[[str], None] | None:
    """Each trial's log lines, marked with its slot (the trials of a round print at the same time)."""
    if on_line is None:
        return None
    sink = on_line

    def line(text: str) -> None:
        sink(f"[slot {slot}] {text}")

    return line


def _fresh_scratch(state_dir: Path, say: Say) -> Path:
    """An empty ``<state_dir>/round``; one left by an interrupted run is moved aside, never deleted."""
    return fresh_scratch(state_dir, ROUND_DIR, say)


def _merge_local(
    config: Config,
    ws: Workspace,
    ledger: Ledger,
    jobs: list[TrialRun],
    scratch: Path,
    round_no: int,
    chain_info: dict[str, Any] | None,
    outcomes: dict[int, tuple[Attempt, KeeptrainingError | None, str]],
    say: Say,
) -> chain.AttemptReport:
    folders = {slot: scratch / f"slot-{slot}" for slot in range(1, len(jobs) + 1)}
    ledger.chain = {
        **ledger.chain,
        "threshold": config.threshold,
        "metric": config.metric,
        **(chain_info or {}),
    }
    records = rounds.merge_round(config, ws.state_dir, ledger, jobs, folders, round_no=round_no)
    shutil.rmtree(scratch, ignore_errors=True)
    decision = rounds.decide(config, ledger, records)
    errors = [(outcomes[slot][1], outcomes[slot][2]) for slot in outcomes if outcomes[slot][1] is not None]
    say(rounds.round_line(records, config))
    error, tail = errors[0] if errors and decision.kind == strategy.CHAIN_FAILED else (None, "")
    return chain.AttemptReport(rounds.representative(records), decision, ledger, error, tail)


def _merge_interrupted(
    config: Config,
    ws: Workspace,
    ledger: Ledger,
    jobs: list[TrialRun],
    scratch: Path,
    round_no: int,
    chain_info: dict[str, Any] | None,
) -> None:
    """Ctrl-C: record the round as far as it got (each trial recorded itself); the interrupt goes on."""
    try:
        _merge_local(config, ws, ledger, jobs, scratch, round_no, chain_info, {}, lambda _line: None)
    except KeeptrainingError:  # the interrupt is what to report; the round folder stays for a look
        return


def run_chain(
    config: Config,
    repo_root: Path,
    backend: Backend,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    chain_info: dict[str, Any] | None = None,
    in_rounds: bool = False,
) -> chain.AttemptReport:
    """The chain on this machine: ``config.parallel`` slots, each starting the next job of the search
    as soon as it is free (``run_slots``); with ``in_rounds``, round after round as a GitHub chain
    trains them (``run_round``). It ends when the threshold is reached, the budget is spent, or the
    trials fail (a whole round, or as many trials in a row as there are slots)."""
    if not in_rounds:
        return run_slots(config, repo_root, backend, say=say, on_line=on_line, chain_info=chain_info)
    while True:
        report = run_round(config, repo_root, backend, say=say, on_line=on_line, chain_info=chain_info)
        if report.decision.kind != strategy.CONTINUE:
            return report


# --------------------------------------------------------------------------- a local chain without rounds


@dataclass(eq=False)  # a job is itself: compared by identity
class _Job:
    """A planned job in a slot: attempt ``number``, merged in the order of the numbers."""

    number: int
    job: TrialRun
    slot: int
    round_no: int
    folder: Path
    future: concurrent.futures.Future[tuple[Attempt, KeeptrainingError | None, str]]
    slot_freed: bool = False

    def result(self) -> tuple[Attempt | None, KeeptrainingError | None, str]:
        """What the slot's thread returned; (None, None, "") for a trial that was stopped."""
        try:
            return self.future.result()
        except KeyboardInterrupt:
            return None, None, ""


def run_slots(
    config: Config,
    repo_root: Path,
    backend: Backend,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    chain_info: dict[str, Any] | None = None,
) -> chain.AttemptReport:
    """The chain without rounds (asynchronous successive halving, as ASHA is meant to run): whenever a
    slot is free, the search plans the next job from the ledger and the jobs still training
    (``rounds.plan_round(..., pending)``), and the slot trains it at once; no slot waits for a round's
    slowest trial. Jobs are numbered as they are planned and merged in that order, each as soon as it
    and every job before it have ended (a result that came early waits, counted as pending); the ledger
    is saved after each. When a trial reaches the threshold (or the trials fail), the trials still
    training are stopped and recorded as stopped. The ledger's ``round`` groups the jobs by ``parallel``
    in the order they were planned, for the summary."""
    ws = chain.workspace(config, repo_root)
    ledger = ledger_mod.load(ws.state_dir)
    scratch = _fresh_scratch(ws.state_dir, say)
    prepare = getattr(backend, "prepare", None)
    if callable(prepare):  # build (or find) the image once, before the trials start
        prepare()
    ledger.chain = {
        **ledger.chain,
        "threshold": config.threshold,
        "metric": config.metric,
        **(chain_info or {}),
    }
    say(
        f"\n== {config.parallel} trials at once on {backend.name}: each slot starts the next job as soon "
        "as it is free =="
    )
    cores = len(usable_cores())
    if backend.name == "local" and config.parallel > cores:
        say(
            f"Note: {config.parallel} trials share {cores} cores here, so each trains slower; more trials "
            "than cores rarely reach the threshold sooner (README, Parallel trials)."
        )
    workers = config.parallel
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trial") as pool:
        slots = _Slots(config, ws, backend, ledger, scratch, pool, _one_at_a_time(say), on_line)
        try:
            while slots.start_jobs():
                slots.wait()
                slots.merge_ended()
        except KeyboardInterrupt:
            slots.interrupt()
            raise
    shutil.rmtree(scratch, ignore_errors=True)
    ending = slots.ending
    if ending is None:  # the planner had nothing more and every job has been merged
        if ledger.last is None:
            raise LedgerError(
                "The chain has no trial to train: the search's budget or grid is used up.",
                hint="Start a new chain (keeptraining run without --continue).",
            )
        ending = chain.AttemptReport(ledger.last, rounds.verdict(config, ledger), ledger)
    say(f"\n{ending.decision.reason}")
    return ending


class _Slots:
    """``config.parallel`` slots of one chain: the jobs training (in the order they were planned), the
    free slots, and how the chain ends."""

    def __init__(
        self,
        config: Config,
        ws: Workspace,
        backend: Backend,
        ledger: Ledger,
        scratch: Path,
        pool: concurrent.futures.ThreadPoolExecutor,
        say: Say,
        on_line: Callable[[str], None] | None,
    ) -> None:
        self.config, self.ws, self.backend, self.ledger, self.scratch = config, ws, backend, ledger, scratch
        self.pool, self.say, self.on_line = pool, say, on_line
        width = config.parallel
        self.cores = core_shares(config, width) if backend.name == "local" else [None] * width
        self.rss = memory_bytes(config.memory_limit) if backend.name == "local" else None
        self.first_round, self.first_number = rounds.round_number(ledger), rounds.first_attempt(ledger)
        self.free = list(range(1, width + 1))
        self.running: list[_Job] = []
        self.cancel = threading.Event()
        self.stopping = ""  # why the trials still training were stopped
        self.reached_early = False  # a job reached the threshold (merged or not yet)
        self.errors: list[tuple[KeeptrainingError, str]] = []
        self.ending: chain.AttemptReport | None = None

    def start_jobs(self) -> bool:
        """Plan a job for each free slot and start it; False when nothing trains any more."""
        if self.ending is None and not self.stopping:
            pending = [r.job for r in self.running]
            for job in rounds.plan_round(self.config, self.ledger, pending, slots=len(self.free)):
                self._start(job)
        return bool(self.running)

    def _start(self, job: TrialRun) -> None:
        number = rounds.first_attempt(self.ledger) + len(self.running)
        slot = self.free.pop(0)
        round_no = self.first_round + (number - self.first_number) // self.config.parallel
        cores = self.cores[slot - 1]
        resources = {"cpu_set": cores, "rss_limit": self.rss} if self.backend.name == "local" else {}
        folder = self.scratch / f"attempt-{number:03d}-slot-{slot}"
        future = self.pool.submit(
            train_slot,
            self.config,
            self.ws,
            self.backend,
            self.ledger,
            job,
            slot,
            folder,
            round_no=round_no,
            runner=local_runner(slot, cores),
            resources=resources,
            say=self.say,
            on_line=_prefixed(self.on_line, slot),
            cancel=self.cancel,
            number=number,
        )
        self.running.append(_Job(number, job, slot, round_no, folder, future))

    def wait(self) -> None:
        """Until a job ends; one that reached the threshold stops the others at once, even when an
        earlier job is still to be merged."""
        training = [r.future for r in self.running if not r.slot_freed]  # not those ended before
        concurrent.futures.wait(training, return_when=concurrent.futures.FIRST_COMPLETED)
        if not self.stopping:
            self.stopping = _early_reach(self.running, self.config)
            if self.stopping:
                self.reached_early = True
                self.cancel.set()

    def merge_ended(self) -> None:
        """Free the slots of the jobs that ended; merge those at the head of the order, deciding after
        each."""
        ended = [job for job in self.running if job.future.done()]  # one view: a job may end meanwhile
        for job in ended:
            if not job.slot_freed:
                job.slot_freed = True
                self.free.append(job.slot)
        while self.running and self.running[0] in ended:
            done = self.running.pop(0)
            _record, error, tail = done.result()
            merged = _merge_job(self.config, self.ws, self.ledger, done, self.stopping)
            if error is not None and merged.outcome == FAILED:
                self.errors.append((error, tail))
            self.say(
                f"  merged attempt {merged.attempt} (slot {done.slot}, trial {merged.trial} rung "
                f"{merged.rung}): {rounds.trial_result(merged, self.config)}"
            )
            if self.ending is None and merged.error != _stopped(self.stopping):
                self._decide(merged)

    def _decide(self, merged: Attempt) -> None:
        decision = rounds.decide_trial(self.config, self.ledger, merged)
        if decision.kind == strategy.CHAIN_FAILED and self.reached_early:
            return  # a later job reached the threshold: its merge ends the chain
        ends = decision.kind in (strategy.CHAIN_REACHED, strategy.CHAIN_FAILED)
        if not ends and (decision.kind == strategy.CONTINUE or self.running):
            return  # the budget is spent only when the jobs still training have been merged
        failed = self.errors and decision.kind == strategy.CHAIN_FAILED
        error, tail = self.errors[0] if failed else (None, "")
        self.ending = chain.AttemptReport(merged, decision, self.ledger, error, tail)
        if self.running and not self.stopping:
            self.stopping = f"the chain ended at attempt {merged.attempt}"
            self.cancel.set()

    def interrupt(self) -> None:
        """Ctrl-C: stop every trial and merge, in order, what each recorded."""
        self.cancel.set()
        concurrent.futures.wait([r.future for r in self.running])
        for done in self.running:
            try:
                _merge_job(self.config, self.ws, self.ledger, done, "")
            except KeeptrainingError:  # the interrupt is what to report; the folder stays for a look
                return


def _early_reach(running: list[_Job], config: Config) -> str:
    """Why to stop the other trials, when a trial that ended (merged or not yet) reached the threshold."""
    for r in running:
        if r.future.done():
            record, _error, _tail = r.result()
            if record is not None and record.outcome == REACHED:
                return f"attempt {r.number} reached the threshold ({config.metric} {record.metric})"
    return ""


def _stopped(why: str) -> str:
    return f"Stopped while it trained: {why}."


def _merge_job(config: Config, ws: Workspace, ledger: Ledger, done: _Job, stopped_because: str) -> Attempt:
    """Merge the job's trial into the ledger (saved); a trial stopped by the chain's end says so."""
    record = rounds.merge_one(
        config,
        ws.state_dir,
        ledger,
        done.job,
        done.folder,
        number=done.number,
        slot=done.slot,
        round_no=done.round_no,
        save=False,
    )
    if stopped_because and record.outcome == FAILED and record.error == step.INTERRUPTED:
        record.error = _stopped(stopped_because)
    ledger_mod.save(ws.state_dir, ledger)
    return record
