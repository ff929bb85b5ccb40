"""`keeptraining hooks` with hostile repositories (issue 25, item 11): exit 2 with a clear message,
never a traceback; never through a link; a shared core.hooksPath only with --force."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from keeptraining import cli
from keeptraining.commands import hooks

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    return work


def test_hooks_folder_that_is_a_file_is_exit_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hooks_dir = repo / ".git" / "hooks"
    for item in hooks_dir.iterdir():
        item.unlink()
    hooks_dir.rmdir()
    hooks_dir.write_text("not a folder")
    assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "cannot be written or removed" in err and "must be a writable folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_hooks_folder_is_exit_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".git" / "hooks").chmod(0o555)
    try:
        assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    finally:
        (repo / ".git" / "hooks").chmod(0o755)
    assert "cannot be written" in capsys.readouterr().err


def test_a_write_the_system_refuses_is_exit_2(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What root (these tests' user) cannot be shown with chmod: the system refusing the write."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(hooks.os, "open", refuse)
    assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    assert "cannot be written or removed: Permission denied" in capsys.readouterr().err


def test_repo_that_is_a_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert cli.main(["hooks", "install", "--repo", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_dangling_link_in_place_of_the_hook_is_never_written_or_deleted_through(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    link = repo / ".git" / "hooks" / hooks.HOOK_NAME
    link.symlink_to(elsewhere)
    assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    assert not elsewhere.exists(), "written through the link"
    assert "already exists" in capsys.readouterr().err
    elsewhere.write_text(hooks.HOOK_SCRIPT)  # a file of ours elsewhere, the link pointing at it
    assert cli.main(["hooks", "uninstall", "--repo", str(repo)]) == 2
    assert elsewhere.exists(), "deleted through the link"
    assert link.is_symlink()


def test_a_shared_hooks_path_needs_force(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared-hooks"
    shared.mkdir()
    git(repo, "config", "core.hooksPath", str(shared))
    assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert f"core.hooksPath points to {shared}, outside this repository" in err and "--force" in err
    assert not (shared / hooks.HOOK_NAME).exists()
    assert cli.main(["hooks", "install", "--force", "--repo", str(repo)]) == 0
    assert (shared / hooks.HOOK_NAME).is_file()


def test_a_folder_in_place_of_the_hook_is_exit_2_both_ways(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the repeat pass: uninstall read the folder as a file (exit 70)."""
    (repo / ".git" / "hooks" / hooks.HOOK_NAME).mkdir()
    assert cli.main(["hooks", "install", "--repo", str(repo)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["hooks", "uninstall", "--repo", str(repo)]) == 2
    assert "was not written by keeptraining" in capsys.readouterr().err
