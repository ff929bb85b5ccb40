"""Loaded by Python at start-up because keeptraining put this folder first on PYTHONPATH.

It installs keeptraining's Keras adapter (``_keeptraining_adapter``), which waits for the
training script to import Keras or TensorFlow and costs nothing before that. Then it
takes this folder off ``sys.path`` again (the script's imports see what they always saw)
and runs the ``sitecustomize`` that this one shadows, if the environment has one, under its own
name in ``sys.modules`` (so the script can still import from it).
Nothing here may stop the script: any failure is one line on stderr.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _install() -> None:
    try:
        import _keeptraining_adapter  # noqa: PLC0415 - found through this folder on sys.path

        _keeptraining_adapter.install()
    except Exception as exc:  # never break the user's script
        sys.stderr.write(
            f"keeptraining adapter: not loaded ({type(exc).__name__}: {exc}); the script runs as written.\n"
        )


def _run_shadowed_sitecustomize() -> None:
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.path[:] = others
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    ours = sys.modules.get("sitecustomize")
    # Under its own name, as if Python had imported it: `from sitecustomize import X` in the script
    # (or in the module itself) finds the environment's module, not this one.
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # what Python itself does with a failing sitecustomize
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        sys.stderr.write(
            f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(exc).__name__}: {exc}\n"
        )


_install()
_run_shadowed_sitecustomize()
