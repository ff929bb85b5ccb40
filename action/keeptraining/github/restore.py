"""Resuming a chain: check the run to resume before anything is downloaded, then what arrived.

Each attempt's state (the ledger and the checkpoints) is uploaded as the artifact
``keeptraining-state`` of its run; the next attempt gets that run's id as ``resume-run-id``
and downloads the artifact with actions/download-artifact, by the id that ``verify`` chose.

Artifact names are unique per run *attempt* on GitHub, not per run: a re-run of the job uploads a
second state to the same run (``overwrite: true`` deletes only within its own attempt), and download
by name returns the highest artifact id, which need not be the newest upload. So each run attempt
names its artifacts with its number (``artifact_name``: ``keeptraining-state`` for the first try,
``keeptraining-state-attempt-2`` for the second ...), and the next attempt takes the newest run
attempt's state (``newest``), never the order of ids. A round's merge job picks its trials' artifacts
the same way (``trial_artifacts``): per slot, the newest run attempt's, so after "Re-run failed jobs"
the trials that were not re-run are read from the earlier attempt (through the REST API, with the
token: the token-less internal API sees only the current attempt's artifacts).

Another run's output is untrusted,
so before the download ``verify`` asks the GitHub API that the run

* belongs to this repository and ran this repository's code (not a fork's pull request),
* is a run of this same workflow file,
* was started by a ``push`` or a ``workflow_dispatch``,
* trained the chain's commit: a push run is the commit's own run; a dispatched run got the
  branch head at dispatch time, which is the chain's commit or a later commit of the branch
  (a push that started no chain, e.g. ``[skip ci]``),
* still has a ``keeptraining-state`` artifact (not expired after its retention, not deleted); the
  newest run attempt's is the one to download.

After the download, ``check_restored`` checks that a ledger arrived and that it is this
chain's: same commit, and its last attempt is the one before this attempt.

The action runs ``keeptraining check-resume`` (``check_step``) before its checkout and
download steps; it never fails the step: it hands its verdict to the training step, which
records the attempt as failed (outputs, summary, mail) when the state cannot be restored
(``problem``).
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
import urllib.parse
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from github import GithubException
from github.Artifact import Artifact
from github.Repository import Repository
from github.WorkflowRun import WorkflowRun

from keeptraining.engine import slices
from keeptraining.errors import ConfigError, DispatchError, LedgerError, RestoreError, quote
from keeptraining.github import dispatch
from keeptraining.state import artifacts as state_artifacts
from keeptraining.state import ledger
from keeptraining.state.artifacts import STATE_ARTIFACT, TRIAL_ARTIFACT, artifact_name, attempt_of

_TRIAL_NAME = re.compile(
    re.escape(TRIAL_ARTIFACT) + r"([1-9][0-9]?)" + state_artifacts.ATTEMPT_SUFFIX.pattern
)
#: Events whose runs may hand their state to a chain (never pull_request: code from a fork).
RESUMABLE_EVENTS = ("push", "workflow_dispatch")
FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_RUN_ID = re.compile(r"[0-9]{1,20}")
#: What the check step tells the training step (``steps.<id>.outputs.resume``).
RESUME_NONE, RESUME_OK, RESUME_REFUSED, INPUT_INVALID = "none", "ok", "refused", "invalid"


def fresh_chain_hint(branch: str = "") -> str:
    """How to start over when a chain cannot be continued."""
    where = f" on {branch}" if branch else ""
    return (
        "Start a fresh chain: push a commit, or run the workflow by hand (Actions → Run workflow"
        f"{where}) with attempt, commit and resume-run-id left empty."
    )


def parse_run_id(raw: str) -> int | None:
    """The ``resume-run-id`` input: None when empty; digits only (its value is never echoed:
    it could hold a workflow command after a newline)."""
    text = raw.strip()
    if not text:
        return None
    if not _RUN_ID.fullmatch(text):
        raise ConfigError(
            "input resume-run-id is not valid; expected the id of the workflow run to resume "
            "(digits only), as the previous attempt dispatches it."
        )
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
    return (
        (not commit or FULL_SHA.fullmatch(commit) is not None)
        and (not epochs or (epochs.isascii() and epochs.isdigit() and len(epochs) <= 9))
        and (not attempt or slices.parse_label(attempt) is not None)
    )


def run_attempt(env: Mapping[str, str]) -> int:
    """This run attempt's number, ``GITHUB_RUN_ATTEMPT`` (1 when unset or not a number)."""
    return state_artifacts.run_attempt(env.get("GITHUB_RUN_ATTEMPT"))


