"""GitHub in a box: one repository's GitHub, offline, for the real workflow files under act.

``GitHubBox`` starts and wires together:

* the REST API emulator (``github_emulator.GitHubEmulator``), checked against GitHub's
  OpenAPI description, at ``GITHUB_API_URL``;
* the Actions results service (``results_service.ResultsService``) at ``ACTIONS_RESULTS_URL``,
  where the official upload/download-artifact actions store artifacts, which the REST API lists
  and serves (302 to a signed blob URL) to other runs, and where ``actions/cache`` saves and
  restores caches (``box.results.caches``; each run's token scopes them to its branch);
* a git smart-HTTP server (``git_server.GitServer``) at ``GITHUB_SERVER_URL``
  (``http://github.localhost:<port>``), from which ``actions/checkout`` fetches a given commit.

``Runs`` gives workflow runs GitHub's life cycle and concurrency rule. Every run the emulator
creates (a push, a dispatch through the API, a re-run) is admitted here: its
``concurrency.group`` (workflow level, then job level) is evaluated from the workflow file with
the run's contexts; a group holds at most one run in progress and one pending; a newer pending
run cancels the older pending one (whatever ``cancel-in-progress`` says); a run whose
workflow-level and job-level groups are the same is cancelled as a deadlock. Runs that got
their groups are ``queued``, waiting for a runner (the act driver executes them in that order);
when a run completes, its groups pass to the runs pending on them.
See "Control the concurrency of workflows and jobs" in GitHub's documentation.

``evaluate`` understands the part of GitHub's expression language that ``run-name`` and
``concurrency`` use here (contexts, string literals, ``||``, ``&&``, ``==``, ``!=``, ``!``,
parentheses, ``format()``); anything else raises, so an unsupported expression is never
guessed at.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from services.git_server import GitServer
from services.github_emulator import EmulatedRun, EmulatedWorkflow, GitHubEmulator, WorkflowInput
from services.results_service import ResultsService

SKIP_CI = ("[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]")
#: Run statuses in which a run has not ended.
NOT_ENDED = ("queued", "pending", "in_progress", "waiting", "requested")

# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>\|\||&&|==|!=|[!(),])"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*))"
)


class ExpressionError(ValueError):
    """An expression the box does not understand (never guessed at)."""


def evaluate(text: str, contexts: Mapping[str, Any]) -> str:
    """A string with ``${{ }}`` parts (a ``run-name`` or a ``concurrency.group``), evaluated."""

    def one(match: re.Match[str]) -> str:
        return _to_string(_Parser(match.group(1), contexts).parse())

    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, False)


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any]) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise ExpressionError(f"cannot read {text[position:]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.contexts = contexts
        self.at = 0

    def parse(self) -> Any:
        value = self._or()
        if self.at != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.at][1]!r}")
        return value

    def _peek(self, *values: str) -> bool:
        return self.at < len(self.tokens) and self.tokens[self.at][1] in values

    def _take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise ExpressionError("the expression ends too early")
        self.at += 1
        return self.tokens[self.at - 1]

    def _or(self) -> Any:
        value = self._and()
        while self._peek("||"):
            self._take()
            right = self._and()
            value = value if _truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek("&&"):
            self._take()
            right = self._compare()
            value = right if _truthy(value) else value
        return value

    def _compare(self) -> Any:
        value = self._unary()
        while self._peek("==", "!="):
            op = self._take()[1]
            right = self._unary()
            same = _to_string(value).lower() == _to_string(right).lower()
            value = same if op == "==" else not same
        return value

    def _unary(self) -> Any:
        if self._peek("!"):
            self._take()
            return not _truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._expect(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "name" and self._peek("("):
            return self._call(text)
        if kind == "name":
            return self._lookup(text)
        raise ExpressionError(f"unexpected {text!r}")

    def _expect(self, value: str) -> None:
        if self._take()[1] != value:
            raise ExpressionError(f"expected {value!r}")

    def _call(self, name: str) -> Any:
        self._expect("(")
        args = []
        while not self._peek(")"):
            args.append(self._or())
            if self._peek(","):
                self._take()
        self._expect(")")
        if name == "format":
            return re.sub(r"\{(\d+)\}", lambda m: _to_string(args[1 + int(m.group(1))]), str(args[0]))
        raise ExpressionError(f"the function {name}() is not emulated")

    def _lookup(self, dotted: str) -> Any:
        if dotted in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[dotted]
        head, *rest = dotted.split(".")
        if head not in self.contexts:
            raise ExpressionError(f"the context {head!r} is not emulated")
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


# --------------------------------------------------------------------------- the workflow file


@dataclass(frozen=True)
class WorkflowFile:
    """What the box needs from a workflow file: its name, inputs, run-name and concurrency."""

    path: str  # relative to the repository, e.g. .github/workflows/continuous-training.yml
    name: str
    inputs: dict[str, WorkflowInput]
    run_name: str | None
    group: str | None  # workflow-level concurrency group (an expression)
    job_group: str | None  # the (one) job's concurrency group
    cancel_in_progress: bool

    @classmethod
    def read(cls, repo: Path, path: str, called_roots: Sequence[Path] = ()) -> WorkflowFile:
        """``path`` in ``repo``; a job that calls a reusable workflow (``uses: ./.github/workflows/X`` or
        ``OWNER/NAME/.github/workflows/X@REF``) without a ``concurrency`` of its own takes the group of
        the called workflow's first job that has one, read from ``repo`` or from ``called_roots`` (the
        folders that act's ``--local-repository`` serves), as GitHub applies it."""
        data = yaml.safe_load((repo / path).read_text())
        triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
        triggers = triggers if isinstance(triggers, dict) else {}  # `on: [push]` declares no inputs
        declared = (triggers.get("workflow_dispatch") or {}).get("inputs") or {}
        inputs = {
            name: WorkflowInput(
                type=spec.get("type", "string"),
                required=bool(spec.get("required")),
                default=spec.get("default"),
                options=spec.get("options"),
            )
            for name, spec in declared.items()
        }
        jobs = list(data["jobs"].values())
        # The chain's job: the one that trains (a step or a called workflow); jobs after it may follow.
        job = next((j for j in jobs if "uses" in j or "concurrency" in j), jobs[0])
        if "concurrency" not in job and "uses" in job:
            job = _called_job(repo, str(job["uses"]), called_roots) or job
        group, cancel = _concurrency(data.get("concurrency"))
        job_group, job_cancel = _concurrency(job.get("concurrency"))
        return cls(
            path, data.get("name", path), inputs, data.get("run-name"), group, job_group, cancel or job_cancel
        )


