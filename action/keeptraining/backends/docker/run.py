"""The docker backend: the training contract inside the repository's own image.

Through the Docker SDK (docker-py), never the CLI: no argv to quote, structured
errors, and a streamed log.

* The image comes from ``docker_image.py`` (content-hash tag, built only when missing).
* Each attempt runs in a fresh container: in a writable copy of the code folder (the repository's
  folder itself is never mounted writable; what the script writes next to itself is kept with
  the attempt in ``workdir/``: ``workdir.py``), output writable, the
  resume checkpoint read-only, the data cache writable, the network the
  ``network`` setting names (``network.py``), not root, labelled so that
  leftovers can be swept. The container is always removed, whatever happens.
* Hardened: every capability dropped, ``no-new-privileges``, a pids limit, a
  read-only root filesystem with tmpfs for /tmp and HOME, and the image's
  ENTRYPOINT replaced by the train command, so the train command is what runs.
* The checkpoint to resume from is copied into a folder keeptraining owns and
  that one file is mounted: never a folder the training script could have
  pointed elsewhere with a link. Nothing under /run, /proc, /sys or /dev, and
  never the engine's socket, is mounted.
* ``cpus`` and ``gpus`` (optional) become the container's NanoCpus and an NVIDIA device
  request (``docker run --cpus`` / ``--gpus``); an engine that cannot give GPUs is an error
  that says what to install.
* keeptraining keeps its own deadline (``container.wait(timeout=)`` is only an
  HTTP read timeout and is unreliable) and streams the log while it waits.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, Mount

from keeptraining import adapter
from keeptraining.backends.base import LineSplitter, LogBuffer, TrainRequest, TrainResult
from keeptraining.backends.docker import network, workdir
from keeptraining.contract import env as kt_env
from keeptraining.errors import BackendUnavailable, PathRefused, TrainingError
from keeptraining.state import data_cache, safe_paths

LABEL = "keeptraining"
LABELS: dict[str, str] = {LABEL: "1"}

CODE_MOUNT = "/workspace/code"
OUTPUT_MOUNT = "/workspace/output"
RESUME_MOUNT = "/workspace/resume"
HOME_MOUNT = "/workspace/home"  # an empty tmpfs: the root filesystem is read-only
CONTAINER_UID = 1000  # the image's `trainer` user (see Dockerfile)
CONTAINER_GID = 1000
PIDS_LIMIT = 4096  # processes and threads: TensorFlow starts a few per core; a fork bomb stops here
TMPFS_OPTIONS = "rw,nosuid,nodev,exec,mode=1777"  # exec: some libraries load code they write to /tmp
# Host folders no mount may come from (the engine's socket lives under /run or /var/run).
FORBIDDEN_SOURCES = tuple(Path(p) for p in ("/run", "/var/run", "/proc", "/sys", "/dev"))

PING_TIMEOUT_S = 5.0  # "is there an engine?" must answer fast, not hang a CLI
API_TIMEOUT_S = 120.0  # ordinary calls (create, inspect, remove) on a busy engine
STOP_GRACE_S = 5.0  # after SIGTERM (a timeout, a cancellation), how long the script may take to exit
POLL_S = 0.2

ENGINE_HINT = (
    "Start the Docker engine (or point DOCKER_HOST at one), or train without Docker: set "
    "`backend: local` in .keeptraining.yml, `backend: local` as the action input, or `--backend local`."
)


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
            f"No Docker engine answers at {host}: {short(exc)}", hint=ENGINE_HINT
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


def short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


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
        self.log = LogBuffer()  # bounded: its head and tail (base.MAX_LOG_CHARS)
        self.error: BaseException | None = None
        self.sink_error: BaseException | None = None
        self.first_line_at: float | None = None

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        splitter = LineSplitter()  # linear however long a line without a newline grows
        try:
            stream = self.container.logs(stdout=True, stderr=True, stream=True, follow=True)
            for data in stream:
                text = decoder.decode(data)
                self.log.append(text)
                for line in splitter.feed(text):
                    self._emit(line)
            tail = decoder.decode(b"", final=True)
            self.log.append(tail)
            for line in splitter.feed(tail) + splitter.flush():
                self._emit(line)
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
        return self.log.text()


def _container_user(*writable: Path) -> str:
    """The uid:gid to run as: never root.

    As a normal user: the caller's own uid:gid, so the checkpoint and metrics belong
    to the caller. As root: the image's ``trainer`` (1000), with the ``writable``
    folders (output, data cache) handed to it so that it can write there.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        for dirpath, _dirnames, filenames in (walked for folder in writable for walked in os.walk(folder)):
            os.chown(dirpath, CONTAINER_UID, CONTAINER_GID, follow_symlinks=False)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), CONTAINER_UID, CONTAINER_GID, follow_symlinks=False)
        return f"{CONTAINER_UID}:{CONTAINER_GID}"
    return f"{uid}:{gid}"


