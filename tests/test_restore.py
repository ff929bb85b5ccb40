"""The run to resume, checked through the API before anything is downloaded, and what arrived.

Real HTTP: PyGithub -> the GitHub emulator, whose artifacts live in the results service's
store (as upload-artifact leaves them); the attempt step with the local backend.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from fakes import fake_repo, read_outputs
from keeptraining.cli import main
from keeptraining.errors import ConfigError, RestoreError
from keeptraining.github import dispatch, restore
from keeptraining.state import ledger
from services.github_emulator import EmulatedRun, EmulatedWorkflow, GitHubEmulator
from services.results_service import (
    ArtifactStore,
    Blob,
    BlobStore,
    Identity,
    ResultsService,
    RuntimeTokens,
    utcnow,
)

TOKEN = "ghs_restoreTestToken0123456789"
CHAIN = "c" * 40
WORKFLOW = EmulatedWorkflow(161_335, "Continuous training", ".github/workflows/continuous-training.yml")
OTHER = EmulatedWorkflow(161_336, "CI", ".github/workflows/ci.yml")


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    store = ArtifactStore(BlobStore())
    with GitHubEmulator(
        "acme/models", head_sha=CHAIN, workflows=[WORKFLOW, OTHER], tokens={TOKEN}, artifacts=store
    ) as emu:
        store.blobs.base_url = emu.base
        yield emu
        assert emu.violations == []


def env_for(emu: GitHubEmulator, **inputs: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": emu.url,
        "GITHUB_SERVER_URL": emu.server_url,
        "GITHUB_REPOSITORY": emu.full_name,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_SHA": CHAIN,
        "GITHUB_RUN_ID": "1",
        "GITHUB_WORKFLOW_REF": f"{emu.full_name}/{WORKFLOW.path}@refs/heads/main",
        **inputs,
    }


def uploaded(
    emu: GitHubEmulator,
    run: EmulatedRun,
    *,
    expired: bool = False,
    run_attempt: int = 1,
    name: str = "keeptraining-state",
) -> int:
    """The run's keeptraining-state artifact, as upload-artifact leaves it (in run attempt
    ``run_attempt``, named as the action names it then); its id."""
    store = emu.artifacts
    assert store is not None
    identity = Identity(RuntimeTokens.run_backend_id(run.id, run_attempt), "job")
    expires = utcnow() + timedelta(days=-1 if expired else 14)
    artifact = store.create(run.id, identity, restore.artifact_name(name, run_attempt), expires, run_attempt)
    data = b"PK\x05\x06" + b"\0" * 18
    store.blobs.blobs[artifact.blob_path] = Blob(data, "application/zip", committed=True)
    artifact.size, artifact.finalized = len(data), True
    artifact.digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    return artifact.id


def check(emu: GitHubEmulator, run_id: int | str, **inputs: str) -> dict[str, str]:
    return restore.check_step(env_for(emu, KT_INPUT_RESUME_RUN_ID=str(run_id), **inputs), TOKEN)


def previous(emu: GitHubEmulator, workflow_id: int = WORKFLOW.id, **fields: str) -> EmulatedRun:
    run = emu.add_run(workflow_id, **fields)  # type: ignore[arg-type]
    uploaded(emu, run)
    return run


# ---------------------------------------------------------------- the check before the download


def test_a_push_run_of_this_workflow_on_the_chains_commit_may_be_resumed(
    emulator: GitHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    run = previous(emulator, event="push", head_sha=CHAIN)
    (artifact,) = emulator.artifacts.of_run(run.id)  # type: ignore[union-attr]
    assert check(emulator, run.id) == {
        "commit": CHAIN,
        "resume": "ok",
        "problem": "",
        "state-artifact-id": str(artifact.id),
    }
    said = capsys.readouterr().out
    assert f"Run {run.id} (push, commit {CHAIN[:7]}) of this workflow may be resumed" in said
    assert not emulator.calls("download-artifact"), "nothing is downloaded by the check"


@pytest.mark.parametrize("descending_ids", [False, True])
def test_the_newest_run_attempts_state_is_chosen_not_the_highest_artifact_id(
    emulator: GitHubEmulator, descending_ids: bool
) -> None:
    """A re-run uploads a second state to the same run (names are unique per run *attempt*); the next
    attempt restores the newest attempt's, also when the older upload holds the higher id."""
    assert emulator.artifacts is not None
    emulator.artifacts.descending_ids = descending_ids
    run = emulator.add_run(WORKFLOW.id, event="push", head_sha=CHAIN)
    first = uploaded(emulator, run)
    second = uploaded(emulator, run, run_attempt=2)
    assert (first > second) is descending_ids
    outputs = check(emulator, run.id)
    assert (outputs["resume"], outputs["state-artifact-id"]) == ("ok", str(second))
    third = uploaded(emulator, run, run_attempt=3)
    assert check(emulator, run.id)["state-artifact-id"] == str(third)


