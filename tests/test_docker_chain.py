"""The whole chain on the docker backend: the sample model, the repository's Dockerfile, a real engine."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from conftest import REPO_ROOT, TrainingImage
from keeptraining.cli import main
from keeptraining.state import ledger
from test_report import decode_png

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def project_copy(root: Path) -> Path:
    """What the docker backend needs of the repository: code, Dockerfile and its context."""
    root.mkdir(parents=True)
    for name in ("Dockerfile", ".dockerignore", "requirements.txt"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(
        REPO_ROOT / "ml_code", root / "ml_code", ignore=shutil.ignore_patterns("__pycache__", "output")
    )
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
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = project_copy(tmp_path / "repo")
    code = main(
        ["run", "--repo", str(repo), "--backend", "docker", "--base-image", training_image.base_image]
    )
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
    pixels = decode_png((repo / ".keeptraining" / "chart.png").read_bytes())
    assert sum(row.count((220, 20, 60)) for row in pixels) > 400  # the threshold line (and the legend's)
    assert sum(row.count((31, 119, 180)) for row in pixels) > 50  # attempt 1's line
    assert our_containers(docker_client, repo) == []
    assert "Threshold reached" in capsys.readouterr().out


def test_cancelled_attempt_removes_its_container_and_keeps_the_ledger(
    tmp_path: Path, training_image: TrainingImage, docker_client: docker.DockerClient
) -> None:
    repo = project_copy(tmp_path / "repo")
    (repo / "ml_code" / "slow.py").write_text(
        "import time\nprint('training started', flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keeptraining",
            "attempt",
            "--repo",
            str(repo),
            "--backend",
            "docker",
            "--base-image",
            training_image.base_image,
            "--train-command",
            "python slow.py",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
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


LINKING_SCRIPT = """\
import json, os
out = os.environ["KT_OUTPUT_DIR"]
metrics = {"accuracy": 0.5, "epochs": int(os.environ["KT_EPOCHS"])}
json.dump(metrics, open(os.path.join(out, "metrics.json"), "w"))
os.symlink(os.environ["KT_HP_TARGET"], os.path.join(out, "model.keras"))
"""

PROBE_SCRIPT = """\
import json, os
secret = os.environ["KT_HP_SECRET"]
seen = []
for root, dirs, files in os.walk("/workspace"):
    for name in files:
        path = os.path.join(root, name)
        try:
            if secret in open(path, errors="replace").read():
                seen.append(path)
        except OSError:
            pass
out = os.environ["KT_OUTPUT_DIR"]
json.dump({"accuracy": 0.5, "epochs": int(os.environ["KT_EPOCHS"]), "seen": seen,
           "resume": os.environ["KT_RESUME_FROM"]}, open(os.path.join(out, "metrics.json"), "w"))
"""


def test_checkpoint_linked_to_a_host_file_never_reaches_the_next_container(
    tmp_path: Path, training_image: TrainingImage
) -> None:
    """Issue 16's reproduction: a script makes its checkpoint a link to the host's id_rsa."""
    repo = project_copy(tmp_path / "repo")
    host = tmp_path / "host"
    host.mkdir()
    secret = "host-secret-" + os.urandom(8).hex()
    (host / "id_rsa").write_text(secret)
    (repo / "ml_code" / "linker.py").write_text(LINKING_SCRIPT)
    (repo / "ml_code" / "probe.py").write_text(PROBE_SCRIPT)
    common = [
        "--repo",
        str(repo),
        "--backend",
        "docker",
        "--base-image",
        training_image.base_image,
        "--hp",
        f"target={host / 'id_rsa'}",
        "--hp",
        f"secret={secret}",
        "--threshold",
        "0.99",
    ]
    assert main(["attempt", *common, "--train-command", "python linker.py"]) == 1
    (first,) = ledger.load(repo / ".keeptraining").attempts
    assert first.outcome == "failed" and "is a symbolic link" in (first.error or "")
    assert first.checkpoint is None

    # An older ledger that believed the link: refused before anything is mounted.
    state = repo / ".keeptraining" / "ledger.json"
    original = state.read_text()
    believed = (
        original.replace('"outcome": "failed"', '"outcome": "below"')
        .replace('"checkpoint": null', '"checkpoint": "model.keras"')
        .replace('"metric": null', '"metric": 0.5')
    )
    state.write_text(believed.replace('"epochs_reached": null', '"epochs_reached": 10'))
    assert main(["attempt", *common, "--train-command", "python probe.py"]) == 4

    state.write_text(original)  # the retry of attempt 1 runs beside the link, which it must not see
    assert main(["attempt", *common, "--train-command", "python probe.py"]) == 0
    probe = json.loads((repo / ".keeptraining" / "attempt-001" / "metrics.json").read_text())
    assert probe["seen"] == [] and probe["resume"] == "", "nothing of the host is visible in the container"
    assert (host / "id_rsa").read_text() == secret
