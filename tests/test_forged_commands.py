"""No text from the training script, metrics.json, the configuration or a dispatch input acts as a
workflow command.

Each case runs ``keeptraining attempt`` as the action's step runs it (GITHUB_ACTIONS=true, a
real process, stdout and stderr in one pipe as the runner reads them), with a forged command
(``::error title=forged::``, ``::add-mask::``, ``::set-output``, the legacy ``##[...]``) planted
in one field, then reads the log the way the runner does (tests/workflow_commands.py). Only
keeptraining's own commands may be obeyed: the stop and resume lines, masks of its secrets,
and its annotations, none of them titled by the forger.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import fake_repo
from workflow_commands import Command, obeyed

pytestmark = pytest.mark.integration

FORGED = "::error title=forged::pwned"
LEGACY = "##[error]forged legacy"
TOKEN = "ghs_forgedCommandsTestToken0001"

PRINTING_SCRIPT = f"""\
import json, os
print({FORGED!r})
print("  ::add-mask::0.5")
print("::set-output name=accuracy::1.0")
print("some text then " + {LEGACY!r})
out = os.path.join(os.environ["KT_OUTPUT_DIR"], "metrics.json")
json.dump({{"accuracy": 0.5, "epochs": int(os.environ["KT_EPOCHS"])}}, open(out, "w"))
"""


def run_attempt(repo: Path, tmp_path: Path, **env: str) -> tuple[int, str]:
    full = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "KT_"))}
    full.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(tmp_path / "out.txt"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "KT_INPUT_THRESHOLD": "0.99",
            "KT_GITHUB_TOKEN": TOKEN,
            "GITHUB_REPOSITORY": "acme/models",
            **env,
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout


def assert_only_our_commands(log: str) -> list[Command]:
    commands = obeyed(log)
    for command in commands:
        assert command.name in {"stop-commands", "resume", "add-mask", "error", "warning", "notice"}, (
            f"a forged command would run: {command.line!r}"
        )
        assert "forged" not in command.props.get("title", ""), f"forged annotation: {command.line!r}"
        if command.name == "add-mask":
            assert command.data == TOKEN, f"forged mask: {command.line!r}"
    assert [c.name for c in commands if c.name in ("stop-commands", "resume")] == ["stop-commands", "resume"]
    assert sum(c.name == "error" for c in commands) <= 1
    return commands


def hostile_repo(tmp_path: Path, config: str = "") -> Path:
    return fake_repo(tmp_path / "repo", config)


def test_the_reader_catches_a_forged_command() -> None:
    """The runner model must see what a runner would obey, or the tests below prove nothing."""
    names = [
        c.name
        for c in obeyed(
            f"{FORGED}\n  ::add-mask::x\nsee {LEGACY}\n::stop-commands::t\n{FORGED}\n::t::\n::notice::ok"
        )
    ]
    assert names == ["error", "add-mask", "legacy", "stop-commands", "resume", "notice"]


def test_training_log(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path, "train_command: python train.py\n")
    (repo / "ml" / "train.py").write_text(PRINTING_SCRIPT)
    code, log = run_attempt(repo, tmp_path)
    assert code == 0, log
    assert FORGED in log and LEGACY in log, "the log itself is shown, inert"
    assert_only_our_commands(log)


@pytest.mark.parametrize("mode", ["forged"])
def test_metrics_json_key(tmp_path: Path, mode: str) -> None:
    code, log = run_attempt(hostile_repo(tmp_path), tmp_path, FAKE_MODE=mode)
    assert code == 1, log
    commands = assert_only_our_commands(log)
    (error,) = [c for c in commands if c.name == "error"]
    assert error.props["title"] == "No usable metric"


INVALID = ["Invalid keeptraining configuration"]


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        ('train_command: "python fake_train.py ::error title=forged::x ##[error]forged"\n', []),
        ('train_command: "no-such-program ::error title=forged::x"\n', ["Training failed"]),
        ('code_path: "ml\\n::error title=forged::x"\n', INVALID),
        ('hyperparameters: {lr: "0.1\\n::set-output name=accuracy::1.0"}\n', INVALID),
        ('mail_to: ["a@b.c\\n##[error]forged"]\n', INVALID),
        ('metric: "x\\n::error title=forged::x"\n', INVALID),
    ],
)
def test_configuration_values(tmp_path: Path, config: str, errors: list[str]) -> None:
    code, log = run_attempt(hostile_repo(tmp_path, config), tmp_path)
    assert (code != 0) == bool(errors), log
    commands = assert_only_our_commands(log)
    assert [c.props["title"] for c in commands if c.name == "error"] == errors


@pytest.mark.parametrize(
    "name",
    [
        "KT_INPUT_ATTEMPT",
        "KT_INPUT_EPOCHS",
        "KT_INPUT_COMMIT",
        "KT_INPUT_BRANCH",
        "KT_INPUT_THRESHOLD",
        "KT_INPUT_DISPATCH",
        "KT_INPUT_TRAIN_COMMAND",
    ],
)
def test_dispatch_inputs(tmp_path: Path, name: str) -> None:
    code, log = run_attempt(hostile_repo(tmp_path), tmp_path, **{name: f"1\n{FORGED}\n{LEGACY}"})
    assert code != 0, log
    assert_only_our_commands(log)


def test_restored_ledger_text(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path)
    code, log = run_attempt(repo, tmp_path, FAKE_MODE="crash")
    assert code == 1
    ledger_file = repo / ".keeptraining" / "ledger.json"
    ledger_file.write_text(ledger_file.read_text().replace('"error": "', f'"error": "{FORGED}\\n{LEGACY} '))
    code, log = run_attempt(repo, tmp_path, KT_INPUT_MAIL_TO="dev@example.org")
    assert code == 0, log
    assert_only_our_commands(log)
