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
__all__ = ["DEFAULT_JOB_MINUTES", "ENV", "MARGIN_MAX_S", "MARGIN_MIN_S", "MARGIN_SHARE", "STARTED_ENV",
           "Budget", "budget", "job_deadline", "margin"]

STARTED_ENV = "KT_ACTION_STARTED"  # Unix time of the action's first step (set by action.yml)
DEFAULT_JOB_MINUTES = 360  # GitHub's default timeout-minutes, and its hosted runners' maximum
def job_deadline(config: Config, env: Mapping[str, str]) -> float | None:
    """On GitHub Actions: the Unix time by which training must end so the job can save and upload
    before its ``timeout-minutes``; None elsewhere, or when the action's start is unknown."""
    if not gha.in_actions(env):
        return None
    raw = env.get(STARTED_ENV, "").strip()
    if not raw.isdigit():
        return None
    limit = 60.0 * (config.job_timeout_minutes or DEFAULT_JOB_MINUTES)
    return int(raw) + limit - margin(limit)


def budget(config: Config, env: Mapping[str, str]) -> Budget:
    """The limits of this run's training."""
    return Budget(timeout_s=config.timeout, budget_s=config.time_budget,
                  job_deadline=job_deadline(config, env))
