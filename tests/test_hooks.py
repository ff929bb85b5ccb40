"""`keeptraining hooks`: the post-commit push hook, on real git repositories and a real bare remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from keeptraining import cli
from keeptraining.commands import hooks

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_AUTHOR_NAME": "kt test",
    "GIT_AUTHOR_EMAIL": "kt@example.invalid",
    "GIT_COMMITTER_NAME": "kt test",
    "GIT_COMMITTER_EMAIL": "kt@example.invalid",
}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **GIT_ENV, **(env or {})},
    )


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A working clone on `main` of a bare remote that already holds one commit."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    assert git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote)).returncode == 0
    assert git(tmp_path, "clone", "-q", str(remote), str(work)).returncode == 0
    git(work, "checkout", "-q", "-b", "main")
    (work / "a.txt").write_text("1\n")
    git(work, "add", "a.txt")
    assert git(work, "commit", "-q", "-m", "first").returncode == 0
    assert git(work, "push", "-q", "-u", "origin", "main").returncode == 0
    return work


def remote_head(clone: Path, branch: str = "main") -> str:
    return git(clone, "ls-remote", "origin", f"refs/heads/{branch}").stdout.split("\t")[0]


def commit(clone: Path, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (clone / "a.txt").write_text(text)
    git(clone, "add", "a.txt")
    return git(clone, "commit", "-q", "-m", text, env=env)


def test_installed_hook_pushes_each_commit(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hooks", "install", "--repo", str(clone)]) == 0
    assert "Installed" in capsys.readouterr().out
    assert os.access(clone / ".git" / "hooks" / "post-commit", os.X_OK)
    assert commit(clone, "2\n").returncode == 0
    assert remote_head(clone) == git(clone, "rev-parse", "HEAD").stdout.strip()

    # A new branch without upstream is pushed to origin under its own name.
    git(clone, "checkout", "-q", "-b", "feature")
    assert commit(clone, "3\n").returncode == 0
    assert remote_head(clone, "feature") == git(clone, "rev-parse", "HEAD").stdout.strip()


def test_hook_never_blocks_a_commit(clone: Path) -> None:
    hooks.install(clone)
    pushed = remote_head(clone)
    assert commit(clone, "skip\n", env={"KEEPTRAINING_NO_PUSH": "1"}).returncode == 0
    assert remote_head(clone) == pushed, "KEEPTRAINING_NO_PUSH=1 must skip the push"

    git(clone, "remote", "set-url", "origin", str(clone.parent / "gone.git"))
    failed = commit(clone, "offline\n")
    assert failed.returncode == 0, "a failed push must not fail the commit"
    assert "pushing main to origin failed; the commit is kept locally" in failed.stderr
    assert git(clone, "log", "-1", "--format=%s").stdout.strip() == "offline"

    git(clone, "checkout", "-q", "--detach")
    assert commit(clone, "detached\n").returncode == 0  # nothing to push, no error


def test_install_is_idempotent_and_never_overwrites_a_foreign_hook(clone: Path) -> None:
    path, written = hooks.install(clone)
    assert written
    assert hooks.install(clone) == (path, False)

    path.unlink()
    path.write_text("#!/bin/sh\necho mine\n")
    assert cli.main(["hooks", "install", "--repo", str(clone)]) == 2
    assert cli.main(["hooks", "uninstall", "--repo", str(clone)]) == 2
    assert path.read_text() == "#!/bin/sh\necho mine\n"


def test_uninstall_removes_only_its_own_hook(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hooks", "uninstall", "--repo", str(clone)]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    path, _ = hooks.install(clone)
    assert cli.main(["hooks", "uninstall", "--repo", str(clone)]) == 0
    assert not path.exists()
    pushed = remote_head(clone)
    assert commit(clone, "after\n").returncode == 0
    assert remote_head(clone) == pushed


def test_core_hooks_path_is_honoured(clone: Path) -> None:
    git(clone, "config", "core.hooksPath", ".githooks")
    path, _ = hooks.install(clone)
    assert path == (clone / ".githooks" / "post-commit").resolve()
    assert commit(clone, "custom path\n").returncode == 0
    assert remote_head(clone) == git(clone, "rev-parse", "HEAD").stdout.strip()


def test_outside_a_repository_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hooks", "install", "--repo", str(tmp_path)]) == 2
    assert "is not inside a git repository" in capsys.readouterr().err
