"""The GitHub reads of a dispatch (repository, workflow, branch head, runs), each failure translated into
a DispatchError that says what to fix.

The token never appears in a message, a log line or an exception: PyGithub and requests exceptions
are wrapped, never chained (``WorkflowApi.scrub``).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests
from github import Github, GithubException
from github.Repository import Repository
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun

from keeptraining.errors import DispatchError
from keeptraining.output import wording

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"
#: Runs looked at when searching for an earlier dispatch of the same attempt, or a newer chain.
RUN_SCAN_LIMIT = 100
#: Statuses of a run that has not ended (a pending run waits for its concurrency group).
NOT_ENDED = frozenset({"queued", "pending", "waiting", "requested", "in_progress"})


@dataclass(frozen=True)
class GitHubContext:
    """Where and as whom to dispatch."""

    api_url: str
    token: str = field(repr=False)
    repository: str
    workflow: str
    ref: str
    server_url: str = DEFAULT_SERVER_URL
    run_id: str | None = None


def attempt_marker(attempt: int, run: int = 1) -> re.Pattern[str]:
    """What re-run protection looks for in a run's title (the workflow's ``run-name``):
    ``attempt 3`` (never ``attempt 3.2``), or ``attempt 3.2`` for the attempt's second run."""
    if run > 1:
        return re.compile(rf"\battempt {attempt}\.{run}\b", re.IGNORECASE)
    return re.compile(rf"\battempt {attempt}\b(?!\.\d)", re.IGNORECASE)


def label(attempt: int, run: int) -> str:
    return f"{attempt}.{run}" if run > 1 else str(attempt)


#: The chain's identity in a dispatched run's title: the run it resumes (the run-name shows resume-run-id).
_RESUMES = re.compile(r"\bafter run (\d{1,20})\b", re.IGNORECASE)


def resumed_run(title: str) -> str | None:
    """The run that a run's title says it resumes (``after run 123``), or None when it does not say."""
    match = _RESUMES.search(title)
    return match.group(1) if match else None


def message_of(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str):
            return message
    if isinstance(data, str):
        return data
    return ""


