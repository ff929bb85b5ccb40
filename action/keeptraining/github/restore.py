"""Resuming a chain: check the run to resume before anything is downloaded, then what arrived.

Each attempt's state (the ledger and the checkpoints) is uploaded as the artifact
``keeptraining-state`` of its run; the next attempt gets that run's id as ``resume-run-id``
and downloads the artifact with actions/download-artifact. Another run's output is untrusted,
so before the download ``verify`` asks the GitHub API that the run

* belongs to this repository and ran this repository's code (not a fork's pull request),
* is a run of this same workflow file,
* was started by a ``push`` or a ``workflow_dispatch``,
* trained the chain's commit: a push run is the commit's own run; a dispatched run got the
  branch head at dispatch time, which is the chain's commit or a later commit of the branch
  (a push that started no chain, e.g. ``[skip ci]``),
* still has its ``keeptraining-state`` artifact (not expired after its retention, not deleted).

After the download, ``check_restored`` checks that a ledger arrived and that it is this
chain's: same commit, and its last attempt is the one before this attempt.

The action runs ``keeptraining check-resume`` (``check_step``) before its checkout and
download steps; it never fails the step: it hands its verdict to the training step, which
records the attempt as failed (outputs, summary, mail) when the state cannot be restored
(``problem``).
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from github import GithubException
from github.Repository import Repository
from github.WorkflowRun import WorkflowRun

from keeptraining.engine import slices
from keeptraining.errors import ConfigError, DispatchError, LedgerError, RestoreError, quote
from keeptraining.github import dispatch
from keeptraining.state import ledger

STATE_ARTIFACT = "keeptraining-state"
#: Events whose runs may hand their state to a chain (never pull_request: code from a fork).
RESUMABLE_EVENTS = ("push", "workflow_dispatch")
FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_RUN_ID = re.compile(r"[0-9]{1,20}")
#: What the check step tells the training step (``steps.<id>.outputs.resume``).
RESUME_NONE, RESUME_OK, RESUME_REFUSED, INPUT_INVALID = "none", "ok", "refused", "invalid"


def fresh_chain_hint(branch: str = "") -> str:
    """How to start over when a chain cannot be continued."""
    where = f" on {branch}" if branch else ""
    return ("Start a fresh chain: push a commit, or run the workflow by hand (Actions → Run workflow"
            f"{where}) with attempt, commit and resume-run-id left empty.")


def parse_run_id(raw: str) -> int | None:
    """The ``resume-run-id`` input: None when empty; digits only (its value is never echoed:
    it could hold a workflow command after a newline)."""
    text = raw.strip()
    if not text:
        return None
    if not _RUN_ID.fullmatch(text):
        raise ConfigError("input resume-run-id is not valid; expected the id of the workflow run to resume "
                          "(digits only), as the previous attempt dispatches it.")
    return int(text)


def inputs_look_valid(env: Mapping[str, str]) -> bool:
    """Whether the chain's dispatch inputs are well formed (the training step reports which is not)."""
    commit = env.get("KT_INPUT_COMMIT", "").strip()
    epochs = env.get("KT_INPUT_EPOCHS", "").strip()
    attempt = env.get("KT_INPUT_ATTEMPT", "").strip()  # N, or N.K for an attempt's K-th run (slices.py)
    try:
        parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
    except ConfigError:
        return False
    return (not commit or FULL_SHA.fullmatch(commit) is not None) and \
        (not epochs or (epochs.isascii() and epochs.isdigit() and len(epochs) <= 9)) and \
        (not attempt or slices.parse_label(attempt) is not None)


@dataclass(frozen=True)
class Verified:
    """The run to resume, as the API describes it."""

    run_id: int
    event: str
    head_sha: str
    artifact_id: int
    expires_at: str

    def describe(self) -> str:
        return (f"Run {self.run_id} ({self.event}, commit {self.head_sha[:7]}) of this workflow may be "
                f"resumed: its {STATE_ARTIFACT} artifact {self.artifact_id} is kept until {self.expires_at}.")


def verify(ctx: dispatch.GitHubContext, run_id: int, chain_commit: str) -> Verified:
    """Check the run to resume through the API; RestoreError says what is wrong and what to do."""
    gh = dispatch.github_client(ctx)
    try:
        return _Verifier(ctx, gh.get_repo(ctx.repository), run_id, chain_commit).run()
    except GithubException as exc:
        raise RestoreError(f"the GitHub API refused to describe run {run_id} (HTTP {exc.status})",
                           hint="The token needs `actions: read` (`actions: write` includes it).") from None
    except (requests.RequestException, OSError) as exc:
        raise RestoreError(f"cannot reach the GitHub API at {ctx.api_url} to check run {run_id}: "
                           f"{type(exc).__name__}",
                           hint="Re-run the job when GitHub is reachable.") from None
    finally:
        gh.close()


