"""``keeptraining init``: set up a repository for continuous training in one command.

Run in a user's repository, it

* finds the training script (a Python file that imports Keras or TensorFlow and calls ``fit``),
  or takes ``--script``;
* checks it the way ``keeptraining validate`` does (the script is where the train command says,
  the training image can be built: the repository's own Dockerfile, else one keeptraining
  generates from requirements.txt or the script's imports);
* writes the caller workflow ``.github/workflows/continuous-training.yml`` (the short file README
  shows: keeptraining's reusable workflow does the rest) and a commented ``.keeptraining.yml``
  with the threshold and what it found (backend, Dockerfile or generated image, code path);
* prints the secrets the result mail needs and the ``gh secret set`` commands that add them.

It never overwrites a file that differs unless given ``--force``: then it writes nothing and says
which files differ. A file that already holds what init would write is left alone, so running it
twice changes nothing. ``--dry-run`` prints the files instead of writing them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keeptraining import __version__
from keeptraining.backends.docker import dockerfile as dockerfile_gen
from keeptraining.commands import validate as command_check
from keeptraining.config import settings as config_mod
from keeptraining.engine import chain
from keeptraining.errors import ConfigError

WORKFLOW_PATH = Path(".github") / "workflows" / "continuous-training.yml"
CONFIG_PATH = Path(config_mod.DEFAULT_FILE)
#: Where keeptraining's reusable workflow lives (README's placeholder owner: pass --keeptraining).
DEFAULT_SOURCE = "OWNER/keeptraining"
#: The secrets of the result mail, with what each holds (none is needed to train).
SECRETS = {
    "SMTP_SERVER": "the SMTP host, e.g. smtp.example.org (without it no mail is sent)",
    "SMTP_PORT": "587 for STARTTLS (465 with smtp-security: ssl)",
    "SMTP_USERNAME": "the SMTP user name",
    "SMTP_PASSWORD": "the SMTP password",
    "MAIL_FROM": "the sender address",
    "MAIL_TO": "the recipients, comma separated",
}
#: Folders that hold no training script of the repository's own.
_SKIPPED_DIRS = {"node_modules", "site-packages", "venv", "env", "build", "dist", "__pycache__"}
_KERAS_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:keras|tensorflow)\b", re.MULTILINE)
_FIT_CALL = re.compile(r"\.fit\s*\(")
_LIKELY_NAMES = ("train.py", "nn.py", "model.py", "main.py")
_MAX_SCRIPT_BYTES = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=Path(), help="repository root (default: .)")
    parser.add_argument(
        "--script",
        type=Path,
        default=None,
        help="the training script (default: the Python file that imports Keras and calls fit)",
    )
    parser.add_argument("--threshold", default="0.9", help="target value of the metric (default 0.9)")
    parser.add_argument(
        "--backend",
        choices=("docker", "local"),
        default="docker",
        help="where training runs (default docker: your Dockerfile's image, else a generated one)",
    )
    parser.add_argument(
        "--keeptraining",
        dest="source",
        default=f"{DEFAULT_SOURCE}@v{major_version()}",
        metavar="OWNER/REPO@REF",
        help="the keeptraining repository and ref the workflow calls (default %(default)s; "
        "pin a release tag or a full commit SHA)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace files that differ from what init writes"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the files instead of writing them")


def major_version(version: str = __version__) -> str:
    return version.split(".", 1)[0]


@dataclass(frozen=True)
class Found:
    """What init found in the repository."""

    script: Path  # relative to the repository
    code_path: str
    train_command: str
    backend: str
    dockerfile: str | None  # the repository's own Dockerfile, else None (a generated image)
    reasons: tuple[str, ...]  # why, one line each: what the config file's comments say


# --------------------------------------------------------------------------- finding the script


def _python_files(repo: Path) -> Iterator[Path]:
    for path in sorted(repo.rglob("*.py")):
        parts = path.relative_to(repo).parts
        if any(p.startswith(".") or p in _SKIPPED_DIRS for p in parts[:-1]):
            continue
        if any(p in ("tests", "test") for p in parts[:-1]) or parts[-1].startswith("test_"):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def find_script(repo: Path) -> Path:
    """The repository's Keras training script: imports Keras or TensorFlow and calls ``fit``."""
    candidates: list[tuple[int, Path]] = []
    for path in _python_files(repo):
        try:
            if path.stat().st_size > _MAX_SCRIPT_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not (_KERAS_IMPORT.search(text) and _FIT_CALL.search(text)):
            continue
        score = 2 if "__main__" in text else 0
        score += 1 if path.name in _LIKELY_NAMES else 0
        candidates.append((score, path))
    if not candidates:
        raise ConfigError(
            f"no training script found in {repo.resolve()}: no Python file there imports "
            "keras or tensorflow and calls fit().",
            hint="Pass the script: keeptraining init --script path/to/train.py",
        )
    best = max(score for score, _ in candidates)
    top = [path for score, path in candidates if score == best]
    if len(top) > 1:
        names = ", ".join(str(p.relative_to(repo)) for p in top)
        raise ConfigError(
            f"{len(top)} files look like the training script: {names}.",
            hint=f"Choose one: keeptraining init --script {top[0].relative_to(repo)}",
        )
    return top[0]


