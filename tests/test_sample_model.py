"""ml_code/nn.py honours the training contract (DESIGN.md §1), run as keeptraining runs it.

Every test starts the real script in a subprocess, with a copy of the code folder as the
working directory and a fresh KT_OUTPUT_DIR; about 20 s in all on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

NN = Path(__file__).resolve().parents[1] / "ml_code" / "nn.py"
HISTORY_KEYS = {"accuracy", "loss", "val_accuracy", "val_loss"}
TIMING_KEYS = {"import_s", "data_s", "build_or_load_s", "fit_s", "evaluate_s", "save_s"}
RESULT_LINE = re.compile(r"^Test accuracy: (\d\.\d{4})$")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    output_dir: Path

    @property
    def metrics(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.output_dir / "metrics.json").read_text())
        return data


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of ml_code with write permission removed, as keeptraining mounts it."""
    folder = tmp_path_factory.mktemp("code")
    shutil.copy(NN, folder / "nn.py")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(stat.S_IRWXU)


def run_nn(code_dir: Path, output_dir: Path, **kt: object) -> Run:
    """nn.py with KT_OUTPUT_DIR and the given KT_* values (KT_EPOCHS=3 -> epochs=3)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KT_")}
    env.update({f"KT_{key.upper()}": str(value) for key, value in kt.items()})
    env["KT_OUTPUT_DIR"] = str(output_dir)
    done = subprocess.run(
        [sys.executable, "nn.py"],
        cwd=code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, output_dir)


def result_line(run: Run) -> float:
    last = run.stdout.strip().splitlines()[-1]
    match = RESULT_LINE.match(last)
    assert match, f"last stdout line is {last!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def fresh(code_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_nn(code_dir, tmp_path_factory.mktemp("fresh"), epochs=3)


def test_fresh_run_writes_metrics_checkpoint_and_result_line(fresh: Run, code_dir: Path) -> None:
    assert fresh.returncode == 0, fresh.stderr
    metrics = fresh.metrics
    assert metrics["metric"] == "accuracy"
    assert (metrics["epochs"], metrics["initial_epoch"]) == (3, 0)
    assert metrics["resumed"] is False and metrics["early_stopped"] is False
    assert metrics["dataset"] == "digits"
    assert set(metrics["history"]) == HISTORY_KEYS
    assert all(len(values) == 3 for values in metrics["history"].values())
    assert metrics["accuracy"] == metrics["history"]["val_accuracy"][-1]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert len(metrics["epoch_seconds"]) == 3
    assert set(metrics["timings"]) >= TIMING_KEYS
    assert (fresh.output_dir / metrics["checkpoint"]).is_file()
    assert sorted(p.name for p in fresh.output_dir.iterdir()) == ["metrics.json", "model.keras"]
    assert result_line(fresh) == round(metrics["accuracy"], 4)
    assert "Configuration:" in fresh.stdout
    assert [p.name for p in code_dir.iterdir()] == ["nn.py"], "wrote into the code folder"


def test_resume_trains_only_the_added_epochs(fresh: Run, code_dir: Path, tmp_path: Path) -> None:
    resumed = run_nn(
        code_dir, tmp_path, epochs=5, initial_epoch=3, resume_from=fresh.output_dir / "model.keras"
    )

    assert resumed.returncode == 0, resumed.stderr
    metrics = resumed.metrics
    assert (metrics["epochs"], metrics["initial_epoch"], metrics["resumed"]) == (5, 3, True)
    assert all(len(values) == 2 for values in metrics["history"].values())
    assert "Epoch 4/5" in resumed.stdout and "Epoch 1/5" not in resumed.stdout
    assert "WARNING" not in resumed.stdout
    # It goes on from the checkpoint's weights: a new model starts near chance (0.1).
    assert metrics["history"]["val_accuracy"][0] > fresh.metrics["accuracy"] - 0.1
    assert result_line(resumed) == round(metrics["accuracy"], 4)


def test_stops_early_once_the_threshold_is_reached(code_dir: Path, tmp_path: Path) -> None:
    run = run_nn(code_dir, tmp_path, epochs=10, threshold=0.3)

    assert run.returncode == 0, run.stderr
    metrics = run.metrics
    accuracy = metrics["history"]["val_accuracy"]
    assert metrics["early_stopped"] is True
    assert metrics["epochs"] == len(accuracy) < 10
    assert accuracy[-1] >= 0.3 > max(accuracy[:-1], default=0.0)
    assert metrics["accuracy"] == accuracy[-1]
    assert (tmp_path / "model.keras").is_file()


def test_missing_checkpoint_warns_and_trains_from_scratch(code_dir: Path, tmp_path: Path) -> None:
    run = run_nn(
        code_dir, tmp_path / "out", epochs=2, initial_epoch=1, resume_from=tmp_path / "gone" / "model.keras"
    )

    assert run.returncode == 0, run.stderr
    assert re.search(r"^WARNING: .*does not exist.*FROM SCRATCH", run.stdout, re.MULTILINE), run.stdout
    metrics = run.metrics
    assert (metrics["epochs"], metrics["initial_epoch"], metrics["resumed"]) == (2, 0, False)
    assert len(metrics["history"]["val_accuracy"]) == 2


@pytest.mark.parametrize(
    ("kt", "message"),
    [
        pytest.param(
            {"hp_batch_size": "abc"}, "KT_HP_BATCH_SIZE='abc' is not a whole number", id="batch-size-text"
        ),
        pytest.param({"hp_batch_size": "0"}, "KT_HP_BATCH_SIZE='0' is too small", id="batch-size-zero"),
        pytest.param(
            {"hp_learning_rate": "-0.1"}, "KT_HP_LEARNING_RATE='-0.1' is out of range", id="lr-negative"
        ),
        pytest.param({"hp_dataset": "imagenet"}, "KT_HP_DATASET='imagenet' is not known", id="dataset"),
        pytest.param({"hp_optimiser": "adam"}, "unknown hyperparameter KT_HP_OPTIMISER", id="unknown-hp"),
        pytest.param({"hp_optimizer": "lbfgs"}, "KT_HP_OPTIMIZER='lbfgs' is not known", id="optimizer"),
        pytest.param(
            {"hp_dropout": "1"},
            "KT_HP_DROPOUT='1' is out of range; expected a number in [0.0, 0.99]",
            id="dropout",
        ),
        pytest.param({"hp_width": "0"}, "KT_HP_WIDTH='0' is too small", id="width"),
        pytest.param(
            {"hp_depth": "4", "epochs": "1"},
            "KT_HP_DEPTH=4 is too deep for the digits images (8x8); expected at most 3",
            id="depth",
        ),
        pytest.param({"threshold": "90"}, "a fraction (0.9, not 90)", id="threshold-percent"),
        pytest.param(
            {"epochs": "5", "initial_epoch": "6"},
            "KT_INITIAL_EPOCH=6 is more than KT_EPOCHS=5",
            id="initial-after-total",
        ),
    ],
)
def test_bad_input_exits_nonzero_with_a_clear_message(
    code_dir: Path, tmp_path: Path, kt: dict[str, str], message: str
) -> None:
    run = run_nn(code_dir, tmp_path, **kt)

    assert run.returncode != 0
    assert message in run.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_architecture_and_optimizer_follow_the_search_hyperparameters(code_dir: Path, tmp_path: Path) -> None:
    """What strategy: search tunes: one 8-filter block, no dropout, Adam; it trains and resumes."""
    hps = {
        "hp_width": "8",
        "hp_depth": "1",
        "hp_dropout": "0",
        "hp_optimizer": "adam",
        "hp_learning_rate": "0.003",
    }
    first = run_nn(code_dir, tmp_path / "1", epochs=2, **hps)
    assert first.returncode == 0, first.stderr
    for line in ("width          8", "depth          1", "dropout        0.0", "optimizer      adam"):
        assert line in first.stdout
    # Adam at 0.003 learns digits far faster than the default SGD at 0.01 (about 0.3 after 2 epochs).
    assert first.metrics["accuracy"] > 0.6
    resumed = run_nn(
        code_dir, tmp_path / "2", epochs=3, initial_epoch=2, resume_from=tmp_path / "1" / "model.keras", **hps
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.metrics["resumed"] is True and "WARNING" not in resumed.stdout
