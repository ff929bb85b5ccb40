"""``keeptraining validate``: can the train command run at all?

Checks that need no training: the script a ``python script.py`` command names exists in
``code_path`` (on every backend: the code is mounted there); for the local backend, the
command's program is installed; for the docker backend without a Dockerfile, keeptraining
can generate the image (``backends/docker/dockerfile.py``). Each failure says what to fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from keeptraining.backends.docker import dockerfile as dockerfile_gen
from keeptraining.config.settings import Config
from keeptraining.errors import ConfigError
from keeptraining.state.folder import Workspace


def check(config: Config, ws: Workspace) -> list[str]:
    """What was checked, one line each; ConfigError on the first problem."""
    done = check_command(ws.command, ws.code_dir, local=config.backend == "local")
    if config.backend != "local" and dockerfile_gen.wanted(
        ws.repo_root, config.dockerfile, config.sources.get("dockerfile", "default")
    ):
        choice = dockerfile_gen.choose(ws.repo_root, ws.code_dir, ws.command, config.base_image)
        done.append("no Dockerfile, so keeptraining generates the image: " + "; ".join(choice.reasons))
    return done


def check_command(command: list[str], code_dir: Path, *, local: bool) -> list[str]:
    """The script is in code_path; for the local backend, the program is installed."""
    done: list[str] = []
    script = dockerfile_gen.python_script(command)
    if script is not None:
        if not (code_dir / script).is_file():
            raise ConfigError(
                f"train_command runs {script}, which is not in code_path ({code_dir}).",
                hint="Fix train_command (e.g. `python train.py`) or point code_path at the "
                "folder that holds the script.",
            )
        done.append(f"train_command's script {script} is in code_path")
    if local and command[0] not in ("python", "python3"):
        program = command[0]
        found = (code_dir / program).is_file() if "/" in program else shutil.which(program) is not None
        if not found:
            raise ConfigError(
                f"train_command {program!r} was not found for the local backend.",
                hint="Install it, or start the script through its interpreter (e.g. `python train.py`).",
            )
        done.append(f"train_command's program {program} is installed")
    return done
