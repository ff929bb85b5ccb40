"""The training image: tagged by a content hash, built only when no image has that tag.

The tag (``keeptraining-train:<16 hex>``) hashes what the image is built from: the
Dockerfile, BASE_IMAGE, the digest of each base image, and the files the Dockerfile
copies (``build_context.py``: never ``.git/``, the state folder or the mounted code).
An unchanged repository never rebuilds and never even uploads its context, and
neither a code change nor a new attempt's state changes the tag.

With ``image_registry`` (``registry.py``) the image is pulled from
``<image_registry>:<hash>`` when this engine lacks it, and pushed there after a build,
so that a chain builds it once, whichever runners its attempts land on.

A build says what it does, one line per Dockerfile step (``Step 3/9 : RUN ...``),
keeps the rest of its log for the error message, and has its own time limit
(``build_timeout``): past it the connection is closed, which makes the engine
cancel the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils.build import create_archive

from keeptraining.backends.docker import build_context, registry
from keeptraining.backends.docker.run import LABELS, require_engine, short
from keeptraining.errors import ConfigError, ImageBuildError

IMAGE_REPOSITORY = "keeptraining-train"
BUILD_TIMEOUT_S = 3600.0  # default build_timeout: a first build installs TensorFlow
BUILD_LOG_TAIL = 40
_STEP = re.compile(r"^Step \d+/\d+ : ")  # the classic builder's line at the start of each step


def _dockerfile_path(repo_root: Path, dockerfile: str) -> tuple[Path, str]:
    """The Dockerfile's absolute path and its path relative to the build context.

    The context is the repository; a Dockerfile outside it (``../x``, an absolute
    path elsewhere, a symlink out) is refused: the tag could not describe it.
    """
    root = repo_root.resolve()
    path = (root / dockerfile).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise ConfigError(
            f"dockerfile: {dockerfile!r} resolves to {path}, outside the repository {root}.",
            hint="Give a Dockerfile path inside the repository, e.g. `Dockerfile`.",
        ) from None
    if not path.is_file():
        raise ConfigError(
            f"dockerfile: {dockerfile!r} does not exist in {root}.",
            hint="Add the Dockerfile, or set `dockerfile` to the path of the one to build.",
        )
    return path, rel.as_posix()


def context_files(
    repo_root: Path, dockerfile: str, *, excluded: Sequence[str] = (), code_folder: str = ""
) -> list[str]:
    """The files of the build context (relative paths, sorted): what the tag hashes and a build
    sends, besides the Dockerfile itself (``build_context.files``)."""
    root = repo_root.resolve()
    path, rel = _dockerfile_path(root, dockerfile)
    text = path.read_text(encoding="utf-8", errors="replace")
    return build_context.files(root, rel, text, excluded, code_folder)


def _local_image_id(dc: docker.DockerClient | None, name: str) -> str:
    if dc is None or not name:
        return ""
    try:
        return str(dc.images.get(name).id)
    except (ImageNotFound, APIError, requests.exceptions.RequestException):
        return ""


def image_digest(dc: docker.DockerClient, name: str, repository: str | None = None) -> str | None:
    """The training image's digest, for the model card: the manifest digest ``repository`` (the chain's
    registry) holds it under, when it was pushed there or pulled from it; else ``base_identity`` (a
    registry digest of the image's own name, else the local image's id)."""
    if repository:
        with contextlib.suppress(ImageNotFound, APIError, requests.exceptions.RequestException):
            found = _repo_digest(dc.images.get(name), repository)
            if found:
                return found
    return base_identity(dc, name) or None


def _repo_digest(image: Any, repository: str) -> str | None:
    """The manifest digest ``repository`` holds ``image`` under (pushed there or pulled from it), if any."""
    found = [
        d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if d.split("@")[0] == repository
    ]
    return found[0] if found else None


def base_identity(dc: docker.DockerClient | None, name: str) -> str:
    """What identifies a base image: its registry digest (the local copy's, else the registry's,
    asked without pulling), else the local image's id (a base that no registry knows), else ""."""
    if dc is None or not name:
        return ""
    try:
        image = dc.images.get(name)
    except (ImageNotFound, APIError, requests.exceptions.RequestException):
        image = None
    if image is not None:
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        return _repo_digest(image, repository) or str(image.id)
    try:
        return str(dc.images.get_registry_data(name).id)
    except (DockerException, requests.exceptions.RequestException):
        return ""


