"""The publish job (``keeptraining publish``) and the champion lookup, against the GitHub emulator.

Real local chains (the fake training script) make the state folder; the emulator serves the
Releases API in GitHub's shapes, checked against the OpenAPI description; PyGithub talks to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fakes import fake_repo, read_outputs
from keeptraining.cli import main
from keeptraining.config import settings
from keeptraining.engine import chain, rounds
from keeptraining.errors import PublishError
from keeptraining.github import releases
from keeptraining.jobs import champion_check
from keeptraining.reports import model_card
from keeptraining.state import ledger
from services.github_emulator import GitHubEmulator, OpenAPISubset

pytestmark = pytest.mark.integration

TOKEN = "ghs_publishTokenNeverShown0123456789"
COMMIT = "a" * 40


@pytest.fixture(scope="module")
def subset() -> OpenAPISubset:
    return OpenAPISubset()


@pytest.fixture
def emu(subset: OpenAPISubset) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(subset=subset, tokens={TOKEN}) as emulator:
        emulator.parents[COMMIT] = emulator.branches["main"]
        yield emulator
        assert emulator.violations == []


@pytest.fixture(autouse=True)
def token_never_leaks(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capsys.readouterr()
    shown = "\n".join(line for line in (out + err).splitlines() if not line.startswith("::add-mask::"))
    assert TOKEN not in caplog.text and TOKEN not in shown


def chain_state(
    root: Path,
    threshold: str = "0.9",
    *,
    branch: str = "main",
    commit: str = COMMIT,
    max_attempts: str = "10",
) -> Path:
    """A real local chain's state folder, as the training job leaves it (chain commit and branch set)."""
    repo = fake_repo(root / "repo")
    code = main(["run", "--repo", str(repo), "--threshold", threshold, "--max-attempts", max_attempts])
    assert code in (0, 3)
    state = repo / ".keeptraining"
    book = ledger.load(state)
    book.chain.update(
        {
            "commit": commit,
            "branch": branch,
            "repository": "octo-org/keeptraining-demo",
            "server_url": "http://github.localhost",
        }
    )
    for record in book.attempts:
        record.run = {
            "id": str(9_000_000_000 + record.attempt),
            "attempt": "1",
            "url": f"http://github.localhost/octo-org/keeptraining-demo/actions/runs/{record.attempt}",
        }
    ledger.save(state, book)
    return state


