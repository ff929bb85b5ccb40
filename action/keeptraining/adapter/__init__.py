"""The Keras adapter, host side: where it lives and how a training process loads it.

keeptraining puts this folder on the training process's ``PYTHONPATH`` (local backend) or
mounts it read-only at ``/workspace/adapter`` and points ``PYTHONPATH`` there (docker
backend). Python then imports ``sitecustomize.py`` from it at start-up, which hooks Keras
when (and only when) the script imports it; the script's files are never touched.
The code that runs inside the training process is ``sitecustomize.py`` and
``_keeptraining_adapter.py`` (standard library, plus Keras once the script has imported it);
this file is only imported by keeptraining itself.
"""

from __future__ import annotations

from pathlib import Path

MODES = ("auto", "keras", "none")
CONTAINER_DIR = "/workspace/adapter"  # where the docker backend mounts it


def folder() -> Path:
    """The folder to put on the training process's PYTHONPATH."""
    return Path(__file__).resolve().parent


def pythonpath(adapter_dir: str, existing: str | None, sep: str = ":") -> str:
    """``adapter_dir`` first, then what the environment or image already had."""
    return adapter_dir + (sep + existing if existing else "")
