"""Static hygiene of what users run: workflows, the action, pins, the training image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action" / "action.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def steps_of(path: Path) -> list[dict[str, Any]]:
    data = load(path)
    if "runs" in data:
        steps: list[dict[str, Any]] = data["runs"]["steps"]
        return steps
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_remote_actions_are_pinned_to_a_full_sha_with_a_version_comment(path: Path) -> None:
    text = path.read_text()
    for step in steps_of(path):
        uses = step.get("uses", "")
        if not uses or uses.startswith("./"):
            continue
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a full commit SHA"
        assert re.search(rf"{re.escape(uses)} # v\d+\.\d+\.\d+", text), f"{uses} lacks a # vX.Y.Z comment"


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_shell_script(path: Path) -> None:
    for step in steps_of(path):
        assert "${{" not in step.get("run", ""), f"{path.name}: step {step.get('name')!r} expands ${{{{ }}}}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_permissions_are_empty_by_default_and_granted_per_job(path: Path) -> None:
    data = load(path)
    assert data["permissions"] == {}
    for name, job in data["jobs"].items():
        assert "permissions" in job, f"job {name} has no explicit permissions"
        assert set(job["permissions"].values()) <= {"read", "write"}
        assert "timeout-minutes" in job, f"job {name} has no timeout"
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_training_workflow_has_least_permissions_and_a_chain_concurrency_group() -> None:
    data = load(ROOT / ".github" / "workflows" / "continuous-training.yml")
    (job,) = data["jobs"].values()
    assert job["permissions"] == {"contents": "read", "actions": "write"}
    assert data["concurrency"]["cancel-in-progress"] is False
    assert "inputs.commit" in data["concurrency"]["group"]
    assert re.search(r"attempt \$\{\{ inputs\.attempt", data["run-name"]), "re-run protection reads run-name"


def test_every_action_input_reaches_the_shell_only_through_env() -> None:
    action = load(ACTION)
    train = next(s for s in action["runs"]["steps"] if s.get("id") == "attempt")
    passed = " ".join(str(v) for v in train["env"].values())
    for name in action["inputs"]:
        if name in {"resume-run-id"}:  # used by the restore step only
            continue
        assert f"inputs.{name} }}}}" in passed, f"input {name} is not passed to the training step"


def test_secrets_are_masked_before_anything_else_runs() -> None:
    first = load(ACTION)["runs"]["steps"][0]
    assert "add-mask" in first["run"]
    assert set(first["env"].values()) == {"${{ inputs.smtp-password }}", "${{ inputs.github-token }}"}


@pytest.mark.parametrize("path", [ROOT / "requirements.txt", ROOT / "action" / "constraints.txt",
                                  ROOT / ".ci" / "requirements-dev.txt"], ids=lambda p: p.name)
def test_pip_installs_pinned_versions(path: Path) -> None:
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"{path.name}: {line} is not pinned"


def test_training_image_runs_as_non_root() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
