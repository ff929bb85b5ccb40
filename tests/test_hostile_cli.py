"""Hostile inputs through the real CLI (issue 16): a message and an exit code, never a traceback,
a hang, a host file touched, or a lost record.

Real processes throughout: ``keeptraining`` in a subprocess where a hang, a closed pipe, a
second process or a signal is the point; the fake training script's hostile modes
(tests/fixtures/fake_train.py) for what a training script can do to its output folder;
tmpfs mounts for a full disk and a read-only state folder (the test machines run as root).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import fake_repo
from keeptraining.state import ledger

pytestmark = pytest.mark.integration

# A frame of keeptraining's own code (a training script's traceback is its own business).
TRACEBACK = re.compile(r'File "[^"]*/keeptraining/[a-z_]+\.py"')


def keeptraining(
    repo: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "KT_", "FAKE_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "keeptraining", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        check=False,
    )


def start(repo: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "KT_", "FAKE_"))}
    full.update({"PYTHONUNBUFFERED": "1", **env})
    return subprocess.Popen(
        [sys.executable, "-m", "keeptraining", *args, "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full,
    )


def wait_for(proc: subprocess.Popen[str], prefix: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"no line starting with {prefix!r}")


def no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    text = result.stdout + result.stderr
    assert not TRACEBACK.search(text), text
    return text


@pytest.fixture
def host_file(tmp_path: Path) -> Iterator[Path]:
    """A file outside every state folder, standing for the host's id_rsa."""
    folder = tmp_path / "host"
    folder.mkdir()
    path = folder / "id_rsa"
    path.write_text("host secret")
    yield path
    assert path.read_text() == "host secret", "a host file was changed"


# --------------------------------------------------------------------------- what the script writes


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fifo", "metrics.json 'metrics.json' is a FIFO"),
        ("metricsdir", "metrics.json 'metrics.json' is a folder"),
        ("deepjson", "metrics.json nests"),
        ("linkckpt", "is a symbolic link"),
        ("linkdir", "'sub' on the way is not a folder"),
        ("bigepochs", "epochs = 1000000000000000000 is more than the 10 epochs"),
        ("longhistory", "the history has 400000 values, but this attempt trained at most 10 epochs"),
    ],
)
def test_hostile_output_folder_fails_the_attempt_clearly(
    tmp_path: Path, host_file: Path, mode: str, expected: str
) -> None:
    repo = fake_repo(tmp_path / "repo")
    result = keeptraining(repo, "attempt", timeout=60, FAKE_MODE=mode, FAKE_TARGET=str(host_file))
    text = no_traceback(result)
    assert result.returncode == 1, text
    assert expected in text
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert record.outcome == "failed" and expected in (record.error or "")
    assert record.checkpoint is None
    # The retry neither reads, mounts nor deletes through the link.
    assert keeptraining(repo, "attempt", FAKE_TARGET=str(host_file)).returncode == 0


def test_linked_checkpoint_in_a_restored_ledger_is_refused_and_nothing_is_deleted(
    tmp_path: Path, host_file: Path
) -> None:
    repo = fake_repo(tmp_path / "repo", "threshold: 0.999\n")
    assert keeptraining(repo, "attempt").returncode == 0
    checkpoint = repo / ".keeptraining" / "attempt-001" / "model.keras"
    checkpoint.unlink()
    checkpoint.symlink_to(host_file)
    before = (repo / ".keeptraining" / "ledger.json").read_bytes()
    for args in (["attempt"], ["run", "--continue"]):
        result = keeptraining(repo, *args)
        assert result.returncode == 4 and "is a symbolic link" in no_traceback(result)
    assert (repo / ".keeptraining" / "ledger.json").read_bytes() == before
    assert checkpoint.is_symlink()


# --------------------------------------------------------------------------- the state folder


@pytest.mark.parametrize("kind", ["file", "dangling", "loop"])
def test_state_folder_that_is_not_a_folder(tmp_path: Path, kind: str) -> None:
    repo = fake_repo(tmp_path / "repo")
    state = repo / ".keeptraining"
    if kind == "file":
        state.write_text("x")
    elif kind == "dangling":
        state.symlink_to(tmp_path / "nowhere")
    else:
        state.symlink_to(state)
    for command in ("run", "attempt", "validate"):
        result = keeptraining(repo, command)
        assert result.returncode == 4 and "not a folder" in no_traceback(result), command


