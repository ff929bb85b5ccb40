"""An attempt longer than one run: the deadline, the slices in the ledger, and runs that go on.

Unit tests for the rules (time_budget.py, slices.py), then real processes: a stand-in script
with slow epochs (tests/fixtures/fake_train.py, FAKE_EPOCH_S) trained by separate
``keeptraining attempt`` processes, each in a fresh checkout that gets only the previous
run's state folder, as a GitHub run gets it from the artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import fake_repo, read_outputs
from keeptraining.config import settings as config_mod
from keeptraining.contract import env as contract_env
from keeptraining.engine import chain, slices, strategy, time_budget
from keeptraining.errors import LedgerError, RestoreError, SliceError
from keeptraining.github import dispatch, restore
from keeptraining.reports import summary as report
from keeptraining.state import ledger
from keeptraining.state.ledger import BELOW, FAILED, REACHED, SLICED, Attempt, Ledger
from test_report import decode_png

STATE = ".keeptraining"


def config(**values: object) -> config_mod.Config:
    return config_mod.resolve({"threshold": 0.9, **values})


# --------------------------------------------------------------------------- the deadline


@pytest.mark.parametrize(("limit", "margin"), [(2, 1), (10, 5), (600, 60), (3600, 360), (6 * 3600, 900)])
def test_the_margin_is_a_tenth_of_the_limit_between_5_s_and_15_min(limit: float, margin: float) -> None:
    assert time_budget.margin(limit) == margin


def test_the_deadline_is_the_earliest_limit() -> None:
    start = 1_000_000.0
    assert time_budget.Budget(timeout_s=3600).deadline(start) == start + 3600 - 360
    assert time_budget.Budget(timeout_s=3600, budget_s=60).deadline(start) == start + 60
    both = time_budget.Budget(timeout_s=3600, budget_s=60, job_deadline=start + 30)
    assert both.deadline(start) == start + 30
    assert time_budget.Budget(timeout_s=3600).deadline(start + 0.9) == start + 3240  # whole seconds, down


def test_the_jobs_limit_counts_from_the_actions_start_on_github_only() -> None:
    started = {"GITHUB_ACTIONS": "true", time_budget.STARTED_ENV: "1000000"}
    assert time_budget.job_deadline(config(), started) == 1_000_000 + 360 * 60 - 900  # GitHub's default
    assert time_budget.job_deadline(config(job_timeout_minutes=30), started) == 1_000_000 + 1800 - 180
    assert time_budget.job_deadline(config(), {time_budget.STARTED_ENV: "1000000"}) is None  # not on GitHub
    assert time_budget.job_deadline(config(), {"GITHUB_ACTIONS": "true"}) is None  # start unknown
    budget = time_budget.budget(config(time_budget=120, job_timeout_minutes=30), started)
    assert (budget.budget_s, budget.job_deadline) == (120, 1_000_000 + 1620)
    assert "time_budget 120 s" in budget.describe() and "the job's limit" in budget.describe()


@pytest.mark.parametrize(
    ("minutes", "capped"), [(1380, False), (1440, True), (5 * 24 * 60, True), (43200, True)]
)
def test_a_long_jobs_training_ends_before_its_github_token_expires(minutes: int, capped: bool) -> None:
    """GITHUB_TOKEN lives 24 h at most: a 5-day self-hosted job still slices within 23 h of the action's
    start (less the margin), so the upload, status and dispatch at its end have a valid token."""
    started = {"GITHUB_ACTIONS": "true", time_budget.STARTED_ENV: "1000000"}
    deadline = time_budget.job_deadline(config(job_timeout_minutes=minutes), started)
    assert deadline is not None and deadline <= 1_000_000 + time_budget.TOKEN_LIFETIME_S - 3600 - 900
    assert deadline == 1_000_000 + min(minutes * 60, 23 * 3600) - 900
    budget = time_budget.budget(config(job_timeout_minutes=minutes), started)
    assert budget.token_capped is capped
    assert ("GITHUB_TOKEN's 24 h lifetime" in budget.describe()) is capped
    assert budget.deadline(1_000_000.0) <= deadline


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_a_bad_time_budget_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(config_mod.ConfigError, match="time_budget"):
        config_mod.resolve({"time_budget": config_mod.coerce("time_budget", bad)})


# --------------------------------------------------------------------------- labels and markers


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("3", (3, 1)),
        ("3.2", (3, 2)),
        (" 12.10 ", (12, 10)),
        ("3.", None),
        ("3.2.1", None),
        ("x", None),
        ("٣", None),
    ],
)
def test_attempt_labels(text: str, parsed: tuple[int, int] | None) -> None:
    assert slices.parse_label(text) == parsed
    if parsed is not None:
        assert slices.parse_label(slices.label(*parsed)) == parsed
    assert slices.label(3) == "3" and slices.label(3, 2) == "3.2"


def test_the_runs_of_one_attempt_never_look_like_each_other() -> None:
    first, second = dispatch.attempt_marker(3), dispatch.attempt_marker(3, 2)
    assert first.search("Training · attempt 3 · 30 epochs") and not first.search("attempt 3.2 · 30 epochs")
    assert second.search("Training · attempt 3.2 · 30 epochs")
    assert not second.search("attempt 3 · 30 epochs") and not second.search("attempt 3.20 · 30 epochs")
    assert not first.search("attempt 30 · 300 epochs")
    assert not dispatch.attempt_marker(1).search("attempt 1.2")


# --------------------------------------------------------------------------- the ledger record


def run_record(
    epochs: int,
    initial: int,
    reached: int | None,
    outcome: str,
    *,
    run_id: str,
    checkpoint: str | None = "model.keras",
) -> Attempt:
    history = [0.5 + i / 100 for i in range((reached or initial) - initial)]
    return Attempt(
        attempt=1,
        epochs=epochs,
        initial_epoch=initial,
        resumed_from=None,
        outcome=outcome,
        metric=history[-1] if history else None,
        epochs_reached=reached,
        epochs_trained=len(history),
        history=history,
        duration_s=2.0,
        checkpoint=checkpoint if reached else None,
        run={"id": run_id, "url": f"https://x/{run_id}"},
    )


def test_runs_of_one_attempt_add_up_in_one_record() -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    assert first.slices == [
        {
            "run_id": "11",
            "run_url": "https://x/11",
            "started_at": "",
            "from_epoch": 0,
            "epochs_reached": 4,
            "epochs_trained": 4,
            "duration_s": 2.0,
            "stopped": "deadline",
            "checkpoint": "model.keras",
        }
    ]
    second = slices.merge(first, run_record(10, 4, 7, SLICED, run_id="12"), slices.INTERRUPTED, "slice-2")
    assert second is first and second.outcome == SLICED
    assert (second.epochs_reached, second.epochs_trained, second.checkpoint) == (7, 7, "slice-2/model.keras")
    assert len(second.history) == 7 and second.duration_s == 4.0 and second.run["id"] == "12"
    assert [s["stopped"] for s in second.slices] == ["deadline", "interrupted"]
    assert slices.old_checkpoints(second) == ["model.keras"]
    last = slices.merge(second, run_record(10, 7, 10, BELOW, run_id="13"), None, "slice-3")
    assert (last.outcome, last.epochs_reached, last.epochs_trained, len(last.history)) == (BELOW, 10, 10, 10)
    assert len(last.slices) == 2 and slices.runs(last) == 3 and slices.ends(last) == [4, 7]
    assert slices.first_run_id(last) == "11" and last.run["id"] == "13"


def test_a_cancelled_run_that_saved_nothing_new_keeps_the_attempt_unfinished() -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    nothing = run_record(10, 4, None, SLICED, run_id="12")
    kept = slices.merge(first, nothing, slices.INTERRUPTED, "slice-2")
    assert (kept.outcome, kept.epochs_reached, kept.checkpoint) == (SLICED, 4, "model.keras")
    assert [s["epochs_reached"] for s in kept.slices] == [4, 4]
    crashed = run_record(10, 4, None, FAILED, run_id="13")
    crashed.error = "Traceback"
    failed = slices.merge(kept, crashed, None, "slice-3")
    assert (failed.outcome, failed.error, failed.epochs_reached, failed.checkpoint) == (
        FAILED,
        "Traceback",
        4,
        "model.keras",
    )


def test_an_unfinished_attempt_continues_with_the_same_target() -> None:
    record = slices.merge(None, run_record(20, 10, 14, SLICED, run_id="11"), slices.DEADLINE, None)
    book = Ledger(attempts=[run_record(10, 0, 10, BELOW, run_id="10"), record])
    book.attempts[0].attempt, record.attempt = 1, 2
    decision = strategy.decide(config(max_slices=5), book)
    assert (decision.kind, decision.next_epochs, decision.next_run) == (strategy.CONTINUE, 20, 2)
    assert decision.reason.startswith(
        "Attempt 2 continues in the next run: this run's time ran out at epoch 14 of 20"
    )
    assert slices.plan(record) == strategy.Plan(2, 20, 14, record, run=2)
    # The training contract: the script is told the run, `2.2` (DESIGN's KT_ATTEMPT), the dispatch's label.
    told = contract_env.environment(slices.plan(record), threshold=0.9, metric="accuracy", adapt="auto")
    assert told["KT_ATTEMPT"] == slices.label(2, 2) == "2.2"
    first = contract_env.environment(
        strategy.Plan(2, 20, 0, None), threshold=0.9, metric="accuracy", adapt="auto"
    )
    assert first["KT_ATTEMPT"] == "2"


def test_a_run_without_a_new_epoch_or_past_max_slices_fails_the_attempt() -> None:
    plan = strategy.Plan(1, 10, 4, None)
    stuck = run_record(10, 4, 4, SLICED, run_id="12")
    with pytest.raises(SliceError, match="before it finished an epoch"):
        slices.check(stuck, slices.DEADLINE, plan, None, config())
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    with pytest.raises(SliceError, match=r"after 2 runs \(max_slices = 2\)"):
        slices.check(
            run_record(10, 4, 6, SLICED, run_id="12"), slices.DEADLINE, plan, first, config(max_slices=2)
        )
    slices.check(
        run_record(10, 4, 6, SLICED, run_id="12"), slices.DEADLINE, plan, first, config(max_slices=3)
    )


def test_only_the_last_attempt_may_be_unfinished(tmp_path: Path) -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    second = run_record(20, 0, 20, BELOW, run_id="12")
    second.attempt = 2
    ledger.save(tmp_path, Ledger(attempts=[first]))
    assert ledger.load(tmp_path).attempts[0].slices == first.slices  # the schema knows the field
    ledger.save(tmp_path, Ledger(attempts=[first, second]))
    with pytest.raises(LedgerError, match="only the last attempt can be unfinished"):
        ledger.load(tmp_path)


def test_restored_state_may_end_with_the_attempt_this_run_continues(tmp_path: Path) -> None:
    commit = "c" * 40
    record = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    ledger.save(tmp_path, Ledger(chain={"commit": commit}, attempts=[record]))
    restore.check_restored(tmp_path, commit, 1, 11)  # attempt 1's next run
    with pytest.raises(RestoreError, match="ends at attempt 1, and this is attempt 3"):
        restore.check_restored(tmp_path, commit, 3, 11)
    assert restore.inputs_look_valid({"KT_INPUT_ATTEMPT": "1.2"})
    assert not restore.inputs_look_valid({"KT_INPUT_ATTEMPT": "1.2;x"})


def test_summary_and_chart_mark_where_a_run_ended(tmp_path: Path) -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    done = slices.merge(first, run_record(10, 4, 10, BELOW, run_id="12"), None, "slice-2")
    book, cfg = Ledger(attempts=[done]), config()
    table = report.attempts_markdown(book, cfg)
    assert "[1 (2 runs)](https://x/12)" in table and "runs ended after epoch 4" in table
    assert "A run ended after epoch 4" in report.mermaid_chart(book, cfg)
    pixels = decode_png(report.render_chart(book, cfg, tmp_path / "chart.png").read_bytes())
    orange = (255, 127, 14)  # the dashed line after epoch 4 (tab:orange), from the top of the plot down
    down = [sum(1 for row in pixels if row[x] == orange) for x in range(len(pixels[0]))]
    assert max(down) > 150  # a vertical line (dashed: 6 of every 10 pixels) down the plot
    unfinished = Ledger(
        attempts=[slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)]
    )
    assert "sliced: continues in the next run" in report.attempts_table(unfinished, cfg)


# --------------------------------------------------------------------------- real processes


def attempt_process(repo: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "keeptraining", "attempt", "--repo", str(repo), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def next_checkout(previous: Path, root: Path, config_text: str) -> Path:
    """A fresh checkout that gets only the previous run's state folder (the artifact hand-off)."""
    repo = fake_repo(root, config_text)
    shutil.copytree(previous / STATE, repo / STATE)
    return repo


