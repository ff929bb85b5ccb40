"""``parallel: N`` on one machine: rounds of trials as concurrent processes, merged, decided as one.

Real processes (local backend) running the stand-in scripts of tests/fixtures: fake_parallel_train.py
stamps its own start and end times and, with a barrier, proves that the trials of a round ran at the
same time (run one after the other, the first would wait in vain and fail).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fakes import read_outputs
from keeptraining.backends import local as backend_local
from keeptraining.backends.base import TrainRequest
from keeptraining.cli import main
from keeptraining.config import settings as config
from keeptraining.engine import rounds
from keeptraining.state import ledger
from keeptraining.state.ledger import Attempt

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
SEARCH = """code_path: ml
train_command: python fake_parallel_train.py
backend: local
adapt: none
threshold: 0.9
strategy: search
epochs: 20
epoch_step: 10
search:
  seed: 2
  reduction_factor: 3
  space:
    learning_rate: {type: float, low: 0.01, high: 0.1, log: true}
"""


def parallel_repo(root: Path, extra: str = "") -> Path:
    (root / "ml").mkdir(parents=True)
    for name in ("fake_search_train.py", "fake_parallel_train.py"):
        shutil.copy(FIXTURES / name, root / "ml" / name)
    (root / ".keeptraining.yml").write_text(SEARCH + extra)
    return root


def _config(**values: Any) -> config.Config:
    space = {
        "space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        "reduction_factor": 2,
        "seed": 1,
    }
    return config.resolve(
        {"strategy": "search", "search": space, "threshold": 0.9, "epochs": 10, "epoch_step": 10, **values}
    )


def stamps(state: Path, record: Attempt) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ledger.attempt_dir(state, record.attempt) / "stamps.json").read_text())
    return data


# --------------------------------------------------------------------------- keeptraining run --parallel 3


def test_parallel_3_runs_three_trials_at_once_merges_them_and_continues_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 9\n")
    monkeypatch.setenv("KT_TEST_BARRIER", str(tmp_path / "barrier"))  # attempts 1-3, 4-6, 7-9 meet
    monkeypatch.setenv("KT_TEST_TRIALS", "3")
    code = main(["run", "--repo", str(repo), "--parallel", "3"])
    out = capsys.readouterr().out
    assert code in (0, 3), out[-3000:]
    state = repo / ".keeptraining"
    attempts = ledger.load(state).attempts
    assert [r.attempt for r in attempts] == list(range(1, len(attempts) + 1)) and len(attempts) >= 4
    stopped = [r for r in attempts if (r.error or "").startswith("Stopped while it trained: attempt")]
    assert all(r.attempt > 3 and r.outcome == "failed" for r in stopped)  # when one reached the threshold
    attempts = [r for r in attempts if r not in stopped]
    assert all(r.outcome in ("below", "reached") for r in attempts), [r.error for r in attempts]
    times = {r.attempt: stamps(state, r) for r in attempts}
    # Their own clocks: the first three trials started before any of them ended, in three processes.
    first = [times[n] for n in (1, 2, 3)]
    assert max(t["start"] for t in first) < min(t["end"] for t in first)
    assert len({t["pid"] for t in times.values()}) == len(attempts)
    for record in attempts:  # each in its slot, pinned to its share of the cores; rounds of 3 for the summary
        assert record.runner["cores"] == ",".join(map(str, times[record.attempt]["cores"]))
        assert record.round == (record.attempt - 1) // 3 + 1 and record.runner["slot"] in (1, 2, 3)
    for moment in [t["start"] for t in times.values()]:  # never more than 3 at once
        assert sum(t["start"] <= moment < t["end"] for t in times.values()) <= 3
    # The study went on: new trial numbers follow, promotions resume their own checkpoints.
    trials = [r.trial for r in attempts if r.rung == 0]
    assert trials == list(range(1, len(trials) + 1))
    for record in (r for r in attempts if r.rung == 1):
        own = next(a for a in attempts if a.trial == record.trial and a.rung == 0)
        assert own.attempt < record.attempt
        assert record.resumed_from == f"attempt-{own.attempt:03d}/model.keras"
        assert record.initial_epoch == own.epochs_reached
    assert not (state / "round").exists(), "the trials' folders are merged away"
    assert "[slot 2] fake search" in out and "merged attempt 4 (slot" in out
    # Each trial's runner minutes, from its own start (no job start on one's own machine), not priced.
    assert all(
        r.minutes and r.minutes > 0 and (r.minutes_from, r.runner_kind) == ("attempt", "local")
        for r in attempts
    )


def test_a_free_slot_starts_the_next_trial_without_waiting_for_a_slow_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round barrier: while attempt 1 trains slowly, slot 2 trains attempts 2-6 one after the other.
    Jobs are merged in the order they were planned, so the results of 2-6 wait for attempt 1's: the
    planner counts them as pending, numbers its new trials after them and promotes none of them."""
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 6\nthreshold: 0.99\n")  # never reached
    monkeypatch.setenv("KT_TEST_SLOW", "1:6")
    assert main(["run", "--repo", str(repo), "--parallel", "2"]) == 3
    state = repo / ".keeptraining"
    attempts = ledger.load(state).attempts
    assert [(r.attempt, r.runner["slot"]) for r in attempts] == [(1, 1)] + [(n, 2) for n in range(2, 7)]
    times = {r.attempt: stamps(state, r) for r in attempts}
    assert all(times[n]["end"] < times[1]["end"] for n in range(2, 7)), "slot 2 went on meanwhile"
    assert [(r.trial, r.rung, r.outcome) for r in attempts] == [(n, 0, "below") for n in range(1, 7)]
    assert len({r.trial_params["learning_rate"] for r in attempts}) == 6  # six different values asked


