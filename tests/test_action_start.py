"""The action's first step ("Note the start"), run as the runner runs it (bash, with GITHUB_OUTPUT):
Linux runners only, and the suffix that names a run attempt's artifacts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ACTION = Path(__file__).resolve().parent.parent / "action" / "action.yml"


def start_step() -> str:
    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    (step,) = [s for s in steps if s.get("id") == "start"]
    return str(step["run"])


def run_start(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output = tmp_path / "output"
    output.write_text("")
    base = {k: v for k, v in os.environ.items() if k not in ("RUNNER_OS", "GITHUB_RUN_ATTEMPT")}
    done = subprocess.run(
        ["bash", "-e", "-c", start_step()],
        capture_output=True,
        text=True,
        check=False,
        env={**base, "GITHUB_OUTPUT": str(output), **env},
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done, outputs


@pytest.mark.parametrize("runner_os", ["macOS", "Windows"])
def test_the_action_stops_at_once_on_a_runner_that_is_not_linux(tmp_path: Path, runner_os: str) -> None:
    done, outputs = run_start(tmp_path, RUNNER_OS=runner_os)
    assert done.returncode == 1 and outputs == {}
    title = "::error title=keeptraining needs a Linux runner::"
    assert done.stdout.startswith(f"{title}This job runs on {runner_os}.")
    assert "runs-on: ubuntu-latest" in done.stdout


@pytest.mark.parametrize(
    ("attempt", "suffix"),
    [("", ""), ("1", ""), ("2", "-attempt-2"), ("17", "-attempt-17"), ("2; rm -rf /", ""), ("0", "")],
)
def test_a_run_attempts_artifacts_carry_its_number_from_the_second_on(
    tmp_path: Path, attempt: str, suffix: str
) -> None:
    done, outputs = run_start(tmp_path, RUNNER_OS="Linux", GITHUB_RUN_ATTEMPT=attempt)
    assert done.returncode == 0, done.stderr
    assert outputs["artifact-suffix"] == suffix and outputs["started"].isdigit()


def test_the_uploads_and_downloads_name_and_pick_artifacts_per_run_attempt() -> None:
    """Both uploads carry the attempt's suffix; both downloads go by the ids the check step chose, the
    merge's with the token and this run's id (the internal API would see only this attempt's)."""
    steps = {s["name"]: s for s in yaml.safe_load(ACTION.read_text())["runs"]["steps"]}
    suffix = "${{ steps.start.outputs.artifact-suffix }}"
    assert steps["Save the chain state"]["with"]["name"] == f"keeptraining-state{suffix}"
    assert steps["Save this trial's result"]["with"]["name"].endswith(suffix)
    state = steps["Restore the chain state"]["with"]
    assert state["artifact-ids"] == "${{ steps.check.outputs.state-artifact-id }}" and "name" not in state
    trials = steps["Download the round's trials"]["with"]
    assert trials["artifact-ids"] == "${{ steps.check.outputs.trial-artifact-ids }}"
    assert trials["run-id"] == "${{ github.run_id }}"
    assert trials["github-token"] == "${{ inputs.github-token }}"


def test_the_action_and_the_reusable_workflow_name_the_run_attempts_state_artifact() -> None:
    suffix = "${{ steps.start.outputs.artifact-suffix }}"
    outputs = yaml.safe_load(ACTION.read_text())["outputs"]
    assert outputs["state-artifact"]["value"] == f"keeptraining-state{suffix}"
    reusable = ACTION.parent.parent / ".github" / "workflows" / "keeptraining.yml"
    workflow = yaml.safe_load(reusable.read_text())
    called = workflow[True]["workflow_call"]["outputs"]  # YAML 1.1 reads the key `on` as True
    assert called["state-artifact"]["value"] == "${{ jobs.train.outputs.state-artifact }}"
    job = workflow["jobs"]["train"]["outputs"]
    assert job["state-artifact"] == "${{ steps.train.outputs.state-artifact }}"


def test_the_publish_job_downloads_the_state_of_its_own_run_attempt() -> None:
    reusable = ACTION.parent.parent / ".github" / "workflows" / "keeptraining.yml"
    steps = yaml.safe_load(reusable.read_text())["jobs"]["publish"]["steps"]
    (download,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    assert download["with"]["name"] == "${{ needs.train.outputs.state-artifact }}"
