"""Image reuse through a real registry (``image_registry``, registry.py): Debian's docker-registry
on a loopback port, the real engine, ``keeptraining attempt`` as the action runs it.

Each test builds from a Dockerfile of its own (a label with a random value right after FROM),
so every layer, and the classic builder's cache of them, belongs to the test: removing the
test's image removes its build cache too, and no image another test or helper uses is touched.
What happened is read from the engine's events and the registry's access log, never from
timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from keeptraining.backends import select as backends
from keeptraining.backends.docker import registry
from keeptraining.config import settings as config_mod
from keeptraining.state import ledger
from services.registry_server import RegistryServer, free_port

pytestmark = [pytest.mark.docker, pytest.mark.integration]

SCRIPT = """\
import json, os
epochs = int(os.environ["KT_EPOCHS"])
with open(os.path.join(os.environ["KT_OUTPUT_DIR"], "metrics.json"), "w") as fh:
    json.dump({"accuracy": 0.5, "epochs": epochs}, fh)
print("trained to", epochs)
"""


@dataclass
class Consumer:
    repo: Path
    label: str  # the label value every layer of this test's image carries


def consumer_repo(root: Path, base_image: str) -> Consumer:
    """A consumer repository as on GitHub: git, no .dockerignore, a Dockerfile that copies one file."""
    label = uuid.uuid4().hex[:12]
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL keeptraining-test={label}\n"
        "COPY requirements.txt /opt/requirements.txt\n"
        "RUN ln -sf /usr/bin/python3 /usr/local/bin/python && cp /opt/requirements.txt /opt/copied.txt\n"
    )
    (root / "requirements.txt").write_text("# nothing to install\n")
    (root / "ml_code").mkdir()
    (root / "ml_code" / "train.py").write_text(SCRIPT)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-q",
            "-m",
            "consumer",
        ],
        check=True,
    )
    return Consumer(root, label)


def attempt(
    consumer: Consumer, base_image: str, image_registry: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """One ``keeptraining attempt``, as the action's training step runs it (a process of its own)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "GITHUB_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptraining",
            "attempt",
            "--repo",
            str(consumer.repo),
            "--backend",
            "docker",
            "--base-image",
            base_image,
            "--image-registry",
            image_registry,
            "--train-command",
            "python train.py",
            "--adapt",
            "none",
            "--threshold",
            "0.9",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**clean, **env},
    )


def our_images(dc: docker.DockerClient, label: str) -> list[Any]:
    """Every image (intermediate build-cache images included) that carries the test's label."""
    return dc.images.list(all=True, filters={"label": f"keeptraining-test={label}"})


def remove_ours(dc: docker.DockerClient, label: str) -> None:
    """The test's images by their tags (their untagged parents, the build cache, go with them), then
    any untagged leftover of a failed build, newest first (a parent goes after its children)."""
    for image in our_images(dc, label):
        for tag in image.tags:
            dc.images.remove(tag)
    for image in sorted(our_images(dc, label), key=lambda i: i.attrs["Created"], reverse=True):
        dc.images.remove(image.id)


def image_events(dc: docker.DockerClient, since: float, until: float) -> list[tuple[str, str]]:
    """(action, image) for the engine's image events between two moments."""
    events = dc.events(since=int(since), until=int(until) + 1, filters={"type": "image"}, decode=True)
    return [(e.get("Action", ""), e.get("Actor", {}).get("ID", "")) for e in events]


@pytest.fixture
def consumer(
    tmp_path: Path, docker_base_image: str, docker_client: docker.DockerClient
) -> Iterator[Consumer]:
    made = consumer_repo(tmp_path / "repo", docker_base_image)
    yield made
    remove_ours(docker_client, made.label)


