"""End to end: the real workflow files under act, the local GitHub emulator, a real SMTP server.

Each test makes a fresh git repository, starts a chain with ``act push`` and replays
every dispatch the emulator receives as the next ``act workflow_dispatch`` run
(``act_driver.ActChain``), then checks the chain: epochs, attempts, resumes,
dispatches, outputs and the one mail at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from act_driver import (
    CT_WORKFLOW,
    ActChain,
    consumer_repo,
    copy_project,
    declared_inputs,
    init_repo,
    readme_workflow,
)
from github_emulator import EmulatedWorkflow, GitHubEmulator
from smtp_server import Certs, SmtpTestServer, make_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

TOKEN = "ghs_e2eTokenValue0123456789abcdef"
SMTP_USER = "trainer@example.org"
SMTP_PASSWORD = "e2e-Sm7p-pa55word"
FULL_NAME = "acme/keeptraining"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def smtp(certs: Certs) -> Iterator[SmtpTestServer]:
    with SmtpTestServer("starttls", certs=certs, user=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


def secrets_for(smtp: SmtpTestServer) -> dict[str, str]:
    return {"GITHUB_TOKEN": TOKEN, "SMTP_SERVER": "localhost", "SMTP_PORT": str(smtp.port),
            "SMTP_USERNAME": SMTP_USER, "SMTP_PASSWORD": SMTP_PASSWORD,
            "MAIL_FROM": "keeptraining@example.org", "MAIL_TO": "dev1@example.org, dev2@example.org"}


def emulator_for(repo: Path, head: str) -> GitHubEmulator:
    workflow = EmulatedWorkflow(id=161_335, name="Continuous training", path=CT_WORKFLOW,
                                inputs=declared_inputs(repo / CT_WORKFLOW))
    return GitHubEmulator(FULL_NAME, head_sha=head, workflows=[workflow], tokens={TOKEN})


def stored_ledger(chain: ActChain, commit: str, attempt: int) -> dict[str, Any]:
    path = chain.store / commit / f"attempt-{attempt}" / "ledger.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_push_starts_a_chain_that_resumes_until_the_threshold(
        tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str) -> None:
    repo = copy_project(tmp_path / "repo")
    head = init_repo(repo, FULL_NAME)
    with emulator_for(repo, head) as emulator:
        chain = ActChain(repo, emulator, tmp_path / "work", secrets=secrets_for(smtp),
                         env={"KT_SMTP_CAFILE": str(certs.ca_cert)},
                         variables={"KEEPTRAINING_BASE_IMAGE": docker_base_image})
        chain.work.mkdir()
        runs = chain.run_chain(max_runs=10)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        assert len(runs) >= 2, "the default sample model must need more than one attempt"
        assert [r.outputs["attempt"] for r in runs] == [str(n) for n in range(1, len(runs) + 1)]
        assert [r.outputs["dispatched"] for r in runs] == ["true"] * (len(runs) - 1) + ["false"]
        assert runs[-1].outputs["threshold-reached"] == "true"
        assert all(r.outputs["threshold-reached"] == "false" for r in runs[:-1])
        assert runs[-1].outputs["chain-status"] == "reached"
        # Each dispatch asked for exactly the next attempt, on the chain's commit.
        dispatches = emulator.snapshot_dispatches()
        assert len(dispatches) == len(runs) - 1
        for n, record in enumerate(dispatches, start=2):
            assert record.ref in ("main", "refs/heads/main")
            assert record.inputs["attempt"] == str(n)
            assert record.inputs["epochs"] == str(10 * n)
            assert record.inputs["commit"] == head
        assert emulator.violations == []
        # Every attempt after the first resumed the previous checkpoint and trained only the added epochs.
        ledger = stored_ledger(chain, head, len(runs))
        attempts = ledger["attempts"]
        assert [a["epochs"] for a in attempts] == [10 * n for n in range(1, len(runs) + 1)]
        for previous, current in itertools.pairwise(attempts):
            assert current["initial_epoch"] == previous["epochs_reached"]
            assert current["resumed_from"] == f"attempt-{previous['attempt']:03d}/model.keras"
            assert current["params"]["backend"] == "docker"
        assert ledger["chain"]["commit"] == head
    # Exactly one mail, at the end, to both recipients, over STARTTLS with AUTH.
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail.tls and mail.authenticated
    assert sorted(mail.rcpt_tos) == ["dev1@example.org", "dev2@example.org"]
    assert "Threshold reached: accuracy" in str(mail.message["Subject"])


CONSUMER_SCRIPT = '''\
"""A consumer's own training script: pure Python, honouring the training contract."""
import json, os
from pathlib import Path

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
def consumer_chain(tmp_path: Path, base_image: str, smtp: SmtpTestServer, certs: Certs,
                   config: str = "") -> Iterator[tuple[ActChain, str]]:
    """A consumer repository, its emulated GitHub and an act driver: (chain, head commit)."""
    repo = consumer_repo(tmp_path / "consumer", base_image, workflow=readme_workflow(),
                         script=CONSUMER_SCRIPT, config=config)
    head = init_repo(repo, FULL_NAME)
    with emulator_for(repo, head) as emulator:
        chain = ActChain(repo, emulator, tmp_path / "work", secrets=secrets_for(smtp),
                         env={"KT_SMTP_CAFILE": str(certs.ca_cert)})
        chain.work.mkdir()
        yield chain, head