def state_artifact(env: Mapping[str, str]) -> str:
    """The name this run attempt's chain state is saved as (the action's ``state-artifact`` output):
    ``keeptraining-state``, or ``keeptraining-state-attempt-N`` in run attempt N."""
    return artifact_name(STATE_ARTIFACT, run_attempt(env))


def _created(artifact: Artifact) -> datetime.datetime:
    return artifact.created_at or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def newest(artifacts: list[Artifact], base: str) -> Artifact | None:
    """The artifact of ``base`` that the newest run attempt uploaded (then the latest created): never
    by id, which GitHub does not promise to grow with time."""
    mine = [(attempt, a) for a in artifacts if (attempt := attempt_of(a.name, base)) is not None]
    if not mine:
        return None
    return max(mine, key=lambda pair: (pair[0], _created(pair[1])))[1]


def trial_artifacts(artifacts: list[Artifact]) -> dict[int, Artifact]:
    """A round's trials, slot -> the live ``keeptraining-trial-<slot>`` of the newest run attempt."""
    slots: dict[int, list[Artifact]] = {}
    for artifact in artifacts:
        match = _TRIAL_NAME.fullmatch(artifact.name)
        if match and not artifact.expired:
            slots.setdefault(int(match.group(1)), []).append(artifact)
    chosen = {slot: newest(found, f"{TRIAL_ARTIFACT}{slot}") for slot, found in slots.items()}
    return {slot: artifact for slot, artifact in sorted(chosen.items()) if artifact is not None}


@dataclass(frozen=True)
class Verified:
    """The run to resume, as the API describes it."""

    run_id: int
    event: str
    head_sha: str
    artifact_id: int
    expires_at: str

    name: str = STATE_ARTIFACT

    def describe(self) -> str:
        return (
            f"Run {self.run_id} ({self.event}, commit {self.head_sha[:7]}) of this workflow may be "
            f"resumed: its {STATE_ARTIFACT} artifact {self.artifact_id} ({self.name}, the newest run "
            f"attempt's) is kept until {self.expires_at}."
        )


