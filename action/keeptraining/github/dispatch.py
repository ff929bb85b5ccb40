"""Dispatch the next attempt of the chain: the same workflow, on the same branch, through the API.

One POST to ``/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches`` starts the
next run. The POST is not idempotent: GitHub may start the run and still answer with an
error (a 5xx, a dropped connection), and a step may be re-run by hand. So:

* the client retries GETs only (PyGithub's default ``GithubRetry`` also retries POST,
  which sent the same dispatch up to three times);
* before the first POST, and before every retry of it, the runs of this workflow on this
  commit are listed, and a run whose title names ``attempt N`` means the attempt was
  already dispatched: it is reported, not sent again (the workflow's ``run-name`` must
  contain ``attempt N``; ``run_name_warning`` says so when it does not). Two chains may train
  the same commit (a push's and a manual new chain): a run is this chain's next attempt when its
  id is the one an earlier try of this run dispatched (``known_runs``: the dispatch answers with the
  new run's id, and the ledger keeps it), else when its title names this run as the one it resumes
  (``after run <id>``: the run-name shows ``resume-run-id``); a title without that (an older
  run-name) matches on ``attempt N`` alone. A later run of an
  attempt that trains across runs (slices.py) is dispatched as attempt ``N.K`` and titled so:
  ``attempt 3`` and ``attempt 3.2`` never match each other. Only runs that are
  queued, pending, running or succeeded count: a cancelled or failed next run does not, so
  re-running its parent dispatches it again;
* a newer chain on the branch supersedes this one: when the branch head moved and a run of
  this workflow for another commit started a chain after this one (a push run, or a manual
  run of attempt 1), nothing is dispatched and the result names the commit that took over.
  A push that started no chain (``[skip ci]``, a paths filter, a push by GITHUB_TOKEN) does
  not stop the chain: it goes on training its own commit.

The token never appears in a message, a log line or an exception: PyGithub and requests
exceptions are wrapped, never chained.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
from github import Auth, Github, GithubException
from github.Repository import Repository
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun
from urllib3.util.retry import Retry

from keeptraining.errors import DispatchError
from keeptraining.github.workflow_runs import (
    DEFAULT_API_URL,
    DEFAULT_SERVER_URL,
    GitHubContext,
    WorkflowApi,
    attempt_marker,
    header,
    is_rate_limit,
    label,
    message_of,
    short,
)
from keeptraining.output import workflow_commands as gha

# Named here too: the callers dispatch with a GitHubContext and look for the attempt marker.
__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_SERVER_URL",
    "DispatchResult",
    "GitHubContext",
    "attempt_marker",
    "context_from_env",
    "dispatch_next",
    "github_client",
    "run_name_warning",
    "workflow_from_ref",
]

log = logging.getLogger(__name__)

#: POSTs of one dispatch, at most (each after checking the previous one did not start a run).
MAX_DISPATCH_TRIES = 5
#: Back-off between tries without a Retry-After: 2, 4, 8, 16 ... seconds, at most BACKOFF_CAP.
BACKOFF_BASE = 2.0
BACKOFF_CAP = 30.0
#: A Retry-After (or a rate-limit reset) is honoured up to this many seconds.
RETRY_AFTER_CAP = 60.0
#: GitHub's advice for a secondary rate limit that names no wait.
SECONDARY_RATE_LIMIT_WAIT = 60.0
#: A primary rate limit that resets later than this is not waited for.
RATE_LIMIT_MAX_WAIT = 300.0
#: Without run details (older GitHub Enterprise), look for the new run this often.
FIND_NEW_RUN_TRIES = 3
FIND_NEW_RUN_WAIT = 2.0
HTTP_TIMEOUT = 30
#: urllib3's back-off factor for the client's own GET retries (0 s, then 2 s, 4 s ...).
CLIENT_BACKOFF_FACTOR = 1.0

_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504, 429})


@dataclass(frozen=True)
class DispatchResult:
    dispatched: bool
    reason: str
    run_id: int | None = None
    run_url: str | None = None
    reused: bool = False
    superseded_by: str | None = None  # the commit whose chain took over the branch
    superseded_run_url: str | None = None


def workflow_from_ref(workflow_ref: str) -> str | None:
    """``owner/repo/.github/workflows/x.yml@refs/heads/main`` -> ``x.yml``."""
    path = workflow_ref.rsplit("@", 1)[0]
    if "/.github/workflows/" not in f"/{path}":
        return None
    name = path.rsplit("/", 1)[-1]
    return name or None


def context_from_env(
    env: Mapping[str, str], token: str, *, workflow: str | None = None, ref: str | None = None
) -> GitHubContext:
    """The context of the running workflow (GITHUB_* variables), with explicit overrides.

    The workflow is the explicit value, else the file named by GITHUB_WORKFLOW_REF, else
    GITHUB_WORKFLOW (the workflow's ``name:``; act sets only that), resolved later by name.
    The ref is the explicit branch, else the branch this run is on.
    """
    if not token:
        raise DispatchError(
            "no GitHub token to dispatch the next attempt with",
            hint="Pass the action input `github-token` (its default, ${{ github.token }}, works "
            "when the job has `permissions: actions: write`).",
        )
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", repository):
        raise DispatchError(
            f"GITHUB_REPOSITORY is {repository!r}, expected 'owner/name'",
            hint="Run inside GitHub Actions (or act), or set GITHUB_REPOSITORY.",
        )
    chosen = (workflow or "").strip()
    if not chosen:
        chosen = (
            workflow_from_ref(env.get("GITHUB_WORKFLOW_REF", "")) or env.get("GITHUB_WORKFLOW", "").strip()
        )
    if not chosen:
        raise DispatchError(
            "cannot tell which workflow to dispatch: neither GITHUB_WORKFLOW_REF nor GITHUB_WORKFLOW is set",
            hint="Pass the workflow file name explicitly (e.g. continuous-training.yml).",
        )
    branch = (ref or "").strip()
    if not branch:
        github_ref = env.get("GITHUB_REF", "")
        if env.get("GITHUB_REF_TYPE") == "branch" and env.get("GITHUB_REF_NAME"):
            branch = env["GITHUB_REF_NAME"]
        elif github_ref.startswith("refs/heads/"):
            branch = github_ref.removeprefix("refs/heads/")
    if not branch:
        raise DispatchError(
            f"the next attempt must be dispatched on a branch, and this run is on {env.get('GITHUB_REF')!r}",
            hint="Run the chain from a branch push or a workflow_dispatch on a branch, or pass the branch.",
        )
    return GitHubContext(
        api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
        token=token,
        repository=repository,
        workflow=chosen,
        ref=branch,
        server_url=(env.get("GITHUB_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/"),
        run_id=env.get("GITHUB_RUN_ID") or None,
    )


def github_client(ctx: GitHubContext, *, lazy: bool = False) -> Github:
    """A PyGithub client that retries GETs on 429/5xx and connection faults, never POSTs.

    ``lazy``: objects are made from their URL without a GET (e.g. a commit to post a status on).
    """
    retry = Retry(
        total=4,
        connect=3,
        read=2,
        status=3,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=frozenset({429, 500, 502, 503, 504}),
        backoff_factor=CLIENT_BACKOFF_FACTOR,
        backoff_max=BACKOFF_CAP,
        respect_retry_after_header=True,
        retry_after_max=int(RETRY_AFTER_CAP),
        raise_on_status=False,
    )
    return Github(
        base_url=ctx.api_url,
        auth=Auth.Token(ctx.token),
        retry=retry,
        timeout=HTTP_TIMEOUT,
        user_agent="keeptraining",
        # One write per run; the spacing between retried writes is ours (back-off below).
        seconds_between_requests=0,
        seconds_between_writes=0,
        lazy=lazy,
    )


def dispatch_next(
    ctx: GitHubContext,
    *,
    chain_commit: str,
    next_attempt: int,
    inputs: dict[str, str],
    chain_run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    next_run: int = 1,
    known_runs: Mapping[int, str] | None = None,
) -> DispatchResult:
    """Dispatch attempt ``next_attempt`` of the chain on ``ctx.ref``, once (``next_run`` > 1: the
    next run of an attempt that trains across runs, titled ``attempt N.K``).

    ``chain_run_id``: the run of the chain's first attempt (a newer chain is one that started
    after it); default this run. ``known_runs``: run id -> attempt label (``3``, ``3.2``) that
    earlier tries of this run dispatched (a re-run). Raises DispatchError when GitHub refuses (with
    what to fix) or keeps failing.
    """
    gh = github_client(ctx)
    try:
        dispatcher = _Dispatcher(ctx, gh, sleep, next_run)
        dispatcher.known_runs = dict(known_runs or {})
        return dispatcher.run(chain_commit, next_attempt, inputs, chain_run_id)
    finally:
        gh.close()


def run_name_warning(ctx: GitHubContext, attempt: int, run: int = 1) -> str | None:
    """A warning with the fix when this run's title lacks ``attempt N``: without it, a re-run
    cannot see that the next attempt was already dispatched. None when the title has it, or
    when this run is unknown (no run id, a server that does not know it)."""
    if not (ctx.run_id and ctx.run_id.isdigit()):
        return None
    gh = github_client(ctx)
    try:
        title = gh.get_repo(ctx.repository).get_workflow_run(int(ctx.run_id)).display_title
    except (GithubException, requests.RequestException, OSError):
        return None
    finally:
        gh.close()
    if attempt_marker(attempt, run).search(title or ""):
        return None
    return (
        f"This run's title {title[:80]!r} does not say 'attempt {label(attempt, run)}', so a "
        "re-run of this job could not tell that the next attempt was already dispatched, and would "
        "dispatch it twice. "
        "Set the workflow's run-name, e.g. `run-name: Continuous training · attempt "
        "${{ inputs.attempt || 1 }} · ${{ inputs.epochs || 'first' }} epochs · after run "
        "${{ inputs.resume-run-id || 'none' }}` (the run it resumes tells chains on one commit apart)."
    )


# --------------------------------------------------------------------------- internals


class _Transient(Exception):  # an outcome of one POST, handled by the retry loop
    def __init__(self, problem: str, exc: GithubException | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.exc = exc


class _NoRunDetails(Exception):  # an outcome of one POST, handled by the retry loop
    """The server refused the return_run_details field (older GitHub Enterprise)."""


def _rejects_run_details(exc: GithubException) -> bool:
    """An older GitHub Enterprise refusing the return_run_details field."""
    return exc.status == 400 or (exc.status == 422 and "return_run_details" in message_of(exc))


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Dispatcher:
    def __init__(self, ctx: GitHubContext, gh: Github, sleep: Callable[[float], None], run: int = 1) -> None:
        self.ctx = ctx
        self.api = WorkflowApi(ctx, gh)
        self.sleep = sleep
        self.since: datetime.datetime | None = None  # this run's creation time, when known
        self.next_run = run  # > 1: the next run of a sliced attempt (title ``attempt N.K``)
        self.known_runs: dict[int, str] = {}  # run id -> attempt label an earlier try of this run dispatched

    def _which(self, attempt: int) -> str:
        """``attempt 3``, or ``attempt 3.2`` for the next run of a sliced attempt."""
        return f"attempt {label(attempt, self.next_run)}"

    def _delay(self, exc: GithubException | None, tries: int) -> float:
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (tries - 1))
        if exc is None:
            return backoff
        retry_after = header(exc, "retry-after")
        if retry_after is not None:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, RETRY_AFTER_CAP)
        if is_rate_limit(exc):
            if header(exc, "x-ratelimit-remaining") == "0":
                reset = header(exc, "x-ratelimit-reset")
                if reset and reset.isdigit():
                    wait = int(reset) - time.time() + 1
                    if wait > RATE_LIMIT_MAX_WAIT:
                        raise DispatchError(
                            f"the token's API rate limit is exhausted for {int(wait // 60)} more minutes",
                            hint="Re-run this step later; it will not dispatch twice.",
                        )
                    return max(1.0, min(wait, RATE_LIMIT_MAX_WAIT))
            return max(backoff, SECONDARY_RATE_LIMIT_WAIT)
        return backoff

    def _post(self, workflow: Workflow, inputs: dict[str, str], details: bool) -> WorkflowRun | None:
        """One POST. None: accepted without run details.

        Raises _Transient (may be retried), _NoRunDetails, or DispatchError (refused).
        """
        result: WorkflowRun | bool
        try:
            if details:
                result = workflow.create_dispatch(self.ctx.ref, inputs, throw=True, return_run_details=True)
            else:
                result = workflow.create_dispatch(self.ctx.ref, inputs, throw=True)
        except GithubException as exc:
            if details and _rejects_run_details(exc):
                raise _NoRunDetails from None
            if exc.status in _TRANSIENT_STATUSES or is_rate_limit(exc):
                problem = f"HTTP {exc.status}: {self.api.scrub(message_of(exc)) or 'no message'}"
                raise _Transient(problem, exc) from None
            raise self.api.refused(f"dispatching {self.ctx.workflow}", exc) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})", None) from None
        except (requests.RequestException, OSError) as exc:
            raise self.api.unreachable(f"dispatching {self.ctx.workflow}", exc) from None
        # A server that ignores the field answers 204: create_dispatch then returns True.
        return result if isinstance(result, WorkflowRun) else None

    def run(
        self, chain_commit: str, attempt: int, inputs: dict[str, str], chain_run_id: str | None = None
    ) -> DispatchResult:
        repo = self.api.repository()
        workflow = self.api.workflow(repo)
        head = self.api.branch_head(repo)
        self.since = self.api.created_at(repo, self.ctx.run_id)
        if head != chain_commit:
            superseded = self._superseded(repo, workflow, chain_commit, head, attempt, chain_run_id)
            if superseded is not None:
                return superseded
        earlier = self.api.find_run(workflow, attempt, self.next_run, self.since, self.known_runs)
        if earlier is not None:
            return DispatchResult(
                True,
                f"{self._which(attempt)} was already dispatched for {short(chain_commit)} "
                f"(run {earlier.id}); "
                "not dispatching it again",
                run_id=earlier.id,
                run_url=earlier.html_url,
                reused=True,
            )
        return self._post_until_accepted(workflow, chain_commit, attempt, inputs)

    def _superseded(
        self,
        repo: Repository,
        workflow: Workflow,
        chain_commit: str,
        head: str,
        attempt: int,
        chain_run_id: str | None,
    ) -> DispatchResult | None:
        """The branch moved on: a newer chain took it over (nothing is dispatched), or None."""
        ctx = self.ctx
        started = self.api.created_at(repo, chain_run_id) if chain_run_id != ctx.run_id else self.since
        newer = self.api.newer_chain(workflow, chain_commit, head, started or self.since)
        if newer is not None:
            return DispatchResult(
                False,
                f"a newer chain took over branch {ctx.ref}: commit {short(newer.head_sha)} "
                f"(run {newer.id}) after {short(chain_commit)}; not dispatching",
                superseded_by=newer.head_sha,
                superseded_run_url=newer.html_url,
            )
        log.info(
            "branch %s moved to %s, but no chain started for it: attempt %d still trains %s",
            ctx.ref,
            short(head),
            attempt,
            short(chain_commit),
        )
        return None

    def _post_until_accepted(
        self, workflow: Workflow, chain_commit: str, attempt: int, inputs: dict[str, str]
    ) -> DispatchResult:
        """POST the dispatch; after a failure, check that it started nothing before sending it again."""
        details = True
        tries = 0
        while True:
            tries += 1
            failure: _Transient | None = None
            try:
                new_run = self._post(workflow, inputs, details)
            except _NoRunDetails:
                log.info(
                    "this GitHub does not know return_run_details (older Enterprise); dispatching without it"
                )
                details = False
                tries -= 1  # the refused request started nothing
                continue
            except _Transient as transient:
                failure = transient
            else:
                return self._accepted(workflow, chain_commit, attempt, new_run)
            # Outside the except block, so that nothing raised below carries a PyGithub exception.
            problem = failure.problem
            delay = self._delay(failure.exc, tries)
            last = tries >= MAX_DISPATCH_TRIES
            if not last:
                gha.warn(
                    f"Dispatch of {self._which(attempt)} failed ({problem}); checking that it did not "
                    f"start a run, then retrying in {delay:.0f} s.",
                    title="Dispatch retried",
                )
            # Before sending again (and after the last failure): did that POST start the run?
            self.sleep(delay)
            found = self._verify(workflow, chain_commit, attempt, problem)
            if found is not None:
                return self._found_after_error(attempt, chain_commit, found, problem)
            if last:
                raise DispatchError(
                    f"GitHub did not accept the dispatch of {self._which(attempt)} after {tries} tries "
                    f"(last: {problem})",
                    hint="GitHub may be having an outage; re-run this step later: "
                    "it will not dispatch twice.",
                )

    def _verify(
        self, workflow: Workflow, chain_commit: str, attempt: int, problem: str
    ) -> WorkflowRun | None:
        try:
            return self.api.find_run(workflow, attempt, self.next_run, self.since, self.known_runs)
        except DispatchError as exc:
            raise DispatchError(
                f"the dispatch of {self._which(attempt)} failed ({problem}), and whether GitHub started the "
                f"run anyway could not be checked: {exc.message}",
                hint=f"Look in the Actions tab for a run titled '{self._which(attempt)}'; it is not sent "
                "again blindly, to avoid a duplicate. Re-running this step is safe.",
            ) from None

    def _found_after_error(
        self, attempt: int, chain_commit: str, run: WorkflowRun, problem: str
    ) -> DispatchResult:
        gha.warn(
            f"GitHub answered {problem}, but run {run.id} for {self._which(attempt)} exists: "
            "not sending again.",
            title="Dispatch not repeated",
        )
        return DispatchResult(
            True,
            f"dispatched {self._which(attempt)} for {short(chain_commit)} (run {run.id}); "
            f"GitHub answered {problem} but had started the run, so it was not sent again",
            run_id=run.id,
            run_url=run.html_url,
        )

    def _accepted(
        self, workflow: Workflow, chain_commit: str, attempt: int, run: WorkflowRun | None
    ) -> DispatchResult:
        if run is not None:
            return DispatchResult(
                True,
                f"dispatched {self._which(attempt)} on {self.ctx.ref} for {short(chain_commit)} "
                f"(run {run.id})",
                run_id=run.id,
                run_url=run.html_url,
            )
        # No run details (older GitHub Enterprise): the run shows up in the list shortly.
        for look in range(FIND_NEW_RUN_TRIES):
            try:
                found = self.api.find_run(workflow, attempt, self.next_run, self.since, self.known_runs)
            except DispatchError:
                found = None
            if found is not None:
                return self._accepted(workflow, chain_commit, attempt, found)
            if look + 1 < FIND_NEW_RUN_TRIES:
                self.sleep(FIND_NEW_RUN_WAIT)
        return DispatchResult(
            True,
            f"dispatched {self._which(attempt)} on {self.ctx.ref} for {short(chain_commit)} "
            "(this GitHub does not report the new run's id)",
        )
