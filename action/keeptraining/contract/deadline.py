"""The deadline of one run's training, as the training contract hands it over (``KT_DEADLINE``).

``Budget`` holds the limits known before the run starts (engine/time_budget.py works them out
from the configuration and the job); ``deadline`` turns them into the Unix time by which the
script must have saved, once the training starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from keeptraining.contract.env import DEADLINE

MARGIN_SHARE = 0.1  # of a limit, kept free for what follows the training ...
MARGIN_MIN_S = 5.0  # ... at least this ...
MARGIN_MAX_S = 900.0  # ... and at most 15 minutes


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
        return {DEADLINE: str(self.deadline(time.time() if started is None else started))}

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
