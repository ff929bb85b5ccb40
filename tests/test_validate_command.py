"""`keeptraining validate` catches a train command that cannot run, and suggests known names."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import fake_repo
from keeptraining.backends.docker import dockerfile as dockerfile_gen
from keeptraining.cli import main
from keeptraining.commands import validate as command_check


def validate(repo: Path, *args: str) -> int:
    return main(["validate", "--repo", str(repo), *args])


def test_a_good_command_is_checked_and_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path)
    assert validate(repo) == 0
    out = capsys.readouterr().out
    assert "Checked: train_command's script fake_train.py is in code_path." in out
    assert "adapt: 'auto'  (default)" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--train-command", "python trian.py"], "train_command runs trian.py, which is not in code_path"),
        (["--train-command", "python -u missing/train.py --fast"], "runs missing/train.py"),
        (["--train-command", "no-such-trainer --fast"], "train_command 'no-such-trainer' was not found"),
        (["--train-command", "./run.sh"], "train_command './run.sh' was not found"),
        (
            ["--adapt", "kears"],
            "adapt = 'kears' is not valid; expected one of auto, keras, none (did you mean 'keras'?)",
        ),
    ],
)
def test_bad_commands_and_values_are_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    repo = fake_repo(tmp_path)
    assert validate(repo, *args) == 2
    assert expected in capsys.readouterr().err


def test_unknown_keys_get_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path, "treshold: 0.9\nepoch-step: 5\nadapter: keras\nfrobnicate: 1\n")
    assert validate(repo) == 2
    err = capsys.readouterr().err
    assert (
        "unknown key(s) adapter (did you mean 'adapt'?), epoch-step (did you mean 'epoch_step'?), "
        "frobnicate, treshold (did you mean 'threshold'?)"
    ) in err


def test_programs_are_only_looked_up_for_the_local_backend(tmp_path: Path) -> None:
    assert command_check.check_command(["no-such-trainer"], tmp_path, local=False) == []
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    assert command_check.check_command(["./run.sh"], tmp_path, local=True) == [
        "train_command's program ./run.sh is installed"
    ]
    assert dockerfile_gen.python_script(["python3.11", "-X", "dev", "-u", "train.py"]) == "train.py"
    assert dockerfile_gen.python_script(["python", "-m", "pkg.train"]) is None


def test_a_repository_without_dockerfile_is_told_what_image_it_gets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path, "backend: docker\n")
    assert validate(repo) == 2  # fake_train.py imports no Keras: keeptraining cannot choose an image
    assert "generates images only for Keras and TensorFlow scripts" in capsys.readouterr().err
    (repo / "ml" / "fake_train.py").write_text("import keras\n")
    (repo / "requirements.txt").write_text("tensorflow-cpu==2.21.0\n")
    assert validate(repo) == 0
    assert (
        "Checked: no Dockerfile, so keeptraining generates the image: fake_train.py imports keras; "
        "requirements.txt names tensorflow-cpu==2.21.0"
    ) in capsys.readouterr().out
