"""Typical Keras scripts, unmodified, through real local chains: the adapter makes them follow the
contract; with ``adapt: none`` the chain catches them instead of spending its budget.

Every script lives in tests/zoo/ (written for these tests) and trains on scikit-learn's bundled
digits for a few seconds. Assertions come from Keras's own output (``Epoch 11/20``), the ledger,
and the checkpoints themselves (optimizer ``iterations`` read back from each model.keras).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import h5py
import pytest
import yaml

from keeptraining.cli import main
from keeptraining.state import ledger

pytestmark = pytest.mark.integration

ZOO = Path(__file__).resolve().parent / "zoo"
ML_CODE = Path(__file__).resolve().parents[1] / "ml_code"


def zoo_repo(root: Path, script: str, **config: Any) -> Path:
    """A repository whose code folder holds one zoo script (and the zoo's data loader)."""
    code = root / "code"
    code.mkdir(parents=True)
    shutil.copy(ZOO / "zoo_data.py", code)
    shutil.copy(ZOO / script, code)
    settings = {
        "code_path": "code",
        "train_command": f"python {script}",
        "backend": "local",
        "threshold": 0.999,
        "max_attempts": 2,
        **config,
    }
    (root / ".keeptraining.yml").write_text(yaml.safe_dump(settings))
    return root


def run(repo: Path, *args: str) -> int:
    return main(["run", "--repo", str(repo), *args])


def attempts(repo: Path) -> list[ledger.Attempt]:
    return ledger.load(repo / ".keeptraining").attempts


def by_attempt(output: str) -> dict[int, str]:
    """The run's output cut at each `== Attempt N/M` heading."""
    parts = re.split(r"^== Attempt (\d+)/\d+", output, flags=re.MULTILINE)
    return {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}


def epoch_lines(text: str) -> list[str]:
    return re.findall(r"^Epoch \d+/\d+$", text, flags=re.MULTILINE)


def checkpoint_iterations(*paths: Path) -> list[int]:
    """The optimizer's step counter stored in each checkpoint, read back by Keras itself."""
    code = (
        "import sys, keras\n"
        "for p in sys.argv[1:]:\n"
        "    print(int(keras.saving.load_model(p).optimizer.iterations.numpy()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [int(line) for line in done.stdout.split()]


def test_plain_script_grows_resumes_and_reaches_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hard-coded `epochs = 10`, no checkpoint code, a `Test accuracy:` print: no code change."""
    repo = zoo_repo(tmp_path, "sequential_fixed_epochs.py", threshold=0.92, max_attempts=4)
    assert run(repo) == 0
    records = attempts(repo)
    output = by_attempt(capsys.readouterr().out)
    assert len(records) >= 2 and records[-1].outcome == "reached"
    assert epoch_lines(output[1])[0] == "Epoch 1/10" and epoch_lines(output[1])[-1] == "Epoch 10/10"
    assert epoch_lines(output[2])[0] == "Epoch 11/20"  # Keras itself numbers the resumed epochs
    for previous, current in itertools.pairwise(records):
        assert current.resumed_from == f"attempt-{previous.attempt:03d}/model.keras"
        assert current.initial_epoch == previous.epochs_reached
    assert records[0].epochs_reached == 10
    # The result is the script's own test evaluation, and the ledger says so.
    assert all(a.metric_source == "evaluate" for a in records)
    printed = re.findall(r"^Test accuracy: ([\d.]+)$", output[1], flags=re.MULTILINE)
    assert records[0].metric == pytest.approx(float(printed[-1]))
    # The optimizer continues: Adam's step counter goes on from where each checkpoint left it.
    per_epoch = records[0].adapter["optimizer_iterations"]["end"] // 10
    ends = [a.adapter["optimizer_iterations"]["end"] for a in records]
    assert ends == [per_epoch * (a.epochs_reached or 0) for a in records]
    assert [a.adapter["optimizer_iterations"]["start"] for a in records] == [None, *ends[:-1]]
    state = repo / ".keeptraining"
    assert checkpoint_iterations(*(state / f"attempt-{a.attempt:03d}/model.keras" for a in records)) == ends
    assert not any(a.warnings for a in records)


def test_learning_rate_and_batch_size_reach_a_script_that_never_reads_them(tmp_path: Path) -> None:
    repo = zoo_repo(
        tmp_path,
        "sequential_fixed_epochs.py",
        max_attempts=1,
        epochs=2,
        hyperparameters={"learning_rate": 0.05, "batch_size": 16},
    )
    assert run(repo) == 3
    (record,) = attempts(repo)
    assert record.adapter["hyperparameters"] == {"learning_rate": 0.05, "batch_size": 16}
    train_rows = math.ceil(1348 * 0.9)  # digits() keeps 1348 rows; Keras's validation_split=0.1
    steps = math.ceil(train_rows / 16)  # batches of 16, not the script's 64
    assert record.adapter["optimizer_iterations"]["end"] == 2 * steps
    code = (
        "import sys, keras\n"
        "print(float(keras.saving.load_model(sys.argv[1]).optimizer.learning_rate.numpy()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(repo / ".keeptraining/attempt-001/model.keras")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(done.stdout) == pytest.approx(0.05)


def test_adapt_none_stops_a_script_that_ignores_kt_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = zoo_repo(tmp_path, "sequential_fixed_epochs.py", threshold=0.99, max_attempts=5, adapt="none")
    assert run(repo) == 1
    records = attempts(repo)
    assert [a.outcome for a in records] == ["below", "failed"]
    assert [a.epochs_reached for a in records] == [10, 10]  # what it trained, not the 20 it was asked
    assert [a.epochs_source for a in records] == ["log", "log"]
    assert records[0].metric_source == "stdout (result line)"
    assert records[0].metric_line is not None and records[0].metric_line.startswith("Test accuracy: ")
    assert "KT_EPOCHS" in (records[1].error or "")
    err = capsys.readouterr().err
    assert "KT_EPOCHS" in err and "adapt: keras" in err
    assert any("wrote no checkpoint" in w and "attempt-001/model.keras" in w for w in records[0].warnings)


def test_tf_data_pipeline_through_tf_keras_trains_to_kt_epochs_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`from tensorflow import keras`, a tf.data pipeline and `epochs = 6` < KT_EPOCHS = 10: the
    script's one fit is one Keras run to KT_EPOCHS, never 6 epochs and then a second run."""
    repo = zoo_repo(tmp_path, "functional_tfdata.py")
    assert run(repo) == 3
    records = attempts(repo)
    output = by_attempt(capsys.readouterr().out)
    assert epoch_lines(output[1]) == [f"Epoch {i}/10" for i in range(1, 11)]
    assert epoch_lines(output[2]) == [f"Epoch {i}/20" for i in range(11, 21)]
    assert [a.epochs_reached for a in records] == [10, 20]
    assert not any(a.adapter["continued"] for a in records)
    assert [a.adapter["one_run"] for a in records] == [True, True]
    assert records[1].metric_source == "evaluate"
    assert "\x1b[" not in output[1]  # one plain line per epoch, no progress bar, in a log


def test_own_callbacks_keep_working_and_their_early_stop_ends_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = zoo_repo(tmp_path, "own_callbacks.py")
    assert run(repo) == 3
    captured = capsys.readouterr()
    (first,) = attempts(repo)  # the script's EarlyStopping asked for the end: no second attempt
    assert first.epochs_reached is not None and first.epochs_reached < 10
    assert f"Epoch {first.epochs_reached}: early stopping" in by_attempt(captured.out)[1]
    assert first.adapter["stopped_by"] == "EarlyStopping" and first.early_stopped and not first.epochs_ignored
    assert first.outcome == "below"
    assert "Stopped by the script's EarlyStopping: accuracy" in captured.out
    assert (repo / "code" / "best.keras").is_file()  # the script's own ModelCheckpoint
    assert not first.warnings


def test_warm_up_then_main_fit_is_one_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = zoo_repo(tmp_path, "warmup_then_main.py")
    assert run(repo) == 3
    records = attempts(repo)
    output = by_attempt(capsys.readouterr().out)
    assert epoch_lines(output[1]) == ["Epoch 1/2", "Epoch 2/2"] + [f"Epoch {i}/10" for i in range(3, 11)]
    assert epoch_lines(output[2]) == ["Epoch 11/12", "Epoch 12/12"] + [f"Epoch {i}/20" for i in range(13, 21)]
    assert [a.epochs_reached for a in records] == [10, 20]
    assert records[1].adapter["fit_calls"] == 2
    # The warm-up's optimizer (head only) cannot take the main optimizer's state: weights only.
    assert records[1].adapter["resume"] == "weights only"


def test_h5_save_no_longer_breaks_resuming(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = zoo_repo(tmp_path, "h5_save.py")
    assert run(repo) == 3
    records = attempts(repo)
    assert epoch_lines(by_attempt(capsys.readouterr().out)[2])[0] == "Epoch 11/20"
    assert records[1].resumed_from == "attempt-001/model.keras"
    assert (repo / "code" / "digits_model.h5").is_file()  # the script's own save still happens


def test_without_validation_or_evaluate_the_training_metric_is_used_and_said(tmp_path: Path) -> None:
    repo = zoo_repo(tmp_path, "no_validation.py", max_attempts=1, epochs=3)
    assert run(repo) == 3
    (record,) = attempts(repo)
    assert record.metric_source == "accuracy (training)" and record.epochs_reached == 3
    metrics = json.loads((repo / ".keeptraining/attempt-001/metrics.json").read_text())
    assert metrics["metric_source"] == "accuracy (training)" and len(metrics["history"]["accuracy"]) == 3


def test_a_percentage_print_is_no_problem_for_the_adapter_and_an_error_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapted = zoo_repo(tmp_path / "auto", "percent_print.py", max_attempts=1, epochs=2)
    assert run(adapted) == 3
    assert attempts(adapted)[0].metric_source == "evaluate"
    plain = zoo_repo(tmp_path / "none", "percent_print.py", max_attempts=1, epochs=2, adapt="none")
    assert run(plain) == 1
    assert "printed as a percentage" in capsys.readouterr().err
    assert attempts(plain)[0].outcome == "failed"


def test_a_script_that_follows_the_contract_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ml_code/nn.py: identical ledgers with adapt auto and none; the adapter says it steps aside."""
    results = {}
    for mode in ("auto", "none"):
        repo = tmp_path / mode
        shutil.copytree(ML_CODE, repo / "ml_code", ignore=shutil.ignore_patterns("__pycache__", "output"))
        (repo / ".keeptraining.yml").write_text(
            yaml.safe_dump(
                {
                    "backend": "local",
                    "threshold": 0.999,
                    "epochs": 2,
                    "epoch_step": 2,
                    "max_attempts": 2,
                    "adapt": mode,
                }
            )
        )
        assert run(repo) == 3
        out = capsys.readouterr().out
        assert ("stepping aside" in out) == (mode == "auto")
        skip = {"duration_s", "train_s", "started_at", "params", "minutes"}  # minutes: wall time
        data = json.loads((repo / ".keeptraining/ledger.json").read_text())
        results[mode] = [{k: v for k, v in a.items() if k not in skip} for a in data["attempts"]]
    assert results["auto"] == results["none"]
    assert [a["epochs_reached"] for a in results["auto"]] == [2, 4]
    assert all(a["metric_source"] == "metrics.json" and a["adapter"] == {} for a in results["auto"])


# --- bad inputs: each a clear message; the ledger and earlier checkpoints stay ---


def first_attempt(tmp_path: Path, **config: Any) -> tuple[Path, bytes]:
    repo = zoo_repo(tmp_path, "sequential_fixed_epochs.py", max_attempts=3, **config)
    assert main(["attempt", "--repo", str(repo)]) == 0
    return repo, (repo / ".keeptraining/attempt-001/model.keras").read_bytes()


def test_a_crash_inside_fit_fails_the_attempt_and_keeps_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, checkpoint = first_attempt(tmp_path)
    shutil.copy(ZOO / "crash_in_fit.py", repo / "code")
    assert main(["attempt", "--repo", str(repo), "--train-command", "python crash_in_fit.py"]) == 1
    captured = capsys.readouterr()
    assert "exited with code 1" in captured.err and "the script's own callback broke" in captured.out
    first, second = attempts(repo)
    assert (first.outcome, second.outcome) == ("below", "failed")
    assert (repo / ".keeptraining/attempt-001/model.keras").read_bytes() == checkpoint


@pytest.mark.parametrize("damage", ["architecture", "corrupt"])
def test_an_unusable_checkpoint_is_reported_and_training_starts_from_scratch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    repo, checkpoint = first_attempt(tmp_path)
    if damage == "architecture":  # the script changed its model between two attempts
        script = repo / "code" / "sequential_fixed_epochs.py"
        script.write_text(script.read_text().replace("Dense(32", "Dense(48"))
    else:
        (repo / ".keeptraining/attempt-001/model.keras").write_bytes(b"PK\x03\x04 not a zip")
        checkpoint = b"PK\x03\x04 not a zip"
    capsys.readouterr()
    assert main(["attempt", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "cannot resume from model.keras" in out and "Training starts from scratch" in out
    first, second = attempts(repo)
    assert (second.resumed_from, second.initial_epoch, second.epochs_reached) == (None, 0, 20)
    assert second.epochs_trained == 20 and second.adapter["resume"].startswith("failed: ")
    assert any("did not resume attempt 1's checkpoint" in w for w in second.warnings)
    assert first.outcome == "below"
    assert (repo / ".keeptraining/attempt-001/model.keras").read_bytes() == checkpoint


def test_a_misspelt_adapt_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = zoo_repo(tmp_path, "sequential_fixed_epochs.py", adapt="kears")
    assert run(repo) == 2
    assert (
        "adapt = 'kears' is not valid; expected one of auto, keras, none (did you mean 'keras'?)"
        in capsys.readouterr().err
    )
    assert not (repo / ".keeptraining").exists()


# --- issue 24: scripts as people write them ---


def assert_resumed_with_optimizer(repo: Path, records: list[ledger.Attempt]) -> None:
    """Each attempt resumed the previous one's weights and optimizer: `iterations` goes on."""
    for previous, current in itertools.pairwise(records):
        assert current.resumed_from == f"attempt-{previous.attempt:03d}/{previous.checkpoint}"
        assert current.adapter["resume"] == "weights and optimizer state"
        assert (
            current.adapter["optimizer_iterations"]["start"]
            == previous.adapter["optimizer_iterations"]["end"]
        )
    ends = [a.adapter["optimizer_iterations"]["end"] for a in records]
    per_epoch = ends[0] // (records[0].epochs_reached or 1)
    assert ends == [per_epoch * (a.epochs_reached or 0) for a in records]
    state = repo / ".keeptraining"
    assert stored_iterations(*(state / f"attempt-{a.attempt:03d}/{a.checkpoint}" for a in records)) == ends


def stored_iterations(*paths: Path) -> list[int]:
    """The optimizer's step counter in each .keras file, read from its weights file (no class needed:
    a subclassed model cannot be loaded without its class)."""
    found = []
    for path in paths:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                data = io.BytesIO(archive.read("model.weights.h5"))
        else:  # model.weights.h5: what the adapter saves when the model cannot be saved whole
            data = io.BytesIO(path.read_bytes())
        with h5py.File(data, "r") as weights:
            found.append(int(weights["optimizer/vars/0"][()]))
    return found


@pytest.mark.parametrize("script", ["subclassed.py", "custom_train_step.py"])
def test_a_model_that_builds_its_weights_lazily_resumes_weights_and_optimizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str
) -> None:
    """A `keras.Model` subclass and keras-io's custom `train_step` have no weights before fit."""
    repo = zoo_repo(tmp_path, script, epochs=3, epoch_step=3)
    assert run(repo) == 3
    records = attempts(repo)
    out = capsys.readouterr().out
    output = by_attempt(out)
    assert "did the architecture change" not in out and "Unknown variable" not in out
    assert [a.epochs_reached for a in records] == [3, 6]
    assert [a.outcome for a in records] == ["below", "below"]
    assert epoch_lines(output[2])[0] == "Epoch 4/6"
    # keras-io's trainer takes a model in __init__ and has no get_config: weights and optimizer only.
    assert records[0].checkpoint == ("model.keras" if script == "subclassed.py" else "model.weights.h5")
    assert_resumed_with_optimizer(repo, records)


def test_a_script_that_fails_after_training_keeps_its_epochs_and_says_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All epochs train, then a Keras 2 `.hdf5` save fails: recorded as failed, with the epochs, the
    metric and the checkpoint it saved, a message that names the Keras 3 fix, and resumable."""
    repo = zoo_repo(tmp_path, "keras2_after_fit.py", epochs=3, max_attempts=3)
    assert run(repo) == 1
    err = capsys.readouterr().err
    assert "Keras 2's API under Keras 3" in err and "`.weights.h5`" in err and "tf-keras" in err
    assert "Before failing it trained and saved epoch 3" in err
    (first,) = attempts(repo)
    assert (first.outcome, first.epochs_reached, first.epochs_trained, first.checkpoint) == (
        "failed",
        3,
        3,
        "model.keras",
    )
    assert first.metric is not None and first.metric_source == "evaluate"
    assert (repo / ".keeptraining/attempt-001/model.keras").is_file()
    # The script is fixed; the next attempt resumes from what the failed one kept.
    script = repo / "code" / "keras2_after_fit.py"
    script.write_text(script.read_text().replace("digits_weights.hdf5", "digits.weights.h5"))
    assert main(["attempt", "--repo", str(repo), "--attempt", "2"]) == 0
    first, second = attempts(repo)
    assert (second.resumed_from, second.initial_epoch, second.epochs_reached) == (
        "attempt-001/model.keras",
        3,
        13,
    )
    assert second.adapter["resume"] == "weights and optimizer state"


def test_one_fit_is_one_keras_run_and_its_history_holds_every_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history = model.fit(epochs=5)` with KT_EPOCHS = 6, then 12: `Epoch 1/6`, `Epoch 7/12`, one run
    each, the History the script prints holds all the attempt's epochs; a scaler's `.fit` is not
    counted."""
    repo = zoo_repo(tmp_path, "one_fit_history.py", epochs=6, epoch_step=6)
    assert run(repo) == 3
    records = attempts(repo)
    out = capsys.readouterr().out
    output = by_attempt(out)
    assert epoch_lines(output[1]) == [f"Epoch {i}/6" for i in range(1, 7)]
    assert epoch_lines(output[2]) == [f"Epoch {i}/12" for i in range(7, 13)]
    assert "History epochs: [0, 1, 2, 3, 4, 5]" in output[1]
    assert "History epochs: [6, 7, 8, 9, 10, 11]" in output[2]
    printed = re.search(r"^History val_accuracy: \[(.*)\]$", output[2], flags=re.MULTILINE)
    assert printed is not None
    assert [float(v) for v in printed[1].split(", ")] == pytest.approx(
        json.loads((repo / ".keeptraining/attempt-002/metrics.json").read_text())["history"]["val_accuracy"],
        abs=1e-4,
    )
    assert "in one run (KT_EPOCHS=6, the model has 0; the script's one model.fit call)" in output[1]
    assert "the script's one fit call, as counted in the previous attempt" in output[2]
    calls = [(a.adapter["script_fit_calls"], a.adapter["fit_calls"], a.adapter["continued"]) for a in records]
    assert calls == [(1, 1, False), (1, 1, False)]
    assert_resumed_with_optimizer(repo, records)


def test_stateful_callbacks_carry_on_across_attempts_and_early_stopping_ends_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EarlyStopping(patience=4) in attempts of 3 epochs fires at epoch 5, in attempt 2, as it would in
    one plain run; ModelCheckpoint saves only what beats the best of every earlier attempt."""
    repo = zoo_repo(tmp_path, "patient_callbacks.py", epochs=3, epoch_step=3, max_attempts=4)
    assert run(repo) == 3
    out = capsys.readouterr().out
    records = attempts(repo)
    assert [(a.epochs_reached, a.outcome, a.early_stopped) for a in records] == [
        (3, "below", False),
        (5, "below", True),
    ]
    assert "Epoch 5: early stopping" in by_attempt(out)[2]
    assert "Stopped by the script's EarlyStopping: accuracy" in out and "no further attempt" in out
    assert records[1].adapter["callbacks_carried"] == [
        "EarlyStopping(val_accuracy)",
        "ModelCheckpoint(val_accuracy)",
        "ReduceLROnPlateau(val_loss)",
    ]
    assert_resumed_with_optimizer(repo, records)
    # ModelCheckpoint(save_best_only): a file for each epoch that beat the best of the whole chain so far.
    state = repo / ".keeptraining"
    values = [
        v
        for a in records
        for v in json.loads((state / f"attempt-{a.attempt:03d}/metrics.json").read_text())["history"][
            "val_accuracy"
        ]
    ]
    expected, best = [], -1.0
    for epoch, value in enumerate(values, start=1):
        if value > best:
            expected.append(f"best-{epoch:02d}.keras")
            best = value
    assert sorted(p.name for p in (repo / "code" / "checkpoints").iterdir()) == expected
    carried = json.loads((state / "attempt-001/metrics.json").read_text())["callbacks"]
    assert [c["class"] for c in carried] == ["EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"]
    assert carried[0]["state"]["wait"] == 2 and carried[0]["state"]["best"] == pytest.approx(values[0])


def test_when_validation_reaches_the_threshold_but_the_result_does_not_attempts_keep_their_step(
    tmp_path: Path,
) -> None:
    """Attempt 1 stops where val_accuracy reaches the threshold; the script's evaluate falls short, so
    from then on no attempt stops there, and each trains epoch_step epochs (no long-then-tiny)."""
    repo = zoo_repo(tmp_path, "easy_validation.py", threshold=0.6, epochs=6, epoch_step=3, max_attempts=3)
    assert run(repo) == 3
    records = attempts(repo)
    first = records[0].epochs_reached
    assert first is not None and first < 6 and records[0].adapter["stopped_by"] == "threshold"
    assert [(a.initial_epoch, a.epochs_reached) for a in records] == [
        (0, first),
        (first, first + 3),
        (first + 3, first + 6),
    ]
    assert [a.adapter["threshold_stop"] for a in records] == [True, False, False]
    assert all(a.metric is not None and a.metric < 0.6 for a in records)


@pytest.mark.parametrize("script", ["sequential_fixed_epochs.py", "ml_code/nn.py"])
def test_evaluate_only_measures_the_checkpoint_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str
) -> None:
    """KT_EPOCHS == KT_INITIAL_EPOCH with a checkpoint: nothing trains, the script's evaluate runs, and
    the engine records the checkpoint's metric at the same epochs (how a champion is measured with
    another commit's code and data). A plain script through the adapter; the sample model by itself."""
    if script.startswith("ml_code/"):
        repo = tmp_path
        shutil.copytree(ML_CODE, repo / "ml_code", ignore=shutil.ignore_patterns("__pycache__", "output"))
        (repo / ".keeptraining.yml").write_text(
            yaml.safe_dump({"backend": "local", "threshold": 0.999, "epochs": 2, "max_attempts": 3})
        )
    else:
        repo = zoo_repo(tmp_path, script, epochs=2, max_attempts=3)
    assert main(["attempt", "--repo", str(repo)]) == 0
    capsys.readouterr()
    assert main(["attempt", "--repo", str(repo), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    first, second = attempts(repo)
    assert epoch_lines(out) == []  # no epoch trained
    assert (second.initial_epoch, second.epochs_reached, second.epochs_trained) == (2, 2, 0)
    assert second.resumed_from == "attempt-001/model.keras" and second.outcome == "below"
    assert not second.warnings and not second.epochs_ignored
    if script.startswith("ml_code/"):
        # nn.py reports the last epoch's val_accuracy, then evaluates the checkpoint on the same data
        assert second.metric == pytest.approx(first.metric, abs=1e-6)
    else:
        assert "evaluate only (KT_EPOCHS=2 = KT_INITIAL_EPOCH" in out
        assert second.metric_source == "evaluate" and second.metric == pytest.approx(first.metric, abs=1e-6)
        assert second.adapter["resume"] == "weights and optimizer state"
        steps = second.adapter["optimizer_iterations"]
        assert steps["start"] == steps["end"] == first.adapter["optimizer_iterations"]["end"]


def test_a_model_fed_by_a_generator_is_restored_after_its_first_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No batch can be read ahead from a generator: the checkpoint is loaded over the first step,
    whose update (and step count) is discarded, and the log says how to avoid it."""
    repo = zoo_repo(tmp_path, "generator_subclassed.py", epochs=2, epoch_step=2)
    assert run(repo) == 3
    out = capsys.readouterr().out
    first, second = attempts(repo)
    assert "the checkpoint was loaded after that step" in by_attempt(out)[2]
    assert second.resumed_from == "attempt-001/model.keras" and second.initial_epoch == 2
    assert second.adapter["resume"] == "weights and optimizer state"
    assert first.adapter["optimizer_iterations"]["end"] == 2 * 15  # 2 epochs of 15 steps
    assert second.adapter["optimizer_iterations"] == {"start": 30, "end": 30 + 30 - 1}