def test_consumer_repository_uses_the_action_from_the_readme(
        tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, _head):
        runs = chain.run_chain(max_runs=8)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        # 1 - 0.6 * 0.95**e first reaches 0.9 at epoch 35: attempts of 10, 20, 30, 40 epochs.
        assert [r.outputs["epochs"] for r in runs] == ["10", "20", "30", "40"]
        assert runs[-1].outputs["threshold-reached"] == "true"
        assert "Model ready with accuracy" in runs[-1].log
        assert "Model ready with accuracy" not in runs[0].log
    assert len(smtp.messages) == 1


def test_unreachable_threshold_stops_at_max_attempts(
        tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str) -> None:
    config = "max_attempts: 3\nhyperparameters:\n  ceiling: 0.8\n"
    with consumer_chain(tmp_path, docker_base_image, smtp, certs, config) as (chain, _head):
        emulator = chain.emulator
        runs = chain.run_chain(max_runs=8)
        assert [r.returncode for r in runs] == [0, 0, 0]
        assert [r.outputs["attempt"] for r in runs] == ["1", "2", "3"]
        assert runs[-1].outputs["chain-status"] == "exhausted"
        assert runs[-1].outputs["dispatched"] == "false"
        assert len(emulator.snapshot_dispatches()) == 2
    assert len(smtp.messages) == 1
    assert "Threshold not reached after 3 attempts" in str(smtp.messages[0].message["Subject"])


def test_newer_push_mid_chain_stops_the_older_chain(
        tmp_path: Path, smtp: SmtpTestServer, certs: Certs, docker_base_image: str) -> None:
    with consumer_chain(tmp_path, docker_base_image, smtp, certs) as (chain, head):
        emulator = chain.emulator
        first = chain.act("push", {"ref": "refs/heads/main", "after": head})
        assert first.returncode == 0 and first.outputs["dispatched"] == "true"
        newer = emulator.push()  # someone pushes while attempt 2 is queued
        (dispatch,) = emulator.snapshot_dispatches()
        second = chain.act("workflow_dispatch", {"ref": "refs/heads/main",
                                                 "inputs": {k: str(v) for k, v in dispatch.inputs.items()}})
        assert second.returncode == 0, second.log[-4000:]
        assert second.outputs["attempt"] == "2"
        assert second.outputs["dispatched"] == "false"
        assert f"moved to {newer[:7]}" in second.log
        assert len(emulator.snapshot_dispatches()) == 1
    assert smtp.messages == []  # the chain did not end: it was superseded, no verdict to mail
