"""The training contract's environment: every ``KT_*`` variable a training script receives, named here once.

README's contract table documents each; the Keras adapter (stdlib only, inside the training process)
keeps its own copy of the names, which tests/test_architecture.py checks against this one.

``KT_EPOCHS == KT_INITIAL_EPOCH`` with a checkpoint in ``KT_RESUME_FROM`` means *evaluate only*:
load it, train nothing, report the metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeptraining.state.ledger import Attempt

EPOCHS = "KT_EPOCHS"  # total epochs the model should have after this attempt
INITIAL_EPOCH = "KT_INITIAL_EPOCH"  # epochs already in the checkpoint it resumes from (0 when fresh)
RESUME_FROM = "KT_RESUME_FROM"  # path of the checkpoint to resume from, or empty
THRESHOLD = "KT_THRESHOLD"  # the target; a script may stop early once it is reached
METRIC = "KT_METRIC"  # the metric's name
OUTPUT_DIR = "KT_OUTPUT_DIR"  # a writable folder for metrics.json and the checkpoint
HP_PREFIX = "KT_HP_"  # KT_HP_<NAME>: a hyperparameter a strategy (or the configuration) sets
DEADLINE = "KT_DEADLINE"  # Unix time by which the run must have saved (engine/time_budget.py)
CACHE_DIR = "KT_CACHE_DIR"  # a folder kept from attempt to attempt for downloaded data (state/data_cache.py)
ADAPT = "KT_ADAPT"  # auto | keras | none: whether the Keras adapter drives the script
ATTEMPT = "KT_ATTEMPT"  # the attempt's number in the chain: 3, or 3.2 for its second run (attempt_label)

#: Not part of what a script honours: keeptraining's own random mark of one local training, inherited
#: by whatever it starts, by which what outlives the training is found and stopped (state/orphans.py).
TRAINING_ID = "KT_TRAINING_ID"

#: Every variable of the contract (``KT_HP_`` is a prefix), in README's order.
VARIABLES = (
    EPOCHS,
    INITIAL_EPOCH,
    RESUME_FROM,
    THRESHOLD,
    METRIC,
    OUTPUT_DIR,
    HP_PREFIX,
    DEADLINE,
    CACHE_DIR,
    ADAPT,
    ATTEMPT,
)


@dataclass(frozen=True)
class Plan:
    """What one attempt is asked to train: the contract's ``KT_ATTEMPT``, ``KT_EPOCHS``,
    ``KT_INITIAL_EPOCH`` and the attempt whose checkpoint becomes ``KT_RESUME_FROM``."""

    attempt: int
    epochs: int  # total epochs after this attempt
    initial_epoch: int  # epochs already in the checkpoint resumed from (0 when fresh)
    resume_from: Attempt | None  # the attempt whose checkpoint is resumed
    run: int = 1  # the run within the attempt: 2 and more continue an unfinished attempt (engine/slices.py)


def attempt_label(attempt: int, run: int = 1) -> str:
    """``3`` for an attempt's first run, ``3.2`` for its second: ``KT_ATTEMPT``, and what a dispatch passes
    as ``attempt``."""
    return str(attempt) if run <= 1 else f"{attempt}.{run}"


def hp_name(name: str) -> str:
    """``learning_rate`` -> ``KT_HP_LEARNING_RATE``."""
    return f"{HP_PREFIX}{name.upper()}"


def hp_value(value: Any) -> str:
    """A hyperparameter's value as the script reads it: booleans as ``true``/``false``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """``{"learning_rate": 0.01}`` -> ``{"KT_HP_LEARNING_RATE": "0.01"}``."""
    return {hp_name(name): hp_value(value) for name, value in values.items()}


def environment(
    plan: Plan, *, threshold: float, metric: str, adapt: str, hps: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The variables that say what to train (the backend adds the paths, the time budget its deadline)."""
    env = {
        EPOCHS: str(plan.epochs),
        INITIAL_EPOCH: str(plan.initial_epoch),
        THRESHOLD: repr(threshold),
        METRIC: metric,
        ATTEMPT: attempt_label(plan.attempt, plan.run),
        ADAPT: adapt,
    }
    return {**env, **hyperparameters(hps or {})}


def paths(output_dir: str, resume_from: str) -> dict[str, str]:
    """The variables that say where: the output folder and the checkpoint to resume ("" when fresh)."""
    return {OUTPUT_DIR: output_dir, RESUME_FROM: resume_from}
