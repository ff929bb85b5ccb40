"""No Dockerfile needed: what the generated training image installs, and why (no engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keeptraining.backends.docker import dockerfile as dockerfile_gen
from keeptraining.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def repo_with(tmp_path: Path, script: str, files: dict[str, str] | None = None) -> Path:
    code = tmp_path / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "train.py").write_text(script)
    for name, text in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def choose(repo: Path, command: str = "python train.py", base: str | None = None) -> dockerfile_gen.Choice:
    return dockerfile_gen.choose(repo, repo / "code", command.split(), base)


def test_requirements_with_a_backend_are_used_as_they_are(tmp_path: Path) -> None:
    requirements = "tensorflow-cpu==2.21.0\nnumpy==2.4.6\n"
    repo = repo_with(tmp_path, "import keras\nimport numpy as np\n", {"code/requirements.txt": requirements})
    choice = choose(repo)
    assert choice.requirements == requirements
    assert choice.reasons[0] == "train.py imports keras, numpy"
    assert "code/requirements.txt names tensorflow-cpu==2.21.0" in choice.reasons
    assert choice.base_image == "python:3.11-slim" and "the default" in choice.reasons[-1]


def test_a_keras_script_without_a_backend_gets_the_tested_one(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "from keras import layers\n", {"requirements.txt": "keras>=3\n"})
    choice = choose(repo, base="python:3.12-slim")
    assert choice.requirements == f"keras>=3\n{dockerfile_gen.TESTED_BACKEND}\n"
    assert any("names no Keras backend: adding tensorflow-cpu==" in r for r in choice.reasons)
    assert "ARG BASE_IMAGE=python:3.12-slim" in choice.dockerfile()


def test_without_requirements_the_imports_decide(tmp_path: Path) -> None:
    repo = repo_with(
        tmp_path,
        "import tensorflow as tf\nfrom sklearn import datasets\nimport helpers\n",
        {"code/helpers.py": "import yaml, os, json\n"},
    )
    choice = choose(repo)
    assert choice.requirements.splitlines() == [dockerfile_gen.TESTED_BACKEND, "PyYAML", "scikit-learn"]
    assert choice.reasons[0] == "train.py imports sklearn, tensorflow, yaml (local: helpers)"


def test_pyproject_dependencies_are_read(tmp_path: Path) -> None:
    repo = repo_with(
        tmp_path,
        "import keras\n",
        {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["keras==3.15.1", "jax==0.7.0"]\n'},
    )
    choice = choose(repo)
    assert choice.requirements == "keras==3.15.1\njax==0.7.0\n"
    assert "pyproject.toml [project] dependencies names jax==0.7.0" in choice.reasons


def test_an_import_the_requirements_forget_is_noted(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "import keras\nimport pandas\n", {"requirements.txt": "tensorflow==2.21.0\n"})
    assert "note: requirements.txt does not name pandas, which train.py imports" in choose(repo).reasons


@pytest.mark.parametrize(
    ("script", "files", "command", "expected"),
    [
        (
            "import torch\n",
            {},
            "python train.py",
            "imports torch: keeptraining generates images only for Keras",
        ),
        ("print('hi')\n", {}, "python train.py", "imports no third-party package"),
        ("import keras\n", {}, "bash train.sh", "cannot tell what `bash train.sh` needs"),
        ("import keras\n", {}, "python missing.py", "missing.py, which does not exist"),
        ("import keras(\n", {}, "python train.py", "cannot be read as Python"),
        ("import keras\n", {"requirements.txt": "-r base.txt\n"}, "python train.py", "refers to other files"),
    ],
)
def test_what_cannot_be_generated_says_how_to_add_a_dockerfile(
    tmp_path: Path, script: str, files: dict[str, str], command: str, expected: str
) -> None:
    repo = repo_with(tmp_path, script, files)
    with pytest.raises(ConfigError) as info:
        choose(repo, command)
    assert expected in str(info.value)


def test_module_commands_are_followed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "", {"code/pkg/__init__.py": "", "code/pkg/train.py": "import keras\n"})
    assert choose(repo, "python -m pkg.train").script == "train.py"


def test_only_a_missing_default_dockerfile_is_generated(tmp_path: Path) -> None:
    assert dockerfile_gen.wanted(tmp_path, "Dockerfile", "default")
    assert not dockerfile_gen.wanted(tmp_path, "Dockerfile", "command line")  # named on purpose: an error
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert not dockerfile_gen.wanted(tmp_path, "Dockerfile", "default")


def instructions(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_generated_layout_is_the_repository_dockerfile_s(tmp_path: Path) -> None:
    """The same instructions, so an engine that built one reuses its layers for the other."""
    ours = instructions((ROOT / "Dockerfile").read_text())
    generated = instructions(dockerfile_gen.TEMPLATE.format(base="python:3.11-slim"))
    assert generated == [line for line in ours if not line.startswith("CMD")]


def test_the_tested_backend_is_the_one_keeptraining_pins() -> None:
    assert dockerfile_gen.TESTED_BACKEND in (ROOT / "requirements.txt").read_text().splitlines()


def test_a_helper_modules_import_is_read_and_a_forgotten_one_says_what_to_add(tmp_path: Path) -> None:
    """Two files: train.py imports its helper, the helper imports scikit-learn."""
    repo = repo_with(
        tmp_path,
        "import keras\nfrom helpers import load\n",
        {
            "requirements.txt": "tensorflow==2.21.0\n",
            "code/helpers.py": (
                "from sklearn.model_selection import train_test_split\n\ndef load():\n    pass\n"
            ),
        },
    )
    reasons = choose(repo).reasons
    assert "train.py imports keras, sklearn (local: helpers)" in reasons
    assert (
        "note: `import sklearn` in helpers.py: add `scikit-learn` (pinned) to requirements.txt, or the "
        "training stops with ModuleNotFoundError" in reasons
    )
