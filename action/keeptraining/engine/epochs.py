"""``strategy: epochs`` (the default): the seed's rule for what the next attempt trains.

Attempt 1 trains ``epochs``; every further attempt trains the previous attempt's epochs +
``epoch_step``. With ``resume`` the next attempt starts from the previous checkpoint
(``initial_epoch`` = epochs it already has) and trains only the added epochs; without it, it
retrains from scratch. The chain is always bounded by ``max_attempts`` (and ``max_epochs`` /
``max_epochs_total`` when set).
"""

from __future__ import annotations

from keeptraining.config.settings import Config
from keeptraining.engine import projection
from keeptraining.engine.plan import (
    CHAIN_FAILED,
    CHAIN_REACHED,
    CHAIN_STOPPED,
    CONTINUE,
    EXHAUSTED,
    Decision,
    Plan,
)
from keeptraining.output import wording
from keeptraining.state.ledger import BELOW, FAILED, REACHED, Attempt, Ledger


def next_epochs(config: Config, ledger: Ledger) -> int:
    """The seed's rule: the last attempt's epochs + epoch_step (``epochs`` for the first).

    An attempt that stopped before its epochs on purpose (below the threshold: the validation
    metric reached it while the script's own result did not) counts from where it stopped, so
    every attempt trains ``epoch_step`` more epochs, never a long one then a tiny one.
    """
    last = ledger.last
    if last is None:
        return min(config.epochs, config.max_epochs) if config.max_epochs else config.epochs
    base = last.epochs
    if (
        last.outcome == BELOW
        and last.epochs_reached is not None
        and last.epochs_reached < last.epochs
        and not last.epochs_ignored
    ):
        base = last.epochs_reached
    total = base + config.epoch_step
    return min(total, config.max_epochs) if config.max_epochs else total


def plan(config: Config, ledger: Ledger, attempt: int, epochs: int | None = None) -> Plan:
    """The plan for ``attempt``; ``epochs`` overrides the rule (a workflow_dispatch input)."""
    total = epochs if epochs is not None else next_epochs(config, ledger)
    previous = _resumable(ledger, attempt)
    if (
        config.resume
        and previous is not None
        and previous.epochs_reached is not None
        and previous.epochs_reached <= total
    ):  # equal: evaluate only (DESIGN.md, the training contract)
        return Plan(attempt, total, previous.epochs_reached, previous)
    return Plan(attempt, total, 0, None)


def _resumable(ledger: Ledger, attempt: int) -> Attempt | None:
    """The latest earlier attempt that left a checkpoint (a failed one too, when it kept what it
    saved before failing: contract/kept.py)."""
    for record in reversed(ledger.attempts):
        if (
            record.attempt < attempt
            and record.checkpoint
            and (record.outcome != FAILED or record.epochs_reached is not None)
        ):
            return record
    return None


def decide(config: Config, ledger: Ledger) -> Decision:
    """After the ledger's last (finished) attempt: go on, or end the chain (and why, in the one wording)."""
    last = ledger.last
    if last is None:
        return Decision(CONTINUE, "No attempt yet.", next_epochs(config, ledger))
    epochs = last.epochs_reached if last.epochs_reached is not None else last.epochs
    if last.outcome == REACHED and last.metric is not None:
        return Decision(
            CHAIN_REACHED, wording.reached(config.metric, last.metric, config.threshold, last.attempt, epochs)
        )
    if last.outcome == FAILED or last.metric is None:
        return Decision(CHAIN_FAILED, wording.failed(last.attempt, last.error or "no metric was recorded"))
    assert last.outcome == BELOW
    best = ledger.best()
    best_pair = (best.metric, best.attempt) if best is not None and best.metric is not None else None
    if last.early_stopped:  # the script asked for the end: no further attempt
        return Decision(
            CHAIN_STOPPED,
            wording.early_stopped(
                config.metric, last.metric, config.threshold, last.attempt, epochs, best_pair
            ),
        )
    if last.attempt >= config.max_attempts:
        return Decision(EXHAUSTED, wording.exhausted(config.metric, last.attempt, best_pair))
    if config.max_epochs_total and ledger.total_epochs_trained() >= config.max_epochs_total:
        within = f"within max_epochs_total {config.max_epochs_total}"
        return Decision(EXHAUSTED, wording.exhausted(config.metric, last.attempt, best_pair, within=within))
    upcoming = next_epochs(config, ledger)
    if config.max_epochs and upcoming <= (last.epochs_reached or 0):
        return Decision(
            EXHAUSTED, wording.exhausted(config.metric, last.attempt, best_pair, max_epochs=config.max_epochs)
        )
    to_train = upcoming - (last.epochs_reached or 0) if config.resume else upcoming
    stop = projection.stop_reason(config, ledger, to_train, best_pair)  # minutes budget, hopeless curve
    if stop is not None:
        return Decision(EXHAUSTED, stop)
    return Decision(
        CONTINUE,
        wording.below(config.metric, last.metric, config.threshold, last.attempt, epochs, upcoming),
        upcoming,
    )
