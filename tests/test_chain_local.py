"""The whole engine on real processes with the local backend and a fake training script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fakes import fake_repo
from keeptraining.cli import main
from keeptraining.engine import chain
from keeptraining.state import ledger

pytestmark = pytest.mark.integration


def run_cli(repo: Path, *args: str) -> int:
    return main([args[0], "--repo", str(repo), *args[1:]])


def records(repo: Path) -> list[ledger.Attempt]:
    return ledger.load(repo / ".keeptraining").attempts


def comparable(repo: Path) -> list[dict[str, Any]]:
    """Ledger records without what differs run to run (timings, dates)."""
    data = json.loads((repo / ".keeptraining" / "ledger.json").read_text())
    skip = {"duration_s", "train_s", "started_at", "minutes"}
    return [{k: v for k, v in a.items() if k not in skip} for a in data["attempts"]]


def test_run_resumes_until_the_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "run", "--threshold", "0.9") == 0
    attempts = records(repo)
    assert [a.epochs for a in attempts] == [10, 20, 30, 40]
    assert [a.initial_epoch for a in attempts] == [0, 10, 20, 30]
    assert [a.epochs_trained for a in attempts] == [10, 10, 10, 5]  # the last stops early at epoch 35
    assert [a.outcome for a in attempts] == ["below", "below", "below", "reached"]
    assert attempts[1].resumed_from == "attempt-001/model.keras"
    assert attempts[3].epochs_reached == 35 and attempts[3].metric is not None
    assert attempts[3].metric >= 0.9
    out = capsys.readouterr().out
    assert "Attempt 4: accuracy 0.90" in out
    assert "Threshold reached" in out


def test_resume_false_retrains_from_scratch(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, "resume: false\n")
    assert run_cli(repo, "run") == 0
    attempts = records(repo)
    assert [a.initial_epoch for a in attempts] == [0, 0, 0, 0]
    assert [a.epochs_trained for a in attempts] == [10, 20, 30, 35]
    assert all(a.resumed_from is None for a in attempts)


def test_unreachable_threshold_stops_at_max_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path)
    # the projection would stop it sooner (test_hopeless_chain_stops_on_its_projection)
    assert (
        run_cli(repo, "run", "--threshold", "0.999", "--max-attempts", "3", "--stop-when-hopeless", "false")
        == 3
    )
    attempts = records(repo)
    assert len(attempts) == 3 and all(a.outcome == "below" for a in attempts)
    out = capsys.readouterr().out
    assert "not reached after 3 attempts" in out
    assert "attempt 3" in out


def test_hopeless_chain_stops_on_its_projection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fake script's curve, 1 - 0.6·0.95^epoch, reaches 0.972 at 60 epochs: never 0.999 within a
    budget of 6 attempts. The chain ends with exit 3 and says where it was heading; the ledger and the
    mail keep it."""
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "run", "--threshold", "0.999", "--max-attempts", "6") == 3
    attempts = records(repo)
    assert len(attempts) < 6 and all(a.outcome == "below" for a in attempts)
    last = attempts[-1]
    assert last.projection["hopeless"] is True and last.projection["at_epochs"] == 60
    assert last.projection["projected"] == pytest.approx(1 - 0.6 * 0.95**60, abs=2e-3)
    assert all(a.minutes is not None and a.minutes > 0 and a.minutes_from == "attempt" for a in attempts)
    assert {a.runner_kind for a in attempts} == {"local"}
    out = capsys.readouterr().out
    assert f"Threshold not reached after {len(attempts)} attempts, stopped on the projection" in out
    assert "at 60 epochs (optimistic bound" in out
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    text = mail.read_text(encoding="utf-8")
    assert "stopped on the projection" in text and "runner minutes" in text


def test_crash_is_recorded_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_MODE", "crash")
    assert run_cli(repo, "run") == 1
    (attempt,) = records(repo)
    assert attempt.outcome == "failed" and attempt.error is not None
    assert "exited with code 3" in attempt.error
    captured = capsys.readouterr()
    assert "Training failed" in captured.err and "exited with code 3" in captured.err


def test_hang_past_timeout_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_MODE", "hang")
    start = time.monotonic()
    assert run_cli(repo, "run", "--timeout", "2") == 1
    assert time.monotonic() - start < 30
    (attempt,) = records(repo)
    assert attempt.outcome == "failed" and "timeout of 2 s" in (attempt.error or "")
    assert "Training timed out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("nometric", "reported no accuracy"),
        ("percent", "looks like a percentage"),
        ("nan", "is nan"),
        ("badjson", "is not valid JSON"),
    ],
)
def test_bad_metric_fails_the_attempt_and_keeps_the_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    expected: str,
) -> None:
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_MODE", mode)
    assert run_cli(repo, "run") == 1
    assert expected in capsys.readouterr().err
    assert (repo / ".keeptraining" / "attempt-001" / "model.keras").exists()
    assert records(repo)[0].outcome == "failed"


def test_stdout_metric_is_read_the_seed_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = fake_repo(tmp_path)
    monkeypatch.setenv("FAKE_MODE", "stdout")
    assert run_cli(repo, "run", "--threshold", "0.6", "--max-attempts", "1") == 0
    assert records(repo)[0].metric == pytest.approx(0.6019, abs=1e-4)  # stopped early at epoch 8


