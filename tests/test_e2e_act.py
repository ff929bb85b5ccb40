"""End to end: the real workflow files and the official actions under act, against GitHub in a box.

Each test makes a fresh git repository, serves it from the box (REST API, results service, git
server), and plays GitHub's part with ``act_driver.ActChain``: pushes, a person's "Run workflow",
"Re-run all jobs" and "Cancel", each run executed with act with the run id the box gave it, the
concurrency rule applied. Nothing in the action is replaced: the chain state travels as the real
``keeptraining-state`` artifact, uploaded by actions/upload-artifact and downloaded by
actions/download-artifact (by run id) from the next run; actions/checkout fetches the chain's
commit. A real SMTP server receives the mails.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keeptraining.github import restore
from services.act_driver import (
    CT_WORKFLOW,
    ActChain,
    ActRun,
    consumer_repo,
    copy_project,
    init_repo,
    keeptraining_action,
    readme_follow_up_job,
    readme_workflow,
    require_official_actions,
)
from services.github_box import GitHubBox
from services.results_service import Artifact
from services.smtp_server import Certs, SmtpTestServer, make_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

TOKEN = "ghs_e2eTokenValue0123456789abcdef"
SMTP_USER = "trainer@example.org"
SMTP_PASSWORD = "e2e-Sm7p-pa55word"
FULL_NAME = "acme/keeptraining"
STATE = "keeptraining-state"


@pytest.fixture(autouse=True)
def official_actions() -> None:
    require_official_actions()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def smtp(certs: Certs) -> Iterator[SmtpTestServer]:
    with SmtpTestServer("starttls", certs=certs, user=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


def secrets_for(smtp: SmtpTestServer) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": TOKEN,
        "SMTP_SERVER": "localhost",
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "MAIL_FROM": "keeptraining@example.org",
        "MAIL_TO": "dev1@example.org, dev2@example.org",
    }


@contextlib.contextmanager
def box_chain(
    repo: Path, work: Path, smtp: SmtpTestServer, certs: Certs, **chain_options: Any
) -> Iterator[ActChain]:
    called = list(chain_options.get("local_actions", {}).values())
    with GitHubBox(repo, work / "box", FULL_NAME, TOKEN, CT_WORKFLOW, called_roots=called) as box:
        work.mkdir(exist_ok=True)
        env = {"KT_SMTP_CAFILE": str(certs.ca_cert), **chain_options.pop("env", {})}
        chain = ActChain(repo, box, work, secrets=secrets_for(smtp), env=env, **chain_options)
        yield chain
        assert box.emulator.violations == [], "the emulator answered outside GitHub's description"
        assert all(call.status == 200 for call in box.results.calls if call.method != "CreateArtifact"), [
            (c.method, c.status) for c in box.results.calls
        ]


def state_artifact(chain: ActChain, run_id: int, run_attempt: int | None = None) -> Artifact:
    """A run's keeptraining-state artifact: its newest run attempt's (names are unique per attempt:
    keeptraining-state, keeptraining-state-attempt-2 ...), or ``run_attempt``'s."""
    found = [a for a in chain.box.results.artifacts.of_run(run_id) if restore.attempt_of(a.name, STATE)]
    if run_attempt is not None:
        (artifact,) = [a for a in found if a.run_attempt == run_attempt]
        assert artifact.name == restore.artifact_name(STATE, run_attempt)
        return artifact
    assert len({a.run_attempt for a in found}) == len(found), "two states of one run attempt"
    return max(found, key=lambda a: a.run_attempt)


