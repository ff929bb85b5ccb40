"""Slices with a real Keras script and the adapter: it stops at KT_DEADLINE, and a run that is
killed keeps the epochs it finished, on both backends.

The script is tests/zoo/slow_epochs.py, unmodified: a plain ``fit(epochs=5)`` whose epochs take
about half a second; the adapter drives it to the attempt's epochs.
"""

from __future__ import annotations

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
from keeptraining import ledger
from keeptraining.cli import main
from keeptraining.ledger import BELOW, SLICED

ZOO = Path(__file__).resolve().parent / "zoo"
SCRIPT = "slow_epochs.py"
STATE = ".keeptraining"


def zoo_repo(root: Path, **config: Any) -> Path:
    code = root / "code"
    code.mkdir(parents=True)
    for name in ("zoo_data.py", SCRIPT):
        shutil.copy(ZOO / name, code)
    settings = {"code_path": "code", "train_command": f"python {SCRIPT}", "backend": "local",
                "adapt": "keras", "threshold": 0.999, "max_attempts": 1, **config}
    (root / ".keeptraining.yml").write_text(yaml.safe_dump(settings))
    return root


@pytest.mark.integration
def test_the_adapter_stops_a_plain_script_at_the_deadline_and_the_next_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A run may train 6 s, TensorFlow's import (~4 s) included; each run trains at least one epoch.
    repo = zoo_repo(tmp_path, epochs=6, time_budget=6)
    assert main(["run", "--repo", str(repo)]) == 3  # below 0.999 after its one attempt
    out = capsys.readouterr().out
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 6, 6)
    assert record.slices and all(s["stopped"] == "deadline" for s in record.slices)
    assert "the next epoch would end after this run's deadline" in out
    first = (repo / STATE / "attempt-001" / "metrics.json").read_text()
    assert '"stopped": "deadline"' in first
    # Each later run resumed the previous one where it stopped: Keras numbers its epochs on.
    runs = re.split(r"^== Attempt 1/1: run \d+", out, flags=re.MULTILINE)[1:]
    assert len(runs) == len(record.slices)
    for entry, text in zip(record.slices, runs, strict=True):
        assert re.search(rf"^Epoch {entry['epochs_reached'] + 1}/6$", text, flags=re.MULTILINE)
        assert f"resumed model.keras at epoch {entry['epochs_reached']}" in text
    # The optimizer went on too: as many steps per epoch in the last run as over the whole attempt.
    steps = record.adapter["optimizer_iterations"]
    last_start = record.slices[-1]["epochs_reached"]
    assert steps["end"] * (6 - last_start) == (steps["end"] - steps["start"]) * 6
    assert len(record.history) == 6


def sigterm_after_epoch(repo: Path, epoch: int, *args: str) -> tuple[int, str]:
    """`keeptraining attempt`, cancelled (SIGTERM) as epoch ``epoch + 1`` begins."""
    proc = subprocess.Popen([sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
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
    done = subprocess.run([sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resumed model.keras at epoch {reached}" in done.stdout
    epochs = re.findall(r"^Epoch (\d+)/\d+$", done.stdout, flags=re.MULTILINE)
    assert epochs == [str(e) for e in range(reached + 1, 9)], "the next run trains only what was left"
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 8, 8)
    assert record.checkpoint == "slice-2/model.keras"
