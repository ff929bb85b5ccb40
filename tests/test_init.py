"""`keeptraining init`: a user's repository set up in one command (tmp repositories, the real CLI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keeptraining import __version__, cli
from keeptraining.commands import init
from keeptraining.config import settings as config_mod
from services.act_driver import readme_workflow

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ".github/workflows/continuous-training.yml"
CONFIG = ".keeptraining.yml"

KERAS_SCRIPT = """\
import keras
import numpy as np

x = np.random.rand(64, 4)
y = (x.sum(axis=1) > 2).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=3, validation_split=0.25)
print("Test accuracy:", model.evaluate(x, y)[1])
"""
HELPER = "import numpy as np\n\ndef load():\n    return np.zeros(3)\n"


def user_repo(root: Path, *, dockerfile: bool = False, requirements: bool = True) -> Path:
    """A user's repository: a Keras script in src/, a helper module, a test, a virtualenv's files."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text(KERAS_SCRIPT)
    (root / "src" / "data.py").write_text(HELPER)
    (root / "tests").mkdir()
    (root / "tests" / "test_train.py").write_text("import keras\n\ndef test_fit(model):\n    model.fit([])\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "keras_fit.py").write_text("import keras\nkeras.Model().fit()\n")
    if requirements:
        (root / "requirements.txt").write_text("tensorflow-cpu==2.21.0\nnumpy\n")
    if dockerfile:
        (root / "Dockerfile").write_text("FROM python:3.11-slim\nRUN pip install tensorflow-cpu==2.21.0\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return root


def run_init(repo: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["init", "--repo", str(repo), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def snapshot(repo: Path) -> dict[str, tuple[str, int]]:
    return {
        name: ((repo / name).read_text(), (repo / name).stat().st_mtime_ns)
        for name in (WORKFLOW, CONFIG)
        if (repo / name).exists()
    }


def test_init_finds_the_script_checks_it_and_writes_the_workflow_and_a_commented_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    code, out = run_init(repo, capsys=capsys)
    assert code == 0, out
    assert "Found: src/train.py is the training script (it imports Keras and calls fit)." in out
    assert "Checked: train_command's script train.py is in code_path." in out
    assert "no Dockerfile, so keeptraining generates the image" in out
    # The config file: what init found, valid as keeptraining reads it, with comments that say why.
    text = (repo / CONFIG).read_text()
    config = config_mod.resolve(None, repo / CONFIG, file_required=True)
    # backend unset: docker wherever an engine answers (GitHub), this Python for `run` without one.
    assert (config.threshold, config.code_path, config.train_command, config.backend) == (
        0.9,
        "src",
        "python train.py",
        None,
    )
    assert "# backend: docker" in text
    assert config.sources["dockerfile"] == "default", "a generated image needs no dockerfile key"
    assert "# - src/train.py is the training script" in text
    assert "requirements.txt names tensorflow-cpu==2.21.0" in " ".join(text.split())
    # The workflow: the short caller of keeptraining's reusable workflow, at this major version.
    workflow = yaml.safe_load((repo / WORKFLOW).read_text())
    (job,) = workflow["jobs"].values()
    major = __version__.split(".")[0]
    assert job["uses"] == f"OWNER/keeptraining/.github/workflows/keeptraining.yml@v{major}"
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads `on` as True
    assert set(job["secrets"]) == set(init.SECRETS)
    assert "threshold" not in job["with"], "the threshold has one place: .keeptraining.yml"
    # The secrets and the commands that add them, never with a value on the command line.
    for name in init.SECRETS:
        assert f"  gh secret set {name}\n" in out
    assert "--body" not in out
    assert "Wrote .github/workflows/continuous-training.yml (39 lines)." in out
    assert "replace OWNER" in out


def test_init_twice_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = user_repo(tmp_path / "repo")
    assert run_init(repo, capsys=capsys)[0] == 0
    before = snapshot(repo)
    code, out = run_init(repo, capsys=capsys)
    assert code == 0, out
    assert snapshot(repo) == before
    assert "Unchanged: .github/workflows/continuous-training.yml." in out
    assert "Unchanged: .keeptraining.yml." in out


def test_init_never_overwrites_a_file_that_differs_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    (repo / CONFIG).write_text("threshold: 0.95  # mine\n")
    code, out = run_init(repo, capsys=capsys)
    assert code == 2
    assert (
        ".keeptraining.yml already exists and differs from what init would write; nothing was written."
    ) in out
    assert "--force" in out
    assert (repo / CONFIG).read_text() == "threshold: 0.95  # mine\n"
    assert not (repo / WORKFLOW).exists(), "nothing is written when one file would be overwritten"
    code, out = run_init(repo, "--force", capsys=capsys)
    assert code == 0, out
    assert "Replaced .keeptraining.yml" in out and "Wrote .github/workflows/continuous-training.yml" in out
    assert "threshold: 0.9\n" in (repo / CONFIG).read_text()


def test_dry_run_shows_the_files_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    (repo / CONFIG).write_text("threshold: 0.95\n")
    code, out = run_init(repo, "--dry-run", "--threshold", "0.8", capsys=capsys)
    assert code == 0, out
    assert not (repo / WORKFLOW).exists()
    assert (repo / CONFIG).read_text() == "threshold: 0.95\n"
    assert "--- .github/workflows/continuous-training.yml (would be written) ---" in out
    assert "--- .keeptraining.yml (exists and differs: --force replaces it) ---" in out
    assert "threshold: 0.8\n" in out and "uses: OWNER/keeptraining/.github/workflows/keeptraining.yml@" in out


def test_a_dockerfile_of_the_repository_is_used_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo", dockerfile=True)
    code, out = run_init(repo, "--keeptraining", "acme/keeptraining@v1.0.0", capsys=capsys)
    assert code == 0, out
    config = config_mod.resolve(None, repo / CONFIG, file_required=True)
    assert (config.dockerfile, config.backend) == ("Dockerfile", None)
    assert "your Dockerfile builds the training image" in (repo / CONFIG).read_text()
    uses = "uses: acme/keeptraining/.github/workflows/keeptraining.yml@v1.0.0"
    assert uses in (repo / WORKFLOW).read_text()
    assert "replace OWNER" not in out


def test_local_backend_needs_no_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = user_repo(tmp_path / "repo")
    assert run_init(repo, "--backend", "local", capsys=capsys)[0] == 0
    (job,) = yaml.safe_load((repo / WORKFLOW).read_text())["jobs"].values()
    assert "with" not in job
    assert config_mod.resolve(None, repo / CONFIG, file_required=True).backend == "local"


def test_the_push_branch_is_the_repositorys_current_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "HEAD", "refs/heads/master"], check=True)
    assert run_init(repo, capsys=capsys)[0] == 0
    assert yaml.safe_load((repo / WORKFLOW).read_text())[True]["push"]["branches"] == ["master"]


def test_script_option_and_what_init_cannot_decide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    (repo / "nn.py").write_text(KERAS_SCRIPT)  # two equally likely scripts
    code, out = run_init(repo, "--dry-run", capsys=capsys)
    assert code == 2
    assert "2 files look like the training script: nn.py, src/train.py." in out
    assert "keeptraining init --script nn.py" in out
    code, out = run_init(repo, "--script", "src/train.py", capsys=capsys)
    assert code == 0, out
    assert "src/train.py is the training script (--script)" in out
    code, out = run_init(repo, "--script", "missing.py", capsys=capsys)
    assert code == 2 and "--script missing.py: no such file." in out
    code, out = run_init(repo, "--script", str(tmp_path / "outside.py"), "--force", capsys=capsys)
    assert code == 2 and "no such file" in out
    (tmp_path / "outside.py").write_text(KERAS_SCRIPT)
    code, out = run_init(repo, "--script", str(tmp_path / "outside.py"), "--force", capsys=capsys)
    assert code == 2 and "is outside the repository" in out


def test_no_training_script_and_an_image_keeptraining_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "util.py").write_text("print('no keras here')\n")
    code, out = run_init(empty, capsys=capsys)
    assert code == 2
    assert "no training script found" in out and "keeptraining init --script path/to/train.py" in out
    # A script that is not Keras, and no Dockerfile: the check that validate makes refuses it.
    (empty / "train.py").write_text("import torch\nprint('Test accuracy: 0.5')\n")
    code, out = run_init(empty, "--script", "train.py", capsys=capsys)
    assert code == 2
    assert "Dockerfile" in out, out
    assert not (empty / WORKFLOW).exists() and not (empty / CONFIG).exists()


def test_a_bad_threshold_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    code, out = run_init(repo, "--threshold", "90", capsys=capsys)
    assert code == 2 and "threshold" in out and "fraction" in out
    assert snapshot(repo) == {}


def test_readme_snippet_is_what_init_writes_with_the_threshold_in_the_workflow() -> None:
    """One caller workflow: README's snippet is init's file for a docker repository, plus `threshold`."""
    expected = init.workflow_text("OWNER/keeptraining@v1", threshold="0.9")
    assert readme_workflow() == expected
    assert len(expected.splitlines()) <= 40


def test_the_written_workflow_passes_the_github_schema_and_zizmor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path / "repo")
    assert run_init(repo, "--keeptraining", "acme/keeptraining@v1", capsys=capsys)[0] == 0
    bin_dir = Path(sys.executable).parent
    checker, zizmor = bin_dir / "check-jsonschema", bin_dir / "zizmor"
    if not (checker.exists() and zizmor.exists()):
        pytest.skip("check-jsonschema and zizmor come with the development tools (.ci/requirements-dev.txt)")
    schema = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(repo / WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    # zizmor's own rules, as this repository configures them: a release tag of keeptraining ("acme/*")
    # is a ref-pin, like the repository's own workflows' placeholder.
    config = tmp_path / "zizmor.yml"
    config.write_text(
        'rules:\n  unpinned-uses:\n    config:\n      policies:\n        "acme/*": ref-pin\n'
        '        "*": hash-pin\n'
    )
    shutil.copy2(repo / WORKFLOW, tmp_path / "continuous-training.yml")
    audit = subprocess.run(
        [
            str(zizmor),
            "--offline",
            "--persona",
            "pedantic",
            "--config",
            str(config),
            str(tmp_path / "continuous-training.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
