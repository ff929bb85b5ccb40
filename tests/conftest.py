"""Shared fixtures. Each block belongs to one area; keep blocks separate."""

from __future__ import annotations

import os
import subprocess
import sys
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


# --- environment ---
# Tests run as if on a developer's machine, even on a GitHub runner: the runner's GITHUB_*, RUNNER_*
# and ACTIONS_* variables and any KT_* left in the shell are cleared before each test (a test that
# needs one sets it with monkeypatch). Without this, the chain tests wrote step outputs and a summary
# into the runner's own GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files. Kept: the settings of the test
# harness itself (which engine, base image, actions folder the tests use), never read by keeptraining.

CLEARED_PREFIXES = ("GITHUB_", "RUNNER_", "ACTIONS_", "KT_")
HARNESS_SETTINGS = frozenset(
    {
        "KT_BASE_IMAGE",
        "KT_IMAGE_REGISTRY",
        "KT_GHA_ACTIONS_DIR",
        "KT_REQUIRE_GHA_ACTIONS",
        "KT_DEBIAN_MIRROR",
        "KT_DEBIAN_SUITE",
        "KT_DOCKERD_LOG",
        "KT_DOCKERD_WAIT",
        "KT_ROOTFS_PARENT",
    }
)


@pytest.fixture(autouse=True)
def _no_runner_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) and name not in HARNESS_SETTINGS:
            monkeypatch.delenv(name)


# --- fast tier ---
# The fast tier (README, Development: run after every change) is every test without the markers
# docker, e2e or integration: no Docker, no act, no training process, and no TensorFlow. TensorFlow
# takes seconds to import; a fast-tier test that imports it fails the session.

FAST_TIER = "not docker and not e2e and not integration"
SLOW_MARKERS = ("docker", "e2e", "integration")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"run the fast tier only (-m '{FAST_TIER}'): no Docker, act or TensorFlow",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--fast") and not config.option.markexpr:
        config.option.markexpr = FAST_TIER


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The fast tier must not have imported TensorFlow (the slow tiers' tests may)."""
    if session.config.option.markexpr != FAST_TIER or "tensorflow" not in sys.modules:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "FAILED: the fast tier imported TensorFlow; mark the test that needs it `integration`.", red=True
        )


# --- end fast tier ---


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
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
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
    return TrainingImage(tag=tag, base_image=docker_base_image, built=built, seconds=time.monotonic() - start)


# --- end docker ---


# --- workflow commands ---
# GitHub shows at most 10 annotations of a level per step; keeptraining counts them per process
# (one command is one step). Tests that call it in one process each start a fresh step.


@pytest.fixture(autouse=True)
def fresh_annotation_count() -> None:
    workflow_commands.new_step()