def test_separate_attempt_processes_equal_one_run(tmp_path: Path) -> None:
    looped = fake_repo(tmp_path / "looped")
    # two attempts each way: the projection would end the looped chain after one (20 epochs cannot reach 0.9)
    assert run_cli(looped, "run", "--max-attempts", "2", "--stop-when-hopeless", "false") == 3
    stepped = fake_repo(tmp_path / "stepped")
    env = {**os.environ, "PYTHONPATH": ""}
    for _ in range(2):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "keeptraining",
                "attempt",
                "--repo",
                str(stepped),
                "--max-attempts",
                "2",
                "--stop-when-hopeless",
                "false",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
    assert comparable(stepped) == comparable(looped)


def test_missing_checkpoint_falls_back_to_fresh_training_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "attempt") == 0
    (repo / ".keeptraining" / "attempt-001" / "model.keras").unlink()
    assert run_cli(repo, "attempt") == 0
    second = records(repo)[1]
    assert (second.initial_epoch, second.resumed_from, second.epochs_trained) == (0, None, 20)
    assert "warning: Checkpoint missing: The checkpoint of attempt 1 is missing" in capsys.readouterr().err


def test_run_again_archives_the_previous_chain(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "run", "--max-attempts", "1") == 3
    assert run_cli(repo, "run", "--max-attempts", "1") == 3
    (archived,) = (repo / ".keeptraining" / "previous").iterdir()
    assert (archived / "ledger.json").exists() and (archived / "attempt-001").is_dir()
    assert len(records(repo)) == 1


def test_attempt_already_recorded_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "attempt") == 0
    assert run_cli(repo, "attempt", "--attempt", "1") == 4
    assert "already recorded" in capsys.readouterr().err
    assert len(records(repo)) == 1


def test_sigterm_stops_training_and_keeps_the_ledger(tmp_path: Path) -> None:
    """A cancelled workflow run: SIGTERM to `keeptraining attempt` while the script trains."""
    repo = fake_repo(tmp_path)
    env = {**os.environ, "FAKE_MODE": "hang", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the training script runs
        if line.startswith("fake: epochs"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 130, rest
    assert "interrupted" in rest.lower()
    (attempt,) = records(repo)
    assert attempt.outcome == "failed" and "interrupted" in (attempt.error or "")
    assert running_in(repo / "ml") == [], "the training process must not outlive the cancellation"


def running_in(folder: Path) -> list[int]:
    """Pids of processes whose working directory is ``folder``."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                if Path(os.readlink(proc_dir / "cwd")) == folder.resolve():
                    pids.append(int(proc_dir.name))
            except OSError:
                continue
    return pids


def test_corrupt_checkpoint_is_never_claimed_as_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "attempt") == 0
    (repo / ".keeptraining" / "attempt-001" / "model.keras").write_text("\x00garbage")
    assert run_cli(repo, "attempt") == 0
    second = records(repo)[1]
    assert (second.initial_epoch, second.resumed_from, second.epochs_trained) == (0, None, 20)
    assert "did not resume attempt 1's checkpoint" in capsys.readouterr().err


def test_run_falls_back_to_local_only_when_backend_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    repo = fake_repo(tmp_path / "repo")
    (repo / ".keeptraining.yml").write_text("code_path: ml\ntrain_command: python fake_train.py\n")
    assert run_cli(repo, "run", "--max-attempts", "1") == 3
    assert "No Docker engine answers and `backend` is unset" in capsys.readouterr().out
    assert records(repo)[0].params["backend"] == "local"
    assert run_cli(repo, "run", "--max-attempts", "1", "--backend", "docker") == 1
    err = capsys.readouterr().err
    assert "backend: local" in err and "Start the Docker engine" in err and "scripts/" not in err
    assert run_cli(repo, "attempt", "--attempt", "1") == 1  # attempt never falls back on its own


def test_continue_retries_a_failed_attempt_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "attempt") == 0
    monkeypatch.setenv("FAKE_MODE", "crash")
    assert run_cli(repo, "attempt") == 1
    monkeypatch.delenv("FAKE_MODE")
    assert run_cli(repo, "run", "--continue") == 0
    attempts = records(repo)
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert attempts[1].outcome == "below" and attempts[1].initial_epoch == 10
    assert run_cli(repo, "run", "--continue") == 0  # already ended: nothing more is trained
    assert len(records(repo)) == 4


def test_prune_keeps_only_the_last_and_the_best_checkpoint(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, "threshold: 0.999\nmax_attempts: 3\nstop_when_hopeless: false\n")
    assert run_cli(repo, "run") == 3
    state = repo / ".keeptraining"
    loaded = ledger.load(state)
    loaded.attempts[0].metric = 0.9999  # make attempt 1 the best one
    removed = chain.prune_checkpoints(state, loaded)
    assert removed == [state / "attempt-002" / "model.keras"]
    assert (state / "attempt-001" / "model.keras").exists()
    assert (state / "attempt-003" / "model.keras").exists()
    assert (state / "attempt-002" / "metrics.json").exists()


def test_prune_never_deletes_through_a_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint ``sub/victim.txt`` whose ``sub`` links out of the state folder is never deleted."""
    repo = fake_repo(tmp_path / "repo", "threshold: 0.999\nmax_attempts: 3\nstop_when_hopeless: false\n")
    assert run_cli(repo, "run") == 3
    state = repo / ".keeptraining"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("host file")
    (state / "attempt-001" / "sub").symlink_to(outside)
    hostile = ledger.load(state)
    hostile.attempts[0].checkpoint = "sub/victim.txt"  # as a tampered ledger would say
    assert chain.prune_checkpoints(state, hostile) == [state / "attempt-002" / "model.keras"]
    assert (outside / "victim.txt").read_text() == "host file"
    assert "Attempt 1's checkpoint was not pruned" in capsys.readouterr().err
