"""The pull-request job (``keeptraining pr-check``) and the fork report's poster (``keeptraining pr-report``).

``pr-check``, on a ``pull_request`` event: the champion (the latest model release, found by
``github.releases.champion`` and its model downloaded and checked against its card; or a folder
given with ``--champion``) is evaluated with the pull request's code and data, and a candidate is
trained from scratch to the champion's epochs with its hyperparameters, in this one run, no
dispatch (``engine/compare.py``). The verdict goes to three places:

* one PR comment (``github/pr_comment.py``), edited in place by later runs;
* the commit status ``keeptraining/pull-request`` on the pull request's head commit: ``success``
  when the candidate is at least the champion's metric minus ``tolerance`` (with no champion:
  the threshold), else ``failure``;
* the job summary.

A pull request from a fork runs with a read-only token: the job writes the report into
``.keeptraining-pr/`` (uploaded as the artifact ``keeptraining-pr-report``) and posts nothing. The
shipped ``keeptraining-pr-report.yml`` workflow (``on: workflow_run``) runs ``pr-report`` with a
token that may write: it reads the artifact as untrusted data (numbers, checked), checks that the
pull request it names has the run's head commit, renders the comment itself and posts comment and
status. It never checks out or runs the pull request's code: that is the "pwn request" GitHub's
security guidance warns about (a privileged workflow executing code from a fork).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from github import GithubException

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import chain, compare
from keeptraining.errors import ConfigError, KeeptrainingError, ReportRefused
from keeptraining.github import commit_status, dispatch, pr_comment, releases
from keeptraining.jobs import compare as compare_step
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import comparison as comparison_report
from keeptraining.state import safe_paths

RELEASE_DIR = "release"  # <state_dir>/compare/release/: the champion release's model, downloaded
REPORT_DIR = ".keeptraining-pr"  # the fork's report, uploaded as the artifact below
REPORT_FILE = "report.json"
ARTIFACT = "keeptraining-pr-report"
MAX_REPORT_BYTES = 4 * 1024 * 1024
TOKEN_VARS = ("KT_GITHUB_TOKEN", "GITHUB_TOKEN")
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


@dataclass(frozen=True)
class PullRequest:
    number: int
    head_sha: str
    fork: bool  # its head is in another repository: the token is read-only


def _event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH", "")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"The event payload {path} cannot be read: {exc}.") from None
    return data if isinstance(data, dict) else {}


def pull_request(env: Mapping[str, str]) -> PullRequest:
    """The pull request of this ``pull_request`` run, from the event payload."""
    pull = _event(env).get("pull_request")
    if env.get("GITHUB_EVENT_NAME") not in ("pull_request", None, "") or not isinstance(pull, dict):
        raise ConfigError(
            f"keeptraining pr-check runs on a pull_request event; this run's event is "
            f"{env.get('GITHUB_EVENT_NAME')!r}.",
            hint="Call it from the workflow's pull-request job (`if: github.event_name == 'pull_request'`).",
        )
    number, head = pull.get("number"), pull.get("head") or {}
    sha = head.get("sha") if isinstance(head, dict) else None
    if not isinstance(number, int) or not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise ConfigError("The pull_request event has no pull request number or head commit.")
    head_repo = (head.get("repo") or {}).get("full_name")
    base_repo = ((pull.get("base") or {}).get("repo") or {}).get("full_name")
    fork = bool(head_repo and base_repo and head_repo != base_repo)
    return PullRequest(number, sha, fork)


def github_context(env: Mapping[str, str]) -> dispatch.GitHubContext:
    token = next((env[v] for v in TOKEN_VARS if env.get(v)), "")
    repository = env.get("GITHUB_REPOSITORY", "")
    if not token or "/" not in repository:
        raise ConfigError("The pull-request check needs GITHUB_REPOSITORY and a token (input github-token).")
    return dispatch.GitHubContext(
        api_url=(env.get("GITHUB_API_URL") or dispatch.DEFAULT_API_URL).rstrip("/"),
        token=token,
        repository=repository,
        workflow="",
        ref="",
        server_url=(env.get("GITHUB_SERVER_URL") or dispatch.DEFAULT_SERVER_URL).rstrip("/"),
        run_id=env.get("GITHUB_RUN_ID") or None,
    )


def _run_url(ctx: dispatch.GitHubContext) -> str | None:
    return f"{ctx.server_url}/{ctx.repository}/actions/runs/{ctx.run_id}" if ctx.run_id else None


def release_champion(ctx: dispatch.GitHubContext, dest: Path) -> compare.ChampionModel | None:
    """The champion: the latest model release (``github.releases.champion``), its model downloaded into
    ``dest`` and checked against its card; None when the repository has none yet."""
    gh = releases.client(ctx.api_url, ctx.token, ctx.repository)
    try:
        found = releases.champion(releases.Releases(gh, ctx.repository), download_model_to=dest)
    finally:
        gh.close()
    return None if found is None else compare_step.from_card(found)


def status_for(comparison: compare.Comparison, target_url: str | None) -> commit_status.Status:
    state = "success" if comparison.passed else "failure"
    return commit_status.Status(state, comparison.verdict(), target_url)


def publish(
    ctx: dispatch.GitHubContext,
    number: int,
    head_sha: str,
    comparison: compare.Comparison,
    run_url: str | None,
) -> str | None:
    """The comment (created or edited) and the status; returns the comment's URL (None: warned)."""
    body = comparison_report.markdown(comparison, run_url=run_url, head_sha=head_sha)
    url = pr_comment.upsert(ctx, number, body, comparison_report.MARKER)
    commit_status.post(ctx, head_sha, status_for(comparison, run_url), commit_status.PR_CONTEXT)
    return url


