"""The adapter's exit hook and sitecustomize chaining under hostile scripts (issue 25, items 5 and 12).

Real training processes started by the local backend with the adapter on PYTHONPATH.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from keeptraining import adapter
from keeptraining.backends.base import TrainRequest
from keeptraining.backends.local import run as run_local

pytestmark = pytest.mark.integration


def train(tmp_path: Path, script: str, timeout: float = 240.0, **env: str) -> tuple[str, int, float]:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(textwrap.dedent(script))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    request = TrainRequest(
        code_dir=code,
        command=["python", "train.py"],
        output_dir=out,
        env={"KT_EPOCHS": "3", "KT_INITIAL_EPOCH": "0", "KT_ADAPT": "auto", **env},
        timeout=timeout,
        adapter_dir=adapter.folder(),
    )
    t = time.monotonic()
    result = run_local(request)
    return result.output, result.exit_code, time.monotonic() - t


def test_a_forked_child_never_runs_the_adapters_exit_hook(tmp_path: Path) -> None:
    script = """\
        import os, signal, sys
        import numpy as np
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")
        for _ in range(1):  # in a loop, the fit is one of several: the exit hook continues the last one
            model.fit(x, y, epochs=1, verbose=0)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a normal exit: the child runs its atexit handlers
        signal.alarm(60)  # the parent gives up on a deadlocked child
        os.waitpid(pid, 0)
        signal.alarm(0)
        print("parent: child done", flush=True)
    """
    output, code, _ = train(tmp_path, script)
    assert code == 0, output
    before, done, after = output.partition("parent: child done")
    assert done, output
    assert "continuing" not in before, output  # the child trained nothing at its exit
    assert after.count("continuing its last fit to epoch 3") == 1, output  # the parent alone did
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_the_environments_sitecustomize_stays_importable_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("SETTING = 'from the environment'\n")
    script = """\
        from sitecustomize import SETTING
        import sitecustomize
        print("imported:", SETTING, sitecustomize.__file__)
    """
    monkeypatch.setenv("PYTHONPATH", str(other))  # the environment's, which the backend keeps after ours
    output, code, _ = train(tmp_path, script)
    assert code == 0, output
    assert f"imported: from the environment {other / 'sitecustomize.py'}" in output


def test_fit_with_no_epochs_says_it_trains_none(tmp_path: Path) -> None:
    script = """\
        import numpy as np
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        for _ in range(1):  # one of several fits: each trains its own epochs (here none)
            model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), epochs=0, verbose=0)
    """
    output, code, _ = train(tmp_path, script)
    assert code == 0, output
    assert "fit(epochs=0) trains no epoch (KT_EPOCHS=3, the model has 0)" in output, output
    assert "trains epochs 1 to 0" not in output


def test_a_single_fit_with_no_epochs_trains_to_kt_epochs_in_one_run(tmp_path: Path) -> None:
    """The script's one fit is one Keras run to KT_EPOCHS, whatever its own epochs (issue 24's rule)."""
    script = """\
        import numpy as np
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), epochs=0, verbose=0)
    """
    output, code, _ = train(tmp_path, script)
    assert code == 0, output
    assert "fit(epochs=0) trains epochs 1 to 3 in one run" in output, output
    assert "trains epochs 1 to 0" not in output
