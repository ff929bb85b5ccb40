"""The failures a new user meets on day one, recognised in the training log with their fix; and the
docker backend's writable working copy of the code folder (what the script wrote is kept apart)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keeptraining.backends.docker import workdir
from keeptraining.contract import failures

TRACEBACK = 'Traceback (most recent call last):\n  File "nn.py", line 40, in <module>\n'


def test_a_read_only_file_system_names_where_to_write_instead() -> None:
    log = "Epoch 10/10\n" + TRACEBACK + "OSError: [Errno 30] Read-only file system: '/opt/saved_models'\n"
    found = failures.explain(log, container=True)
    assert found is not None
    assert found.message == " It tried to write '/opt/saved_models', which is on a read-only file system."
    assert "$KT_OUTPUT_DIR" in found.hint and "workdir/" in found.hint and "/tmp" in found.hint


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("sklearn", "scikit-learn"),
        ("sklearn.model_selection", "scikit-learn"),
        ("pandas", "pandas"),
        ("cv2", "opencv-python-headless"),
    ],
)
def test_a_missing_module_says_which_requirement_to_add_and_where(module: str, package: str) -> None:
    found = failures.explain("", TRACEBACK + f"ModuleNotFoundError: No module named '{module}'\n")
    assert found is not None
    top = module.split(".", 1)[0]
    assert found.message == f" The training imports {top!r}, which is not installed where it runs."
    assert f"Add `{package}` (pinned" in found.hint and "requirements.txt" in found.hint


@pytest.mark.parametrize(
    ("line", "said", "change"),
    [
        (
            "AttributeError: module 'keras.preprocessing.image' has no attribute 'ImageDataGenerator'",
            "ImageDataGenerator` is Keras 2",
            "image_dataset_from_directory",
        ),
        (
            "ImportError: cannot import name 'ImageDataGenerator' from 'keras.preprocessing.image'",
            "ImageDataGenerator` is Keras 2",
            "image_dataset_from_directory",
        ),
        (
            "AttributeError: 'Sequential' object has no attribute 'fit_generator'",
            "`fit_generator`",
            "call `fit`",
        ),
        (
            "ValueError: The filepath provided must end in `.keras` (Keras model format). Received: a.hdf5",
            "`.weights.h5`, not `.hdf5`",
            "ModelCheckpoint('best.keras')",
        ),
        (
            "ValueError: Argument(s) not recognized: {'lr': 0.01}",
            "`learning_rate=`, not `lr=`",
            "write `learning_rate=`",
        ),
        (
            "ModuleNotFoundError: No module named 'keras.wrappers'",
            "this Keras/TensorFlow does not have",
            "tf-keras",
        ),
    ],
)
def test_keras_2_code_under_keras_3_says_what_to_change_or_what_to_pin(
    line: str, said: str, change: str
) -> None:
    found = failures.explain(TRACEBACK + line + "\n")
    assert found is not None
    assert said in found.message and change in found.hint
    assert "tf-keras" in found.hint and "TF_USE_LEGACY_KERAS=1" in found.hint


def test_an_ordinary_failure_is_left_to_the_log_and_quotes_are_cut_short() -> None:
    assert failures.explain("Epoch 1/10\n" + TRACEBACK + "ZeroDivisionError: division by zero\n") is None
    found = failures.explain(f"OSError: [Errno 30] Read-only file system: '/{'x' * 290}'")
    assert found is not None and len(found.message) < 200


def test_the_working_copy_keeps_only_what_the_training_wrote(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "data").mkdir(parents=True)
    (code / "train.py").write_text("print('hi')\n")
    (code / "data" / "table.csv").write_text("a,b\n1,2\n")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "x.pyc").write_bytes(b"\0")
    os.symlink("/etc/hostname", code / "link")
    copy = workdir.prepare(code, tmp_path / "staging")
    assert sorted(copy.copied) == ["data/table.csv", "train.py"]
    assert (copy.path / "link").is_symlink()  # copied as the link, its target never read
    (copy.path / "saved_models").mkdir()
    (copy.path / "saved_models" / "m.keras").write_bytes(b"model")
    (copy.path / "data" / "table.csv").write_text("a,b\n1,2\n3,4\n")  # changed in place
    (copy.path / "__pycache__").mkdir()  # not copied: what Python writes beside an imported module
    (copy.path / "__pycache__" / "zoo_data.cpython-311.pyc").write_bytes(b"\0")
    kept = copy.keep(tmp_path / "attempt" / "workdir")
    assert kept == ["data/table.csv", "saved_models/m.keras"]
    assert (tmp_path / "attempt/workdir/saved_models/m.keras").read_bytes() == b"model"
    assert (code / "data" / "table.csv").read_text() == "a,b\n1,2\n"  # the repository is untouched
    assert not (code / "saved_models").exists()
