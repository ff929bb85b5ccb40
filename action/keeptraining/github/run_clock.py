"""When this workflow run started, from GitHub's API (``run_started_at``): what an attempt's runner
minutes count from (engine/cost.py).

A run's ``run_started_at`` is when its current attempt started (a re-run resets it), before the
runner's set-up, the install and the image pull: the minutes GitHub bills start there. Reading it is
best effort: without a token, on an API error or a value that is not a time, the attempt's minutes
count from the action's first step instead (``KT_ACTION_STARTED``).
"""

from __future__ import annotations

import datetime as dt

from github import GithubException
from requests import RequestException

from keeptraining.github.dispatch import GitHubContext, github_client


def run_started_at(ctx: GitHubContext | None) -> str | None:
    """The run's ``run_started_at`` as ISO 8601 UTC, or None when it cannot be read."""
    if ctx is None or not ctx.run_id or not ctx.run_id.isdigit():
        return None
    try:
        run = github_client(ctx).get_repo(ctx.repository).get_workflow_run(int(ctx.run_id))
        started = run.run_started_at
    except (GithubException, RequestException, OSError, ValueError, TypeError, AttributeError):
        return None
    if not isinstance(started, dt.datetime):
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.timezone.utc)
    return started.astimezone(dt.timezone.utc).isoformat()