def _engine_socket() -> Path | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else None


def _mount_source(path: Path, kind: str) -> str:
    """``path`` resolved, if it may be mounted: a real folder or file, nowhere near the engine.

    Refused: anything under /run, /var/run, /proc, /sys or /dev, the engine's socket
    (or a folder holding it), a symbolic link, anything but a folder or a regular file.
    """
    try:
        mode = os.lstat(path).st_mode
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise TrainingError(f"The {kind} {path} cannot be mounted: {exc}.") from None
    socket = _engine_socket()
    near_engine = socket is not None and (real == socket or socket.is_relative_to(real))
    forbidden = real == Path("/") or any(real.is_relative_to(f) for f in FORBIDDEN_SOURCES)
    if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) or forbidden or near_engine:
        raise TrainingError(
            f"Refusing to mount the {kind} {path} into the training container: only a plain "
            "folder or file, never a link, the root, /run, /proc, /sys, /dev or the "
            "engine's socket, is mounted.",
            hint="Keep code_path inside the repository and state_dir in an ordinary folder.",
        )
    return str(real)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def stage_checkpoint(resume_from: Path, staging: Path) -> Path:
    """Copy the checkpoint to resume from into ``staging`` (a folder keeptraining made).

    Read through ``safe_paths``: a regular file, never through a link. The copy keeps
    the file's name (Keras tells formats by their suffix) when it is a plain name.
    """
    name = resume_from.name if _SAFE_NAME.fullmatch(resume_from.name) else "checkpoint" + resume_from.suffix
    try:
        return safe_paths.copy_file(
            resume_from.parent, resume_from.name, staging / name, "the checkpoint to resume from"
        )
    except PathRefused as exc:
        raise TrainingError(exc.message) from None
    except OSError as exc:
        raise TrainingError(
            f"The checkpoint to resume from, {resume_from}, cannot be copied: {exc.strerror or exc}.",
            hint="Resume from an existing checkpoint, or start fresh (`resume: false`).",
        ) from None


def _mounts(request: TrainRequest, staged: Path | None, work: Path | None = None) -> tuple[list[Mount], str]:
    """Bind mounts for code, output and the staged resume checkpoint; and KT_RESUME_FROM's value.

    ``work``: the code folder's writable copy, the working folder (else the code folder, read-only).

    A list of ``Mount`` objects, easy to extend; each source goes through ``_mount_source``.
    """
    if not request.code_dir.is_dir():
        raise TrainingError(
            f"code_path {request.code_dir} is not a folder.",
            hint="Set `code-path` to the folder that holds the training script.",
        )
    request.output_dir.mkdir(parents=True, exist_ok=True)
    mounts = [
        Mount(
            CODE_MOUNT, _mount_source(work, "working copy of the code folder"), type="bind", read_only=False
        )
        if work is not None
        else Mount(CODE_MOUNT, _mount_source(request.code_dir, "code folder"), type="bind", read_only=True),
        Mount(OUTPUT_MOUNT, _mount_source(request.output_dir, "output folder"), type="bind", read_only=False),
    ]
    if request.adapter_dir is not None:
        mounts.append(
            Mount(
                adapter.CONTAINER_DIR,
                _mount_source(request.adapter_dir, "Keras adapter folder"),
                type="bind",
                read_only=True,
            )
        )
    if request.cache_dir is not None:
        mounts.append(
            Mount(
                data_cache.CACHE_MOUNT,
                _mount_source(request.cache_dir, "data cache folder"),
                type="bind",
                read_only=False,
            )
        )
    if staged is None:
        return mounts, ""
    target = f"{RESUME_MOUNT}/{staged.name}"
    mounts.append(Mount(target, _mount_source(staged, "checkpoint copy"), type="bind", read_only=True))
    return mounts, target


