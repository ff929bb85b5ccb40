"""Operations on the state folder's files: fresh output folders, moving aside what the ledger does not
record (never deleting it), archiving an earlier chain, and the one way an OS error there is reported.

Paths from the restored state go through ``safe_paths``: nothing is followed through a symbolic link.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from keeptraining.config.settings import Config
from keeptraining.errors import ConfigError, LedgerError, PathRefused
from keeptraining.output import workflow_commands as gha
from keeptraining.state import ledger as ledger_mod
from keeptraining.state import safe_paths

UNRECORDED_DIR = "unrecorded"  # attempt folders the ledger does not know, moved aside (never deleted)
PREVIOUS_DIR = "previous"  # earlier chains, moved aside by a new one


@dataclass
class Workspace:
    """Where things are: the repository, the training code, the chain's state."""

    repo_root: Path
    code_dir: Path
    state_dir: Path
    command: list[str] = field(default_factory=list)


def workspace(config: Config, repo_root: Path) -> Workspace:
    """Resolve and check paths; the code folder must stay inside the repository."""
    root = repo_root.resolve()
    try:
        code_dir = (root / config.code_path).resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise ConfigError(f"code_path = {config.code_path!r} cannot be resolved: {exc}.") from None
    if not code_dir.is_relative_to(root):
        raise ConfigError(
            f"code_path = {config.code_path!r} resolves to {code_dir}, outside the repository {root}.",
            hint="Use a folder inside the repository, e.g. `code_path: ml_code`.",
        )
    if not code_dir.is_dir():
        raise ConfigError(
            f"code_path = {config.code_path!r}: no such folder in {root}.",
            hint="Point code_path at the folder that holds your training script.",
        )
    try:
        command = shlex.split(config.train_command)
    except ValueError as exc:
        raise ConfigError(f"train_command = {config.train_command!r} cannot be split: {exc}.") from None
    if not command:
        raise ConfigError("train_command is empty.", hint="e.g. `train_command: python nn.py`.")
    state_dir = Path(config.state_dir)
    state_dir = state_dir if state_dir.is_absolute() else root / state_dir
    ledger_mod.check_state_dir(state_dir)
    return Workspace(root, code_dir, state_dir, command)


def relative(ws: Workspace, path: Path | None) -> str | None:
    """``path`` as the ledger records it: relative to the state folder when inside it."""
    if path is None:
        return None
    try:
        return str(path.relative_to(ws.state_dir))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def state_folder_errors(
    action: str, hint: str = "Make the state folder writable (and free disk space)."
) -> Iterator[None]:
    """Work on the state folder's files: a refused path, or an OS error as "Cannot <action>: why."
    (with ``hint``), becomes a LedgerError."""
    try:
        yield
    except PathRefused as exc:
        raise LedgerError(exc.message) from None
    except OSError as exc:
        raise LedgerError(f"Cannot {action}: {exc.strerror or exc}.", hint=hint) from None


def move_aside(state_dir: Path, path: Path, name: str) -> Path:
    """Move ``path``, which the ledger does not record, to ``<state_dir>/unrecorded/<name>-<UTC time>``
    (never deleted); returns where it went."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = safe_paths.plain_dir(state_dir / UNRECORDED_DIR, "The unrecorded folder") / f"{name}-{stamp}"
    os.rename(path, aside)
    return aside


def fresh_output_dir(state_dir: Path, number: int, *, replace: bool, sub: str | None = None) -> Path:
    """An empty output folder for attempt ``number`` (``sub``: for a later run of it, inside its folder).

    What is already there goes only when ``replace`` (the ledger records this attempt
    as failed: a retry replaces it); anything the ledger does not record (a lost ledger
    write, a folder from elsewhere) is moved aside into ``unrecorded/``, never deleted.
    """
    out_dir = ledger_mod.attempt_dir(state_dir, number)
    if sub is not None:
        out_dir, replace = out_dir / sub, False
    with state_folder_errors(f"prepare the output folder {out_dir}"):
        if os.path.lexists(out_dir):
            if replace and out_dir.is_dir() and not out_dir.is_symlink():
                shutil.rmtree(out_dir)
            else:
                name = f"{out_dir.parent.name}-{out_dir.name}" if sub else out_dir.name
                aside = move_aside(state_dir, out_dir, name)
                gha.warn(
                    f"{out_dir} is not recorded in the ledger; it was moved to {aside}, not deleted.",
                    title="Unrecorded attempt folder kept",
                )
        out_dir.mkdir(parents=True)
    return out_dir


def empty_attempt_dir(folder: Path, number: int) -> Path:
    """``folder/attempt-NNN``, new and empty (``folder`` itself is made when missing): a trial's output."""
    with state_folder_errors(
        f"prepare the trial's output folder in {folder}",
        hint="Make the folder writable (and free disk space).",
    ):
        safe_paths.plain_dir(folder, "The trial's folder")
        out_dir = ledger_mod.attempt_dir(folder, number)
        out_dir.mkdir()
    return out_dir


def fresh_scratch(state_dir: Path, name: str, say: Callable[[str], None]) -> Path:
    """An empty ``<state_dir>/<name>``; one left by an interrupted run is moved aside, never deleted."""
    scratch = state_dir / name
    with state_folder_errors(f"prepare the round's folder {scratch}"):
        state_dir.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(scratch):
            aside = move_aside(state_dir, scratch, name)
            say(f"An unmerged round was left in {scratch}; it was moved to {aside.parent}, not deleted.")
        scratch.mkdir()
    return scratch


def archive_previous(state_dir: Path, say: Callable[[str], None]) -> None:
    """Move an earlier chain's ledger and attempts aside, so a new chain loses nothing."""
    if not os.path.lexists(ledger_mod.ledger_path(state_dir)):
        return
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = state_dir / PREVIOUS_DIR / stamp
    try:
        safe_paths.plain_dir(state_dir / PREVIOUS_DIR, "The previous-chains folder")
        target = _new_folder(state_dir / PREVIOUS_DIR, stamp)  # two runs in one second: stamp-2
        for item in state_dir.iterdir():
            if item.name in (
                ledger_mod.LEDGER_FILE,
                ledger_mod.CHART_FILE,
                UNRECORDED_DIR,
            ) or item.name.startswith("attempt-"):
                os.rename(item, target / item.name)
    except PathRefused as exc:
        raise LedgerError(exc.message) from None
    except OSError as exc:
        raise LedgerError(
            f"Cannot move the previous chain aside into {target}: {exc.strerror or exc}.",
            hint="Make the state folder writable, or move its contents away yourself.",
        ) from None
    say(f"The previous chain was moved to {target}.")


def _new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, made now, or ``name-2``, ``name-3``... when that one exists already."""
    for n in range(1, 1000):
        target = parent / (name if n == 1 else f"{name}-{n}")
        try:
            target.mkdir()
            return target
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "Too many folders of the same second", str(parent / name))
