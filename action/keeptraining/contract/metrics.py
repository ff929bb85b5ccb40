"""Read the metric an attempt produced: ``metrics.json`` first, the seed's stdout line second.

The training contract (DESIGN.md §1): the script writes
``$KT_OUTPUT_DIR/metrics.json`` such as ``{"accuracy": 0.93, "epochs": 30}``;
a script that writes none is read the seed's way, from a result line such as
``Test accuracy: 0.8123`` (the exact rule, which never takes a Keras progress line's
training value, is in ``result_line.py``). Values are fractions in [0, 1]: a
percentage, NaN or anything out of range is an error, never silently reinterpreted.

Everything here is written by the training script, so it is untrusted:
``metrics.json`` and its ``checkpoint`` are reached through ``safe_paths`` (a
regular file inside the output folder, no symbolic link, no FIFO), with a size
cap and a nesting bound, and ``check_epochs`` refuses epochs and histories the
attempt cannot have produced.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining.contract import result_line
from keeptraining.errors import MetricError, PathRefused, quote
from keeptraining.state import safe_paths

METRICS_FILE = "metrics.json"
MAX_METRICS_BYTES = 5 * 1024 * 1024  # a metrics file is a few KB; refuse to parse giant ones
MAX_DEPTH = 6  # {"history": {"val_accuracy": [...]}} is depth 3
DEFAULT_CHECKPOINT = "model.keras"
DEADLINE = "deadline"  # metrics.json "stopped": at KT_DEADLINE, the next run goes on (slices.py)
EARLY_STOPPING = "early_stopping"  # metrics.json "stopped": the script's own EarlyStopping ended it


@dataclass(frozen=True)
class Metrics:
    value: float
    source: str  # "metrics.json" or "stdout"
    epochs: int | None = None  # epochs the model has reached, when reported
    history: list[float] = field(default_factory=list)  # validation metric per epoch trained
    checkpoint: str | None = None  # file name inside the output folder
    train_s: float | None = None  # seconds spent in fit(), when reported
    resumed: bool | None = None  # what the script says it did with KT_RESUME_FROM
    detail: str | None = None  # metrics.json's "metric_source" (e.g. evaluate), or the stdout rule's kind
    line: str | None = None  # the output line the metric was read from (stdout only)
    early_stopped: bool | None = None  # the script says it stopped before KT_EPOCHS on purpose
    adapter: dict[str, Any] = field(default_factory=dict)  # what the Keras adapter says it did
    stopped: str | None = None  # "deadline": it stopped at KT_DEADLINE, short of KT_EPOCHS (slices.py);
    #   "early_stopping": the script's own EarlyStopping ended the training (the chain ends)

    @property
    def label(self) -> str:
        """Where the value came from, for the ledger: ``evaluate`` (as metrics.json says),
        ``metrics.json``, or ``stdout (result line)``."""
        if self.source == METRICS_FILE:
            return self.detail or METRICS_FILE
        return self.source + (f" ({self.detail})" if self.detail else "")


def how_to_report(metric: str) -> str:
    return (
        f'Write $KT_OUTPUT_DIR/{METRICS_FILE} such as {{"{metric}": 0.93, "epochs": 30}}, '
        f"or print a last line such as `Test {metric}: 0.9300` (a fraction between 0 and 1)."
    )


def check_value(value: Any, metric: str, where: str) -> float:
    """The value as a float in [0, 1], or a MetricError that says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricError(f"{where}: {metric} = {quote(value)} is not a number.", hint=how_to_report(metric))
    number = float(value)
    if not math.isfinite(number):
        raise MetricError(
            f"{where}: {metric} is {number} (training diverged or the metric failed).",
            hint="Check the learning rate and the data; the metric must be a finite fraction.",
        )
    if 1 < number <= 100:
        raise MetricError(
            f"{where}: {metric} = {number:g} looks like a percentage.",
            hint=f"Report fractions: {number / 100:.4f} instead of {number:g}.",
        )
    if not 0 <= number <= 1:
        raise MetricError(f"{where}: {metric} = {number:g} is outside [0, 1].", hint=how_to_report(metric))
    return number


