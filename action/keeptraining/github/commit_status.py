"""The chain's verdict on its commit: a commit status with the context ``keeptraining``.

``pending`` while the chain runs (each attempt sets it when it starts, linking its run, and
again when it dispatches the next attempt, linking that one), ``success`` when the threshold is
reached, ``failure`` when the budget is exhausted or an attempt failed, ``error`` when a newer
chain took over the branch. Branch protection can require it.

It needs ``statuses: write`` in the workflow's permissions; input ``commit-status: false``
turns it off. A status that cannot be posted is a warning (with the fix), never a failed
attempt: the training and the chain matter more than the check mark.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from github import GithubException

from keeptraining.config.settings import Config
from keeptraining.engine import strategy
from keeptraining.engine.plan import Decision
from keeptraining.github import dispatch
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import summary as report
from keeptraining.state.ledger import Ledger

CONTEXT = "keeptraining"
PR_CONTEXT = "keeptraining/pull-request"  # the pull-request check's verdict: candidate vs champion
#: GitHub refuses a longer description.
DESCRIPTION_LIMIT = 140


@dataclass(frozen=True)
class Status:
    state: str  # pending | success | failure | error
    description: str
    target_url: str | None


def starting(config: Config, attempt: int | None, run_url: str | None) -> Status:
    """The status while this attempt trains."""
    which = f"attempt {attempt}/{config.max_attempts}" if attempt else "an attempt"
    return Status(
        "pending", f"Training {which}: {config.metric} ≥ {report.fmt_threshold(config.threshold)}", run_url
    )


def verdict(
    config: Config, ledger: Ledger, decision: Decision, run_url: str | None, next_url: str | None = None
) -> Status:
    """The status after this attempt: the chain's verdict, or still pending with the next run's link."""
    text = report.verdict(ledger, config, decision)
    states = {
        strategy.CHAIN_REACHED: "success",
        strategy.EXHAUSTED: "failure",
        strategy.CHAIN_FAILED: "failure",
        strategy.CHAIN_STOPPED: "failure",
        strategy.SUPERSEDED: "error",
    }
    state = states.get(decision.kind, "pending")
    return Status(state, text, next_url if state == "pending" and next_url else run_url)


def post(ctx: dispatch.GitHubContext, sha: str, status: Status, context: str = CONTEXT) -> bool:
    """Set the status on ``sha`` (under ``context``); a problem is a warning with the fix. True when set."""
    description = report.one_line(status.description, DESCRIPTION_LIMIT)
    url = report.safe_url(status.target_url)
    gh = dispatch.github_client(ctx, lazy=True)  # no GET: the commit is only a place to post to
    try:
        commit = gh.get_repo(ctx.repository).get_commit(sha)
        kwargs = {"target_url": url} if url else {}
        commit.create_status(status.state, description=description, context=context, **kwargs)
    except GithubException as exc:
        fix = (
            "give the job `permissions: statuses: write`, or set the action input `commit-status: false`"
            if exc.status in (403, 404)
            else "it is set again by the next attempt"
        )
        gha.annotate(
            "warning",
            f"The commit status {context!r} could not be set on {sha[:7]} (HTTP {exc.status}): {fix}.",
            title="Commit status not set",
        )
        return False
    except (requests.RequestException, OSError) as exc:
        gha.annotate(
            "warning",
            f"The commit status {context!r} could not be set on {sha[:7]}: "
            f"cannot reach {ctx.api_url} ({type(exc).__name__}).",
            title="Commit status not set",
        )
        return False
    finally:
        gh.close()
    return True