def _called_job(repo: Path, uses: str, called_roots: Sequence[Path]) -> dict[str, Any] | None:
    """The first job with a ``concurrency`` in the reusable workflow that ``uses`` names."""
    match = re.search(r"\.github/workflows/([\w.-]+\.ya?ml)", uses)
    if not match:
        return None
    roots = [repo] if uses.startswith("./") else list(called_roots)
    for root in roots:
        called = root / ".github" / "workflows" / match.group(1)
        if called.is_file():
            jobs = yaml.safe_load(called.read_text())["jobs"].values()
            return next((dict(j) for j in jobs if "concurrency" in j), None)
    raise FileNotFoundError(f"the reusable workflow {uses} is in none of {roots}")


def _concurrency(block: Any) -> tuple[str | None, bool]:
    if block is None:
        return None, False
    if isinstance(block, str):
        return block, False
    return str(block["group"]), bool(block.get("cancel-in-progress", False))


# --------------------------------------------------------------------------- runs


@dataclass
class _Job:
    run_id: int
    groups: list[str]
    acquired: int = 0


@dataclass
class Runs:
    """GitHub's run life cycle and concurrency rule, applied to the emulator's runs."""

    emulator: GitHubEmulator
    workflow: WorkflowFile
    ready: list[int] = field(default_factory=list)  # queued for a runner, in order
    holders: dict[str, int] = field(default_factory=dict)  # group -> the run holding it
    pending: dict[str, int] = field(default_factory=dict)  # group -> the run waiting for it
    jobs: dict[int, _Job] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the rule did, for test messages
    lock: threading.RLock = field(default_factory=threading.RLock)

    def contexts(self, run: EmulatedRun) -> dict[str, Any]:
        """The ``github`` and ``inputs`` contexts of a run, as its expressions see them."""
        emu = self.emulator
        ref = f"refs/heads/{run.head_branch}" if run.head_branch else ""
        github = {
            "run_id": str(run.id),
            "run_number": str(run.run_number),
            "run_attempt": str(run.run_attempt),
            "event_name": run.event,
            "ref": ref,
            "ref_name": run.head_branch or "",
            "sha": run.head_sha,
            "repository": emu.full_name,
            "workflow": self.workflow.name,
            "workflow_ref": f"{emu.full_name}/{self.workflow.path}@{ref}",
        }
        inputs = dict(run.inputs) if run.event == "workflow_dispatch" else {}
        return {"github": github, "inputs": inputs}

    def admit(self, run: EmulatedRun) -> None:
        """A new run, or a re-run: take its concurrency groups, or wait for them."""
        with self.lock:
            if self.workflow.cancel_in_progress:
                raise NotImplementedError("the box does not model cancel-in-progress: true")
            contexts = self.contexts(run)
            groups = [evaluate(g, contexts) for g in (self.workflow.group, self.workflow.job_group) if g]
            self.jobs[run.id] = _Job(run.id, groups)
            if len(groups) == 2 and groups[0] == groups[1]:
                self.notes.append(f"run {run.id}: deadlock on group {groups[0]} (workflow and job)")
                self._end(run.id, "cancelled")
                return
            self._advance(run.id)

    def _advance(self, run_id: int) -> None:
        job = self.jobs[run_id]
        while job.acquired < len(job.groups):
            group = job.groups[job.acquired]
            if self.holders.get(group, run_id) != run_id:
                older = self.pending.get(group)
                if older is not None and older != run_id:
                    self.notes.append(f"run {older}: cancelled in group {group}: run {run_id} is newer")
                    self._end(older, "cancelled")
                self.pending[group] = run_id
                self.emulator.set_run(run_id, status="pending")
                return
            self.holders[group] = run_id
            job.acquired += 1
        self.ready.append(run_id)
        self.emulator.set_run(run_id, status="queued")

    def next_ready(self) -> int | None:
        with self.lock:
            return self.ready.pop(0) if self.ready else None

    def start(self, run_id: int) -> None:
        with self.lock:
            self.emulator.set_run(run_id, status="in_progress")

    def complete(self, run_id: int, conclusion: str) -> None:
        with self.lock:
            self._end(run_id, conclusion)

    def cancel(self, run_id: int) -> None:
        """A person cancels a run that has not ended."""
        with self.lock:
            self._end(run_id, "cancelled")

    def _end(self, run_id: int, conclusion: str) -> None:
        if run_id in self.ready:
            self.ready.remove(run_id)
        for group in [g for g, r in self.pending.items() if r == run_id]:
            del self.pending[group]
        released = [g for g, r in self.holders.items() if r == run_id]
        for group in released:
            del self.holders[group]
        self.emulator.set_run(run_id, status="completed", conclusion=conclusion)
        for group in released:
            waiting = self.pending.pop(group, None)
            if waiting is not None:
                self._advance(waiting)


