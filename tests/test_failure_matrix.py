"""Every way an attempt can fail leaves step outputs, a job summary and a mail.

``keeptraining attempt`` as the action's step runs it (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY,
the GitHub emulator for dispatches, a real aiosmtpd server for the mail), once per failure
kind: training, metric, image build, no engine, a configuration problem found late, a
hostile restored ledger, dispatch, and a bug. Each asserts the exit code, the outputs
(``chain-status: failed``), the summary's error, the mail, and what the ledger holds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakes import fake_repo
from keeptraining.cli import main
from keeptraining.contract import metrics
from keeptraining.engine import strategy
from keeptraining.github import dispatch
from keeptraining.state import ledger
from services.github_emulator import GitHubEmulator
from services.smtp_server import SmtpTestServer
from test_attempt_step import HEAD, TOKEN, read_outputs

pytestmark = pytest.mark.integration


@dataclass
class Case:
    repo: Path
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    emulator: GitHubEmulator
    request: pytest.FixtureRequest


@dataclass(frozen=True)
class Expect:
    code: int
    title: str
    text: str
    recorded: str | None  # the ledger's last outcome for this attempt, None: the ledger is untouched


def training(case: Case) -> None:
    case.monkeypatch.setenv("FAKE_MODE", "crash")


def metric(case: Case) -> None:
    case.monkeypatch.setenv("FAKE_MODE", "nometric")


def image_build(case: Case) -> None:
    base = case.request.getfixturevalue("docker_base_image")
    (case.repo / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo matrix-build-marker && exit 7\n"
    )
    case.monkeypatch.setenv("KT_INPUT_BACKEND", "docker")
    case.monkeypatch.setenv("KT_INPUT_BASE_IMAGE", base)


def no_engine(case: Case) -> None:
    case.monkeypatch.setenv("KT_INPUT_BACKEND", "docker")
    case.monkeypatch.setenv("DOCKER_HOST", f"unix://{case.tmp_path}/no-engine.sock")


def configuration_found_late(case: Case) -> None:
    case.monkeypatch.setenv("KT_INPUT_CODE_PATH", "no-such-folder")


def hostile_ledger(case: Case) -> None:
    assert main(["attempt", "--repo", str(case.repo)]) == 0  # attempt 1 (and its dispatch)
    path = case.repo / ".keeptraining" / "ledger.json"
    data = json.loads(path.read_text())
    data["attempts"][0]["checkpoint"] = "../../victim.txt"
    path.write_text(json.dumps(data))
    case.monkeypatch.setenv("KT_INPUT_ATTEMPT", "2")
    (case.tmp_path / "out.txt").unlink()
    (case.tmp_path / "summary.md").unlink()


def dispatch_fails(case: Case) -> None:
    case.monkeypatch.setattr(
        dispatch, "dispatch_next", functools.partial(dispatch.dispatch_next, sleep=lambda _s: None)
    )
    case.emulator.fail_next("dispatch", 503, times=50)


def bug_while_training(case: Case) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in reading metrics")

    case.monkeypatch.setattr(metrics, "read", broken)


def bug_before_training(case: Case) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in planning")

    case.monkeypatch.setattr(strategy, "plan", broken)


CASES: list[Any] = [
    pytest.param(training, Expect(1, "Training failed", "exited with code 3", "failed"), id="training"),
    pytest.param(metric, Expect(1, "No usable metric", "reported no accuracy", "failed"), id="metric"),
    pytest.param(
        image_build,
        Expect(1, "Training image build failed", "non-zero code: 7", "failed"),
        id="image-build",
        marks=pytest.mark.docker,
    ),
    pytest.param(
        no_engine,
        Expect(1, "Training backend unavailable", "No Docker engine answers", "failed"),
        id="no-engine",
    ),
    pytest.param(
        configuration_found_late,
        Expect(2, "Invalid keeptraining configuration", "no such folder", None),
        id="config-late",
    ),
    pytest.param(
        hostile_ledger,
        Expect(4, "Chain ledger problem", "not a relative path inside", None),
        id="hostile-ledger",
    ),
    pytest.param(
        dispatch_fails, Expect(1, "Dispatch of the next attempt failed", "503", "below"), id="dispatch"
    ),
    pytest.param(
        bug_while_training,
        Expect(70, "keeptraining internal error", "RuntimeError: a bug in reading metrics", "failed"),
        id="bug-while-training",
    ),
    pytest.param(
        bug_before_training,
        Expect(70, "keeptraining internal error", "RuntimeError: a bug in planning", None),
        id="bug-before-training",
    ),
]


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer("plain") as server:
        yield server


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    with GitHubEmulator("acme/models", head_sha=HEAD, tokens={TOKEN}) as emu:
        yield emu


@pytest.mark.parametrize(("arrange", "expect"), CASES)
def test_every_failure_leaves_outputs_summary_and_mail(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    emulator: GitHubEmulator,
    smtp: SmtpTestServer,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    arrange: Callable[[Case], None],
    expect: Expect,
) -> None:
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "out.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_SHA": HEAD,
        "GITHUB_REF_NAME": "main",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_API_URL": emulator.url,
        "GITHUB_SERVER_URL": emulator.server_url,
        "GITHUB_WORKFLOW_REF": "acme/models/.github/workflows/continuous-training.yml@refs/heads/main",
        "KT_GITHUB_TOKEN": TOKEN,
        "KT_INPUT_DISPATCH": "true",
        "KT_INPUT_THRESHOLD": "0.9",
        "KT_INPUT_SMTP_SERVER": smtp.host,
        "KT_INPUT_SMTP_PORT": str(smtp.port),
        "KT_INPUT_SMTP_SECURITY": "none",
        "KT_INPUT_MAIL_TO": "dev@example.org",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("KT_SMTP_PASSWORD", "FAKE_MODE", "KT_INPUT_ATTEMPT", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    repo = fake_repo(tmp_path / "repo")
    victim = tmp_path / "victim.txt"
    victim.write_text("outside the state folder")
    arrange(Case(repo, tmp_path, monkeypatch, emulator, request))
    ledger_file = repo / ".keeptraining" / "ledger.json"
    before = ledger_file.read_bytes() if ledger_file.exists() else None
    capsys.readouterr()

    code = main(["attempt", "--repo", str(repo)])

    out = capsys.readouterr().out
    assert code == expect.code, out
    assert f"::error title={expect.title}::" in out
    outputs = read_outputs(tmp_path / "out.txt")
    assert outputs["chain-status"] == "failed" and outputs["dispatched"] == "false"
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## ❌ keeptraining:") and "failed\\:" in summary.splitlines()[0]
    assert f"**{expect.title}:**" in summary
    assert expect.text.split(":")[0] in summary.replace("\\", "")
    (mail,) = smtp.messages
    assert "failed:" in str(mail.message["Subject"]) and mail.rcpt_tos == ["dev@example.org"]
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None and expect.text.split(":")[0] in body.get_content()
    if expect.recorded is None:
        assert (ledger_file.read_bytes() if ledger_file.exists() else None) == before, "ledger untouched"
    else:
        last = ledger.load(repo / ".keeptraining").attempts[-1]
        assert last.outcome == expect.recorded
        assert last.error is not None and expect.text.split(":")[0] in last.error
        assert "interrupted" not in last.error
    assert victim.read_text() == "outside the state folder"
