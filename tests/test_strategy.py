"""Strategy: epochs per attempt, resume plans, and when the chain ends."""

from __future__ import annotations

from typing import Any

from keeptraining.config import settings as config
from keeptraining.engine import strategy
from keeptraining.state.ledger import BELOW, FAILED, REACHED, Attempt, Ledger


def cfg(**overrides: Any) -> config.Config:
    return config.resolve(overrides, None)


def done(n: int, epochs: int, metric: float, outcome: str = BELOW, initial: int = 0) -> Attempt:
    return Attempt(
        attempt=n,
        epochs=epochs,
        initial_epoch=initial,
        resumed_from=None,
        outcome=outcome,
        metric=metric,
        epochs_reached=epochs,
        epochs_trained=epochs - initial,
        checkpoint="model.keras",
    )


def test_first_attempt_trains_epochs_from_scratch() -> None:
    plan = strategy.plan(cfg(epochs=10), Ledger(), 1)
    assert (plan.epochs, plan.initial_epoch, plan.resume_from) == (10, 0, None)


def test_next_attempt_adds_the_step_and_resumes() -> None:
    ledger = Ledger(attempts=[done(1, 10, 0.7)])
    plan = strategy.plan(cfg(), ledger, 2)
    assert (plan.epochs, plan.initial_epoch) == (20, 10)
    assert plan.resume_from is ledger.attempts[0]


def test_resume_false_retrains_from_scratch_like_the_seed() -> None:
    plan = strategy.plan(cfg(resume=False), Ledger(attempts=[done(1, 10, 0.7)]), 2)
    assert (plan.epochs, plan.initial_epoch, plan.resume_from) == (20, 0, None)


def test_explicit_epochs_override_the_rule() -> None:
    plan = strategy.plan(cfg(), Ledger(attempts=[done(1, 10, 0.7)]), 2, epochs=25)
    assert (plan.epochs, plan.initial_epoch) == (25, 10)


def test_failed_attempt_is_not_resumed_from() -> None:
    failed = Attempt(attempt=2, epochs=20, initial_epoch=10, resumed_from=None, outcome=FAILED)
    plan = strategy.plan(cfg(), Ledger(attempts=[done(1, 10, 0.7), failed]), 2)
    assert plan.resume_from is not None and plan.resume_from.attempt == 1


def test_max_epochs_caps_the_plan() -> None:
    assert strategy.plan(cfg(max_epochs=15), Ledger(attempts=[done(1, 10, 0.7)]), 2).epochs == 15


def test_decide_continue_with_next_epochs() -> None:
    decision = strategy.decide(cfg(), Ledger(attempts=[done(1, 10, 0.7)]))
    assert decision.kind == strategy.CONTINUE and decision.next_epochs == 20


def test_decide_reached() -> None:
    decision = strategy.decide(cfg(), Ledger(attempts=[done(1, 10, 0.7), done(2, 20, 0.95, REACHED)]))
    assert decision.kind == strategy.CHAIN_REACHED and decision.next_epochs is None


def test_decide_exhausted_reports_best_attempt() -> None:
    attempts = [done(1, 10, 0.7), done(2, 20, 0.8), done(3, 30, 0.75)]
    decision = strategy.decide(cfg(max_attempts=3), Ledger(attempts=attempts))
    assert decision.kind == strategy.EXHAUSTED
    assert "best accuracy 0.8000 at attempt 2" in decision.reason


def test_decide_exhausted_by_epoch_budget() -> None:
    decision = strategy.decide(cfg(max_epochs=20), Ledger(attempts=[done(1, 10, 0.7), done(2, 20, 0.8)]))
    assert decision.kind == strategy.EXHAUSTED and "max_epochs 20" in decision.reason


def test_decide_failed() -> None:
    failed = Attempt(attempt=1, epochs=10, initial_epoch=0, resumed_from=None, outcome=FAILED, error="boom")
    decision = strategy.decide(cfg(), Ledger(attempts=[failed]))
    assert decision.kind == strategy.CHAIN_FAILED and "boom" in decision.reason


def test_chain_is_always_bounded() -> None:
    ledger = Ledger()
    c = cfg(max_attempts=7, threshold=0.99, stop_when_hopeless=False)  # a flat 0.5 would be hopeless
    for n in range(1, 100):
        decision = strategy.decide(c, ledger)
        if decision.kind != strategy.CONTINUE:
            break
        ledger.attempts.append(done(n, strategy.plan(c, ledger, n).epochs, 0.5))
    assert len(ledger.attempts) == 7
    assert [a.epochs for a in ledger.attempts] == [10, 20, 30, 40, 50, 60, 70]


def test_an_attempt_that_stopped_early_below_the_threshold_keeps_the_epoch_step() -> None:
    """0->7 (validation reached the threshold, the script's result did not), then 7->17, 17->27: never
    the 0->7, 7->20, 20->22, 22->40 of an epochs rule that counts from the planned epochs."""
    stopped = done(1, 10, 0.8)
    stopped.epochs_reached = stopped.epochs_trained = 7
    ledger = Ledger(attempts=[stopped])
    plan = strategy.plan(cfg(), ledger, 2)
    assert (plan.epochs, plan.initial_epoch) == (17, 7)
    assert strategy.decide(cfg(threshold=0.9), ledger).next_epochs == 17
    full = done(2, 17, 0.85, initial=7)
    assert strategy.plan(cfg(), Ledger(attempts=[stopped, full]), 3).epochs == 27
    # A script that ignores KT_EPOCHS keeps the seed's rule (and is caught by the contract check).
    ignored = done(1, 10, 0.8)
    ignored.epochs_reached, ignored.epochs_ignored = 7, True
    assert strategy.plan(cfg(), Ledger(attempts=[ignored]), 2).epochs == 20