@pytest.fixture
def actions_env(emu: GitHubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The publish job's environment (set by ``publish``, only while it runs; tests may change it)."""
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": emu.full_name,
        "GITHUB_API_URL": emu.url,
        "GITHUB_SERVER_URL": "http://github.localhost",
        "GITHUB_RUN_ID": "9000000077",
        "GITHUB_REF_NAME": "main",
        "KT_GITHUB_TOKEN": TOKEN,
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_OUTPUT": str(tmp_path / "outputs"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    (tmp_path / "runner").mkdir()
    for name in (
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "GITHUB_TOKEN",
        "KT_DEFAULT_BRANCH",
        "KT_INPUT_COMMIT",
        "GITHUB_RUN_ATTEMPT",
        "KT_STATE_ARTIFACT",
    ):
        monkeypatch.delenv(name, raising=False)
    ENV.clear()
    ENV.update(env)
    return ENV


ENV: dict[str, str] = {}


def publish(state: Path) -> int:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        return main(["publish", "--state-dir", str(state)])


def client(emu: GitHubEmulator) -> releases.Releases:
    return releases.Releases(releases.client(emu.url, TOKEN, emu.full_name), emu.full_name)


def test_a_reached_chain_is_released_with_its_card_and_is_the_champion(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = chain_state(tmp_path / "one")
    assert publish(state) == 0
    assert len(emu.releases) == 1
    release = emu.releases[0]
    assert release.tag_name == "model-v1" and emu.latest_release() is release
    assert emu.tags["model-v1"] == COMMIT  # the tag points at the chain's commit
    names = [a.name for a in release.assets]
    assert names == ["model.keras", "model-card.json", "MODEL_CARD.md"]
    card = json.loads(emu.release_asset_bytes(release, "model-card.json") or b"")
    model = emu.release_asset_bytes(release, "model.keras") or b""
    assert card["model"]["sha256"] == hashlib.sha256(model).hexdigest()
    assert card["model"]["bytes"] == len(model)
    assert model == (state / "attempt-004" / "model.keras").read_bytes()
    assert card["commit"] == COMMIT and card["repository"] == emu.full_name
    assert card["release"] == {
        "tag": "model-v1",
        "url": "http://github.localhost/octo-org/keeptraining-demo/releases/tag/model-v1",
    }
    assert [r["run_id"] for r in card["runs"]] == ["9000000001", "9000000002", "9000000003", "9000000004"]
    markdown = (emu.release_asset_bytes(release, "MODEL_CARD.md") or b"").decode()
    assert (
        yaml.safe_load(markdown.split("---\n")[1])["model-index"][0]["results"][0]["metrics"][0]["value"]
        == card["accuracy"]
    )
    assert "gh attestation verify model.keras --repo octo-org/keeptraining-demo" in markdown
    outputs = read_outputs(Path(actions_env["GITHUB_OUTPUT"]))
    assert outputs["published"] == "true" and outputs["tag"] == "model-v1"
    assert outputs["model-sha256"] == card["model"]["sha256"] and outputs["attest"] == "false"
    assert Path(outputs["model-path"]).read_bytes() == model
    out = capsys.readouterr().out
    assert "::notice title=Attestation skipped::" in out
    assert "Model published" in Path(actions_env["GITHUB_STEP_SUMMARY"]).read_text()
    # the champion, found through the API, with the model downloaded and checked
    found = releases.champion(client(emu), download_model_to=tmp_path / "champion")
    assert found is not None and found.tag == "model-v1" and found.sha256 == card["model"]["sha256"]
    assert found.path is not None and found.path.read_bytes() == model and found.commit == COMMIT


def test_the_next_chain_is_the_next_tag_and_the_new_champion(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    state = chain_state(tmp_path / "one")
    assert publish(state) == 0
    assert publish(state) == 0  # a re-run of the same publish job: completed, not doubled
    assert [r.tag_name for r in emu.releases] == ["model-v1"]
    actions_env["GITHUB_RUN_ID"] = "9000000099"
    emu.parents["b" * 40] = COMMIT  # a later commit, pushed
    assert publish(chain_state(tmp_path / "two", "0.8", commit="b" * 40)) == 0
    assert [r.tag_name for r in emu.releases] == ["model-v1", "model-v2"]
    found = releases.champion(client(emu))
    assert found is not None and found.tag == "model-v2" and found.card["threshold"] == 0.8
    assert found.commit == "b" * 40


def test_a_chain_below_the_threshold_releases_nothing(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = chain_state(tmp_path / "one", "0.99", max_attempts="2")
    assert publish(state) == 0
    assert emu.releases == [] and not emu.calls("create-release")
    assert "did not reach its threshold" in capsys.readouterr().out
    assert read_outputs(Path(actions_env["GITHUB_OUTPUT"]))["published"] == "false"
    assert releases.champion(client(emu)) is None


def test_a_chain_on_another_branch_releases_nothing(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    actions_env["GITHUB_REF_NAME"] = "feature"
    assert publish(chain_state(tmp_path / "one", branch="feature")) == 0
    assert emu.releases == []
    assert "not the default branch 'main'" in capsys.readouterr().out


def test_a_failed_upload_warns_and_says_where_the_model_is(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.fail_next("upload-release-asset", 502)
    state = chain_state(tmp_path / "one")
    assert publish(state) == 0  # the verdict stands: the job does not fail
    out = capsys.readouterr().out
    assert "::warning title=Model not published::" in out and "HTTP 502" in out
    assert "keeptraining-state of run" in out and "9000000077" in out
    summary = Path(actions_env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "Model not published" in summary and "actions/runs/9000000077" in summary
    assert read_outputs(Path(actions_env["GITHUB_OUTPUT"]))["published"] == "false"
    assert len(emu.calls("upload-release-asset")) == 1  # an upload is never retried blindly
    # a re-run completes the same release instead of making a second one
    assert publish(state) == 0
    assert [r.tag_name for r in emu.releases] == ["model-v1"] and len(emu.releases[0].assets) == 3


@pytest.mark.parametrize(
    ("given", "run_attempt", "named"),
    [
        # "Re-run failed jobs" after a publish that failed: the train job's state is run attempt 2's, this
        # job runs in attempt 3; the train job's state-artifact output names it.
        ("keeptraining-state-attempt-2", "3", "keeptraining-state-attempt-2"),
        ("keeptraining-state", "2", "keeptraining-state"),
        # Not given (an older caller): this run attempt's name, derived as the action derives it.
        ("", "2", "keeptraining-state-attempt-2"),
        ("", "", "keeptraining-state"),
        # Not a state artifact's name: never echoed; this run attempt's instead.
        ("evil\n::error::forged", "4", "keeptraining-state-attempt-4"),
    ],
    ids=["train-job-output", "first-try-output", "derived", "first-try", "forged"],
)
def test_a_failed_publish_names_the_state_artifact_of_the_run_attempt_that_saved_it(
    emu: GitHubEmulator,
    actions_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
    run_attempt: str,
    named: str,
) -> None:
    actions_env.update({"KT_STATE_ARTIFACT": given, "GITHUB_RUN_ATTEMPT": run_attempt})
    emu.fail_next("upload-release-asset", 502)
    assert publish(chain_state(tmp_path / "one")) == 0
    out = capsys.readouterr().out
    assert "::warning title=Model not published::" in out and f"{named} of run 9000000077" in out
    summary = Path(actions_env["GITHUB_STEP_SUMMARY"]).read_text()
    assert f"The model stays in the artifact `{named}` of run" in summary
    assert "forged" not in out + summary
    # No state downloaded: the message names the artifact that should have been.
    assert publish(tmp_path / "not-downloaded") == 0
    assert f"the artifact {named} was not downloaded" in capsys.readouterr().out


def test_the_mail_names_the_state_artifact_of_the_run_attempt_that_trained_the_model(tmp_path: Path) -> None:
    book = ledger.load(chain_state(tmp_path / "one"))
    assert "in the artifact keeptraining-state of run http://" in (model_card.where_the_model_is(book) or "")
    for record in book.attempts:
        record.run = {**(record.run or {}), "attempt": "2"}  # trained in a re-run of its workflow run
    where = model_card.where_the_model_is(book) or ""
    assert "in the artifact keeptraining-state-attempt-2 of run http://github.localhost/" in where


def test_a_token_without_contents_write_warns_with_the_fix(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.denied.add("repos/create-release")
    assert publish(chain_state(tmp_path / "one")) == 0
    out = capsys.readouterr().out
    assert "HTTP 403" in out and "contents: write" in out
    assert emu.releases == []


def test_a_tampered_state_is_refused(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = chain_state(tmp_path / "one")
    model = state / "attempt-004" / "model.keras"
    model.unlink()
    secret = tmp_path / "host-secret"
    secret.write_text("not for a release")
    os.symlink(secret, model)
    assert publish(state) == 0
    assert emu.releases == []
    assert "::warning title=Model not published::" in capsys.readouterr().out


def test_a_missing_state_warns(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(tmp_path / "not-downloaded") == 0
    out = capsys.readouterr().out
    assert "::warning title=Model not published::No chain state" in out and emu.releases == []


def test_a_champion_whose_model_does_not_match_its_card_is_refused(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    assert publish(chain_state(tmp_path / "one")) == 0
    emu.releases[0].assets[0].data = b"another model"
    with pytest.raises(PublishError, match="does not match its card"):
        releases.champion(client(emu), download_model_to=tmp_path / "champion")
    emu.releases[0].assets[1].data = b'{"format": "something else"}'
    with pytest.raises(PublishError, match="does not fit"):
        releases.champion(client(emu))


def test_other_releases_are_not_the_champion(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    assert publish(chain_state(tmp_path / "one")) == 0
    gh = client(emu)
    gh.repo.create_git_release(tag="v1.0.0", name="app", message="", make_latest="true")
    assert emu.latest_release() is emu.releases[1]
    found = releases.champion(gh)
    assert found is not None and found.tag == "model-v1"


def test_a_tag_taken_meanwhile_is_answered_by_the_next_number(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    taken = {
        "message": "Validation Failed",
        "status": "422",
        "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
        "errors": [{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
    }
    emu.fail_next("create-release", 422, body=taken)  # another chain published model-v1 first
    assert publish(chain_state(tmp_path / "one")) == 0
    assert [r.tag_name for r in emu.releases] == ["model-v2"]
    assert [c.body["tag_name"] for c in emu.calls("create-release")] == ["model-v1", "model-v2"]


def test_next_tag_orders_the_model_releases() -> None:
    assert releases.next_tag([]) == "model-v1"
    assert releases.next_tag(["v2.0", "model-v9", "model-v10", "model-v3", "model-v01"]) == "model-v11"


def test_a_model_worse_than_the_champion_is_released_but_not_marked_latest(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    assert publish(chain_state(tmp_path / "one")) == 0  # model-v1: the champion
    state = chain_state(tmp_path / "two", commit="b" * 40)
    emu.parents["b" * 40] = COMMIT
    why = (
        "Published but not marked latest: the new model's accuracy 0.9000 is worse than the champion "
        "model-v1's 0.9100 (-0.0100), both evaluated with this commit's code and data; the champion "
        "stays."
    )
    (state / champion_check.CHECK_FILE).write_text(json.dumps({"latest": False, "reason": why}))
    assert publish(state) == 0
    assert [r.tag_name for r in emu.releases] == ["model-v1", "model-v2"]
    latest = emu.latest_release()
    assert latest is not None and latest.tag_name == "model-v1"  # the champion stays
    summary = Path(actions_env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "Published but not marked latest" in summary and "the champion stays" in summary
    found = releases.champion(client(emu))
    assert found is not None and found.tag == "model-v1"


def _round_state(root: Path) -> Path:
    """The state folder a merge job of parallel trials uploads after a round in which two trials reached:
    slot 1 (0.95, the winner), slot 2 (0.92, the last one at the threshold), slot 3 below; merged into the
    ledger (engine/rounds.py) and pruned as the merge job prunes it (jobs/attempt.py)."""
    conf = settings.resolve(
        {
            "strategy": "search",
            "parallel": 3,
            "threshold": 0.9,
            "epochs": 10,
            "search": {
                "space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
                "reduction_factor": 2,
                "seed": 1,
            },
        }
    )
    jobs = rounds.plan_round(conf, ledger.Ledger())
    folders = {}
    for slot, (job, value) in enumerate(zip(jobs, (0.95, 0.92, 0.6), strict=True), start=1):
        record = ledger.Attempt(
            attempt=slot,
            epochs=job.epochs,
            initial_epoch=0,
            resumed_from=None,
            outcome="reached" if value >= 0.9 else "below",
            metric=value,
            epochs_reached=job.epochs,
            epochs_trained=job.epochs,
            history=[value] * job.epochs,
            checkpoint="model.keras",
            trial=job.trial,
            rung=job.rung,
            trial_params=dict(job.params),
            round=1,
            runner={"slot": slot},
            run={"id": "9000000077", "attempt": "1"},
        )
        folder = root / f"slot-{slot}"
        rounds.write_result(folder, record)
        out = ledger.attempt_dir(folder, slot)
        out.mkdir(parents=True)
        (out / "model.keras").write_bytes(f"weights of trial {job.trial}, slot {slot}".encode())
        folders[slot] = folder
    state = root / "state"
    book = ledger.Ledger()
    records = rounds.merge_round(conf, state, book, jobs, folders, round_no=1)
    assert rounds.decide(conf, book, records).kind == "reached"
    assert rounds.representative(records).attempt == 1
    book.chain = {
        "threshold": 0.9,
        "metric": "accuracy",
        "commit": COMMIT,
        "branch": "main",
        "repository": "octo-org/keeptraining-demo",
        "server_url": "http://github.localhost",
    }
    ledger.save(state, book)
    chain.prune_checkpoints(state, book)
    return state


def test_a_round_of_parallel_trials_releases_its_winning_trial_not_its_last_one_at_the_threshold(
    emu: GitHubEmulator, actions_env: dict[str, str], tmp_path: Path
) -> None:
    state = _round_state(tmp_path)
    assert not (ledger.attempt_dir(state, 2) / "model.keras").exists()  # pruned: neither last nor best
    assert publish(state) == 0
    (release,) = emu.releases
    card = json.loads(emu.release_asset_bytes(release, "model-card.json") or b"")
    assert (card["attempt"], card["accuracy"]) == (1, 0.95)
    model = emu.release_asset_bytes(release, "model.keras")
    assert model == (state / "attempt-001" / "model.keras").read_bytes() == b"weights of trial 1, slot 1"
    assert read_outputs(Path(actions_env["GITHUB_OUTPUT"]))["published"] == "true"
