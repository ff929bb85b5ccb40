"""The training contract: what every backend is given and what it gives back.

A backend runs ``TrainRequest.command`` with the code folder as the working
directory and the ``KT_*`` environment of DESIGN.md §1 (``start_env``, which works out
``KT_DEADLINE`` as the training starts). It adds the two path variables itself
(``KT_OUTPUT_DIR``, ``KT_RESUME_FROM``) because only it knows how host paths look
from inside the training process.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from keeptraining.contract.deadline import Budget

LOG_TAIL_LINES = 60
ERROR_TAIL_LINES = 20
LOG_FILE = "train.log"  # the whole training log, in the attempt's output folder
MAX_LOG_BYTES = 64 * 1024 * 1024  # past this, train.log says it was cut (the tail stays in memory)
MAX_LOG_CHARS = 64 * 1024 * 1024  # the log kept in memory (TrainResult.output): its head and its tail
LOG_HEAD_CHARS = 1024 * 1024  # of which the start (what the script said first)
_PIECE_CHARS = 64 * 1024
MAX_LINE_CHARS = 1024 * 1024  # a longer "line" (output without a newline) is passed on in pieces


@dataclass(frozen=True)
class TrainRequest:
    code_dir: Path  # absolute; the working directory of the command
    command: list[str]  # argv, already split; never run through a shell
    output_dir: Path  # absolute, writable; metrics.json and the checkpoint go here
    env: dict[str, str]  # the KT_* contract, without KT_OUTPUT_DIR / KT_RESUME_FROM
    timeout: float  # seconds this run may train before it is stopped
    resume_from: Path | None = None  # absolute host path of the checkpoint, or None
    memory_limit: str | None = None  # docker only: the container's memory limit, e.g. "4g"
    adapter_dir: Path | None = None  # the Keras adapter's folder, put on PYTHONPATH (None: adapt none)
    on_line: Callable[[str], None] | None = None  # live log sink, one line at a time
    # Resources (all optional; parallel.py sets them for the trials of a round):
    cpus: float | None = None  # docker: the container's CPUs (NanoCpus)
    cpu_set: tuple[int, ...] | None = None  # local: the cores the training process is pinned to
    gpus: str | None = None  # docker: "all" or a count, as an NVIDIA device request
    rss_limit: int | None = None  # local: bytes of resident memory the process tree may use
    cancel: threading.Event | None = None  # set: stop the training at once (a round's Ctrl-C)
    network: str = "none"  # docker only: none | default | host | a network's name (network.py)
    cache_dir: Path | None = None  # the data cache's data folder (data_cache.py); None: no cache
    budget: Budget | None = None  # this run's time limits: KT_DEADLINE, worked out as training starts
    state_dir: Path | None = None  # local: where a running training is recorded (state/orphans.py)

    def start_env(self) -> dict[str, str]:
        """The contract's variables for training that starts now: ``env`` plus ``KT_DEADLINE``."""
        return {**self.env, **(self.budget.env() if self.budget is not None else {})}


@dataclass
class TrainResult:
    exit_code: int
    duration: float  # seconds, wall clock, from start of the process/container
    output: str  # the whole combined stdout/stderr (for the seed-style metric line)
    timed_out: bool = False
    detail: str = ""  # backend-specific remark, e.g. "killed: out of memory"
    stages: dict[str, float] = field(default_factory=dict)  # timings such as image check
    errors: str = ""  # stderr alone, when the backend cannot keep it in order within `output`
    offline: str = ""  # why the training had no network (e.g. "`network: none`"); empty when it had one
    image: str | None = None  # docker: the training image's tag (keeptraining-train:<content hash>)
    image_digest: str | None = None  # docker: its registry digest, else the local image id (sha256:...)

    @property
    def log_tail(self) -> str:
        """The end of the log, plus the end of stderr when it is not already there."""
        last = tail(self.output)
        missing = [
            line
            for line in tail(self.errors, ERROR_TAIL_LINES).splitlines()
            if line.strip() and line not in last.splitlines()
        ]
        return last + ("\n--- last lines on stderr ---\n" + "\n".join(missing) if missing else "")


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(collections.deque(text.splitlines(), maxlen=lines))


def echo_line(line: str) -> None:
    """The default live sink: the training log goes to stdout as it comes."""
    sys.stdout.write(line if line.endswith("\n") else line + "\n")
    sys.stdout.flush()


