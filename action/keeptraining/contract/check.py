"""Did the attempt train what it was asked? Epochs actually trained, resumed or not, what to say.

A script that ignores the training contract (``adapt: none``, or no Keras to adapt)
trains whatever it likes. The ledger records what it really did: the epochs from its
``metrics.json``, else from Keras's own ``Epoch i/N`` lines in its output, else none at
all; never the epochs it was asked for. Each mismatch is said out loud, and a script
that shows twice that ``KT_EPOCHS`` changes nothing ends the chain as failed instead of
spending the whole budget on the same training again and again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from keeptraining.contract.env import EPOCHS, INITIAL_EPOCH, Plan
from keeptraining.contract.metrics import DEFAULT_CHECKPOINT, METRICS_FILE, Metrics
from keeptraining.errors import ContractViolation
from keeptraining.state.ledger import BELOW, REACHED, Attempt

_EPOCH_LINE = re.compile(r"^Epoch (\d+)/(\d+)(?![\d.])")  # Keras prints `Epoch 3/10` as each epoch begins
_EARLY_STOP_LINE = re.compile(r"^Epoch \d+: early stopping\s*$")  # Keras's EarlyStopping, verbose > 0

FIX_HINT = (
    "Let keeptraining drive the script's Keras `fit`: set `adapt: keras` (or keep the default "
    "`adapt: auto`), or make the script read the contract: model.fit(..., "
    f'epochs=int(os.environ["{EPOCHS}"]), initial_epoch=int(os.environ["{INITIAL_EPOCH}"])).'
)


@dataclass(frozen=True)
class LogEpochs:
    """The Keras epoch lines of one attempt's output."""

    first: int  # the first epoch number printed: 1 when the model started from scratch
    count: int  # epoch lines printed: the epochs trained in this attempt
    early_stopped: bool  # Keras's EarlyStopping said it stopped the training

    @property
    def reached(self) -> int:
        return self.first - 1 + self.count


def epochs_from_log(output: str) -> LogEpochs | None:
    """Keras's ``Epoch i/N`` lines (one per epoch, at verbose 1 and 2), or None if there are none."""
    numbers = []
    early = False
    for line in output.splitlines():
        match = _EPOCH_LINE.match(line.strip())
        if match:
            numbers.append(int(match[1]))
        elif _EARLY_STOP_LINE.match(line.strip()):
            early = True
    return LogEpochs(numbers[0], len(numbers), early) if numbers else None


@dataclass
class Trained:
    """What one attempt really trained, and the warnings it deserves."""

    epochs_reached: int | None  # None: the script said nothing keeptraining can read
    epochs_trained: int
    initial_epoch: int  # 0 unless it resumed the offered checkpoint
    resumed: bool
    epochs_source: str | None  # metrics.json | log | None
    ignored: bool  # trained to other than KT_EPOCHS, without an early stop
    warnings: list[str] = field(default_factory=list)


def assess(found: Metrics, output: str, plan: Plan, threshold: float) -> Trained:
    """The epochs an attempt trained, from metrics.json, else the log, else unknown."""
    log = epochs_from_log(output)
    offered = plan.resume_from is not None
    if found.resumed is not None:
        resumed = offered and found.resumed
    elif log is not None:
        resumed = offered and log.first > 1  # Keras numbers a resumed fit from the checkpoint's epoch
    else:
        resumed = offered  # nothing says otherwise
    initial = plan.initial_epoch if resumed else 0
    if found.epochs is not None:
        reached, source = found.epochs, "metrics.json"
    elif log is not None:
        reached, source = log.reached, "log"
    else:
        reached, source = None, None
    if found.history:
        trained = len(found.history)
    elif log is not None:
        trained = log.count
    else:
        trained = max(reached - initial, 0) if reached is not None else 0
    stopped_early = bool(found.early_stopped) or (log is not None and log.early_stopped)
    short_on_purpose = (
        reached is not None
        and reached < plan.epochs
        and (stopped_early or found.value >= threshold or found.stopped == "deadline")
    )  # deadline: slices.py
    ignored = reached is not None and reached != plan.epochs and not short_on_purpose
    result = Trained(reached, trained, initial, resumed, source, ignored)
    if offered and not resumed:
        assert plan.resume_from is not None
        result.warnings.append(
            f"the script did not resume attempt {plan.resume_from.attempt}'s checkpoint; "
            "this attempt trained from scratch."
        )
    if ignored:
        result.warnings.append(
            f"the script trained to epoch {reached} (read from its {source}), not to "
            f"KT_EPOCHS={plan.epochs}: it does not follow KT_EPOCHS. {FIX_HINT}"
        )
    if reached is None:
        result.warnings.append(
            f"keeptraining cannot tell how many epochs attempt {plan.attempt} trained: "
            f'no "epochs" in {METRICS_FILE} and no Keras `Epoch i/N` lines in its '
            "output, so it records none."
        )
    return result


