"""``keeptraining validate``: can the train command run at all?

Two checks that need no training: the script a ``python script.py`` command names exists
in ``code_path`` (on every backend: the code is mounted there), and, for the local
backend, the command's program is installed. Each failure says what to fix.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .errors import ConfigError

_PYTHON = re.compile(r"python(3(\.\d+)?)?")
_FLAGS = ("-u", "-B", "-O", "-OO", "-X", "-W")  # interpreter flags before the script (-X/-W take a value)


def python_args(command: list[str]) -> list[str] | None:
    """The arguments after ``python`` and its flags, when the command starts a Python interpreter."""
    if not command or not _PYTHON.fullmatch(Path(command[0]).name):
        return None
    args = command[1:]
    while args and args[0] in _FLAGS:
        args = args[2:] if args[0] in ("-X", "-W") else args[1:]
    return args


def python_script(command: list[str]) -> str | None:
    """The script of a ``python script.py ...`` command (not ``-m``/``-c``), else None."""
    args = python_args(command)
    return args[0] if args and not args[0].startswith("-") else None


def check(command: list[str], code_dir: Path, *, local: bool) -> list[str]:
    """What was checked, one line each; ConfigError on the first problem."""
    done = []
    script = python_script(command)
    if script is not None:
        if not (code_dir / script).is_file():
            raise ConfigError(f"train_command runs {script}, which is not in code_path ({code_dir}).",
                              hint="Fix train_command (e.g. `python train.py`) or point code_path at the "
                                   "folder that holds the script.")
        done.append(f"train_command's script {script} is in code_path")
    if local and command[0] not in ("python", "python3"):
        program = command[0]
        found = (code_dir / program).is_file() if "/" in program else shutil.which(program) is not None
        if not found:
            raise ConfigError(f"train_command {program!r} was not found for the local backend.",
                              hint="Install it, or start the script through its interpreter "
                                   "(e.g. `python train.py`).")
        done.append(f"train_command's program {program} is installed")
    return done
