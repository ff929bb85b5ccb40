"""The stdout rule: which line of a training log is the attempt's result.

``RULE`` below is the rule, word for word as README.md states it (a test keeps them equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULE = """\
A script that writes no `metrics.json` is read from its output. keeptraining takes, in this order:

1. the last line that states the metric on its own: optional words, the metric's name, then `:`,
   `=` or spaces, and a number, with nothing after it. `Test accuracy: 0.93`, `test_accuracy=0.93`,
   `accuracy: 0.93` and `Final accuracy 0.93` are such lines; words that name training
   (`train accuracy: 0.99`, `training_accuracy=0.99`) do not count.
2. otherwise the last `val_<metric>: <number>` in any line (Keras's epoch lines end with it).

The `<metric>:` inside a Keras progress line
(`accuracy: 0.9900 - loss: 0.0312 - val_accuracy: 0.5000`) is the training value and is never
taken. A value printed with `%`, and any value outside [0, 1], is an error: print fractions. The
line used is recorded in the ledger (`metric_line`) and shown in the job summary.
"""

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
MAX_LINE = 200  # characters of the line kept for the ledger and the summary
_TRAINING_WORDS = {"train", "training"}


@dataclass(frozen=True)
class ResultLine:
    value: float  # as printed: the caller checks that it is a fraction
    line: str  # the line it came from, stripped and cut to MAX_LINE characters
    kind: str  # "result line" or "val_<metric>"
    percent: bool = False  # printed with a % sign


def _own_line(metric: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\s*(?P<label>(?:[A-Za-z][A-Za-z0-9]*[ _\-]+)*?)(?:{re.escape(metric)})"
        rf"\s*(?:[:=]\s*|\s+)(?P<value>{NUMBER})\s*(?P<percent>%)?\s*$",
        re.IGNORECASE,
    )


def find(output: str, metric: str) -> ResultLine | None:
    """The result the log states for ``metric``, by the rule above; None if it states none."""
    lines = output.splitlines()
    own = _own_line(metric)
    for line in reversed(lines):
        match = own.match(line)
        if match and not _TRAINING_WORDS & set(re.split(r"[ _\-]+", match["label"].lower())):
            return ResultLine(float(match["value"]), _cut(line), "result line", bool(match["percent"]))
    validation = re.compile(rf"\bval_{re.escape(metric)}\s*[:=]\s*({NUMBER})(?![\w.])", re.IGNORECASE)
    for line in reversed(lines):
        found = validation.findall(line)
        if found:
            return ResultLine(float(found[-1]), _cut(line), f"val_{metric}")
    return None


def _cut(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."
