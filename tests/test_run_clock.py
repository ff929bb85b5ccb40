"""The run's start (run_started_at) over real HTTP: PyGithub -> the local GitHub emulator. No mocks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from keeptraining.engine import cost
from keeptraining.github.dispatch import GitHubContext
from keeptraining.github.run_clock import run_started_at
from services.github_emulator import EmulatedWorkflow, GitHubEmulator, OpenAPISubset

TOKEN = "ghs_RunClock0Secret1Token2Value3XYZ"


@pytest.fixture
def emu() -> Iterator[GitHubEmulator]:
    workflow = EmulatedWorkflow(id=7, name="Continuous training", path=".github/workflows/ct.yml", inputs={})
    with GitHubEmulator(subset=OpenAPISubset(), workflows=[workflow], tokens={TOKEN}) as emulator:
        yield emulator
        assert emulator.violations == []


def ctx(emu: GitHubEmulator, run_id: str | None, token: str = TOKEN) -> GitHubContext:
    return GitHubContext(
        api_url=emu.url,
        token=token,
        repository=emu.full_name,
        workflow="ct.yml",
        ref="main",
        server_url=emu.server_url,
        run_id=run_id,
    )


def test_the_run_start_is_read_through_the_api(emu: GitHubEmulator) -> None:
    run = emu.add_run(7, status="queued", conclusion=None)
    emu.set_run(run.id, status="in_progress")  # GitHub sets run_started_at when the run starts
    found = run_started_at(ctx(emu, str(run.id)))
    assert found is not None
    expected = dt.datetime.fromisoformat(run.run_started_at.replace("Z", "+00:00"))
    assert dt.datetime.fromisoformat(found) == expected
    # what an attempt's minutes then count from
    started = cost.parse_time(found)
    assert started is not None
    assert cost.job_start({"started_at": found}, {}, started + 120) == (started, "run_started_at")


@pytest.mark.parametrize("run_id", [None, "", "not-a-number", "999999"])
def test_an_unknown_run_gives_no_start(
    emu: GitHubEmulator, run_id: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_started_at(ctx(emu, run_id)) is None
    assert TOKEN not in "".join(capsys.readouterr())


def test_a_refused_token_gives_no_start_and_no_error(emu: GitHubEmulator) -> None:
    run = emu.add_run(7)
    assert run_started_at(ctx(emu, str(run.id), token="ghs_wrong")) is None
    assert run_started_at(None) is None
