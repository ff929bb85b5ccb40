"""safe_paths: no symbolic link is crossed, only regular files are read, copied or deleted."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from keeptraining.errors import PathRefused
from keeptraining.state import safe_paths


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """(base, outside): a base folder with a file, and a host file outside it."""
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "model.keras").write_bytes(b"checkpoint")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_rsa").write_text("host secret")
    return base, outside


def test_regular_file_is_read_copied_and_deleted(folders: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = folders
    assert safe_paths.is_file(base, "sub/model.keras", "checkpoint")
    assert safe_paths.read_bytes(base, "sub/model.keras", "checkpoint", max_bytes=100) == b"checkpoint"
    copy = safe_paths.copy_file(base, "sub/model.keras", tmp_path / "copy.keras", "checkpoint")
    assert copy.read_bytes() == b"checkpoint" and copy.stat().st_mode & 0o777 == 0o644
    assert safe_paths.unlink_file(base, "sub/model.keras", "checkpoint")
    assert not safe_paths.is_file(base, "sub/model.keras", "checkpoint")
    assert not safe_paths.unlink_file(base, "sub/model.keras", "checkpoint")
    assert not safe_paths.unlink_file(base, "nowhere/model.keras", "checkpoint")


@pytest.mark.parametrize("rel", ["../outside/id_rsa", "/etc/passwd", "", "a\0b", "sub/..", ".", "a\\b"])
def test_paths_that_leave_the_folder_are_refused(folders: tuple[Path, Path], rel: str) -> None:
    base, _ = folders
    with pytest.raises(PathRefused):
        safe_paths.is_file(base, rel, "checkpoint")


def test_links_are_never_crossed(folders: tuple[Path, Path]) -> None:
    base, outside = folders
    (base / "link.keras").symlink_to(outside / "id_rsa")
    (base / "linked").symlink_to(outside)
    for rel in ("link.keras", "linked/id_rsa"):
        for act in (
            lambda r: safe_paths.is_file(base, r, "x"),
            lambda r: safe_paths.read_bytes(base, r, "x", max_bytes=100),
            lambda r: safe_paths.unlink_file(base, r, "x"),
        ):
            with pytest.raises(PathRefused, match=r"symbolic link|not a folder"):
                act(rel)
    assert (outside / "id_rsa").read_text() == "host secret"


def test_fifo_socket_and_folder_are_refused_without_blocking(folders: tuple[Path, Path]) -> None:
    base, _ = folders
    os.mkfifo(base / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(base / "sock"))
        for name, kind in (("fifo", "a FIFO"), ("sock", "a socket"), ("sub", "a folder")):
            with pytest.raises(PathRefused, match=kind):
                safe_paths.read_bytes(base, name, "metrics", max_bytes=100)


def test_size_cap(folders: tuple[Path, Path]) -> None:
    base, _ = folders
    with pytest.raises(PathRefused, match="is 10 bytes; at most 4"):
        safe_paths.read_bytes(base, "sub/model.keras", "checkpoint", max_bytes=4)


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "ledger.json"
    target.write_text("old")
    safe_paths.atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]
