"""strategy: search through the real engine: separate ``keeptraining attempt`` processes with the
state folder carried between them (as the artifact carries it between GitHub runs), the dispatch
of a search, and ``keeptraining run`` reaching a threshold that the epochs chain cannot.

The stand-in script (tests/fixtures/fake_search_train.py) has a known accuracy: only learning
rates near 0.03 cross 0.9, after about 27 epochs, and it refuses a checkpoint trained with
another learning rate.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from keeptraining.cli import main
from keeptraining.state import ledger
from services.github_emulator import GitHubEmulator
from test_attempt_step import read_outputs

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "fake_search_train.py"
TOKEN = "ghs_searchStepToken000111222"
HEAD = "b" * 40
BASE = "code_path: ml\ntrain_command: python fake_search_train.py\nbackend: local\nthreshold: 0.9\n"
SEARCH = """strategy: search
max_attempts: 24
search:
  seed: 3
  space:
    learning_rate: {type: float, low: 0.0003, high: 3.0, log: true}
    optimizer: {type: categorical, choices: [sgd, adam]}
"""


def search_repo(root: Path, config: str = BASE + SEARCH) -> Path:
    (root / "ml").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "ml" / "fake_search_train.py")
    (root / ".keeptraining.yml").write_text(config)
    return root


def attempt_process(workspace: Path, number: int, gh: Path) -> subprocess.CompletedProcess[str]:
    """One workflow run's `keeptraining attempt`, in its own process and checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "GITHUB_"))}
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(gh / f"output-{number}"),
            "GITHUB_STEP_SUMMARY": str(gh / f"summary-{number}.md"),
            "KT_INPUT_ATTEMPT": str(number),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_chain_of_separate_processes_continues_one_study(tmp_path: Path) -> None:
    source = search_repo(tmp_path / "source")
    gh = tmp_path / "gh"
    gh.mkdir()
    state: Path | None = None
    statuses = []
    for number in range(1, 25):
        workspace = tmp_path / f"run-{number}"  # a fresh checkout on a fresh runner
        shutil.copytree(source, workspace)
        if state is not None:  # the previous run's state artifact, downloaded
            shutil.copytree(state, workspace / ".keeptraining")
        done = attempt_process(workspace, number, gh)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        statuses.append(read_outputs(gh / f"output-{number}")["chain-status"])
        state = workspace / ".keeptraining"
        if statuses[-1] != "continue":
            break

    assert statuses[-1] == "reached", statuses
    assert state is not None
    attempts = ledger.load(state).attempts
    assert len(attempts) <= 24
    trials: dict[int, list[ledger.Attempt]] = {}
    for record in attempts:
        assert record.trial is not None
        trials.setdefault(record.trial, []).append(record)
    # The study continued across processes: trial numbers grow, and every trial got its own values.
    assert sorted(trials) == list(range(1, len(trials) + 1))
    rates = [runs[0].trial_params["learning_rate"] for runs in trials.values()]
    assert len(set(rates)) == len(rates) >= 3
    # Promoted trials resumed their own checkpoints (the script refuses any other).
    promoted = [runs for runs in trials.values() if len(runs) > 1]
    assert promoted
    for runs in promoted:
        for previous, current in itertools.pairwise(runs):
            assert current.rung is not None and previous.rung is not None
            assert current.rung == previous.rung + 1
            assert current.resumed_from == f"attempt-{previous.attempt:03d}/model.keras"
            assert current.initial_epoch == previous.epochs_reached
            assert current.trial_params == previous.trial_params
    winner = attempts[-1]
    assert winner.outcome == "reached" and winner.rung is not None and winner.rung >= 1
    assert 0.01 < winner.trial_params["learning_rate"] < 0.1
    # Checkpoints that no promotion can need were pruned; the winner's is there.
    kept = sorted(p.parent.name for p in state.glob("attempt-*/model.keras"))
    assert f"attempt-{winner.attempt:03d}" in kept
    assert len(kept) < len(attempts)
    summary = (gh / f"summary-{winner.attempt}.md").read_text()
    assert "learning\\_rate" in summary and f"| {winner.trial} |" in summary


def test_search_reaches_a_threshold_that_the_epochs_chain_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A poor fixed learning rate: 0.003 tops out near 0.68, so adding epochs never reaches 0.9.
    epochs_repo = search_repo(
        tmp_path / "epochs", BASE + "max_attempts: 8\nhyperparameters:\n  learning_rate: 0.003\n"
    )
    assert main(["run", "--repo", str(epochs_repo)]) == 3
    out = capsys.readouterr().out  # its own curve says so early: it stops on the projection
    assert "Threshold not reached after " in out and "stopped on the projection" in out
    search_repo_ = search_repo(tmp_path / "search")
    assert main(["run", "--repo", str(search_repo_)]) == 0
    out = capsys.readouterr().out
    assert "Threshold reached" in out and "Best trial" in out
    assert (search_repo_ / ".keeptraining" / "chart.png").read_bytes().startswith(b"\x89PNG")
    (mail,) = (search_repo_ / ".keeptraining" / "outbox").glob("*.eml")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "Best trial" in text.get_content()
    assert "Trial  learning_rate  optimizer  Rung  Epochs" in text.get_content()
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "<th" in html.get_content() and "may be promoted" not in html.get_content()


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    with GitHubEmulator("acme/models", head_sha=HEAD, tokens={TOKEN}) as emu:
        yield emu


def test_a_search_dispatches_the_attempt_number_only(
    tmp_path: Path, emulator: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "out"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_SHA": HEAD,
        "GITHUB_REF_NAME": "main",
        "GITHUB_RUN_ID": "77",
        "GITHUB_API_URL": emulator.url,
        "GITHUB_SERVER_URL": emulator.server_url,
        "KT_GITHUB_TOKEN": TOKEN,
        "KT_INPUT_DISPATCH": "true",
        "GITHUB_WORKFLOW_REF": "acme/models/.github/workflows/continuous-training.yml@refs/heads/main",
        # What a hostile dispatch could set: the epochs input. It cannot choose the trial's values.
        "KT_INPUT_EPOCHS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    repo = search_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 0
    (record,) = emulator.snapshot_dispatches()
    assert record.inputs == {"attempt": "2", "epochs": "", "commit": HEAD, "resume-run-id": "77"}
    (first,) = ledger.load(repo / ".keeptraining").attempts
    assert first.trial == 1 and first.rung == 0 and first.epochs == 3
    assert set(first.trial_params) == {"learning_rate", "optimizer"}
    outputs = read_outputs(tmp_path / "out")
    assert outputs["dispatched"] == "true" and outputs["next-epochs"] == "3"


def test_a_trial_run_longer_than_its_run_continues_the_same_trial_and_rung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The continued run resumes the trial's own checkpoint (the script refuses another learning
    rate's) with the trial's own values, whatever a new trial would have been proposed."""
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    repo = search_repo(
        tmp_path, BASE + SEARCH.replace("max_attempts: 24", "max_attempts: 2") + "epochs: 5\ntime_budget: 1\n"
    )
    assert main(["run", "--repo", str(repo)]) == 3
    first, second = ledger.load(repo / ".keeptraining").attempts
    assert (first.trial, first.rung, second.trial, second.rung) == (1, 0, 2, 0)
    for record in (first, second):
        assert record.slices and record.epochs_reached == 5 and record.epochs_trained == 5
        assert all(s["stopped"] == "deadline" for s in record.slices)
    assert first.trial_params != second.trial_params