def test_attempt_1_pushes_and_attempt_2_on_a_cold_engine_pulls(
    tmp_path: Path, consumer: Consumer, docker_base_image: str, docker_client: docker.DockerClient
) -> None:
    with RegistryServer(tmp_path / "registry") as server:
        repository = server.repository(f"kt-test-{consumer.label}")
        first = attempt(consumer, docker_base_image, repository)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Building the training image keeptraining-train:" in first.stdout
        tag = next(
            line.split()[2] for line in first.stdout.splitlines() if line.startswith("Training image ")
        )
        ref = f"{repository}:{tag.split(':')[1]}"
        assert f"Pushed {ref}" in first.stdout
        assert f"PUT /v2/kt-test-{consumer.label}/manifests/{tag.split(':')[1]}" in server.log()

        # A fresh runner: no image, no build cache of it.
        remove_ours(docker_client, consumer.label)
        assert our_images(docker_client, consumer.label) == [], "the image and its build cache are gone"

        started = time.time()
        second = attempt(consumer, docker_base_image, repository)
        events = image_events(docker_client, started, time.time())
        assert second.returncode == 0, second.stdout + second.stderr
        assert ("pull", ref) in events, f"attempt 2 pulled the chain's image; engine events: {events}"
        assert "Building" not in second.stdout and f"Pulled the training image {ref}" in second.stdout
        assert f"GET /v2/kt-test-{consumer.label}/manifests/{tag.split(':')[1]}" in server.log()
        assert f"Training image {tag} " in second.stdout, "the same content hash in attempt 2"
    attempts = ledger.load(consumer.repo / ".keeptraining").attempts
    assert [a.attempt for a in attempts] == [1, 2] and all(a.outcome == "below" for a in attempts)
    assert attempts[1].epochs_reached == 20, "attempt 2 trained in the pulled image"
    # The model card's image digest: the registry's manifest digest, the same for the pushed and the
    # pulled image, and the one the registry serves for the tag.
    digests = {a.params.get("image_digest") for a in attempts}
    assert len(digests) == 1 and str(next(iter(digests))).startswith("sha256:"), digests
    pulled = docker_client.images.get(ref).attrs["RepoDigests"]
    assert f"{repository}@{next(iter(digests))}" in pulled


def pr_check_image(consumer: Consumer, base_image: str, image_registry: str) -> str:
    """The training image of a pull request's check: its backend as jobs/pr_check.py selects it."""
    config = config_mod.resolve(
        {
            "threshold": 0.9,
            "backend": "docker",
            "base_image": base_image,
            "image_registry": image_registry,
            "train_command": "python train.py",
        }
    )
    backend = backends.select(
        config, consumer.repo, allow_local_fallback=False, say=print, on_line=print, push_image=False
    )
    assert isinstance(backend, backends.DockerBackend)
    return backend.prepare()


def test_a_pull_requests_check_pulls_the_chains_image_and_never_pushes_its_own(
    tmp_path: Path,
    consumer: Consumer,
    docker_base_image: str,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (registry.USERNAME_ENV, registry.PASSWORD_ENV, *registry.TOKEN_VARS):
        monkeypatch.delenv(name, raising=False)
    with RegistryServer(tmp_path / "registry") as server:
        repository = server.repository(f"kt-test-{consumer.label}")
        chain = attempt(consumer, docker_base_image, repository)  # the chain's attempt pushes its image
        assert chain.returncode == 0 and f"Pushed {repository}:" in chain.stdout, chain.stdout + chain.stderr
        remove_ours(docker_client, consumer.label)

        # The pull request leaves the image's files alone: its check, on a fresh runner, pulls the image.
        before = len(server.log())
        started = time.time()
        tag = pr_check_image(consumer, docker_base_image, repository)
        ref = f"{repository}:{tag.split(':')[1]}"
        assert ("pull", ref) in image_events(docker_client, started, time.time())
        assert f"Pulled the training image {ref}" in capsys.readouterr().out

        # A pull request that changes the Dockerfile: its image is built on the runner, never pushed.
        dockerfile = consumer.repo / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "RUN echo changed by the pull request\n")
        changed = pr_check_image(consumer, docker_base_image, repository)
        out = capsys.readouterr().out
        assert changed != tag and "(a pull request's check never pushes)" in out
        assert f"{changed} is not pushed to {repository}" in out and "Pushed" not in out
        assert "PUT " not in server.log()[before:], "the checks pushed nothing to the registry"