class LineSplitter:
    """Text as it streams in, cut into lines in linear time (each character is looked at once),
    however long a line without a newline grows: past ``max_line`` characters it is passed on in
    pieces, so no line is held whole in memory."""

    def __init__(self, max_line: int = MAX_LINE_CHARS) -> None:
        self.max_line = max_line
        self._parts: list[str] = []
        self._size = 0

    def feed(self, text: str) -> list[str]:
        """The lines that ``text`` completes, without their newline."""
        lines: list[str] = []
        start = 0
        while True:
            end = text.find("\n", start)
            if end < 0:
                break
            self._add(text[start:end], lines)
            lines.append("".join(self._parts))
            self._parts, self._size = [], 0
            start = end + 1
        self._add(text[start:], lines)
        return lines

    def _add(self, piece: str, lines: list[str]) -> None:
        while piece:
            room = self.max_line - self._size
            self._parts.append(piece[:room])
            self._size += min(room, len(piece))
            piece = piece[room:]
            if self._size >= self.max_line:
                lines.append("".join(self._parts))
                self._parts, self._size = [], 0

    def flush(self) -> list[str]:
        """The last line, when the text did not end with a newline."""
        rest = "".join(self._parts)
        self._parts, self._size = [], 0
        return [rest] if rest else []


class LogBuffer:
    """The training's log as kept in memory: all of it up to ``limit`` characters, else its first
    ``head`` characters and its last ``limit - head`` (where the result line and the last epochs
    are), with a line that says how much was left out in between."""

    def __init__(self, limit: int = MAX_LOG_CHARS, head: int = LOG_HEAD_CHARS) -> None:
        self.limit, self.head_limit = limit, head
        self._head: list[str] = []
        self._head_size = 0
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self._pending: list[str] = []
        self._pending_size = 0
        self.dropped = 0

    def append(self, text: str) -> None:
        if self._head_size < self.head_limit:
            take = text[: self.head_limit - self._head_size]
            self._head.append(take)
            self._head_size += len(take)
            text = text[len(take) :]
        if text:  # small pieces are gathered first: a deque of one-character lines would cost more
            self._pending.append(text)  # than the characters themselves
            self._pending_size += len(text)
            if self._pending_size >= _PIECE_CHARS:
                self._push("".join(self._pending))
                self._pending, self._pending_size = [], 0

    def _push(self, text: str) -> None:
        room = self.limit - self.head_limit
        self._tail.append(text)
        self._tail_size += len(text)
        while self._tail_size > room:
            first = self._tail[0]
            over = self._tail_size - room
            if len(first) <= over:
                self._tail.popleft()
                self._tail_size -= len(first)
                self.dropped += len(first)
            else:
                self._tail[0] = first[over:]
                self._tail_size -= over
                self.dropped += over

    def text(self) -> str:
        if self._pending:
            self._push("".join(self._pending))
            self._pending, self._pending_size = [], 0
        gap = f"\n[... {self.dropped} characters of the log left out here ...]\n" if self.dropped else ""
        return "".join(self._head) + gap + "".join(self._tail)


class LogFile:
    """The attempt's training log, written to ``train.log`` in its output folder as it streams.

    Opened before the script starts, never over an existing file and never through a
    link. The live echo (the terminal, a pipe such as ``| head``) may fail at any
    time: the log file and the training go on, the echo is dropped.
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.written = 0
        self.echo_error: BaseException | None = None

    @classmethod
    def create(cls, folder: Path) -> LogFile:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC
        try:
            return cls(os.open(folder / LOG_FILE, flags, 0o644))
        except OSError:  # the log in memory (tail, metric line) is what counts; the file is a copy
            return cls(None)

    def write(self, line: str) -> None:
        if self.fd is None or self.written > MAX_LOG_BYTES:
            return
        data = (line if line.endswith("\n") else line + "\n").encode("utf-8", "replace")
        if self.written + len(data) > MAX_LOG_BYTES:
            data = f"[{LOG_FILE} cut at {MAX_LOG_BYTES} bytes]\n".encode()
        try:
            os.write(self.fd, data)
            self.written += len(data)
        except OSError:
            self.close()

    def sink(self, echo: Callable[[str], None] | None) -> Callable[[str], None]:
        """A live-log sink: the file first, then ``echo`` until it fails once."""

        def on_line(line: str) -> None:
            self.write(line)
            if echo is None or self.echo_error is not None:
                return
            try:
                echo(line)
            except (OSError, ValueError) as exc:  # BrokenPipeError, a closed stdout
                self.echo_error = exc

        return on_line

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
