"""End to end: a pull request under act, against GitHub in a box with a champion release already
in it. README's workflow runs verbatim (the reusable keeptraining.yml's pr-check job, the real
action, actions/checkout of the pull request's commit); the pull request's code is
tests/fixtures/fake_compare_train.py, whose rate.txt decides how well it learns (local backend: no
Docker image), so a push can make the model worse or better.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keeptraining.github import releases
from keeptraining.reports import comparison as comparison_report
from services.act_driver import (
    CT_WORKFLOW,
    ActChain,
    consumer_repo,
    git,
    init_repo,
    keeptraining_action,
    readme_workflow,
    require_official_actions,
)
from services.github_box import GitHubBox
from test_compare import accuracy, champion_folder

pytestmark = [pytest.mark.e2e]

TOKEN = "ghs_e2ePrTokenValue0123456789abcdef"
FULL_NAME = "acme/keeptraining"
FIXTURE = Path(__file__).parent / "fixtures" / "fake_compare_train.py"
REPORT_WORKFLOW = ".github/workflows/keeptraining-pr-report.yml"


@pytest.fixture(autouse=True)
def official_actions() -> None:
    require_official_actions()


def test_two_pushes_to_a_pull_request_leave_one_comment_and_a_status_each(tmp_path: Path) -> None:
    repo = consumer_repo(
        tmp_path / "consumer",
        "unused-base-image",
        workflow=readme_workflow(),
        script=FIXTURE.read_text(),
        config="backend: local\n",
    )
    (repo / "ml_code" / "rate.txt").write_text("0.95")
    init_repo(repo, FULL_NAME)
    action = keeptraining_action(tmp_path / "keeptraining")
    champion = champion_folder(tmp_path / "champion", epochs=30, rate=0.95)  # main's model: model-v1
    with GitHubBox(
        repo, tmp_path / "work" / "box", FULL_NAME, TOKEN, CT_WORKFLOW, called_roots=list(action.values())
    ) as box:
        chain = ActChain(repo, box, tmp_path / "work", secrets={"GITHUB_TOKEN": TOKEN}, local_actions=action)
        published = releases.Releases(releases.client(box.emulator.url, TOKEN, FULL_NAME), FULL_NAME)
        release = published.create("model-v1", "model-v1", "the champion", "main")
        for name in ("model.keras", "model-card.json"):
            published.upload(release, champion / name, name)
        git(repo, "checkout", "-q", "-b", "feature")

        chain.commit("A slower learner", {"ml_code/rate.txt": "0.97"})  # makes the model worse
        first = chain.pull_request(7)
        worse_run = chain.step()
        assert worse_run is not None
        assert worse_run.returncode != 0, worse_run.log[-4000:]  # the check fails: the job says so too
        assert len(box.emulator.comments_on(7)) == 1, worse_run.log[-6000:]
        [comment] = box.emulator.comments_on(7)
        worse = accuracy(30, 0.97) - accuracy(30, 0.95)
        assert comparison_report.MARKER in comment.body and f"**{worse:+.4f}**" in comment.body
        assert f"/actions/runs/{first.id}" in comment.body and "```mermaid" in comment.body
        [status] = [s for s in box.emulator.statuses if s.sha == first.head_sha]
        assert (status.state, status.context) == ("failure", "keeptraining/pull-request")
        assert box.emulator.dispatches == [] and box.emulator.releases[1:] == []  # no chain, no release

        chain.commit("A faster learner", {"ml_code/rate.txt": "0.93"})  # the second push: better
        second = chain.pull_request(7)
        better_run = chain.step()
        assert better_run is not None
        assert better_run.returncode == 0, better_run.log[-4000:]
        [comment] = box.emulator.comments_on(7)  # still one comment, edited in place
        assert comment.edits == 1
        better = accuracy(30, 0.93) - accuracy(30, 0.95)
        assert f"**{better:+.4f}**" in comment.body and f"/actions/runs/{second.id}" in comment.body
        [status] = [s for s in box.emulator.statuses if s.sha == second.head_sha]
        assert (status.state, status.context) == ("success", "keeptraining/pull-request")
        assert box.emulator.violations == [], "the emulator answered outside GitHub's description"
    shutil.rmtree(tmp_path / "work", ignore_errors=True)


def test_a_fork_posts_nothing_and_the_workflow_run_workflow_posts_its_report(tmp_path: Path) -> None:
    """A fork's pull request: its run posts nothing (read-only token: the emulator refuses comments and
    statuses, as GitHub does) and leaves the report artifact; keeptraining-pr-report.yml (on:
    workflow_run, the consumer's copy with the remote action) checks it and posts comment and status."""
    repo = consumer_repo(
        tmp_path / "consumer",
        "unused-base-image",
        workflow=readme_workflow(),
        script=FIXTURE.read_text(),
        config="backend: local\n",
    )
    (repo / "ml_code" / "rate.txt").write_text("0.95")
    report_workflow = (Path(__file__).parents[1] / REPORT_WORKFLOW).read_text()
    remote = report_workflow.replace("uses: ./action", "uses: OWNER/keeptraining/action@v1")
    (repo / REPORT_WORKFLOW).write_text(remote)
    init_repo(repo, FULL_NAME)
    action = keeptraining_action(tmp_path / "keeptraining")
    champion = champion_folder(tmp_path / "champion", epochs=30, rate=0.95)
    with GitHubBox(
        repo, tmp_path / "work" / "box", FULL_NAME, TOKEN, CT_WORKFLOW, called_roots=list(action.values())
    ) as box:
        chain = ActChain(repo, box, tmp_path / "work", secrets={"GITHUB_TOKEN": TOKEN}, local_actions=action)
        published = releases.Releases(releases.client(box.emulator.url, TOKEN, FULL_NAME), FULL_NAME)
        release = published.create("model-v1", "model-v1", "the champion", "main")
        for name in ("model.keras", "model-card.json"):
            published.upload(release, champion / name, name)
        git(repo, "checkout", "-q", "-b", "feature")
        chain.commit("A faster learner", {"ml_code/rate.txt": "0.93"})
        box.emulator.denied = {"issues/create-comment", "issues/update-comment", "repos/create-commit-status"}
        pr_run = chain.pull_request(8, head_repository="mallory/keeptraining")
        fork_run = chain.step()
        assert fork_run is not None
        assert fork_run.returncode == 0, fork_run.log[-4000:]
        assert box.emulator.comments == [] and box.emulator.statuses == []
        assert [
            c
            for c in box.emulator.requests
            if c.operation in ("issues/create-comment", "repos/create-commit-status")
        ] == [], "the fork's run tried to post"
        assert "keeptraining-pr-report" in fork_run.log

        box.emulator.denied = set()  # the workflow_run run's token may write
        git(repo, "checkout", "-q", "main")  # workflow_run runs the default branch's files
        posted = chain.workflow_run(REPORT_WORKFLOW, pr_run, "success")
        assert posted.returncode == 0, posted.log[-6000:]
        [comment] = box.emulator.comments_on(8)
        better = accuracy(30, 0.93) - accuracy(30, 0.95)
        assert comparison_report.MARKER in comment.body and f"**{better:+.4f}**" in comment.body
        assert f"/actions/runs/{pr_run.id}" in comment.body
        [status] = [s for s in box.emulator.statuses if s.sha == pr_run.head_sha]
        assert (status.state, status.context) == ("success", "keeptraining/pull-request")
        assert "fake-compare" not in posted.log, "the workflow_run run must not run the pull request's code"
        assert box.emulator.violations == []
