"""The local backend: the training contract as a subprocess of this Python environment.

``python``/``python3`` at the start of the command means *this* interpreter
(``sys.executable``), so the local backend trains with the packages installed
beside keeptraining. The process gets its own process group so a timeout or a
Ctrl-C stops the whole tree, not just the first process.

A trial of a parallel round (parallel.py) may also be pinned to its share of the
cores (``cpu_set``), held to a resident-memory limit (``rss_limit``, the process
group's resident memory checked every half second: the local equivalent of a
container's memory limit, without needing cgroups), and stopped when the round is
interrupted (``cancel``).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from keeptraining import adapter
from keeptraining.backends.base import LineSplitter, LogBuffer, TrainRequest, TrainResult
from keeptraining.contract import env as kt_env
from keeptraining.errors import TrainingError
from keeptraining.state import data_cache, orphans

_GRACE_S = 5.0  # after SIGTERM, how long the script may take to save and exit
_READ_CHUNK = 64 * 1024
_WATCH_S = 0.5  # how often a watched training (memory limit, a round's cancel) is checked
#: Credentials keeptraining itself uses (dispatch, mail), never handed on to the training script;
#: INPUT_*: the action's inputs as some runners (act) export them. Compared with - read as _.
WITHHELD_ENV = frozenset(
    {
        "KT_GITHUB_TOKEN",
        "GITHUB_TOKEN",
        "INPUT_GITHUB_TOKEN",
        "KT_SMTP_PASSWORD",
        "INPUT_SMTP_PASSWORD",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "KT_REGISTRY_USERNAME",
        "KT_REGISTRY_PASSWORD",
        "INPUT_REGISTRY_USERNAME",
        "INPUT_REGISTRY_PASSWORD",
    }
)


def run(request: TrainRequest) -> TrainResult:
    argv = list(request.command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    inherited = {k: v for k, v in os.environ.items() if k.upper().replace("-", "_") not in WITHHELD_ENV}
    env = {
        **inherited,
        **request.start_env(),
        **kt_env.paths(str(request.output_dir), str(request.resume_from) if request.resume_from else ""),
        "PYTHONUNBUFFERED": "1",
    }
    if request.adapter_dir is not None:  # Python imports the adapter's sitecustomize at start-up
        env["PYTHONPATH"] = adapter.pythonpath(
            str(request.adapter_dir), inherited.get("PYTHONPATH"), os.pathsep
        )
    if request.cache_dir is not None:  # downloads go to the data cache, unless the environment says where
        env.update(data_cache.library_env(str(request.cache_dir), lambda name: bool(inherited.get(name))))
    mark = env[orphans.ENV] = orphans.new_mark()  # what outlives the training is found by it
    recorded = orphans.record(request.state_dir, mark) if request.state_dir is not None else None
    try:
        return _run(argv, env, request, mark)
    finally:
        orphans.forget(recorded)


def _run(argv: list[str], env: dict[str, str], request: TrainRequest, mark: str) -> TrainResult:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=request.code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise TrainingError(
            f"train_command {argv[0]!r} was not found.",
            hint="Check train_command (e.g. `python nn.py`) and that the program is "
            "installed for the local backend.",
        ) from None
    except PermissionError:
        raise TrainingError(
            f"train_command {argv[0]!r} is not executable.",
            hint="Make it executable or start it through its interpreter.",
        ) from None
    except OSError as exc:  # E2BIG: an environment too large to start a process with, and the like
        raise TrainingError(
            f"train_command {argv[0]!r} could not be started: {exc.strerror or exc}.",
            hint="Check the environment it gets: a very long hyperparameter value or "
            "variable (each at most 128 KiB) cannot be passed to a process.",
        ) from None
    if request.cpu_set and hasattr(os, "sched_setaffinity"):  # inherited by every thread it starts later
        _pin(proc, request.cpu_set)
    log = LogBuffer()
    reader = threading.Thread(target=_pump, args=(proc, request, log), daemon=True)
    reader.start()
    timed_out = False
    detail = ""
    try:
        if request.rss_limit is None and request.cancel is None:
            try:
                proc.wait(timeout=request.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop(proc)
        else:
            timed_out, detail = _watch(proc, request, start)
    except BaseException:  # Ctrl-C or SIGTERM turned into an exception: stop the tree, keep going up
        _stop(proc)
        raise
    finally:
        _stop_left_overs(proc, mark)  # a daemon it forked must not write a result after it ended
        reader.join(timeout=_GRACE_S)
    if timed_out:
        detail = f"stopped after the {request.timeout:g} s timeout"
    return TrainResult(
        exit_code=proc.returncode,
        duration=time.monotonic() - start,
        output=log.text(),
        timed_out=timed_out,
        detail=detail,
    )


def _pin(proc: subprocess.Popen[bytes], cores: tuple[int, ...]) -> None:
    """Pin the training process to ``cores`` (its share of the machine in a round of trials)."""
    usable = set(os.sched_getaffinity(0))
    wanted = {c for c in cores if c in usable} or usable
    try:
        os.sched_setaffinity(proc.pid, wanted)
    except OSError:  # it exited already, or the system refuses: it runs unpinned
        return


def _watch(proc: subprocess.Popen[bytes], request: TrainRequest, start: float) -> tuple[bool, str]:
    """Wait for the process, checking every half second its memory (``rss_limit``) and whether the
    round was cancelled: (timed out, why it was stopped)."""
    deadline = start + request.timeout
    while True:
        try:
            proc.wait(timeout=max(0.0, min(_WATCH_S, deadline - time.monotonic())))
            return False, ""
        except subprocess.TimeoutExpired:
            pass
        if request.cancel is not None and request.cancel.is_set():
            _stop(proc)
            raise KeyboardInterrupt("the round was interrupted")
        if request.rss_limit is not None:
            used = tree_rss(proc.pid)
            if used > request.rss_limit:
                _stop(proc)
                return False, (
                    f"killed: its processes used {used // 2**20} MiB of resident memory, more "
                    f"than the memory limit of {request.rss_limit // 2**20} MiB"
                )
        if time.monotonic() >= deadline:
            _stop(proc)
            return True, ""


def tree_rss(pgid: int) -> int:
    """Resident bytes of every process in the process group ``pgid`` (the training and its children)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()  # after the command name: state ppid pgrp
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry.name}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):  # it exited meanwhile
            continue
    return total


def _pump(proc: subprocess.Popen[bytes], request: TrainRequest, log: LogBuffer) -> None:
    """Read the whole log, whatever the live sink does: a reader that stopped would fill the
    pipe and block the training until the timeout. Read in chunks, never a line at a time: a
    "line" without a newline may be gigabytes long; memory stays within the LogBuffer's cap."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter = LineSplitter()
    sink = request.on_line
    while True:
        data = os.read(fd, _READ_CHUNK)
        text = decoder.decode(data, final=not data)
        log.append(text)
        lines = splitter.feed(text) if data else splitter.feed(text) + splitter.flush()
        if sink is not None:
            for line in lines:
                try:
                    sink(line + "\n")
                except Exception:  # a broken sink costs the live echo, never the log or the training
                    sink = None
                    break
        if not data:
            return


def _stop_left_overs(proc: subprocess.Popen[bytes], mark: str) -> None:
    """Once the training has ended: stop what is left of its process group, and anything else that
    still carries its mark (a daemon that left the group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    orphans.stop(mark, grace=0.0)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not exit in time."""
    for sig, wait in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, _GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