def read(output_dir: Path, output: str, metric: str) -> Metrics:
    """The attempt's metric from ``metrics.json`` in ``output_dir``, else from the log ``output``."""
    try:
        present = safe_paths.is_file(output_dir, METRICS_FILE, METRICS_FILE)
    except PathRefused as exc:
        raise MetricError(exc.message, hint=how_to_report(metric)) from None
    if present:
        return _from_file(output_dir, metric)
    found = result_line.find(output, metric)
    if found is None:
        raise MetricError(
            f"The training script reported no {metric}: no {METRICS_FILE} in its output "
            f"folder and no line such as `Test {metric}: 0.93` in its output (a Keras "
            f"progress line's training {metric} is never taken as the result).",
            hint=how_to_report(metric),
        )
    where = f"training output line {quote(found.line)}"
    if found.percent:
        raise MetricError(
            f"{where}: {metric} is printed as a percentage.",
            hint=f"Print a fraction between 0 and 1, e.g. `Test {metric}: 0.9312`.",
        )
    return Metrics(
        value=check_value(found.value, metric, where),
        source="stdout",
        checkpoint=_default_checkpoint(output_dir, "the training output"),
        detail=found.kind,
        line=found.line,
    )


def _load(output_dir: Path, metric: str) -> Any:
    where = METRICS_FILE
    try:
        raw = safe_paths.read_bytes(output_dir, METRICS_FILE, METRICS_FILE, max_bytes=MAX_METRICS_BYTES)
    except PathRefused as exc:
        raise MetricError(
            exc.message + " A metrics file is expected to be small.",
            hint="Write only the final metric, epochs and per-epoch history.",
        ) from None
    except OSError as exc:
        raise MetricError(f"{where} cannot be read: {exc.strerror or exc}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise MetricError(f"{where} nests too deeply.", hint=how_to_report(metric)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetricError(
            f"{where} is not valid JSON: {str(exc)[:200]}.", hint=how_to_report(metric)
        ) from None
    if _depth(data) > MAX_DEPTH:
        raise MetricError(f"{where} nests deeper than {MAX_DEPTH} levels.", hint=how_to_report(metric))
    return data


def _depth(value: Any) -> int:
    """How deep ``value`` nests (iteratively: a hostile file cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _from_file(output_dir: Path, metric: str) -> Metrics:
    where = METRICS_FILE
    data = _load(output_dir, metric)
    if not isinstance(data, dict):
        raise MetricError(
            f"{where} must hold a JSON object, not {type(data).__name__}.", hint=how_to_report(metric)
        )
    if metric not in data:
        keys = quote(", ".join(sorted(map(str, data))[:10]))
        raise MetricError(f"{where} has no {metric!r} key (keys: {keys}).", hint=how_to_report(metric))
    value = check_value(data[metric], metric, where)
    return Metrics(
        value=value,
        source=METRICS_FILE,
        epochs=_optional_int(data, "epochs", where),
        history=_history(data, metric, where),
        checkpoint=_checkpoint(data, output_dir, where),
        train_s=_fit_seconds(data),
        resumed=data.get("resumed") if isinstance(data.get("resumed"), bool) else None,
        detail=_label(data.get("metric_source")),
        early_stopped=data.get("early_stopped") if isinstance(data.get("early_stopped"), bool) else None,
        adapter=_adapter_info(data.get("adapter")),
        stopped=data["stopped"] if data.get("stopped") in (DEADLINE, EARLY_STOPPING) else None,
    )


def _label(value: Any) -> str | None:
    """A short plain label written by the script (e.g. ``val_accuracy``), or None."""
    if isinstance(value, str) and re.fullmatch(r"[\w ()./-]{1,60}", value):
        return value
    return None


def _adapter_info(value: Any) -> dict[str, Any]:
    """The Keras adapter's own account (metrics.json "adapter"), kept small and plain: it is
    written inside the training process, so it is read like any other untrusted input."""
    if not isinstance(value, dict):
        return {}
    info: dict[str, Any] = {}
    for key, item in list(value.items())[:20]:
        if not isinstance(key, str) or len(key) > 40:
            continue
        if _plain(item):
            info[key] = item[:300] if isinstance(item, str) else item
        elif isinstance(item, list):
            info[key] = [str(v)[:300] for v in item[:10]]
        elif isinstance(item, dict):
            info[key] = {
                str(k)[:40]: v[:300] if isinstance(v, str) else v
                for k, v in list(item.items())[:10]
                if _plain(v)
            }
    return info


def _plain(value: Any) -> bool:
    """None, a bool, a finite number or text: what the ledger may keep of the adapter's account."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _optional_int(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MetricError(f"{where}: {key} = {quote(value)} must be a whole number of epochs.")
    return value