def _script_in_repo(repo: Path, script: Path) -> Path:
    path = script if script.is_absolute() else (Path.cwd() / script)
    if not path.exists() and not script.is_absolute():
        path = repo / script  # relative to the repository, as README writes paths
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"--script {script}: no such file.", hint="Give the path of your training script.")
    if not path.is_relative_to(repo.resolve()):
        raise ConfigError(
            f"--script {script} is outside the repository {repo.resolve()}.",
            hint="keeptraining trains code of the repository: move the script into it.",
        )
    if path.suffix != ".py":
        raise ConfigError(
            f"--script {script} is not a Python file.",
            hint="init writes `train_command: python <script>`; for another command, write "
            "train_command in .keeptraining.yml yourself.",
        )
    return path


# --------------------------------------------------------------------------- what to write


def detect(repo: Path, script: Path | None, backend: str) -> Found:
    """Find the script and the image, and check them as ``validate`` does (ConfigError otherwise)."""
    root = repo.resolve()
    path = _script_in_repo(root, script) if script is not None else find_script(root).resolve()
    relative = path.relative_to(root)
    code_path = relative.parent.as_posix() if relative.parent != Path() else "."
    train_command = f"python {path.name}"
    reasons = [
        f"{relative.as_posix()} is the training script"
        + (" (--script)" if script is not None else " (it imports Keras and calls fit)")
    ]
    own_dockerfile = "Dockerfile" if backend == "docker" and (root / "Dockerfile").is_file() else None
    if backend == "local":
        reasons.append("backend local: the runner's own Python, which must have the script's packages")
    elif own_dockerfile:
        reasons.append("your Dockerfile builds the training image (your code is mounted at run time)")
    else:
        choice = dockerfile_gen.choose(root, path.parent, ["python", path.name], None)
        reasons.append("no Dockerfile, so keeptraining generates the image: " + "; ".join(choice.reasons))
    return Found(relative, code_path, train_command, backend, own_dockerfile, tuple(reasons))


def config_text(found: Found, threshold: float) -> str:
    """The commented .keeptraining.yml."""
    lines = [
        "# keeptraining's settings for this repository, written by `keeptraining init` (edit freely).",
        "# Every key is in README's \"Configuration\"; the workflow's `with:` and command-line flags",
        "# win over this file. Check it with: keeptraining validate",
        "",
        "# The chain trains attempt after attempt (10 epochs, then +10 each, resuming the checkpoint) until",
        "# the metric reaches this fraction, or max_attempts (10) is spent.",
        f"threshold: {threshold:g}",
        "",
        "# Found by init:",
        *(
            line
            for reason in found.reasons
            for line in textwrap.wrap(reason, 98, initial_indent="# - ", subsequent_indent="#   ")
        ),
        f"code_path: {found.code_path}",
        f"train_command: {found.train_command}",
        "",
        "# Where training runs. Unset: in the training image (docker) wherever a Docker engine answers, as",
        "# on GitHub's runners; `keeptraining run` on a machine without one trains in this Python and",
        "# says so. `backend: docker` insists on Docker, `backend: local` always uses this Python.",
        f"backend: {found.backend}" if found.backend == "local" else "# backend: docker",
    ]
    if found.dockerfile:
        lines.append(f"dockerfile: {found.dockerfile}")
    elif found.backend == "docker":
        lines += [
            "# No `dockerfile:` line: keeptraining generates the image while the repository has no",
            "# Dockerfile; add one (or `dockerfile: path`) to choose the image yourself.",
        ]
    return "\n".join(lines) + "\n"


