"""Dispatch the next attempt of the chain: the same workflow, on the same branch, through the API.

One POST to ``/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches`` starts the
next run. The POST is not idempotent: GitHub may start the run and still answer with an
error (a 5xx, a dropped connection), and a step may be re-run by hand. So:

* the client retries GETs only (PyGithub's default ``GithubRetry`` also retries POST,
  which sent the same dispatch up to three times);
* before the first POST, and before every retry of it, the runs of this workflow on this
  commit are listed, and a run whose title names ``attempt N`` means the attempt was
  already dispatched: it is reported, not sent again (the workflow's ``run-name`` must
  contain ``attempt N``; ``run_name_warning`` says so when it does not). A later run of an
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
from dataclasses import dataclass, field

import requests
from github import Auth, Github, GithubException
from github.Repository import Repository
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun
from urllib3.util.retry import Retry

from keeptraining.errors import DispatchError
from keeptraining.output import workflow_commands as gha

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"

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
#: Runs looked at when searching for an earlier dispatch of the same attempt, or a newer chain.
RUN_SCAN_LIMIT = 100
#: Statuses of a run that has not ended (a pending run waits for its concurrency group).
NOT_ENDED = frozenset({"queued", "pending", "waiting", "requested", "in_progress"})
HTTP_TIMEOUT = 30
#: urllib3's back-off factor for the client's own GET retries (0 s, then 2 s, 4 s ...).
CLIENT_BACKOFF_FACTOR = 1.0

_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504, 429})


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
) -> DispatchResult:
    """Dispatch attempt ``next_attempt`` of the chain on ``ctx.ref``, once (``next_run`` > 1: the
    next run of an attempt that trains across runs, titled ``attempt N.K``).

    ``chain_run_id``: the run of the chain's first attempt (a newer chain is one that started
    after it); default this run. Raises DispatchError when GitHub refuses (with what to fix)
    or keeps failing.
    """
    gh = github_client(ctx)
    try:
        return _Dispatcher(ctx, gh, sleep, next_run).run(chain_commit, next_attempt, inputs, chain_run_id)
    finally:
        gh.close()


def attempt_marker(attempt: int, run: int = 1) -> re.Pattern[str]:
    """What re-run protection looks for in a run's title (the workflow's ``run-name``):
    ``attempt 3`` (never ``attempt 3.2``), or ``attempt 3.2`` for the attempt's second run."""
    if run > 1:
        return re.compile(rf"\battempt {attempt}\.{run}\b", re.IGNORECASE)
    return re.compile(rf"\battempt {attempt}\b(?!\.\d)", re.IGNORECASE)


def _label(attempt: int, run: int) -> str:
    return f"{attempt}.{run}" if run > 1 else str(attempt)


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
    return (f"This run's title {title[:80]!r} does not say 'attempt {_label(attempt, run)}', so a "
            "re-run of this job could not tell that the next attempt was already dispatched, and would "
            "dispatch it twice. "
            "Set the workflow's run-name, e.g. `run-name: Continuous training · attempt "
            "${{ inputs.attempt || 1 }} · ${{ inputs.epochs || 'first' }} epochs`.")


# --------------------------------------------------------------------------- internals


class _Transient(Exception):  # an outcome of one POST, handled by the retry loop
    def __init__(self, problem: str, exc: GithubException | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.exc = exc


class _NoRunDetails(Exception):  # an outcome of one POST, handled by the retry loop
    """The server refused the return_run_details field (older GitHub Enterprise)."""


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str):
            return message
    if isinstance(data, str):
        return data
    return ""