class _Verifier:
    def __init__(self, ctx: dispatch.GitHubContext, repo: Repository, run_id: int, chain_commit: str) -> None:
        self.ctx, self.repo, self.run_id, self.commit = ctx, repo, run_id, chain_commit

    def refuse(self, what: str) -> RestoreError:
        return RestoreError(f"run {self.run_id} cannot be resumed: {what}",
                            hint=fresh_chain_hint(self.ctx.ref))

    def run(self) -> Verified:
        try:
            run = self.repo.get_workflow_run(self.run_id)
        except GithubException as exc:
            if exc.status == 404:
                raise self.refuse(f"there is no such run in {self.ctx.repository}") from None
            raise
        self._same_repository(run)
        self._same_workflow(run)
        if run.event not in RESUMABLE_EVENTS:
            raise self.refuse(f"it was started by a {run.event} event; only runs started by "
                              f"{' or '.join(RESUMABLE_EVENTS)} hand their state on")
        self._trained_the_commit(run)
        return self._artifact(run)

    def _same_repository(self, run: WorkflowRun) -> None:
        repository = (run.repository.full_name if run.repository else "").lower()
        head = (run.head_repository.full_name if run.head_repository else "").lower()
        if repository != self.ctx.repository.lower():
            raise self.refuse(f"it belongs to {repository or 'another repository'}")
        if head != repository:
            raise self.refuse(f"it ran code from {head or 'another repository'} (a fork), not from this "
                              "repository")

    def _same_workflow(self, run: WorkflowRun) -> None:
        mine = self.ctx.workflow.rsplit("/", 1)[-1]
        if mine.endswith((".yml", ".yaml")):
            theirs = (run.path or "").rsplit("/", 1)[-1].split("@")[0]
            if theirs != mine:
                raise self.refuse(f"it is a run of {theirs or 'another workflow'}, not of {mine}")
        elif run.name != self.ctx.workflow:  # only the workflow's name is known (act)
            raise self.refuse(f"it is a run of the workflow {run.name!r}, not of {self.ctx.workflow!r}")

    def _trained_the_commit(self, run: WorkflowRun) -> None:
        if run.head_sha == self.commit:
            return
        short = self.commit[:7]
        if run.event == "push":
            raise self.refuse(f"it trained commit {run.head_sha[:7]}, not the chain's commit {short}")
        # A dispatched run got the branch head at dispatch time: the chain's commit or a later one.
        try:
            status = self.repo.compare(self.commit, run.head_sha).status
        except GithubException as exc:
            if exc.status != 404:
                raise
            status = "unrelated"
        if status not in ("ahead", "identical"):
            raise self.refuse(f"it ran on commit {run.head_sha[:7]}, which does not follow the chain's "
                              f"commit {short} ({status})")

    def _artifact(self, run: WorkflowRun) -> Verified:
        found = [a for a in run.get_artifacts() if a.name == STATE_ARTIFACT]
        live = [a for a in found if not a.expired]
        if not found:
            raise self.refuse(f"it has no {STATE_ARTIFACT} artifact (deleted, or never uploaded: the run may "
                              "have failed before it saved the chain state)")
        if not live:
            expired = max(found, key=lambda a: a.id)
            when = _when(expired.expires_at)
            raise self.refuse(f"its {STATE_ARTIFACT} artifact expired ({when}); artifacts are kept for the "
                              "retention the action sets (14 days) or the repository allows")
        newest = max(live, key=lambda a: a.id)
        return Verified(run.id, run.event, run.head_sha, newest.id, _when(newest.expires_at))


