"""The log tail a failure shows: the end of the log, and stderr's end when it is elsewhere."""

from __future__ import annotations

from keeptraining.backends.base import TrainResult


def test_tail_is_the_end_of_the_log() -> None:
    output = "".join(f"line {i}\n" for i in range(100))
    result = TrainResult(exit_code=1, duration=1.0, output=output)
    assert result.log_tail.splitlines()[0] == "line 40" and result.log_tail.endswith("line 99")


def test_stderr_that_arrived_out_of_order_is_appended() -> None:
    output = "Traceback: boom\n" + "".join(f"line {i}\n" for i in range(100))
    result = TrainResult(exit_code=1, duration=1.0, output=output, errors="Traceback: boom\n")
    assert "Traceback: boom" not in "\n".join(result.log_tail.splitlines()[:60])
    assert result.log_tail.endswith("--- last lines on stderr ---\nTraceback: boom")


def test_stderr_already_in_the_tail_is_not_repeated() -> None:
    result = TrainResult(exit_code=1, duration=1.0, output="a\nTraceback: boom\n", errors="Traceback: boom\n")
    assert result.log_tail == "a\nTraceback: boom"