REUSABLE = ".github/workflows/keeptraining.yml"
#: The caller workflow (README's snippet is this file for a docker repository, plus `threshold`).
CALLER_TEMPLATE = """\
name: Continuous training
run-name: ${{ github.event_name == 'pull_request' && format('Pull request {0} · candidate vs champion', \
github.event.pull_request.number) || format('Continuous training · attempt {0} · {1} epochs · \
after run {2}', inputs.attempt || 1, inputs.epochs || 'first', inputs.resume-run-id || 'none') }}
on:
  push:
    branches: [__BRANCH__]
  pull_request: # the pr-check job: candidate vs champion
    branches: [__BRANCH__]
  workflow_dispatch: # each attempt dispatches the next one with these inputs
    inputs:
      epochs: { description: Epochs after this attempt (empty - 10), type: string, default: "" }
      attempt: { description: Attempt number (N.K - its K-th run), type: string, default: "1" }
      commit: { description: Commit the chain trains (empty - the branch head), type: string, default: "" }
      resume-run-id: { description: Run to resume (empty - a new chain), type: string, default: "" }
permissions: {}
# A dispatched attempt waits for the run it resumes; every other run gets a group of its own
# (a manual run that names the same resume-run-id shares that group).
concurrency:
  group: continuous-training-run-${{ inputs.resume-run-id || format('new-{0}', github.run_id) }}
  cancel-in-progress: false
jobs:
  keeptraining:
    uses: __USES__
    permissions:
      actions: write # dispatch the next attempt, read the previous run's checkpoint artifact
      statuses: write # the commit status `keeptraining` on the chain's commit
      packages: write # the training image, pushed once per chain (image-registry); pr-check only reads it
      contents: write # publish job only (train reads): the model release, model-v<N>
      id-token: write # publish job only: sign the model's provenance
      attestations: write # publish job only: store the attestation
      pull-requests: write # pr-check job only (pull requests): its one comment
__WITH__    secrets:
__SECRETS__"""


def workflow_text(
    source: str, *, branch: str = "main", registry: bool = True, threshold: str | None = None
) -> str:
    """The caller workflow: what GitHub requires in it, and keeptraining's reusable workflow.

    ``source`` is ``OWNER/REPO@REF``: the keeptraining repository and the ref (a release tag, or a full
    commit SHA) whose reusable workflow it calls. README's snippet is this text with ``threshold``.
    """
    repository, _, ref = source.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository) or not re.fullmatch(r"[\w./-]+", ref):
        raise ConfigError(
            f"--keeptraining {source!r} is not OWNER/REPO@REF.",
            hint=f"e.g. --keeptraining acme/keeptraining@v{major_version()}",
        )
    with_lines = []
    if threshold is not None:
        with_lines.append(f'      threshold: "{threshold}"')
    if registry:
        with_lines.append("      image-registry: ghcr.io/${{ github.repository }}/keeptraining-train")
    with_block = "    with:\n" + "".join(f"{line}\n" for line in with_lines) if with_lines else ""
    secrets = "".join(f"      {name}: ${{{{ secrets.{name} }}}}\n" for name in SECRETS)
    uses = f"{repository}/{REUSABLE}@{ref}"
    return (
        CALLER_TEMPLATE.replace("__BRANCH__", branch)
        .replace("__USES__", uses)
        .replace("__WITH__", with_block)
        .replace("__SECRETS__", secrets)
    )


