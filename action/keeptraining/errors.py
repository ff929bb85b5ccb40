"""Every error keeptraining raises on purpose, in one place.

Each exception carries a message that says what failed and what to do about it.
The CLI maps them to an exit code and a GitHub ``::error::`` annotation in one
place (``cli.main``); nothing else prints errors.
"""

from __future__ import annotations


class KeeptrainingError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    title = "keeptraining failed"
    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ConfigError(KeeptrainingError):
    """A configuration value (file, flag, action input) is wrong."""

    title = "Invalid keeptraining configuration"
    exit_code = 2


class LedgerError(KeeptrainingError):
    """The chain's ledger cannot be read or does not fit the requested attempt."""

    title = "Chain ledger problem"


class BackendUnavailable(KeeptrainingError):
    """The requested backend cannot run here (e.g. no Docker engine answers)."""

    title = "Training backend unavailable"


class ImageBuildError(KeeptrainingError):
    """The training image could not be built from the Dockerfile."""

    title = "Training image build failed"


class TrainingError(KeeptrainingError):
    """The training command failed: non-zero exit, crash, or killed."""

    title = "Training failed"

    def __init__(self, message: str, *, hint: str = "", log_tail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class ContractViolation(TrainingError):
    """The training script keeps ignoring the training contract (e.g. KT_EPOCHS)."""

    title = "Training script ignores the training contract"


class TrainingTimeout(TrainingError):
    """The training command ran past the per-attempt timeout."""

    title = "Training timed out"


class MetricError(KeeptrainingError):
    """The training script reported no usable metric."""

    title = "No usable metric"


class DispatchError(KeeptrainingError):
    """The next attempt could not be dispatched through the GitHub API."""

    title = "Dispatch of the next attempt failed"


class NotifyError(KeeptrainingError):
    """The notification mail could not be sent."""

    title = "Notification failed"
