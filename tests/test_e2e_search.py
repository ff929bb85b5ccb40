"""End to end: a `strategy: search` chain through the README's workflow under act.

Each workflow run trains one trial run; the study travels in the chain state between runs
(the real keeptraining-state artifact, through GitHub in a box) and every dispatch carries the
attempt number only.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from services.act_driver import (
    consumer_repo,
    init_repo,
    keeptraining_action,
    readme_workflow,
    require_official_actions,
)
from services.smtp_server import Certs, SmtpTestServer
from test_e2e_act import FULL_NAME, box_chain, certs, smtp, state_ledger  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

# The stand-in with a known accuracy: learning rates near 0.03 cross 0.9 (the README workflow's
# threshold input) after about 25 epochs, so a trial must be promoted past its first 20.
SCRIPT = (Path(__file__).parent / "fixtures" / "fake_search_train.py").read_text()
CONFIG = """epochs: 20
max_attempts: 6
strategy: search
search:
  seed: 1
  reduction_factor: 2
  space:
    learning_rate: {type: float, low: 0.02, high: 0.045, log: true}
"""


def test_search_chain_carries_the_study_from_run_to_run(
    tmp_path: Path,
    smtp: SmtpTestServer,
    certs: Certs,
    docker_base_image: str,
) -> None:
    repo = consumer_repo(
        tmp_path / "consumer", docker_base_image, workflow=readme_workflow(), script=SCRIPT, config=CONFIG
    )  # the script runs as ml_code/nn.py
    init_repo(repo, FULL_NAME)
    require_official_actions()
    action = keeptraining_action(tmp_path / "keeptraining")
    with box_chain(repo, tmp_path / "work", smtp, certs, local_actions=action) as chain:
        runs = chain.run_chain(max_runs=6)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        assert runs[-1].outputs["chain-status"] == "reached"
        assert [r.outputs["attempt"] for r in runs] == [str(n) for n in range(1, len(runs) + 1)]
        # Dispatches carry the attempt only: the next run reads its trial from the chain state.
        for n, record in enumerate(chain.emulator.snapshot_dispatches(), start=2):
            assert record.inputs["attempt"] == str(n) and record.inputs["epochs"] == ""
        attempts = state_ledger(chain, runs[-1].run_id)["attempts"]
    trials = {a["trial"] for a in attempts}
    assert trials == set(range(1, len(trials) + 1)) and len(trials) >= 2
    for a in attempts:
        assert 0.02 <= a["trial_params"]["learning_rate"] <= 0.045
    promoted = [a for a in attempts if a["rung"] > 0]
    assert promoted, "the threshold needs a promoted trial (more than 20 epochs)"
    by_number = {a["attempt"]: a for a in attempts}
    for a in promoted:  # it resumed its own checkpoint (the script refuses any other)
        own = [b for b in attempts if b["trial"] == a["trial"] and b["rung"] == a["rung"] - 1]
        assert a["resumed_from"] == f"attempt-{own[0]['attempt']:03d}/model.keras"
        assert by_number[own[0]["attempt"]]["trial_params"] == a["trial_params"]
    assert len({a["trial_params"]["learning_rate"] for a in attempts if a["rung"] == 0}) == len(trials)
    assert not list(itertools.filterfalse(lambda a: a["outcome"] in ("below", "reached"), attempts))
    (mail,) = smtp.messages
    assert "Threshold reached: accuracy" in str(mail.message["Subject"])
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Best trial" in text and "learning_rate" in text