def secrets_help(repository: str | None) -> list[str]:
    """What to add on GitHub: the secrets, and the gh commands (each prompts for its value)."""
    where = f" --repo {repository}" if repository else ""
    lines = [
        "Secrets for the result mail (Settings -> Secrets and variables -> Actions), none needed to train:"
    ]
    lines += [f"  {name:<14} {meaning}" for name, meaning in SECRETS.items()]
    lines.append(
        "With the GitHub CLI (each command asks for the value, so it stays out of your shell history):"
    )
    lines += [f"  gh secret set {name}{where}" for name in SECRETS]
    lines.append("No personal token is needed: the workflow's GITHUB_TOKEN dispatches the attempts.")
    return lines


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _branch(repo: Path) -> str:
    """The branch the chain trains on a push: the current one, else main."""
    return _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD") or "main"


def _github_repository(repo: Path) -> str | None:
    url = _git(repo, "remote", "get-url", "origin") or ""
    match = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", url)
    return match.group(1) if match else None


def _validate(repo: Path, text: str) -> tuple[str, ...]:
    """The config file as written, resolved and checked as ``keeptraining validate`` does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG_PATH.name
        path.write_text(text)
        config = config_mod.resolve(None, path, file_required=True, source=str(CONFIG_PATH))
    return tuple(command_check.check(config, chain.workspace(config, repo)))


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> int:
    repo: Path = args.repo.resolve()
    if not repo.is_dir():
        raise ConfigError(f"--repo {args.repo}: no such folder.")
    threshold = float(config_mod.coerce("threshold", str(args.threshold), source="--threshold"))
    config_mod.validate({"threshold": threshold}, "--threshold")
    found = detect(repo, args.script, args.backend)
    config = config_text(found, threshold)
    checked = _validate(repo, config)
    files = {
        WORKFLOW_PATH: workflow_text(args.source, branch=_branch(repo), registry=found.backend == "docker"),
        CONFIG_PATH: config,
    }
    states = {path: _state(repo / path, text) for path, text in files.items()}
    for line in found.reasons:
        say(f"Found: {line}.")
    for line in checked:
        if line not in found.reasons:  # the generated image's reasons are said once
            say(f"Checked: {line}.")
    differing = [path for path, state in states.items() if state == "differs"]
    if args.dry_run:
        for path, text in files.items():
            say(f"\n--- {path.as_posix()} ({_DRY_RUN_STATE[states[path]]}) ---\n{text}")
    elif differing and not args.force:
        names = ", ".join(p.as_posix() for p in differing)
        verb = "exists and differs" if len(differing) == 1 else "exist and differ"
        raise ConfigError(
            f"{names} already {verb} from what init would write; nothing was written.",
            hint="Run `keeptraining init --dry-run` to see the difference, or `--force` to replace them.",
        )
    else:
        for path, text in files.items():
            if states[path] == "same":
                say(f"Unchanged: {path.as_posix()}.")
                continue
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
            say(
                f"{'Replaced' if states[path] == 'differs' else 'Wrote'} {path.as_posix()} "
                f"({len(text.splitlines())} lines)."
            )
    if DEFAULT_SOURCE in args.source:
        say(
            f"\nNote: the workflow calls {args.source}: replace OWNER with the account that hosts "
            "keeptraining (or run again with --keeptraining OWNER/keeptraining@vN --force)."
        )
    say("")
    for line in secrets_help(_github_repository(repo)):
        say(line)
    say("\nNext: `keeptraining run` trains the chain here; commit and push both files to train it on GitHub.")
    return 0


_DRY_RUN_STATE = {
    "new": "would be written",
    "same": "unchanged",
    "differs": "exists and differs: --force replaces it",
}


def _state(path: Path, text: str) -> str:
    if not path.exists():
        return "new"
    try:
        return "same" if path.read_text() == text else "differs"
    except (OSError, UnicodeDecodeError):
        return "differs"
