"""The chain's ledger: one JSON file, one record per attempt.

It lives in the state folder beside the attempts' checkpoints
(``<state_dir>/ledger.json``, ``<state_dir>/attempt-001/model.keras`` …) and
travels with them as one artifact between GitHub runs. ``keeptraining attempt``
reads it and appends one record; ``keeptraining run`` does the same in a loop,
so both produce the same file. Writes are atomic (temp file + fsync + rename):
a crash or a full disk mid-write never loses the records already there.

The ledger is restored from another run's artifact, so ``load`` treats it as
untrusted input: a size cap, a nesting bound, the JSON Schema shipped beside
this module (``ledger.schema.json``: every field typed and bounded, no unknown
key), attempt numbers in order, and every path in it relative and reaching a
regular file inside the state folder without crossing a symbolic link. Anything
else is a LedgerError before a file is deleted, read or mounted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from keeptraining.errors import LedgerError, PathRefused, quote
from keeptraining.state import safe_paths

LEDGER_FILE = "ledger.json"
CHART_FILE = "chart.png"  # the chain's chart, beside the ledger (report/notify draw it)
LEDGER_VERSION = 1
MAX_LEDGER_BYTES = 32 * 1024 * 1024  # a long chain's ledger is a few hundred KB
MAX_DEPTH = 8  # the schema's deepest value (attempts[i].params.hyperparameters.x) is at depth 5
_FIX = "Delete the state folder (or the restored artifact) to start a fresh chain."

# Outcomes of one attempt.
REACHED = "reached"  # the metric reached the threshold
BELOW = "below"  # trained fine, metric below the threshold
FAILED = "failed"  # crashed, timed out, or reported no usable metric
SLICED = "sliced"  # the run's time ran out first: the attempt goes on in the next run (slices.py)


@dataclass
class Attempt:
    attempt: int  # 1-based
    epochs: int  # total epochs the model should have after this attempt
    initial_epoch: int  # epochs already in the checkpoint it resumed from
    resumed_from: str | None  # checkpoint path relative to the state folder, or None
    outcome: str  # REACHED | BELOW | FAILED | SLICED
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
    # How the result was read and whether the script followed the contract (all optional):
    metric_source: str | None = None  # evaluate | val_<metric> | <metric> (training) | metrics.json | stdout
    metric_line: str | None = None  # the output line the metric was read from (stdout rule)
    epochs_source: str | None = None  # where epochs_reached came from: metrics.json | log (None: unknown)
    epochs_ignored: bool = False  # trained to other than KT_EPOCHS, without an early stop
    early_stopped: bool = False  # the script's own EarlyStopping ended it (metrics.json "stopped")
    warnings: list[str] = field(default_factory=list)  # contract problems said during the attempt
    adapter: dict[str, Any] = field(default_factory=dict)  # what the Keras adapter reported doing
    # strategy: search only (search.py); None / empty for the epochs strategy.
    trial: int | None = None  # the trial this attempt trained, numbered from 1
    rung: int | None = None  # 0 for a trial's first run, +1 for each promotion
    trial_params: dict[str, Any] = field(default_factory=dict)  # the trial's values (KT_HP_<NAME>)
    # An attempt longer than one run (slices.py): one entry per run that stopped before its epochs.
    slices: list[dict[str, Any]] = field(default_factory=list)
    # parallel > 1 only (parallel.py, merge.py); None / empty when trials run one at a time.
    round: int | None = None  # the round that trained it (one workflow run, or one local round)
    runner: dict[str, Any] = field(default_factory=dict)  # slot, job and runner that trained it
    # What the attempt cost and where the chain is heading (cost.py, projection.py); absent in older ledgers.
    minutes: float | None = None  # the run's wall time, from the job's start when known, to this record
    minutes_from: str | None = None  # what it counts from: run_started_at | action | attempt
    runner_kind: str | None = None  # the runs-on label it is priced as (local: not priced)
    projection: dict[str, Any] = field(default_factory=dict)  # the learning curve's projection after it


@dataclass
class JobMinutes:
    """A job of the chain that trained no attempt (the merge job of a round of parallel trials): its
    runner minutes, priced like an attempt's (cost.py)."""

    job: str  # what it did: "merge"
    minutes: float
    minutes_from: str  # run_started_at | action | attempt, as Attempt.minutes_from
    runner_kind: str
    round: int | None = None
    run: dict[str, Any] = field(default_factory=dict)  # GitHub run id/url of the job


