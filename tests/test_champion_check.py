"""The default branch's new model against the champion release (jobs/champion_check.py): evaluated
with the new commit's code (evaluate-only), a worse model is published but not marked latest.

Real processes (local backend, tests/fixtures/fake_compare_train.py) and the GitHub emulator with
a champion release in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keeptraining.cli import load_config
from keeptraining.jobs import champion_check
from services.github_emulator import GitHubEmulator, OpenAPISubset
from test_compare import accuracy, champion_folder, code_repo
from test_pr_check import TOKEN, publish_champion


def test_judge_keeps_the_champion_unless_the_new_model_is_not_worse() -> None:
    assert champion_check.judge("accuracy", 0.93, "model-v1", 0.92, 0.0).latest
    assert champion_check.judge("accuracy", 0.92, "model-v1", 0.92, 0.0).latest
    worse = champion_check.judge("accuracy", 0.91, "model-v1", 0.92, 0.0)
    assert not worse.latest
    assert "not marked latest" in worse.reason and "0.9100" in worse.reason and "-0.0100" in worse.reason
    assert champion_check.judge("accuracy", 0.91, "model-v1", 0.92, 0.02).latest


def test_read_is_true_without_a_check_and_for_anything_but_false(tmp_path: Path) -> None:
    assert champion_check.read(tmp_path) == (True, "")
    (tmp_path / champion_check.CHECK_FILE).write_text('{"latest": "no"}')
    assert champion_check.read(tmp_path) == (True, "")
    (tmp_path / champion_check.CHECK_FILE).write_text('{"latest": false, "reason": "worse\\n::error::x"}')
    latest, why = champion_check.read(tmp_path)
    assert not latest and "\n" not in why


@pytest.mark.integration
@pytest.mark.parametrize(("value", "latest"), [(0.80, False), (0.95, True)])
def test_on_the_default_branch_the_champion_is_evaluated_with_the_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: float, latest: bool
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    with GitHubEmulator(subset=OpenAPISubset(), tokens={TOKEN}) as emu:
        publish_champion(emu, champion_folder(tmp_path / "champion", epochs=30, rate=0.95))
        event = tmp_path / "event.json"
        event.write_text(json.dumps({"repository": {"default_branch": "main"}}))
        env = {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REPOSITORY": emu.full_name,
            "GITHUB_API_URL": emu.url,
            "GITHUB_TOKEN": TOKEN,
        }
        args = type(
            "Args",
            (),
            {"config": None, "repo": repo, "hp": [], **{k: None for k in ("threshold", "tolerance")}},
        )()
        config = load_config(args, {})
        state = repo / ".keeptraining"
        state.mkdir()
        verdict = champion_check.after_reached(config, repo, state, value, env)
        assert verdict is not None and verdict.latest is latest
        data = json.loads((state / champion_check.CHECK_FILE).read_text())
        assert data["champion"] == "model-v1" and data["champion_value"] == pytest.approx(accuracy(30, 0.95))
        assert champion_check.read(state)[0] is latest
        assert not (state / "compare").exists(), "the champion's model is not left in the state artifact"
        # Not the default branch: nothing to compare (the pull-request check does that).
        (state / champion_check.CHECK_FILE).unlink()
        elsewhere = {**env, "GITHUB_REF": "refs/heads/x"}
        assert champion_check.after_reached(config, repo, state, value, elsewhere) is None
        assert not (state / champion_check.CHECK_FILE).exists()
        assert emu.violations == []
