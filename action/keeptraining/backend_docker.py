"""The docker backend: the training contract inside the repository's own image.

Through the Docker SDK (docker-py), never the CLI: no argv to quote, structured
errors, and streamed build/log output.

* The image is tagged by a hash of what it is built from (Dockerfile, base image,
  build context after ``.dockerignore``), so an unchanged repository never
  rebuilds and never even uploads its context; a code change does not rebuild
  either, because the code is mounted at run time, not copied in.
* Each attempt runs in a fresh container: code read-only, output writable, the
  resume checkpoint read-only, no network, not root, labelled so that leftovers
  can be swept. The container is always removed, whatever happens.
* keeptraining keeps its own deadline (``container.wait(timeout=)`` is only an
  HTTP read timeout and is unreliable) and streams the log while it waits.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import Mount
from docker.utils.build import exclude_paths

from .errors import BackendUnavailable, ConfigError, ImageBuildError, TrainingError
from .train import TrainRequest, TrainResult

LABEL = "keeptraining"
LABELS: dict[str, str] = {LABEL: "1"}
IMAGE_REPOSITORY = "keeptraining-train"

CODE_MOUNT = "/workspace/code"
OUTPUT_MOUNT = "/workspace/output"
RESUME_MOUNT = "/workspace/resume"
CONTAINER_UID = 1000  # the image's `trainer` user (see Dockerfile)
CONTAINER_GID = 1000

PING_TIMEOUT_S = 5.0  # "is there an engine?" must answer fast, not hang a CLI
API_TIMEOUT_S = 120.0  # ordinary calls (create, inspect, remove) on a busy engine
BUILD_TIMEOUT_S = 3600.0  # a build step may be silent for long (pip downloading TensorFlow)
STOP_GRACE_S = 5.0  # after SIGTERM on timeout, how long the script may take to save and exit
POLL_S = 0.2
BUILD_LOG_TAIL = 40

ENGINE_HINT = (
    "Start a Docker engine (on a machine like keeptraining's test machines: "
    "`bash scripts/docker-engine.sh`), or train without Docker: set `backend: local` "
    "in .keeptraining.yml, `backend: local` as the action input, or `--backend local`."
)

_BASE_ARG_DEFAULT = re.compile(r"^\s*ARG\s+BASE_IMAGE\s*=\s*(\S+)", re.MULTILINE | re.IGNORECASE)


# --- engine -------------------------------------------------------------------


def client(timeout: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client for the engine the environment names (DOCKER_HOST, DOCKER_TLS_VERIFY...).

    ``timeout`` is the HTTP read timeout of each call. Raises BackendUnavailable,
    with the fix in the message, when no engine answers.
    """
    try:
        dc = docker.from_env(timeout=int(max(1, timeout)))
        dc.ping()
    except (DockerException, requests.exceptions.RequestException, OSError) as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise BackendUnavailable(
            f"No Docker engine answers at {host}: {_short(exc)}", hint=ENGINE_HINT
        ) from None
    return dc


def engine_available() -> bool:
    """Whether an engine answers within a few seconds (never raises)."""
    try:
        client(timeout=PING_TIMEOUT_S).close()
    except BackendUnavailable:
        return False
    return True