@dataclass
class Ledger:
    chain: dict[str, Any] = field(default_factory=dict)  # threshold, metric, commit, branch
    attempts: list[Attempt] = field(default_factory=list)
    jobs: list[JobMinutes] = field(default_factory=list)  # jobs that trained nothing (cost.py)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def best(self) -> Attempt | None:
        scored = [a for a in self.attempts if a.metric is not None and a.outcome != FAILED]  # a failed
        # attempt's metric is what it saved before failing (contract/kept.py): kept, never the best
        return max(scored, key=lambda a: (a.metric, -a.attempt)) if scored else None

    def total_epochs_trained(self) -> int:
        return sum(a.epochs_trained for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "chain": self.chain,
            "attempts": [asdict(a) for a in self.attempts],
        }
        if self.jobs:  # absent until a chain has one: ledgers without parallel rounds stay as they were
            data["jobs"] = [asdict(j) for j in self.jobs]
        return data


def ledger_path(state_dir: Path) -> Path:
    return state_dir / LEDGER_FILE


def attempt_dir(state_dir: Path, attempt: int) -> Path:
    return state_dir / f"attempt-{attempt:03d}"


def check_state_dir(state_dir: Path) -> None:
    """LedgerError unless ``state_dir`` is a folder or does not exist yet."""
    if os.path.lexists(state_dir) and not state_dir.is_dir():
        kind = "a symbolic link that leads nowhere (or in a loop)" if state_dir.is_symlink() else "a file"
        raise LedgerError(
            f"The state folder {state_dir} is {kind}, not a folder.",
            hint="Point state_dir at a folder, or remove what is in its place.",
        )


