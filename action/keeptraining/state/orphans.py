"""Local trainings that outlive their keeptraining, found and stopped.

The local backend starts each training in its own session (so that a timeout stops the whole
tree), which also means that when keeptraining itself is killed (``kill -9``, the OOM killer) the
training lives on, and would write into the attempt folder that the next ``run --continue``
recreates. So every local training carries a random mark in its environment (``KT_TRAINING_ID``,
inherited by whatever it starts), and the state folder holds a record of each mark
(``.trainings/<mark>``) while its training runs. Whoever next takes the state folder's lock knows
that the keeptraining which wrote a record left is dead, and stops every process that still carries
its mark before anything is trained. When a training ends normally, whatever it left behind (a
forked daemon) is stopped the same way.

Records come from the state folder, which may be a restored artifact: only the mark (hex) is read
from a record's name, never a process id; only processes of this user carrying it are signalled.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from keeptraining.contract import env as kt_env

ENV = kt_env.TRAINING_ID
RECORD_DIR = ".trainings"
_MARK = re.compile(r"[0-9a-f]{32}")
_GRACE_S = 2.0  # after SIGTERM, how long a left-over process may take to exit


def new_mark() -> str:
    return secrets.token_hex(16)


def record(state_dir: Path, mark: str) -> Path | None:
    """Note in the state folder that a training marked ``mark`` is about to start; None when the
    folder cannot be written (the training still runs: its end is then only handled in-process)."""
    folder = state_dir / RECORD_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            return None
        path = folder / mark
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.close(fd)
    except OSError:
        return None
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            return


def marked(mark: str) -> list[int]:
    """The processes of this user whose environment carries ``mark`` (``/proc/<pid>/environ``)."""
    needle = f"{ENV}={mark}".encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone meanwhile, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop(mark: str, grace: float = _GRACE_S) -> list[int]:
    """SIGTERM every process carrying ``mark``, then SIGKILL those still there after ``grace``
    seconds; returns the ids of the processes that were signalled."""
    pids = marked(mark)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in marked(mark) if pid in pids]
    for pid in marked(mark):  # also any it started meanwhile
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return


def stop_orphans(state_dir: Path, say: Callable[[str], None]) -> int:
    """Stop the trainings that a dead keeptraining left running on ``state_dir`` (call it holding
    the state folder's lock: a record is then never a live run's); returns how many processes."""
    folder = state_dir / RECORD_DIR
    if folder.is_symlink() or not folder.is_dir():
        return 0
    stopped = 0
    for entry in os.scandir(folder):
        if not _MARK.fullmatch(entry.name):
            continue
        pids = stop(entry.name)
        if pids:
            stopped += len(pids)
            say(
                f"Stopped {len(pids)} process(es) of a local training that outlived its keeptraining "
                f"(pid {', '.join(map(str, sorted(pids)[:5]))}): it could have written into this run's "
                "attempt folders."
            )
        forget(Path(entry.path))
    return stopped