def _when(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "the end of its retention"


def api_url_problem(env: Mapping[str, str]) -> str | None:
    """Why ``GITHUB_API_URL`` cannot be the API's address (not http(s), no host, a bad port), or None."""
    raw = env.get("GITHUB_API_URL", "")
    if not raw:
        return None
    try:
        parts = urllib.parse.urlsplit(raw)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return (f"GITHUB_API_URL = {quote(raw, 100)} is not an http(s) address of the GitHub API\n"
                "On GitHub the runner sets it; elsewhere set it to e.g. https://api.github.com.")
    return None


def check_step(env: Mapping[str, str], token: str) -> dict[str, str]:
    """``keeptraining check-resume``: the step outputs ``commit``, ``resume`` and ``problem``.

    ``resume``: ``none`` (a new chain), ``ok`` (download it), ``refused`` (``problem`` says
    why), or ``invalid`` (an input is malformed: nothing is checked out or downloaded, and the
    training step reports which input).
    """
    if not inputs_look_valid(env):
        return {"commit": "", "resume": INPUT_INVALID, "problem": ""}
    commit = env.get("KT_INPUT_COMMIT", "").strip() or env.get("GITHUB_SHA", "").strip()
    if not FULL_SHA.fullmatch(commit):
        return {"commit": "", "resume": INPUT_INVALID, "problem": ""}
    run_id = parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
    if run_id is None:
        return {"commit": commit, "resume": RESUME_NONE, "problem": ""}
    bad_url = api_url_problem(env)
    if bad_url:
        return {"commit": commit, "resume": RESUME_REFUSED, "problem": bad_url}
    try:
        ctx = dispatch.context_from_env(env, token, ref=env.get("KT_INPUT_BRANCH") or None)
        verified = verify(ctx, run_id, commit)
    except (RestoreError, DispatchError) as exc:
        return {"commit": commit, "resume": RESUME_REFUSED, "problem": str(exc)}
    except Exception as exc:  # this step never fails: the training step reports the problem
        text = str(exc).replace(token, "***") if token else str(exc)
        return {"commit": commit, "resume": RESUME_REFUSED,
                "problem": f"run {run_id} could not be checked ({type(exc).__name__}: {text[:200]})\n"
                           f"{fresh_chain_hint()}"}
    print(verified.describe())
    return {"commit": commit, "resume": RESUME_OK, "problem": ""}


def problem(env: Mapping[str, str], state_dir: Path, chain_commit: str,
            attempt: int | None) -> RestoreError | None:
    """For the training step: why the state to resume is not usable, or None (nothing to resume, or fine).

    Reads the check step's verdict (``KT_RESUME_CHECK``, ``KT_RESUME_PROBLEM``) and the
    download's outcome (``KT_RESTORE_OUTCOME``), then what arrived in ``state_dir``.
    """
    run_id = parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
    if run_id is None:
        return None
    verdict = env.get("KT_RESUME_CHECK", "")
    if verdict == RESUME_REFUSED:
        text = env.get("KT_RESUME_PROBLEM", "").strip() or f"run {run_id} cannot be resumed"
        message, _, hint = text.partition("\n")
        return RestoreError(message, hint=hint or fresh_chain_hint())
    if verdict and verdict != RESUME_OK:
        return RestoreError(f"the run to resume ({run_id}) was not checked (check step: {verdict[:40]!r})",
                            hint=fresh_chain_hint())
    outcome = env.get("KT_RESTORE_OUTCOME", "success" if verdict else "")
    if verdict and outcome != "success":
        return RestoreError(f"the chain state of run {run_id} could not be downloaded (download step: "
                            f"{outcome[:40] or 'skipped'}); the artifact may have expired or been deleted "
                            "meanwhile", hint=fresh_chain_hint())
    try:
        check_restored(state_dir, chain_commit, attempt, run_id)
    except (RestoreError, LedgerError) as exc:
        return exc if isinstance(exc, RestoreError) else RestoreError(exc.message, hint=fresh_chain_hint())
    return None


def check_restored(state_dir: Path, chain_commit: str, attempt: int | None, run_id: int) -> None:
    """The downloaded state is this chain's: a ledger of the same commit, ending just before ``attempt``
    (or with ``attempt`` itself unfinished: this run continues it)."""
    if not ledger.ledger_path(state_dir).is_file():
        raise RestoreError(f"the chain state of run {run_id} holds no ledger.json",
                           hint=fresh_chain_hint())
    restored = ledger.load(state_dir)
    commit = str(restored.chain.get("commit") or "")
    if chain_commit and commit and commit != chain_commit:
        raise RestoreError(f"the chain state of run {run_id} belongs to the chain of commit {commit[:7]}, "
                           f"not {chain_commit[:7]}", hint=fresh_chain_hint())
    last = restored.last
    if attempt is not None and last is not None and slices.continued(restored, attempt) is None \
            and last.attempt != attempt - 1:
        raise RestoreError(f"the chain state of run {run_id} ends at attempt {last.attempt}, and this is "
                           f"attempt {attempt}", hint="Pass the run of the attempt just before this one as "
                           f"resume-run-id. {fresh_chain_hint()}")