def verify(ctx: dispatch.GitHubContext, run_id: int, chain_commit: str) -> Verified:
    """Check the run to resume through the API; RestoreError says what is wrong and what to do."""
    gh = dispatch.github_client(ctx)
    try:
        return _Verifier(ctx, gh.get_repo(ctx.repository), run_id, chain_commit).run()
    except GithubException as exc:
        raise RestoreError(
            f"the GitHub API refused to describe run {run_id} (HTTP {exc.status})",
            hint="The token needs `actions: read` (`actions: write` includes it).",
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise RestoreError(
            f"cannot reach the GitHub API at {ctx.api_url} to check run {run_id}: {type(exc).__name__}",
            hint="Re-run the job when GitHub is reachable.",
        ) from None
    finally:
        gh.close()


class _Verifier:
    def __init__(self, ctx: dispatch.GitHubContext, repo: Repository, run_id: int, chain_commit: str) -> None:
        self.ctx, self.repo, self.run_id, self.commit = ctx, repo, run_id, chain_commit

    def refuse(self, what: str) -> RestoreError:
        return RestoreError(
            f"run {self.run_id} cannot be resumed: {what}", hint=fresh_chain_hint(self.ctx.ref)
        )

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
            raise self.refuse(
                f"it was started by a {run.event} event; only runs started by "
                f"{' or '.join(RESUMABLE_EVENTS)} hand their state on"
            )
        self._trained_the_commit(run)
        return self._artifact(run)

    def _same_repository(self, run: WorkflowRun) -> None:
        repository = (run.repository.full_name if run.repository else "").lower()
        head = (run.head_repository.full_name if run.head_repository else "").lower()
        if repository != self.ctx.repository.lower():
            raise self.refuse(f"it belongs to {repository or 'another repository'}")
        if head != repository:
            raise self.refuse(
                f"it ran code from {head or 'another repository'} (a fork), not from this repository"
            )

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
            raise self.refuse(
                f"it ran on commit {run.head_sha[:7]}, which does not follow the chain's "
                f"commit {short} ({status})"
            )

    def _artifact(self, run: WorkflowRun) -> Verified:
        found = [a for a in run.get_artifacts() if attempt_of(a.name, STATE_ARTIFACT) is not None]
        live = [a for a in found if not a.expired]
        if not found:
            raise self.refuse(
                f"it has no {STATE_ARTIFACT} artifact (deleted, or never uploaded: the run may "
                "have failed before it saved the chain state)"
            )
        if not live:
            expired = max(found, key=lambda a: a.id)
            when = _when(expired.expires_at)
            raise self.refuse(
                f"its {STATE_ARTIFACT} artifact expired ({when}); artifacts are kept for the "
                "retention the action sets (14 days) or the repository's shorter maximum"
            )
        chosen = newest(live, STATE_ARTIFACT)
        assert chosen is not None  # live holds only state artifacts
        return Verified(run.id, run.event, run.head_sha, chosen.id, _when(chosen.expires_at), chosen.name)


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
        return (
            f"GITHUB_API_URL = {quote(raw, 100)} is not an http(s) address of the GitHub API\n"
            "On GitHub the runner sets it; elsewhere set it to e.g. https://api.github.com."
        )
    return None


def list_trials(ctx: dispatch.GitHubContext, run_id: int) -> dict[int, Artifact]:
    """This run's trial artifacts, every run attempt's (REST), the newest attempt's per slot."""
    gh = dispatch.github_client(ctx)
    try:
        return trial_artifacts(list(gh.get_repo(ctx.repository).get_workflow_run(run_id).get_artifacts()))
    except GithubException as exc:
        raise RestoreError(
            f"the GitHub API refused to list the artifacts of run {run_id} (HTTP {exc.status})",
            hint="The merge job needs `actions: read`.",
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise RestoreError(
            f"cannot reach the GitHub API at {ctx.api_url} to list run {run_id}'s trials: "
            f"{type(exc).__name__}",
            hint="Re-run the job when GitHub is reachable.",
        ) from None
    finally:
        gh.close()


#: The most of an earlier try's state that a re-run downloads to read what it dispatched (a state
#: holds checkpoints); past it, the titles of the runs decide (``dispatch.resumed_run``).
EARLIER_STATE_MAX_BYTES = 512 * 1024 * 1024


def dispatched_by_earlier_tries(ctx: dispatch.GitHubContext, env: Mapping[str, str]) -> dict[int, str]:
    """In a re-run (run attempt 2 or later): run id -> attempt label (``3``, ``3.2``) of the runs that
    earlier tries of this run dispatched, from the ledger in each earlier try's state (the dispatch
    answered with the new run's id, and the attempt's record keeps it). Empty in a first try, and
    when it cannot be read (then the runs' titles decide)."""
    this_attempt = run_attempt(env)
    if this_attempt < 2 or not (ctx.run_id and _RUN_ID.fullmatch(ctx.run_id)):
        return {}
    gh = dispatch.github_client(ctx)
    found: dict[int, str] = {}
    try:
        for artifact in gh.get_repo(ctx.repository).get_workflow_run(int(ctx.run_id)).get_artifacts():
            earlier = attempt_of(artifact.name, STATE_ARTIFACT)
            if (
                earlier is None
                or earlier >= this_attempt
                or artifact.expired
                or artifact.size_in_bytes > EARLIER_STATE_MAX_BYTES
            ):
                continue
            found.update(_dispatched_in(ctx, artifact.id, ctx.run_id))
    except (
        GithubException,
        requests.RequestException,
        OSError,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
    ) as exc:
        print(
            f"The earlier tries of run {ctx.run_id} could not be read ({type(exc).__name__}): re-run "
            "protection goes by the runs' titles."
        )
    finally:
        gh.close()
    return found


def _dispatched_in(ctx: dispatch.GitHubContext, artifact_id: int, run_id: str) -> dict[int, str]:
    """The dispatches that the records of run ``run_id`` in one state artifact (a zip) note."""
    url = f"{ctx.api_url}/repos/{ctx.repository}/actions/artifacts/{artifact_id}/zip"
    headers = {
        "Authorization": f"Bearer {ctx.token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    with tempfile.TemporaryFile() as spool:
        # requests drops the Authorization header on the redirect to the storage host.
        with requests.get(url, headers=headers, timeout=60, stream=True) as reply:
            reply.raise_for_status()
            size = 0
            for chunk in reply.iter_content(1024 * 1024):
                size += len(chunk)
                if size > EARLIER_STATE_MAX_BYTES:
                    raise ValueError("the state is larger than expected")
                spool.write(chunk)
        spool.seek(0)
        with zipfile.ZipFile(spool) as archive:
            info = archive.getinfo(ledger.LEDGER_FILE)
            if info.file_size > ledger.MAX_LEDGER_BYTES:
                raise ValueError("the ledger is larger than expected")
            data = json.loads(archive.read(info))
    found: dict[int, str] = {}
    for record in data.get("attempts", []) if isinstance(data, dict) else []:
        run = record.get("run") if isinstance(record, dict) else None
        sent = record.get("dispatched") if isinstance(record, dict) else None
        if not (isinstance(run, dict) and str(run.get("id")) == run_id and isinstance(sent, dict)):
            continue
        next_id, attempt, next_run = sent.get("run_id"), sent.get("attempt"), sent.get("run", 1)
        if isinstance(next_id, int) and isinstance(attempt, int) and isinstance(next_run, int):
            found[next_id] = f"{attempt}.{next_run}" if next_run > 1 else str(attempt)
    return found


def _trial_outputs(env: Mapping[str, str], token: str) -> dict[str, str]:
    """For a round's merge job: ``trial-artifact-ids``, the ids to download (empty: none, or the
    listing failed, which a warning says; the merge then records the trials as failed)."""
    if env.get("KT_INPUT_ROLE", "").strip() != "merge":
        return {}
    bad_url = api_url_problem(env)
    if bad_url:
        print(f"::warning title=Trials not listed::{bad_url.splitlines()[0]}")
        return {"trial-artifact-ids": ""}
    raw = env.get("GITHUB_RUN_ID", "").strip()
    if not _RUN_ID.fullmatch(raw):
        return {"trial-artifact-ids": ""}
    run_id = int(raw)
    try:
        ctx = dispatch.context_from_env(env, token, ref=env.get("KT_INPUT_BRANCH") or None)
        found = list_trials(ctx, run_id)
    except (RestoreError, DispatchError) as exc:
        print(f"::warning title=Trials not listed::{str(exc).splitlines()[0]}")
        return {"trial-artifact-ids": ""}
    for slot, artifact in found.items():
        print(f"Trial {slot}: artifact {artifact.id} ({artifact.name}).")
    return {"trial-artifact-ids": ",".join(str(a.id) for a in found.values())}


def check_step(env: Mapping[str, str], token: str) -> dict[str, str]:
    """``keeptraining check-resume``: the step outputs ``commit``, ``resume``, ``problem`` and
    ``state-artifact-id`` (and, for a merge job, ``trial-artifact-ids``).

    ``resume``: ``none`` (a new chain), ``ok`` (download ``state-artifact-id``, the newest run
    attempt's state), ``refused`` (``problem`` says why), or ``invalid`` (an input is malformed:
    nothing is checked out or downloaded, and the training step reports which input).
    """
    if not inputs_look_valid(env):
        return {"commit": "", "resume": INPUT_INVALID, "problem": "", "state-artifact-id": ""}
    commit = env.get("KT_INPUT_COMMIT", "").strip() or env.get("GITHUB_SHA", "").strip()
    if not FULL_SHA.fullmatch(commit):
        return {"commit": "", "resume": INPUT_INVALID, "problem": "", "state-artifact-id": ""}
    trials = _trial_outputs(env, token)
    run_id = parse_run_id(env.get("KT_INPUT_RESUME_RUN_ID", ""))
    if run_id is None:
        return {"commit": commit, "resume": RESUME_NONE, "problem": "", "state-artifact-id": "", **trials}
    bad_url = api_url_problem(env)
    if bad_url:
        return {
            "commit": commit,
            "resume": RESUME_REFUSED,
            "problem": bad_url,
            "state-artifact-id": "",
            **trials,
        }
    try:
        ctx = dispatch.context_from_env(env, token, ref=env.get("KT_INPUT_BRANCH") or None)
        verified = verify(ctx, run_id, commit)
    except (RestoreError, DispatchError) as exc:
        return {
            "commit": commit,
            "resume": RESUME_REFUSED,
            "problem": str(exc),
            "state-artifact-id": "",
            **trials,
        }
    except Exception as exc:  # this step never fails: the training step reports the problem
        text = str(exc).replace(token, "***") if token else str(exc)
        return {
            "commit": commit,
            "resume": RESUME_REFUSED,
            "problem": f"run {run_id} could not be checked ({type(exc).__name__}: {text[:200]})\n"
            f"{fresh_chain_hint()}",
            "state-artifact-id": "",
            **trials,
        }
    print(verified.describe())
    return {
        "commit": commit,
        "resume": RESUME_OK,
        "problem": "",
        "state-artifact-id": str(verified.artifact_id),
        **trials,
    }


def problem(
    env: Mapping[str, str], state_dir: Path, chain_commit: str, attempt: int | None
) -> RestoreError | None:
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
        return RestoreError(
            f"the run to resume ({run_id}) was not checked (check step: {verdict[:40]!r})",
            hint=fresh_chain_hint(),
        )
    outcome = env.get("KT_RESTORE_OUTCOME", "success" if verdict else "")
    if verdict and outcome != "success":
        return RestoreError(
            f"the chain state of run {run_id} could not be downloaded (download step: "
            f"{outcome[:40] or 'skipped'}); the artifact may have expired or been deleted "
            "meanwhile",
            hint=fresh_chain_hint(),
        )
    try:
        check_restored(state_dir, chain_commit, attempt, run_id)
    except (RestoreError, LedgerError) as exc:
        return exc if isinstance(exc, RestoreError) else RestoreError(exc.message, hint=fresh_chain_hint())
    return None


def check_restored(state_dir: Path, chain_commit: str, attempt: int | None, run_id: int) -> None:
    """The downloaded state is this chain's: a ledger of the same commit, ending just before ``attempt``
    (or with ``attempt`` itself unfinished: this run continues it)."""
    if not ledger.ledger_path(state_dir).is_file():
        raise RestoreError(f"the chain state of run {run_id} holds no ledger.json", hint=fresh_chain_hint())
    restored = ledger.load(state_dir)
    commit = str(restored.chain.get("commit") or "")
    if chain_commit and commit and commit != chain_commit:
        raise RestoreError(
            f"the chain state of run {run_id} belongs to the chain of commit {commit[:7]}, "
            f"not {chain_commit[:7]}",
            hint=fresh_chain_hint(),
        )
    last = restored.last
    if (
        attempt is not None
        and last is not None
        and slices.continued(restored, attempt) is None
        and last.attempt != attempt - 1
    ):
        raise RestoreError(
            f"the chain state of run {run_id} ends at attempt {last.attempt}, and this is attempt {attempt}",
            hint=f"Pass the run of the attempt just before this one as resume-run-id. {fresh_chain_hint()}",
        )