def test_attempt_folder_that_is_a_file_is_moved_aside(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    (repo / ".keeptraining").mkdir()
    (repo / ".keeptraining" / "attempt-001").write_text("something else")
    result = keeptraining(repo, "attempt")
    assert result.returncode == 0 and "moved to" in no_traceback(result)
    (aside,) = (repo / ".keeptraining" / "unrecorded").iterdir()
    assert aside.read_text() == "something else"


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "mnt"
    where.mkdir()
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_state_folder(tmp_path: Path, mount: Path) -> None:
    repo = fake_repo(tmp_path / "repo", f"state_dir: {mount}\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)], check=True)
    for command in ("run", "attempt"):
        result = keeptraining(repo, command)
        assert result.returncode == 4 and "is not writable" in no_traceback(result), command


def test_full_disk_keeps_the_ledger_and_never_deletes_the_unrecorded_attempt(
    tmp_path: Path, mount: Path
) -> None:
    repo = fake_repo(tmp_path / "repo", f"state_dir: {mount}\nthreshold: 0.999\nstop_when_hopeless: false\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], check=True)
    assert keeptraining(repo, "attempt").returncode == 0
    before = (mount / "ledger.json").read_bytes()
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while os.write(fd, b"x" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    result = keeptraining(repo, "attempt")
    text = no_traceback(result)
    assert result.returncode == 4, text
    assert "Cannot write the chain ledger" in text and "previous ledger is kept" in text
    assert (mount / "ledger.json").read_bytes() == before
    (mount / "filler").unlink()
    (mount / "attempt-002" / "model.keras").write_text('{"epochs": 20}')  # what the attempt had left
    result = keeptraining(repo, "run", "--continue", "--max-attempts", "2")
    assert "moved to" in no_traceback(result)
    (aside,) = (mount / "unrecorded").iterdir()
    assert (aside / "model.keras").read_text() == '{"epochs": 20}', "an unrecorded checkpoint stays"
    assert [a.attempt for a in ledger.load(mount).attempts] == [1, 2]


# --------------------------------------------------------------------------- two processes, a closed pipe


def test_second_run_on_one_state_folder_stops_and_archives_nothing(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    first = start(repo, "run", FAKE_MODE="hang")
    try:
        wait_for(first, "fake: epochs")
        for args in (["run"], ["attempt"]):
            second = keeptraining(repo, *args)
            text = no_traceback(second)
            assert second.returncode == 4, text
            assert f"Another keeptraining process (pid {first.pid}) is using the state folder" in text
        assert not (repo / ".keeptraining" / "previous").exists(), "the live chain was not archived"
        assert (repo / ".keeptraining" / "attempt-001").is_dir()
    finally:
        first.send_signal(signal.SIGTERM)
        rest = first.communicate(timeout=30)[0]
    assert first.returncode == 130, rest
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert "interrupted" in (record.error or "")
    assert keeptraining(repo, "run", "--max-attempts", "1").returncode == 3, "the lock went with the process"


@pytest.mark.parametrize(("mode", "code"), [("spam", 3), ("spamledger", 4)])
def test_a_reader_that_stops_reading_costs_neither_the_training_nor_the_log(
    tmp_path: Path, mode: str, code: int
) -> None:
    """``keeptraining run 2>&1 | head -3``: the pipe closes, the run goes on to its end (and its
    final error, on stderr, costs nothing either)."""
    repo = fake_repo(tmp_path / "repo")
    proc = start(repo, "run", "--max-attempts", "1", FAKE_MODE=mode)
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what head does after three lines
    assert proc.wait(timeout=120) == code, "the error (exit 4) is reported, if to no one, not a crash"
    assert len(head) == 3
    if mode == "spam":
        (record,) = ledger.load(repo / ".keeptraining").attempts
        assert record.outcome == "below"
    log = (repo / ".keeptraining" / "attempt-001" / "train.log").read_text()
    assert "log line 9999" in log, "the whole log is kept in the attempt folder"
