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

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from keeptraining.config.settings import Config
from keeptraining.output import workflow_commands as gha

ENV = "KT_DEADLINE"
STARTED_ENV = "KT_ACTION_STARTED"  # Unix time of the action's first step (set by action.yml)
DEFAULT_JOB_MINUTES = 360  # GitHub's default timeout-minutes, and its hosted runners' maximum
MARGIN_SHARE = 0.1  # of a limit, kept free for what follows the training ...
MARGIN_MIN_S = 5.0  # ... at least this ...
MARGIN_MAX_S = 900.0  # ... and at most 15 minutes
TOKEN_LIFETIME_S = 24 * 3600  # GITHUB_TOKEN expires at most this long after the job started
#: The longest a run's job limit is taken to be, from the action's start: an hour below the token's
#: lifetime for the steps before the action (checkout, set-up) and a late clock.
TOKEN_SAFE_S = TOKEN_LIFETIME_S - 3600


def margin(limit_s: float) -> float:
    """Seconds kept free before a limit of ``limit_s`` seconds: 10 %, between 5 s and 15 min, and
    never more than half of it (a 4 s timeout still leaves 2 s to train)."""
    return min(MARGIN_MAX_S, max(MARGIN_MIN_S, limit_s * MARGIN_SHARE), limit_s / 2)


@dataclass(frozen=True)
class Budget:
    """The limits of one run; ``deadline`` turns them into a Unix time once training starts."""

    timeout_s: float  # keeptraining kills the training after this many seconds
    budget_s: float | None = None  # time_budget: seconds the run may train
    job_deadline: float | None = None  # Unix time by which the training must end for the job's sake
    token_capped: bool = False  # job_deadline is the GITHUB_TOKEN's lifetime, not the job's timeout

    def deadline(self, started: float) -> int:
        """Whole Unix seconds by which training that started at ``started`` should have stopped."""
        limits = [started + self.timeout_s - margin(self.timeout_s)]
        if self.budget_s is not None:
            limits.append(started + self.budget_s)
        if self.job_deadline is not None:
            limits.append(self.job_deadline)
        return math.floor(min(limits))

    def env(self, started: float | None = None) -> dict[str, str]:
        """``{"KT_DEADLINE": ...}`` for training that starts now (or at ``started``)."""
        return {ENV: str(self.deadline(time.time() if started is None else started))}

    def describe(self) -> str:
        """What bounds a run's training, for the log."""
        parts = [f"timeout {self.timeout_s:g} s"]
        if self.budget_s is not None:
            parts.insert(0, f"time_budget {self.budget_s:g} s")
        if self.job_deadline is not None:
            when = time.strftime("%H:%M:%S UTC", time.gmtime(self.job_deadline))
            limit = "GITHUB_TOKEN's 24 h lifetime" if self.token_capped else "the job's limit"
            parts.append(f"{limit} (training ends by {when})")
        return ", ".join(parts)


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
    return Budget(timeout_s=config.timeout, budget_s=config.time_budget, job_deadline=deadline,
                  token_capped=deadline is not None and job_limit_s(config)[1])
