"""``parallel: N`` with the docker backend, on the real engine: a round's trials as concurrent
containers, each with its CPU share and memory limit; ``gpus`` as the engine's device request.

This machine has no GPU: the device request is checked where the engine stores it (the created
container's HostConfig) and where it answers (its refusal to start such a container without the
NVIDIA Container Toolkit, reported with what to install). A GPU reaching the training is not run here.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import docker
import pytest

from keeptraining.backends.base import TrainRequest
from keeptraining.backends.docker import run as backend_docker
from keeptraining.cli import main
from keeptraining.errors import TrainingError
from keeptraining.state import ledger

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).parent / "fixtures"


def _release_when_running(dc: docker.DockerClient, repo: Path, count: int, seen: list[int]) -> None:
    """The host's side of the barrier: once ``count`` containers of this repository (their output
    folders are in its state folder) run at the same time, write ``go`` into each one's working
    folder (the writable copy of the code folder that the docker backend mounts); they wait for it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [
            c
            for c in dc.containers.list(filters={"label": "keeptraining=1"})
            if any(
                str(m.get("Source", "")).startswith(str(repo.resolve())) for m in c.attrs.get("Mounts", [])
            )
        ]
        seen.append(len(running))
        if len(running) >= count:
            for container in running:
                for mount in container.attrs.get("Mounts", []):
                    if mount.get("Destination") == backend_docker.CODE_MOUNT:
                        (Path(mount["Source"]) / "go").write_text("all trials are running\n")
            return
        time.sleep(0.1)


def test_a_docker_round_runs_its_trials_as_concurrent_limited_containers(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "ml").mkdir(parents=True)
    for name in ("fake_search_train.py", "fake_parallel_train.py"):
        shutil.copy(FIXTURES / name, repo / "ml" / name)
    (repo / ".keeptraining.yml").write_text(f"""code_path: ml
train_command: python3 fake_parallel_train.py
backend: docker
image: {docker_base_image}
adapt: none
threshold: 0.9
strategy: search
epochs: 20
max_attempts: 2
parallel: 2
cpus: 0.5
memory_limit: 256m
hyperparameters:
  wait_for: go
search:
  seed: 2
  space:
    learning_rate: {{type: float, low: 0.01, high: 0.1, log: true}}
""")
    seen: list[int] = []
    barrier = threading.Thread(target=_release_when_running, args=(docker_client, repo, 2, seen))
    barrier.start()
    try:
        code = main(["run", "--repo", str(repo)])
    finally:
        barrier.join()
    assert code == 3, "two trials of 20 epochs, below 0.9: the budget is spent"
    state = repo / ".keeptraining"
    records = ledger.load(state).attempts
    assert [(r.attempt, r.round, r.runner["slot"], r.outcome) for r in records] == [
        (1, 1, 1, "below"),
        (2, 1, 2, "below"),
    ], [r.error for r in records]
    assert max(seen) == 2, "both containers ran at the same time"
    for record in records:
        stamp = json.loads((ledger.attempt_dir(state, record.attempt) / "stamps.json").read_text())
        quota = stamp["cpu_quota"].split()  # v2: "50000 100000"; v1: the quota, the period apart
        period = quota[1] if len(quota) > 1 else stamp["cpu_period"]
        assert int(quota[0]) / int(period) == 0.5
        assert int(stamp["memory_limit"]) == 256 * 2**20


def _request(tmp_path: Path, gpus: str) -> TrainRequest:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    return TrainRequest(
        code_dir=tmp_path / "code",
        command=["true"],
        output_dir=tmp_path / "out",
        env={},
        timeout=60,
        gpus=gpus,
    )


@pytest.mark.parametrize(("gpus", "count"), [("all", -1), ("2", 2)])
def test_gpus_become_the_engines_device_request(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str, gpus: str, count: int
) -> None:
    container = backend_docker._create(
        docker_client,
        _request(tmp_path, gpus),
        docker_base_image,
        {"keeptraining-test": "gpus"},
        None,
        "none",
    )
    try:
        (device,) = container.attrs["HostConfig"]["DeviceRequests"]
        assert (device["Count"], device["Capabilities"]) == (count, [["gpu"]])
    finally:
        container.remove(force=True)


def test_an_engine_without_gpus_refuses_the_request_with_what_to_install(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    with pytest.raises(TrainingError) as caught:
        backend_docker.run(_request(tmp_path, "all"), docker_base_image, docker_client=docker_client)
    assert "cannot give the training container GPUs" in caught.value.message
    assert "capabilities: [[gpu]]" in caught.value.message  # the engine's own words: the request arrived
    assert "NVIDIA Container Toolkit" in caught.value.hint