def _image_env(dc: docker.DockerClient, image: str) -> dict[str, str]:
    """The variables the image itself sets (``ENV``), so that keeptraining extends them, not replaces them."""
    try:
        entries = dc.images.get(image).attrs.get("Config", {}).get("Env") or []
    except (DockerException, requests.exceptions.RequestException):
        return {}
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _state(container: Container) -> dict[str, Any]:
    container.reload()
    state = container.attrs.get("State") or {}
    return dict(state)


def _environment(
    dc: docker.DockerClient, request: TrainRequest, image: str, resume_env: str
) -> dict[str, str]:
    """The training container's environment: the start variables, HOME and the contract's paths."""
    env = {**request.start_env(), "HOME": HOME_MOUNT, **kt_env.paths(OUTPUT_MOUNT, resume_env)}
    image_env = _image_env(dc, image)
    if request.adapter_dir is not None:  # the image's python imports the adapter's sitecustomize
        env["PYTHONPATH"] = adapter.pythonpath(adapter.CONTAINER_DIR, image_env.get("PYTHONPATH"))
    if request.cache_dir is not None:  # downloads go to the data cache, unless the image says where
        env.update(data_cache.library_env(data_cache.CACHE_MOUNT, lambda name: name in image_env))
    return env


def _create(
    dc: docker.DockerClient,
    request: TrainRequest,
    image: str,
    labels: Mapping[str, str],
    staged: Path | None,
    network_mode: str,
    *,
    init: bool = True,
    work: Path | None = None,
) -> Container:
    """The container for one attempt, created but not started.

    ``init``: tini (docker-init) as PID 1, so that the stop signal reaches the
    script and zombies are reaped; an engine without docker-init runs without.
    The train command is the ENTRYPOINT (the image's own is replaced, and with it
    its CMD), so that what runs is the train command and nothing else.
    """
    mounts, resume_env = _mounts(request, staged, work)
    writable = (request.output_dir, request.cache_dir, work)
    user = _container_user(*(p.resolve() for p in writable if p is not None))
    env = _environment(dc, request, image, resume_env)
    try:
        return dc.containers.create(
            image,
            entrypoint=list(request.command),
            working_dir=CODE_MOUNT,
            mounts=mounts,
            environment=env,
            network_mode=network_mode,
            user=user,
            labels={**LABELS, **labels},
            init=init,
            stdin_open=False,
            tty=False,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            pids_limit=PIDS_LIMIT,
            read_only=True,
            tmpfs={"/tmp": TMPFS_OPTIONS, HOME_MOUNT: TMPFS_OPTIONS},  # noqa: S108 - inside the container
            # With a limit, swap may not extend it: past it the kernel kills the training.
            **(
                {"mem_limit": request.memory_limit, "memswap_limit": request.memory_limit}
                if request.memory_limit
                else {}
            ),
            **({"nano_cpus": round(request.cpus * 1e9)} if request.cpus else {}),
            **({"device_requests": [gpu_request(request.gpus)]} if request.gpus else {}),
        )
    except ImageNotFound:
        raise TrainingError(
            f"The training image {image} does not exist.",
            hint="Build it first (keeptraining does so from the Dockerfile) or name an existing image.",
        ) from None
    except APIError as exc:
        raise TrainingError(f"Docker could not create the training container: {short(exc)}") from None


def gpu_request(gpus: str) -> DeviceRequest:
    """``gpus: all`` or a count, as the engine's device request (what ``docker run --gpus`` sends)."""
    return DeviceRequest(driver="", count=-1 if gpus == "all" else int(gpus), capabilities=[["gpu"]])


_GPU_HINT = (
    "On a GPU runner, install the NVIDIA driver and the NVIDIA Container Toolkit and register it "
    "with the engine (`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd); "
    "on a machine without GPUs, leave `gpus` unset."
)
_NOT_STARTED_HINT = "Check train_command (e.g. `python nn.py`): its program must exist in the image."
# What tini prints when it cannot exec the command (exit 127: not found, 126: not executable).
_TINI_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] exec (?P<program>.*) failed: (?P<why>.*)$")


