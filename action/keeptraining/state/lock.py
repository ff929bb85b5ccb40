"""One keeptraining process per state folder: an ``fcntl`` lock on ``<state_dir>/.lock``.

``keeptraining run`` archives the previous chain and ``attempt`` rewrites the
ledger and the attempt folders: two of them on one folder would archive a live
chain under the other's feet. The second one stops at once with a clear message
(exit code 4). The kernel drops the lock when the process ends, however it ends,
so a killed run never leaves the folder locked; the file itself stays. Whoever takes the lock
first stops the local trainings that a killed run left behind (orphans.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from keeptraining.errors import LedgerError, StateLocked
from keeptraining.output import workflow_commands as gha
from keeptraining.state import orphans

LOCK_FILE = ".lock"


def _open(state_dir: Path) -> int:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        return os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        denied = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        raise LedgerError(
            f"The state folder {state_dir} {'is not writable' if denied else 'cannot be used'}: "
            f"{exc.strerror or exc}.",
            hint="Point state_dir at a writable folder (and remove what is in its place).",
        ) from None


@contextlib.contextmanager
def hold(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock for the block; StateLocked if another process holds it."""
    fd = _open(state_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise StateLocked(
                f"Another keeptraining process{f' (pid {holder})' if holder.isdigit() else ''} is using "
                f"the state folder {state_dir}.",
                hint="Wait for it to finish, or give this chain its own state_dir.",
            ) from None
        with contextlib.suppress(OSError):  # the pid is only for that message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with contextlib.suppress(OSError):  # a dead run's trainings must not write into this one's
            orphans.stop_orphans(state_dir, lambda text: gha.warn(text, title="Orphaned training stopped"))
        yield
    finally:
        os.close(fd)  # closing releases the lock