def test_artifact_names_carry_the_run_attempt_from_the_second_on() -> None:
    assert [restore.artifact_name("keeptraining-state", n) for n in (1, 2, 13)] == [
        "keeptraining-state",
        "keeptraining-state-attempt-2",
        "keeptraining-state-attempt-13",
    ]
    assert [
        restore.attempt_of(name, "keeptraining-state")
        for name in (
            "keeptraining-state",
            "keeptraining-state-attempt-2",
            "keeptraining-state-attempt-0",
            "keeptraining-state-x",
            "keeptraining-stateful",
            "other",
        )
    ] == [1, 2, None, None, None, None]


def test_a_merge_job_lists_each_slots_trial_of_the_newest_run_attempt(emulator: GitHubEmulator) -> None:
    """After "Re-run failed jobs" (trial 2 re-run), the merge takes trial 1 from the first try and trial
    2 from the re-run, through the REST listing of every attempt's artifacts."""
    assert emulator.artifacts is not None
    emulator.artifacts.descending_ids = True
    run = emulator.add_run(WORKFLOW.id, event="workflow_dispatch", head_sha=CHAIN)
    one = uploaded(emulator, run, name="keeptraining-trial-1")
    uploaded(emulator, run, name="keeptraining-trial-2")  # the failed first try of trial 2
    two = uploaded(emulator, run, name="keeptraining-trial-2", run_attempt=2)
    uploaded(emulator, run, name="keeptraining-trial-3", expired=True)
    env = env_for(emulator, KT_INPUT_ROLE="merge", GITHUB_RUN_ID=str(run.id))
    outputs = restore.check_step(env, TOKEN)
    assert outputs["trial-artifact-ids"] == f"{one},{two}" and outputs["resume"] == "none"
    assert "trial-artifact-ids" not in restore.check_step(env_for(emulator, GITHUB_RUN_ID=str(run.id)), TOKEN)


def test_a_merge_job_whose_trials_cannot_be_listed_warns_and_downloads_none(
    emulator: GitHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for(emulator, KT_INPUT_ROLE="merge", GITHUB_RUN_ID="424242")  # no such run
    assert restore.check_step(env, TOKEN)["trial-artifact-ids"] == ""
    assert (
        "::warning title=Trials not listed::the GitHub API refused to list the artifacts of run 424242 "
        "(HTTP 404)" in capsys.readouterr().out
    )


def test_a_dispatched_run_on_a_later_commit_of_the_branch_may_be_resumed(emulator: GitHubEmulator) -> None:
    later = emulator.push()  # a push that started no chain, before the run was dispatched
    run = previous(emulator, event="workflow_dispatch", head_sha=later)
    assert check(emulator, run.id, KT_INPUT_COMMIT=CHAIN)["resume"] == "ok"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("fork", "it ran code from someone/models (a fork), not from this repository"),
        ("other-workflow", "it is a run of ci.yml, not of continuous-training.yml"),
        (
            "pull-request",
            "it was started by a pull_request event; only runs started by push or "
            "workflow_dispatch hand their state on",
        ),
        ("other-commit", f"it trained commit {'d' * 7}, not the chain's commit {CHAIN[:7]}"),
        ("unrelated-dispatch", f"it ran on commit {'e' * 7}, which does not follow the chain's commit"),
        ("missing", "there is no such run in acme/models"),
        ("never-uploaded", "it has no keeptraining-state artifact (deleted, or never uploaded"),
        ("expired", "its keeptraining-state artifact expired ("),
    ],
)
def test_a_run_that_is_not_this_chains_is_refused_before_anything_is_downloaded(
    emulator: GitHubEmulator, case: str, expected: str
) -> None:
    if case == "missing":
        run_id = 123_456
    elif case == "never-uploaded":
        run_id = emulator.add_run(WORKFLOW.id, event="push", head_sha=CHAIN).id
    elif case == "expired":
        run = emulator.add_run(WORKFLOW.id, event="push", head_sha=CHAIN)
        uploaded(emulator, run, expired=True)
        run_id = run.id
    else:
        fields: dict[str, str] = {
            "fork": {"event": "push", "head_sha": CHAIN, "head_repository": "someone/models"},
            "other-workflow": {"event": "push", "head_sha": CHAIN},
            "pull-request": {"event": "pull_request", "head_sha": CHAIN},
            "other-commit": {"event": "push", "head_sha": "d" * 40},
            "unrelated-dispatch": {"event": "workflow_dispatch", "head_sha": "e" * 40},
        }[case]
        run_id = previous(emulator, OTHER.id if case == "other-workflow" else WORKFLOW.id, **fields).id
    outputs = check(emulator, run_id)
    assert outputs["resume"] == "refused" and outputs["commit"] == CHAIN
    first_line, _, hint = outputs["problem"].partition("\n")
    assert first_line.startswith(f"run {run_id} cannot be resumed: {expected}")
    assert "Start a fresh chain" in hint
    assert not emulator.calls("download-artifact")