def require_engine(timeout: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client for a live engine, or BackendUnavailable saying how to get one.

    The liveness check itself is quick: a short ping first, so a missing engine is
    reported in seconds; the returned client then uses ``timeout`` per call.
    """
    client(timeout=PING_TIMEOUT_S).close()
    return client(timeout=timeout)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- image ----------------------------------------------------------------------


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


def _dockerignore_patterns(root: Path) -> list[str]:
    """``.dockerignore`` read exactly as docker-py reads it when it builds the context."""
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(repo_root: Path, dockerfile: str) -> list[str]:
    """The files docker-py sends as build context (relative paths, sorted).

    Uses docker-py's own ``exclude_paths`` so the hash covers exactly what a build
    would see; directories are left out (their files are listed).
    """
    root = repo_root.resolve()
    _, rel = _dockerfile_path(root, dockerfile)
    paths = exclude_paths(str(root), _dockerignore_patterns(root), dockerfile=rel)
    return sorted(p for p in paths if (root / p).is_symlink() or not (root / p).is_dir())


def _local_image_id(dc: docker.DockerClient | None, name: str) -> str:
    if dc is None or not name:
        return ""
    try:
        return str(dc.images.get(name).id)
    except (ImageNotFound, APIError, requests.exceptions.RequestException):
        return ""


def image_tag(
    repo_root: Path,
    dockerfile: str,
    base_image: str | None,
    *,
    docker_client: docker.DockerClient | None = None,
) -> str:
    """``keeptraining-train:<16 hex>``: a content hash of everything the image is built from.

    Covered: the Dockerfile's bytes, the BASE_IMAGE build argument, the id of the
    base image when it exists locally (a rebuilt base gets a new tag), and every
    context file after ``.dockerignore`` (path and content, in sorted order).
    With ``base_image`` None the Dockerfile's own ``ARG BASE_IMAGE=`` default is
    looked up. Without ``docker_client`` no id is looked up (pure function of the
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
    effective_base = base_image
    if not effective_base:
        match = _BASE_ARG_DEFAULT.search(df_bytes.decode("utf-8", "replace"))
        effective_base = match.group(1) if match else ""
    field("base-id", _local_image_id(docker_client, effective_base).encode())
    for rel in context_files(root, dockerfile):
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


def ensure_image(
    repo_root: Path,
    dockerfile: str,
    base_image: str | None,
    on_line: Callable[[str], None] | None = None,
    *,
    docker_client: docker.DockerClient | None = None,
) -> tuple[str, bool]:
    """The training image's tag, built first if no image has that tag: (tag, built).

    A cache hit costs a hash of a few small files and one inspect call: no build
    request, no context upload. A build uses the host network (to reach the package
    index), streams its output to ``on_line`` and raises ImageBuildError with the
    last lines of its log when it fails.
    """
    dc = docker_client or require_engine(timeout=BUILD_TIMEOUT_S)
    root = repo_root.resolve()
    _, rel_dockerfile = _dockerfile_path(root, dockerfile)
    tag = image_tag(root, dockerfile, base_image, docker_client=dc)
    if _local_image_id(dc, tag):
        return tag, False

    log: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    error: str | None = None
    buildargs = {"BASE_IMAGE": base_image} if base_image else {}
    try:
        chunks = dc.api.build(
            path=str(root),
            dockerfile=rel_dockerfile,
            tag=tag,
            buildargs=buildargs,
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
            labels=dict(LABELS),
        )
        for line, err in _build_lines(chunks):
            if err is not None:
                error = err
                log.append(err)
                continue
            log.append(line)
            if on_line is not None:
                on_line(line)
    except (APIError, requests.exceptions.RequestException) as exc:
        error = _short(exc)
        log.append(error)
    if error is None and not _local_image_id(dc, tag):
        error = "the engine reported no error, but no image was tagged"
    if error is not None:
        base = f" on base image {base_image!r}" if base_image else ""
        raise ImageBuildError(
            f"Building the training image from {rel_dockerfile}{base} failed: {error}\n"
            f"Last lines of the build log:\n" + "\n".join(log),
            hint="Fix the Dockerfile or requirements.txt; a build needs the network to reach "
            "the package index (and BASE_IMAGE must exist or be pullable).",
        )
    return tag, True


# --- run --------------------------------------------------------------------------


class _LogPump(threading.Thread):
    """Reads the container's log as it comes, line by line, into ``lines``/``on_line``.

    A thread, because docker-py's log stream blocks; the caller meanwhile keeps
    the deadline. Stops by itself when the container ends or is removed.
    """

    def __init__(self, container: Container, on_line: Callable[[str], None] | None) -> None:
        super().__init__(name="keeptraining-docker-log", daemon=True)
        self.container = container
        self.on_line = on_line
        self.chunks: list[str] = []
        self.error: BaseException | None = None
        self.sink_error: BaseException | None = None
        self.first_line_at: float | None = None

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        try:
            stream = self.container.logs(stdout=True, stderr=True, stream=True, follow=True)
            for data in stream:
                text = decoder.decode(data)
                self.chunks.append(text)
                pending += text
                *lines, pending = pending.split("\n")
                for line in lines:
                    self._emit(line)
            tail = decoder.decode(b"", final=True)
            self.chunks.append(tail)
            pending += tail
            if pending:
                self._emit(pending)
        except Exception as exc:  # connection lost, container removed under us
            self.error = exc

    def _emit(self, line: str) -> None:
        if self.first_line_at is None:
            self.first_line_at = time.monotonic()
        if self.on_line is None or self.sink_error is not None:
            return
        try:
            self.on_line(line.rstrip("\r"))
        except Exception as exc:  # a broken sink must not cost the log itself
            self.sink_error = exc

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _container_user(output_dir: Path) -> tuple[str, dict[str, str]]:
    """The uid:gid to run as, and extra environment for it.

    Never root. As a normal user: the caller's own uid:gid, so the checkpoint and
    metrics belong to the caller. As root: the image's ``trainer`` (1000), with the
    output folder handed to it so that it can write there.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        for dirpath, _dirnames, filenames in os.walk(output_dir):
            os.chown(dirpath, CONTAINER_UID, CONTAINER_GID)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), CONTAINER_UID, CONTAINER_GID, follow_symlinks=False)
        return f"{CONTAINER_UID}:{CONTAINER_GID}", {}
    # That uid has no passwd entry in the image, so HOME would be "/" (not writable):
    # Keras and matplotlib want a writable home for their config.
    env = {} if uid == CONTAINER_UID else {"HOME": "/tmp"}  # noqa: S108 - inside the container
    return f"{uid}:{gid}", env


def _mounts(request: TrainRequest) -> tuple[list[Mount], str]:
    """Bind mounts for code, output and resume checkpoint; and KT_RESUME_FROM's value.

    ``Mount`` objects rather than a ``volumes`` dict: the checkpoint's folder may be
    the output folder itself, mounted twice (read-only at /workspace/resume).
    """
    code = request.code_dir.resolve()
    if not code.is_dir():
        raise TrainingError(
            f"code_path {request.code_dir} is not a folder.",
            hint="Set `code-path` to the folder that holds the training script.",
        )
    output = request.output_dir.resolve()
    output.mkdir(parents=True, exist_ok=True)
    mounts = [
        Mount(CODE_MOUNT, str(code), type="bind", read_only=True),
        Mount(OUTPUT_MOUNT, str(output), type="bind", read_only=False),
    ]
    if request.resume_from is None:
        return mounts, ""
    resume = request.resume_from.resolve()
    if not resume.exists():
        raise TrainingError(
            f"The checkpoint to resume from, {request.resume_from}, does not exist.",
            hint="Resume from an existing checkpoint, or start fresh (`resume: false`).",
        )
    mounts.append(Mount(RESUME_MOUNT, str(resume.parent), type="bind", read_only=True))
    return mounts, f"{RESUME_MOUNT}/{resume.name}"


def _state(container: Container) -> dict[str, Any]:
    container.reload()
    state = container.attrs.get("State") or {}
    return dict(state)


def _create(dc: docker.DockerClient, request: TrainRequest, image: str,
            labels: Mapping[str, str], *, init: bool = True) -> Container:
    """The container for one attempt, created but not started.

    ``init``: tini (docker-init) as PID 1, so that the stop signal reaches the
    script and zombies are reaped; an engine without docker-init runs without.
    """
    mounts, resume_env = _mounts(request)
    user, user_env = _container_user(request.output_dir.resolve())
    env = {**request.env, **user_env, "KT_OUTPUT_DIR": OUTPUT_MOUNT, "KT_RESUME_FROM": resume_env}
    try:
        return dc.containers.create(
            image,
            list(request.command),
            working_dir=CODE_MOUNT,
            mounts=mounts,
            environment=env,
            network_mode="none",
            user=user,
            labels={**LABELS, **labels},
            init=init,
            stdin_open=False,
            tty=False,
            # With a limit, swap may not extend it: past it the kernel kills the training.
            **({"mem_limit": request.memory_limit, "memswap_limit": request.memory_limit}
               if request.memory_limit else {}),
        )
    except ImageNotFound:
        raise TrainingError(
            f"The training image {image} does not exist.",
            hint="Build it first (keeptraining does so from the Dockerfile) or name an existing image.",
        ) from None
    except APIError as exc:
        raise TrainingError(f"Docker could not create the training container: {_short(exc)}") from None


_NOT_STARTED_HINT = "Check train_command (e.g. `python nn.py`): its program must exist in the image."
# What tini prints when it cannot exec the command (exit 127: not found, 126: not executable).
_TINI_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] exec (?P<program>.*) failed: (?P<why>.*)$")


def _start(container: Container) -> None:
    try:
        container.start()
    except APIError as exc:
        raise TrainingError(f"The training container did not start: {_short(exc)}",
                            hint=_NOT_STARTED_HINT) from None


def _create_and_start(dc: docker.DockerClient, request: TrainRequest, image: str,
                      labels: Mapping[str, str], stages: dict[str, float],
                      created: list[Container]) -> float:
    """Create and start the container (without docker-init if the engine has none).

    Every container is appended to ``created`` the moment it exists, so that the
    caller's ``finally`` removes it even if an interrupt lands between two calls
    here. Returns the monotonic time the (last) start was requested: where the
    attempt's duration and deadline begin.
    """
    t = time.monotonic()
    created.append(_create(dc, request, image, labels))
    stages["container_create_s"] = time.monotonic() - t
    t = time.monotonic()
    try:
        created[-1].start()
    except APIError as exc:
        if "init" not in str(exc):
            raise TrainingError(f"The training container did not start: {_short(exc)}",
                                hint=_NOT_STARTED_HINT) from None
        with contextlib.suppress(NotFound):
            created[-1].remove(force=True)
        created.append(_create(dc, request, image, labels, init=False))
        t = time.monotonic()
        _start(created[-1])
    stages["container_start_s"] = time.monotonic() - t
    return t


def _raise_if_not_executed(exit_code: int, output: str, command: list[str]) -> None:
    """Mirror the local backend: a command that could not be executed is an error, not a result."""
    lines = output.strip().splitlines()
    match = _TINI_EXEC_FAILED.match(lines[-1]) if exit_code in (126, 127) and len(lines) == 1 else None
    if match:
        raise TrainingError(
            f"train_command {command[0]!r} could not be started in the image: {match['why']}.",
            hint=_NOT_STARTED_HINT,
        )


def _follow(container: Container, pump: _LogPump, deadline: float) -> tuple[dict[str, Any], bool]:
    """Wait for the container to end, or stop it at ``deadline``: (final state, timed out).

    The log stream ends when the container does, so the pump's thread is what is
    waited on (joins are interruptible by Ctrl-C); the state is then read to tell
    an ended container from a broken stream.
    """
    while True:
        pump.join(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        if not pump.is_alive():
            state = _state(container)
            if state.get("Status") in ("exited", "dead"):
                return state, False
        if time.monotonic() >= deadline:
            with contextlib.suppress(NotFound):
                container.stop(timeout=int(STOP_GRACE_S))  # SIGTERM, then SIGKILL
            return _state(container), True
        if not pump.is_alive():
            time.sleep(POLL_S)


def run(
    request: TrainRequest,
    image: str,
    *,
    docker_client: docker.DockerClient | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> TrainResult:
    """Run one attempt in a fresh container of ``image`` and remove it afterwards.

    A non-zero exit, a crash or the OOM killer come back as a TrainResult (the
    caller turns them into errors); only a container that cannot be set up or
    started raises. ``extra_labels`` are added to the ``keeptraining=1`` label
    (e.g. to find one run's container).
    """
    stages: dict[str, float] = {}
    t = time.monotonic()
    dc = docker_client or require_engine()
    stages["engine_check_s"] = time.monotonic() - t

    created: list[Container] = []
    pump: _LogPump | None = None
    try:
        started = _create_and_start(dc, request, image, extra_labels or {}, stages, created)
        container = created[-1]
        pump = _LogPump(container, request.on_line)
        pump.start()
        state, timed_out = _follow(container, pump, started + request.timeout)
        ended = time.monotonic()
        pump.join(timeout=STOP_GRACE_S)  # the last lines, after the container stopped
    finally:
        errors = _stderr(created)
        output, stages["cleanup_s"] = _cleanup(created, pump)

    exit_code = int(state.get("ExitCode", -1))
    _raise_if_not_executed(exit_code, output, request.command)
    stages["run_s"] = ended - started
    if pump.first_line_at is not None:
        stages["first_log_line_s"] = pump.first_line_at - started
    detail = []
    if timed_out:
        detail.append(f"timed out after {request.timeout:g}s: stopped (SIGTERM, then SIGKILL)")
    if state.get("OOMKilled"):
        detail.append("killed: out of memory (the container's memory limit or the machine's)")
    if state.get("Error"):
        detail.append(f"engine: {state['Error']}")
    if pump.sink_error is not None:
        detail.append(f"live log sink failed and was dropped: {_short(pump.sink_error)}")
    return TrainResult(
        exit_code=exit_code,
        duration=ended - started,
        output=output,
        timed_out=timed_out,
        detail="; ".join(detail),
        stages=stages,
        errors=errors,
    )


def _stderr(created: list[Container]) -> str:
    """The container's stderr alone: the engine does not keep its order relative to stdout,
    so a traceback can land far from the end of the merged log."""
    if not created:
        return ""
    with contextlib.suppress(DockerException, requests.exceptions.RequestException):
        raw = created[-1].logs(stdout=False, stderr=True, stream=False, tail=200)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return ""


def _cleanup(created: list[Container], pump: _LogPump | None) -> tuple[str, float]:
    """Collect the whole log, then remove the container(s): on every way out of ``run``.

    The streamed copy is used when the stream read to its end; otherwise (an
    exception, Ctrl-C, a broken stream) the engine's stored log is read before the
    container, and with it the log, is removed.
    """
    t = time.monotonic()
    output = pump.text if pump is not None else ""
    if not created:
        return output, time.monotonic() - t
    try:
        if pump is None or pump.is_alive() or pump.error is not None:
            with contextlib.suppress(DockerException, requests.exceptions.RequestException):
                raw = created[-1].logs(stdout=True, stderr=True, stream=False)
                output = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    finally:
        for container in created:
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        if pump is not None:
            pump.join(timeout=1.0)
    return output, time.monotonic() - t


def sweep(
    *,
    docker_client: docker.DockerClient | None = None,
    labels: Mapping[str, str] | None = None,
) -> int:
    """Remove leftover keeptraining containers (e.g. after a killed run); returns how many.

    Every container labelled ``keeptraining=1`` (and ``labels``, when given) goes,
    running or not: call it when no other keeptraining run shares the engine, or
    narrow it with ``labels``.
    """
    dc = docker_client or require_engine()
    wanted = {**LABELS, **(labels or {})}
    filters = {"label": [f"{k}={v}" for k, v in wanted.items()]}
    removed = 0
    for container in dc.containers.list(all=True, filters=filters):
        with contextlib.suppress(NotFound):
            container.remove(force=True)
            removed += 1
    return removed
