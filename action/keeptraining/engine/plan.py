"""The shared types of the engine: the plan of an attempt and the decision after it.

``Plan`` (what one attempt is asked to train) is the training contract's (contract/env.py); it is
named here too so that the strategies (epochs.py, search.py, slices.py) and the chain share one
vocabulary without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeptraining.contract.env import Plan

__all__ = [
    "CHAIN_FAILED",
    "CHAIN_REACHED",
    "CHAIN_STOPPED",
    "CONTINUE",
    "EXHAUSTED",
    "SUPERSEDED",
    "Decision",
    "Plan",
]

# Decision kinds (the action's chain-status output).
CONTINUE = "continue"  # below the threshold and budget left: run the next attempt
CHAIN_REACHED = "reached"  # threshold reached: the chain ends well
EXHAUSTED = "exhausted"  # budget spent below the threshold
CHAIN_FAILED = "failed"  # the last attempt failed (crash, timeout, no metric)
CHAIN_STOPPED = "stopped"  # below the threshold, and the script's own EarlyStopping ended the training
SUPERSEDED = "superseded"  # a newer chain took over the branch (decided at dispatch, not here)


@dataclass(frozen=True)
class Decision:
    kind: str  # CONTINUE | CHAIN_REACHED | EXHAUSTED | CHAIN_FAILED | CHAIN_STOPPED | SUPERSEDED
    reason: str  # the verdict, one line (wording.py): what the CLI, the summary and the mail say
    next_epochs: int | None = None  # only for CONTINUE
    hint: str = ""  # what to do about it (a failure's fix), shown under the verdict in the mail
    next_run: int = 1  # the next run's number within its attempt (> 1: it continues a sliced attempt)