@pytest.mark.parametrize(
    "inputs",
    [
        {"KT_INPUT_RESUME_RUN_ID": "12 34"},
        {"KT_INPUT_RESUME_RUN_ID": "1\n::error::forged"},
        {"KT_INPUT_COMMIT": "abc1234"},
        {"KT_INPUT_COMMIT": "$(touch pwned)"},
        {"KT_INPUT_EPOCHS": "`id`"},
        {"KT_INPUT_ATTEMPT": "2; touch pwned"},
    ],
)
def test_malformed_inputs_check_nothing_and_call_no_api(
    emulator: GitHubEmulator, inputs: dict[str, str]
) -> None:
    outputs = restore.check_step({**env_for(emulator, KT_INPUT_RESUME_RUN_ID="5"), **inputs}, TOKEN)
    assert outputs == {"commit": "", "resume": "invalid", "problem": "", "state-artifact-id": ""}
    assert emulator.requests == []


def test_the_run_id_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        restore.parse_run_id("1\n::error::forged")
    assert "forged" not in str(caught.value)


# ---------------------------------------------------------------- what arrived


def state(folder: Path, commit: str, attempts: int) -> Path:
    record = {"attempt": 0, "epochs": 10, "initial_epoch": 0, "resumed_from": None, "outcome": "below"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ledger.json").write_text(
        json.dumps(
            {
                "version": 1,
                "chain": {"commit": commit},
                "attempts": [{**record, "attempt": n, "epochs": 10 * n} for n in range(1, attempts + 1)],
            }
        )
    )
    return folder


def arrived(**env: str) -> dict[str, str]:
    return {"KT_INPUT_RESUME_RUN_ID": "77", "KT_RESUME_CHECK": "ok", "KT_RESTORE_OUTCOME": "success", **env}


def test_the_chains_own_state_is_accepted(tmp_path: Path) -> None:
    assert restore.problem(arrived(), state(tmp_path, CHAIN, 2), CHAIN, 3) is None
    assert restore.problem({}, tmp_path / "none", CHAIN, 1) is None  # a new chain: nothing to resume


@pytest.mark.parametrize(
    ("env", "commit", "attempts", "expected"),
    [
        (
            {
                "KT_RESUME_CHECK": "refused",
                "KT_RESUME_PROBLEM": "run 77 cannot be resumed: it expired\nStart over.",
            },
            CHAIN,
            2,
            "run 77 cannot be resumed: it expired",
        ),
        ({"KT_RESTORE_OUTCOME": "failure"}, CHAIN, 2, "the chain state of run 77 could not be downloaded"),
        ({}, "d" * 40, 2, f"belongs to the chain of commit {'d' * 7}, not {CHAIN[:7]}"),
        ({}, CHAIN, 1, "ends at attempt 1, and this is attempt 3"),
        ({}, None, 0, "holds no ledger.json"),
    ],
)
def test_state_that_is_not_usable_is_a_clear_restore_error(
    tmp_path: Path, env: dict[str, str], commit: str | None, attempts: int, expected: str
) -> None:
    folder = state(tmp_path, commit, attempts) if commit else tmp_path
    found = restore.problem(arrived(**env), folder, CHAIN, 3)
    assert isinstance(found, RestoreError) and expected in found.message
    assert found.hint


# ---------------------------------------------------------------- through the attempt step


