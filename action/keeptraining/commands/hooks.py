"""``keeptraining hooks``: the seed's commit-and-push habit, optional and reversible.

The Jenkins recipe pushed every commit so that the push started the training
(its "Part 2"). ``hooks install`` writes a git ``post-commit`` hook that pushes
the current branch after each commit; ``hooks uninstall`` removes it again. Both
touch only a hook that carries keeptraining's marker line: an existing hook of
the user's own is never overwritten or deleted.

The hook never blocks or undoes a commit: a failed push is a warning, a
detached HEAD (rebase, bisect) pushes nothing, and ``KEEPTRAINING_NO_PUSH=1``
skips the push for one commit. It never force-pushes.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from keeptraining.errors import ConfigError

HOOK_NAME = "post-commit"
MARKER = "# keeptraining post-commit hook"

HOOK_SCRIPT = f"""#!/bin/sh
{MARKER} (written by `keeptraining hooks install`; `keeptraining hooks uninstall` removes it).
# After each commit, push the current branch to its remote (origin unless the branch names another),
# so that the push starts the continuous-training workflow. Never forces, never blocks the commit.
# Skip it once with: KEEPTRAINING_NO_PUSH=1 git commit ...
[ "${{KEEPTRAINING_NO_PUSH:-}}" = "1" ] && exit 0
branch=$(git symbolic-ref --quiet --short HEAD) || exit 0  # detached HEAD (rebase, bisect): no push
remote=$(git config "branch.$branch.remote") || remote=origin
if ! git push --quiet "$remote" "refs/heads/$branch:refs/heads/$branch"; then
  echo "keeptraining: pushing $branch to $remote failed; the commit is kept locally." >&2
fi
exit 0
"""


def _git(repo: Path, *args: str, required: bool = True) -> str:
    if not repo.is_dir():
        raise ConfigError(
            f"--repo {repo} is not a folder.",
            hint="Pass the folder of your repository (or run it there without --repo).",
        )
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed, so no git hook can be installed.") from None
    except OSError as exc:
        raise ConfigError(f"git cannot be run in {repo}: {exc.strerror or exc}.") from None
    if done.returncode != 0 and not required:
        return ""
    if done.returncode != 0:
        raise ConfigError(
            f"{repo} is not inside a git repository.",
            hint="Run `keeptraining hooks install` in your repository (or pass --repo).",
        )
    return done.stdout.strip()


def hook_path(repo: Path) -> Path:
    """Where git looks for the post-commit hook (honours core.hooksPath and worktrees). The hook
    itself is never resolved: a link there is reported, never written or deleted through."""
    path = Path(_git(repo, "rev-parse", "--git-path", f"hooks/{HOOK_NAME}"))
    return path if path.is_absolute() else repo.resolve() / path


def _shared(repo: Path, path: Path) -> bool:
    """Whether the hook's folder lies outside this repository (its work tree and its git folders):
    a ``core.hooksPath`` that other repositories use too."""
    folder = Path(os.path.realpath(path.parent))
    owned = [
        _git(repo, "rev-parse", "--show-toplevel", required=False),  # none in a bare repository
        _git(repo, "rev-parse", "--git-common-dir"),
    ]
    return not any(folder.is_relative_to(os.path.realpath(repo / mine)) for mine in owned if mine)


def _cannot(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"The {HOOK_NAME} hook {path} cannot be written or removed: {exc.strerror or exc}.",
        hint=f"{path.parent} must be a writable folder (in a repository, .git/hooks is one).",
    )


def _is_ours(path: Path) -> bool:
    """Whether the regular file ``path`` (never a link, FIFO or folder) carries the marker."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 1000).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return MARKER in head


def install(repo: Path, *, force: bool = False) -> tuple[Path, bool]:
    """Write the hook: (its path, whether it was written now rather than already there). A hooks
    folder outside the repository (a shared ``core.hooksPath``) needs ``force``."""
    path = hook_path(repo)
    if not force and _shared(repo, path):
        raise ConfigError(
            f"core.hooksPath points to {path.parent}, outside this repository: a hook there "
            "runs for every repository that uses that folder, and each would push after "
            "every commit.",
            hint="Pass --force to install it there all the same, or set core.hooksPath for "
            "this repository only (or unset it).",
        )
    try:
        return _write(path)
    except OSError as exc:
        raise _cannot(path, exc) from None


def _write(path: Path) -> tuple[Path, bool]:
    if path.is_symlink() or path.exists():
        if not path.is_symlink() and _is_ours(path):
            return path, False
        raise ConfigError(
            f"A {HOOK_NAME} hook already exists at {path}; keeptraining never overwrites "
            "a hook it did not write.",
            hint="Add a `git push` line to that hook yourself, or move it away and run "
            "`keeptraining hooks install` again.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(HOOK_SCRIPT)
    return path, True


def uninstall(repo: Path) -> tuple[Path, bool]:
    """Remove the hook if it is keeptraining's: (its path, whether one was removed)."""
    path = hook_path(repo)
    if not (path.is_symlink() or path.exists()):
        return path, False
    if path.is_symlink() or not _is_ours(path):
        raise ConfigError(
            f"The {HOOK_NAME} hook at {path} was not written by keeptraining; it is left as it is.",
            hint="Remove it yourself if you no longer want it.",
        )
    try:
        path.unlink()
    except OSError as exc:
        raise _cannot(path, exc) from None
    return path, True
