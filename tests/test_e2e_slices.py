"""End to end, under act against GitHub in a box: a chain whose attempt needs more than one run.

README's workflow verbatim in a consumer repository; its script follows the training contract,
KT_DEADLINE included: half-second epochs, and `time_budget: 2` in its config. Each run stops at
an epoch boundary, uploads its state, and dispatches the same attempt again (``attempt 1.2``),
which downloads that state and goes on from the epoch where the run before stopped.
"""

from __future__ import annotations

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
from test_e2e_act import FULL_NAME, box_chain, certs, dispatches_from, smtp, state_ledger  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

CONFIG = "backend: local\nepochs: 6\ntime_budget: 2\nmax_attempts: 1\n"

SLOW_SCRIPT = '''\
"""A consumer's script that follows the contract, KT_DEADLINE included: half-second epochs."""
import json, os, time
from pathlib import Path

out = Path(os.environ["KT_OUTPUT_DIR"])
target = int(os.environ["KT_EPOCHS"])
deadline = float(os.environ["KT_DEADLINE"])
start = json.loads(Path(os.environ["KT_RESUME_FROM"]).read_text())["epochs"] \\
    if os.environ.get("KT_RESUME_FROM") else 0
print(f"training epochs {start} -> {target}", flush=True)
history, stopped, epoch = [], None, start
for epoch in range(start + 1, target + 1):
    time.sleep(0.5)
    history.append(1 - 0.6 * 0.95 ** epoch)
    (out / "model.keras").write_text(json.dumps({"epochs": epoch}))
    if epoch < target and time.time() + 0.5 > deadline:
        stopped = "deadline"
        break
(out / "metrics.json").write_text(json.dumps({"accuracy": history[-1], "epochs": epoch,
                                              "history": {"val_accuracy": history}, "stopped": stopped}))
'''


def test_an_attempt_that_needs_two_runs_goes_on_in_the_next_run(
    tmp_path: Path,
    smtp: SmtpTestServer,
    certs: Certs,
    docker_base_image: str,
) -> None:
    repo = consumer_repo(
        tmp_path / "consumer",
        docker_base_image,
        workflow=readme_workflow(),
        script=SLOW_SCRIPT,
        config=CONFIG,
    )
    head = init_repo(repo, FULL_NAME)
    require_official_actions()
    action = keeptraining_action(tmp_path / "keeptraining")
    with box_chain(repo, tmp_path / "work", smtp, certs, local_actions=action) as chain:
        runs = chain.run_chain(max_runs=8)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
        assert len(runs) >= 2, "6 half-second epochs do not fit in one 2-second run"
        assert all(r.outputs["attempt"] == "1" for r in runs)
        assert [r.outputs["chain-status"] for r in runs] == ["continue"] * (len(runs) - 1) + ["exhausted"]
        # Each run dispatched the same attempt's next run, titled so, resuming its own state.
        labels = [f"1.{n}" for n in range(2, len(runs) + 1)]
        assert [chain.emulator.run(r.run_id).display_title.split(" · ")[1] for r in runs[1:]] == [
            f"attempt {label}" for label in labels
        ]
        for previous, run, label in zip(runs, runs[1:], labels, strict=False):
            assert dispatches_from(chain, previous.run_id) == [
                {"attempt": label, "epochs": "6", "commit": head, "resume-run-id": str(previous.run_id)}
            ]
            assert int(run.outputs["epochs"]) > int(previous.outputs["epochs"])
        record = state_ledger(chain, runs[-1].run_id)["attempts"][0]
        assert (record["outcome"], record["epochs_reached"], record["epochs_trained"]) == ("below", 6, 6)
        assert [s["run_id"] for s in record["slices"]] == [str(r.run_id) for r in runs[:-1]]
        starts = [s["from_epoch"] for s in record["slices"]]
        assert starts[1:] == [s["epochs_reached"] for s in record["slices"][:-1]]
        assert all(
            f"training epochs {s['epochs_reached']} -> 6" in run.log
            for s, run in zip(record["slices"], runs[1:], strict=True)
        )
        assert chain.emulator.statuses[-1].state == "failure"
    (mail,) = smtp.messages
    assert "Threshold not reached after 1 attempt" in str(mail.message["Subject"])