def test_a_trial_reaching_the_threshold_stops_the_trials_still_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 6\nthreshold: 0.6\n")  # any trial reaches it
    monkeypatch.setenv("KT_TEST_SLOW", "1:60")
    start = time.monotonic()
    assert main(["run", "--repo", str(repo), "--parallel", "2"]) == 0
    assert time.monotonic() - start < 50, "attempt 1 was not left to sleep its 60 s"
    first, second = ledger.load(repo / ".keeptraining").attempts
    assert second.outcome == "reached"
    assert first.outcome == "failed" and first.error is not None
    assert first.error.startswith("Stopped while it trained: attempt 2 reached the threshold")
    assert "Threshold reached: accuracy" in capsys.readouterr().out
    assert (
        rounds.verdict(
            config.resolve({**_config().to_dict(), "threshold": 0.6, "parallel": 2}),
            ledger.load(repo / ".keeptraining"),
        ).kind
        == "reached"
    )


def test_in_rounds_each_round_runs_its_three_trials_at_once_as_on_github(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 9\n")
    monkeypatch.setenv("KT_TEST_BARRIER", str(tmp_path / "barrier"))
    monkeypatch.setenv("KT_TEST_TRIALS", "3")
    code = main(["run", "--repo", str(repo), "--parallel", "3", "--in-rounds"])
    out = capsys.readouterr().out
    assert code in (0, 3), out[-3000:]
    state = repo / ".keeptraining"
    attempts = ledger.load(state).attempts
    assert len(attempts) % 3 == 0 and len(attempts) >= 6, "a full round after round 1"
    by_round = [attempts[i : i + 3] for i in range(0, len(attempts), 3)]
    for number, records in enumerate(by_round, start=1):
        assert [r.round for r in records] == [number] * 3
        assert [r.runner["slot"] for r in records] == [1, 2, 3]
        assert all(r.outcome in ("below", "reached") for r in records), [r.error for r in records]
        times = [stamps(state, r) for r in records]
        # Their own clocks: every trial of the round started before any of them ended.
        assert max(t["start"] for t in times) < min(t["end"] for t in times)
        assert len({t["pid"] for t in times}) == 3
        for record, stamp in zip(records, times, strict=True):  # each pinned to its share of the cores
            assert record.runner["cores"] == ",".join(map(str, stamp["cores"]))
    # The study went on from round to round: new trial numbers follow, promotions resume their own.
    trials = [r.trial for r in attempts if r.rung == 0]
    assert trials == list(range(1, len(trials) + 1))
    promoted = [r for r in attempts[3:] if r.rung == 1]
    assert promoted, "round 2 promotes the best of round 1"
    for record in promoted:
        own = next(a for a in attempts if a.trial == record.trial and a.rung == 0)
        assert record.resumed_from == f"attempt-{own.attempt:03d}/model.keras"
        assert record.initial_epoch == own.epochs_reached
    assert not (state / "round").exists(), "the round's folder is merged away"
    assert "[slot 2] fake search" in out and "Round 2:" in out


def test_a_trial_past_its_memory_limit_is_stopped_and_the_round_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 2\nmemory_limit: 150m\n")
    monkeypatch.setenv("KT_TEST_ALLOCATE", "2:400")  # attempt 2 holds 400 MiB
    assert main(["run", "--repo", str(repo), "--parallel", "2"]) == 3  # budget spent below 0.9
    first, second = ledger.load(repo / ".keeptraining").attempts
    assert first.outcome == "below"
    assert second.outcome == "failed" and "more than the memory limit of 150 MiB" in (second.error or "")
    assert "Threshold not reached after 2 attempts" in capsys.readouterr().out


def test_a_round_whose_trials_all_fail_ends_the_chain_failed_with_a_mail(tmp_path: Path) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 6\n")
    (repo / "ml" / "fake_parallel_train.py").write_text("import sys\nsys.exit('broken on purpose')\n")
    assert main(["run", "--repo", str(repo), "--parallel", "2", "--in-rounds"]) == 1
    records = ledger.load(repo / ".keeptraining").attempts
    assert [(r.attempt, r.outcome, r.round) for r in records] == [(1, "failed", 1), (2, "failed", 1)]
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert "Round 1 failed: all 2 trials failed" in str(message["Subject"])


def test_as_many_failed_trials_in_a_row_as_slots_end_the_chain_failed_with_a_mail(tmp_path: Path) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 6\n")
    (repo / "ml" / "fake_parallel_train.py").write_text("import sys\nsys.exit('broken on purpose')\n")
    assert main(["run", "--repo", str(repo), "--parallel", "2"]) == 1
    records = ledger.load(repo / ".keeptraining").attempts
    assert [r.outcome for r in records] == ["failed"] * len(records) and 2 <= len(records) <= 3
    (mail,) = (repo / ".keeptraining" / "outbox").glob("*.eml")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert "failed: the last 2 trials failed" in str(message["Subject"])


def test_a_trial_that_stops_before_its_epochs_is_failed_not_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time slices continue one attempt across runs; a round's trial has no next run: failed, with why.
    A trial gets the same time budget as an attempt (``KT_DEADLINE``, chain.train_request)."""
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 2\ntime_budget: 2\n")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.4")  # 20 epochs: 8 s, past the budget; the scripts stop, saying why
    assert main(["run", "--repo", str(repo), "--parallel", "2"]) == 1
    records = ledger.load(repo / ".keeptraining").attempts
    assert [r.outcome for r in records] == ["failed", "failed"]
    for record in records:
        assert "(deadline): a parallel trial trains its epochs in one run" in (record.error or "")
        assert record.slices == []


# --------------------------------------------------------------------------- the GitHub roles, in process


def _actions_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Path:
    output = tmp_path / f"{name}-output"
    for key, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(tmp_path / f"{name}-summary.md"),
        "GITHUB_JOB": name,
        "RUNNER_NAME": f"runner-{name}",
        "KT_INPUT_DISPATCH": "false",
        "KT_INPUT_COMMIT_STATUS": "false",
    }.items():
        monkeypatch.setenv(key, value)
    return output


def test_trial_jobs_then_the_merge_job_record_one_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = parallel_repo(tmp_path / "checkout", "max_attempts: 3\n")
    downloads = checkout / ".keeptraining-trials"
    for slot in (1, 2, 3):  # each trial job: a fresh runner with the same checkout
        runner = tmp_path / f"runner-{slot}"
        shutil.copytree(checkout, runner)
        output = _actions_env(monkeypatch, tmp_path, f"trial-{slot}")
        monkeypatch.setenv(
            "KT_ACTION_STARTED", str(time.time() - 60)
        )  # the trial job's action started 1 min ago
        monkeypatch.setenv("KT_INPUT_TRIAL", str(slot))
        assert main(["trial", "--repo", str(runner), "--parallel", "2"]) == 0
        if slot == 3:  # the round has two trials: slot 3 trains nothing and uploads nothing
            assert read_outputs(output)["slot"] == "" and not (runner / ".keeptraining-trial").exists()
            continue
        assert read_outputs(output)["slot"] == str(slot)
        shutil.copytree(runner / ".keeptraining-trial", downloads, dirs_exist_ok=True)  # merge-multiple
    output = _actions_env(monkeypatch, tmp_path, "merge")
    monkeypatch.delenv("KT_INPUT_TRIAL")
    monkeypatch.setenv("KT_ACTION_STARTED", str(time.time() - 30))  # the merge job's action, 30 s ago
    monkeypatch.setenv("KT_INPUT_RUNNER_KIND", "ubuntu-slim")  # the merge job's runs-on label
    assert main(["merge", "--repo", str(checkout), "--parallel", "2"]) == 0
    outputs = read_outputs(output)
    assert outputs["chain-status"] == "continue" and outputs["dispatched"] == "false"
    book = ledger.load(checkout / ".keeptraining")
    records = book.attempts
    # Runner minutes: each trial job from its action's start (no token here to read the run's start),
    # priced as the runner it guessed; the merge job's own, from its action's start, as a job of its own.
    assert all(r.minutes_from == "action" and (r.minutes or 0) >= 1.0 for r in records)
    assert {r.runner_kind for r in records} == {"ubuntu-latest"}
    (merge_job,) = book.jobs
    assert (merge_job.job, merge_job.round, merge_job.minutes_from, merge_job.runner_kind) == (
        "merge",
        1,
        "action",
        "ubuntu-slim",
    )
    assert 0.5 <= merge_job.minutes < 5
    assert [(r.attempt, r.round, r.runner["slot"], r.runner["job"], r.runner["runner"]) for r in records] == [
        (1, 1, 1, "trial-1", "runner-trial-1"),
        (2, 1, 2, "trial-2", "runner-trial-2"),
    ]
    assert (ledger.attempt_dir(checkout / ".keeptraining", 2) / "model.keras").is_file()
    summary = (tmp_path / "merge-summary.md").read_text()
    assert "### Rounds" in summary and "| Slot 1 | Slot 2 |" in summary
    assert r"runner-trial-2 \(trial-2\)" in summary  # the runner and the job of slot 2
    assert "**Runner minutes:** 2." in summary and r"ubuntu-slim\: 0." in summary  # the merge job counts


def test_a_single_attempt_job_refuses_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = parallel_repo(tmp_path / "repo")
    _actions_env(monkeypatch, tmp_path, "train")
    assert main(["attempt", "--repo", str(repo), "--parallel", "2"]) == 2
    assert "trains its trials as a matrix of jobs" in "".join(capsys.readouterr())
    monkeypatch.setenv("KT_INPUT_ROLE", "trail")
    assert main(["attempt", "--repo", str(repo)]) == 2
    assert "role = 'trail' is not valid" in "".join(capsys.readouterr())


# --------------------------------------------------------------------------- the local backend's controls


def test_a_cancelled_round_stops_its_training_processes(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    cancel = threading.Event()
    request = TrainRequest(
        code_dir=tmp_path,
        command=["python", "-c", "import time; time.sleep(60)"],
        output_dir=tmp_path / "out",
        env={},
        timeout=120,
        cancel=cancel,
    )
    threading.Timer(0.5, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        backend_local.run(request)
    assert time.monotonic() - start < 30


def test_ctrl_c_stops_every_slot_and_records_what_each_trial_did(tmp_path: Path) -> None:
    repo = parallel_repo(tmp_path / "repo", "max_attempts: 6\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    env["FAKE_EPOCH_S"] = "0.5"  # 20 epochs: 10 s a trial
    command = [sys.executable, "-m", "keeptraining", "run", "--repo", str(repo), "--parallel", "2"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    started: set[str] = set()
    for line in proc.stdout:
        if line.startswith(("[slot 1] fake search", "[slot 2] fake search")):
            started.add(line[:8])
        if len(started) == 2:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    records = ledger.load(repo / ".keeptraining").attempts
    assert [(r.attempt, r.outcome, r.runner["slot"]) for r in records] == [(1, "failed", 1), (2, "failed", 2)]
    assert all((r.error or "").startswith("interrupted") for r in records)
    for record in records:  # stopped mid-training: their outputs are kept, and neither trial ended
        kept = ledger.attempt_dir(repo / ".keeptraining", record.attempt)
        assert (kept / "train.log").is_file() and not (kept / "stamps.json").exists()
    assert "Interrupted; the ledger and checkpoints written so far are kept." in rest