def evaluate_only(plan: Plan) -> bool:
    """``KT_EPOCHS == KT_INITIAL_EPOCH`` with a checkpoint: load it, train nothing, report the metric
    (how a champion model is evaluated with a pull request's code and data)."""
    return plan.resume_from is not None and plan.epochs == plan.initial_epoch


def check_evaluation(trained: Trained, plan: Plan) -> None:
    """An evaluate-only run must have loaded the checkpoint and trained no epoch: otherwise its metric
    is not the checkpoint's, and comparing it would be a lie. Raises ContractViolation."""
    if not trained.resumed:
        raise ContractViolation(
            f"Asked to evaluate a checkpoint (KT_EPOCHS = KT_INITIAL_EPOCH = {plan.epochs}, KT_RESUME_FROM "
            "set), the script did not load it: its metric is not the checkpoint's.",
            hint=FIX_HINT,
        )
    if trained.epochs_trained > 0 or (
        trained.epochs_reached is not None and trained.epochs_reached != plan.epochs
    ):
        raise ContractViolation(
            f"Asked to evaluate a checkpoint of {plan.epochs} epochs without training (KT_EPOCHS = "
            f"KT_INITIAL_EPOCH), the script trained {trained.epochs_trained} epochs (to epoch "
            f"{trained.epochs_reached}).",
            hint="With KT_EPOCHS equal to KT_INITIAL_EPOCH, load KT_RESUME_FROM, train nothing and "
            "evaluate; the Keras adapter does this for a script's own `fit`.",
        )


def stop_if_ignored_again(previous: Attempt | None, record: Attempt) -> None:
    """Raise ContractViolation when KT_EPOCHS has shown twice in a row that it changes nothing.

    That is this attempt ignoring KT_EPOCHS after the previous one did too, or after the
    previous one trained just as many epochs from scratch under another KT_EPOCHS.
    """
    if previous is None or not record.epochs_ignored or previous.outcome not in (BELOW, REACHED):
        return
    same_again = (
        previous.epochs_reached == record.epochs_reached
        and previous.epochs != record.epochs
        and previous.initial_epoch == 0
        and record.initial_epoch == 0
    )
    if not (previous.epochs_ignored or same_again):
        return
    raise ContractViolation(
        f"Attempts {previous.attempt} and {record.attempt} asked for KT_EPOCHS={previous.epochs} and "
        f"{record.epochs}; the script trained to epoch {previous.epochs_reached} and "
        f"{record.epochs_reached}: it ignores KT_EPOCHS, so more attempts would train the same again. "
        "The chain stops here instead of spending its budget.",
        hint=FIX_HINT,
    )


def missing_checkpoint(record: Attempt, out_dir: Path) -> str | None:
    """The warning for ``resume: true`` when the attempt left nothing to resume from."""
    if record.checkpoint is not None:
        return None
    return (
        f"resume is on, but attempt {record.attempt} wrote no checkpoint: keeptraining looked for "
        f'{out_dir / DEFAULT_CHECKPOINT} (or a file named under "checkpoint" in {METRICS_FILE}), so '
        "the next attempt trains from scratch. Save the model to $KT_OUTPUT_DIR/model.keras, "
        "or let the Keras adapter do it (`adapt: auto`)."
    )
