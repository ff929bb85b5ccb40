"""GitHub in a box itself: expressions, the run life cycle and concurrency rule, the results service's
rules over real HTTP, the git server, and the official artifact and checkout actions against it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from services.act_driver import ActChain, git, init_repo, official_actions, require_official_actions
from services.git_server import GitServer
from services.github_box import ExpressionError, GitHubBox, Runs, WorkflowFile, evaluate
from services.github_emulator import EmulatedWorkflow, GitHubEmulator
from services.results_service import ARTIFACT_SERVICE, ResultsService

TOKEN = "ghs_boxTestToken0123456789"


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run-${{ inputs.resume-run-id || format('new-{0}', github.run_id) }}", "run-new-7"),
        ("attempt ${{ inputs.attempt || 1 }} · ${{ inputs.epochs || 'first' }}", "attempt 1 · first"),
        ("${{ inputs.x && 'yes' || 'no' }}", "no"),
        ("${{ github.event_name == 'PUSH' }}", "true"),
        ("${{ !inputs.x }}-${{ (inputs.y || 'a') != 'a' }}", "true-false"),
        ("it''s ${{ 'it''s' }}", "it''s it's"),
    ],
)
def test_expressions_evaluate_like_github(text: str, expected: str) -> None:
    contexts = {"github": {"run_id": "7", "event_name": "push"}, "inputs": {}}
    assert evaluate(text, contexts) == expected


@pytest.mark.parametrize("text", ["${{ hashFiles('x') }}", "${{ env.X }}", "${{ inputs.x ||| 1 }}"])
def test_an_expression_the_box_does_not_know_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(text, {"inputs": {}, "github": {}})


# --------------------------------------------------------------------------- runs and concurrency


def rule(tmp_path: Path, workflow_group: str, job_group: str) -> tuple[GitHubEmulator, Runs]:
    (tmp_path / "w.yml").write_text(
        "name: W\non: [push, workflow_dispatch]\n"
        f"concurrency:\n  group: {workflow_group}\n"
        f"jobs:\n  j:\n    runs-on: x\n    concurrency: {{group: {job_group}}}\n    steps: []\n"
    )
    workflow = WorkflowFile.read(tmp_path, "w.yml")
    emulator = GitHubEmulator(workflows=[EmulatedWorkflow(1, "W", "w.yml")])
    runs = Runs(emulator, workflow)
    emulator.on_run_created = runs.admit
    return emulator, runs


def test_one_running_and_one_pending_per_group_and_the_newer_pending_wins(tmp_path: Path) -> None:
    emulator, runs = rule(tmp_path, "'g-${{ inputs.k }}'", "'j-${{ github.run_id }}'")
    first, second, third = (
        emulator.add_run(1, event="workflow_dispatch", inputs={"k": "a"}, status="queued", conclusion=None)
        for _ in range(3)
    )
    assert runs.next_ready() == first.id
    runs.start(first.id)
    assert (second.status, third.status) == ("completed", "pending")
    assert second.conclusion == "cancelled" and "is newer" in runs.notes[0]
    runs.complete(first.id, "success")
    assert third.status == "queued" and runs.next_ready() == third.id


def test_a_run_waits_for_a_job_group_held_by_another_run(tmp_path: Path) -> None:
    emulator, runs = rule(tmp_path, "'g-${{ inputs.after || github.run_id }}'", "'g-j${{ github.run_id }}'")
    parent = emulator.add_run(1, event="push", status="queued", conclusion=None)
    assert runs.next_ready() == parent.id
    child = emulator.add_run(
        1, event="workflow_dispatch", inputs={"after": f"j{parent.id}"}, status="queued", conclusion=None
    )
    assert child.status == "pending"
    runs.complete(parent.id, "success")
    assert child.status == "queued"


def test_the_same_group_for_the_workflow_and_its_job_is_a_deadlock(tmp_path: Path) -> None:
    emulator, runs = rule(tmp_path, "'g'", "'g'")
    run = emulator.add_run(1, event="push", status="queued", conclusion=None)
    assert (run.status, run.conclusion) == ("completed", "cancelled") and "deadlock" in runs.notes[0]


def test_a_rerun_is_the_same_run_at_its_next_attempt(tmp_path: Path) -> None:
    emulator, runs = rule(tmp_path, "'g-${{ github.run_id }}'", "'j-${{ github.run_id }}'")
    run = emulator.add_run(1, event="push", status="queued", conclusion=None)
    runs.complete(run.id, "failure")
    with pytest.raises(ValueError, match="only a completed run"):
        emulator.rerun(emulator.add_run(1, event="push", status="queued", conclusion=None).id)
    emulator.rerun(run.id)
    assert (run.run_attempt, run.status, run.conclusion) == (2, "queued", None)


# --------------------------------------------------------------------------- the results service


@pytest.fixture
def results() -> Iterator[ResultsService]:
    with ResultsService() as service:
        yield service


def twirp(service: ResultsService, method: str, body: dict[str, Any], token: str) -> requests.Response:
    return requests.post(
        f"{service.url}twirp/{ARTIFACT_SERVICE}/{method}",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def upload(
    service: ResultsService, token: str, ids: dict[str, str], name: str, data: bytes
) -> requests.Response:
    created = twirp(
        service, "CreateArtifact", {**ids, "name": name, "version": 7, "mime_type": "application/zip"}, token
    )
    if created.status_code != 200:
        return created
    url = created.json()["signed_upload_url"]
    block = base64.b64encode(b"block-0").decode()
    assert requests.put(f"{url}&comp=block&blockid={block}", data=data, timeout=10).status_code == 201
    listed = f"<?xml version='1.0'?><BlockList><Latest>{block}</Latest></BlockList>".encode()
    assert requests.put(f"{url}&comp=blocklist", data=listed, timeout=10).status_code == 201
    return twirp(
        service,
        "FinalizeArtifact",
        {**ids, "name": name, "size": str(len(data)), "hash": f"sha256:{hashlib.sha256(data).hexdigest()}"},
        token,
    )


def ids_of(service: ResultsService, token: str) -> dict[str, str]:
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    scope = next(s for s in payload["scp"].split() if s.startswith("Actions.Results:"))
    _, run, job = scope.split(":")
    return {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job}


def test_an_artifact_name_is_unique_per_run_attempt_and_the_internal_api_sees_only_its_attempt(
    results: ResultsService,
) -> None:
    """GitHub's per-attempt rule (results_service's docstring cites the sources): a re-run uploads a
    second artifact of the same name to the same run; overwrite deletes within the attempt only."""
    token = results.tokens.mint(101)
    ids = ids_of(results, token)
    assert upload(results, token, ids, "state", b"first").json()["ok"] is True
    conflict = upload(results, token, ids, "state", b"second")
    assert conflict.status_code == 409 and conflict.json() == {
        "code": "already_exists",
        "msg": "an artifact with this name already exists on the workflow run",
    }
    rerun = results.tokens.mint(101, run_attempt=2)  # the same run's next attempt: another backend id
    assert ids_of(results, rerun)["workflow_run_backend_id"] != ids["workflow_run_backend_id"]
    listed = twirp(results, "ListArtifacts", {**ids_of(results, rerun), "name_filter": "state"}, rerun)
    assert listed.json() == {"artifacts": []}, "the internal API is scoped to the run attempt"
    earlier = twirp(results, "GetSignedArtifactURL", {**ids_of(results, rerun), "name": "state"}, rerun)
    assert earlier.status_code == 404  # a token-less download of an earlier attempt's artifact
    stranger = results.tokens.mint(102)  # another run may not delete it
    assert twirp(results, "DeleteArtifact", {**ids, "name": "state"}, stranger).status_code == 403
    # upload-artifact's overwrite in the re-run: ListArtifacts found nothing, so nothing is deleted,
    # and the re-run's upload of the same name is accepted beside the first try's.
    assert upload(results, rerun, ids_of(results, rerun), "state", b"second").status_code == 200
    kept = sorted(results.artifacts.of_run(101), key=lambda a: a.run_attempt)  # the REST view: both
    assert [(a.run_attempt, results.artifacts.content(a)) for a in kept] == [(1, b"first"), (2, b"second")]
    # Within one attempt, overwrite works: the job's own copy is deleted, then uploaded again.
    mine = twirp(results, "ListArtifacts", {**ids_of(results, rerun), "name_filter": "state"}, rerun)
    (artifact,) = mine.json()["artifacts"]
    owner = {k: artifact[k] for k in ("workflow_run_backend_id", "workflow_job_run_backend_id")}
    assert twirp(results, "DeleteArtifact", {**owner, "name": "state"}, rerun).status_code == 200
    assert upload(results, rerun, ids_of(results, rerun), "state", b"third").status_code == 200
    assert sorted(results.artifacts.content(a) for a in results.artifacts.of_run(101)) == [b"first", b"third"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"unknown_field": "x"}, "malformed"),
        ({"size": "many"}, "malformed"),
        ({"workflow_run_backend_id": "someone-elses-run"}, "permission_denied"),
    ],
)
def test_requests_github_would_refuse_are_refused(
    results: ResultsService, change: dict[str, str], code: str
) -> None:
    token = results.tokens.mint(7)
    body = {**ids_of(results, token), "name": "x", "size": "1", **change}
    assert twirp(results, "FinalizeArtifact", body, token).json()["code"] == code


def test_finalize_checks_the_size_and_digest_and_tokens_are_checked(results: ResultsService) -> None:
    token = results.tokens.mint(8)
    ids = ids_of(results, token)
    created = twirp(results, "CreateArtifact", {**ids, "name": "x", "version": 7}, token).json()
    single = {"x-ms-blob-type": "BlockBlob"}
    requests.put(created["signed_upload_url"], data=b"abc", headers=single, timeout=10)
    wrong = twirp(results, "FinalizeArtifact", {**ids, "name": "x", "size": "3", "hash": "sha256:00"}, token)
    assert wrong.json()["code"] == "invalid_argument"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert twirp(results, "ListArtifacts", ids, forged).status_code == 401
    tampered = created["signed_upload_url"].replace("sp=cw", "sp=r")
    assert requests.put(tampered, data=b"x", headers=single, timeout=10).status_code == 403


def test_an_expired_artifact_leaves_the_service(results: ResultsService) -> None:
    token = results.tokens.mint(9)
    upload(results, token, ids_of(results, token), "state", b"bytes")
    results.artifacts.expire(9, "state")
    assert twirp(results, "ListArtifacts", ids_of(results, token), token).json() == {"artifacts": []}
    assert [a.expired for a in results.artifacts.of_run(9, include_expired=True)] == [True]


# --------------------------------------------------------------------------- the git server


def test_the_git_server_serves_a_commit_by_id_to_the_token_only(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "README").write_text("x\n")
    first = init_repo(work, "acme/x")
    git(work, "commit", "-q", "--allow-empty", "-m", "second")
    with GitServer(tmp_path / "srv", [TOKEN]) as server:
        server.create("acme/x")
        server.push("acme/x", work)
        clone = tmp_path / "clone"
        git(tmp_path, "init", "-q", str(clone))
        header = "AUTHORIZATION: basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        url = f"{server.url}/acme/x"
        git(clone, "-c", f"http.extraheader={header}", "fetch", "-q", "--depth=1", url, first)
        assert git(clone, "rev-parse", "FETCH_HEAD") == first
        denied = subprocess.run(
            ["git", "fetch", url, first],
            cwd=clone,
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        assert denied.returncode != 0
        assert ("GET", "/acme/x/info/refs", 401) in server.requests


# --------------------------------------------------------------------------- the official actions


WORKFLOW = """\
name: Box
on: [push]
jobs:
  hand-off:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          ref: ${{ github.sha }}
          persist-credentials: false
      - run: mkdir -p state/.hidden && echo "$GITHUB_RUN_ATTEMPT" > state/a.txt && echo h > state/.hidden/b
      - uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with:
          name: state
          path: state/
          include-hidden-files: true
          overwrite: true
          retention-days: 3
      - name: Upload again in this attempt
        uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with:
          name: state
          path: state/
          include-hidden-files: true
          overwrite: ${{ env.OVERWRITE }}
          retention-days: 3
      - uses: actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c # v8.0.1
        with:
          name: state
          path: back
          run-id: ${{ github.run_id }}
          github-token: ${{ secrets.GITHUB_TOKEN }}
      - run: cmp state/a.txt back/a.txt && cmp state/.hidden/b back/.hidden/b && git log -1 --format=%H
