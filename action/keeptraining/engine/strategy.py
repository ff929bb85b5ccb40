"""Which strategy plans and judges the chain: the one place that picks between them.

* an unfinished (sliced) last attempt: its next run continues it (slices.py);
* ``strategy: search``: a hyperparameter search (search.py);
* else ``strategy: epochs``, the seed's rule (epochs.py).

The shared types (``Plan``, ``Decision`` and the decision kinds) live in plan.py; they are named
here too, for the callers that speak of "the strategy's" decision.
"""

from __future__ import annotations

from keeptraining.config.settings import Config
from keeptraining.engine import epochs, search, slices
from keeptraining.engine.epochs import next_epochs, plan
from keeptraining.engine.plan import (
    CHAIN_FAILED,
    CHAIN_REACHED,
    CHAIN_STOPPED,
    CONTINUE,
    EXHAUSTED,
    SUPERSEDED,
    Decision,
    Plan,
)
from keeptraining.state.ledger import SLICED, Ledger

__all__ = [
    "CHAIN_FAILED",
    "CHAIN_REACHED",
    "CHAIN_STOPPED",
    "CONTINUE",
    "EXHAUSTED",
    "SUPERSEDED",
    "Decision",
    "Plan",
    "decide",
    "next_epochs",
    "plan",
]


def decide(config: Config, ledger: Ledger) -> Decision:
    """After the ledger's last attempt: go on, or end the chain (and why, in the one wording)."""
    last = ledger.last
    if last is not None and last.outcome == SLICED:  # unfinished: its next run continues it
        return slices.decide(config, ledger)
    if config.strategy == search.SEARCH:
        return search.decide(config, ledger)
    return epochs.decide(config, ledger)
