"""What a failed attempt trained before it failed, kept.

A script can train all its epochs and then fail (its own save to a read-only folder, a plot
without a display, a typo after ``fit``). The adapter saved the checkpoint and ``metrics.json``
at each epoch's end, so the attempt's folder holds them: the record keeps them (epochs, metric,
checkpoint), still as failed, so the ledger says what was trained and the next attempt (or the
retry) can resume from it.

Everything here was written by the training: read through ``metrics.read`` and checked like a
finished run's; anything unusable keeps nothing and is never an error of its own.
"""

from __future__ import annotations

from pathlib import Path

from keeptraining.contract import check as contract_check
from keeptraining.contract import metrics as metrics_mod
from keeptraining.contract.env import Plan
from keeptraining.errors import KeeptrainingError
from keeptraining.state.ledger import Attempt


def keep_trained(
    record: Attempt, out_dir: Path, output: str, metric: str, plan: Plan, threshold: float
) -> bool:
    """Fill ``record`` with the epochs, metric and checkpoint the failed run saved; True if it saved any.

    Only ``metrics.json`` with a checkpoint beside it counts (the log's ``Epoch i/N`` lines also
    name an epoch that never ended); ``record.outcome`` is left as it is.
    """
    try:
        found = metrics_mod.read(out_dir, output, metric)
        trained = contract_check.assess(found, output, plan, threshold)
        metrics_mod.check_epochs(found, asked=plan.epochs, initial=trained.initial_epoch)
    except KeeptrainingError:
        return False
    reached = trained.epochs_reached
    if (
        found.source != metrics_mod.METRICS_FILE
        or found.epochs is None
        or found.checkpoint is None
        or reached is None
        or reached <= trained.initial_epoch
    ):
        return False
    if not trained.resumed:
        record.resumed_from = None
    record.initial_epoch = trained.initial_epoch
    record.metric, record.metric_source, record.metric_line = found.value, found.label, found.line
    record.history, record.epochs_reached = found.history, reached
    record.epochs_trained, record.epochs_source = trained.epochs_trained, trained.epochs_source
    record.adapter, record.checkpoint = found.adapter, found.checkpoint
    record.train_s = round(found.train_s, 3) if found.train_s is not None else None
    return True


def said(record: Attempt) -> str:
    """The sentence added to the failure: what was kept, and that it can be resumed."""
    value = f"{record.metric:.4f}" if record.metric is not None else "?"
    source = record.metric_source or "metric"
    return (
        f" Before failing it trained and saved epoch {record.epochs_reached} ({source} {value}, "
        f"checkpoint {record.checkpoint}): the ledger keeps them, and the next attempt resumes "
        "from that checkpoint."
    )
