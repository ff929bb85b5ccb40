"""``keeptraining attempt`` as a workflow run calls it: outputs, summary, dispatch, notices.

Real processes (the fake training script, local backend) and the real GitHub emulator;
the environment is what the composite action gives the step (KT_INPUT_*, GITHUB_*).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import fake_repo, read_outputs
from keeptraining.cli import main
from keeptraining.github import dispatch
from keeptraining.state import ledger
from services.github_emulator import GitHubEmulator

pytestmark = pytest.mark.integration

TOKEN = "ghs_attemptStepToken000111222"
HEAD = "a" * 40


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    with GitHubEmulator("acme/models", head_sha=HEAD, tokens={TOKEN}) as emu:
        yield emu


@pytest.fixture
def actions_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: GitHubEmulator) -> dict[str, Path]:
    files = {"output": tmp_path / "gh-output", "summary": tmp_path / "gh-summary.md"}
    this_run = emulator.add_run(161_335, event="push", display_title="Training · attempt 1 · first")
    this_run.created_at = "2020-01-01T00:00:00Z"
    monkeypatch.setenv("GITHUB_RUN_ID", str(this_run.id))
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_STEP_SUMMARY": str(files["summary"]),
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_SHA": HEAD,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_API_URL": emulator.url,
        "GITHUB_SERVER_URL": emulator.server_url,
        "GITHUB_WORKFLOW_REF": "acme/models/.github/workflows/continuous-training.yml@refs/heads/main",
        "KT_GITHUB_TOKEN": TOKEN,
        "KT_INPUT_DISPATCH": "true",
        "KT_INPUT_THRESHOLD": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KT_SMTP_PASSWORD", raising=False)
    return files


def test_below_threshold_dispatches_the_next_attempt(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 0
    outputs = read_outputs(actions_env["output"])
    assert outputs["attempt"] == "1" and outputs["epochs"] == "10"
    assert outputs["threshold-reached"] == "false" and outputs["dispatched"] == "true"
    assert outputs["next-epochs"] == "20" and outputs["chain-status"] == "continue"
    assert outputs["accuracy"] == "0.6408"
    (record,) = emulator.snapshot_dispatches()
    this_run = os.environ["GITHUB_RUN_ID"]
    assert record.inputs == {"attempt": "2", "epochs": "20", "commit": HEAD, "resume-run-id": this_run}
    assert outputs["next-run-url"].endswith(f"/actions/runs/{record.run_id}")
    saved = ledger.load(repo / ".keeptraining").attempts[0]
    assert saved.dispatched["run_id"] == record.run_id
    assert saved.run["id"] == this_run
    # The commit status: pending while training (this run), pending again linking the next attempt.
    statuses = [(st.sha, st.state, st.context) for st in emulator.statuses]
    assert statuses == [(HEAD, "pending", "keeptraining")] * 2
    assert emulator.statuses[0].target_url.endswith(f"/actions/runs/{this_run}")  # type: ignore[union-attr]
    assert emulator.statuses[1].target_url == outputs["next-run-url"]
    summary = actions_env["summary"].read_text()
    assert "| 1 |" in summary or "| [1]" in summary
    assert "```mermaid" in summary and "xychart-beta" in summary
    assert str(record.run_id) in summary
    out = capsys.readouterr().out
    assert all(line.startswith("::add-mask::") for line in out.splitlines() if TOKEN in line)


def test_resumed_attempt_reaches_threshold_and_does_not_dispatch(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = fake_repo(tmp_path / "repo", "epochs: 30\n")
    assert main(["attempt", "--repo", str(repo)]) == 0
    monkeypatch.setenv("KT_INPUT_ATTEMPT", "2")
    monkeypatch.setenv("KT_INPUT_EPOCHS", "40")
    actions_env["output"].unlink()
    assert main(["attempt", "--repo", str(repo)]) == 0
    outputs = read_outputs(actions_env["output"])
    assert outputs["threshold-reached"] == "true" and outputs["dispatched"] == "false"
    assert outputs["chain-status"] == "reached" and outputs["epochs"] == "35"
    assert len(emulator.snapshot_dispatches()) == 1  # only attempt 1's
    assert emulator.statuses[-1].state == "success" and "≥ 0.90" in str(emulator.statuses[-1].description)
    second = ledger.load(repo / ".keeptraining").attempts[1]
    assert (second.initial_epoch, second.epochs_trained) == (30, 5)
    assert list((repo / ".keeptraining" / "outbox").glob("*.eml")), "the outbox mail is written"


def test_rerun_of_the_same_step_does_not_dispatch_twice(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator
) -> None:
    first = fake_repo(tmp_path / "first")
    assert main(["attempt", "--repo", str(first)]) == 0
    rerun = fake_repo(tmp_path / "rerun")  # a job re-run starts from a fresh checkout
    actions_env["output"].unlink()
    assert main(["attempt", "--repo", str(rerun)]) == 0
    assert len(emulator.snapshot_dispatches()) == 1
    outputs = read_outputs(actions_env["output"])
    assert outputs["dispatched"] == "true"


def test_a_push_that_started_no_chain_does_not_end_it(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator
) -> None:
    emulator.push()  # e.g. [skip ci]: the branch moved, no run started
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 0
    (record,) = emulator.snapshot_dispatches()
    assert record.inputs["commit"] == HEAD  # the chain goes on training its own commit
    assert read_outputs(actions_env["output"])["chain-status"] == "continue"


def test_a_newer_chain_supersedes_this_one_with_a_notice_a_status_and_a_mail(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = emulator.push()
    emulator.add_run(161_335, event="push", head_sha=newer, status="queued", conclusion=None)
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 0
    assert emulator.snapshot_dispatches() == []
    outputs = read_outputs(actions_env["output"])
    assert (outputs["chain-status"], outputs["dispatched"]) == ("superseded", "false")
    assert outputs["accuracy"] == "0.6408"
    out = capsys.readouterr().out
    assert f"::notice title=Chain superseded::Superseded: commit {newer[:7]} started a newer chain" in out
    assert emulator.statuses[-1].state == "error" and newer[:7] in str(emulator.statuses[-1].description)
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    assert f"commit {newer[:7]} started a newer chain" in mail.read_text()
    state = ledger.load(repo / ".keeptraining")
    assert state.chain["superseded_by"]["commit"] == newer and state.attempts[0].outcome == "below"


def test_commit_status_false_sets_none_and_a_refused_status_is_only_a_warning(
    tmp_path: Path,
    actions_env: dict[str, Path],
    emulator: GitHubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KT_INPUT_COMMIT_STATUS", "false")
    assert main(["attempt", "--repo", str(fake_repo(tmp_path / "off"))]) == 0
    assert emulator.statuses == []
    monkeypatch.delenv("KT_INPUT_COMMIT_STATUS")
    emulator.denied.add("repos/create-commit-status")  # no `statuses: write`
    actions_env["output"].unlink()
    assert main(["attempt", "--repo", str(fake_repo(tmp_path / "denied")), "--attempt", "1"]) == 0
    out = capsys.readouterr().out
    assert "::warning title=Commit status not set::" in out and "statuses: write" in out
    assert read_outputs(actions_env["output"])["chain-status"] == "continue"


def test_a_run_name_without_the_attempt_warns_with_the_fix(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.run(int(os.environ["GITHUB_RUN_ID"])).display_title = "Continuous training"
    assert main(["attempt", "--repo", str(fake_repo(tmp_path / "repo"))]) == 0
    out = capsys.readouterr().out
    assert "::warning title=Re-run protection needs the attempt in run-name::" in out
    assert "run-name: Continuous training · attempt ${{ inputs.attempt || 1 }}" in out


def test_failed_attempt_writes_outputs_and_an_error_annotation(
    tmp_path: Path,
    actions_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_MODE", "crash")
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 1
    outputs = read_outputs(actions_env["output"])
    assert outputs["chain-status"] == "failed" and outputs["accuracy"] == ""
    assert "::error title=Training failed::" in capsys.readouterr().out
    assert "failed" in actions_env["summary"].read_text().lower()


def test_training_log_cannot_issue_workflow_commands(
    tmp_path: Path, actions_env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path / "repo")
    script = repo / "ml" / "fake_train.py"
    hostile = 'print("::add-mask::0.6408\\n::set-output name=accuracy::1.0"); '
    script.write_text(script.read_text().replace('print(f"fake: epochs', hostile + 'print(f"fake: epochs'))
    assert main(["attempt", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    start = out.index("::stop-commands::")
    token = out[start:].splitlines()[0].split("::")[2]
    assert out.index("::add-mask::0.6408") > start
    assert out.index(f"::{token}::") > out.index("::add-mask::0.6408")
    assert read_outputs(actions_env["output"])["accuracy"] == "0.6408"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KT_INPUT_ATTEMPT", "two", "input attempt = 'two' is not valid"),
        ("KT_INPUT_ATTEMPT", "$(touch pwned)", "input attempt = '$(touch pwned)' is not valid"),
        ("KT_INPUT_EPOCHS", "`id`", "epochs = '`id`' is not valid"),
        ("KT_INPUT_THRESHOLD", "90", "write 0.9 for 90 %"),
        ("KT_INPUT_COMMIT", "${{ secrets.X }}", "commit = '${{ secrets.X }}' is not valid"),
        ("KT_INPUT_DISPATCH", "yes please", "input dispatch = 'yes please' is not valid"),
    ],
)
def test_hostile_inputs_are_refused_before_training(
    tmp_path: Path,
    actions_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(name, value)
    repo = fake_repo(tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    assert main(["attempt", "--repo", str(repo)]) != 0
    out = capsys.readouterr().out
    assert "::error title=" in out and expected.replace("%", "%25") in out
    assert not (tmp_path / "pwned").exists()
    assert not (repo / ".keeptraining" / "ledger.json").exists()


def test_dispatch_that_keeps_failing_is_reported_after_outputs_and_ledger(
    tmp_path: Path,
    actions_env: dict[str, Path],
    emulator: GitHubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(
        dispatch, "dispatch_next", functools.partial(dispatch.dispatch_next, sleep=slept.append)
    )
    emulator.fail_next("dispatch", 503, times=50)
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 1
    assert slept, "the dispatch was retried with back-off"
    assert emulator.snapshot_dispatches() == []
    outputs = read_outputs(actions_env["output"])
    assert outputs["dispatched"] == "false" and outputs["accuracy"] == "0.6408"
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert record.outcome == "below" and (repo / ".keeptraining" / "attempt-001" / "model.keras").exists()
    assert "::error title=Dispatch of the next attempt failed::" in capsys.readouterr().out


def test_an_attempt_longer_than_its_run_is_dispatched_again_as_its_next_run(
    tmp_path: Path, actions_env: dict[str, Path], emulator: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")  # 10 epochs of 0.3 s in runs of at most 1 s
    first_run = os.environ["GITHUB_RUN_ID"]
    repo = fake_repo(tmp_path / "repo", "time_budget: 1\n")
    assert main(["attempt", "--repo", str(repo)]) == 0
    outputs = read_outputs(actions_env["output"])
    assert (outputs["attempt"], outputs["chain-status"], outputs["dispatched"]) == ("1", "continue", "true")
    assert outputs["next-epochs"] == "10"
    (second,) = emulator.snapshot_dispatches()
    assert second.inputs["attempt"] == "1.2" and second.inputs["epochs"] == "10"
    assert emulator.run(second.run_id).display_title == "attempt 1.2 · 10 epochs"
    summary = actions_env["summary"].read_text()
    assert "continues in the next run" in summary and "Next run of this attempt dispatched" in summary
    # A re-run of the first run's job (a fresh checkout, the same run id) finds run 1.2: no second dispatch.
    rerun = fake_repo(tmp_path / "rerun", "time_budget: 1\n")
    assert main(["attempt", "--repo", str(rerun)]) == 0
    assert len(emulator.snapshot_dispatches()) == 1
    # Run 1.2 itself: titled like its attempt's first run but for the run number, it must not take itself
    # for the next run it dispatches (1.3).
    monkeypatch.setenv("GITHUB_RUN_ID", str(second.run_id))
    monkeypatch.setenv("KT_INPUT_ATTEMPT", "1.2")
    monkeypatch.setenv("KT_INPUT_EPOCHS", "10")
    actions_env["output"].unlink()
    assert main(["attempt", "--repo", str(repo)]) == 0
    outputs = read_outputs(actions_env["output"])
    assert (outputs["attempt"], outputs["chain-status"], outputs["dispatched"]) == ("1", "continue", "true")
    third = emulator.snapshot_dispatches()[-1]
    assert len(emulator.snapshot_dispatches()) == 2 and third.inputs["attempt"] == "1.3"
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert [s["run_id"] for s in record.slices] == [first_run, str(second.run_id)]
    assert record.dispatched["run"] == 3 and record.dispatched["run_id"] == third.run_id
