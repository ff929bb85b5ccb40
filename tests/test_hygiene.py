"""Static hygiene of what users run: workflows, the action, pins, the training image."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from services.act_driver import readme_workflow
from services.github_box import evaluate

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action" / "action.yml"
PUBLISH_ACTION = ROOT / "action" / "publish" / "action.yml"  # the publish job's composite action
CT_WORKFLOW = ROOT / ".github" / "workflows" / "continuous-training.yml"
CHAIN_WORKFLOW = ROOT / ".github" / "workflows" / "keeptraining.yml"  # the chain's jobs, reusable
PARALLEL_WORKFLOW = ROOT / ".github" / "workflows" / "parallel-training.yml"  # a round of parallel trials
PUBLISH_WORKFLOW = ROOT / ".github" / "workflows" / "publish-model.yml"  # a round's model, released
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
#: The reusable workflow runs this repository's own action at the release it ships in (a file cannot
#: hold its own commit's hash): README's placeholder owner and the release tag README names.
SELF_AT_RELEASE = "OWNER/keeptraining/action@v1"
PUBLISH_AT_RELEASE = "OWNER/keeptraining/action/publish@v1"  # the same release's publish action
#: What the publish job's own permissions are (no other job holds contents: write).
PUBLISH_PERMISSIONS = {"contents": "write", "id-token": "write", "attestations": "write"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def steps_of(path: Path) -> list[dict[str, Any]]:
    data = load(path)
    if "runs" in data:
        steps: list[dict[str, Any]] = data["runs"]["steps"]
        return steps
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION, PUBLISH_ACTION], ids=lambda p: str(p.relative_to(ROOT)))
def test_remote_actions_are_pinned_to_a_full_sha_with_a_version_comment(path: Path) -> None:
    text = path.read_text()
    for step in steps_of(path):
        uses = step.get("uses", "")
        if not uses or uses.startswith("./") or uses in (SELF_AT_RELEASE, PUBLISH_AT_RELEASE):
            continue
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a full commit SHA"
        assert re.search(rf"{re.escape(uses)} # v\d+\.\d+\.\d+", text), f"{uses} lacks a # vX.Y.Z comment"


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION, PUBLISH_ACTION], ids=lambda p: str(p.relative_to(ROOT)))
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
        if "uses" in job:  # it calls a reusable workflow, whose jobs have the timeouts and steps
            continue
        assert "timeout-minutes" in job, f"job {name} has no timeout"
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_the_reusable_workflow_runs_the_action_of_the_release_readme_names() -> None:
    rounds = load(PARALLEL_WORKFLOW)["jobs"]
    assert [s["uses"] for s in rounds["trial"]["steps"]] == [SELF_AT_RELEASE]  # the trial job's
    assert [s["uses"] for s in rounds["merge"]["steps"]] == [SELF_AT_RELEASE]  # the merge job's
    assert set(rounds) == {"trial", "merge"}  # the release is the caller's job (publish-model.yml)
    own = [
        s["uses"] for s in load(PUBLISH_WORKFLOW)["jobs"]["publish"]["steps"] if "keeptraining" in s["uses"]
    ]
    assert own == [PUBLISH_AT_RELEASE]
    jobs = load(CHAIN_WORKFLOW)["jobs"]
    assert [s["uses"] for s in jobs["train"]["steps"]] == [SELF_AT_RELEASE]  # the train job's
    own = [s["uses"] for s in jobs["publish"]["steps"] if "keeptraining" in s["uses"]]
    assert own == [PUBLISH_AT_RELEASE]
    assert [s["uses"] for s in jobs["pr-check"]["steps"]] == [SELF_AT_RELEASE]  # the pull-request job's
    assert "uses: OWNER/keeptraining/.github/workflows/keeptraining.yml@v1" in readme_workflow()
    assert "uses: ./.github/workflows/keeptraining.yml" in CT_WORKFLOW.read_text()
    assert "uses: OWNER/keeptraining/.github/workflows/parallel-training.yml@v1" in readme_workflow(
        "### Parallel trials"
    )


@pytest.mark.parametrize(
    "text",
    [CT_WORKFLOW.read_text(), readme_workflow(), readme_workflow("### Parallel trials")],
    ids=["own", "README", "README-parallel"],
)
def test_training_workflow_has_least_permissions_and_per_attempt_concurrency_groups(text: str) -> None:
    data = yaml.safe_load(text)
    jobs = data["jobs"]
    (job,) = [
        j for name, j in jobs.items() if name != "publish"
    ]  # the chain's job; a round's release follows
    least = {"contents": "read", "actions": "write", "statuses": "write"}
    if "image-registry: ghcr.io/" in text:  # the image, pushed once per chain with the workflow's token
        least["packages"] = "write"
    if job.get("uses", "").endswith(("/keeptraining.yml@v1", "/keeptraining.yml")):
        # The chain's reusable workflow: its train job holds the job-level group, and asks for the
        # permissions (packages: write for image-registry); a caller can only grant them all.
        job = load(CHAIN_WORKFLOW)["jobs"]["train"]
        least["packages"] = "write"
        # The caller grants the union of its jobs' permissions: the train job's, the publish job's and
        # the pull-request job's.
        union = {**least, **PUBLISH_PERMISSIONS, "pull-requests": "write"}
        assert yaml.safe_load(text)["jobs"]["keeptraining"]["permissions"] == union
    elif job.get("uses", "").endswith("/parallel-training.yml@v1"):
        # A round's reusable workflow: each of its jobs fits in what the calling job grants (GitHub checks
        # every called job, skipped or not, before the run starts), and the grant is 1.0.0's: nothing a
        # caller written for 1.0.0 lacks. The release is a job of the caller's own, with its own grant.
        level = {"read": 1, "write": 2}
        for name, each in load(PARALLEL_WORKFLOW)["jobs"].items():
            for scope, asked in each["permissions"].items():
                assert level[asked] <= level.get(least.get(scope, ""), 0), f"{name}: {scope}: {asked}"
        publish = jobs["publish"]
        assert publish["uses"] == "OWNER/keeptraining/.github/workflows/publish-model.yml@v1"
        assert (
            publish["permissions"]
            == PUBLISH_PERMISSIONS
            == load(PUBLISH_WORKFLOW)["jobs"]["publish"]["permissions"]
        )
        assert publish["needs"] == "train"
        assert publish["if"] == "${{ !cancelled() && needs.train.outputs.threshold-reached == 'true' }}"
        assert publish["with"] == {
            "state-artifact": "${{ needs.train.outputs.state-artifact }}",
            "commit": "${{ needs.train.outputs.commit }}",
        }
    assert job["permissions"] == least
    assert data["concurrency"]["cancel-in-progress"] is False
    assert job["concurrency"]["cancel-in-progress"] is False
    assert re.search(r"attempt (\$\{\{ inputs\.attempt|\{0\}[^']*',\s*inputs\.attempt)", data["run-name"]), (
        "re-run protection reads run-name"
    )

    # A dispatched attempt queues in its parent's job group, which nothing else enters: a push, a
    # manual run (even on the same commit) and a re-run each get a group of their own (GitHub keeps
    # one pending run per group and cancels the older one).
    def groups(run_id: str, **inputs: str) -> tuple[str, str]:
        contexts = {"github": {"run_id": run_id}, "inputs": inputs}
        workflow_group = evaluate(data["concurrency"]["group"], contexts)
        return workflow_group, evaluate(job["concurrency"]["group"], contexts)

    push_group, push_job = groups("101")
    child_group, child_job = groups("102", **{"resume-run-id": "101", "attempt": "2"})
    manual_group, manual_job = groups("103", attempt="1")
    assert child_group == push_job
    assert len({push_group, push_job, child_job, manual_group, manual_job}) == 5
    assert push_group != push_job and child_group != child_job, "the same group twice in one run deadlocks"


@pytest.mark.parametrize(
    ("path", "before"),
    [(CHAIN_WORKFLOW, "train"), (PUBLISH_WORKFLOW, None)],
    ids=["keeptraining", "publish-model"],
)
def test_only_the_publish_job_writes_contents_and_it_never_checks_out_or_runs_the_code(
    path: Path, before: str | None
) -> None:
    """The chain's publish job follows its train job; publish-model.yml's (a round's release, called by the
    caller's job after the round) takes the same values as inputs: the same job, pins and least privilege."""
    jobs = load(path)["jobs"]
    publish = jobs["publish"]
    given = (
        (lambda name: f"${{{{ needs.{before}.outputs.{name} }}}}")
        if before
        else (lambda name: f"${{{{ inputs.{name} }}}}")
    )
    assert publish["permissions"] == PUBLISH_PERMISSIONS
    writers = [name for name, job in jobs.items() if job["permissions"].get("contents") == "write"]
    assert writers == ["publish"]
    if before:
        assert jobs[before]["permissions"]["contents"] == "read"
        assert publish["needs"] == before
        assert f"needs.{before}.outputs.threshold-reached == 'true'" in publish["if"]
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in publish["if"]
    uses = [s.get("uses", "") for s in publish["steps"]]
    assert not any("actions/checkout" in u for u in uses) and not any("run" in s for s in publish["steps"])
    assert uses[0].startswith("actions/download-artifact@") and publish["steps"][0]["with"]["name"] == given(
        "state-artifact"
    )  # this run attempt's (names are unique per attempt)
    (own,) = [s for s in publish["steps"] if s.get("uses") == PUBLISH_AT_RELEASE]
    # ... and the publish step names the same artifact in what it says (not this job's run attempt's).
    assert own["with"]["state-artifact"] == given("state-artifact")
    assert own["with"]["commit"] == given("commit")  # the state must name it
    assert own["with"]["default-branch"] == "${{ github.event.repository.default_branch }}"
    attest = publish["steps"][-1]
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    assert attest["if"] == "steps.publish.outputs.attest == 'true'"  # skipped without an OIDC token
    # Both publish jobs are one job: the same steps, pins and outputs (the chain's is the reference).
    chain = load(CHAIN_WORKFLOW)["jobs"]["publish"]
    assert uses == [s.get("uses", "") for s in chain["steps"]]
    assert [s.get("if") for s in publish["steps"]] == [s.get("if") for s in chain["steps"]]
    assert publish["outputs"] == chain["outputs"]
    assert (publish["runs-on"], publish["timeout-minutes"]) == (chain["runs-on"], chain["timeout-minutes"])
    called = yaml.safe_load(path.read_text())[True]["workflow_call"]
    assert called["outputs"]["release-tag"]["value"] == "${{ jobs.publish.outputs.tag }}"
    assert called["outputs"]["release-url"]["value"] == "${{ jobs.publish.outputs.release-url }}"
    if not before:  # what the caller passes: parallel-training.yml's outputs, its merge job's (the action's)
        assert set(called["inputs"]) == {"state-artifact", "commit"}
        rounds = yaml.safe_load(PARALLEL_WORKFLOW.read_text())[True]["workflow_call"]["outputs"]
        merge = load(PARALLEL_WORKFLOW)["jobs"]["merge"]["outputs"]
        for name in ("threshold-reached", "state-artifact", "commit"):
            assert rounds[name]["value"] == f"${{{{ jobs.merge.outputs.{name} }}}}"
            assert merge[name] == f"${{{{ steps.merge.outputs.{name} }}}}" and name in load(ACTION)["outputs"]
    composite = load(PUBLISH_ACTION)["runs"]["steps"]
    assert not any("actions/checkout" in s.get("uses", "") for s in composite)
    assert composite[-1]["run"] == '"$KT_BIN/keeptraining" publish --state-dir "$KT_STATE_PATH"'
    assert composite[-1]["env"]["KT_STATE_ARTIFACT"] == "${{ inputs.state-artifact }}"


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


@pytest.mark.parametrize(
    "path",
    [ROOT / "requirements.txt", ROOT / "action" / "constraints.txt", ROOT / ".ci" / "requirements-dev.txt"],
    ids=lambda p: p.name,
)
def test_pip_installs_pinned_versions(path: Path) -> None:
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"{path.name}: {line} is not pinned"


def test_training_image_runs_as_non_root() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def _requires_python(text: str) -> str:
    match = re.search(r'^requires-python = ">=([0-9.]+)"$', text, re.MULTILINE)
    assert match, "requires-python must read >=X.Y (install.sh reads it)"
    return match.group(1)


def test_requires_python_is_what_the_pinned_packages_need() -> None:
    """Every pinned package accepts our minimum Python, and some pin needs that minimum."""
    minimum = Version(_requires_python((ROOT / "action" / "pyproject.toml").read_text()))
    previous = Version(f"{minimum.major}.{minimum.minor - 1}")
    pins = [
        line.split("==")[0]
        for line in (ROOT / "action" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    needs = {name: SpecifierSet(metadata.metadata(name)["Requires-Python"] or "") for name in pins}
    refused = {name for name, spec in needs.items() if not spec.contains(minimum)}
    assert not refused, f"pins that need more than Python {minimum}: {sorted(refused)}"
    assert any(not spec.contains(previous) for spec in needs.values()), (
        f"no pin needs Python {minimum}: requires-python could be lower"
    )


def test_install_refuses_an_older_python_with_a_clear_message(tmp_path: Path) -> None:
    action = tmp_path / "action"
    shutil.copytree(ROOT / "action", action, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pyproject = action / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'requires-python = ">=[0-9.]+"', 'requires-python = ">=3.99"', pyproject.read_text())
    )
    env = {**os.environ, "RUNNER_TOOL_CACHE": str(tmp_path / "cache"), "GITHUB_OUTPUT": ""}
    proc = subprocess.run(
        ["bash", str(action / "install.sh")], capture_output=True, text=True, check=False, env=env
    )
    assert proc.returncode == 1
    found = ".".join(map(str, sys.version_info[:3]))
    assert proc.stdout.strip() == (
        f"::error title=keeptraining needs Python 3.99 or newer::python3 here is {found}. "
        "Add actions/setup-python with python-version: '3.99' (or newer) before this action."
    )
    assert not (tmp_path / "cache").exists(), "nothing is installed"


def test_a_second_install_on_a_shared_tool_cache_waits_for_the_first_and_reuses_it(tmp_path: Path) -> None:
    """Two jobs on one tool cache (self-hosted runners on one machine, act's matrix jobs): the second
    waits for the first's lock, then reuses the environment the first finished, installing nothing."""
    env = {
        **os.environ,
        "RUNNER_TOOL_CACHE": str(tmp_path / "cache"),
        "GITHUB_OUTPUT": "",
        "KT_INPUT_STRATEGY": "",
        "KT_INPUT_CONFIG": "",
    }
    located = _locate(tmp_path, None)
    venv = Path(located["venv"])
    venv.parent.mkdir(parents=True)
    with open(f"{venv}.lock", "w") as lock:  # the first job, installing
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = subprocess.Popen(
            ["bash", str(ROOT / "action" / "install.sh")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path / "work",
            env=env,
        )
        time.sleep(1.5)
        assert second.poll() is None, "the second install did not wait for the first"
        assert not venv.exists(), "the second install touched the environment being installed"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (venv / ".complete").touch()  # the first job's environment, finished
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out
    assert f"keeptraining's environment: reused from this runner's tool cache ({venv})" in out
    assert "bin=" + str(venv / "bin") in out


def test_training_workflow_tells_the_action_its_jobs_time_limit() -> None:
    """Each run stops training in time to save its state only if the action knows the job's limit."""
    data = load(CHAIN_WORKFLOW)
    job = data["jobs"]["train"]
    (step,) = [s for s in job["steps"] if "keeptraining" in s.get("uses", "")]
    assert step["with"]["job-timeout-minutes"] == job["timeout-minutes"] == "${{ inputs.timeout-minutes }}"
    call = yaml.safe_load(CHAIN_WORKFLOW.read_text())[True]["workflow_call"]  # YAML 1.1 reads `on` as True
    assert call["inputs"]["timeout-minutes"]["type"] == "number"


#: What GitHub lets (or makes) only the caller declare; everything else is an input of keeptraining.yml.
CALLER_KEYS = {"name", "run-name", "on", "permissions", "concurrency", "jobs"}
CALLING_JOB_KEYS = {"uses", "permissions", "with", "secrets"}


@pytest.mark.parametrize("text", [CT_WORKFLOW.read_text(), readme_workflow()], ids=["own", "README"])
def test_the_caller_declares_only_what_github_requires_there(text: str) -> None:
    data = yaml.safe_load(text)
    data["on"] = data.pop(True)  # YAML 1.1 reads a bare `on` as True
    assert set(data) == CALLER_KEYS
    assert set(data["on"]["workflow_dispatch"]["inputs"]) == {"epochs", "attempt", "commit", "resume-run-id"}
    (job,) = data["jobs"].values()
    assert set(job) == CALLING_JOB_KEYS
    assert set(job["with"]) <= {"threshold", "image-registry", "base-image"}
    assert set(job["secrets"]) == {
        "SMTP_SERVER",
        "SMTP_PORT",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "MAIL_FROM",
        "MAIL_TO",
    }
    assert len(readme_workflow().splitlines()) <= 40, "README's snippet is what a new user copies"


def test_the_chain_workflow_passes_every_setting_on_and_exposes_every_output() -> None:
    """Each action input a user may set is an input of keeptraining.yml (or a secret) that reaches the
    action; each action output is a job output and a workflow output, for the jobs that follow."""
    data = load(CHAIN_WORKFLOW)
    call = yaml.safe_load(CHAIN_WORKFLOW.read_text())[True]["workflow_call"]  # YAML 1.1: `on` reads as True
    (step,) = data["jobs"]["train"]["steps"]
    action = load(ACTION)
    # Set by keeptraining itself (github-token, dispatch) or by the parallel workflow (the rest).
    internal = {"github-token", "dispatch", "parallel", "role", "trial"}
    secrets = {"smtp-server", "smtp-port", "smtp-username", "smtp-password", "mail-from", "mail-to"}
    for name in set(action["inputs"]) - internal:
        assert name in step["with"], f"the action's input {name} is not passed"
        if name in secrets:
            assert step["with"][name] == f"${{{{ secrets.{name.upper().replace('-', '_')} }}}}"
            assert name.upper().replace("-", "_") in call["secrets"]
        elif name != "job-timeout-minutes":
            assert name in call["inputs"], f"{name} is not an input of keeptraining.yml"
            assert step["with"][name].startswith(f"${{{{ inputs.{name} "), step["with"][name]
    outputs = data["jobs"]["train"]["outputs"]
    pr_outputs = data["jobs"]["pr-check"]["outputs"]
    for name in action["outputs"]:
        if name in PR_ONLY_OUTPUTS:  # role pr-check's: the pull-request job's outputs
            assert pr_outputs[name] == f"${{{{ steps.check.outputs.{name} }}}}"
            assert call["outputs"][name]["value"] == f"${{{{ jobs.pr-check.outputs.{name} }}}}"
            continue
        assert outputs[name] == f"${{{{ steps.train.outputs.{name} }}}}"
        assert call["outputs"][name]["value"] == f"${{{{ jobs.train.outputs.{name} }}}}"
    assert call["outputs"]["run-id"]["value"] == "${{ jobs.train.outputs.run-id }}"


#: Outputs of the action that only role pr-check sets.
PR_ONLY_OUTPUTS = {"passed", "delta"}


@pytest.mark.parametrize("text", [CT_WORKFLOW.read_text(), readme_workflow()], ids=["own", "README"])
def test_pull_requests_are_checked_by_a_job_of_their_own_with_least_permissions(text: str) -> None:
    """The caller triggers on pull_request and grants pull-requests: write; in keeptraining.yml the
    pr-check job alone holds it (with statuses: write), and the chain's jobs skip pull requests."""
    caller = yaml.safe_load(text)
    assert "pull_request" in caller[True]
    assert caller["run-name"].rstrip().endswith("}}"), "a ` #` in run-name starts a YAML comment"
    assert caller["jobs"]["keeptraining"]["permissions"]["pull-requests"] == "write"
    jobs = load(CHAIN_WORKFLOW)["jobs"]
    job = jobs["pr-check"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert jobs["train"]["if"] == "github.event_name != 'pull_request'"
    assert job["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
        "statuses": "write",
        "packages": "read",  # it pulls the chain's image (image-registry), never pushes
    }
    assert [name for name, other in jobs.items() if "pull-requests" in other["permissions"]] == ["pr-check"]
    (step,) = job["steps"]
    assert step["uses"] == SELF_AT_RELEASE and step["with"]["role"] == "pr-check"
    assert step["with"]["job-timeout-minutes"] == job["timeout-minutes"]


#: The action's inputs that decide the training image (its content hash, where it is pulled from) or how
#: the candidate trains in it: a pull request's check passes them as the chain's train job does.
SAME_IMAGE_INPUTS = (
    "backend",
    "dockerfile",
    "base-image",
    "image-registry",
    "code-path",
    "train-command",
    "build-timeout",
    "config",
    "adapt",
    "memory-limit",
    "cpus",
    "gpus",
    "network",
    "cache",
)


def test_a_pull_requests_check_uses_the_chains_training_image() -> None:
    """pr-check passes what the train job passes for the image (image-registry included: it pulls the image
    the chain pushed instead of building it again), and may read packages, never write them."""
    jobs = load(CHAIN_WORKFLOW)["jobs"]
    (train,), (check,) = jobs["train"]["steps"], jobs["pr-check"]["steps"]
    assert set(SAME_IMAGE_INPUTS) <= set(load(ACTION)["inputs"])
    for name in SAME_IMAGE_INPUTS:
        assert check["with"].get(name) == train["with"][name] == f"${{{{ inputs.{name} }}}}", name
    assert jobs["pr-check"]["permissions"]["packages"] == "read"
    assert jobs["train"]["permissions"]["packages"] == "write"  # the caller grants it: read is within


def test_the_fork_report_workflow_never_checks_out_the_pull_request() -> None:
    path = ROOT / ".github" / "workflows" / "keeptraining-pr-report.yml"
    data: dict[Any, Any] = load(path)
    on: dict[str, Any] = data.get("on", data.get(True)) or {}
    assert list(on) == ["workflow_run"] and on["workflow_run"]["workflows"] == ["Continuous training"]
    (job,) = data["jobs"].values()
    assert job["permissions"] == {
        "contents": "read",
        "actions": "read",
        "pull-requests": "write",
        "statuses": "write",
    }
    for step in job["steps"]:
        assert "ref" not in step.get("with", {}) and "repository" not in step.get("with", {}), (
            "checkout of anything but the default branch would run the pull request's code"
        )
        assert "run" not in step
    assert [s["with"]["role"] for s in job["steps"] if s.get("uses") == "./action"] == ["pr-report"]
    assert "pwn request" in path.read_text()


def _locate(tmp_path: Path, config: str | None, **env: str) -> dict[str, str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    if config is not None:
        (work / ".keeptraining.yml").write_text(config)
    proc = subprocess.run(
        ["bash", str(ROOT / "action" / "install.sh"), "--locate"],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
        env={
            **os.environ,
            "RUNNER_TOOL_CACHE": str(tmp_path / "cache"),
            "GITHUB_OUTPUT": "",
            "KT_INPUT_STRATEGY": "",
            "KT_INPUT_CONFIG": "",
            **env,
        },
    )
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


@pytest.mark.parametrize(
    ("config", "env", "search"),
    [
        (None, {}, False),
        ("threshold: 0.9\n", {}, False),
        ("strategy: search\nsearch: {space: {}}\n", {}, True),
        ("strategy: 'search'   # tuned\n", {}, True),
        ("strategy: searching\n", {}, False),
        ("  strategy: search\n", {}, False),  # not the top-level key
        ("strategy: search\n", {"KT_INPUT_STRATEGY": "epochs"}, False),  # the input wins over the file
        (None, {"KT_INPUT_STRATEGY": "search"}, True),
    ],
)
def test_the_search_library_is_installed_only_for_a_search(
    tmp_path: Path, config: str | None, env: dict[str, str], search: bool
) -> None:
    """Optuna (the `search` extra) only when the chain is a search: its own environment and cache key."""
    found = _locate(tmp_path, config, **env)
    assert found["key"].endswith("-search") is search and found["venv"].endswith("-search") is search
    assert found["found"] == "false"


def test_optuna_is_an_extra_and_a_search_without_it_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (ROOT / "action" / "pyproject.toml").read_text()
    dependencies = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "optuna" not in dependencies and 'search = ["optuna>=5.0,<6"]' in text
    from keeptraining.engine import search  # noqa: PLC0415
    from keeptraining.errors import ConfigError  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed
    with pytest.raises(ConfigError, match=r"strategy: search needs Optuna") as caught:
        search.require_optuna()
    assert "pip install 'keeptraining[search]'" in caught.value.hint


def _closure(roots: list[str]) -> set[str]:
    """Normalised names of ``roots`` (requirement strings) and everything they require, read from the
    installed packages' metadata, extras included where a requirement names them."""
    from packaging.requirements import Requirement  # noqa: PLC0415
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    found: set[tuple[str, tuple[str, ...]]] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = sorted(req.extras) or [""]
        if (name, tuple(extras)) in found:
            continue
        found.add((name, tuple(extras)))
        for line in metadata.requires(req.name) or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return {name for name, _ in found}


def test_the_action_pins_no_plotting_stack_and_no_stale_package() -> None:
    """chart.png is drawn by reports/chart_png.py (stdlib): no matplotlib, pillow or numpy in the base
    install, and every pin in constraints.txt is needed by the action or its `search` extra."""
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    text = (ROOT / "action" / "pyproject.toml").read_text()
    dependencies = re.findall(r'"([^"]+)"', text.split("dependencies = [", 1)[1].split("]", 1)[0])
    extra = re.findall(r'"([^"]+)"', text.split("search = [", 1)[1].split("]", 1)[0])
    base, full = _closure(dependencies), _closure(dependencies + extra)
    assert not {"matplotlib", "pillow", "numpy", "fonttools", "kiwisolver", "contourpy"} & base
    lines = (ROOT / "action" / "constraints.txt").read_text().splitlines()
    pins = {canonicalize_name(line.split("==")[0]) for line in lines if line and not line.startswith("#")}
    assert pins - full == set(), "pins nothing installs: remove them from action/constraints.txt"
    assert full - pins == set(), "packages the action installs without a pin in action/constraints.txt"
