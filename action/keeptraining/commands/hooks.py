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


def hook_path(repo: Path) -> Path:
    """Where git looks for the post-commit hook (honours core.hooksPath and worktrees)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--git-path", f"hooks/{HOOK_NAME}"], cwd=repo,
                              capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError:
        raise ConfigError("git is not installed, so no git hook can be installed.") from None
    if done.returncode != 0:
        raise ConfigError(f"{repo} is not inside a git repository.",
                          hint="Run `keeptraining hooks install` in your repository (or pass --repo).")
    path = Path(done.stdout.strip())
    return path if path.is_absolute() else (repo / path).resolve()


def _is_ours(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:1000]
    except OSError:
        return False
    return MARKER in head


def install(repo: Path) -> tuple[Path, bool]:
    """Write the hook: (its path, whether it was written now rather than already there)."""
    path = hook_path(repo)
    if path.is_symlink() or path.exists():
        if not path.is_symlink() and _is_ours(path):
            return path, False
        raise ConfigError(f"A {HOOK_NAME} hook already exists at {path}; keeptraining never overwrites "
                          "a hook it did not write.",
                          hint="Add a `git push` line to that hook yourself, or move it away and run "
                               "`keeptraining hooks install` again.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(HOOK_SCRIPT)
    return path, True


def uninstall(repo: Path) -> tuple[Path, bool]:
    """Remove the hook if it is keeptraining's: (its path, whether one was removed)."""
    path = hook_path(repo)
    if not (path.is_symlink() or path.exists()):
        return path, False
    if path.is_symlink() or not _is_ours(path):
        raise ConfigError(f"The {HOOK_NAME} hook at {path} was not written by keeptraining; it is left "
                          "as it is.", hint="Remove it yourself if you no longer want it.")
    path.unlink()
    return path, True
