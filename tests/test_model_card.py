"""The model card and the local champion bundle (``.keeptraining/champion/``), on real local chains."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fakes import fake_repo
from keeptraining.cli import main
from keeptraining.errors import PublishError
from keeptraining.reports import model_card
from keeptraining.state import ledger


def run_cli(repo: Path, *args: str) -> int:
    return main([args[0], "--repo", str(repo), *args[1:]])


def git_repo(root: Path) -> str:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "model",
        ],
        check=True,
    )
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.integration
def test_a_chain_that_reaches_writes_the_champion_bundle(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo", "hyperparameters: {learning_rate: 0.01}\n")
    head = git_repo(repo)
    assert run_cli(repo, "run", "--threshold", "0.9") == 0
    folder = repo / ".keeptraining" / "champion"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "model-card.json", "model.keras"]
    card = json.loads((folder / "model-card.json").read_text())
    model = (folder / "model.keras").read_bytes()
    assert card["model"] == {
        "file": "model.keras",
        "sha256": hashlib.sha256(model).hexdigest(),
        "bytes": len(model),
    }
    assert json.loads(model)["epochs"] == 35  # the reached attempt's checkpoint, not an earlier one
    assert model == (repo / ".keeptraining" / "attempt-004" / "model.keras").read_bytes()
    assert card["commit"] == head
    assert card["metric"] == "accuracy" and card["accuracy"] >= 0.9 and card["threshold"] == 0.9
    assert card["epochs"] == 35 and card["attempt"] == 4
    assert [r["outcome"] for r in card["runs"]] == ["below", "below", "below", "reached"]
    assert card["hyperparameters"] == {"learning_rate": 0.01}
    assert card["keeptraining"]["version"] and card["created_at"].endswith("Z")
    found = model_card.champion(folder)
    assert found is not None and found.sha256 == card["model"]["sha256"]
    assert found.path == folder / "model.keras" and found.source == "local"
    text = (folder / "MODEL_CARD.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    metrics = front["model-index"][0]["results"][0]["metrics"][0]
    assert metrics["type"] == "accuracy" and metrics["value"] == card["accuracy"]
    assert head[:12] in text and "```mermaid" in text and 'load_model("model.keras")' in text
    assert "sha256sum model.keras" in text and "| Attempt |" in text
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None and "state folder's champion/" in body.get_content()  # where the model is


@pytest.mark.integration
def test_a_chain_below_the_threshold_leaves_the_champion_untouched(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    assert run_cli(repo, "run", "--threshold", "0.9") == 0
    folder = repo / ".keeptraining" / "champion"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run_cli(repo, "run", "--threshold", "0.99", "--max-attempts", "2") == 3
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # a new reached chain replaces it (a second later: archive_previous names the old chain by the second)
    time.sleep(1.1)
    assert run_cli(repo, "run", "--threshold", "0.8", "--epochs", "25") == 0
    card = json.loads((folder / "model-card.json").read_text())
    assert card["threshold"] == 0.8 and card["epochs"] == 22  # stopped early once reached
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".champion-")]


@pytest.mark.integration
def test_a_chain_below_the_threshold_creates_no_champion(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    assert run_cli(repo, "run", "--threshold", "0.99", "--max-attempts", "1") == 3
    assert not (repo / ".keeptraining" / "champion").exists()
    assert model_card.champion(repo / ".keeptraining" / "champion") is None


@pytest.mark.integration
def test_a_tampered_champion_is_refused(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    assert run_cli(repo, "run", "--threshold", "0.8") == 0
    folder = repo / ".keeptraining" / "champion"
    (folder / "model.keras").write_text('{"epochs": 99}')
    with pytest.raises(PublishError, match="does not match its card"):
        model_card.champion(folder)
    card = json.loads((folder / "model-card.json").read_text())
    card["model"]["file"] = "../../etc/passwd"
    (folder / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(PublishError, match="does not fit"):
        model_card.champion(folder)


def test_a_card_is_refused_unless_it_fits_the_schema() -> None:
    with pytest.raises(PublishError, match="not JSON"):
        model_card.parse_card(b"{", "x")
    with pytest.raises(PublishError, match="does not fit"):
        model_card.parse_card(b'{"format": "keeptraining.model-card/1"}', "x")


def test_no_reached_attempt_is_no_model(tmp_path: Path) -> None:
    book = ledger.Ledger(
        chain={"threshold": 0.9, "metric": "accuracy"},
        attempts=[ledger.Attempt(1, 10, 0, None, "below", metric=0.5, checkpoint="model.keras")],
    )
    assert model_card.champion_attempt(book) is None
    with pytest.raises(PublishError, match="no model to publish"):
        model_card.build_card(book, tmp_path)


def test_the_card_names_the_training_image_by_tag_hash_and_digest() -> None:
    record = ledger.Attempt(attempt=3, epochs=30, initial_epoch=20, resumed_from=None, outcome="reached")
    assert model_card.image_info(record) == {"tag": None, "content_hash": None, "digest": None}
    digest = "sha256:" + "a" * 64
    record.params = {"image": "keeptraining-train:0123456789abcdef", "image_digest": digest}
    assert model_card.image_info(record) == {
        "tag": "keeptraining-train:0123456789abcdef",
        "content_hash": "0123456789abcdef",
        "digest": digest,
    }
    record.params["image_digest"] = "latest"  # not a digest (a tampered ledger): no claim
    assert model_card.image_info(record)["digest"] is None
