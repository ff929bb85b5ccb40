"""Shared fixtures. Each block belongs to one area; keep blocks separate."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from keeptraining.backends.docker import image as docker_image
from keeptraining.backends.docker import run as backend_docker
from keeptraining.output import workflow_commands

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- docker ---
# A real Docker engine and the training image built from the repository's own
# Dockerfile. No mocks: scripts/docker-engine.sh starts dockerd and makes the local
# base image when needed. These fixtures FAIL (never skip) when the engine cannot
# be had: the docker tests run in CI, and a silent skip would hide a broken backend.

DOCKER_ENGINE_SCRIPT = REPO_ROOT / "scripts" / "docker-engine.sh"


@dataclass(frozen=True)
class TrainingImage:
    tag: str
    base_image: str
    built: bool  # False: it already existed (content-hash cache hit)
    seconds: float  # time ensure_image took in this session


@pytest.fixture(scope="session")
def docker_base_image() -> str:
    """Run scripts/docker-engine.sh (idempotent) and return the base image it names."""
    try:
        proc = subprocess.run(
            ["bash", str(DOCKER_ENGINE_SCRIPT)],
            capture_output=True, text=True, timeout=1200, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/docker-engine.sh did not finish in {exc.timeout}s", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("KT_BASE_IMAGE=")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"scripts/docker-engine.sh could not provide a Docker engine and base image "
            f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return lines[-1].split("=", 1)[1]


@pytest.fixture(scope="session")
def docker_client(docker_base_image: str) -> Iterator[docker.DockerClient]:
    """A docker-py client for the engine the script made available."""
    dc = backend_docker.require_engine()
    yield dc
    dc.close()


@pytest.fixture(scope="session")
def training_image(docker_client: docker.DockerClient, docker_base_image: str) -> TrainingImage:
    """The image built from the repository's Dockerfile on the local base (a minute or two
    the first time: it installs requirements.txt through the host network)."""
    start = time.monotonic()
    tag, built = docker_image.ensure_image(
        REPO_ROOT, "Dockerfile", docker_base_image, docker_client=docker_client
    )
    return TrainingImage(tag=tag, base_image=docker_base_image, built=built,
                         seconds=time.monotonic() - start)


# --- end docker ---


# --- workflow commands ---
# GitHub shows at most 10 annotations of a level per step; keeptraining counts them per process
# (one command is one step). Tests that call it in one process each start a fresh step.


@pytest.fixture(autouse=True)
def fresh_annotation_count() -> None:
    workflow_commands.new_step()