def _not_started(exc: APIError) -> TrainingError:
    """The error for a container the engine would not start; GPUs it cannot give are said as such."""
    text = short(exc)
    if "device driver" in text or "capabilities: [[gpu]]" in text:
        return TrainingError(
            f"The Docker engine cannot give the training container GPUs (`gpus` is set): {text}",
            hint=_GPU_HINT,
        )
    return TrainingError(f"The training container did not start: {text}", hint=_NOT_STARTED_HINT)


def _start(container: Container) -> None:
    try:
        container.start()
    except APIError as exc:
        raise _not_started(exc) from None


def _create_and_start(
    dc: docker.DockerClient,
    request: TrainRequest,
    image: str,
    labels: Mapping[str, str],
    stages: dict[str, float],
    created: list[Container],
    staged: Path | None,
    network_mode: str,
    work: Path | None = None,
) -> float:
    """Create and start the container (without docker-init if the engine has none).

    Every container is appended to ``created`` the moment it exists, so that the
    caller's ``finally`` removes it even if an interrupt lands between two calls
    here. Returns the monotonic time the (last) start was requested: where the
    attempt's duration and deadline begin.
    """
    t = time.monotonic()
    created.append(_create(dc, request, image, labels, staged, network_mode, work=work))
    stages["container_create_s"] = time.monotonic() - t
    t = time.monotonic()
    try:
        created[-1].start()
    except APIError as exc:
        if "init" not in str(exc):
            raise _not_started(exc) from None
        with contextlib.suppress(NotFound):
            created[-1].remove(force=True)
        created.append(_create(dc, request, image, labels, staged, network_mode, init=False, work=work))
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


def _follow(
    container: Container, pump: _LogPump, deadline: float, cancel: threading.Event | None = None
) -> tuple[dict[str, Any], bool]:
    """Wait for the container to end, or stop it at ``deadline``: (final state, timed out).

    The log stream ends when the container does, so the pump's thread is what is
    waited on (joins are interruptible by Ctrl-C); the state is then read to tell
    an ended container from a broken stream. ``cancel`` (a round of parallel trials
    interrupted) stops it at once, as Ctrl-C does.
    """
    while True:
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt("the round was interrupted")
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
    staging = Path(tempfile.mkdtemp(prefix="keeptraining-resume-"))
    copy: workdir.WorkingCopy | None = None
    try:
        staging.chmod(0o755)  # the container's user reads the copy through its own bind mount
        staged, copy = _stage(request, staging, stages)
        network_mode, offline = network.docker_mode(dc, request.network)
        started = _create_and_start(
            dc, request, image, extra_labels or {}, stages, created, staged, network_mode, copy.path
        )
        container = created[-1]
        pump = _LogPump(container, request.on_line)
        pump.start()
        state, timed_out = _follow(container, pump, started + request.timeout, request.cancel)
        ended = time.monotonic()
        pump.join(timeout=STOP_GRACE_S)  # the last lines, after the container stopped
    except KeyboardInterrupt:  # a cancelled run: SIGTERM first, as on a timeout, so that a script
        if created:  # that saves on SIGTERM can; the runner allows ~10 s in all
            with contextlib.suppress(DockerException, requests.exceptions.RequestException):
                created[-1].stop(timeout=int(STOP_GRACE_S))
        raise
    finally:
        errors = _stderr(created)
        output, stages["cleanup_s"] = _cleanup(created, pump)
        output += _keep_written(request, copy, staging)

    exit_code = int(state.get("ExitCode", -1))
    _raise_if_not_executed(exit_code, output, request.command)
    stages["run_s"] = ended - started
    if pump.first_line_at is not None:
        stages["first_log_line_s"] = pump.first_line_at - started
    return TrainResult(
        exit_code=exit_code,
        duration=ended - started,
        output=output,
        timed_out=timed_out,
        detail=_detail(state, timed_out, request.timeout, pump),
        stages=stages,
        errors=errors,
        offline=offline,
    )


def _detail(state: Mapping[str, Any], timed_out: bool, timeout: float, pump: _LogPump) -> str:
    """How the container ended, beyond its exit code (a timeout, the OOM killer, the engine's error)."""
    detail = []
    if timed_out:
        detail.append(f"timed out after {timeout:g}s: stopped (SIGTERM, then SIGKILL)")
    if state.get("OOMKilled"):
        detail.append("killed: out of memory (the container's memory limit or the machine's)")
    if state.get("Error"):
        detail.append(f"engine: {state['Error']}")
    if pump.sink_error is not None:
        detail.append(f"live log sink failed and was dropped: {short(pump.sink_error)}")
    return "; ".join(detail)