def _depth_ok(value: Any) -> bool:
    """Whether ``value`` nests no deeper than MAX_DEPTH (iterative: no recursion on hostile input)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


@cache
def schema() -> dict[str, Any]:
    text = resources.files("keeptraining.state").joinpath("ledger.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _parse(path: Path, state_dir: Path) -> Any:
    try:
        raw = safe_paths.read_bytes(state_dir, LEDGER_FILE, "the ledger", max_bytes=MAX_LEDGER_BYTES)
    except PathRefused as exc:
        raise LedgerError(f"Refusing the chain ledger: {exc.message}", hint=_FIX) from None
    except OSError as exc:
        raise LedgerError(f"Cannot read the chain ledger {path}: {exc.strerror or exc}.", hint=_FIX) from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise LedgerError(f"{path} nests too deeply to be a keeptraining ledger.", hint=_FIX) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LedgerError(f"Cannot read the chain ledger {path}: {str(exc)[:200]}", hint=_FIX) from None


_WHY = {
    "type": "has the wrong type",
    "oneOf": "has the wrong type",
    "enum": "is not a known value",
    "pattern": "has the wrong form",
    "not": "is not a relative path inside the state folder",
    "minimum": "is too small",
    "maximum": "is too large",
    "maxLength": "is too long",
    "maxItems": "has too many items",
    "maxProperties": "has too many keys",
    "const": "is not valid",
}


def _schema_error(path: Path, err: jsonschema.ValidationError) -> LedgerError:
    while err.validator == "oneOf" and err.context:  # "null or X": say what is wrong with X
        err = max(err.context, key=lambda e: (e.validator != "type", len(e.schema_path)))
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set(err.schema.get("properties", {})) if isinstance(err.schema, dict) else set()
        unknown = sorted(str(k) for k in err.instance if k not in known)
        problem = f"unknown key(s) {quote(', '.join(unknown))}"
    elif err.validator == "required":
        problem = str(err.message).split(" is a required")[0] + " is missing"
    else:
        why = _WHY.get(str(err.validator), "is not valid")
        problem = f"{quote(err.instance)} {why}"
    return LedgerError(f"{path} does not fit the ledger schema: {where.lstrip('.')}: {problem}.", hint=_FIX)


def _check_paths(state_dir: Path, path: Path, attempts: list[Attempt]) -> None:
    """Every path in the ledger reaches a regular file (or nothing) inside the state folder."""
    previous = 0
    for record in attempts:
        if record.attempt <= previous:
            raise LedgerError(
                f"{path}: attempt {record.attempt} follows attempt {previous}; "
                "attempts must be in increasing order.",
                hint=_FIX,
            )
        previous = record.attempt
        if record.outcome == SLICED and record is not attempts[-1]:
            raise LedgerError(
                f"{path}: attempt {record.attempt} is sliced (unfinished), but later "
                "attempts follow it; only the last attempt can be unfinished.",
                hint=_FIX,
            )
        checks = [("resumed_from", record.resumed_from, state_dir)]
        checks.append(("checkpoint", record.checkpoint, attempt_dir(state_dir, record.attempt)))
        for name, value, base in checks:
            if value is None:
                continue
            try:
                safe_paths.check_relative(value, f"attempt {record.attempt}'s {name}")
                if base.is_symlink():
                    raise PathRefused(f"{base.name} is a symbolic link; attempt folders are plain folders.")
                if base.is_dir():
                    safe_paths.is_file(base, value, f"attempt {record.attempt}'s {name}")
            except PathRefused as exc:
                raise LedgerError(f"{path}: {exc.message}", hint=_FIX) from None
            except OSError as exc:
                raise LedgerError(
                    f"{path}: attempt {record.attempt}'s {name} cannot be checked: {exc.strerror or exc}.",
                    hint=_FIX,
                ) from None


def load(state_dir: Path) -> Ledger:
    """The ledger in ``state_dir``, or an empty one when there is none yet; LedgerError if untrustworthy."""
    path = ledger_path(state_dir)
    check_state_dir(state_dir)
    if not os.path.lexists(path):
        return Ledger()
    data = _parse(path, state_dir)
    if not _depth_ok(data):
        raise LedgerError(f"{path} nests deeper than a keeptraining ledger does.", hint=_FIX)
    if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
        raise LedgerError(f"{path} is not a keeptraining ledger of version {LEDGER_VERSION}.", hint=_FIX)
    errors = sorted(
        jsonschema.Draft202012Validator(schema()).iter_errors(data),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if errors:
        raise _schema_error(path, errors[0])
    attempts = [Attempt(**record) for record in data["attempts"]]
    _check_paths(state_dir, path, attempts)
    jobs = [JobMinutes(**job) for job in data.get("jobs", [])]
    return Ledger(chain=dict(data["chain"]), attempts=attempts, jobs=jobs)


def save(state_dir: Path, ledger: Ledger) -> Path:
    """Write the ledger atomically and return its path.

    A write that fails (disk full, read-only folder) is a LedgerError; the ledger
    that was there before is kept as it was.
    """
    path = ledger_path(state_dir)
    try:
        text = json.dumps(ledger.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as exc:  # a NaN slipped into a record: a bug, never written
        raise LedgerError(f"The ledger could not be serialised: {exc}.") from None
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        safe_paths.atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise LedgerError(
            f"Cannot write the chain ledger {path}: {exc.strerror or exc}. The previous ledger is kept "
            "unchanged; this attempt's record is not in it.",
            hint="Free disk space or make the state folder writable, then run the attempt again.",
        ) from None
    return path
