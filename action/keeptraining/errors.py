"""Every error keeptraining raises on purpose, in one place.

Each exception carries a message that says what failed and what to do about it.
The CLI maps them to an exit code and a GitHub ``::error::`` annotation in one
place (``cli.main``); nothing else prints errors.

Exit codes (README "Exit codes"): 0 done (threshold reached, or an attempt that
trained), 1 a failed attempt (training, metric, image, engine, dispatch, mail),
2 configuration, 3 ``run`` ended below the threshold, 4 the chain's state folder
(ledger, checkpoints, lock), 70 a bug in keeptraining, 130 interrupted.
"""

from __future__ import annotations

import traceback

from keeptraining.output import wording

QUOTE_LIMIT = 100  # characters of a bad value an error message shows


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a bad value never floods a message."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (Python's digit limit)
        return (
            f"<a number of about {value.bit_length() * 30103 // 100000} digits>"
            if isinstance(value, int)
            else "<unprintable value>"
        )
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """The chain's state folder (ledger, checkpoints, lock) cannot be used as it is.

    Restored state is untrusted input: a ledger that fails its schema, a path that
    leaves the state folder or crosses a symbolic link, an unwritable folder. Nothing
    is deleted, read through or mounted when this is raised.
    """

    title = "Chain ledger problem"
    exit_code = 4


class StateLocked(LedgerError):
    """Another keeptraining process holds the state folder's lock."""

    title = "Chain state folder in use"


class PathRefused(KeeptrainingError):
    """A path from the training script or a restored state is not a plain file inside its folder.

    Raised by ``safe_paths``; callers re-raise it as the error of their stage
    (LedgerError, MetricError) with what the path was for.
    """

    title = "Unsafe path refused"


class BackendUnavailable(KeeptrainingError):
    """The requested backend cannot run here (e.g. no Docker engine answers)."""

    title = "Training backend unavailable"


class ImageBuildError(KeeptrainingError):
    """The training image could not be built from the Dockerfile (or not within build_timeout)."""

    title = "Training image build failed"

    def __init__(self, message: str, *, hint: str = "", log_tail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


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


class SliceError(TrainingError):
    """An attempt does not get through its epochs across runs: no progress in a run, or max_slices spent."""

    title = "Attempt does not finish across runs"


class MetricError(KeeptrainingError):
    """The training script reported no usable metric."""

    title = "No usable metric"


class RestoreError(KeeptrainingError):
    """The chain state of the run to resume is not usable: refused, missing, expired, or not this chain's."""

    title = "Chain state not restored"


class ChampionError(KeeptrainingError):
    """The champion to compare with (a folder with model-card.json, or a release) cannot be used."""

    title = "Champion not usable"


class ReportRefused(KeeptrainingError):
    """A fork's pull-request report (an artifact, untrusted) is malformed or names another commit."""

    title = "Pull request report refused"


class DispatchError(KeeptrainingError):
    """The next attempt could not be dispatched through the GitHub API."""

    title = "Dispatch of the next attempt failed"


class NotifyError(KeeptrainingError):
    """The notification mail could not be sent."""

    title = "Notification failed"


class PublishError(KeeptrainingError):
    """The model could not be published (a release, its assets) or a published one could not be read."""

    title = "Model not published"


class InternalError(KeeptrainingError):
    """A bug in keeptraining: an exception no stage expected. Reported, recorded, never hidden."""

    title = "keeptraining internal error"
    exit_code = 70

    details = ""  # the traceback, printed (with workflow commands stopped) for the bug report

    @classmethod
    def from_exception(cls, exc: BaseException) -> InternalError:
        detail = wording.one_line(exc, 300) or "no message"
        error = cls(
            f"Internal error (a bug in keeptraining): {type(exc).__name__}: {detail}",
            hint="Please report it with this log; the ledger and checkpoints are kept.",
        )
        error.details = "".join(traceback.format_exception(exc))
        return error
