"""Files inside a folder, reached without following a symbolic link and only if they are plain files.

Paths that come from the training script (``metrics.json``, its ``checkpoint``)
or from a restored chain state (the ledger's ``checkpoint`` / ``resumed_from``)
are untrusted: a script can make ``model.keras`` a link to a host file, or a
folder on the way a link out of the state folder. Every function here walks
the relative path one component at a time from a folder file descriptor with
``O_NOFOLLOW``, so no link is ever crossed, and acts only on regular files: no
FIFO (which would block a read forever), device, socket or folder. Anything
else raises PathRefused, and nothing has been read, copied or deleted.

The base folder itself (the state folder, an attempt folder keeptraining made)
is the caller's and is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from keeptraining.errors import PathRefused, quote

MAX_PATH_CHARS = 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_COPY_CHUNK = 1024 * 1024


def check_relative(value: object, what: str) -> PurePosixPath:
    """``value`` as a relative path that stays inside its folder: no ``..``, not absolute, no NUL."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS:
        raise PathRefused(f"{what} = {quote(value)} is not a relative file path.")
    if "\0" in value or "\\" in value:
        raise PathRefused(f"{what} = {quote(value)} holds a NUL or a backslash.")
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or pure.name in ("", "."):
        raise PathRefused(
            f"{what} = {quote(value)} must be relative to its folder (no absolute path, no '..')."
        )
    return pure


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


@contextlib.contextmanager
def _parent(base: Path, rel: PurePosixPath, what: str) -> Iterator[int]:
    """A descriptor of the folder that holds ``rel``'s last component, reached without links.

    FileNotFoundError when a folder on the way does not exist.
    """
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathRefused(
                        f"{what} {quote(str(rel))}: {part!r} on the way is not a folder "
                        "(a symbolic link or a file); only plain folders are followed."
                    ) from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuse(rel: PurePosixPath, what: str, mode: int) -> PathRefused:
    return PathRefused(
        f"{what} {quote(str(rel))} is {_kind(mode)}; only a regular file inside its folder is accepted."
    )


def is_file(base: Path, rel: str | PurePosixPath, what: str) -> bool:
    """True for a regular file, False when nothing is there; PathRefused for anything else."""
    pure = check_relative(str(rel), what)
    try:
        with _parent(base, pure, what) as fd:
            info = _lstat(fd, pure.name)
    except FileNotFoundError:
        return False
    if info is None:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(pure, what, info.st_mode)
    return True


@contextlib.contextmanager
def open_file(base: Path, rel: str | PurePosixPath, what: str) -> Iterator[int]:
    """A read descriptor of the regular file ``base/rel``; FileNotFoundError when absent."""
    pure = check_relative(str(rel), what)
    with _parent(base, pure, what) as parent:
        info = _lstat(parent, pure.name)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", str(base / pure))
        if not stat.S_ISREG(info.st_mode):  # checked before open: opening a device can act
            raise _refuse(pure, what, info.st_mode)
        try:
            fd = os.open(pure.name, _FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a link since the check
                raise _refuse(pure, what, stat.S_IFLNK) from None
            raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(pure, what, mode)
        yield fd
    finally:
        os.close(fd)


def read_bytes(base: Path, rel: str | PurePosixPath, what: str, *, max_bytes: int) -> bytes:
    """The content of a regular file, or PathRefused when it is larger than ``max_bytes``."""
    with open_file(base, rel, what) as fd:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise PathRefused(f"{what} {quote(str(rel))} is {size} bytes; at most {max_bytes} are read.")
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, _COPY_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew while being read
        raise PathRefused(f"{what} {quote(str(rel))} is larger than {max_bytes} bytes.")
    return data


def copy_file(base: Path, rel: str | PurePosixPath, dest: Path, what: str) -> Path:
    """Copy a regular file to ``dest`` (which must not exist); the copy is readable by anyone."""
    with open_file(base, rel, what) as src:
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            while chunk := os.read(src, _COPY_CHUNK):
                os.write(out, chunk)
        finally:
            os.close(out)
    return dest


def unlink_file(base: Path, rel: str | PurePosixPath, what: str) -> bool:
    """Delete a regular file; False when it is not there. Never deletes through a link."""
    pure = check_relative(str(rel), what)
    try:
        with _parent(base, pure, what) as fd:
            info = _lstat(fd, pure.name)
            if info is None:
                return False
            if not stat.S_ISREG(info.st_mode):
                raise _refuse(pure, what, info.st_mode)
            os.unlink(pure.name, dir_fd=fd)
    except FileNotFoundError:
        return False
    return True


def plain_dir(path: Path, what: str) -> Path:
    """``path`` as a folder keeptraining writes into, made if missing; never a symbolic link.

    A restored state could hold ``outbox`` or ``previous`` as a link out of the state
    folder, and everything written or moved there would land elsewhere.
    """
    path.mkdir(parents=True, exist_ok=True)
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise PathRefused(f"{what} {path} is {_kind(mode)}; keeptraining writes only into plain folders.")
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the folder.

    On any OSError (disk full, read-only folder) the temp file is removed, the
    previous content of ``path`` is untouched, and the OSError propagates.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
