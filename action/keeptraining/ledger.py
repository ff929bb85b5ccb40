"""The chain's ledger: one JSON file, one record per attempt.

It lives in the state folder beside the attempts' checkpoints
(``<state_dir>/ledger.json``, ``<state_dir>/attempt-001/model.keras`` …) and
travels with them as one artifact between GitHub runs. ``keeptraining attempt``
reads it and appends one record; ``keeptraining run`` does the same in a loop,
so both produce the same file. Writes are atomic (temp file + rename): a crash
mid-write never loses the records already there.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import LedgerError

LEDGER_FILE = "ledger.json"
CHART_FILE = "chart.png"  # the chain's chart, beside the ledger (report/notify draw it)
LEDGER_VERSION = 1

# Outcomes of one attempt.
REACHED = "reached"  # the metric reached the threshold
BELOW = "below"  # trained fine, metric below the threshold
FAILED = "failed"  # crashed, timed out, or reported no usable metric


@dataclass
class Attempt:
    attempt: int  # 1-based
    epochs: int  # total epochs the model should have after this attempt
    initial_epoch: int  # epochs already in the checkpoint it resumed from
    resumed_from: str | None  # checkpoint path relative to the state folder, or None
    outcome: str  # REACHED | BELOW | FAILED
    metric: float | None = None
    epochs_reached: int | None = None  # epochs the model actually has (early stop)
    epochs_trained: int = 0  # epochs trained in this attempt only
    history: list[float] = field(default_factory=list)  # metric per epoch, this attempt
    duration_s: float = 0.0  # wall clock of the training process/container
    train_s: float | None = None  # seconds inside model.fit, when the script reports it
    checkpoint: str | None = None  # relative to the state folder
    params: dict[str, Any] = field(default_factory=dict)  # hyperparameters and backend
    error: str | None = None  # one-line reason when FAILED
    started_at: str = ""  # ISO 8601, UTC
    run: dict[str, Any] = field(default_factory=dict)  # GitHub run id/url of this attempt
    dispatched: dict[str, Any] = field(default_factory=dict)  # the next run, if dispatched
    # strategy: search only (search.py); None / empty for the epochs strategy.
    trial: int | None = None  # the trial this attempt trained, numbered from 1
    rung: int | None = None  # 0 for a trial's first run, +1 for each promotion
    trial_params: dict[str, Any] = field(default_factory=dict)  # the trial's values (KT_HP_<NAME>)


@dataclass
class Ledger:
    chain: dict[str, Any] = field(default_factory=dict)  # threshold, metric, commit, branch
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def best(self) -> Attempt | None:
        scored = [a for a in self.attempts if a.metric is not None]
        return max(scored, key=lambda a: (a.metric, -a.attempt)) if scored else None

    def total_epochs_trained(self) -> int:
        return sum(a.epochs_trained for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "chain": self.chain,
            "attempts": [asdict(a) for a in self.attempts],
        }


def ledger_path(state_dir: Path) -> Path:
    return state_dir / LEDGER_FILE


def attempt_dir(state_dir: Path, attempt: int) -> Path:
    return state_dir / f"attempt-{attempt:03d}"


def load(state_dir: Path) -> Ledger:
    """The ledger in ``state_dir``, or an empty one when there is none yet."""
    path = ledger_path(state_dir)
    if not path.exists():
        return Ledger()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LedgerError(
            f"Cannot read the chain ledger {path}: {exc}",
            hint="Delete the state folder to start a fresh chain, or restore the ledger.",
        ) from exc
    if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
        raise LedgerError(
            f"{path} is not a keeptraining ledger of version {LEDGER_VERSION}.",
            hint="Delete the state folder to start a fresh chain.",
        )
    known = set(Attempt.__dataclass_fields__)
    try:
        attempts = [Attempt(**{k: v for k, v in a.items() if k in known}) for a in data["attempts"]]
    except (KeyError, TypeError) as exc:
        raise LedgerError(f"{path} has a malformed attempt record: {exc}") from exc
    return Ledger(chain=dict(data.get("chain") or {}), attempts=attempts)


def save(state_dir: Path, ledger: Ledger) -> Path:
    """Write the ledger atomically and return its path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = ledger_path(state_dir)
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".json", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(ledger.to_dict(), fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