def test_an_expired_state_fails_the_attempt_with_outputs_summary_and_mail(
    tmp_path: Path,
    emulator: GitHubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = emulator.add_run(WORKFLOW.id, event="push", head_sha=CHAIN)
    uploaded(emulator, run, expired=True)
    env = env_for(emulator, KT_INPUT_RESUME_RUN_ID=str(run.id), KT_INPUT_ATTEMPT="2", KT_INPUT_EPOCHS="20")
    checked = restore.check_step(env, TOKEN)
    files = {"GITHUB_OUTPUT": tmp_path / "out", "GITHUB_STEP_SUMMARY": tmp_path / "summary.md"}
    for name, value in {
        **env,
        **{k: str(v) for k, v in files.items()},
        "KT_GITHUB_TOKEN": TOKEN,
        "KT_INPUT_DISPATCH": "true",
        "KT_RESUME_CHECK": checked["resume"],
        "KT_RESUME_PROBLEM": checked["problem"],
        "KT_RESTORE_OUTCOME": "skipped",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KT_SMTP_PASSWORD", raising=False)
    repo = fake_repo(tmp_path / "repo")
    assert main(["attempt", "--repo", str(repo)]) == 1
    outputs = read_outputs(files["GITHUB_OUTPUT"])
    assert (outputs["chain-status"], outputs["attempt"], outputs["dispatched"]) == ("failed", "2", "false")
    out = capsys.readouterr().out
    error = f"::error title=Chain state not restored::run {run.id} cannot be resumed: its keeptraining-state "
    assert error + "artifact expired" in out
    assert "Start a fresh chain" in out
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert "expired" in summary and "fresh chain" in summary
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    text = mail.read_text()
    assert "Attempt 2 failed" in text and "Start a fresh chain" in text
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert (record.attempt, record.outcome, record.epochs_trained) == (2, "failed", 0)
    assert not (repo / ".keeptraining" / "attempt-002").exists(), "nothing was trained"
    assert emulator.snapshot_dispatches() == []
    assert [s.state for s in emulator.statuses] == ["pending", "failure"]


def test_a_foreign_ledger_is_moved_aside_not_appended_to(
    tmp_path: Path, emulator: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = fake_repo(tmp_path / "repo")
    state(repo / ".keeptraining", "d" * 40, 1)
    files = {"GITHUB_OUTPUT": tmp_path / "out", "GITHUB_STEP_SUMMARY": tmp_path / "summary.md"}
    env = env_for(
        emulator,
        KT_INPUT_RESUME_RUN_ID="77",
        KT_INPUT_ATTEMPT="2",
        KT_RESUME_CHECK="ok",
        KT_RESTORE_OUTCOME="success",
        KT_GITHUB_TOKEN=TOKEN,
        KT_INPUT_COMMIT_STATUS="false",
    )
    for name, value in {**env, **{k: str(v) for k, v in files.items()}}.items():
        monkeypatch.setenv(name, value)
    assert main(["attempt", "--repo", str(repo)]) == 1
    (moved,) = (repo / ".keeptraining" / "previous").glob("*/ledger.json")
    assert json.loads(moved.read_text())["chain"]["commit"] == "d" * 40
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert record.outcome == "failed" and "belongs to the chain of commit" in str(record.error)


def test_a_rerun_reads_what_its_earlier_tries_dispatched_from_their_state(emulator: GitHubEmulator) -> None:
    """Re-run protection's first evidence: the run id that the dispatch returned, kept in the earlier
    try's ledger (downloaded through the REST API, as GitHub keeps every attempt's artifacts)."""
    store = emulator.artifacts
    assert store is not None
    run = emulator.add_run(WORKFLOW.id, event="push", head_sha=CHAIN)
    records = [
        {
            "attempt": 1,
            "run": {"id": str(run.id), "attempt": "1"},
            "dispatched": {"attempt": 2, "run": 1, "epochs": 20, "run_id": 9_000_000_777, "url": None},
        },
        {
            "attempt": 2,
            "run": {"id": "123", "attempt": "1"},  # another run's record: not this run's
            "dispatched": {"attempt": 3, "run": 1, "run_id": 9_000_000_888},
        },
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ledger.json", json.dumps({"version": 1, "attempts": records}))
    artifact = store.create(
        run.id,
        Identity(RuntimeTokens.run_backend_id(run.id), "job"),
        "keeptraining-state",
        utcnow() + timedelta(days=14),
    )
    data = buffer.getvalue()
    store.blobs.blobs[artifact.blob_path] = Blob(data, "application/zip", committed=True)
    artifact.size, artifact.finalized = len(data), True
    artifact.digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    ctx = dispatch.context_from_env(env_for(emulator, GITHUB_RUN_ID=str(run.id)), TOKEN)
    with ResultsService(blobs=store.blobs):  # serves the signed blob URL the REST download redirects to
        assert restore.dispatched_by_earlier_tries(ctx, {"GITHUB_RUN_ATTEMPT": "2"}) == {9_000_000_777: "2"}
    assert restore.dispatched_by_earlier_tries(ctx, {"GITHUB_RUN_ATTEMPT": "1"}) == {}  # a first try
    assert not emulator.calls("download-artifact")[1:], "one state read, in the re-run only"