@pytest.mark.integration
def test_an_attempt_longer_than_its_runs_reaches_its_target_across_processes(tmp_path: Path) -> None:
    # 0.25 s epochs, 2 s a run: accuracy 1 - 0.6 * 0.95**e first reaches 0.7 at epoch 14.
    text = "threshold: 0.7\nepochs: 20\ntime_budget: 2\nmax_slices: 20\n"
    repo = fake_repo(tmp_path / "run-1", text)
    outputs = []
    for number in range(1, 20):
        proc = attempt_process(repo, FAKE_EPOCH_S="0.25")
        outputs.append(proc.communicate(timeout=120)[0])
        assert proc.returncode == 0, outputs[-1]
        (record,) = ledger.load(repo / STATE).attempts
        if record.outcome != SLICED:
            break
        assert "continues in the next run" in outputs[-1]
        repo = next_checkout(repo, tmp_path / f"run-{number + 1}", text)
    runs = len(outputs)
    assert runs >= 2, "2 s runs of 0.25 s epochs cannot train 14 epochs at once"
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (REACHED, 14, 14)
    assert record.history == [round(1 - 0.6 * 0.95**e, 6) for e in range(1, 15)]
    assert len(record.slices) == runs - 1 and all(s["stopped"] == "deadline" for s in record.slices)
    starts = [s["from_epoch"] for s in record.slices]
    assert starts[0] == 0 and starts[1:] == [s["epochs_reached"] for s in record.slices[:-1]]
    for index, entry in enumerate(record.slices):  # each run resumed the one before: the fake checks it
        folder = "" if index == 0 else f"slice-{index + 1}/"
        assert entry["checkpoint"] == f"{folder}model.keras"
        saved = json.loads((repo / STATE / "attempt-001" / folder / "model.keras").read_text())
        assert saved["epochs"] == entry["epochs_reached"]
        assert f"fake: epochs {entry['from_epoch']} -> 20" in outputs[index]
        assert f"fake: KT_ATTEMPT={slices.label(1, index + 1)}\n" in outputs[index]  # 1, then 1.2, 1.3 ...
    assert record.checkpoint == f"slice-{runs}/model.keras"
    mails = list((repo / STATE / "outbox").glob("*.eml"))
    assert len(mails) == 1 and "Threshold reached" in mails[0].read_text()
    assert f"1 ({runs} runs)" in report.attempts_table(ledger.load(repo / STATE), config())