def _history(data: dict[str, Any], metric: str, where: str) -> list[float]:
    history = data.get("history")
    if history is None:
        return []
    if not isinstance(history, dict):
        raise MetricError(f'{where}: history must be an object such as {{"val_{metric}": [0.8, 0.9]}}.')
    series = history.get(f"val_{metric}", history.get(metric))
    if series is None:
        return []
    if not isinstance(series, list):
        raise MetricError(f"{where}: history.val_{metric} must be a list of numbers.")
    return [check_value(v, metric, f"{where} history") for v in series]


def _default_checkpoint(output_dir: Path, where: str) -> str | None:
    try:
        present = safe_paths.is_file(output_dir, DEFAULT_CHECKPOINT, "checkpoint")
    except PathRefused as exc:
        raise MetricError(f"{where}: {exc.message}") from None
    return DEFAULT_CHECKPOINT if present else None


def _checkpoint(data: dict[str, Any], output_dir: Path, where: str) -> str | None:
    name = data.get("checkpoint")
    if name is None:
        return _default_checkpoint(output_dir, where)
    if not isinstance(name, str) or not name:
        raise MetricError(f"{where}: checkpoint = {quote(name)} must be a file name in the output folder.")
    try:
        pure = safe_paths.check_relative(name, "checkpoint")
        present = safe_paths.is_file(output_dir, pure, "checkpoint")
    except PathRefused as exc:
        raise MetricError(f"{where}: {exc.message}") from None
    if not present:
        raise MetricError(f"{where}: checkpoint {quote(name)} was not written to the output folder.")
    return str(pure)


def check_epochs(found: Metrics, *, asked: int, initial: int) -> None:
    """Refuse epochs and histories this attempt cannot have produced.

    ``asked`` is KT_EPOCHS; ``initial`` the epoch the script started from (0 when it
    trained from scratch). Fewer epochs than asked is early stopping, and fine.
    """
    if found.epochs is not None and found.epochs > asked:
        raise MetricError(
            f"{METRICS_FILE}: epochs = {found.epochs} is more than the {asked} epochs "
            "this attempt asked for (KT_EPOCHS).",
            hint="Report the epochs the model has: fit(..., epochs=KT_EPOCHS) never passes it.",
        )
    if found.epochs is not None and found.epochs < initial:
        raise MetricError(
            f"{METRICS_FILE}: epochs = {found.epochs} is fewer than the {initial} epochs "
            "the resumed checkpoint already had (KT_INITIAL_EPOCH).",
            hint='Report total epochs, or "resumed": false after training from scratch.',
        )
    reached = found.epochs if found.epochs is not None else asked
    if len(found.history) > reached - initial:
        raise MetricError(
            f"{METRICS_FILE}: the history has {len(found.history)} values, but this attempt "
            f"trained at most {max(reached - initial, 0)} epochs ({initial} -> {reached}).",
            hint="history holds one value per epoch trained in this attempt.",
        )


def trained_out_of_bounds(
    *, epochs_reached: int | None, epochs_trained: int, history: int, asked: int, initial: int
) -> str | None:
    """The bounds of ``check_epochs``, for a result read back from elsewhere (a trial slot's record in
    another job's artifact): None when they hold, else what is wrong. ``history``: its length."""
    if epochs_reached is not None and not initial <= epochs_reached <= asked:
        return f"epochs = {epochs_reached} is outside the {initial} -> {asked} epochs this run could train"
    reached = epochs_reached if epochs_reached is not None else asked
    most, could = max(reached - initial, 0), max(asked - initial, 0)
    if not 0 <= epochs_trained <= could:
        return f"epochs_trained = {epochs_trained}, but this run could train at most {could}"
    if history > most:
        return f"the history has {history} values, but this run trained at most {most} epochs"
    return None


def _fit_seconds(data: dict[str, Any]) -> float | None:
    timings = data.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("fit_s"), (int, float)):
        return float(timings["fit_s"])
    seconds = data.get("epoch_seconds")
    if isinstance(seconds, list) and all(isinstance(s, (int, float)) for s in seconds):
        return float(sum(seconds))
    return None