def _owner(folder: Path) -> tuple[int, int] | None:
    """Whom the files the container wrote go back to when keeptraining runs as root: the state
    folder's owner (the container itself never runs as root, so they are the trainer's, 1000)."""
    if os.getuid() != 0:
        return None
    with contextlib.suppress(OSError):
        info = os.stat(folder)
        return info.st_uid, info.st_gid
    return 0, 0


def _stage(
    request: TrainRequest, staging: Path, stages: dict[str, float]
) -> tuple[Path | None, workdir.WorkingCopy]:
    """The checkpoint to resume from and the working copy of the code folder, in ``staging``."""
    t = time.monotonic()
    staged = stage_checkpoint(request.resume_from, staging) if request.resume_from else None
    stages["stage_checkpoint_s"] = time.monotonic() - t
    t = time.monotonic()
    copy = _working_copy(request, staging)
    stages["working_copy_s"] = time.monotonic() - t
    return staged, copy


def _working_copy(request: TrainRequest, staging: Path) -> workdir.WorkingCopy:
    if not request.code_dir.is_dir():
        raise TrainingError(
            f"code_path {request.code_dir} is not a folder.",
            hint="Set `code-path` to the folder that holds the training script.",
        )
    try:
        return workdir.prepare(request.code_dir, staging)
    except (OSError, shutil.Error) as exc:
        raise TrainingError(
            f"The code folder {request.code_dir} could not be copied for the training "
            f"container: {short(exc)}",
            hint="Make every file of the code folder readable (and free disk space).",
        ) from None


def _keep_written(request: TrainRequest, copy: workdir.WorkingCopy | None, staging: Path) -> str:
    """Keep what the script wrote in its working folder with the attempt, give the attempt's files
    back to their owner and remove ``staging``. Returns the line that says so (also sent to the
    live log), or ''."""
    try:
        return _keep(request, copy, _owner(request.output_dir.parent))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keep(request: TrainRequest, copy: workdir.WorkingCopy | None, owner: tuple[int, int] | None) -> str:
    line = ""
    if copy is not None:
        destination = request.output_dir / workdir.KEPT_FOLDER
        try:
            kept = copy.keep(destination)
        except (OSError, shutil.Error) as exc:
            kept, line = (
                [],
                (
                    f"keeptraining: what the script wrote in its folder could not be kept in "
                    f"{destination}: {short(exc)}"
                ),
            )
        if kept:
            shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
            files = f"{len(kept)} file{'s' if len(kept) != 1 else ''}"
            line = (
                f"keeptraining: the script wrote {files} in its folder ({shown}): kept with the "
                f"attempt in {destination}, not in the repository."
            )
    if owner is not None:
        for folder in (request.output_dir, request.cache_dir):
            if folder is not None and folder.is_dir():
                workdir.hand_over(folder, owner)
    if line and request.on_line is not None:
        with contextlib.suppress(Exception):
            request.on_line(line)
    return line + "\n" if line else ""


STDERR_KEEP_CHARS = 256 * 1024  # the end of stderr kept beside the log, for the error's tail


def _stderr(created: list[Container]) -> str:
    """The container's stderr alone: the engine does not keep its order relative to stdout,
    so a traceback can land far from the end of the merged log."""
    if not created:
        return ""
    with contextlib.suppress(DockerException, requests.exceptions.RequestException):
        # streamed into a small buffer: 200 "lines" can each be a gigabyte without a newline
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        log = LogBuffer(limit=STDERR_KEEP_CHARS, head=0)
        for data in created[-1].logs(stdout=False, stderr=True, stream=True, follow=False, tail=200):
            log.append(decoder.decode(data if isinstance(data, bytes) else str(data).encode()))
        log.append(decoder.decode(b"", final=True))
        return log.text()
    return ""


def _stored_log(container: Container) -> str:
    """The engine's stored log of ``container``, read as a stream into a bounded LogBuffer."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    log = LogBuffer()
    for data in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        log.append(decoder.decode(data if isinstance(data, bytes) else str(data).encode()))
    log.append(decoder.decode(b"", final=True))
    return log.text()


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
                output = _stored_log(created[-1])
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