# --------------------------------------------------------------------------- the box


class GitHubBox:
    """One repository's GitHub: REST API, results service and git server, sharing their state."""

    def __init__(
        self,
        repo: Path,
        root: Path,
        full_name: str,
        token: str,
        workflow_path: str,
        emulator_class: type[GitHubEmulator] = GitHubEmulator,
        called_roots: Sequence[Path] = (),
    ) -> None:
        self.repo = repo
        self.full_name = full_name
        self.token = token
        self.workflow = WorkflowFile.read(repo, workflow_path, called_roots)
        self.results = ResultsService()
        self.git = GitServer(root / "git", [token])
        head = _git_head(repo)
        emulated = EmulatedWorkflow(
            id=161_335, name=self.workflow.name, path=workflow_path, inputs=self.workflow.inputs
        )
        self.emulator = emulator_class(
            full_name,
            head_sha=head,
            workflows=[emulated],
            tokens={token},
            artifacts=self.results.artifacts,
            run_name=self._run_name,
        )
        self.runs = Runs(self.emulator, self.workflow)
        self.emulator.on_run_created = self.runs.admit

    def _run_name(self, workflow: EmulatedWorkflow, inputs: Mapping[str, Any]) -> str:
        if not self.workflow.run_name:
            return workflow.name
        contexts = {"inputs": dict(inputs), "github": {"event_name": "workflow_dispatch"}}
        return evaluate(self.workflow.run_name, contexts)

    def title(self, event: str, message: str) -> str:
        """The display title of a push run: its run-name, else the head commit's first line."""
        if self.workflow.run_name:
            return evaluate(self.workflow.run_name, {"inputs": {}, "github": {"event_name": event}})
        return message.splitlines()[0] if message else self.workflow.name

    def __enter__(self) -> GitHubBox:
        self.results.start()
        self.git.start()
        self.git.create(self.full_name)
        self.git.push(self.full_name, self.repo)
        self.emulator._web_url = self.git.url
        self.emulator.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.emulator.stop()
        self.git.stop()
        self.results.stop()

    def env(self, run: EmulatedRun) -> dict[str, str]:
        """What act passes to the job of ``run`` (``--env``): every URL points into the box."""
        return {
            "GITHUB_API_URL": self.emulator.url,
            "GITHUB_SERVER_URL": self.git.url,
            "ACTIONS_RESULTS_URL": self.results.url,
            "ACTIONS_RUNTIME_TOKEN": self.results.tokens.mint(
                run.id,
                run.run_attempt,
                ref=f"refs/heads/{run.head_branch or self.emulator.default_branch}",
                default_ref=f"refs/heads/{self.emulator.default_branch}",
            ),
            "ACTIONS_CACHE_SERVICE_V2": "true",  # what GitHub's runners set: actions/cache speaks v2
            "GITHUB_RUN_ID": str(run.id),
            "GITHUB_RUN_ATTEMPT": str(run.run_attempt),
            "GITHUB_RUN_NUMBER": str(run.run_number),
            "GITHUB_WORKFLOW_REF": f"{self.full_name}/{self.workflow.path}@refs/heads/{run.head_branch}",
        }


def _git_head(repo: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()
