"""Reading the metric: metrics.json, the seed's stdout line, and every rejection."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from keeptraining.contract import metrics
from keeptraining.errors import MetricError


def write_metrics(tmp_path: Path, payload: object) -> Path:
    (tmp_path / "metrics.json").write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return tmp_path


def test_metrics_json_with_history_and_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "model.keras").write_bytes(b"x")
    write_metrics(
        tmp_path,
        {
            "accuracy": 0.93,
            "epochs": 30,
            "history": {"val_accuracy": [0.9, 0.93]},
            "timings": {"fit_s": 4.5},
            "resumed": True,
        },
    )
    found = metrics.read(tmp_path, "", "accuracy")
    assert (found.value, found.epochs, found.history) == (0.93, 30, [0.9, 0.93])
    assert (found.checkpoint, found.train_s, found.resumed, found.source) == (
        "model.keras",
        4.5,
        True,
        "metrics.json",
    )


def test_metrics_json_wins_over_stdout(tmp_path: Path) -> None:
    write_metrics(tmp_path, {"accuracy": 0.5})
    assert metrics.read(tmp_path, "Test accuracy: 0.99", "accuracy").value == 0.5


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("Epoch 1 - accuracy: 0.5000 - val_accuracy: 0.6\nTest accuracy: 0.8123\n", 0.8123),
        ("accuracy=0.7\n", 0.7),
        ("Test accuracy: 0.81\nsome trailing log line\n", 0.81),
        ("Final Accuracy 1.0\n", 1.0),
        ("Test accuracy: 0.5\nTest accuracy: 0.6\n", 0.6),
    ],
)
def test_seed_style_stdout_line(tmp_path: Path, output: str, value: float) -> None:
    found = metrics.read(tmp_path, output, "accuracy")
    assert found.value == value and found.source == "stdout"


def test_custom_metric_name_on_stdout(tmp_path: Path) -> None:
    assert metrics.read(tmp_path, "val auc: 0.91", "auc").value == 0.91


def test_no_metric_at_all_says_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(MetricError) as info:
        metrics.read(tmp_path, "training done\n", "accuracy")
    text = str(info.value)
    assert "metrics.json" in text and "Test accuracy: 0.9300" in text


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"accuracy": 81.2}, "looks like a percentage"),
        ({"accuracy": 1.5}, "looks like a percentage"),
        ({"accuracy": 250}, "outside [0, 1]"),
        ({"accuracy": -0.1}, "outside [0, 1]"),
        ('{"accuracy": NaN}', "is nan"),
        ('{"accuracy": Infinity}', "is inf"),
        ({"accuracy": "0.9"}, "is not a number"),
        ({"accuracy": True}, "is not a number"),
        ({"loss": 0.1}, "has no 'accuracy' key"),
        ([0.9], "must hold a JSON object"),
        ("{not json", "is not valid JSON"),
        ({"accuracy": 0.9, "epochs": "ten"}, "must be a whole number of epochs"),
        ({"accuracy": 0.9, "history": [0.9]}, "history must be an object"),
        ({"accuracy": 0.9, "history": {"val_accuracy": 0.9}}, "must be a list of numbers"),
        ({"accuracy": 0.9, "history": {"val_accuracy": [0.9, 95]}}, "looks like a percentage"),
        ({"accuracy": 0.9, "checkpoint": "../../etc/passwd"}, "must be relative to its folder"),
        ({"accuracy": 0.9, "checkpoint": "/abs/model.keras"}, "must be relative to its folder"),
        ({"accuracy": 0.9, "checkpoint": "missing.keras"}, "was not written"),
    ],
)
def test_bad_metrics_json_is_rejected_clearly(tmp_path: Path, payload: object, expected: str) -> None:
    write_metrics(tmp_path, payload)
    with pytest.raises(MetricError) as info:
        metrics.read(tmp_path, "Test accuracy: 0.9", "accuracy")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Test accuracy: 81.23", "looks like a percentage"),
        ("Test accuracy: nan", "is nan"),
    ],
)
def test_bad_stdout_values_are_rejected(tmp_path: Path, output: str, expected: str) -> None:
    with pytest.raises(MetricError, match=expected):
        metrics.read(tmp_path, output, "accuracy")


def test_huge_metrics_file_is_refused(tmp_path: Path) -> None:
    write_metrics(tmp_path, json.dumps({"accuracy": 0.9, "pad": "x" * (metrics.MAX_METRICS_BYTES + 1)}))
    with pytest.raises(MetricError, match="expected to be small"):
        metrics.read(tmp_path, "", "accuracy")


# --------------------------------------------------------------------------- hostile output folders


def test_metrics_json_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "metrics.json")  # reading it would block forever: it is never opened
    with pytest.raises(MetricError, match="is a FIFO"):
        metrics.read(tmp_path, "Test accuracy: 0.9", "accuracy")


def test_metrics_json_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(MetricError, match="is a folder"):
        metrics.read(tmp_path, "Test accuracy: 0.9", "accuracy")


def test_metrics_json_linked_to_a_host_file_is_never_read(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"accuracy": 0.99}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").symlink_to(host)
    with pytest.raises(MetricError, match="is a symbolic link"):
        metrics.read(out, "", "accuracy")


@pytest.mark.parametrize("checkpoint", ["model.keras", "sub/victim.txt"])
def test_checkpoint_through_a_link_is_refused(tmp_path: Path, checkpoint: str) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim.txt").write_text("host file")
    out = tmp_path / "out"
    out.mkdir()
    if checkpoint == "model.keras":
        (out / "model.keras").symlink_to(host / "victim.txt")
        payload: dict[str, object] = {"accuracy": 0.9}
    else:
        (out / "sub").symlink_to(host)
        payload = {"accuracy": 0.9, "checkpoint": checkpoint}
    write_metrics(out, payload)
    with pytest.raises(MetricError, match=r"symbolic link|not a folder"):
        metrics.read(out, "", "accuracy")
    assert (host / "victim.txt").read_text() == "host file"


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"a":' * 50 + "1" + "}" * 50])
def test_deeply_nested_metrics_json_is_a_clear_error(tmp_path: Path, text: str) -> None:
    write_metrics(tmp_path, text)
    with pytest.raises(MetricError, match="nests"):
        metrics.read(tmp_path, "", "accuracy")


def test_hostile_key_is_quoted_briefly(tmp_path: Path) -> None:
    write_metrics(tmp_path, {"acc\n::error title=forged::pwned" + "x" * 500: 0.9})
    with pytest.raises(MetricError) as info:
        metrics.read(tmp_path, "", "accuracy")
    assert "\n::error" not in info.value.message and len(info.value.message) < 250


# --------------------------------------------------------------------------- epochs sanity


def found(epochs: int | None, history: int = 0) -> metrics.Metrics:
    return metrics.Metrics(value=0.9, source="metrics.json", epochs=epochs, history=[0.5] * history)


@pytest.mark.parametrize(
    ("case", "asked", "initial", "expected"),
    [
        (found(10**18), 20, 10, "epochs = 1000000000000000000 is more than the 20 epochs"),
        (found(21), 20, 10, "more than the 20 epochs"),
        (found(5), 20, 10, "fewer than the 10 epochs the resumed checkpoint"),
        (found(2, history=400000), 2, 0, "the history has 400000 values, but this attempt trained at most 2"),
        (found(20, history=11), 20, 10, "trained at most 10 epochs (10 -> 20)"),
        (found(None, history=3), 2, 0, "trained at most 2 epochs"),
    ],
)
def test_impossible_epochs_are_not_believed(
    case: metrics.Metrics, asked: int, initial: int, expected: str
) -> None:
    with pytest.raises(MetricError, match=re.escape(expected)):
        metrics.check_epochs(case, asked=asked, initial=initial)


@pytest.mark.parametrize(
    ("case", "asked", "initial"),
    [
        (found(20, history=10), 20, 10),
        (found(15, history=5), 20, 10),  # early stopping: fewer epochs than asked is fine
        (found(None), 20, 10),
        (found(20, history=20), 20, 0),  # trained from scratch
    ],
)
def test_possible_epochs_pass(case: metrics.Metrics, asked: int, initial: int) -> None:
    metrics.check_epochs(case, asked=asked, initial=initial)
