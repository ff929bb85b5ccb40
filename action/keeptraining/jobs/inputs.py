"""What the GitHub jobs (attempt, trial, merge) are given: the CLI's flags as one typed, frozen object
(``JobInputs``, built in cli.py), and the readers that combine it with the action's inputs
(``KT_INPUT_*``) and the run's context (``GITHUB_*``).

The readers check what they read and raise ConfigError, so a bad input is reported by the job's own
failure path (outputs, summary), not before it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptraining.engine import slices
from keeptraining.errors import ConfigError, DispatchError
from keeptraining.github import dispatch, restore, run_clock
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha

TOKEN_VARS = ("KT_GITHUB_TOKEN", "GITHUB_TOKEN")
MAX_SLOT = 20  # the schema's bound on parallel (and the reusable workflow's matrix table)

_COMMIT = restore.FULL_SHA
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,255}")


@dataclass(frozen=True)
class JobInputs:
    """The flags of ``keeptraining attempt | trial | merge``; each job reads the ones it has."""

    repo: Path
    attempt: int | None = None  # --attempt: the attempt (a round's first) to train
    commit: str | None = None  # --commit: the commit this chain trains
    branch: str | None = None  # --branch: the chain's branch
    dispatch: bool = False  # --dispatch: dispatch the next attempt (or round) when the chain goes on
    slot: int | None = None  # --slot: a trial job's slot in the round

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> JobInputs:
        """From the parsed command line (which is only read, never changed)."""
        return cls(
            repo=Path(args.repo),
            attempt=getattr(args, "attempt_number", None),
            commit=getattr(args, "commit", None),
            branch=getattr(args, "branch", None),
            dispatch=bool(getattr(args, "dispatch", False)),
            slot=getattr(args, "slot", None),
        )


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if value and not pattern.fullmatch(value):
        raise ConfigError(
            f"{what} = {value!r} is not valid.",
            hint=f"Pass a {what} such as the workflow's github.sha (the full commit id) / github.ref_name.",
        )
    return value


def chain_info(inputs: JobInputs, env: Mapping[str, str]) -> dict[str, Any]:
    """The chain's commit, branch and repository, for the ledger."""
    commit = inputs.commit or env.get("KT_INPUT_COMMIT") or env.get("GITHUB_SHA", "")
    branch = inputs.branch or env.get("KT_INPUT_BRANCH") or env.get("GITHUB_REF_NAME", "")
    info = {
        "commit": _checked(commit.strip(), _COMMIT, "commit"),
        "branch": _checked(branch.strip(), _BRANCH, "branch"),
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "server_url": env.get("GITHUB_SERVER_URL", ""),
    }
    return {k: v for k, v in info.items() if v}


def run_info(env: Mapping[str, str]) -> dict[str, Any]:
    """This workflow run (id, attempt, URL), for the ledger; empty outside GitHub Actions."""
    run_id = env.get("GITHUB_RUN_ID")
    if not run_id or not gha.in_actions(env):
        return {}
    url = (
        f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env.get('GITHUB_REPOSITORY', '')}"
        f"/actions/runs/{run_id}"
    )
    return {"id": run_id, "attempt": env.get("GITHUB_RUN_ATTEMPT", "1"), "url": url}


def timed_run_info(env: Mapping[str, str], info: Mapping[str, Any]) -> dict[str, Any]:
    """``run_info`` with the run's ``started_at`` (its ``run_started_at``, read through the API when a
    token allows): what the runner minutes of an attempt or a trial count from (engine/cost.py)."""
    started = run_clock.run_started_at(github_context(env, token(env), info))
    return {**run_info(env), **({"started_at": started} if started else {})}


def run_url(env: Mapping[str, str]) -> str | None:
    url = run_info(env).get("url")
    return str(url) if url else None


def attempt_number(inputs: JobInputs, env: Mapping[str, str]) -> int | None:
    label = attempt_label(inputs, env)
    return label[0] if label is not None else None


def attempt_label(inputs: JobInputs, env: Mapping[str, str]) -> tuple[int, int] | None:
    """(attempt, run within it): the input ``3`` is (3, 1), ``3.2`` (3, 2) (slices.py); None when unset."""
    if inputs.attempt is not None:
        return int(inputs.attempt), 1
    raw = env.get("KT_INPUT_ATTEMPT", "").strip()
    if not raw:
        return None
    label = slices.parse_label(raw)
    if label is None:
        raise ConfigError(
            f"input attempt = {raw!r} is not valid; expected a whole number >= 1 (or N.K, "
            "the K-th run of attempt N)."
        )
    return label


def wants_dispatch(inputs: JobInputs, env: Mapping[str, str]) -> bool:
    """``--dispatch`` or the action input ``dispatch: true``."""
    raw = env.get("KT_INPUT_DISPATCH", "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigError(f"input dispatch = {raw!r} is not valid; expected true or false.")
    return inputs.dispatch or raw == "true"


def slot_number(inputs: JobInputs, env: Mapping[str, str]) -> int:
    """This trial job's slot: ``--slot`` or the action input ``trial`` (the matrix value), 1..20."""
    raw = str(inputs.slot) if inputs.slot is not None else env.get("KT_INPUT_TRIAL", "").strip()
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_SLOT):
        raise ConfigError(
            f"trial = {raw[:20]!r} is not a trial slot; expected a whole number from 1 to "
            f"{MAX_SLOT} (the reusable workflow passes its matrix value)."
        )
    return int(raw)


def runner_info(env: Mapping[str, str]) -> dict[str, Any]:
    """Which job and runner trained the trial, for the ledger (names only, never a token)."""
    names = {"job": "GITHUB_JOB", "runner": "RUNNER_NAME", "os": "RUNNER_OS", "arch": "RUNNER_ARCH"}
    return {key: wording.one_line(env[var], 100) for key, var in names.items() if env.get(var)}


def token(env: Mapping[str, str]) -> str:
    """The GitHub token keeptraining was given (``KT_GITHUB_TOKEN``, else ``GITHUB_TOKEN``)."""
    return next((env[v] for v in TOKEN_VARS if env.get(v)), "")


def github_context(
    env: Mapping[str, str], token_: str, info: Mapping[str, Any]
) -> dispatch.GitHubContext | None:
    """Where this run's GitHub is, when keeptraining runs in GitHub Actions with a token; else None."""
    if not (gha.in_actions(env) and token_ and env.get("GITHUB_REPOSITORY")):
        return None
    try:
        return dispatch.context_from_env(env, token_, ref=info.get("branch") or None)
    except DispatchError:
        return None
