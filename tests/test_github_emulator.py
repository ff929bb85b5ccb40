"""The GitHub emulator: it answers like GitHub and checks both directions against the description."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException

from services import git_data
from services.github_emulator import (
    DISPATCH_OP,
    SUBSET_PATH,
    EmulatedWorkflow,
    GitHubEmulator,
    OpenAPISubset,
    WorkflowInput,
)
from services.results_service import Artifact, ArtifactStore, Blob, BlobStore, Identity, RuntimeTokens, utcnow

TOKEN = "ghs_emulatorTestToken0123456789"
DISPATCHES = "/repos/octo-org/keeptraining-demo/actions/workflows/continuous-training.yml/dispatches"
EXPECTED_OPERATIONS = {
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}"),
    ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}"),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    # scripts/release.py (served by services.git_data.ReleaseEmulator)
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("GET", "/repos/{owner}/{repo}/git/matching-refs/{ref}"),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("POST", "/repos/{owner}/{repo}/git/trees"),
    ("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}"),
    ("POST", "/repos/{owner}/{repo}/releases"),
    ("PATCH", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("GET", "/repos/{owner}/{repo}/releases/tags/{tag}"),
    ("GET", "/repos/{owner}/{repo}/releases"),
    ("GET", "/repos/{owner}/{repo}/releases/latest"),
    ("GET", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("GET", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
    ("POST", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
    ("GET", "/repos/{owner}/{repo}/releases/assets/{asset_id}"),
}


@pytest.fixture(scope="module")
def subset() -> OpenAPISubset:
    return OpenAPISubset()


@pytest.fixture
def emu(subset: OpenAPISubset) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(subset=subset) as emulator:
        yield emulator
        assert emulator.violations == [], "the emulator sent responses that do not fit the description"


@pytest.fixture
def gh(emu: GitHubEmulator) -> Iterator[Github]:
    client = Github(
        base_url=emu.url,
        auth=Auth.Token(TOKEN),
        seconds_between_requests=0,
        seconds_between_writes=0,
        retry=0,
    )
    yield client
    client.close()


def api(emu: GitHubEmulator, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(method, emu.url + path, headers=headers, timeout=10, **kwargs)


# ---------------------------------------------------------------- the description subset


def test_subset_names_its_source_and_holds_exactly_our_operations(subset: OpenAPISubset) -> None:
    meta = subset.document["x-keeptraining"]
    assert meta["source"] == "npm package @octokit/openapi"
    assert meta["version"] and meta["file"] == "generated/api.github.com.json"
    assert {(op.method, op.template) for op in subset.operations} == EXPECTED_OPERATIONS
    dispatch = subset.operation(DISPATCH_OP).spec
    body = dispatch["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["ref"]
    assert body["properties"]["inputs"]["maxProperties"] == 25
    assert set(dispatch["responses"]) == {"200", "204"}
    assert SUBSET_PATH.stat().st_size < 200_000  # an extract, not the 13 MB description


def _load_refresh_script() -> Any:
    path = Path(__file__).resolve().parent.parent / "scripts" / "refresh-github-openapi.py"
    spec = importlib.util.spec_from_file_location("refresh_github_openapi", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refresh_script_extracts_operations_and_closes_over_references() -> None:
    script = _load_refresh_script()
    error = {"type": "object", "properties": {"message": {"type": "string"}}}
    schema_a: dict[str, Any] = {
        "type": "object",
        "description": "drop me",
        "properties": {"description": {"type": "string"}, "b": {"$ref": "#/components/schemas/b"}},
    }
    responses = {n: {"content": {"application/json": {"schema": error}}} for n in script.ERROR_RESPONSES}
    operation = {
        "operationId": "x/y",
        "parameters": [{"$ref": "#/components/parameters/owner"}],
        "responses": {
            "200": {
                "description": "Response",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/a"}}},
            },
            "404": {"$ref": "#/components/responses/not_found"},
        },
    }
    paths: dict[str, dict[str, Any]] = {}
    for i, (method, path) in enumerate(script.OPERATIONS):  # a path may have two methods (releases)
        paths.setdefault(path, {})[method] = dict(operation, operationId=f"op{i}")
    document = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "9.9.9"},
        "paths": paths,
        "components": {
            "parameters": {
                "owner": {"name": "owner", "in": "path", "required": True, "schema": {"type": "string"}}
            },
            "schemas": {
                "a": schema_a,
                "b": {"type": "integer", "example": 3},
                "unused": {"type": "string"},
            },
            "responses": responses,
        },
    }
    subset = script.build_subset(document, "9.9.9", None)
    assert subset["x-keeptraining"]["version"] == "9.9.9"
    assert set(subset["components"]["schemas"]) == {"a", "b"}
    assert "description" not in subset["components"]["schemas"]["a"]  # annotation dropped
    assert "description" in subset["components"]["schemas"]["a"]["properties"]  # a property kept
    assert "example" not in subset["components"]["schemas"]["b"]
    first = subset["paths"][script.OPERATIONS[0][1]][script.OPERATIONS[0][0]]
    assert first["parameters"][0]["name"] == "owner"  # parameters inlined


# ---------------------------------------------------------------- PyGithub against the emulator


def _uploaded(store: ArtifactStore, run_id: int, name: str, data: bytes) -> Artifact:
    """An artifact as upload-artifact leaves it: created, its bytes in a blob, finalized."""
    identity = Identity(RuntimeTokens.run_backend_id(run_id), "job")
    artifact = store.create(run_id, identity, name, utcnow() + timedelta(days=14))
    store.blobs.blobs[artifact.blob_path] = Blob(data, "application/zip", committed=True)
    artifact.size, artifact.finalized = len(data), True
    artifact.digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    return artifact


def test_every_operation_answers_pygithub_with_valid_responses(subset: OpenAPISubset) -> None:
    store = ArtifactStore(BlobStore())
    with GitHubEmulator(subset=subset, artifacts=store) as emu:
        store.blobs.base_url = emu.base  # the emulator has no blob route: only the 302's Location matters
        client = Github(base_url=emu.url, auth=Auth.Token(TOKEN), retry=0, lazy=True)
        _every_operation(emu, client)
        assert emu.violations == []


def _every_operation(emu: GitHubEmulator, gh: Github) -> None:
    repo = gh.get_repo(emu.full_name)
    assert repo.default_branch == "main"
    workflows = list(repo.get_workflows())
    assert [w.path for w in workflows] == [".github/workflows/continuous-training.yml"]
    workflow = repo.get_workflow("continuous-training.yml")
    assert repo.get_workflow(workflow.id).name == "Continuous training"
    head = repo.get_branch("main").commit.sha
    run = workflow.create_dispatch(
        "main", {"attempt": "2", "epochs": "20"}, throw=True, return_run_details=True
    )
    listed = list(workflow.get_runs(branch="main", event="workflow_dispatch", head_sha=head))
    assert [r.id for r in listed] == [run.id]
    fetched = repo.get_workflow_run(run.id)
    assert fetched.display_title == "attempt 2 · 20 epochs"
    assert fetched.head_sha == head and fetched.event == "workflow_dispatch" and fetched.status == "queued"
    assert fetched.html_url == run.html_url == f"{emu.server_url}/{emu.full_name}/actions/runs/{run.id}"
    newer = emu.push()
    comparison = repo.compare(head, newer)
    assert (comparison.status, comparison.ahead_by) == ("ahead", 1)
    assert [c.sha for c in comparison.commits] == [newer]
    status = repo.get_commit(head).create_status(
        "pending", target_url=run.html_url, description="attempt 2", context="keeptraining"
    )
    assert (status.state, status.context, status.target_url) == ("pending", "keeptraining", run.html_url)
    assert [(s.sha, s.state) for s in emu.statuses] == [(head, "pending")]
    artifact = _uploaded(emu.artifacts, run.id, "keeptraining-state", b"PK zip bytes")  # type: ignore[arg-type]
    (shown,) = list(fetched.get_artifacts())
    assert (shown.id, shown.name, shown.size_in_bytes, shown.expired) == (
        artifact.id,
        "keeptraining-state",
        12,
        False,
    )
    zip_path = f"/repos/{emu.full_name}/actions/artifacts/{artifact.id}/zip"
    zipped = api(emu, "GET", zip_path, allow_redirects=False)
    assert zipped.status_code == 302 and zipped.headers["Location"].startswith(emu.base + "/")
    emu.open_pull(5, newer, head_repository="mallory/keeptraining-demo")
    pull = repo.get_pull(5)
    assert (pull.number, pull.head.sha, pull.head.repo.full_name, pull.base.ref) == (
        5,
        newer,
        "mallory/keeptraining-demo",
        "main",
    )
    issue = repo.get_issue(5)  # lazy: no GET of the issue itself
    created = issue.create_comment("first")
    created.edit("second")
    (listed_comment,) = list(issue.get_comments())
    assert (listed_comment.id, listed_comment.body, listed_comment.user.type) == (created.id, "second", "Bot")
    assert [(c.body, c.edits) for c in emu.comments_on(5)] == [("second", 1)]
    release = repo.create_git_release("model-v1", "model", "body", target_commitish="main")
    asset = release.upload_asset_from_memory(
        io.BytesIO(b"weights"), 7, "model.keras", content_type="application/octet-stream"
    )
    assert repo.get_latest_release().tag_name == "model-v1"
    assert repo.get_release("model-v1").id == release.id
    assert repo.get_release(release.id).name == "model"  # a GET (a lazy object knows only its URL)
    assert [r.tag_name for r in repo.get_releases()] == ["model-v1"]
    assert [a.name for a in repo.get_release(release.id).get_assets()] == ["model.keras"]
    _status, _headers, chunks = asset.download_asset(None, chunk_size=1024)
    assert b"".join(chunks) == b"weights"
    served = {r.operation for r in emu.requests} - {"release-asset-download"}
    only_git_data = {
        op for op in git_data.OPERATIONS if op.startswith("git/") or op == "repos/update-release"
    }
    assert served == {op.operation_id for op in emu.subset.operations} - only_git_data
    assert {r.status for r in emu.requests} == {200, 201, 302}


def test_a_dispatch_creates_a_queued_run_on_the_branch_head_and_is_recorded(emu: GitHubEmulator) -> None:
    head = emu.branches["main"]
    reply = api(emu, "POST", DISPATCHES, json={"ref": "main", "inputs": {"attempt": "3", "epochs": "30"}})
    assert reply.status_code == 204 and reply.content == b""
    emu.push("main")  # a later push does not change the run
    (record,) = emu.dispatches
    assert record.ref == "main" and record.inputs == {"attempt": "3", "epochs": "30"}
    assert record.return_run_details is None and record.workflow_path.endswith("continuous-training.yml")
    (run,) = emu.runs
    assert run.id == record.run_id and run.head_sha == head and run.head_branch == "main"
    assert run.event == "workflow_dispatch" and run.status == "queued" and run.conclusion is None
    assert run.display_title == "attempt 3 · 30 epochs" and run.run_number == 1


def test_return_run_details_answers_200_with_the_documented_fields(emu: GitHubEmulator) -> None:
    reply = api(emu, "POST", DISPATCHES, json={"ref": "refs/heads/main", "return_run_details": True})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"workflow_run_id", "run_url", "html_url"}
    assert body["workflow_run_id"] == emu.dispatches[0].run_id
    assert api(emu, "GET", body["run_url"].removeprefix(emu.url)).json()["id"] == body["workflow_run_id"]


def test_api_version_2026_03_10_always_returns_run_details(emu: GitHubEmulator) -> None:
    reply = api(emu, "POST", DISPATCHES, json={"ref": "main"}, headers={"X-GitHub-Api-Version": "2026-03-10"})
    assert reply.status_code == 200 and "workflow_run_id" in reply.json()
    bad = api(emu, "GET", f"/repos/{emu.full_name}", headers={"X-GitHub-Api-Version": "1999-01-01"})
    assert bad.status_code == 400


def test_display_title_comes_from_a_configurable_run_name(subset: OpenAPISubset) -> None:
    with GitHubEmulator(subset=subset, run_name=lambda wf, inputs: f"{wf.name} #{inputs['n']}") as emu:
        api(emu, "POST", DISPATCHES, json={"ref": "main", "inputs": {"n": "7"}})
        assert emu.runs[0].display_title == "Continuous training #7"


def test_declared_input_defaults_reach_the_run_title(subset: OpenAPISubset) -> None:
    workflow = EmulatedWorkflow(
        1,
        "CT",
        ".github/workflows/ct.yml",
        inputs={"attempt": WorkflowInput(required=True), "epochs": WorkflowInput(default="10")},
    )
    with GitHubEmulator(subset=subset, workflows=[workflow]) as emu:
        reply = api(
            emu,
            "POST",
            DISPATCHES.replace("continuous-training", "ct"),
            json={"ref": "main", "inputs": {"attempt": "1"}},
        )
        assert reply.status_code == 204
        assert emu.runs[0].display_title == "attempt 1 · 10 epochs"
        assert emu.dispatches[0].inputs == {"attempt": "1"}  # what was sent, not the defaults


# ---------------------------------------------------------------- requests GitHub rejects


def test_no_or_bad_authorization_gets_401(emu: GitHubEmulator) -> None:
    reply = api(emu, "GET", f"/repos/{emu.full_name}", token=None)
    assert reply.status_code == 401
    assert reply.json()["message"] == "Requires authentication"
    assert reply.json()["documentation_url"].startswith("https://docs.github.com/")
    basic = api(emu, "GET", f"/repos/{emu.full_name}", token=None, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    token_scheme = api(
        emu, "GET", f"/repos/{emu.full_name}", token=None, headers={"Authorization": f"token {TOKEN}"}
    )
    assert token_scheme.status_code == 200
    assert emu.dispatches == []


def test_an_unknown_token_is_bad_credentials_for_pygithub(subset: OpenAPISubset) -> None:
    with GitHubEmulator(subset=subset, tokens={"the-right-one"}) as emu:
        client = Github(base_url=emu.url, auth=Auth.Token(TOKEN), retry=0)
        with pytest.raises(BadCredentialsException):
            client.get_repo(emu.full_name)
        client.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": {"attempt": "1"}}, 'Invalid request.\n\n"ref" wasn\'t supplied.'),
        ({"ref": 5}, "5 is not of type 'string'"),
        ({"ref": "main", "inputs": {f"k{i}": "v" for i in range(26)}}, "has too many properties"),
        ({"ref": "main", "inputs": {"attempt": 2}}, "For 'properties/attempt', 2 is not a string."),
        ({"ref": "main", "return_run_details": "yes"}, "'yes' is not of type 'boolean'"),
        ({"ref": "nope"}, "No ref found for: nope"),
    ],
)
def test_dispatch_bodies_github_rejects_get_422(
    emu: GitHubEmulator, body: dict[str, Any], message: str
) -> None:
    reply = api(emu, "POST", DISPATCHES, json=body)
    assert reply.status_code == 422
    assert message in reply.json()["message"]
    assert reply.json()["documentation_url"].endswith("#create-a-workflow-dispatch-event")
    assert emu.dispatches == [] and emu.runs == []


def test_25_inputs_are_accepted(emu: GitHubEmulator) -> None:
    reply = api(emu, "POST", DISPATCHES, json={"ref": "main", "inputs": {f"k{i}": "v" for i in range(25)}})
    assert reply.status_code == 204 and len(emu.dispatches) == 1


def test_malformed_json_and_missing_body_get_400(emu: GitHubEmulator) -> None:
    assert (
        api(emu, "POST", DISPATCHES, data=b"{nope", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert api(emu, "POST", DISPATCHES).status_code == 400
    assert emu.dispatches == []


def test_unknown_workflow_and_repository_get_404(emu: GitHubEmulator, gh: Github) -> None:
    for path in (
        DISPATCHES.replace("continuous-training.yml", "missing.yml"),
        DISPATCHES.replace("continuous-training.yml", "42"),
        DISPATCHES.replace("keeptraining-demo", "other"),
    ):
        reply = api(emu, "POST", path, json={"ref": "main"})
        assert reply.status_code == 404 and reply.json()["message"] == "Not Found"
    with pytest.raises(UnknownObjectException):
        gh.get_repo(emu.full_name).get_workflow("missing.yml")  # eager: a GET
    assert api(emu, "GET", f"/repos/{emu.full_name}/actions/runs/not-a-number").status_code == 404
    assert api(emu, "GET", f"/repos/{emu.full_name}/branches/nope").json()["message"] == "Branch not found"
    assert api(emu, "GET", "/no/such/route").status_code == 404
    assert emu.dispatches == []


def test_declared_inputs_are_enforced_like_github(subset: OpenAPISubset) -> None:
    workflow = EmulatedWorkflow(
        7,
        "CT",
        ".github/workflows/ct.yml",
        inputs={
            "attempt": WorkflowInput(required=True),
            "mode": WorkflowInput(type="choice", options=["fast", "slow"], default="fast"),
            "resume": WorkflowInput(type="boolean", default="true"),
            "epochs": WorkflowInput(type="number", default="10"),
        },
    )
    with GitHubEmulator(subset=subset, workflows=[workflow]) as emu:
        path = f"/repos/{emu.full_name}/actions/workflows/ct.yml/dispatches"
        cases = {
            'Unexpected inputs provided: ["extra"]': {"attempt": "1", "extra": "x"},
            "Required input 'attempt' not provided": {"epochs": "10"},
            "not in the list of allowed values": {"attempt": "1", "mode": "medium"},
            "is not a boolean": {"attempt": "1", "resume": "yes"},
            "is not a number": {"attempt": "1", "epochs": "ten"},
        }
        for message, inputs in cases.items():
            reply = api(emu, "POST", path, json={"ref": "main", "inputs": inputs})
            assert reply.status_code == 422 and message in reply.json()["message"], inputs
        assert api(emu, "POST", path, json={"ref": "main", "inputs": {"attempt": "1"}}).status_code == 204
        assert len(emu.dispatches) == 1
        assert emu.violations == []


def test_a_disabled_or_undispatchable_workflow_gets_422(emu: GitHubEmulator) -> None:
    emu.workflows[0].state = "disabled_manually"
    assert "disabled workflow" in api(emu, "POST", DISPATCHES, json={"ref": "main"}).json()["message"]
    emu.workflows[0].state = "active"
    emu.workflows[0].dispatchable = False
    assert (
        "does not have 'workflow_dispatch' trigger"
        in api(emu, "POST", DISPATCHES, json={"ref": "main"}).json()["message"]
    )
    assert emu.dispatches == []


def test_query_parameters_are_checked_against_their_schemas(emu: GitHubEmulator) -> None:
    runs = f"/repos/{emu.full_name}/actions/workflows/continuous-training.yml/runs"
    assert api(emu, "GET", runs, params={"per_page": "abc"}).status_code == 422
    assert api(emu, "GET", runs, params={"status": "bogus"}).status_code == 422
    unknown = api(emu, "GET", runs, params={"sha": "abc"})  # the real filter is head_sha
    assert unknown.status_code == 422 and "'sha' is not defined" in unknown.json()["message"]
    assert (
        api(emu, "GET", runs, params={"status": "queued", "exclude_pull_requests": "true"}).status_code == 200
    )


def test_legacy_enterprise_refuses_return_run_details_and_caps_inputs_at_10(emu: GitHubEmulator) -> None:
    emu.legacy_enterprise = True
    refused = api(emu, "POST", DISPATCHES, json={"ref": "main", "return_run_details": True})
    assert refused.status_code == 400 and "return_run_details" in refused.json()["message"]
    too_many = api(emu, "POST", DISPATCHES, json={"ref": "main", "inputs": {f"k{i}": "v" for i in range(11)}})
    assert too_many.status_code == 422
    assert api(emu, "POST", DISPATCHES, json={"ref": "main"}).status_code == 204
    assert len(emu.dispatches) == 1


def test_runs_are_listed_newest_first_filtered_and_paginated(emu: GitHubEmulator, gh: Github) -> None:
    old_head = emu.branches["main"]
    for n in range(34):
        emu.add_run(161_335, event="workflow_dispatch", display_title=f"attempt {n}", status="completed")
    emu.add_run(161_335, event="push")
    emu.push("main")
    emu.add_run(161_335, event="workflow_dispatch", display_title="newer")
    workflow = gh.get_repo(emu.full_name).get_workflow(161_335)
    listed = list(workflow.get_runs(event="workflow_dispatch", head_sha=old_head))
    assert [r.display_title for r in listed] == [f"attempt {n}" for n in reversed(range(34))]
    assert len([r for r in emu.requests if r.operation == "actions/list-workflow-runs"]) == 2  # two pages
    assert [r.display_title for r in workflow.get_runs(head_sha=emu.branches["main"])] == ["newer"]
    assert workflow.get_runs(status="completed").totalCount == 36  # add_run() defaults to completed


def test_branch_names_with_slashes_and_a_ghes_style_api_prefix(subset: OpenAPISubset) -> None:
    with GitHubEmulator(subset=subset, api_prefix="/api/v3") as emu:
        assert emu.url.endswith("/api/v3")
        sha = emu.push("feature/more-epochs")
        client = Github(base_url=emu.url, auth=Auth.Token(TOKEN), retry=0, seconds_between_requests=0)
        repo = client.get_repo(emu.full_name)
        assert repo.get_branch("feature/more-epochs").commit.sha == sha
        run = repo.get_workflow("continuous-training.yml").create_dispatch(
            "feature/more-epochs", {}, throw=True, return_run_details=True
        )
        assert emu.runs[0].id == run.id and emu.runs[0].head_branch == "feature/more-epochs"
        client.close()
        assert emu.violations == []


# ---------------------------------------------------------------- fault injection


def test_fail_next_answers_errors_then_recovers(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 503, times=2, headers={"Retry-After": "1"})
    for _ in range(2):
        reply = api(emu, "POST", DISPATCHES, json={"ref": "main"})
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    assert api(emu, "POST", DISPATCHES, json={"ref": "main"}).status_code == 204
    assert len(emu.dispatches) == 1 and emu.pending_faults() == 0
    assert [r.status for r in emu.calls("dispatch")] == [503, 503, 204]


def test_secondary_rate_limit_fault_uses_githubs_message(emu: GitHubEmulator) -> None:
    emu.fail_next("get-branch", 403)
    emu.fail_next("get-branch", 429)
    for status in (403, 429):
        reply = api(emu, "GET", f"/repos/{emu.full_name}/branches/main")
        assert reply.status_code == status
        assert reply.json()["message"].startswith("You have exceeded a secondary rate limit")


def test_drop_closes_the_connection_without_an_answer(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", drop=True)
    with pytest.raises(requests.ConnectionError):
        api(emu, "POST", DISPATCHES, json={"ref": "main"})
    assert emu.dispatches == [] and emu.calls("dispatch")[0].status is None


@pytest.mark.parametrize("drop", [False, True])
def test_after_accept_performs_the_dispatch_then_fails(emu: GitHubEmulator, drop: bool) -> None:
    emu.fail_next("dispatch", 502, after_accept=True, drop=drop)
    if drop:
        with pytest.raises(requests.ConnectionError):
            api(emu, "POST", DISPATCHES, json={"ref": "main"})
    else:
        assert api(emu, "POST", DISPATCHES, json={"ref": "main"}).status_code == 502
    assert len(emu.dispatches) == 1 and len(emu.runs) == 1


def test_an_injected_html_body_is_sent_as_is(emu: GitHubEmulator) -> None:
    emu.fail_next("get-repo", 502, body="<html>Unicorn!</html>")
    reply = api(emu, "GET", f"/repos/{emu.full_name}")
    assert reply.status_code == 502 and reply.headers["Content-Type"].startswith("text/html")


def test_fail_next_rejects_an_unknown_operation(emu: GitHubEmulator) -> None:
    with pytest.raises(KeyError):
        emu.fail_next("delete-everything", 500)


# ---------------------------------------------------------------- the emulator checks itself


def test_a_response_that_does_not_fit_its_schema_is_a_recorded_violation(
    subset: OpenAPISubset, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GitHubEmulator(subset=subset) as emu:
        original = emu._workflow_json

        def broken(workflow: EmulatedWorkflow) -> dict[str, Any]:
            body = original(workflow)
            del body["state"]
            body["id"] = "not-an-integer"
            return body

        monkeypatch.setattr(emu, "_workflow_json", broken)
        reply = api(emu, "GET", f"/repos/{emu.full_name}/actions/workflows/continuous-training.yml")
        assert reply.status_code == 500 and "emulator bug" in reply.json()["message"]
        assert len(emu.violations) == 1 and "actions/get-workflow 200" in emu.violations[0]


def test_an_undocumented_status_is_a_recorded_violation(subset: OpenAPISubset) -> None:
    with GitHubEmulator(subset=subset) as emu:
        emu.fail_next("get-branch", 418, body={"message": "teapot"})
        assert api(emu, "GET", f"/repos/{emu.full_name}/branches/main").status_code == 500
        assert "status 418 is not documented" in emu.violations[0]


def test_nested_references_and_nullable_fields_are_validated(subset: OpenAPISubset) -> None:
    run_schema = {"$ref": "urn:keeptraining:github-openapi-subset#/components/schemas/workflow-run"}
    with GitHubEmulator(subset=subset) as emu:
        run = emu.add_run(161_335)
        good = emu._run_json(run, emu.workflows[0])
        validator = subset.validator(run_schema)
        assert list(validator.iter_errors(good)) == []
        bad = json.loads(json.dumps(good))
        bad["repository"]["owner"]["id"] = "x"  # three references deep
        assert any("owner" in list(e.absolute_path) for e in validator.iter_errors(bad))
        bad = json.loads(json.dumps(good))
        bad["status"] = None  # nullable: fine
        bad["head_sha"] = None  # not nullable
        errors = list(validator.iter_errors(bad))
        assert [list(e.absolute_path) for e in errors] == [["head_sha"]]
        bad["created_at"] = "yesterday"
        assert any(e.validator == "format" for e in validator.iter_errors(bad))


def test_state_is_safe_under_concurrent_dispatches(emu: GitHubEmulator) -> None:
    def send(n: int) -> None:
        api(emu, "POST", DISPATCHES, json={"ref": "main", "inputs": {"attempt": str(n)}})

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emu.dispatches) == 8
    assert len({d.run_id for d in emu.dispatches}) == 8
    assert sorted(r.run_number for r in emu.runs) == list(range(1, 9))
    assert emu.pending_faults() == 0 and isinstance(GithubException, type)


def test_issue_comments_and_pulls_answer_as_github_does(emu: GitHubEmulator) -> None:
    base = f"/repos/{emu.full_name}"
    assert api(emu, "GET", f"{base}/pulls/3").status_code == 404  # no such pull request
    assert api(emu, "POST", f"{base}/issues/3/comments", json={"body": "x"}).status_code == 404
    emu.open_pull(3, emu.push("feature"))
    assert api(emu, "POST", f"{base}/issues/3/comments", json={}).status_code == 422  # body is required
    assert api(emu, "POST", f"{base}/issues/3/comments", json={"body": " "}).status_code == 422
    too_long = api(emu, "POST", f"{base}/issues/3/comments", json={"body": "x" * 65537})
    assert too_long.status_code == 422 and "too long" in too_long.text
    made = api(emu, "POST", f"{base}/issues/3/comments", json={"body": "hello"})
    assert made.status_code == 201
    assert made.headers["Location"].endswith(f"/issues/comments/{made.json()['id']}")
    assert api(emu, "PATCH", f"{base}/issues/comments/1", json={"body": "x"}).status_code == 404
    listed = api(emu, "GET", f"{base}/issues/3/comments", params={"per_page": 1})
    assert [c["body"] for c in listed.json()] == ["hello"]
    emu.denied = {"issues/create-comment"}  # a fork's read-only token
    denied = api(emu, "POST", f"{base}/issues/3/comments", json={"body": "again"})
    assert denied.status_code == 403 and "not accessible" in denied.text


# ---------------------------------------------------------------- releases


def test_releases_in_githubs_shapes(emu: GitHubEmulator) -> None:
    repo = f"/repos/{emu.full_name}"
    assert api(emu, "GET", f"{repo}/releases/latest").status_code == 404
    created = api(emu, "POST", f"{repo}/releases", json={"tag_name": "model-v1", "name": "m1"})
    assert created.status_code == 201
    release = created.json()
    assert release["upload_url"].endswith("/assets{?name,label}") and release["assets"] == []
    assert emu.tags["model-v1"] == emu.branches["main"]  # a new tag at the default branch's head
    again = api(emu, "POST", f"{repo}/releases", json={"tag_name": "model-v1"})
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "already_exists"
    unknown = api(emu, "POST", f"{repo}/releases", json={"tag_name": "x", "target_commitish": "f" * 40})
    assert unknown.status_code == 422
    assert api(emu, "POST", f"{repo}/releases", json={"name": "no tag"}).status_code == 422
    upload = release["upload_url"].split("{")[0]
    missing_name = requests.post(
        upload,
        data=b"x",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
    )
    assert missing_name.status_code == 422
    sent = requests.post(
        upload,
        params={"name": "model.keras"},
        data=b"weights",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
    )
    assert sent.status_code == 201
    asset = sent.json()
    assert asset["size"] == 7 and asset["digest"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    twice = requests.post(
        upload,
        params={"name": "model.keras"},
        data=b"w",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
    )
    assert twice.status_code == 422
    meta = api(emu, "GET", f"{repo}/releases/assets/{asset['id']}")
    assert meta.status_code == 200 and meta.json()["name"] == "model.keras"
    raw = api(
        emu,
        "GET",
        f"{repo}/releases/assets/{asset['id']}",
        headers={"Accept": "application/octet-stream"},
        allow_redirects=False,
    )
    assert raw.status_code == 302
    assert requests.get(raw.headers["Location"], timeout=10).content == b"weights"
    assert requests.get(raw.headers["Location"] + "x", timeout=10).status_code == 404  # signed
    api(emu, "POST", f"{repo}/releases", json={"tag_name": "model-v2", "make_latest": "false"})
    assert api(emu, "GET", f"{repo}/releases/latest").json()["tag_name"] == "model-v1"
    api(emu, "POST", f"{repo}/releases", json={"tag_name": "model-v3"})
    assert api(emu, "GET", f"{repo}/releases/latest").json()["tag_name"] == "model-v3"
    listed = api(emu, "GET", f"{repo}/releases", params={"per_page": 2})
    assert [r["tag_name"] for r in listed.json()] == ["model-v3", "model-v2"]
    assert "next" in listed.headers["Link"]
    assert api(emu, "GET", f"{repo}/releases/tags/model-v1").json()["assets"][0]["name"] == "model.keras"
    assert api(emu, "GET", f"{repo}/releases/tags/nope").status_code == 404
    assert api(emu, "GET", f"{repo}/releases/{release['id']}/assets").json()[0]["id"] == asset["id"]
    assert emu.violations == []