def _header(exc: GithubException, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _is_rate_limit(exc: GithubException) -> bool:
    if exc.status == 429:
        return True
    if exc.status != 403:
        return False
    text = _message(exc).lower()
    return (
        "rate limit" in text
        or _header(exc, "retry-after") is not None
        or _header(exc, "x-ratelimit-remaining") == "0"
    )


def _rejects_run_details(exc: GithubException) -> bool:
    """An older GitHub Enterprise refusing the return_run_details field."""
    return exc.status == 400 or (exc.status == 422 and "return_run_details" in _message(exc))


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(sha: str) -> str:
    return sha[:7]


class _Dispatcher:
    def __init__(self, ctx: GitHubContext, gh: Github, sleep: Callable[[float], None],
                 run: int = 1) -> None:
        self.ctx = ctx
        self.gh = gh
        self.sleep = sleep
        self._default_branch = "usually main"
        self.since: datetime.datetime | None = None  # this run's creation time, when known
        self.next_run = run  # > 1: the next run of a sliced attempt (title ``attempt N.K``)

    def _which(self, attempt: int) -> str:
        """``attempt 3``, or ``attempt 3.2`` for the next run of a sliced attempt."""
        return f"attempt {_label(attempt, self.next_run)}"

    # ---- messages: never the token, never a raw exception
    def _scrub(self, text: str) -> str:
        if self.ctx.token:
            text = text.replace(self.ctx.token, "***")
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."

    def _unreachable(self, doing: str, exc: BaseException) -> DispatchError:
        return DispatchError(
            f"cannot reach the GitHub API at {self.ctx.api_url} while {doing}: "
            f"{type(exc).__name__}: {self._scrub(str(exc))}",
            hint="Check GITHUB_API_URL and the network; re-running this step is safe: "
            "it does not dispatch twice.",
        )

    def _refused(self, doing: str, exc: GithubException, not_found: str = "") -> DispatchError:
        status = exc.status
        message = self._scrub(_message(exc)) or "no message"
        if status == 401:
            return DispatchError(
                f"GitHub rejected the token while {doing} (401 {message})",
                hint="Pass a valid token as `github-token`; the default ${{ github.token }} works.",
            )
        if status == 403 and not _is_rate_limit(exc):
            return DispatchError(
                f"GitHub refused {doing} (403 {message})",
                hint="The token may not start workflows: give the job `permissions: actions: write` "
                "(and `contents: read`), or pass a token that has it.",
            )
        if status == 404:
            return DispatchError(
                f"{not_found or self._workflow_missing()} (404 {message} while {doing})",
                hint="The workflow file must exist on the repository's default branch "
                f"({self._default_branch}), and the token needs `actions: write` "
                "(`permissions: actions: write` in the workflow).",
            )
        if status == 422:
            return self._unprocessable(doing, message)
        return DispatchError(f"GitHub answered {status} while {doing}: {message}")

    def _workflow_missing(self) -> str:
        return f"workflow {self.ctx.workflow!r} was not found in {self.ctx.repository}"

    def _unprocessable(self, doing: str, message: str) -> DispatchError:
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

    def _get(self, doing: str, call: Callable[[], object], not_found: str = "") -> object:
        try:
            return call()
        except GithubException as exc:
            raise self._refused(doing, exc, not_found) from None
        except (requests.RequestException, OSError) as exc:
            raise self._unreachable(doing, exc) from None

    # ---- steps
    def _repository(self) -> Repository:
        # Eager: one GET that proves the token sees the repository, and names its default branch.
        repo = self._get(
            f"reading repository {self.ctx.repository}",
            lambda: self.gh.get_repo(self.ctx.repository),
            not_found=f"repository {self.ctx.repository} was not found, or the token cannot see it",
        )
        assert isinstance(repo, Repository)
        self._default_branch = repo.default_branch
        return repo

    def _workflow(self, repo: Repository) -> Workflow:
        key = self.ctx.workflow
        if key.isdigit():
            found = self._get(f"looking up workflow {key}", lambda: repo.get_workflow(int(key)))
            assert isinstance(found, Workflow)
            return found
        if key.endswith((".yml", ".yaml")):
            name = key.rsplit("/", 1)[-1]
            found = self._get(f"looking up workflow {name}", lambda: repo.get_workflow(name))
            assert isinstance(found, Workflow)
            return found
        # A workflow `name:` (act sets only GITHUB_WORKFLOW): find its file.
        listed = self._get("listing the repository's workflows", lambda: list(repo.get_workflows()))
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

    def _branch_head(self, repo: Repository) -> str:
        branch = self._get(
            f"reading branch {self.ctx.ref}",
            lambda: repo.get_branch(self.ctx.ref),
            not_found=f"branch {self.ctx.ref!r} does not exist in {self.ctx.repository}",
        )
        sha = getattr(getattr(branch, "commit", None), "sha", None)
        if not isinstance(sha, str):
            raise DispatchError(f"GitHub returned no head commit for branch {self.ctx.ref!r}")
        return sha

    def _created_at(self, repo: Repository, run_id: str | None) -> datetime.datetime | None:
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
            raise self._refused(f"reading run {run_id}", exc) from None
        except (requests.RequestException, OSError) as exc:
            raise self._unreachable(f"reading run {run_id}", exc) from None

    def _find_run(self, workflow: Workflow, attempt: int) -> WorkflowRun | None:
        """A workflow_dispatch run of this workflow on the branch titled ``attempt N``, created
        after this run (an older chain has its own attempt N), that is queued, running or
        succeeded (a cancelled or failed one is no longer the chain's next attempt). Any commit:
        a dispatched run gets the branch head, which a push that started no chain moves on."""
        pattern = attempt_marker(attempt, self.next_run)

        def scan() -> WorkflowRun | None:
            runs = workflow.get_runs(branch=self.ctx.ref, event="workflow_dispatch")
            for index, run in enumerate(runs):
                if index >= RUN_SCAN_LIMIT:
                    break
                if self.since is not None and run.created_at < self.since:
                    continue
                alive = run.status in NOT_ENDED or run.conclusion == "success"
                if alive and pattern.search(run.display_title or ""):
                    return run
            return None

        found = self._get(f"listing the runs of {self.ctx.workflow} on {self.ctx.ref}", scan)
        return found if isinstance(found, WorkflowRun) else None

    def _newer_chain(self, workflow: Workflow, chain_commit: str, head: str,
                     since: datetime.datetime | None) -> WorkflowRun | None:
        """The first run of a chain for another commit of the branch, started after this chain
        (when this chain's start is unknown: a chain for the branch head itself)."""
        first = attempt_marker(1)

        def scan() -> WorkflowRun | None:
            for index, run in enumerate(workflow.get_runs(branch=self.ctx.ref)):
                if index >= RUN_SCAN_LIMIT or (since is not None and run.created_at < since):
                    break  # newest first: the rest are older than this chain
                if run.head_sha == chain_commit or (since is None and run.head_sha != head):
                    continue
                if run.event == "push" or (run.event == "workflow_dispatch"
                                           and first.search(run.display_title or "")):
                    return run
            return None

        found = self._get(f"listing the runs of {self.ctx.workflow} on {self.ctx.ref}", scan)
        return found if isinstance(found, WorkflowRun) else None

    def _delay(self, exc: GithubException | None, tries: int) -> float:
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (tries - 1))
        if exc is None:
            return backoff
        retry_after = _header(exc, "retry-after")
        if retry_after is not None:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, RETRY_AFTER_CAP)
        if _is_rate_limit(exc):
            if _header(exc, "x-ratelimit-remaining") == "0":
                reset = _header(exc, "x-ratelimit-reset")
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
            if exc.status in _TRANSIENT_STATUSES or _is_rate_limit(exc):
                problem = f"HTTP {exc.status}: {self._scrub(_message(exc)) or 'no message'}"
                raise _Transient(problem, exc) from None
            raise self._refused(f"dispatching {self.ctx.workflow}", exc) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})", None) from None
        except (requests.RequestException, OSError) as exc:
            raise self._unreachable(f"dispatching {self.ctx.workflow}", exc) from None
        # A server that ignores the field answers 204: create_dispatch then returns True.
        return result if isinstance(result, WorkflowRun) else None

    def run(self, chain_commit: str, attempt: int, inputs: dict[str, str],
            chain_run_id: str | None = None) -> DispatchResult:
        ctx = self.ctx
        repo = self._repository()
        workflow = self._workflow(repo)
        head = self._branch_head(repo)
        self.since = self._created_at(repo, ctx.run_id)
        if head != chain_commit:
            started = self._created_at(repo, chain_run_id) if chain_run_id != ctx.run_id else self.since
            newer = self._newer_chain(workflow, chain_commit, head, started or self.since)
            if newer is not None:
                return DispatchResult(
                    False,
                    f"a newer chain took over branch {ctx.ref}: commit {_short(newer.head_sha)} "
                    f"(run {newer.id}) after {_short(chain_commit)}; not dispatching",
                    superseded_by=newer.head_sha,
                    superseded_run_url=newer.html_url,
                )
            log.info("branch %s moved to %s, but no chain started for it: attempt %d still trains %s",
                     ctx.ref, _short(head), attempt, _short(chain_commit))
        earlier = self._find_run(workflow, attempt)
        if earlier is not None:
            return DispatchResult(
                True,
                f"{self._which(attempt)} was already dispatched for {_short(chain_commit)} "
                f"(run {earlier.id}); "
                "not dispatching it again",
                run_id=earlier.id,
                run_url=earlier.html_url,
                reused=True,
            )

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
                gha.warn(f"Dispatch of {self._which(attempt)} failed ({problem}); checking that it did not "
                         f"start a run, then retrying in {delay:.0f} s.", title="Dispatch retried")
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
            return self._find_run(workflow, attempt)
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
        gha.warn(f"GitHub answered {problem}, but run {run.id} for {self._which(attempt)} exists: "
                 "not sending again.", title="Dispatch not repeated")
        return DispatchResult(
            True,
            f"dispatched {self._which(attempt)} for {_short(chain_commit)} (run {run.id}); "
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
                f"dispatched {self._which(attempt)} on {self.ctx.ref} for {_short(chain_commit)} "
                f"(run {run.id})",
                run_id=run.id,
                run_url=run.html_url,
            )
        # No run details (older GitHub Enterprise): the run shows up in the list shortly.
        for look in range(FIND_NEW_RUN_TRIES):
            try:
                found = self._find_run(workflow, attempt)
            except DispatchError:
                found = None
            if found is not None:
                return self._accepted(workflow, chain_commit, attempt, found)
            if look + 1 < FIND_NEW_RUN_TRIES:
                self.sleep(FIND_NEW_RUN_WAIT)
        return DispatchResult(
            True,
            f"dispatched {self._which(attempt)} on {self.ctx.ref} for {_short(chain_commit)} "
            "(this GitHub does not report the new run's id)",
        )