def test_a_registry_that_refuses_the_push_means_a_local_build_and_a_warning(
    tmp_path: Path, consumer: Consumer, docker_base_image: str
) -> None:
    with RegistryServer(tmp_path / "registry", read_only=True) as server:
        done = attempt(consumer, docker_base_image, server.repository(f"kt-test-{consumer.label}"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Built keeptraining-train:" in done.stdout
    assert f"Pushing the training image to {server.address}" in done.stderr
    assert "the attempt goes on" in done.stderr
    assert ledger.load(consumer.repo / ".keeptraining").attempts[0].outcome == "below"


def test_a_registry_that_is_down_means_a_local_build_and_a_warning(
    consumer: Consumer, docker_base_image: str
) -> None:
    done = attempt(consumer, docker_base_image, f"127.0.0.1:{free_port()}/kt-test-{consumer.label}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Built keeptraining-train:" in done.stdout
    assert "Pulling the training image from" in done.stderr
    assert "Pushing" not in done.stderr, "one warning: no push to a registry that already failed"


def test_a_wrong_password_is_a_warning_that_never_shows_the_password(
    tmp_path: Path, consumer: Consumer, docker_base_image: str
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with RegistryServer(tmp_path / "registry", users={"kt": "right-password"}) as server:
        repository = server.repository(f"kt-test-{consumer.label}")
        done = attempt(
            consumer,
            docker_base_image,
            repository,
            **{registry.USERNAME_ENV: "kt", registry.PASSWORD_ENV: wrong},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Built keeptraining-train:" in done.stdout
        assert "unauthorized" in done.stderr
        assert f"{registry.USERNAME_ENV} / {registry.PASSWORD_ENV}" in done.stderr
        assert wrong not in done.stdout + done.stderr + server.log()
        for path in (consumer.repo / ".keeptraining").rglob("*"):
            if path.is_file():
                assert wrong.encode() not in path.read_bytes(), path

        # The right password: the same chain's image is pushed.
        remove_ours(docker_client := docker.from_env(), consumer.label)
        right = attempt(
            consumer,
            docker_base_image,
            repository,
            **{registry.USERNAME_ENV: "kt", registry.PASSWORD_ENV: "right-password"},
        )
        docker_client.close()
        assert right.returncode == 0, right.stdout + right.stderr
        assert f"Pushed {repository}:" in right.stdout and "right-password" not in right.stdout + right.stderr


def test_credentials_come_from_the_variables_then_the_token_for_ghcr() -> None:
    env = {
        registry.USERNAME_ENV: "me",
        registry.PASSWORD_ENV: "pw-77c1",
        "KT_GITHUB_TOKEN": "token-9f3e",
        "GITHUB_ACTOR": "octo",
    }
    assert registry.from_config(None, env) is None
    chosen = registry.from_config("ghcr.io/Owner/Repo/keeptraining-train", env)
    assert chosen is not None and chosen.repository == "ghcr.io/owner/repo/keeptraining-train"
    assert chosen.auth == {"username": "me", "password": "pw-77c1"}
    token = registry.from_config("ghcr.io/o/r/kt", {"KT_GITHUB_TOKEN": "token-9f3e", "GITHUB_ACTOR": "octo"})
    assert token is not None and token.auth == {"username": "octo", "password": "token-9f3e"}
    other = registry.from_config("127.0.0.1:5000/kt", {"KT_GITHUB_TOKEN": "token-9f3e"})
    assert other is not None and other.auth is None, "the token goes to ghcr.io only; else the Docker config"
    assert "token-9f3e" not in repr(token) and "pw-77c1" not in repr(chosen)
    assert other.ref("keeptraining-train:0123456789abcdef") == "127.0.0.1:5000/kt:0123456789abcdef"


def test_a_pull_only_registry_never_pushes_and_warns_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    pull_only = registry.from_config("127.0.0.1:9/kt", {}, push=False)
    assert pull_only is not None and not pull_only.push_allowed
    assert registry.from_config("127.0.0.1:9/kt", {}).push_allowed  # type: ignore[union-attr]
    said: list[str] = []
    # A client of no engine at all: a push that tried to reach it would warn.
    client = docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.41")
    assert registry.push(pull_only, client, "keeptraining-train:0123456789abcdef", said.append) is False
    client.close()
    assert said == [
        "keeptraining-train:0123456789abcdef is not pushed to 127.0.0.1:9/kt: a pull request's check only "
        "pulls the chain's images"
    ]
    assert "::warning" not in capsys.readouterr().out and not pull_only.failed
