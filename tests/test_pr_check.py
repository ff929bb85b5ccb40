"""The pull-request check against the GitHub emulator: ``keeptraining pr-check`` (one comment, edited
in place; a status on the head commit; the summary) and ``keeptraining pr-report`` (a fork's report
artifact, posted by the workflow_run side after checking it).

Real processes (local backend, tests/fixtures/fake_compare_train.py whose rate.txt decides how
well the pull request's code learns), a real HTTP emulator checked against GitHub's OpenAPI
description, PyGithub as in production.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import read_outputs
from keeptraining.cli import main
from keeptraining.github import commit_status, releases
from keeptraining.jobs import pr_check
from keeptraining.reports import comparison as comparison_report
from services.github_emulator import CommentRecord, GitHubEmulator, OpenAPISubset, fake_sha
from test_compare import accuracy, champion_folder, code_repo

pytestmark = pytest.mark.integration

TOKEN = "ghs_prchecktoken0123456789"


@pytest.fixture(scope="module")
def subset() -> OpenAPISubset:
    return OpenAPISubset()


@pytest.fixture
def emu(subset: OpenAPISubset) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(subset=subset, tokens={TOKEN}) as emulator:
        yield emulator
        assert emulator.violations == []


def gh_env(
    tmp_path: Path, emu: GitHubEmulator, event_name: str, event: dict, run_id: int = 4242, token: str = TOKEN
) -> dict[str, str]:
    event_path = tmp_path / f"event-{run_id}.json"
    event_path.write_text(json.dumps(event))
    for name in ("summary", "output"):
        (tmp_path / f"{name}-{run_id}").write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_REPOSITORY": emu.full_name,
        "GITHUB_API_URL": emu.url,
        "GITHUB_SERVER_URL": emu.server_url,
        "GITHUB_RUN_ID": str(run_id),
        "GITHUB_TOKEN": token,
        "GITHUB_STEP_SUMMARY": str(tmp_path / f"summary-{run_id}"),
        "GITHUB_OUTPUT": str(tmp_path / f"output-{run_id}"),
    }


def pr_event(emu: GitHubEmulator, number: int, sha: str, head_repo: str | None = None) -> dict:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": sha, "ref": "feature", "repo": {"full_name": head_repo or emu.full_name}},
            "base": {"ref": "main", "repo": {"full_name": emu.full_name}},
        },
    }


def pr_check_cli(
    repo: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, champion: Path | None
) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["pr-check", "--repo", str(repo)] + (["--champion", str(champion)] if champion else [])
    return main(args)


def publish_champion(emu: GitHubEmulator, folder: Path) -> None:
    """The champion release already in the emulator: model-v1 with the model and its card as assets."""
    repo = releases.Releases(releases.client(emu.url, TOKEN, emu.full_name), emu.full_name)
    release = repo.create("model-v1", "model-v1", "the champion", emu.default_branch)
    repo.upload(release, folder / "model.keras", "model.keras")
    repo.upload(release, folder / "model-card.json", "model-card.json")
    repo.gh.close()


def set_rate(repo: Path, rate: float) -> None:
    (repo / "ml" / "rate.txt").write_text(str(rate))


def test_two_pushes_leave_one_comment_edited_and_a_status_each(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = code_repo(tmp_path / "repo", 0.97)  # the first push makes the model worse
    publish_champion(emu, champion_folder(tmp_path / "champion", epochs=30, rate=0.95))
    first, second = fake_sha("pr-1"), fake_sha("pr-2")
    emu.open_pull(7, first)
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 7, first), run_id=101)
    assert pr_check_cli(repo, env, monkeypatch, None) == 3  # the champion: the latest model release
    downloaded = repo / ".keeptraining/compare/release/model.keras"
    assert downloaded.read_bytes() == (tmp_path / "champion/model.keras").read_bytes()
    comments = emu.comments_on(7)
    assert len(comments) == 1 and comments[0].edits == 0
    worse = accuracy(30, 0.97) - accuracy(30, 0.95)
    assert comparison_report.MARKER in comments[0].body
    assert f"**{worse:+.4f}**" in comments[0].body and worse < 0
    assert (
        "```mermaid" in comments[0].body
        and f"{emu.server_url}/{emu.full_name}/actions/runs/101" in comments[0].body
    )
    assert f"[model-v1]({emu.server_url}/" in comments[0].body  # the champion release's page
    [status] = [s for s in emu.statuses if s.sha == first]
    assert status.state == "failure" and status.context == commit_status.PR_CONTEXT
    assert status.context.startswith("keeptraining")
    assert "worse than the champion" in (status.description or "")
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"]))
    assert outputs["passed"] == "false" and outputs["delta"] == f"{worse:.4f}"
    assert outputs["report-artifact"] == "false"
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "candidate vs champion" in summary and f"{worse:+.4f}" in summary

    set_rate(repo, 0.93)  # the second push fixes it, and makes the model better
    emu.open_pull(7, second)
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 7, second), run_id=102)
    assert pr_check_cli(repo, env, monkeypatch, None) == 0
    comments = emu.comments_on(7)
    assert len(comments) == 1 and comments[0].edits == 1  # the same comment, edited in place
    better = accuracy(30, 0.93) - accuracy(30, 0.95)
    assert f"**{better:+.4f}**" in comments[0].body and f"{worse:+.4f}" not in comments[0].body
    assert "/actions/runs/102" in comments[0].body
    [status] = [s for s in emu.statuses if s.sha == second]
    assert status.state == "success" and status.context == commit_status.PR_CONTEXT
    assert len(emu.calls("create-comment")) == 1 and len(emu.calls("update-comment")) == 1


def test_a_persons_comment_quoting_the_marker_is_left_alone(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    sha = fake_sha("pr-q")
    emu.open_pull(8, sha)
    person = CommentRecord(
        1, 8, f"see {comparison_report.MARKER}", "octocat", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"
    )
    emu.comments.append(person)  # a person's comment (not a bot's) that quotes the marker
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 8, sha))
    assert pr_check_cli(repo, env, monkeypatch, champion_folder(tmp_path / "champion")) == 0
    comments = emu.comments_on(8)
    assert len(comments) == 2 and comments[0].edits == 0 and comments[1].user == "github-actions[bot]"


def test_without_a_champion_the_threshold_judges(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95, "threshold: 0.6\nepochs: 10\n")
    sha = fake_sha("pr-nc")
    emu.open_pull(9, sha)
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 9, sha))
    assert pr_check_cli(repo, env, monkeypatch, None) == 0  # 0.6409 at 10 epochs >= 0.6
    [comment] = emu.comments_on(9)
    assert "no champion yet" in comment.body and "| Threshold | 0.60 |" in comment.body
    assert emu.statuses[-1].state == "success"


def test_a_read_only_token_warns_and_the_status_still_tells(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    sha = fake_sha("pr-ro")
    emu.open_pull(10, sha)
    emu.denied = {"issues/create-comment"}
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 10, sha))
    assert pr_check_cli(repo, env, monkeypatch, champion_folder(tmp_path / "champion")) == 0
    assert emu.comments_on(10) == []
    assert "pull-requests: write" in capsys.readouterr().out
    assert emu.statuses[-1].state == "success"


def test_a_fork_posts_nothing_and_the_workflow_run_side_posts_its_report(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = code_repo(tmp_path / "repo", 0.97)
    sha = fake_sha("pr-fork")
    emu.open_pull(11, sha, head_repository="mallory/keeptraining-demo")
    event = pr_event(emu, 11, sha, "mallory/keeptraining-demo")
    env = gh_env(tmp_path, emu, "pull_request", event, run_id=301)
    publish_champion(emu, champion_folder(tmp_path / "champion"))
    assert pr_check_cli(repo, env, monkeypatch, None) == 3
    assert emu.comments_on(11) == [] and not [s for s in emu.statuses if s.sha == sha]
    assert emu.calls("create-comment") == [] and emu.calls("create-status") == []
    assert read_outputs(Path(env["GITHUB_OUTPUT"]))["report-artifact"] == "true"
    report = repo / pr_check.REPORT_DIR
    assert (report / pr_check.REPORT_FILE).is_file()

    # The workflow_run workflow: a fresh folder with only the downloaded artifact, a token that may write.
    artifact = tmp_path / "artifact"
    shutil.copytree(report, artifact)
    run_event = {
        "action": "completed",
        "workflow_run": {
            "id": 301,
            "head_sha": sha,
            "event": "pull_request",
            "html_url": f"{emu.server_url}/{emu.full_name}/actions/runs/301",
        },
    }
    env = gh_env(tmp_path, emu, "workflow_run", run_event, run_id=302)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["pr-report", "--report", str(artifact)]) == 0
    [comment] = emu.comments_on(11)
    worse = accuracy(30, 0.97) - accuracy(30, 0.95)
    assert f"**{worse:+.4f}**" in comment.body and "/actions/runs/301" in comment.body
    [status] = [s for s in emu.statuses if s.sha == sha]
    assert status.state == "failure" and status.target_url and status.target_url.endswith("/runs/301")
    assert main(["pr-report", "--report", str(artifact)]) == 0  # a re-run edits, never a second comment
    assert len(emu.comments_on(11)) == 1 and emu.comments_on(11)[0].edits == 1


def _forged(artifact: Path, change: dict) -> None:
    data = json.loads((artifact / pr_check.REPORT_FILE).read_text())
    data.update(change)
    (artifact / pr_check.REPORT_FILE).write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pull_request": 12}, "head is"),  # another pull request (whose head is another commit)
        ({"head_sha": "b" * 40}, "the run it came from built"),
        ({"comparison": {"metric": "accuracy", "threshold": 5}}, "threshold is not a fraction"),
        ({"format": "other"}, "is not a keeptraining.pr-report/1 report"),
    ],
)
def test_a_forged_fork_report_is_refused_and_nothing_is_posted(
    tmp_path: Path,
    emu: GitHubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    message: str,
) -> None:
    sha = fake_sha("pr-forged")
    emu.open_pull(11, sha, head_repository="mallory/keeptraining-demo")
    emu.open_pull(12, fake_sha("other"))
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    comparison = {
        "metric": "accuracy",
        "threshold": 0.9,
        "tolerance": 0.0,
        "epochs_asked": 30,
        "candidate": {"value": 0.9, "epochs": 30, "history": [0.9], "duration_s": 1.0, "stopped": None},
        "champion": None,
    }
    (artifact / pr_check.REPORT_FILE).write_text(
        json.dumps(
            {
                "format": "keeptraining.pr-report/1",
                "pull_request": 11,
                "head_sha": sha,
                "comparison": comparison,
            }
        )
    )
    _forged(artifact, change)
    env = gh_env(tmp_path, emu, "workflow_run", {"workflow_run": {"id": 5, "head_sha": sha}})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["pr-report", "--report", str(artifact)]) == 1
    assert message in capsys.readouterr().out
    assert emu.comments == [] and emu.statuses == []


def test_pr_check_refuses_another_event(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    env = gh_env(tmp_path, emu, "push", {"ref": "refs/heads/main"})
    assert pr_check_cli(repo, env, monkeypatch, None) == 2
    assert "runs on a pull_request event" in capsys.readouterr().out


def test_a_failed_comparison_sets_an_error_status(
    tmp_path: Path, emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    sha = fake_sha("pr-err")
    emu.open_pull(12, sha)
    monkeypatch.setenv("FAKE_MODE", "trainanyway")  # the script trains instead of evaluating the champion
    env = gh_env(tmp_path, emu, "pull_request", pr_event(emu, 12, sha))
    assert pr_check_cli(repo, env, monkeypatch, champion_folder(tmp_path / "champion")) == 1
    [status] = [s for s in emu.statuses if s.sha == sha]
    assert status.state == "error" and "Not compared" in (status.description or "")
    assert emu.comments_on(12) == []
