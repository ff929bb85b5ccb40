"""How the adapter gets into a training process, and what it costs one that never trains.

Real interpreters, started the way the backends start them (the adapter's folder first on
PYTHONPATH), with small stand-in `keras` / `tensorflow` packages where a test is about the
import hook rather than about training: no TensorFlow import, a fraction of a second each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keeptraining import adapter
from keeptraining.adapter import _keeptraining_adapter as inside
from keeptraining.backends.base import TrainRequest
from keeptraining.backends.local import run as run_local

FAKE_KERAS = """\
__version__ = "{version}"


class Model:
    def fit(self, x=None, y=None, epochs=1, initial_epoch=0, callbacks=None, verbose="auto"):
        return "fit"

    def evaluate(self, *args, **kwargs):
        return 0.0

    def predict(self, *args, **kwargs):
        return None

    def save(self, *args, **kwargs):
        return None

    def save_weights(self, *args, **kwargs):
        return None
"""

BANNER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795827643.084930   29233 port.cc:153] oneDNN custom operations are on.\n"
    "a real warning the user must see\n"
)


def python(
    code: str, tmp_path: Path, *, pythonpath: list[Path] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    paths = [adapter.folder(), *(pythonpath or [])]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TF_CPP"))}
    full = {
        **clean,
        "PYTHONPATH": os.pathsep.join(map(str, paths)),
        "KT_OUTPUT_DIR": str(tmp_path),
        "KT_EPOCHS": "10",
        "KT_INITIAL_EPOCH": "0",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A folder with stand-in keras (Keras 3) and tensorflow packages."""
    folder = tmp_path / "site"
    (folder / "keras").mkdir(parents=True)
    (folder / "keras" / "__init__.py").write_text(FAKE_KERAS.format(version="3.99.0"))
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        f"import os\nos.write(2, {BANNER.encode()!r})\nimport keras\n"
    )
    return folder


def test_without_kt_adapt_nothing_is_hooked_and_the_import_path_is_as_before(tmp_path: Path) -> None:
    done = python(
        f"import sys; print({str(adapter.folder())!r} in sys.path, "
        "[type(f).__name__ for f in sys.meta_path].count('_ImportWatcher'))",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "0"]


def test_the_sitecustomize_it_shadows_still_runs(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("print('the environment sitecustomize ran')\n")
    done = python("pass", tmp_path, pythonpath=[other], KT_ADAPT="auto")
    assert done.stdout == "the environment sitecustomize ran\n", done.stderr


def test_keras_is_hooked_even_after_a_probe_and_banners_are_filtered(tmp_path: Path, fakes: Path) -> None:
    code = (
        "import importlib.util; importlib.util.find_spec('keras')\n"
        "import tensorflow, keras\n"
        "print(keras.Model.fit.__wrapped__.__qualname__)"
    )
    done = python(code, tmp_path, pythonpath=[fakes], KT_ADAPT="keras")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Model.fit\n"
    assert done.stderr == "a real warning the user must see\n"  # TensorFlow's start-up lines are gone


def test_a_user_who_asks_for_tensorflow_logs_gets_them(tmp_path: Path, fakes: Path) -> None:
    done = python(
        "import tensorflow", tmp_path, pythonpath=[fakes], KT_ADAPT="auto", TF_CPP_MIN_LOG_LEVEL="0"
    )
    assert done.stderr == BANNER


def test_keras_2_runs_as_written(tmp_path: Path, fakes: Path) -> None:
    (fakes / "keras" / "__init__.py").write_text(FAKE_KERAS.format(version="2.15.0"))
    done = python(
        "import keras; print(hasattr(keras.Model.fit, '__wrapped__'))",
        tmp_path,
        pythonpath=[fakes],
        KT_ADAPT="auto",
    )
    assert done.stdout.splitlines() == [
        "keeptraining adapter: Keras 2.15.0 is not Keras 3: the script runs as written.",
        "False",
    ]


@pytest.mark.parametrize(
    ("code", "looked_up"),
    [
        ("import os; os.environ.get('KT_EPOCHS')", "True"),
        ("import os; os.getenv('KT_EPOCHS')", "True"),
        ("import os; os.environ['KT_EPOCHS']", "True"),
        ("import os; [k for k in os.environ]; os.environ.get('KT_INITIAL_EPOCH')", "False"),
    ],
)
def test_auto_notes_whether_the_script_looks_up_kt_epochs(tmp_path: Path, code: str, looked_up: str) -> None:
    done = python(
        code + "\nimport _keeptraining_adapter as a; print(a.ADAPTER.read_epochs)", tmp_path, KT_ADAPT="auto"
    )
    assert done.stdout.strip() == looked_up, done.stderr


def test_the_environment_still_works_for_child_processes(tmp_path: Path) -> None:
    code = (
        "import os, subprocess, sys; os.environ['CHILD'] = 'yes'\n"
        "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"CHILD\"])'], "
        "capture_output=True, text=True).stdout.strip())"
    )
    assert python(code, tmp_path, KT_ADAPT="auto").stdout.strip() == "yes"


def test_outside_a_chain_the_adapter_stays_out(tmp_path: Path) -> None:
    assert not inside.install({"KT_ADAPT": "none", "KT_EPOCHS": "10", "KT_OUTPUT_DIR": str(tmp_path)})
    assert not inside.install({"KT_ADAPT": "auto"})  # not run by keeptraining: no KT_EPOCHS
    assert not inside.install({"KT_ADAPT": "auto", "KT_EPOCHS": "ten", "KT_OUTPUT_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["loss", "accuracy", "val_accuracy"], "accuracy"),
        (["loss", "acc"], "acc"),
        (["loss", "sparse_categorical_accuracy"], "sparse_categorical_accuracy"),
        (["out_a_accuracy", "out_b_accuracy"], None),  # two outputs: ambiguous, never a guess
        (["loss", "val_accuracy"], None),
    ],
)
def test_the_metric_is_found_under_its_keras_names(names: list[str], expected: str | None) -> None:
    assert inside.pick_metric(names, "accuracy") == expected


def test_the_local_backend_loads_it_only_when_asked(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "show.py").write_text(
        "import sys\nprint('adapter loaded' if '_keeptraining_adapter' in sys.modules else 'plain')\n"
    )
    for folder, expected in ((adapter.folder(), "adapter loaded"), (None, "plain")):
        request = TrainRequest(
            code_dir=code,
            command=["python", "show.py"],
            output_dir=tmp_path / "out",
            env={"KT_EPOCHS": "1", "KT_ADAPT": "auto"},
            timeout=60,
            adapter_dir=folder,
        )
        assert run_local(request).output.strip() == expected
