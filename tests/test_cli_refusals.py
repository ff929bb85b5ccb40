"""What the command line refuses before anything trains: a code folder outside the repository, an
attempt past max_attempts, a train command that cannot run, a bad configuration (``validate``).

Fast tier: each case ends before a training process starts (tests/test_chain_local.py trains).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import fake_repo
from keeptraining.cli import main


def run_cli(repo: Path, *args: str) -> int:
    return main([args[0], "--repo", str(repo), *args[1:]])


@pytest.mark.parametrize("code_path", ["../..", "/etc", "escape"])
def test_code_path_outside_the_repository_is_refused(
    tmp_path: Path, code_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path / "repo")
    (repo / "escape").symlink_to(tmp_path)
    assert run_cli(repo, "run", "--code-path", code_path) == 2
    assert "outside the repository" in capsys.readouterr().err


def test_attempt_beyond_max_attempts_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "attempt", "--attempt", "4", "--max-attempts", "3") == 2
    assert "beyond max_attempts = 3" in capsys.readouterr().err
    assert not (repo / ".keeptraining" / "ledger.json").exists()


def test_validate_prints_effective_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path, "threshold: 0.8\n")
    assert run_cli(repo, "validate", "--epochs", "5") == 0
    out = capsys.readouterr().out
    assert "threshold: 0.8" in out and ".keeptraining.yml" in out
    assert "epochs: 5  (command line)" in out


def test_validate_rejects_bad_config_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_repo(tmp_path, "threshold: 90\n")
    assert run_cli(repo, "validate") == 2
    assert "write 0.9 for 90 %" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("no-such-trainer --fast", "train_command 'no-such-trainer' was not found"),
        ("python 'unbalanced", "cannot be split"),
    ],
)
def test_bad_train_command_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, expected: str
) -> None:
    repo = fake_repo(tmp_path)
    assert run_cli(repo, "run", "--train-command", command) != 0
    assert expected in capsys.readouterr().err