def header(exc: GithubException, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def is_rate_limit(exc: GithubException) -> bool:
    if exc.status == 429:
        return True
    if exc.status != 403:
        return False
    text = message_of(exc).lower()
    return (
        "rate limit" in text
        or header(exc, "retry-after") is not None
        or header(exc, "x-ratelimit-remaining") == "0"
    )


def short(sha: str) -> str:
    return sha[:7]


class WorkflowApi:
    """The reads a dispatch makes, through one client, with GitHub's refusals explained."""

    def __init__(self, ctx: GitHubContext, gh: Github) -> None:
        self.ctx = ctx
        self.gh = gh
        self.default_branch = "usually main"  # known once the repository is read

    # ---- messages: never the token, never a raw exception
    def scrub(self, text: str) -> str:
        if self.ctx.token:
            text = text.replace(self.ctx.token, "***")
        return wording.one_line(text, 300)

    def unreachable(self, doing: str, exc: BaseException) -> DispatchError:
        return DispatchError(
            f"cannot reach the GitHub API at {self.ctx.api_url} while {doing}: "
            f"{type(exc).__name__}: {self.scrub(str(exc))}",
            hint="Check GITHUB_API_URL and the network; re-running this step is safe: "
            "it does not dispatch twice.",
        )

    def refused(self, doing: str, exc: GithubException, not_found: str = "") -> DispatchError:
        status = exc.status
        message = self.scrub(message_of(exc)) or "no message"
        if status == 401:
            return DispatchError(
                f"GitHub rejected the token while {doing} (401 {message})",
                hint="Pass a valid token as `github-token`; the default ${{ github.token }} works.",
            )
        if status == 403 and not is_rate_limit(exc):
            return DispatchError(
                f"GitHub refused {doing} (403 {message})",
                hint="The token may not start workflows: give the job `permissions: actions: write` "
                "(and `contents: read`), or pass a token that has it.",
            )
        if status == 404:
            return DispatchError(
                f"{not_found or self.workflow_missing()} (404 {message} while {doing})",
                hint="The workflow file must exist on the repository's default branch "
                f"({self.default_branch}), and the token needs `actions: write` "
                "(`permissions: actions: write` in the workflow).",
            )
        if status == 422:
            return self.unprocessable(doing, message)
        return DispatchError(f"GitHub answered {status} while {doing}: {message}")

    def workflow_missing(self) -> str:
        return f"workflow {self.ctx.workflow!r} was not found in {self.ctx.repository}"

    def unprocessable(self, doing: str, message: str) -> DispatchError:
        wf = self.ctx.workflow
        unexpected = re.search(r"Unexpected inputs provided: (\[.*?\])", message)
        if unexpected:
            return DispatchError(
                f"the workflow {wf!r} does not declare the inputs {unexpected.group(1)} (422 while {doing})",
                hint=f"Declare them under `on.workflow_dispatch.inputs` in {wf} on {self.ctx.ref} "
                "(the chain passes them to the next attempt), or stop passing them.",
            )
        required = re.search(r"Required input '([^']+)' not provided", message)
        if required:
            return DispatchError(
                f"the workflow {wf!r} requires the input {required.group(1)!r}, "
                "which the chain does not pass",
                hint=f"Give it a default in {wf}, or make it optional.",
            )
        if "No ref found" in message:
            return DispatchError(
                f"branch {self.ctx.ref!r} does not exist in {self.ctx.repository} (422 while {doing})",
                hint="Dispatch on an existing branch.",
            )
        if "workflow_dispatch" in message and "trigger" in message:
            return DispatchError(
                f"the workflow {wf!r} cannot be dispatched: {message}",
                hint=f"Add `on: workflow_dispatch` (with the chain's inputs) to {wf}. If it is a reusable "
                "workflow (keeptraining.yml), the chain dispatches the workflow that calls it, which "
                "GITHUB_WORKFLOW_REF names on GitHub; act does not set it (and sets GITHUB_WORKFLOW to the "
                "called workflow's name): pass --env GITHUB_WORKFLOW_REF=OWNER/REPO/.github/workflows/"
                "<caller>.yml@refs/heads/<branch>.",
            )
        if "disabled" in message:
            return DispatchError(
                f"the workflow {wf!r} is disabled: {message}",
                hint="Enable it in the repository's Actions tab.",
            )
        return DispatchError(f"GitHub refused the dispatch (422 while {doing}): {message}")

    def get(self, doing: str, call: Callable[[], object], not_found: str = "") -> object:
        try:
            return call()
        except GithubException as exc:
            raise self.refused(doing, exc, not_found) from None
        except (requests.RequestException, OSError) as exc:
            raise self.unreachable(doing, exc) from None

    # ---- reads
    def repository(self) -> Repository:
        # Eager: one GET that proves the token sees the repository, and names its default branch.
        repo = self.get(
            f"reading repository {self.ctx.repository}",
            lambda: self.gh.get_repo(self.ctx.repository),
            not_found=f"repository {self.ctx.repository} was not found, or the token cannot see it",
        )
        assert isinstance(repo, Repository)
        self.default_branch = repo.default_branch
        return repo

    def workflow(self, repo: Repository) -> Workflow:
        key = self.ctx.workflow
        if key.isdigit():
            found = self.get(f"looking up workflow {key}", lambda: repo.get_workflow(int(key)))
            assert isinstance(found, Workflow)
            return found
        if key.endswith((".yml", ".yaml")):
            name = key.rsplit("/", 1)[-1]
            found = self.get(f"looking up workflow {name}", lambda: repo.get_workflow(name))
            assert isinstance(found, Workflow)
            return found
        # A workflow `name:` (act sets only GITHUB_WORKFLOW): find its file.
        listed = self.get("listing the repository's workflows", lambda: list(repo.get_workflows()))
        assert isinstance(listed, list)
        matches = [w for w in listed if w.name == key]
        if len(matches) == 1:
            log.info("workflow %r is %s", key, matches[0].path)
            return matches[0]
        if not matches:
            names = ", ".join(repr(w.name) for w in listed) or "none"
            raise DispatchError(
                f"no workflow named {key!r} in {self.ctx.repository} (workflows: {names})",
                hint="Pass the workflow file name (e.g. continuous-training.yml) instead of its name.",
            )
        raise DispatchError(
            f"{len(matches)} workflows are named {key!r} in {self.ctx.repository}: "
            + ", ".join(w.path for w in matches),
            hint="Pass the workflow file name instead of its name.",
        )

    def branch_head(self, repo: Repository) -> str:
        branch = self.get(
            f"reading branch {self.ctx.ref}",
            lambda: repo.get_branch(self.ctx.ref),
            not_found=f"branch {self.ctx.ref!r} does not exist in {self.ctx.repository}",
        )
        sha = getattr(getattr(branch, "commit", None), "sha", None)
        if not isinstance(sha, str):
            raise DispatchError(f"GitHub returned no head commit for branch {self.ctx.ref!r}")
        return sha

    def created_at(self, repo: Repository, run_id: str | None) -> datetime.datetime | None:
        """When run ``run_id`` was created: only a run dispatched after this one can be its next
        attempt; only a chain started after the chain's first run can supersede it.

        None when unknown (no run id, or a server that does not know it).
        """
        if not (run_id and run_id.isdigit()):
            return None
        try:
            return repo.get_workflow_run(int(run_id)).created_at
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise self.refused(f"reading run {run_id}", exc) from None
        except (requests.RequestException, OSError) as exc:
            raise self.unreachable(f"reading run {run_id}", exc) from None

    def find_run(
        self,
        workflow: Workflow,
        attempt: int,
        next_run: int = 1,
        since: datetime.datetime | None = None,
        known_runs: Mapping[int, str] | None = None,
    ) -> WorkflowRun | None:
        """A workflow_dispatch run of this workflow on the branch titled ``attempt N``, created
        after this run (an older chain has its own attempt N), that is queued, running or
        succeeded (a cancelled or failed one is no longer the chain's next attempt). Any commit:
        a dispatched run gets the branch head, which a push that started no chain moves on.
        Of this chain: the run an earlier try of this run dispatched (``known_runs``: run id -> attempt
        label), else a run whose title names this run as the one it resumes, or names none (an older
        run-name)."""
        pattern = attempt_marker(attempt, next_run)
        known = [
            run_id
            for run_id, known_label in (known_runs or {}).items()
            if known_label == label(attempt, next_run)
        ]

        def ours(run: WorkflowRun) -> bool:
            if known:
                return run.id in known
            title = run.display_title or ""
            return bool(pattern.search(title)) and resumed_run(title) in (None, self.ctx.run_id)

        def scan() -> WorkflowRun | None:
            runs = workflow.get_runs(branch=self.ctx.ref, event="workflow_dispatch")
            for index, run in enumerate(runs):
                if index >= RUN_SCAN_LIMIT:
                    break
                if since is not None and run.created_at < since:
                    continue
                alive = run.status in NOT_ENDED or run.conclusion == "success"
                if alive and ours(run):
                    return run
            return None

        found = self.get(f"listing the runs of {self.ctx.workflow} on {self.ctx.ref}", scan)
        return found if isinstance(found, WorkflowRun) else None

    def newer_chain(
        self, workflow: Workflow, chain_commit: str, head: str, since: datetime.datetime | None
    ) -> WorkflowRun | None:
        """The first run of a chain for another commit of the branch, started after this chain
        (when this chain's start is unknown: a chain for the branch head itself)."""
        first = attempt_marker(1)

        def scan() -> WorkflowRun | None:
            for index, run in enumerate(workflow.get_runs(branch=self.ctx.ref)):
                if index >= RUN_SCAN_LIMIT or (since is not None and run.created_at < since):
                    break  # newest first: the rest are older than this chain
                if run.head_sha == chain_commit or (since is None and run.head_sha != head):
                    continue
                if run.event == "push" or (
                    run.event == "workflow_dispatch" and first.search(run.display_title or "")
                ):
                    return run
            return None

        found = self.get(f"listing the runs of {self.ctx.workflow} on {self.ctx.ref}", scan)
        return found if isinstance(found, WorkflowRun) else None