def _outputs(comparison: compare.Comparison, *, fork: bool, comment_url: str | None) -> dict[str, str]:
    delta = comparison.delta
    return {
        "passed": str(comparison.passed).lower(),
        "accuracy": f"{comparison.candidate.value:.4f}",
        "champion-accuracy": f"{comparison.champion_eval.value:.4f}" if comparison.champion_eval else "",
        "delta": f"{delta:.4f}" if delta is not None else "",
        "epochs": str(comparison.candidate.epochs or ""),
        "report-artifact": str(fork).lower(),
        "comment-url": comment_url or "",
    }


def write_report(folder: Path, pull: PullRequest, comparison: compare.Comparison) -> Path:
    """``report.json`` for the workflow_run workflow (and ``comment.md``, what it will say)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "format": compare.REPORT_FORMAT,
        "pull_request": pull.number,
        "head_sha": pull.head_sha,
        "comparison": compare.to_dict(comparison),
    }
    safe_paths.atomic_write(folder / REPORT_FILE, json.dumps(data, indent=1).encode())
    safe_paths.atomic_write(
        folder / "comment.md", comparison_report.markdown(comparison, head_sha=pull.head_sha).encode()
    )
    return folder / REPORT_FILE


def run_check(
    config: Config, repo_root: Path, champion_folder: Path | None, env: Mapping[str, str] = os.environ
) -> int:
    """``keeptraining pr-check``: 0 when the candidate passes, 3 when it does not."""
    pull = pull_request(env)
    ctx = github_context(env)
    gha.mask(ctx.token)
    champion: compare.ChampionModel | None
    if champion_folder is not None:
        champion = compare_step.champion_model(champion_folder)
    else:
        state_dir = chain.workspace(config, repo_root).state_dir
        champion = release_champion(ctx, state_dir / compare.COMPARE_DIR / RELEASE_DIR)
    if champion is None:
        print(f"No champion yet: the candidate is judged against the threshold {config.threshold:g}.")
    run_url = _run_url(ctx)
    try:
        # The chain's image is pulled (image-registry); one built from the pull request's code is never
        # pushed: the job's token only reads packages, and the registry holds what the chain trusts.
        backend = backends.select(
            config, repo_root, allow_local_fallback=False, say=print, on_line=print, push_image=False
        )
        result = compare.run(config, repo_root, backend, champion, env=env)
    except KeeptrainingError as exc:  # the check could not compare: the status says so (not on a fork)
        if not pull.fork:
            commit_status.post(
                ctx,
                pull.head_sha,
                commit_status.Status("error", f"Not compared: {exc.message}", run_url),
                commit_status.PR_CONTEXT,
            )
        raise
    print("\n" + comparison_report.text(result))
    gha.write_summary(comparison_report.markdown(result, run_url=run_url, head_sha=pull.head_sha), env)
    write_report(repo_root / REPORT_DIR, pull, result)
    comment_url = None
    if pull.fork:
        print(
            f"A pull request from a fork gets a read-only token: the report is left as the artifact "
            f"{ARTIFACT}, and the keeptraining-pr-report workflow posts the comment and the status."
        )
    else:
        comment_url = publish(ctx, pull.number, pull.head_sha, result, run_url)
    gha.set_outputs(_outputs(result, fork=pull.fork, comment_url=comment_url), env)
    return 0 if result.passed else compare_step.EXIT_WORSE


# --------------------------------------------------------------------------- the workflow_run side


def _refuse(what: str) -> ReportRefused:
    return ReportRefused(
        f"The pull-request report is refused: {what}.",
        hint="It comes from a pull request's run and is untrusted; nothing was posted.",
    )


def read_report(folder: Path) -> tuple[int, str, compare.Comparison]:
    """(pull request number, head commit, comparison) from an untrusted ``report.json``."""
    try:
        raw = safe_paths.read_bytes(folder, REPORT_FILE, REPORT_FILE, max_bytes=MAX_REPORT_BYTES)
        data = json.loads(raw)
    except FileNotFoundError:
        raise _refuse(f"no {REPORT_FILE} in {folder}") from None
    except (OSError, ValueError, RecursionError, KeeptrainingError) as exc:
        raise _refuse(f"{REPORT_FILE} cannot be read ({str(exc)[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != compare.REPORT_FORMAT:
        raise _refuse(f"{REPORT_FILE} is not a {compare.REPORT_FORMAT} report")
    number, sha = data.get("pull_request"), data.get("head_sha")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 10**9:
        raise _refuse("it names no pull request")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise _refuse("it names no head commit")
    try:
        comparison = compare.from_dict(data.get("comparison"))
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    return number, sha, comparison


def run_report(folder: Path, env: Mapping[str, str] = os.environ) -> int:
    """``keeptraining pr-report``: post a fork's report (comment and status) from the workflow_run run."""
    ctx = github_context(env)
    gha.mask(ctx.token)
    run = _event(env).get("workflow_run")
    if not isinstance(run, dict) or not isinstance(run.get("head_sha"), str):
        raise ConfigError("keeptraining pr-report runs on a workflow_run event (the pull-request run's).")
    number, sha, comparison = read_report(folder)
    if sha != run["head_sha"]:
        raise _refuse(f"it is for commit {sha[:12]}, the run it came from built {run['head_sha'][:12]}")
    gh = dispatch.github_client(ctx, lazy=True)
    try:
        head = gh.get_repo(ctx.repository).get_pull(number).head.sha
    except (GithubException, requests.RequestException, OSError) as exc:  # unconfirmed: refused
        raise _refuse(f"pull request #{number} cannot be read ({type(exc).__name__})") from None
    finally:
        gh.close()
    if head != sha:
        raise _refuse(f"pull request #{number}'s head is {head[:12]}, not the run's commit {sha[:12]}")
    run_url = run.get("html_url") if isinstance(run.get("html_url"), str) else None
    comment_url = publish(ctx, number, sha, comparison, run_url)
    print(comparison_report.text(comparison))
    gha.write_summary(comparison_report.markdown(comparison, run_url=run_url, head_sha=sha), env)
    gha.set_outputs({"comment-url": comment_url or "", "passed": str(comparison.passed).lower()}, env)
    return 0
