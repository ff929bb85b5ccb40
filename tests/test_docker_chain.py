"""The whole chain on the docker backend: the sample model, the repository's Dockerfile, a real engine."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from conftest import REPO_ROOT, TrainingImage
from keeptraining import ledger
from keeptraining.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def project_copy(root: Path) -> Path:
    """What the docker backend needs of the repository: code, Dockerfile and its context."""
    root.mkdir(parents=True)
    for name in ("Dockerfile", ".dockerignore", "requirements.txt"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "ml_code", root / "ml_code",
                    ignore=shutil.ignore_patterns("__pycache__", "output"))
    return root


def our_containers(client: docker.DockerClient, repo: Path) -> list[str]:
    """keeptraining containers that mount this test's repository (other tests may run beside)."""
    found = []
    for container in client.containers.list(all=True, filters={"label": "keeptraining"}):
        sources = [m.get("Source", "") for m in container.attrs.get("Mounts", [])]
        if any(src.startswith(str(repo)) for src in sources):
            found.append(container.id)
    return found


def test_default_chain_reaches_the_threshold_in_docker(
        tmp_path: Path, training_image: TrainingImage, docker_client: docker.DockerClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = project_copy(tmp_path / "repo")
    code = main(["run", "--repo", str(repo), "--backend", "docker", "--base-image",
                 training_image.base_image])
    assert code == 0
    attempts = ledger.load(repo / ".keeptraining").attempts
    assert len(attempts) >= 2, "the default chain must need several attempts"
    assert [a.epochs for a in attempts] == [10 * n for n in range(1, len(attempts) + 1)]
    assert all(a.params["backend"] == "docker" for a in attempts)
    assert attempts[-1].outcome == "reached" and attempts[-1].metric is not None
    assert attempts[-1].metric >= 0.9
    for previous, current in itertools.pairwise(attempts):
        assert current.initial_epoch == previous.epochs_reached
        assert current.epochs_trained == (current.epochs_reached or 0) - current.initial_epoch
    assert (repo / ".keeptraining" / "chart.png").stat().st_size > 10_000
    assert our_containers(docker_client, repo) == []
    assert "Threshold reached" in capsys.readouterr().out


def test_cancelled_attempt_removes_its_container_and_keeps_the_ledger(
        tmp_path: Path, training_image: TrainingImage, docker_client: docker.DockerClient) -> None:
    repo = project_copy(tmp_path / "repo")
    (repo / "ml_code" / "slow.py").write_text(
        "import time\nprint('training started', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo), "--backend", "docker",
         "--base-image", training_image.base_image, "--train-command", "python slow.py"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if "training started" in line:
            break
    assert our_containers(docker_client, repo), "the container runs"
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    assert our_containers(docker_client, repo) == []
    (attempt,) = ledger.load(repo / ".keeptraining").attempts
    assert attempt.outcome == "failed" and "interrupted" in (attempt.error or "")
