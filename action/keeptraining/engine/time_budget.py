"""When a run's training must stop: the deadline handed to the script as ``KT_DEADLINE``.

A run may train until the earliest of three limits, each known before it starts:

* ``time_budget`` (seconds, optional): what the user allows one run to train, counted from the
  moment the training starts;
* the job's own limit, on GitHub Actions: the job is stopped ``job_timeout_minutes`` (the job's
  ``timeout-minutes``; GitHub's default and its hosted runners' maximum, 360, when unset) after
  it started, counted from the action's first step (``KT_ACTION_STARTED``, Unix time), less a
  margin for what comes after the training (evaluate, save, record, dispatch, mail, upload);
* ``timeout`` (seconds per run), where keeptraining kills the training, less the same margin,
  so that the script stops on its own first.

The job's limit is never taken as more than ``TOKEN_SAFE_S`` (23 h) after the action's start:
``GITHUB_TOKEN`` expires 24 hours after the job starts at the latest (GitHub's docs, "Automatic
token authentication"), and the end of a run needs it (upload the state, set the commit status,
dispatch the next attempt). A self-hosted job may run 5 days and ``job-timeout-minutes`` allows
that much, but each run then slices its training before the token expires, and the next run
(dispatched with a fresh token) goes on.

The script gets the earliest as ``KT_DEADLINE`` (whole Unix seconds) and stops at an epoch
boundary before it; the attempt then goes on in the next run (``slices.py``). The Keras adapter
does this for an unmodified script; a script that follows the contract may read it.
"""

from __future__ import annotations

from collections.abc import Mapping

from keeptraining.config.settings import Config
from keeptraining.contract.deadline import MARGIN_MAX_S, MARGIN_MIN_S, MARGIN_SHARE, Budget, margin
from keeptraining.contract.env import DEADLINE as ENV
from keeptraining.output import workflow_commands as gha

# Budget (the limits of one run, and the KT_DEADLINE they give) is the training contract's
# (contract/deadline.py); it is named here too, beside the rule that fills it.
__all__ = [
    "DEFAULT_JOB_MINUTES",
    "ENV",
    "MARGIN_MAX_S",
    "MARGIN_MIN_S",
    "MARGIN_SHARE",
    "STARTED_ENV",
    "TOKEN_LIFETIME_S",
    "TOKEN_SAFE_S",
    "Budget",
    "budget",
    "job_deadline",
    "job_limit_s",
    "margin",
]

STARTED_ENV = "KT_ACTION_STARTED"  # Unix time of the action's first step (set by action.yml)
DEFAULT_JOB_MINUTES = 360  # GitHub's default timeout-minutes, and its hosted runners' maximum
TOKEN_LIFETIME_S = 24 * 3600  # GITHUB_TOKEN expires at most this long after the job started
#: The longest a run's job limit is taken to be, from the action's start: an hour below the token's
#: lifetime for the steps before the action (checkout, set-up) and a late clock.
TOKEN_SAFE_S = TOKEN_LIFETIME_S - 3600


def job_limit_s(config: Config) -> tuple[float, bool]:
    """Seconds from the action's start to the job's end as a run must plan for it, and whether that
    is the token's cap (``TOKEN_SAFE_S``) rather than ``job_timeout_minutes``."""
    limit = 60.0 * (config.job_timeout_minutes or DEFAULT_JOB_MINUTES)
    return (TOKEN_SAFE_S, True) if limit > TOKEN_SAFE_S else (limit, False)


def job_deadline(config: Config, env: Mapping[str, str]) -> float | None:
    """On GitHub Actions: the Unix time by which training must end so the job can save and upload
    before its ``timeout-minutes``; None elsewhere, or when the action's start is unknown."""
    if not gha.in_actions(env):
        return None
    raw = env.get(STARTED_ENV, "").strip()
    if not raw.isdigit():
        return None
    limit, _capped = job_limit_s(config)
    return int(raw) + limit - margin(limit)


def budget(config: Config, env: Mapping[str, str]) -> Budget:
    """The limits of this run's training."""
    deadline = job_deadline(config, env)
    return Budget(
        timeout_s=config.timeout,
        budget_s=config.time_budget,
        job_deadline=deadline,
        token_capped=deadline is not None and job_limit_s(config)[1],
    )
