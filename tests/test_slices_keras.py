"""Slices with a real Keras script and the adapter: it stops at KT_DEADLINE, and a run that is
killed keeps the epochs it finished, on both backends.

The script is tests/zoo/slow_epochs.py, unmodified: a plain ``fit(epochs=5)`` whose epochs take
about half a second; the adapter drives it to the attempt's epochs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TrainingImage
from keeptraining.state import ledger
from keeptraining.state.ledger import BELOW, SLICED

ZOO = Path(__file__).resolve().parent / "zoo"
SCRIPT = "slow_epochs.py"
STATE = ".keeptraining"


def zoo_repo(root: Path, **config: Any) -> Path:
    code = root / "code"
    code.mkdir(parents=True)
    for name in ("zoo_data.py", SCRIPT):
        shutil.copy(ZOO / name, code)
    settings = {
        "code_path": "code",
        "train_command": f"python {SCRIPT}",
        "backend": "local",
        "adapt": "keras",
        "threshold": 0.999,
        "max_attempts": 1,
        **config,
    }
    (root / ".keeptraining.yml").write_text(yaml.safe_dump(settings))
    return root


@pytest.mark.integration
def test_the_adapter_stops_a_plain_script_at_the_deadline_and_the_next_run_goes_on(tmp_path: Path) -> None:
    # The first run may train 8 s, TensorFlow's import included: not enough for 20 epochs of 0.4 s
    # and more. The next run, without a time budget, trains the rest.
    repo = zoo_repo(tmp_path, epochs=20, time_budget=8)
    first = attempt(repo)
    assert "the next epoch would end after this run's deadline" in first
    (record,) = ledger.load(repo / STATE).attempts
    reached = record.epochs_reached
    assert record.outcome == SLICED and reached is not None and 1 <= reached < 20, first
    assert record.slices[0]["stopped"] == "deadline" and record.checkpoint == "model.keras"
    saved = json.loads((repo / STATE / "attempt-001" / "metrics.json").read_text())
    assert (saved["stopped"], saved["epochs"], saved["early_stopped"]) == ("deadline", reached, False)
    assert len(re.findall(r"^Epoch \d+/\d+$", first, flags=re.MULTILINE)) == reached
    config = yaml.safe_load((repo / ".keeptraining.yml").read_text())
    del config["time_budget"]
    (repo / ".keeptraining.yml").write_text(yaml.safe_dump(config))
    second = attempt(repo)
    assert f"resumed model.keras at epoch {reached}" in second
    epochs = re.findall(r"^Epoch (\d+)/\d+$", second, flags=re.MULTILINE)
    assert epochs == [str(e) for e in range(reached + 1, 21)], "Keras numbers the epochs on"
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 20, 20)
    assert len(record.history) == 20 and record.checkpoint == "slice-2/model.keras"
    # The optimizer went on too: as many steps per epoch in the second run as over the whole attempt.
    steps = record.adapter["optimizer_iterations"]
    assert steps["end"] * (20 - reached) == (steps["end"] - steps["start"]) * 20


def attempt(repo: Path) -> str:
    """One `keeptraining attempt` process: its output, after checking that it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def sigterm_after_epoch(repo: Path, epoch: int, *args: str) -> tuple[int, str]:
    """`keeptraining attempt`, cancelled (SIGTERM) as epoch ``epoch + 1`` begins."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # Keras prints `Epoch 3/5` once epoch 2 has ended (and was saved)
        seen.append(line)
        if re.fullmatch(rf"Epoch {epoch + 1}/\d+", line.strip()):
            break
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120), "".join(seen) + (proc.stdout.read() if proc.stdout else "")


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_cancelled_run_keeps_its_last_finished_epoch_for_the_next_run(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    extra: dict[str, Any] = {}
    if backend == "docker":
        image: TrainingImage = request.getfixturevalue("training_image")
        extra = {"backend": "docker", "image": image.tag}
    repo = zoo_repo(tmp_path, epochs=8, **extra)
    code, out = sigterm_after_epoch(repo, 2)
    assert code == 130, out
    (record,) = ledger.load(repo / STATE).attempts
    assert record.outcome == SLICED and record.slices[0]["stopped"] == "interrupted", out
    reached = record.epochs_reached
    assert reached is not None and reached >= 2 and record.checkpoint == "model.keras"
    assert (repo / STATE / "attempt-001" / "model.keras").is_file()
    output = attempt(repo)
    assert f"resumed model.keras at epoch {reached}" in output
    epochs = re.findall(r"^Epoch (\d+)/\d+$", output, flags=re.MULTILINE)
    assert epochs == [str(e) for e in range(reached + 1, 9)], "the next run trains only what was left"
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 8, 8)
    assert record.checkpoint == "slice-2/model.keras"