def state_files(chain: ActChain, run_id: int, run_attempt: int | None = None) -> dict[str, bytes]:
    """The files of a run's keeptraining-state artifact (the newest attempt's), as the box keeps it."""
    store = chain.box.results.artifacts
    artifact = state_artifact(chain, run_id, run_attempt)
    with zipfile.ZipFile(io.BytesIO(store.content(artifact))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def state_ledger(chain: ActChain, run_id: int, run_attempt: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state_files(chain, run_id, run_attempt)["ledger.json"])
    return data


def digest(chain: ActChain, run_id: int, run_attempt: int | None = None) -> str:
    return str(state_artifact(chain, run_id, run_attempt).digest).removeprefix("sha256:")


def dispatches_from(chain: ActChain, run_id: int) -> list[dict[str, Any]]:
    return [
        r.inputs for r in chain.emulator.snapshot_dispatches() if r.inputs.get("resume-run-id") == str(run_id)
    ]


# --------------------------------------------------------------------------- the repository's own chain


def test_push_starts_a_chain_that_hands_its_real_artifact_from_run_to_run(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    repo = copy_project(tmp_path / "repo")
    head = init_repo(repo, FULL_NAME)
    # Its continuous-training.yml calls ./.github/workflows/keeptraining.yml, which runs the action as
    # OWNER/keeptraining/action@v1 (rewritten at release time): act serves that from this tree's copy.
    action = keeptraining_action(tmp_path / "keeptraining")
    with box_chain(
        repo,
        tmp_path / "work",
        smtp,
        certs,
        local_actions=action,
        variables={"KEEPTRAINING_BASE_IMAGE": docker_base_image},
    ) as chain:
        runs = chain.run_chain(max_runs=10)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        assert len(runs) >= 2, "the default sample model must need more than one attempt"
        assert [r.outputs["attempt"] for r in runs] == [str(n) for n in range(1, len(runs) + 1)]
        assert [r.outputs["dispatched"] for r in runs] == ["true"] * (len(runs) - 1) + ["false"]
        assert runs[-1].outputs["chain-status"] == "reached"
        assert all(r.outputs["threshold-reached"] == "false" for r in runs[:-1])
        # Each run has its own id; each dispatch names the previous run's real id as resume-run-id.
        ids = [r.run_id for r in runs]
        assert len(set(ids)) == len(ids)
        dispatches = chain.emulator.snapshot_dispatches()
        assert [d.inputs for d in dispatches] == [
            {"attempt": str(n), "epochs": str(10 * n), "commit": head, "resume-run-id": str(ids[n - 2])}
            for n in range(2, len(runs) + 1)
        ]
        for previous, run in itertools.pairwise(runs):
            # It downloaded the previous run's artifact through the REST API, byte for byte.
            assert f"SHA256 digest of downloaded artifact is {digest(chain, previous.run_id)}" in run.log
            assert f"Run {previous.run_id} (" in run.log  # the API check of the run to resume
        # The ledger and the checkpoints travelled: each run's artifact holds the chain so far.
        for n, run in enumerate(runs, start=1):
            files = state_files(chain, run.run_id)
            ledger = json.loads(files["ledger.json"])
            assert [a["attempt"] for a in ledger["attempts"]] == list(range(1, n + 1))
            assert ledger["attempts"][-1]["run"]["id"] == str(run.run_id)
            assert f"attempt-{n:03d}/model.keras" in files and ledger["chain"]["commit"] == head
        attempts = state_ledger(chain, runs[-1].run_id)["attempts"]
        for previous_attempt, current in itertools.pairwise(attempts):
            assert current["initial_epoch"] == previous_attempt["epochs_reached"]
            assert current["resumed_from"] == f"attempt-{previous_attempt['attempt']:03d}/model.keras"
            assert current["params"]["backend"] == "docker"
        # The commit status followed the chain: pending, ..., success, linking the runs.
        statuses = [s for s in chain.emulator.statuses if s.sha == head]
        assert [s.state for s in statuses] == ["pending"] * (2 * len(runs) - 1) + ["success"]
        assert str(statuses[-1].target_url).endswith(f"/actions/runs/{runs[-1].run_id}")
    (mail,) = smtp.messages
    assert mail.tls and mail.authenticated
    assert sorted(mail.rcpt_tos) == ["dev1@example.org", "dev2@example.org"]
    assert "Threshold reached: accuracy" in str(mail.message["Subject"])


# --------------------------------------------------------------------------- a consumer repository


CONSUMER_SCRIPT = '''\
"""A consumer's own training script: pure Python, honouring the training contract."""
import json, os, sys
from pathlib import Path

fail_once = os.environ.get("KT_FAIL_ONCE")  # (local backend, tests) fail while this file exists
if fail_once and Path(fail_once).exists():
    Path(fail_once).unlink()
    sys.exit("failing once, as asked")
ceiling = float(os.environ.get("KT_HP_CEILING", "1"))
out = Path(os.environ["KT_OUTPUT_DIR"])
start = 0
if os.environ.get("KT_RESUME_FROM"):
    start = json.loads(Path(os.environ["KT_RESUME_FROM"]).read_text())["epochs"]
target = int(os.environ["KT_EPOCHS"])
history = [min(ceiling, 1 - 0.6 * 0.95 ** e) for e in range(start + 1, target + 1)]
(out / "model.keras").write_text(json.dumps({"epochs": target}))
(out / "metrics.json").write_text(json.dumps(
    {"accuracy": history[-1], "epochs": target, "history": {"val_accuracy": history}}))
print(f"Test accuracy: {history[-1]:.4f}")
'''


@contextlib.contextmanager
def consumer_chain(
    tmp_path: Path,
    base_image: str,
    smtp: SmtpTestServer,
    certs: Certs,
    config: str = "",
    workflow: str | None = None,
    **chain_options: Any,
) -> Iterator[tuple[ActChain, str]]:
    """A consumer repository using the README's workflow, its GitHub in a box and the driver."""
    repo = consumer_repo(
        tmp_path / "consumer",
        base_image,
        workflow=workflow or readme_workflow(),
        script=CONSUMER_SCRIPT,
        config=config,
    )
    head = init_repo(repo, FULL_NAME)
    action = keeptraining_action(tmp_path / "keeptraining")
    with box_chain(repo, tmp_path / "work", smtp, certs, local_actions=action, **chain_options) as chain:
        yield chain, head


def test_consumer_repository_uses_the_action_from_the_readme(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    workflow = readme_workflow() + readme_follow_up_job()  # the job that uses the result, after the chain's
    with consumer_chain(tmp_path, docker_base_image, smtp, certs, workflow=workflow) as (chain, head):
        runs = chain.run_chain(max_runs=8)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        # 1 - 0.6 * 0.95**e first reaches 0.9 at epoch 35: attempts of 10, 20, 30, 40 epochs.
        assert [r.outputs["epochs"] for r in runs] == ["10", "20", "30", "40"]
        assert runs[-1].outputs["threshold-reached"] == "true"
        # The follow-up job read the reusable workflow's outputs (needs.keeptraining.outputs).
        assert f"Model ready with accuracy {runs[-1].outputs['accuracy']}" in runs[-1].log
        assert "Model ready with accuracy" not in runs[0].log
        # Dispatches went to the caller's file (GITHUB_WORKFLOW_REF in a called workflow), never to
        # the reusable keeptraining.yml.
        assert len(chain.emulator.snapshot_dispatches()) == 3
        assert all(f"HEAD is now at {head[:7]}" in r.log for r in runs), "the action checks out the commit"
    assert len(smtp.messages) == 1


def test_unreachable_threshold_stops_at_max_attempts(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    # the projection would end it after attempt 1 (test_a_hopeless_chain_stops_on_its_projection)
    config = "max_attempts: 3\nstop_when_hopeless: false\nhyperparameters:\n  ceiling: 0.8\n"
    with consumer_chain(tmp_path, docker_base_image, smtp, certs, config) as (chain, _head):
        runs = chain.run_chain(max_runs=8)
        assert [r.returncode for r in runs] == [0, 0, 0]
        assert [r.outputs["attempt"] for r in runs] == ["1", "2", "3"]
        assert runs[-1].outputs["chain-status"] == "exhausted"
        assert runs[-1].outputs["dispatched"] == "false"
        assert len(chain.emulator.snapshot_dispatches()) == 2
        assert chain.emulator.statuses[-1].state == "failure"
    assert len(smtp.messages) == 1
    assert "Threshold not reached after 3 attempts" in str(smtp.messages[0].message["Subject"])


def test_a_hopeless_chain_stops_on_its_projection(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    """A curve capped at 0.8 cannot reach 0.9: the chain ends on its projection long before its 10
    attempts, as a spent budget does (exhausted, failure status, one mail), and counts its runner
    minutes from each run's start, read from GitHub's API (the emulator's run_started_at)."""
    config = "max_attempts: 10\nhyperparameters:\n  ceiling: 0.8\n"
    with consumer_chain(tmp_path, docker_base_image, smtp, certs, config) as (chain, _head):
        runs = chain.run_chain(max_runs=10)
        assert all(r.returncode == 0 for r in runs) and len(runs) < 5
        assert runs[-1].outputs["chain-status"] == "exhausted"
        assert runs[-1].outputs["dispatched"] == "false"
        assert "stopped on the projection" in runs[-1].log and "at 100 epochs" in runs[-1].log
        assert chain.emulator.statuses[-1].state == "failure"
        assert "stopped on the projection" in chain.emulator.statuses[-1].description
    assert len(smtp.messages) == 1
    message = smtp.messages[0].message
    assert "stopped on the projection" in str(message["Subject"])
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Runner minutes:" in text and "counted from the run's start" in text
    assert "Projection after attempt" in text


def test_rerun_of_a_failed_attempt_dispatches_once_and_the_next_attempt_restores_the_reruns_state(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    """Re-run of the job that dispatches: GitHub keeps both tries' keeptraining-state in the run (names
    are unique per run attempt), and the box hands out ids so that the first try's holds the higher
    one (2026 reports); download by name would restore it. The dispatched attempt restores the re-run's."""
    marker = tmp_path / "fail-once"
    with consumer_chain(
        tmp_path, docker_base_image, smtp, certs, "backend: local\n", env={"KT_FAIL_ONCE": str(marker)}
    ) as (chain, _head):
        chain.box.results.artifacts.descending_ids = True
        chain.push()
        first = chain.step()
        assert first is not None and first.returncode == 0
        marker.touch()  # attempt 2 fails once
        failed = chain.step()
        assert failed is not None and failed.returncode != 0 and failed.outputs["chain-status"] == "failed"
        assert dispatches_from(chain, failed.run_id) == []
        assert state_ledger(chain, failed.run_id)["attempts"][-1]["outcome"] == "failed"
        chain.rerun(failed.run_id)
        rerun = chain.step()
        assert rerun is not None
        assert rerun.returncode == 0, rerun.log[-4000:]
        assert (rerun.run_id, rerun.attempt, rerun.outputs["attempt"]) == (failed.run_id, 2, "2")
        assert "deleted" not in rerun.log  # overwrite reaches only the re-run's own attempt: both are kept
        first_try = state_artifact(chain, failed.run_id, 1)
        second_try = state_artifact(chain, failed.run_id, 2)
        assert first_try.id > second_try.id, "the first try's state holds the higher id"
        for try_number, outcomes in ((1, ["below", "failed"]), (2, ["below", "below"])):
            records = state_ledger(chain, failed.run_id, try_number)["attempts"]
            assert [a["outcome"] for a in records] == outcomes
        rest = chain.run_until_idle()
        assert [r.outputs["attempt"] for r in rest] == ["3", "4"]
        assert rest[-1].outputs["chain-status"] == "reached"
        # Exactly one dispatch from the failed run (its re-run), and attempt 3 resumed the re-run's state.
        assert [d["attempt"] for d in dispatches_from(chain, failed.run_id)] == ["3"]
        assert f"SHA256 digest of downloaded artifact is {digest(chain, failed.run_id, 2)}" in rest[0].log
        assert (
            f"artifact {second_try.id} (keeptraining-state-attempt-2, the newest run attempt's)"
            in rest[0].log
        )
        third = state_ledger(chain, rest[0].run_id)["attempts"][2]
        assert (third["initial_epoch"], third["epochs_trained"]) == (20, 10)
    subjects = [str(m.message["Subject"]) for m in smtp.messages]
    assert len(subjects) == 2 and "Attempt 2 failed" in subjects[0]
    assert "Threshold reached: accuracy" in subjects[1]


def test_manual_run_on_the_chains_commit_does_not_cancel_its_pending_attempt(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, _head):
        manual: list[int] = []

        def run_workflow_by_hand(first: ActRun) -> None:  # while attempt 1's run still runs
            (attempt_2,) = chain.emulator.snapshot_dispatches()
            assert chain.emulator.run(attempt_2.run_id).status == "pending"  # waits for its parent
            manual.append(chain.dispatch({"epochs": "40"}))  # Actions → Run workflow, on the same commit

        chain.push()
        first = chain.step(before_complete=run_workflow_by_hand)
        assert first is not None and first.returncode == 0
        rest = chain.run_until_idle()
        assert chain.box.runs.notes == [], "the concurrency rule cancelled a run"
        by_run = {r.run_id: r for r in rest}
        assert by_run[manual[0]].outputs["chain-status"] == "reached"  # its own chain, one attempt
        chain_runs = [r for r in rest if r.run_id != manual[0]]
        assert [r.outputs["attempt"] for r in chain_runs] == ["2", "3", "4"]
        assert chain_runs[-1].outputs["chain-status"] == "reached"
        assert all(run.status == "completed" and run.conclusion == "success" for run in chain.emulator.runs)
    assert len(smtp.messages) == 2


def test_rerun_of_a_parent_whose_child_was_cancelled_dispatches_again_once(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs, "epochs: 20\n") as (chain, _head):
        chain.push()
        first = chain.step(
            before_complete=lambda _run: chain.cancel(chain.emulator.snapshot_dispatches()[0].run_id)
        )  # someone cancels the pending attempt 2
        assert first is not None and first.returncode == 0
        assert chain.run_until_idle() == []  # the chain stalled
        (cancelled,) = chain.emulator.snapshot_dispatches()
        assert chain.emulator.run(cancelled.run_id).conclusion == "cancelled"
        chain.rerun(first.run_id)
        rest = chain.run_until_idle()
        assert [(r.run_id, r.attempt) for r in rest[:1]] == [(first.run_id, 2)]
        assert [r.outputs["attempt"] for r in rest] == ["1", "2", "3"]
        assert rest[-1].outputs["chain-status"] == "reached"
        again = dispatches_from(chain, first.run_id)
        assert [d["attempt"] for d in again] == ["2", "2"]  # the cancelled one, and once more
        assert rest[1].run_id != cancelled.run_id
    assert len(smtp.messages) == 1


def test_a_skip_ci_push_mid_chain_does_not_end_it(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, head):
        chain.push()
        skipped = chain.commit("Notes [skip ci]", {"NOTES.md": "not a reason to train\n"})
        assert chain.push() is None  # the push starts no run
        runs = chain.run_until_idle()
        assert [r.outputs["epochs"] for r in runs] == ["10", "20", "30", "40"]
        assert runs[-1].outputs["chain-status"] == "reached"
        trained = [f"HEAD is now at {head[:7]}" in r.log for r in runs]
        assert all(trained), "each attempt checks out and trains the chain's commit"
        dispatched = [chain.emulator.run(r.run_id) for r in runs[1:]]
        assert {run.head_sha for run in dispatched} == {skipped}  # GitHub gives them the branch head
        assert {d.inputs["commit"] for d in chain.emulator.snapshot_dispatches()} == {head}
        assert state_ledger(chain, runs[-1].run_id)["chain"]["commit"] == head
    assert len(smtp.messages) == 1


def test_a_newer_push_with_its_own_chain_supersedes_the_older_one(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, head):
        chain.push()
        first = chain.step()
        assert first is not None and first.outputs["dispatched"] == "true"
        newer = chain.commit("Train longer", {".keeptraining.yml": "epochs: 40\n"})
        newer_run = chain.push()  # starts its own chain while attempt 2 is queued
        assert newer_run is not None
        second = chain.step()
        assert second is not None
        assert second.returncode == 0, second.log[-4000:]
        assert (second.outputs["attempt"], second.outputs["chain-status"]) == ("2", "superseded")
        assert second.outputs["dispatched"] == "false"
        assert (
            f"::notice title=Chain superseded::Superseded: commit {newer[:7]} started a newer chain"
            in second.log
        )
        assert len(dispatches_from(chain, second.run_id)) == 0
        rest = chain.run_until_idle()
        assert [(r.run_id, r.outputs["chain-status"]) for r in rest] == [(newer_run.id, "reached")]
        assert [s.state for s in chain.emulator.statuses if s.sha == head][-1] == "error"
        assert [s.state for s in chain.emulator.statuses if s.sha == newer][-1] == "success"
    subjects = [str(m.message["Subject"]) for m in smtp.messages]
    assert len(subjects) == 2
    assert f"Superseded: commit {newer[:7]} started a newer chain" in subjects[0]
    assert "Threshold reached: accuracy" in subjects[1]


def test_an_expired_artifact_fails_the_attempt_clearly_with_a_mail(
    tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str
) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, head):
        chain.push()
        first = chain.step()
        assert first is not None and first.returncode == 0
        chain.box.results.artifacts.expire(first.run_id, STATE)  # its retention passed
        second = chain.step()
        assert second is not None and second.returncode != 0
        assert (second.outputs["chain-status"], second.outputs["attempt"]) == ("failed", "2")
        error = (
            f"::error title=Chain state not restored::run {first.run_id} cannot be resumed: its "
            f"{STATE} artifact expired"
        )
        assert error in second.log and "Start a fresh chain" in second.log
        assert "Downloading single artifact" not in second.log
        assert chain.run_until_idle() == []
        assert [s.state for s in chain.emulator.statuses if s.sha == head][-1] == "failure"
        assert state_ledger(chain, second.run_id)["attempts"][-1]["outcome"] == "failed"
    (mail,) = smtp.messages
    assert "Attempt 2 failed" in str(mail.message["Subject"])
    body = mail.content.decode("utf-8", "replace")
    assert "expired" in body and "Start a fresh chain" in body