def image_tag(
    repo_root: Path,
    dockerfile: str,
    base_image: str | None,
    *,
    docker_client: docker.DockerClient | None = None,
    excluded: Sequence[str] = (),
    code_folder: str = "",
) -> str:
    """``keeptraining-train:<16 hex>``: a content hash of everything the image is built from.

    Covered: the Dockerfile's bytes, the BASE_IMAGE build argument, the identity of each
    base image the Dockerfile starts from (``base_identity``: a moved tag or a rebuilt
    base gets a new tag), and each context file (``context_files``: path and content, in
    sorted order). Without ``docker_client`` no base is looked up (a pure function of the
    files).
    """
    root = repo_root.resolve()
    df_path, _ = _dockerfile_path(root, dockerfile)
    df_bytes = df_path.read_bytes()
    h = hashlib.sha256()

    def field(name: str, value: bytes) -> None:
        # Length-prefixed, so that no two different inputs can produce one stream.
        h.update(f"{name}:{len(value)}:".encode())
        h.update(value)

    field("dockerfile", df_bytes)
    field("base-arg", (base_image or "").encode())
    args = {"BASE_IMAGE": base_image} if base_image else {}
    for base in build_context.base_images(df_bytes.decode("utf-8", "replace"), args):
        field("base", f"{base}@{base_identity(docker_client, base)}".encode())
    for rel in context_files(root, dockerfile, excluded=excluded, code_folder=code_folder):
        path = root / rel
        field("path", rel.encode())
        if path.is_symlink():
            field("symlink", os.readlink(path).encode())
        else:
            field("file", path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{h.hexdigest()[:16]}"


def _build_lines(chunks: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str | None]]:
    """(line, error) pairs from the engine's build stream.

    ``stream`` chunks carry output split anywhere (not at line ends), ``status``
    chunks report base-image pulls, and an ``error`` chunk ends a failed build.
    """
    pending = ""
    for chunk in chunks:
        if "error" in chunk:
            if pending:
                yield pending, None
                pending = ""
            detail = chunk.get("errorDetail") or {}
            yield "", str(detail.get("message") or chunk["error"]).strip()
            continue
        text = chunk.get("stream")
        if text is None and "status" in chunk and "progress" not in chunk:
            text = " ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)) + "\n"
        if not text:
            continue
        pending += str(text)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line.rstrip("\r"), None
    if pending:
        yield pending, None


class _BuildTimedOut(Exception):
    """The build ran past build_timeout."""


