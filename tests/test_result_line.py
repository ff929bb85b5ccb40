"""The stdout rule (README, "Reading the result from the output"): which line is the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptraining.contract import metrics, result_line
from keeptraining.errors import MetricError

PROGRESS = "19/19 - 0s - 6ms/step - accuracy: 0.9900 - loss: 0.0312 - val_accuracy: 0.5000 - val_loss: 2.1"


@pytest.mark.parametrize(
    ("output", "value", "kind"),
    [
        ("Test accuracy: 0.93\n", 0.93, "result line"),
        ("test_accuracy=0.93\n", 0.93, "result line"),
        ("accuracy: 0.93\n", 0.93, "result line"),
        ("Final Accuracy 1.0\n", 1.0, "result line"),
        ("Test accuracy: 0.9312 \n", 0.9312, "result line"),
        ("Test accuracy: 0.8663697242736816\n", 0.8663697242736816, "result line"),  # print("...", value)
        (f"Epoch 3/3\n{PROGRESS}\nTest accuracy: 0.81\nsaved the model\n", 0.81, "result line"),
        ("Test accuracy: 0.5\nTest accuracy: 0.6\n", 0.6, "result line"),  # the last one
        (f"Test accuracy: 0.7\n{PROGRESS}\n", 0.7, "result line"),  # a line of its own beats val_ anywhere
        (f"Epoch 1/1\n{PROGRESS}\n", 0.5, "val_accuracy"),  # never the progress line's 0.99
        ("val_accuracy=0.64\n", 0.64, "result line"),  # on its own line, the validation value is a result
    ],
)
def test_preferred_result(output: str, value: float, kind: str) -> None:
    found = result_line.find(output, "accuracy")
    assert found is not None
    assert (found.value, found.kind) == (value, kind)


@pytest.mark.parametrize(
    "output",
    [
        PROGRESS.replace(" - val_accuracy: 0.5000", ""),  # a progress line with only training values
        "train accuracy: 0.99\n",
        "training_accuracy=0.99\n",
        "Train-Accuracy: 0.99\n",
        "loss: 0.3 accuracy: 0.9\n",  # not a line of its own
        "accuracy: 0.9 (best so far)\n",
        "test_accuracy_top5: 0.99\n",
    ],
)
def test_training_values_and_mixed_lines_are_never_the_result(output: str) -> None:
    assert result_line.find(output, "accuracy") is None


def test_the_line_used_is_kept_short(tmp_path: Path) -> None:
    found = metrics.read(tmp_path, "Test accuracy:" + " " * 300 + "0.9\n", "accuracy")
    assert found.value == 0.9 and found.detail == "result line" and found.source == "stdout"
    assert found.line is not None and len(found.line) == result_line.MAX_LINE and found.line.endswith("...")


def test_a_percent_sign_is_an_error_that_quotes_the_line(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="printed as a percentage") as info:
        metrics.read(tmp_path, "Test accuracy: 93.12%\n", "accuracy")
    assert "'Test accuracy: 93.12%'" in str(info.value) and "0.9312" in str(info.value)


def test_a_progress_line_alone_says_what_to_print(tmp_path: Path) -> None:
    with pytest.raises(MetricError) as info:
        metrics.read(tmp_path, PROGRESS.replace(" - val_accuracy: 0.5000", "") + "\n", "accuracy")
    text = str(info.value)
    assert "progress line's training accuracy is never taken" in text and "Test accuracy: 0.9300" in text


def test_other_metric_names() -> None:
    found = result_line.find("Epoch 2/2\n4/4 - auc: 0.99 - val_auc: 0.71\nTest AUC = 0.74\n", "auc")
    assert found is not None and (found.value, found.line) == (0.74, "Test AUC = 0.74")


def test_readme_states_the_rule_word_for_word() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert " ".join(result_line.RULE.split()) in " ".join(readme.split())
