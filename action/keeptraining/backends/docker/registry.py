"""One image build per chain: the training image shared through a registry (``image_registry``).

With ``image_registry`` set (e.g. ``ghcr.io/<owner>/<repo>/keeptraining-train``), an attempt
whose engine lacks the training image pulls ``<image_registry>:<content hash>`` instead of
building it; the attempt that builds it pushes it there. So a chain builds its image once,
whichever runners its attempts land on.

Credentials, first found wins:

* ``KT_REGISTRY_USERNAME`` and ``KT_REGISTRY_PASSWORD`` (from the workflow's secrets);
* for ``ghcr.io``: the workflow's token (``github-token``), as ``GITHUB_ACTOR`` (the job
  needs ``packages: write``);
* else the engine's client configuration: docker-py reads the Docker config file
  (``~/.docker/config.json``, ``DOCKER_CONFIG``), credential helpers included, as
  ``docker login`` left it.

They are handed to the engine with each pull and push, never written anywhere.

The cache never fails an attempt: a registry that is down, refuses the credentials or the
push is a warning, and the image is built locally as without a registry. A tag that is not
there yet (the chain's first build) is no warning at all.

A pull request's check (``push=False``) pulls the chain's image when its build context is the same,
and never pushes what it builds: its token only reads packages, and the pull request's code is not
the chain's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import docker
import requests
from docker.errors import APIError, DockerException, NotFound

from keeptraining.backends.docker.run import short
from keeptraining.output import workflow_commands as gha

USERNAME_ENV = "KT_REGISTRY_USERNAME"
PASSWORD_ENV = "KT_REGISTRY_PASSWORD"  # noqa: S105 - a variable name
TOKEN_VARS = ("KT_GITHUB_TOKEN", "GITHUB_TOKEN")
GITHUB_REGISTRY = "ghcr.io"
WARNING_TITLE = "Image registry not used"
_NOT_THERE = re.compile(r"manifest unknown|not found", re.IGNORECASE)

Say = Callable[[str], None]


@dataclass
class Registry:
    """Where the training images of a chain are shared, and the credentials for it."""

    repository: str  # e.g. ghcr.io/owner/repo/keeptraining-train (lower case, no tag)
    auth: dict[str, str] | None = field(default=None, repr=False)
    credentials_from: str = "the Docker config"
    source: str = ""  # the repository's URL: on ghcr.io, the label that links the image's package to it
    failed: bool = False  # it failed once in this attempt: no second try, no second warning
    push_allowed: bool = True  # False: pull only (a pull request's check: its code never enters the registry)

    @property
    def host(self) -> str:
        first = self.repository.split("/", 1)[0]
        return first if "." in first or ":" in first or first == "localhost" else "docker.io"

    def ref(self, local_tag: str) -> str:
        """``<repository>:<hash>`` for the local ``keeptraining-train:<hash>``."""
        return f"{self.repository}:{local_tag.rsplit(':', 1)[1]}"


def from_config(image_registry: str | None, env: Mapping[str, str], *, push: bool = True) -> Registry | None:
    """The registry the configuration names (None: no image sharing), with its credentials; with
    ``push=False`` images are pulled from it, never pushed."""
    found = _from_config(image_registry, env)
    if found is not None:
        found.push_allowed = push
    return found


def _from_config(image_registry: str | None, env: Mapping[str, str]) -> Registry | None:
    if not image_registry:
        return None
    repository = image_registry.strip().lower()  # image names are lower case; owners need not be
    source = (
        f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}"
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY")
        else ""
    )
    user, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    registry = Registry(repository, source=source)
    if user and password:
        return Registry(
            repository,
            {"username": user, "password": password},
            f"{USERNAME_ENV} / {PASSWORD_ENV}",
            source=source,
        )
    token = next((env[name] for name in TOKEN_VARS if env.get(name)), "")
    if registry.host == GITHUB_REGISTRY and token:
        return Registry(
            repository,
            {"username": env.get("GITHUB_ACTOR") or "keeptraining", "password": token},
            "the workflow's token",
            source=source,
        )
    return registry


def labels(registry: Registry | None) -> dict[str, str]:
    """Labels for an image that goes to the registry: the source repository, by which ghcr.io
    connects the package to the repository (and lets its workflows' token write to it)."""
    return {"org.opencontainers.image.source": registry.source} if registry and registry.source else {}


def _hidden(text: str, registry: Registry) -> str:
    """An engine message with the password (if any) cut out, whatever the engine put in it."""
    secret = (registry.auth or {}).get("password", "")
    return text.replace(secret, "***") if secret else text


def _warn(registry: Registry, what: str, detail: str) -> None:
    registry.failed = True
    gha.warn(
        f"{what} {registry.repository} failed: {_hidden(detail, registry)[:300]}. The image is built on "
        f"this runner instead; the attempt goes on. Credentials: {registry.credentials_from}.",
        title=WARNING_TITLE,
    )


def pull(registry: Registry, dc: docker.DockerClient, local_tag: str, say: Say) -> bool:
    """Pull ``local_tag``'s image from the registry and tag it locally; False when it is not
    there (said plainly) or the registry cannot be used (a warning)."""
    ref = registry.ref(local_tag)
    start = time.monotonic()
    try:
        for chunk in dc.api.pull(
            ref.rsplit(":", 1)[0],
            tag=ref.rsplit(":", 1)[1],
            stream=True,
            decode=True,
            auth_config=registry.auth,
        ):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise APIError(str(chunk["error"]))
        dc.api.tag(ref, *local_tag.rsplit(":", 1))
    except (NotFound, APIError, DockerException, requests.exceptions.RequestException) as exc:
        if isinstance(exc, NotFound) or (_NOT_THERE.search(str(exc)) and "unauthorized" not in str(exc)):
            pushes = "and pushes it" if registry.push_allowed else "(a pull request's check never pushes)"
            say(f"{ref} is not in the registry yet: this attempt builds it {pushes}")
            return False
        _warn(registry, "Pulling the training image from", _engine_message(exc))
        return False
    say(f"Pulled the training image {ref} in {time.monotonic() - start:.1f} s (built once for the chain)")
    return True


def push(registry: Registry, dc: docker.DockerClient, local_tag: str, say: Say) -> bool:
    """Push the image just built, for the chain's later attempts; a failure is a warning."""
    if registry.failed:
        return False
    if not registry.push_allowed:
        say(
            f"{local_tag} is not pushed to {registry.repository}: a pull request's check only pulls the "
            "chain's images"
        )
        return False
    ref = registry.ref(local_tag)
    start = time.monotonic()
    try:
        dc.api.tag(local_tag, *ref.rsplit(":", 1))
        for chunk in dc.api.push(
            ref.rsplit(":", 1)[0],
            tag=ref.rsplit(":", 1)[1],
            stream=True,
            decode=True,
            auth_config=registry.auth,
        ):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise APIError(str(chunk["error"]))
    except (APIError, DockerException, requests.exceptions.RequestException) as exc:
        _warn(registry, "Pushing the training image to", _engine_message(exc))
        return False
    say(f"Pushed {ref} in {time.monotonic() - start:.1f} s: the chain's later attempts pull it")
    return True


def _engine_message(exc: BaseException) -> str:
    """The engine's own words (``explanation``), else docker-py's text."""
    explanation = getattr(exc, "explanation", None)
    return short(Exception(explanation)) if explanation else short(exc)