@pytest.mark.integration
def test_a_run_that_cannot_finish_the_attempt_in_max_slices_fails_with_what_it_saved(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, "epochs: 40\ntime_budget: 1\nmax_slices: 2\n")
    codes = []
    for _ in range(2):
        proc = attempt_process(repo, FAKE_EPOCH_S="0.3")
        out = proc.communicate(timeout=120)[0]
        codes.append(proc.returncode)
    assert codes == [0, 1], out
    assert "max_slices = 2" in out
    (record,) = ledger.load(repo / STATE).attempts
    assert record.outcome == FAILED and "max_slices = 2" in (record.error or "")
    assert record.checkpoint == "slice-2/model.keras" and len(record.slices) == 2
    assert (
        json.loads((repo / STATE / "attempt-001" / record.checkpoint).read_text())["epochs"]
        == record.epochs_reached
    )


@pytest.mark.integration
def test_sigterm_keeps_the_last_finished_epoch_and_the_next_run_goes_on_from_it(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, "epochs: 12\n")
    proc = attempt_process(repo, FAKE_EPOCH_S="0.3")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Epoch 3/12"):  # the fake saved epoch 3 before it printed the line
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    (record,) = ledger.load(repo / STATE).attempts
    assert record.outcome == SLICED and record.epochs_reached is not None and record.epochs_reached >= 3
    assert record.slices[0]["stopped"] == "interrupted" and record.error is None
    reached = record.epochs_reached
    proc = attempt_process(repo, FAKE_EPOCH_S="0.01")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert f"fake: epochs {reached} -> 12" in out and "from its previous run's checkpoint" in out
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 12, 12)
    assert record.checkpoint == "slice-2/model.keras"


