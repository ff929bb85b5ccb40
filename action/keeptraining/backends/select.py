"""Pick the backend an attempt trains on: ``docker`` (the default) or ``local``."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from keeptraining.backends import local as backend_local
from keeptraining.backends.base import TrainRequest, TrainResult
from keeptraining.backends.docker import (
    dockerfile as dockerfile_gen,
)
from keeptraining.backends.docker import (
    image as docker_image,
)
from keeptraining.backends.docker import (
    registry,
)
from keeptraining.backends.docker import (
    run as backend_docker,
)
from keeptraining.config.settings import Config


class Backend(Protocol):
    name: str

    def run(self, request: TrainRequest) -> TrainResult: ...


class LocalBackend:
    name = "local"

    def run(self, request: TrainRequest) -> TrainResult:
        return backend_local.run(request)


class DockerBackend:
    """Builds (or reuses, by content hash) the training image once per process."""

    name = "docker"

    def __init__(
        self,
        config: Config,
        repo_root: Path,
        on_line: Callable[[str], None] | None = None,
        *,
        push_image: bool = True,
    ) -> None:
        self.config = config
        self.push_image = push_image  # False: pull the image from image_registry, never push it
        self.repo_root = repo_root
        self.on_line = on_line
        self.image: str | None = config.image
        self.registry: registry.Registry | None = None  # the chain's registry, once prepared
        self.build_s: float | None = None
        self.say: Callable[[str], None] = print

    def prepare(self) -> str:
        if self.image is None:
            start = time.monotonic()
            shared = registry.from_config(self.config.image_registry, os.environ, push=self.push_image)
            self.registry = shared
            if dockerfile_gen.wanted(
                self.repo_root, self.config.dockerfile, self.config.sources.get("dockerfile", "default")
            ):
                self.image, _built = self._generated_image(shared)
            else:
                self.image, _built = docker_image.ensure_image(
                    self.repo_root,
                    self.config.dockerfile,
                    self.config.base_image,
                    on_line=self.on_line,
                    timeout=self.config.build_timeout,
                    excluded=[self.config.state_dir],
                    code_folder=self.config.code_path,
                    image_registry=shared,
                )
            self.build_s = time.monotonic() - start
            self.say(f"Training image {self.image} ready in {self.build_s:.1f} s")
        return self.image

    def _generated_image(self, shared: registry.Registry | None) -> tuple[str, bool]:
        """No Dockerfile in the repository: one chosen from the code (docker/dockerfile.py)."""
        root = self.repo_root.resolve()
        code_dir = (root / self.config.code_path).resolve()
        return dockerfile_gen.ensure_image(
            root,
            code_dir,
            shlex.split(self.config.train_command),
            self.config.base_image,
            say=self.say,
            on_line=self.on_line,
            timeout=self.config.build_timeout,
            image_registry=shared,
        )

    def run(self, request: TrainRequest) -> TrainResult:
        image = self.prepare()
        dc = backend_docker.require_engine()  # one client for the run and the digest
        try:
            result = backend_docker.run(request, image, docker_client=dc)
            result.image = image  # recorded with the attempt: the model card names it, with its digest
            result.image_digest = docker_image.image_digest(
                dc, image, self.registry.repository if self.registry else None
            )
        finally:
            dc.close()
        return result


def select(
    config: Config,
    repo_root: Path,
    *,
    allow_local_fallback: bool,
    say: Callable[[str], None],
    on_line: Callable[[str], None] | None = None,
    push_image: bool = True,
) -> Backend:
    """The backend the configuration asks for.

    With ``backend`` unset, docker is used when an engine answers; only when
    ``allow_local_fallback`` (``keeptraining run``) does an absent engine mean
    local training, and that is said out loud. ``push_image=False``: the training
    image may be pulled from ``image_registry``, never pushed (a pull request's check).
    """
    if config.backend == "local":
        return LocalBackend()
    if config.backend is None and allow_local_fallback and not backend_docker.engine_available():
        say(
            "No Docker engine answers and `backend` is unset: training runs locally in this Python "
            "environment. Set `backend: docker` to insist on Docker."
        )
        return LocalBackend()
    backend_docker.require_engine()
    return DockerBackend(config, repo_root, on_line=on_line, push_image=push_image)
