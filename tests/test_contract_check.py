"""Epochs actually trained, resumed or not, and when a script that ignores KT_EPOCHS ends the chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptraining.contract import check as contract_check
from keeptraining.contract.metrics import Metrics
from keeptraining.engine.strategy import Plan
from keeptraining.errors import ContractViolation
from keeptraining.state.ledger import Attempt


def keras_log(first: int, last: int, total: int, early: bool = False) -> str:
    lines = []
    for epoch in range(first, last + 1):
        lines += [f"Epoch {epoch}/{total}", "19/19 - 0s - accuracy: 0.9 - loss: 0.3"]
    if early:
        lines.append(f"Epoch {last}: early stopping")
    return "\n".join(lines) + "\nTest accuracy: 0.8\n"


def record(
    attempt: int,
    epochs: int,
    reached: int | None,
    *,
    ignored: bool = False,
    initial: int = 0,
    outcome: str = "below",
) -> Attempt:
    return Attempt(
        attempt=attempt,
        epochs=epochs,
        initial_epoch=initial,
        resumed_from=None,
        outcome=outcome,
        metric=0.8,
        epochs_reached=reached,
        epochs_ignored=ignored,
    )


FRESH = Plan(attempt=1, epochs=10, initial_epoch=0, resume_from=None)
RESUMING = Plan(attempt=2, epochs=20, initial_epoch=10, resume_from=record(1, 10, 10))
STDOUT = Metrics(value=0.8, source="stdout")


def test_epochs_come_from_keras_lines_when_there_is_no_metrics_json() -> None:
    log = contract_check.epochs_from_log(keras_log(11, 20, 20))
    assert log is not None and (log.first, log.count, log.reached, log.early_stopped) == (11, 10, 20, False)
    trained = contract_check.assess(STDOUT, keras_log(11, 20, 20), RESUMING, 0.9)
    assert (trained.epochs_reached, trained.epochs_trained, trained.initial_epoch) == (20, 10, 10)
    assert trained.resumed and trained.epochs_source == "log" and not trained.warnings


def test_a_script_with_fixed_epochs_is_recorded_as_it_trained_and_warned() -> None:
    trained = contract_check.assess(STDOUT, keras_log(1, 15, 15), RESUMING, 0.9)
    assert (trained.epochs_reached, trained.epochs_trained, trained.initial_epoch) == (15, 15, 0)
    assert not trained.resumed and trained.ignored
    assert "did not resume attempt 1's checkpoint" in trained.warnings[0]
    assert "not to KT_EPOCHS=20" in trained.warnings[1] and "adapt: keras" in trained.warnings[1]


@pytest.mark.parametrize(
    ("output", "found", "ignored"),
    [
        (keras_log(1, 7, 10, early=True), STDOUT, False),  # Keras's EarlyStopping said so
        (keras_log(1, 7, 10), Metrics(value=0.95, source="stdout"), False),  # stopped at the threshold
        (keras_log(1, 7, 10), Metrics(value=0.8, source="metrics.json", epochs=7, early_stopped=True), False),
        (keras_log(1, 7, 10), STDOUT, True),
        (keras_log(1, 12, 12), Metrics(value=0.95, source="stdout"), True),  # more than asked is never fine
    ],
)
def test_stopping_early_on_purpose_is_not_ignoring_kt_epochs(
    output: str, found: Metrics, ignored: bool
) -> None:
    assert contract_check.assess(found, output, FRESH, 0.9).ignored is ignored


def test_unknown_epochs_are_recorded_as_unknown_never_as_asked() -> None:
    trained = contract_check.assess(STDOUT, "Test accuracy: 0.8\n", FRESH, 0.9)
    assert (trained.epochs_reached, trained.epochs_trained, trained.epochs_source) == (None, 0, None)
    assert "cannot tell how many epochs" in trained.warnings[0]


def test_metrics_json_wins_over_the_log() -> None:
    found = Metrics(value=0.8, source="metrics.json", epochs=20, history=[0.7] * 10, resumed=True)
    trained = contract_check.assess(found, keras_log(1, 3, 3), RESUMING, 0.9)
    assert (trained.epochs_reached, trained.epochs_trained, trained.epochs_source) == (20, 10, "metrics.json")


@pytest.mark.parametrize(
    ("previous", "current", "stops"),
    [
        (record(1, 10, 15, ignored=True), record(2, 20, 15, ignored=True), True),
        (record(1, 10, 10), record(2, 20, 10, ignored=True), True),  # KT_EPOCHS changed, nothing else did
        (record(1, 10, 10), record(2, 20, 12, ignored=True), False),  # first time it shows
        (record(1, 10, 10, ignored=True), record(2, 20, 20), False),
        (record(1, 10, 10, ignored=True, outcome="failed"), record(2, 20, 10, ignored=True), False),
        (None, record(1, 10, 15, ignored=True), False),
    ],
)
def test_two_attempts_in_a_row_that_ignore_kt_epochs_end_the_chain(
    previous: Attempt | None, current: Attempt, stops: bool
) -> None:
    if not stops:
        contract_check.stop_if_ignored_again(previous, current)
        return
    with pytest.raises(ContractViolation) as info:
        contract_check.stop_if_ignored_again(previous, current)
    assert "KT_EPOCHS" in str(info.value) and "adapt: keras" in str(info.value)


def test_missing_checkpoint_names_the_file_looked_for(tmp_path: Path) -> None:
    text = contract_check.missing_checkpoint(record(1, 10, 10), tmp_path / "attempt-001")
    assert text is not None and str(tmp_path / "attempt-001" / "model.keras") in text
    with_checkpoint = record(1, 10, 10)
    with_checkpoint.checkpoint = "model.keras"
    assert contract_check.missing_checkpoint(with_checkpoint, tmp_path) is None
