"""``parallel: N``, the logic without a process: the plan of a round (and around jobs still training),
the verdict, the merge of untrusted results, the cores each local trial gets, the rounds' summary.

Fast tier; the trials as real processes are tests/test_parallel.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keeptraining.config import settings as config
from keeptraining.engine import parallel, rounds
from keeptraining.errors import ConfigError
from keeptraining.reports import rounds_table as round_report
from keeptraining.reports import summary as report
from keeptraining.state import ledger
from keeptraining.state.ledger import Attempt, Ledger


def test_parallel_needs_the_search_strategy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parallel = 2 needs strategy: search"):
        config.resolve({"parallel": 2})


# --------------------------------------------------------------------------- the plan and the verdict


def _config(**values: Any) -> config.Config:
    space = {
        "space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        "reduction_factor": 2,
        "seed": 1,
    }
    return config.resolve(
        {"strategy": "search", "search": space, "threshold": 0.9, "epochs": 10, "epoch_step": 10, **values}
    )


def _record(
    attempt: int,
    trial: int,
    metric: float | None,
    *,
    rung: int = 0,
    round_no: int = 1,
    outcome: str | None = None,
    epochs: int = 10,
) -> Attempt:
    kind = outcome or ("failed" if metric is None else "reached" if metric >= 0.9 else "below")
    return Attempt(
        attempt=attempt,
        epochs=epochs,
        initial_epoch=epochs - 10 if rung else 0,
        resumed_from=None,
        outcome=kind,
        metric=metric,
        epochs_reached=epochs,
        epochs_trained=10,
        trial=trial,
        rung=rung,
        trial_params={"learning_rate": 0.01 * trial},
        round=round_no,
        runner={"slot": attempt},
        error="crashed" if metric is None else None,
    )


def test_a_round_stays_within_the_attempts_and_the_epochs_left() -> None:
    book = Ledger(attempts=[_record(1, 1, 0.5), _record(2, 2, 0.6)])
    assert len(rounds.plan_round(_config(parallel=4, max_attempts=4), book)) == 2
    jobs = rounds.plan_round(_config(parallel=3, max_attempts=9, max_epochs_total=45), book)
    assert [job.epochs - job.initial_epoch for job in jobs] == [10, 10, 5]  # 25 epochs were left
    assert rounds.plan_round(_config(parallel=3, max_attempts=2), book) == []


def test_the_plan_around_jobs_still_training_counts_them_and_never_repeats_them() -> None:
    """A local chain without rounds plans a job whenever a slot is free: the jobs still training hold
    their attempts, epochs and trial numbers, and a trial being promoted is not promoted again."""
    book = Ledger(attempts=[_record(n, n, 0.5 + n / 100) for n in (1, 2, 3, 4)])
    conf = _config(parallel=2, max_attempts=9, max_epochs_total=70)
    (promote,) = rounds.plan_round(conf, book, slots=1)
    assert (promote.trial, promote.rung) == (4, 1)  # the best of rung 0 (2 of 4 results with eta 2)
    (after,) = rounds.plan_round(conf, book, [promote], slots=1)
    assert (after.trial, after.rung) == (3, 1)  # trial 4 is training: the next best is promoted
    (last,) = rounds.plan_round(conf, book, [promote, after], slots=2)  # 70 - 40 trained - 20 training
    assert (last.trial, last.rung, last.epochs) == (5, 0, 10)  # none left to promote: a new trial
    new = rounds.plan_round(_config(parallel=2, max_attempts=9), book, [promote, after], slots=2)
    assert [(j.trial, j.rung) for j in new] == [(5, 0), (6, 0)]
    free = _config(parallel=2, max_attempts=9)
    (later,) = rounds.plan_round(free, book, [new[0], promote, after], slots=1)
    assert (later.trial, later.rung) == (6, 0), "a new trial still training keeps its number"
    assert rounds.plan_round(_config(parallel=2, max_attempts=6), book, [promote, after], slots=2) == []
    # The sampler knows the values still training: the same ledger without them asks for something else.
    alone = rounds.plan_round(free, book, [promote, after], slots=1)
    assert alone[0].params == new[0].params and later.params != new[0].params


def test_without_rounds_as_many_failed_trials_in_a_row_as_slots_end_the_chain() -> None:
    conf = _config(parallel=2, max_attempts=20)
    book = Ledger(attempts=[_record(1, 1, 0.5), _record(2, 2, None), _record(3, 3, 0.6)])
    assert rounds.decide_trial(conf, book, book.attempts[-1]).kind == "continue"
    book.attempts.append(_record(4, 4, None))
    assert rounds.decide_trial(conf, book, book.attempts[-1]).kind == "continue"  # 2 and 4 are not in a row
    book.attempts.append(_record(5, 5, None))
    decision = rounds.decide_trial(conf, book, book.attempts[-1])
    assert decision.kind == "failed" and "the last 2 trials failed" in decision.reason
    book.attempts.append(_record(6, 1, 0.95, rung=1, epochs=20))
    assert rounds.decide_trial(conf, book, book.attempts[-1]).kind == "reached"


def test_any_trial_of_a_round_reaching_the_threshold_ends_the_chain() -> None:
    records = [_record(1, 1, 0.95), _record(2, 2, 0.5)]
    decision = rounds.decide(_config(parallel=2), Ledger(attempts=records), records)
    assert decision.kind == "reached" and "at attempt 1" in decision.reason


def test_a_failed_trial_does_not_stop_a_round_and_a_round_of_failures_ends_the_chain() -> None:
    earlier = [_record(1, 1, 0.5), _record(2, 2, 0.6)]
    mixed = [_record(3, 3, 0.7, round_no=2)] + [_record(n, n, None, round_no=2) for n in (4, 5, 6)]
    # The last three attempts failed, which ends a one-at-a-time search; in a round, one good trial
    # is enough to go on.
    book = Ledger(attempts=earlier + mixed)
    decision = rounds.decide(_config(parallel=4, max_attempts=20), book, mixed)
    assert decision.kind == "continue" and "in round 2 (best: attempt 3" in decision.reason
    assert "next round trains 4 trials" in decision.reason
    failed = [_record(3, 3, None, round_no=2), _record(4, 4, None, round_no=2)]
    decision = rounds.decide(_config(parallel=2), Ledger(attempts=earlier + failed), failed)
    assert decision.kind == "failed" and "Round 2 failed: all 2 trials failed" in decision.reason


def test_the_verdict_of_a_ledger_ending_with_a_round_is_the_rounds() -> None:
    records = [_record(1, 1, 0.95), _record(2, 2, 0.5)]  # the last record is below; the round reached
    assert rounds.verdict(_config(parallel=2), Ledger(attempts=records)).kind == "reached"


# --------------------------------------------------------------------------- the merge: untrusted results


def _result(folder: Path, record: Attempt, files: dict[str, str] | None = None) -> Path:
    rounds.write_result(folder, record)
    out = ledger.attempt_dir(folder, record.attempt)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"model.keras": "weights"}).items():
        (out / name).write_text(text)
    return folder


def _planned(conf: config.Config) -> list[Any]:
    return rounds.plan_round(conf, Ledger())


def _honest(conf: config.Config, job: Any, attempt: int, metric: float) -> Attempt:
    record = _record(attempt, job.trial, metric, epochs=job.epochs)
    record.trial_params, record.checkpoint = dict(job.params), "model.keras"
    return record


def test_the_merge_takes_what_each_slot_was_planned_to_train_and_nothing_else(tmp_path: Path) -> None:
    conf = _config(parallel=4, max_attempts=10)
    jobs = _planned(conf)
    state = tmp_path / "state"
    honest = _honest(conf, jobs[0], 1, 0.7)
    forged_values = _honest(conf, jobs[1], 2, 0.7)
    forged_values.trial_params = {"learning_rate": 0.09999}
    forged_outcome = _honest(conf, jobs[2], 3, 0.2)
    forged_outcome.outcome = "reached"  # claims the threshold with 0.2
    folders = {
        1: _result(tmp_path / "s1", honest, {"model.keras": "w", "train.log": "log"}),
        2: _result(tmp_path / "s2", forged_values),
        3: _result(tmp_path / "s3", forged_outcome),
    }
    (ledger.attempt_dir(tmp_path / "s1", 1) / "escape").symlink_to("/etc/passwd")
    book = Ledger()
    records = rounds.merge_round(conf, state, book, jobs, folders, round_no=1)
    assert [r.outcome for r in records] == ["below", "failed", "failed", "failed"]
    assert "the round's plan says" in (records[1].error or "")
    assert "does not fit its accuracy 0.2" in (records[2].error or "")
    assert "left no result" in (records[3].error or "")  # slot 4's job never reported
    for record, job in zip(records, jobs, strict=True):  # failed slots are recorded as planned
        assert (record.trial, record.rung, record.trial_params) == (job.trial, job.rung, job.params)
    kept = ledger.attempt_dir(state, 1)
    assert sorted(p.name for p in kept.iterdir()) == ["model.keras", "train.log"]  # not the link
    assert not ledger.attempt_dir(state, 2).exists()
    assert [a.attempt for a in ledger.load(state).attempts] == [1, 2, 3, 4]


def test_a_result_that_fails_the_ledgers_own_checks_is_refused(tmp_path: Path) -> None:
    conf = _config(parallel=1)
    (job,) = _planned(conf)
    record = _honest(conf, job, 1, 0.5)
    folder = _result(tmp_path / "s1", record)
    checkpoint = ledger.attempt_dir(folder, 1) / "model.keras"
    checkpoint.unlink()
    checkpoint.symlink_to("/etc/passwd")  # the checkpoint a link out of the folder
    (merged,) = rounds.merge_round(conf, tmp_path / "state", Ledger(), [job], {1: folder}, round_no=1)
    assert merged.outcome == "failed" and "its result was refused" in (merged.error or "")


@pytest.mark.parametrize(
    ("cpus", "slots", "cores", "shares"),
    [
        (None, 2, [0, 1, 2, 3], [(0, 1), (2, 3)]),  # an even share
        (None, 3, [0, 1], [(0,), (1,), (0,)]),  # more trials than cores: round-robin
        (1.5, 2, [0, 1, 2, 3], [(0, 1), (2, 3)]),  # cpus rounded up
        (8, 2, [0, 1], [(0, 1), (0, 1)]),  # never more than there are
    ],
    ids=["even", "round-robin", "cpus", "capped"],
)
def test_each_local_trial_gets_its_share_of_the_cores(
    cpus: float | None, slots: int, cores: list[int], shares: list[tuple[int, ...]]
) -> None:
    assert parallel.core_shares(_config(parallel=slots, cpus=cpus), slots, cores) == shares


def test_the_summary_shows_each_rounds_trials_side_by_side_escaped() -> None:
    records = [_record(1, 1, 0.5), _record(2, 2, None), _record(3, 3, 0.95, round_no=2)]
    records[0].runner = {"slot": 1, "runner": "gpu-box|<b>1</b>", "job": "trial"}
    records[2].runner = {"slot": 1}
    text = round_report.rounds_markdown(Ledger(attempts=records), _config(parallel=2))
    header, _rule, first, second = text.splitlines()[2:]
    assert header == "| Round | Slot 1 | Slot 2 |"
    assert first.startswith("| 1 | trial 1 · rung 0<br>0.5000") and "❌ failed: crashed" in first
    assert r"gpu-box\|&lt;b&gt;1&lt;/b&gt; \(trial\)" in first  # a runner name cannot break the table
    assert second.startswith("| 2 | trial 3 · rung 0<br>✅ 0.9500") and second.endswith("|  |")
    assert "Rounds" in report.job_summary(
        Ledger(attempts=records),
        _config(parallel=2),
        rounds.verdict(_config(parallel=2), Ledger(attempts=records)),
    )


def test_a_local_chain_without_rounds_shows_its_jobs_in_groups_naming_their_slots() -> None:
    records = [
        _record(1, 1, 0.5),
        _record(2, 2, 0.6),
        _record(3, 3, 0.7, round_no=2),
        _record(4, 4, 0.8, round_no=2),
    ]
    for record, slot in zip(records, (1, 2, 2, 2), strict=True):  # slot 2 trained 2, 3 and 4 while 1 trained
        record.runner = {"slot": slot, "runner": "here"}
    text = round_report.rounds_markdown(Ledger(attempts=records), _config(parallel=2))
    assert text.splitlines()[0] == "### Rounds (jobs grouped by 2 in the order they were planned)"
    header, _rule, first, second = text.splitlines()[2:]
    assert header == "| Round | Job 1 | Job 2 |"
    assert "attempt 1 · slot 1 · here" in first and "attempt 4 · slot 2 · here" in second