@pytest.mark.integration
def test_a_cancelled_run_on_github_writes_outputs_and_says_how_to_continue(tmp_path: Path) -> None:
    """The runner's SIGINT reaches `keeptraining attempt` (action.yml execs it); it is unwinding
    when the runner's SIGTERM follows, which must not cut the recording short."""
    repo = fake_repo(tmp_path / "repo", "epochs: 12\n")
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_RUN_ID": "4242",
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_SHA": "c" * 40,
        "KT_INPUT_COMMIT_STATUS": "false",
    }
    proc = attempt_process(repo, FAKE_EPOCH_S="0.3", **github)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Epoch 2/12"):
            break
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)  # the runner's second signal, while the first unwinds
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    outputs = read_outputs(output)
    assert (outputs["attempt"], outputs["chain-status"]) == ("1", "interrupted")
    assert outputs["dispatched"] == "false"
    (record,) = ledger.load(repo / STATE).attempts
    assert record.outcome == SLICED and outputs["epochs"] == str(record.epochs_reached)
    text = summary.read_text()
    assert f"cancelled at epoch {record.epochs_reached} of 12" in text
    assert f"attempt 1.2, commit {'c' * 40} and resume-run-id 4242" in text and text.startswith("## ⏹️")


@pytest.mark.integration
def test_a_run_stopped_at_its_timeout_keeps_the_epochs_it_saved(tmp_path: Path) -> None:
    """A script that ignores KT_DEADLINE runs into `timeout`: killed, but not failed when it saved
    epochs; the next run goes on. One that saved none fails as before (test_chain_local)."""
    repo = fake_repo(tmp_path, "epochs: 30\ntimeout: 2\n")
    proc = attempt_process(repo, FAKE_EPOCH_S="0.3", FAKE_MODE="nodeadline")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "reached this run's timeout of 2 s and was stopped after epoch" in out
    (record,) = ledger.load(repo / STATE).attempts
    assert record.outcome == SLICED and record.slices[0]["stopped"] == "timeout"
    reached = record.epochs_reached
    assert reached is not None and 1 <= reached < 30
    settings = repo / ".keeptraining.yml"
    settings.write_text(settings.read_text().replace("timeout: 2", ""))
    proc = attempt_process(repo, FAKE_EPOCH_S="0.01")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert f"fake: epochs {reached} -> 30" in out
    (record,) = ledger.load(repo / STATE).attempts
    assert (record.outcome, record.epochs_reached, record.epochs_trained) == (BELOW, 30, 30)


