"""End to end: a chain that reaches publishes its model as a release; one that does not, publishes none.

README's workflow (calling the reusable keeptraining.yml) runs under act against GitHub in a box: the
train job, then the publish job, which downloads the real keeptraining-state artifact of its run, runs
``keeptraining publish`` (the composite action/publish) against the emulator's Releases API, and skips
the attestation with a notice (act offers no OIDC token). The training script is the consumer's fast
pure-Python one with ``backend: local``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.smtp_server import Certs, SmtpTestServer
from test_e2e_act import certs, consumer_chain, official_actions, smtp, state_files  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def test_a_chain_that_reaches_publishes_exactly_one_release_of_its_model(
    tmp_path: Path,
    smtp: SmtpTestServer,
    certs: Certs,
) -> None:
    with consumer_chain(tmp_path, "unused-base-image", smtp, certs, "backend: local\n") as (chain, head):
        runs = chain.run_chain(max_runs=8)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        assert [r.outputs["epochs"] for r in runs] == ["10", "20", "30", "40"]
        assert runs[-1].outputs["chain-status"] == "reached"
        assert all("Publish the model" not in r.log for r in runs[:-1])  # skipped below the threshold
        (release,) = chain.emulator.releases
        assert release.tag_name == "model-v1" and chain.emulator.latest_release() is release
        assert chain.emulator.tags["model-v1"] == head
        assert [a.name for a in release.assets] == ["model.keras", "model-card.json", "MODEL_CARD.md"]
        card = json.loads(chain.emulator.release_asset_bytes(release, "model-card.json") or b"")
        model = chain.emulator.release_asset_bytes(release, "model.keras") or b""
        assert card["model"]["sha256"] == hashlib.sha256(model).hexdigest()
        assert card["model"]["bytes"] == len(model)
        assert card["commit"] == head and card["repository"] == chain.box.full_name
        assert model == state_files(chain, runs[-1].run_id)["attempt-004/model.keras"]
        assert [r["run_id"] for r in card["runs"]] == [str(r.run_id) for r in runs]
        assert "Attestation skipped" in runs[-1].log  # no OIDC token under act: the step is skipped
        assert "Published model-v1" in runs[-1].log
    # the mail of the reached chain says where the model is
    assert "keeptraining-state" in str(smtp.messages[-1].message)


def test_a_chain_below_the_threshold_publishes_nothing(
    tmp_path: Path,
    smtp: SmtpTestServer,
    certs: Certs,
) -> None:
    config = "backend: local\nmax_attempts: 2\nstop_when_hopeless: false\nhyperparameters:\n  ceiling: 0.8\n"
    with consumer_chain(tmp_path, "unused-base-image", smtp, certs, config) as (chain, _head):
        runs = chain.run_chain(max_runs=4)
        assert [r.returncode for r in runs] == [0, 0]
        assert runs[-1].outputs["chain-status"] == "exhausted"
        assert chain.emulator.releases == []
        assert not chain.emulator.calls("create-release")
        assert all("Publish the model" not in r.log for r in runs)