class _BuildClient(docker.APIClient):
    """A client of its own for one build, which keeps the build's HTTP response so that the
    build can be cancelled: the engine stops a build once its client's connection is gone."""

    response: requests.Response | None = None

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        self.response = super()._post(url, **kwargs)
        return self.response

    def cancel(self) -> None:
        """Shut the build's connection down (waking the reader) and close the client."""
        connection = getattr(getattr(self.response, "raw", None), "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.close()


def _connect_builder(timeout: float) -> _BuildClient:
    try:
        return _BuildClient(timeout=int(timeout), **docker.utils.kwargs_from_env())
    except (DockerException, requests.exceptions.RequestException) as exc:
        raise ImageBuildError(
            f"Cannot connect to the Docker engine to build the image: {short(exc)}"
        ) from None


def _chunks_until(
    builder: _BuildClient, deadline: float, build_args: dict[str, Any]
) -> Iterator[Mapping[str, Any]]:
    """The engine's build stream, read in a thread so that the deadline holds even while a
    step prints nothing; at the deadline the build is cancelled."""
    chunks: queue.Queue[tuple[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for chunk in builder.build(**build_args):
                chunks.put(("chunk", chunk))
        except Exception as exc:  # handed to the caller's thread
            chunks.put(("error", exc))
        chunks.put(("end", None))

    threading.Thread(target=read, name="keeptraining-build", daemon=True).start()
    while True:
        try:
            kind, item = chunks.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            builder.cancel()
            raise _BuildTimedOut from None
        if kind == "end":
            return
        if kind == "error":
            raise item
        yield item


def _build(
    build_args: dict[str, Any], timeout: float, log: deque[str], on_line: Callable[[str], None]
) -> str | None:
    """Run one build, one line per step to ``on_line``, the rest into ``log``; the error, if any."""
    builder = _connect_builder(timeout + 60)  # its own connection: cancelling it stops only the build
    error: str | None = None
    try:
        for line, err in _build_lines(_chunks_until(builder, time.monotonic() + timeout, build_args)):
            log.append(err if err is not None else line)
            if err is not None:
                error = err
            elif _STEP.match(line):
                on_line(line)
    except _BuildTimedOut:
        error = f"it ran past build_timeout ({timeout:g} s) and was cancelled"
    except (APIError, requests.exceptions.RequestException) as exc:
        error = short(exc)
        log.append(error)
    finally:
        builder.close()
    return error


def _build_args(
    context: IO[bytes],
    rel_dockerfile: str,
    tag: str,
    base_image: str | None,
    image_registry: registry.Registry | None,
) -> dict[str, Any]:
    """The engine's build request for the context archive in ``context``."""
    return {
        "fileobj": context,
        "custom_context": True,
        "dockerfile": rel_dockerfile,
        "tag": tag,
        "buildargs": {"BASE_IMAGE": base_image} if base_image else {},
        "network_mode": "host",
        "rm": True,
        "forcerm": True,
        "decode": True,
        "labels": {**LABELS, **registry.labels(image_registry)},
    }


def _build_failed(
    error: str, log: deque[str], say: Callable[[str], None], rel_dockerfile: str, base_image: str | None
) -> ImageBuildError:
    """Say the build log's last lines, and return the error to raise."""
    for line in ("Last lines of the build log:", *log):  # only steps were shown: now why
        say(line)
    base = f" on base image {base_image!r}" if base_image else ""
    return ImageBuildError(
        f"Building the training image from {rel_dockerfile}{base} failed: {error}",
        hint="Fix the Dockerfile or requirements.txt (a build needs the network to reach the "
        "package index, and BASE_IMAGE must exist or be pullable), or raise build_timeout.",
        log_tail="\n".join(log),
    )


def ensure_image(
    repo_root: Path,
    dockerfile: str,
    base_image: str | None,
    on_line: Callable[[str], None] | None = None,
    *,
    docker_client: docker.DockerClient | None = None,
    timeout: float = BUILD_TIMEOUT_S,
    excluded: Sequence[str] = (),
    code_folder: str = "",
    image_registry: registry.Registry | None = None,
) -> tuple[str, bool]:
    """The training image's tag, built first if no image has that tag: (tag, built).

    A cache hit costs a hash of a few small files and one inspect call: no build
    request, no context upload. Else, with ``image_registry``, the image is pulled
    from there when the chain already built it. A build sends only the context files
    (``context_files``), uses the host network (to reach the package index), tells
    ``on_line`` one line per Dockerfile step, pushes the image to ``image_registry``,
    and raises ImageBuildError with the last lines of its log when it fails or runs
    past ``timeout`` seconds.
    """
    dc = docker_client or require_engine()
    root = repo_root.resolve()
    _, rel_dockerfile = _dockerfile_path(root, dockerfile)
    tag = image_tag(
        root, dockerfile, base_image, docker_client=dc, excluded=excluded, code_folder=code_folder
    )
    if _local_image_id(dc, tag):
        return tag, False
    say = on_line or (lambda _line: None)
    if image_registry is not None and registry.pull(image_registry, dc, tag, say):
        return tag, False

    say(f"Building the training image {tag} from {rel_dockerfile} (once per change of its inputs)")
    log: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    files = context_files(root, dockerfile, excluded=excluded, code_folder=code_folder)
    start = time.monotonic()
    with tempfile.TemporaryFile() as context:
        create_archive(str(root), files=[*files, rel_dockerfile], fileobj=context)
        build_args = _build_args(context, rel_dockerfile, tag, base_image, image_registry)
        error = _build(build_args, timeout, log, say)
    if error is None and not _local_image_id(dc, tag):
        error = "the engine reported no error, but no image was tagged"
    if error is not None:
        raise _build_failed(error, log, say, rel_dockerfile, base_image)
    say(f"Built {tag} in {time.monotonic() - start:.0f} s")
    if image_registry is not None:
        registry.push(image_registry, dc, tag, say)
    return tag, True