def test_a_run_that_did_not_resume_restarts_the_attempts_record() -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    first.initial_epoch = 0
    fresh = run_record(10, 0, 6, SLICED, run_id="12")  # offered epoch 4, trained from scratch to 6
    record = slices.merge(first, fresh, slices.DEADLINE, "slice-2")
    assert (record.initial_epoch, len(record.history), record.epochs_reached) == (0, 6, 6)
    assert record.history == fresh.history and record.resumed_from is None


def test_pruning_keeps_only_the_newest_checkpoint_of_an_attempt_of_several_runs(tmp_path: Path) -> None:
    first = slices.merge(None, run_record(10, 0, 4, SLICED, run_id="11"), slices.DEADLINE, None)
    record = slices.merge(first, run_record(10, 4, 7, SLICED, run_id="12"), slices.DEADLINE, "slice-2")
    folder = tmp_path / "attempt-001"
    (folder / "slice-2").mkdir(parents=True)
    (folder / "model.keras").write_text("epoch 4")
    (folder / "slice-2" / "model.keras").write_text("epoch 7")
    assert chain.prune_checkpoints(tmp_path, Ledger(attempts=[record])) == [folder / "model.keras"]
    assert (folder / "slice-2" / "model.keras").read_text() == "epoch 7"


def test_a_stopped_runs_progress_counts_only_from_its_metrics_json(tmp_path: Path) -> None:
    """Keras prints `Epoch 3/10` as epoch 3 begins: a run killed then has saved two epochs at most."""
    (tmp_path / "model.keras").write_text("a checkpoint")
    plan = strategy.Plan(1, 10, 0, None)
    run = run_record(10, 0, None, FAILED, run_id="11")
    log = "Epoch 1/10\nEpoch 2/10\nEpoch 3/10\nTest accuracy: 0.5\n"
    assert not slices.salvage(run, tmp_path, log, config(), plan)
    (tmp_path / "metrics.json").write_text(
        json.dumps({"accuracy": 0.5, "epochs": 2, "history": {"val_accuracy": [0.4, 0.5]}})
    )
    assert slices.salvage(run, tmp_path, log, config(), plan)
    assert (run.outcome, run.epochs_reached, run.epochs_trained, run.checkpoint) == (
        SLICED,
        2,
        2,
        "model.keras",
    )
