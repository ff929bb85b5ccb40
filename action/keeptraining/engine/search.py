"""``strategy: search``: each attempt trains one run of one trial of a hyperparameter search.

A *trial* is one point of the space in ``search.space``; its values reach the training
script as ``KT_HP_<NAME>``. Its first run trains ``epochs`` from scratch (rung 0). A
*promotion* resumes the trial's own checkpoint and trains ``epoch_step`` more (rung 1, 2 …),
through the same contract as the epochs chain (``KT_RESUME_FROM``, ``KT_INITIAL_EPOCH``).

Which run comes next is successive halving in its asynchronous form (ASHA, Li et al.,
"A System for Massively Parallel Hyperparameter Tuning", 2020), decided from the results in
the ledger: from the highest rung down, a trial whose result is among the best 1/η of all
results at its rung (η = ``reduction_factor``) and that has not been promoted yet is
promoted; otherwise a new trial starts, its values proposed by an Optuna sampler (TPE,
random, or a grid walked in a seeded order) through ask-and-tell. Poor trials are never
continued, and nothing is promoted before a rung has η results to compare.

Where the study lives: in the ledger, nowhere else. Each attempt (a separate process, one
GitHub run) rebuilds an in-memory Optuna study from the ledger's validated trial records
(``optuna.trial.create_trial`` + ``study.add_trial``) and asks it for the next values. We
chose this over carrying Optuna's ``JournalStorage`` file in the state artifact because:

- the state artifact is untrusted input. A journal carries the *distributions* as well as
  the observations, so a forged one could widen the space (add a categorical choice, move a
  bound) and have a value of its choosing proposed and passed to the training script. Here
  the distributions always come from the configuration (the commit's own file); the
  artifact only supplies past observations, and each one is checked to lie inside the space
  before Optuna sees it (``validated_trials``). Nothing from the artifact is executed.
- one source of truth: a journal next to the ledger could disagree with it (stale, edited,
  or from another chain), and validating it would mean validating Optuna's private op-log
  format, which may change between Optuna versions.
- nothing else needs carrying: TPE and the random sampler are functions of their seed and
  the trials; the seed is ``search.seed`` + the number of trials so far, so each attempt
  proposes something new and a rerun of the same attempt proposes the same values. The grid
  is walked in a fixed, seeded order, skipping the points already tried.

For parallel trials (``next_runs(..., k)``), the planner hands out k jobs at once (the
promotions first, then k - p new trials asked from one study), and ``chain.run_attempt``'s
record of each run is all a merge step needs to write back.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from keeptraining.config.search_space import Param, SearchSettings
from keeptraining.config.settings import Config
from keeptraining.contract import env as contract_env
from keeptraining.engine import projection
from keeptraining.engine.plan import CHAIN_FAILED, CHAIN_REACHED, CONTINUE, EXHAUSTED, Decision, Plan
from keeptraining.errors import ConfigError, LedgerError
from keeptraining.output import wording
from keeptraining.state.ledger import FAILED, REACHED, Attempt, Ledger

SEARCH = "search"
MAX_CONSECUTIVE_FAILURES = 3  # a search goes on past a failed trial, not past a broken script
TPE_STARTUP_TRIALS = 5  # random trials before TPE models the results (Optuna's default, 10, is for
#                         longer studies than a chain of a few dozen attempts)


@dataclass
class Trial:
    """A trial as the ledger tells it: its values and its runs, one per rung."""

    number: int
    params: dict[str, Any]
    runs: list[Attempt]

    @property
    def last(self) -> Attempt:
        return self.runs[-1]

    @property
    def rung(self) -> int:
        return len(self.runs) - 1

    @property
    def failed(self) -> bool:
        return self.last.outcome == FAILED

    @property
    def reached(self) -> bool:
        return any(run.outcome == REACHED for run in self.runs)

    @property
    def best(self) -> float | None:
        scores = [run.metric for run in self.runs if run.outcome != FAILED and run.metric is not None]
        return max(scores) if scores else None

    @property
    def epochs(self) -> int:
        """Epochs the trial's model has (its last good run's)."""
        good = [run for run in self.runs if run.outcome != FAILED]
        return (good[-1].epochs_reached or good[-1].epochs) if good else 0

    def curve(self) -> dict[int, float]:
        """Validation metric per epoch over all its runs (the intermediate values Optuna sees)."""
        values: dict[int, float] = {}
        for run in self.runs:
            if run.outcome == FAILED:
                continue
            for i, value in enumerate(run.history):
                values[run.initial_epoch + 1 + i] = float(value)
            if run.metric is not None and run.epochs_reached:
                values.setdefault(run.epochs_reached, run.metric)
        return values


@dataclass(frozen=True)
class TrialRun:
    """One job of the search: a new trial (rung 0) or the promotion of a trial to its next rung."""

    trial: int
    params: dict[str, Any]
    rung: int
    epochs: int  # total epochs the trial's model has after this run
    initial_epoch: int  # epochs in the checkpoint it resumes (0 for a new trial)
    resume_from: Attempt | None  # the trial's last run, whose checkpoint is resumed

    @property
    def epochs_to_train(self) -> int:
        return self.epochs - self.initial_epoch

    def plan(self, attempt: int) -> Plan:
        return Plan(attempt, self.epochs, self.initial_epoch, self.resume_from)

    def describe(self) -> str:
        if self.rung == 0:
            return f"new trial {self.trial} ({values_text(self.params)})"
        return f"trial {self.trial} promoted to rung {self.rung}"


# --------------------------------------------------------------------------- values


def values_text(params: dict[str, Any], limit: int = 200) -> str:
    """``learning_rate=0.0123, optimizer=adam``: floats to 4 significant digits."""
    parts = [f"{name}={format_value(value)}" for name, value in params.items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def hp_env(params: dict[str, Any]) -> dict[str, str]:
    """The trial's values as the training contract's ``KT_HP_<NAME>`` variables."""
    return contract_env.hyperparameters(params)


# --------------------------------------------------------------------------- the ledger, validated


def _bad(record: Attempt, problem: str) -> LedgerError:
    return LedgerError(
        f"Ledger attempt {record.attempt}: {problem}",
        hint="The chain state does not belong to this search. Start a new chain "
        "(a new push, or `keeptraining run` without --continue).",
    )


def validated_trials(ledger: Ledger, settings: SearchSettings) -> list[Trial]:
    """The ledger's attempts grouped into trials, every value checked against the space.

    The ledger comes back from an artifact: a record whose trial number, rung or values do
    not fit this search is an error, never passed on to Optuna or to a training script.
    """
    trials: list[Trial] = []
    names = [p.name for p in settings.space]
    for record in ledger.attempts:
        number, rung, params = record.trial, record.rung, record.trial_params
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise _bad(
                record,
                f"trial = {str(number)[:40]!r} is not a trial number; the chain was not "
                "started by strategy: search.",
            )
        if isinstance(rung, bool) or not isinstance(rung, int) or not isinstance(params, dict):
            raise _bad(record, f"trial {number} has no valid rung and values.")
        _check_results(record)
        if number == len(trials) + 1:
            _check_values(record, params, settings, names)
            if rung != 0:
                raise _bad(record, f"trial {number} starts at rung {rung}, not 0.")
            trials.append(Trial(number, dict(params), [record]))
            continue
        if not 1 <= number <= len(trials):
            raise _bad(record, f"trial {number} does not follow trial {len(trials)}.")
        trial = trials[number - 1]
        if params != trial.params:
            raise _bad(record, f"trial {number}'s values changed between its runs.")
        if trial.failed or rung != trial.rung + 1:
            raise _bad(
                record,
                f"trial {number} cannot run rung {rung} after rung {trial.rung}"
                f"{' (failed)' if trial.failed else ''}.",
            )
        trial.runs.append(record)
    return trials


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1


def _is_count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _check_results(record: Attempt) -> None:
    """What the planner computes with: the metric, its history and the epochs, as numbers."""
    if record.metric is not None and not _is_fraction(record.metric):
        raise _bad(record, f"metric = {str(record.metric)[:40]!r} is not a fraction in [0, 1].")
    if not isinstance(record.history, list) or not all(_is_fraction(v) for v in record.history):
        raise _bad(record, "history is not a list of fractions in [0, 1].")
    if (
        not _is_count(record.initial_epoch)
        or not _is_count(record.epochs)
        or not (record.epochs_reached is None or _is_count(record.epochs_reached))
    ):
        raise _bad(record, "its epochs are not whole numbers.")


def _check_values(
    record: Attempt, params: dict[str, Any], settings: SearchSettings, names: list[str]
) -> None:
    if sorted(map(str, params)) != sorted(names):
        given = ", ".join(sorted(map(str, params)))[:100]
        raise _bad(
            record, f"trial {record.trial} has values for {given}, but the space is {', '.join(names)}."
        )
    for name in names:
        param = settings.param(name)
        if not param.contains(params[name]):
            raise _bad(
                record,
                f"trial {record.trial} has {name} = {str(params[name])[:60]!r}, outside the "
                f"space ({param.describe()[:100]}).",
            )


# --------------------------------------------------------------------------- successive halving


def rung_results(trials: Iterable[Trial]) -> dict[int, list[tuple[float, int]]]:
    """rung -> [(result, trial number)] of every run that reported a metric at that rung."""
    results: dict[int, list[tuple[float, int]]] = {}
    for trial in trials:
        for rung, run in enumerate(trial.runs):
            if run.outcome != FAILED and run.metric is not None:
                results.setdefault(rung, []).append((run.metric, trial.number))
    return results


def ranked(results: list[tuple[float, int]]) -> list[int]:
    """Trial numbers, best result first (an earlier trial first on a tie)."""
    return [number for _value, number in sorted(results, key=lambda r: (-r[0], r[1]))]


def promotion(
    trials: list[Trial], eta: int, can_grow: Callable[[Trial], bool], exclude: Iterable[int] = ()
) -> Trial | None:
    """ASHA's rule: from the highest rung down, the best trial that is in the top 1/η of its rung,
    has not been promoted from it yet, did not fail, and may train further; else None."""
    skip = set(exclude)
    results = rung_results(trials)
    for rung in sorted(results, reverse=True):
        entries = results[rung]
        for number in ranked(entries)[: len(entries) // eta]:
            trial = trials[number - 1]
            if trial.rung == rung and not trial.failed and number not in skip and can_grow(trial):
                return trial
    return None


def may_be_promoted(trial: Trial, trials: list[Trial], eta: int, attempts_left: int) -> bool:
    """Whether ``trial`` can still be promoted within the attempts left: its rank at its rung must
    fit in the top 1/η once the rung has at most ``attempts_left - 1`` more results (the
    promotion itself takes an attempt). Its checkpoint is kept while this holds."""
    if trial.failed or trial.reached or attempts_left < 1:
        return False
    entries = rung_results(trials).get(trial.rung, [])
    order = ranked(entries)
    if trial.number not in order:
        return False
    return order.index(trial.number) < (len(entries) + attempts_left - 1) // eta


# --------------------------------------------------------------------------- Optuna


def require_optuna() -> None:
    """ConfigError unless Optuna, the search's library (the package's ``search`` extra), is installed."""
    try:
        import optuna  # noqa: F401, PLC0415 - Optuna is imported by the search only
    except ImportError:
        raise ConfigError(
            "strategy: search needs Optuna, which this environment does not have.",
            hint="The action installs it when its strategy input, or the config file's "
            "top-level `strategy:`, is search; elsewhere: pip install "
            "'keeptraining[search]'.",
        ) from None


def distributions(settings: SearchSettings) -> dict[str, Any]:
    """Optuna distributions of the space (from the configuration, never from the chain state)."""
    require_optuna()
    from optuna.distributions import (  # noqa: PLC0415 - Optuna is imported by the search only
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for p in settings.space:
        try:
            if p.type == "categorical":
                out[p.name] = CategoricalDistribution(list(p.choices))
            elif p.type == "int":
                out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
            else:
                out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        except (ValueError, TypeError, ArithmeticError) as exc:  # what the configuration's check missed
            raise _refused(p.name, exc) from None
    return out


def _refused(name: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"search.space.{name}: Optuna refuses this range ({type(exc).__name__}: {str(exc)[:200]}).",
        hint=f"Narrow {name}'s low and high, or change its step.",
    )


def _frozen(trial: Trial, dists: dict[str, Any]) -> Any:
    """The trial as Optuna's record: COMPLETE when it reached the threshold, FAIL when it never
    reported, else PRUNED with its learning curve (TPE ranks those by epochs, then result)."""
    from optuna.trial import TrialState, create_trial  # noqa: PLC0415

    curve = trial.curve()
    if trial.reached and trial.best is not None:
        return create_trial(
            state=TrialState.COMPLETE,
            value=trial.best,
            params=trial.params,
            distributions=dists,
            intermediate_values=curve,
        )
    if not curve:
        return create_trial(state=TrialState.FAIL, params=trial.params, distributions=dists)
    return create_trial(
        state=TrialState.PRUNED, params=trial.params, distributions=dists, intermediate_values=curve
    )


def build_study(settings: SearchSettings, trials: list[Trial], running: Sequence[dict[str, Any]] = ()) -> Any:
    """An in-memory Optuna study holding ``trials`` (and the ``running`` ones' values), with the
    configured sampler, seeded by the number of trials so far."""
    require_optuna()
    import optuna  # noqa: PLC0415
    from optuna.trial import TrialState, create_trial  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = settings.seed + len(trials) + len(running)
    sampler: Any
    if settings.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    else:  # random, and grid (whose points are enqueued: the sampler is never consulted for them)
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = distributions(settings)
    for trial in trials:
        study.add_trial(_frozen(trial, dists))
    for params in running:
        study.add_trial(create_trial(state=TrialState.RUNNING, params=params, distributions=dists))
    return study


def grid_points(settings: SearchSettings) -> list[dict[str, Any]]:
    """Every point of the grid, in one order fixed by the seed (the same in every attempt)."""
    names = [p.name for p in settings.space]
    points = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(p.grid() for p in settings.space))
    ]
    random.Random(settings.seed).shuffle(points)  # noqa: S311 - an order to walk a grid, not a secret
    return points


def _same_point(a: dict[str, Any], b: dict[str, Any], space: tuple[Param, ...]) -> bool:
    for p in space:
        x, y = a[p.name], b[p.name]
        if p.type == "float" and not isinstance(x, str) and not isinstance(y, str):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def unvisited_grid(settings: SearchSettings, taken: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        point
        for point in grid_points(settings)
        if not any(_same_point(point, t, settings.space) for t in taken)
    ]


def propose(
    settings: SearchSettings, trials: list[Trial], k: int = 1, running: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Values for ``k`` new trials, asked from one study (ask-and-tell); fewer when the grid is used up.
    ``running``: the values of new trials still training (a local chain without rounds), in the study as
    RUNNING, like the earlier asks of a batch."""
    study = build_study(settings, trials, running)
    dists = distributions(settings)
    proposals: list[dict[str, Any]] = []
    count = k
    if settings.sampler == "grid":
        points = unvisited_grid(settings, [t.params for t in trials] + list(running))[:k]
        for point in points:
            study.enqueue_trial(point)
        count = len(points)
    for _ in range(count):
        try:
            asked = study.ask(dists)  # stays RUNNING, so the next ask of a batch knows about it
        except (ValueError, ArithmeticError) as exc:  # a sampler that cannot sample the range
            numeric = [p.name for p in settings.space if p.type != "categorical"]
            raise _refused(", ".join(numeric or [p.name for p in settings.space]), exc) from None
        proposals.append({name: asked.params[name] for name in dists})
    return proposals


# --------------------------------------------------------------------------- the planner


def _epochs_left(config: Config, ledger: Ledger) -> int | None:
    if config.max_epochs_total is None:
        return None
    return max(config.max_epochs_total - ledger.total_epochs_trained(), 0)


def _grow(config: Config, ledger: Ledger) -> Callable[[Trial], bool]:
    """Whether a trial may train further: below ``max_epochs``, not ended by the script's own
    EarlyStopping (it stopped improving by the script's rule: a promotion would resume it only to stop
    again), and (``stop_when_hopeless``) not a trial whose own learning curve cannot reach the threshold
    within the budget (projection.py)."""
    cap = config.max_epochs

    def can_grow(trial: Trial) -> bool:
        if (cap is not None and trial.epochs >= cap) or trial.last.early_stopped:
            return False
        return not (config.stop_when_hopeless and _trial_hopeless(config, ledger, trial))

    return can_grow


def _trial_budget(config: Config, ledger: Ledger, trial: Trial) -> int:
    """The most epochs ``trial`` can have at the end of the budget: one promotion per attempt left."""
    attempts_left = max(config.max_attempts - (ledger.last.attempt if ledger.last else 0), 0)
    epochs = trial.epochs + config.epoch_step * attempts_left
    if config.max_epochs:
        epochs = min(epochs, config.max_epochs)
    left = _epochs_left(config, ledger)
    return min(epochs, trial.epochs + left) if left is not None else epochs


def _trial_projection(config: Config, ledger: Ledger, trial: Trial) -> projection.Projection | None:
    return projection.of_runs(trial.runs, _trial_budget(config, ledger, trial))


def _trial_hopeless(config: Config, ledger: Ledger, trial: Trial) -> bool:
    projected = _trial_projection(config, ledger, trial)
    return projected is not None and projected.hopeless(config.threshold)


def trial_projection(config: Config, ledger: Ledger, record: Attempt) -> dict[str, Any]:
    """The ledger's record of the projection of ``record``'s trial (empty when there is none)."""
    trials = validated_trials(ledger, config.search_settings())
    if record.trial is None or not 1 <= record.trial <= len(trials):
        return {}
    return projection.record(_trial_projection(config, ledger, trials[record.trial - 1]), config.threshold)


def _promote(trial: Trial, config: Config, epochs_left: int | None) -> TrialRun:
    step = config.epoch_step if epochs_left is None else min(config.epoch_step, epochs_left)
    total = trial.epochs + step
    if config.max_epochs:
        total = min(total, config.max_epochs)
    if not config.resume:  # resume: false retrains the promoted trial from scratch to its new total
        return TrialRun(trial.number, dict(trial.params), trial.rung + 1, total, 0, None)
    good = [run for run in trial.runs if run.outcome != FAILED]
    return TrialRun(trial.number, dict(trial.params), trial.rung + 1, total, trial.epochs, good[-1])


def _first_epochs(config: Config, epochs_left: int | None) -> int:
    total = config.epochs if epochs_left is None else min(config.epochs, epochs_left)
    return min(total, config.max_epochs) if config.max_epochs else total


def next_runs(config: Config, ledger: Ledger, k: int = 1, pending: Sequence[TrialRun] = ()) -> list[TrialRun]:
    """The next ``k`` jobs: promotions first (ASHA), then new trials with values from the sampler.

    ``pending``: jobs planned before these whose results are not in the ledger yet (a local chain
    without rounds plans a job whenever a slot is free): their trials are not promoted again, their
    epochs count against ``max_epochs_total``, and their new trials are in the study as RUNNING
    (numbered before these). Fewer than ``k`` when a grid has fewer points left. Pure apart from
    Optuna's sampling, which is seeded: the same ledger and pending jobs give the same jobs.
    """
    settings = config.search_settings()
    trials = validated_trials(ledger, settings)
    left = _epochs_left(config, ledger)
    if left is not None:
        left = max(left - sum(job.epochs_to_train for job in pending), 0)
    running = [job for job in pending if job.rung == 0]
    jobs: list[TrialRun] = []
    while len(jobs) < k:
        trial = promotion(
            trials,
            settings.reduction_factor,
            _grow(config, ledger),
            exclude=[job.trial for job in [*pending, *jobs]],
        )
        if trial is None:
            break
        jobs.append(_promote(trial, config, left))
    if len(jobs) < k:
        first = max([len(trials), *(job.trial for job in running)]) + 1
        for i, params in enumerate(propose(settings, trials, k - len(jobs), [job.params for job in running])):
            jobs.append(TrialRun(first + i, params, 0, _first_epochs(config, left), 0, None))
    return jobs


def next_run(config: Config, ledger: Ledger) -> TrialRun:
    """The job of the next attempt (decide() has said that there is one)."""
    jobs = next_runs(config, ledger, 1)
    if not jobs:
        raise LedgerError(
            "Every point of the search grid has been tried.",
            hint="The chain has ended; start a new chain with another space to go on.",
        )
    return jobs[0]


def attempts_to_keep(config: Config, ledger: Ledger) -> set[int]:
    """Attempts whose checkpoints a later promotion may resume: each promotable trial's last run."""
    settings = config.search_settings()
    trials = validated_trials(ledger, settings)
    last = ledger.last.attempt if ledger.last else 0
    left = config.max_attempts - last
    can_grow = _grow(config, ledger)
    return {
        t.last.attempt
        for t in trials
        if can_grow(t) and may_be_promoted(t, trials, settings.reduction_factor, left)
    }


def best_trial(trials: list[Trial]) -> Trial | None:
    scored = [t for t in trials if t.best is not None]
    return max(scored, key=lambda t: (t.best, -t.number)) if scored else None


def _epochs_of(record: Attempt) -> int:
    return record.epochs_reached if record.epochs_reached is not None else record.epochs


def _stopped(config: Config, ledger: Ledger, last: Attempt, round_size: int) -> Decision | None:
    """The chain's end by its last attempts: the threshold reached, or too many failures in a row."""
    metric, threshold = config.metric, config.threshold
    if last.outcome == REACHED and last.metric is not None:
        return Decision(
            CHAIN_REACHED,
            wording.reached(metric, last.metric, threshold, last.attempt, _epochs_of(last))
            + f" (trial {last.trial}: {values_text(last.trial_params)})",
        )
    recent = ledger.attempts[-MAX_CONSECUTIVE_FAILURES:]
    if (
        round_size == 1
        and len(recent) == MAX_CONSECUTIVE_FAILURES
        and all(a.outcome == FAILED for a in recent)
    ):
        return Decision(
            CHAIN_FAILED,
            wording.failed(
                last.attempt,
                f"the last {MAX_CONSECUTIVE_FAILURES} attempts failed; the last one: {last.error}",
            ),
        )
    return None


def _going_on(config: Config, last: Attempt, job: TrialRun, what: str) -> Decision:
    """Go on with ``job`` (``what`` it does), said after the last attempt's metric or its failure."""
    metric, threshold = config.metric, config.threshold
    if last.metric is not None and last.outcome != FAILED:
        done = f"{what} (trial {last.trial} done)"
        return Decision(
            CONTINUE,
            wording.below(
                metric, last.metric, threshold, last.attempt, _epochs_of(last), job.epochs, next_step=done
            ),
            job.epochs,
        )
    return Decision(
        CONTINUE,
        wording.failed(last.attempt, last.error or "no metric was recorded")
        + f"; next attempt {last.attempt + 1} {what}",
        job.epochs,
    )


def decide(config: Config, ledger: Ledger, *, round_size: int = 1) -> Decision:
    """After the ledger's last attempt: go on with the next job, or end the search (and why, in the
    one wording).

    ``round_size`` > 1: the last attempts are one round of parallel trials (rounds.decide judges the
    round itself: reached, or all failed); the rule of consecutive failures is for one trial at a time.
    """
    settings = config.search_settings()
    trials = validated_trials(ledger, settings)
    last = ledger.last
    if last is None:
        return Decision(
            CONTINUE,
            "No attempt yet: the search starts with a new trial.",
            _first_epochs(config, _epochs_left(config, ledger)),
        )
    stopped = _stopped(config, ledger, last, round_size)
    if stopped is not None:
        return stopped
    metric = config.metric
    best = ledger.best()
    best_pair = (best.metric, best.attempt) if best is not None and best.metric is not None else None
    detail = f"(trial {best.trial}: {values_text(best.trial_params)})" if best is not None else ""
    if last.attempt >= config.max_attempts:
        return Decision(EXHAUSTED, wording.exhausted(metric, last.attempt, best_pair, detail=detail))
    left = _epochs_left(config, ledger)
    if left == 0:
        return Decision(
            EXHAUSTED,
            wording.exhausted(
                metric,
                last.attempt,
                best_pair,
                within=f"within max_epochs_total {config.max_epochs_total}",
                detail=detail,
            ),
        )
    upcoming = promotion(trials, settings.reduction_factor, _grow(config, ledger))
    if upcoming is not None:
        job = _promote(upcoming, config, left)
        what = f"promotes trial {job.trial} to rung {job.rung} ({job.initial_epoch} -> {job.epochs} epochs)"
    elif settings.sampler == "grid" and not unvisited_grid(settings, [t.params for t in trials]):
        return Decision(
            EXHAUSTED,
            wording.exhausted(
                metric,
                last.attempt,
                best_pair,
                within="with every point of the grid tried and none to promote",
                detail=detail,
            ),
        )
    else:
        job = TrialRun(len(trials) + 1, {}, 0, _first_epochs(config, left), 0, None)
        what = f"starts trial {job.trial} ({job.epochs} epochs)"
    return _going_on(config, last, job, what)
