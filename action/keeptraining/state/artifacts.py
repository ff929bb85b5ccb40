"""The names of the artifacts the state folder travels in between GitHub runs, written here once.

Artifact names are unique per run *attempt* on GitHub, not per run: each run attempt saves the state as
``keeptraining-state`` in its first try and ``keeptraining-state-attempt-N`` in its N-th (the action's
``state-artifact`` output; github/restore.py picks the newest attempt's). The reports that say where a
model is, the publish job and the restore all name them through ``artifact_name``.
"""

from __future__ import annotations

import re

STATE_ARTIFACT = "keeptraining-state"
TRIAL_ARTIFACT = "keeptraining-trial-"  # + the slot: keeptraining-trial-2
#: What follows an artifact's base name in run attempt 2 and later (the first try has none).
ATTEMPT_SUFFIX = re.compile(r"(?:-attempt-([1-9][0-9]{0,5}))?")


def run_attempt(raw: object) -> int:
    """A run attempt's number as ``GITHUB_RUN_ATTEMPT`` (or a ledger's ``run.attempt``) gives it: 1 when
    it is missing or not a number."""
    text = str(raw if raw is not None else "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 and int(text) >= 1 else 1


def artifact_name(base: str, run_attempt: int) -> str:
    """The name a run attempt gives an artifact: ``base`` in the first, ``base-attempt-N`` in the N-th."""
    return base if run_attempt <= 1 else f"{base}-attempt-{run_attempt}"


def attempt_of(name: str, base: str) -> int | None:
    """The run attempt that uploaded the artifact ``name`` of ``base`` (None: another artifact)."""
    if not name.startswith(base):
        return None
    match = ATTEMPT_SUFFIX.fullmatch(name[len(base) :])
    return None if match is None else int(match.group(1) or 1)
