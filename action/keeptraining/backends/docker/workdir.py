"""The training container's working folder: a writable copy of the code folder.

Scripts write next to themselves (``os.getcwd()/saved_models``, ``ModelCheckpoint('./checkpoints/...')``).
The repository's code folder is never mounted writable; the container works in a copy of it
that keeptraining owns, and after the run whatever the script created or changed there is kept
with the attempt, in ``<attempt folder>/workdir/`` (never in the repository), and the copy goes.

Only regular files and folders are copied; a symbolic link is copied as the link (its target is
never read here). What comes back from the copy is the training's output, so it is read the
same way: no link is followed, only regular files are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KEPT_FOLDER = "workdir"  # inside the attempt's output folder
SKIPPED = ("__pycache__",)  # what Python writes next to an imported module: not the script's output


@dataclass
class WorkingCopy:
    """A writable copy of ``source`` at ``path``, with what each file was when copied."""

    source: Path
    path: Path
    copied: dict[str, tuple[int, int]] = field(default_factory=dict)  # relative path: (size, mtime_ns)

    def changed(self) -> Iterator[str]:
        """Relative paths of the regular files the training created or changed, in a stable order."""
        for relative in sorted(_regular_files(self.path)):
            info = os.lstat(self.path / relative)
            if self.copied.get(relative) != (info.st_size, info.st_mtime_ns):
                yield relative

    def keep(self, destination: Path, *, owner: tuple[int, int] | None = None) -> list[str]:
        """Move what the training wrote into ``destination``; the relative paths moved."""
        kept = []
        for relative in self.changed():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.path / relative), str(target))
            kept.append(relative)
        if owner is not None and kept:
            hand_over(destination, owner)
        return kept


def prepare(source: Path, parent: Path) -> WorkingCopy:
    """Copy ``source`` (the code folder) into ``parent/code`` and note each file's size and time."""
    path = parent / "code"
    shutil.copytree(source, path, symlinks=True, ignore=shutil.ignore_patterns(*SKIPPED))
    copy = WorkingCopy(source, path)
    for relative in _regular_files(path):
        info = os.lstat(path / relative)
        copy.copied[relative] = (info.st_size, info.st_mtime_ns)
    return copy


def hand_over(folder: Path, owner: tuple[int, int]) -> None:
    """Give ``folder`` and everything in it (links themselves, never their targets) to ``owner``."""
    uid, gid = owner
    with contextlib.suppress(OSError):
        os.chown(folder, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _regular_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in SKIPPED and not os.path.islink(os.path.join(dirpath, d))
        ]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                yield os.path.relpath(full, root)
