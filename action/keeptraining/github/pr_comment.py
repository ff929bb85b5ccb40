"""keeptraining's one comment on a pull request: found again by its hidden marker, edited in place.

Every run of the pull-request check writes the same comment: the first creates it, later ones
(a new push to the pull request, a re-run) find it by ``reports.comparison.MARKER`` among the
pull request's comments *written by a bot* (a person quoting the marker does not capture it) and
edit it. Never a second comment.

It needs ``pull-requests: write`` (``issues: write`` also works) in the job's permissions. A
comment that cannot be written is a warning with the fix, never a failed check: the commit
status and the job summary still say the verdict. A fork's pull request gets a read-only token:
the check leaves its report as an artifact, and ``keeptraining pr-report`` (in the shipped
``workflow_run`` workflow) posts it.
"""

from __future__ import annotations

import requests
from github import GithubException

from keeptraining.github import dispatch
from keeptraining.output import workflow_commands as gha

#: GitHub refuses a longer comment body.
BODY_LIMIT = 65536
_WRITE_FIX = "give the job `permissions: pull-requests: write`"


def upsert(ctx: dispatch.GitHubContext, number: int, body: str, marker: str) -> str | None:
    """Create or edit keeptraining's comment on pull request ``number``; its URL, or None (warned)."""
    if len(body) > BODY_LIMIT:
        body = body[: BODY_LIMIT - 100].rstrip() + "\n\n_(cut: the comment was longer than GitHub allows)_\n"
    gh = dispatch.github_client(ctx, lazy=True)
    try:
        issue = gh.get_repo(ctx.repository).get_issue(number)  # lazy: no GET, only its URL
        mine = [
            c
            for c in issue.get_comments()
            if marker in (c.body or "") and (c.user is None or c.user.type == "Bot")
        ]
        if mine:
            mine[0].edit(body)
            return str(mine[0].html_url)
        return str(issue.create_comment(body).html_url)
    except GithubException as exc:
        fix = _WRITE_FIX if exc.status in (403, 404) else "the next run of the check writes it again"
        gha.annotate(
            "warning",
            f"The pull request comment could not be written on #{number} (HTTP {exc.status}): {fix}.",
            title="Pull request comment not written",
        )
        return None
    except (requests.RequestException, OSError) as exc:
        gha.annotate(
            "warning",
            f"The pull request comment could not be written on #{number}: cannot reach "
            f"{ctx.api_url} ({type(exc).__name__}).",
            title="Pull request comment not written",
        )
        return None
    finally:
        gh.close()