"""


@pytest.mark.e2e
def test_the_official_actions_keep_artifacts_per_run_attempt_in_the_box(tmp_path: Path) -> None:
    """The real upload-artifact and download-artifact against the box's per-attempt rule: overwrite
    deletes within the attempt only, a re-run's upload of the same name lands beside the first try's,
    and download by name takes the highest id, which need not be the newest upload."""
    require_official_actions()
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "box.yml").write_text(WORKFLOW)
    head = init_repo(repo, "acme/box")
    assert official_actions(repo, ".github/workflows/box.yml")
    with GitHubBox(repo, tmp_path / "box", "acme/box", TOKEN, ".github/workflows/box.yml") as box:
        (tmp_path / "work").mkdir()
        chain = ActChain(
            repo, box, tmp_path / "work", secrets={"GITHUB_TOKEN": TOKEN}, env={"OVERWRITE": "true"}
        )
        store = box.results.artifacts
        run = chain.push()
        assert run is not None
        first = chain.step()
        assert first is not None
        assert first.returncode == 0, first.log[-3000:]
        assert head in first.log  # checked out by id from the git server
        assert [a.run_attempt for a in store.of_run(run.id)] == [1]  # overwrite: the attempt's own copy went
        assert len(box.results.twirp_calls("DeleteArtifact")) == 1
        box.emulator.rerun(run.id)
        second = chain.step()  # "Re-run all jobs": the same run, attempt 2
        assert second is not None
        assert second.returncode == 0, second.log[-3000:]
        kept = sorted(store.of_run(run.id), key=lambda a: a.run_attempt)
        assert [a.run_attempt for a in kept] == [1, 2], "the re-run's upload lands beside the first try's"
        assert [store.content(a) != b"" for a in kept] == [True, True]
        assert len(box.results.twirp_calls("DeleteArtifact")) == 2  # each attempt deleted only its own copy
        assert (
            f"SHA256 digest of downloaded artifact is {str(kept[1].digest).removeprefix('sha256:')}"
            in second.log
        )  # by name: the highest id, here the newest
        store.descending_ids = True  # 2026 reports: an older upload can hold the higher id
        box.emulator.rerun(run.id)
        third = chain.step()
        assert third is not None and third.returncode != 0, "download by name took an older attempt's"
        assert (
            f"SHA256 digest of downloaded artifact is {str(kept[1].digest).removeprefix('sha256:')}"
            in third.log
        )
        chain.env = {"OVERWRITE": "false"}
        box.emulator.rerun(run.id)
        fourth = chain.step()  # a second upload of the name within one attempt: refused
        assert fourth is not None and fourth.returncode != 0
        assert "(409) Conflict: an artifact with this name already exists on the workflow run" in fourth.log
        assert box.emulator.violations == []
        methods = {c.method for c in box.results.calls}
        assert methods == {"ListArtifacts", "CreateArtifact", "FinalizeArtifact", "DeleteArtifact"}


def test_without_the_official_actions_the_e2e_tests_skip_with_a_reason_or_fail_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_GHA_ACTIONS_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("KT_REQUIRE_GHA_ACTIONS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="actions/checkout, actions/upload-artifact"):
        require_official_actions()
    monkeypatch.setenv("KT_REQUIRE_GHA_ACTIONS", "true")
    with pytest.raises(pytest.fail.Exception, match=f"are not in {tmp_path / 'nowhere'}"):
        require_official_actions()


def test_the_rest_api_lists_every_run_attempts_artifacts_with_their_run(results: ResultsService) -> None:
    """A re-run's artifact of the same name is listed beside the first try's, each with created_at and
    workflow_run (GitHub's OpenAPI artifact schema), and each can be downloaded by id."""
    with GitHubEmulator("acme/models", tokens={"ghs_rest"}, artifacts=results.artifacts) as emu:
        run = emu.add_run(161_335, event="push")
        for attempt, data in ((1, b"first"), (2, b"second")):
            token = results.tokens.mint(run.id, run_attempt=attempt)
            assert upload(results, token, ids_of(results, token), "state", data).status_code == 200
        headers = {"Authorization": "Bearer ghs_rest"}
        listed = requests.get(
            f"{emu.url}/repos/acme/models/actions/runs/{run.id}/artifacts",
            params={"name": "state"},
            headers=headers,
            timeout=10,
        ).json()
        assert listed["total_count"] == 2
        assert {a["workflow_run"]["id"] for a in listed["artifacts"]} == {run.id}
        assert all(a["created_at"] and a["name"] == "state" for a in listed["artifacts"])
        contents = set()
        for artifact in listed["artifacts"]:
            zipped = requests.get(
                artifact["archive_download_url"], headers=headers, timeout=10, allow_redirects=False
            )
            assert zipped.status_code == 302
            contents.add(requests.get(zipped.headers["Location"], timeout=10).content)
        assert contents == {b"first", b"second"}
        assert emu.violations == []
