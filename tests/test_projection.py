"""Stopping hopeless chains (engine/projection.py) and counting what a chain costs (engine/cost.py): unit."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from keeptraining.config import settings as config
from keeptraining.engine import cost, projection, search, strategy
from keeptraining.errors import LedgerError
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.ledger import BELOW, Attempt, JobMinutes, Ledger


def cfg(**overrides: Any) -> config.Config:
    return config.resolve({"threshold": 0.9, **overrides}, None)


def saturating(
    plateau: float, tau: float, epochs: range, noise: float = 0.0, seed: int = 0
) -> dict[int, float]:
    rng = random.Random(seed)  # noqa: S311 - a test's noise
    return {e: plateau * (1 - math.exp(-e / tau)) + rng.gauss(0, noise) for e in epochs}


def chain_of(values: dict[int, float], step: int = 10, minutes: float | None = None) -> Ledger:
    """A resumed epochs chain whose attempts trained ``values`` (epoch -> metric), ``step`` epochs each."""
    book = Ledger()
    last = max(values)
    for number, start in enumerate(range(0, last, step), start=1):
        history = [round(values[e], 6) for e in range(start + 1, min(start + step, last) + 1)]
        book.attempts.append(
            Attempt(
                attempt=number,
                epochs=start + step,
                initial_epoch=start,
                resumed_from=None,
                outcome=BELOW,
                metric=history[-1],
                epochs_reached=start + len(history),
                epochs_trained=len(history),
                history=history,
                checkpoint="model.keras",
                minutes=minutes,
                runner_kind="ubuntu-latest" if minutes is not None else None,
            )
        )
    return book


# --------------------------------------------------------------------------- the fit


def test_a_plateau_well_below_the_threshold_is_hopeless() -> None:
    found = projection.fit(saturating(0.8, 5, range(1, 31), noise=0.01), 100)
    assert found is not None
    assert found.hopeless(0.9)
    assert abs(found.projected - 0.8) < 0.02 and found.at_epochs == 100 and found.points == 30
    assert found.projected < found.bound < 0.9


def test_a_slow_straight_rise_is_never_hopeless() -> None:
    """Early in a slow curve the points are nearly straight: the optimistic bound keeps rising with them."""
    found = projection.fit(saturating(0.98, 40, range(1, 21), noise=0.01), 100)
    assert found is not None and not found.hopeless(0.9)


def test_noise_free_curves_project_exactly() -> None:
    found = projection.fit(saturating(0.85, 8, range(1, 41)), 200)
    assert found is not None
    assert found.projected == pytest.approx(0.85, abs=1e-3) and found.tau == pytest.approx(8, rel=0.1)
    assert found.noise == projection.MIN_NOISE  # the floor: a fit is never trusted as exact


@pytest.mark.parametrize(
    "curve",
    [
        {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.75},  # too few points
        {e: 0.9 - 0.01 * e for e in range(1, 20)},  # falling
        {},
    ],
)
def test_no_verdict_without_a_rising_curve_to_fit(curve: dict[int, float]) -> None:
    assert projection.fit(curve, 100) is None


def test_the_reported_metric_above_the_curve_raises_the_bound() -> None:
    """A final evaluation that scored above its last epoch's validation value: the bound takes the gap."""
    values = saturating(0.8, 5, range(1, 31))
    book = chain_of(values)
    plain = projection.of_runs(book.attempts, 100)
    book.attempts[-1].metric = round(values[30] + 0.05, 6)
    raised = projection.of_runs(book.attempts, 100)
    assert plain is not None and raised is not None
    assert raised.bound == pytest.approx(plain.bound + 0.05, abs=1e-6)


def test_retraining_from_scratch_uses_the_latest_curve() -> None:
    first = [0.1, 0.2, 0.3, 0.4, 0.5]
    second = [0.2, 0.35, 0.45, 0.52, 0.56, 0.58, 0.59, 0.6, 0.6, 0.6]
    curve, offset = projection.curve_of([(0, first, 0.5, 5), (0, second, 0.6, 10)])
    assert curve == {e: v for e, v in enumerate(second, start=1)} and offset == 0.0


def test_a_history_less_script_is_fitted_on_its_reported_metrics() -> None:
    curve, _ = projection.curve_of([(0, [], 0.5, 10), (10, [], 0.6, 20)])
    assert curve == {10: 0.5, 20: 0.6}


# --------------------------------------------------------------------------- the budget's end


def test_budget_epochs_follow_every_limit() -> None:
    book = chain_of(saturating(0.8, 5, range(1, 31)))  # 3 attempts: 30 epochs
    assert projection.budget_epochs(cfg(), book) == 100  # max_attempts 10, +10 each
    assert projection.budget_epochs(cfg(max_attempts=5), book) == 50
    assert projection.budget_epochs(cfg(max_epochs=45), book) == 45
    assert projection.budget_epochs(cfg(max_epochs_total=55), book) == 60  # the attempt that starts at 50
    # from scratch, each attempt trains all its epochs: 30 + 40 = 70 < 100, so the 50-epoch one still starts
    assert projection.budget_epochs(cfg(resume=False, max_epochs_total=100), book) == 50


def test_budget_epochs_within_the_runner_minutes() -> None:
    book = chain_of(saturating(0.8, 5, range(1, 31)), minutes=2.0)  # 2 min an attempt: 6 used
    assert projection.budget_epochs(cfg(max_runner_minutes=10.5), book) == 50  # two more attempts fit
    assert projection.budget_epochs(cfg(max_runner_minutes=1000), book) == 100


# --------------------------------------------------------------------------- the decision


def test_decide_stops_a_hopeless_chain_and_says_where_it_was_heading() -> None:
    book = chain_of(saturating(0.8, 5, range(1, 31), noise=0.005))
    decision = strategy.decide(cfg(), book)
    assert decision.kind == strategy.EXHAUSTED and decision.next_epochs is None
    assert decision.reason.startswith(
        "Threshold not reached after 3 attempts, stopped on the projection: best accuracy "
    )
    assert "projected accuracy 0.8" in decision.reason and "at 100 epochs" in decision.reason
    assert "< 0.90" in decision.reason and "fitted on 30 epochs up to epoch 30" in decision.reason


def test_stop_when_hopeless_false_goes_on_to_the_budget() -> None:
    book = chain_of(saturating(0.8, 5, range(1, 31), noise=0.005))
    decision = strategy.decide(cfg(stop_when_hopeless=False), book)
    assert (decision.kind, decision.next_epochs) == (strategy.CONTINUE, 40)


def test_a_slow_reachable_chain_goes_on() -> None:
    book = chain_of(saturating(0.97, 35, range(1, 31), noise=0.01))  # crosses 0.9 near epoch 92
    assert strategy.decide(cfg(), book).kind == strategy.CONTINUE


def test_the_same_chain_is_hopeless_with_a_smaller_budget() -> None:
    book = chain_of(saturating(0.97, 35, range(1, 31)))
    assert strategy.decide(cfg(max_attempts=10), book).kind == strategy.CONTINUE
    assert "stopped on the projection" in strategy.decide(cfg(max_attempts=4), book).reason


def test_the_minutes_budget_ends_the_chain_before_an_attempt_that_would_pass_it() -> None:
    book = chain_of(saturating(0.97, 35, range(1, 31)), minutes=4.0)  # 12 minutes used
    decision = strategy.decide(cfg(max_runner_minutes=15), book)
    assert decision.kind == strategy.EXHAUSTED
    assert "within max_runner_minutes 15" in decision.reason
    assert "(12.0 minutes used; the next attempt would take about 4.0)" in decision.reason
    # 16 minutes leave room for one more attempt: 40 epochs, where this slow curve cannot reach 0.9 ...
    assert "stopped on the projection" in strategy.decide(cfg(max_runner_minutes=16), book).reason
    # ... which only the projection says
    going = strategy.decide(cfg(max_runner_minutes=16, stop_when_hopeless=False), book)
    assert going.kind == strategy.CONTINUE


def test_input_and_file_keys_validate() -> None:
    assert cfg().stop_when_hopeless is True and cfg().price_per_minute == 0.006
    assert config.coerce("stop_when_hopeless", "false") is False
    assert config.coerce("max_runner_minutes", "90") == 90
    with pytest.raises(Exception, match="max_runner_minutes"):
        cfg(max_runner_minutes=0)
    with pytest.raises(Exception, match="runner_prices"):
        cfg(runner_prices={"gpu": -1})


# --------------------------------------------------------------------------- search


SPACE = {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}


def trial_run(attempt: int, trial: int, lr: float, values: list[float]) -> Attempt:
    return Attempt(
        attempt=attempt,
        epochs=len(values),
        initial_epoch=0,
        resumed_from=None,
        outcome=BELOW,
        metric=values[-1],
        epochs_reached=len(values),
        epochs_trained=len(values),
        history=values,
        checkpoint="model.keras",
        trial=trial,
        rung=0,
        trial_params={"learning_rate": lr},
    )


def test_search_does_not_promote_a_hopeless_trial() -> None:
    flat = [round(0.6 * (1 - math.exp(-e / 2)), 4) for e in range(1, 11)]  # plateau 0.6: hopeless
    rising = [round(0.99 * (1 - math.exp(-e / 10)), 4) for e in range(1, 11)]  # 0.63 at 10, reachable
    book = Ledger(
        attempts=[
            trial_run(1, 1, 0.01, flat),
            trial_run(2, 2, 0.02, [v * 0.5 for v in flat]),
            trial_run(3, 3, 0.03, [v * 0.4 for v in flat]),
        ]
    )
    on = cfg(strategy="search", search={"space": SPACE})
    off = cfg(strategy="search", search={"space": SPACE}, stop_when_hopeless=False)
    assert search.next_runs(off, book)[0].trial == 1  # ASHA promotes the best
    assert search.next_runs(on, book)[0].trial == 4  # ... unless its own curve cannot reach 0.9: a new one
    book.attempts[0] = trial_run(1, 1, 0.01, rising)
    assert search.next_runs(on, book)[0].trial == 1
    record = search.trial_projection(on, book, book.attempts[1])
    assert record["hopeless"] is True and record["at_epochs"] == 10 + 10 * 7


# --------------------------------------------------------------------------- cost


def test_expected_minutes_fit_a_fixed_part_and_a_part_per_epoch() -> None:
    book = Ledger(
        attempts=[
            Attempt(
                attempt=1,
                epochs=10,
                initial_epoch=0,
                resumed_from=None,
                outcome=BELOW,
                epochs_trained=10,
                minutes=3.0,
            ),
            Attempt(
                attempt=2,
                epochs=30,
                initial_epoch=10,
                resumed_from=None,
                outcome=BELOW,
                epochs_trained=20,
                minutes=5.0,
            ),
        ]
    )
    assert cost.expected_minutes(book, 40) == pytest.approx(9.0)  # 1 + 0.2 per epoch
    assert cost.expected_minutes(Ledger(attempts=book.attempts[:1]), 20) == pytest.approx(6.0)
    assert cost.expected_minutes(Ledger(), 10) is None


def test_totals_and_prices_per_runner_kind() -> None:
    attempts = [
        Attempt(
            attempt=i, epochs=10, initial_epoch=0, resumed_from=None, outcome=BELOW, minutes=m, runner_kind=k
        )
        for i, (m, k) in enumerate(
            [(10.0, "ubuntu-latest"), (5.0, "gpu-t4"), (2.5, "ubuntu-latest"), (1.0, "local"), (None, None)],
            start=1,
        )
    ]
    totals = cost.totals(attempts, 0.006, {"gpu-t4": 0.052})
    assert [(t.kind, t.attempts, t.minutes) for t in totals] == [
        ("gpu-t4", 1, 5.0),
        ("local", 1, 1.0),
        ("ubuntu-latest", 2, 12.5),
    ]
    assert [t.cost for t in totals] == [pytest.approx(0.26), None, pytest.approx(0.075)]
    assert cost.describe(totals) == (
        "18.5 runner minutes (gpu-t4: 5.0 min, ~$0.26; local: 1.0 min; ubuntu-latest: 12.5 min, ~$0.07)"
    )
    assert cost.price("macos-latest", 0.006) == 0.062 and cost.price("my-runner", 0.01) == 0.01
    assert cost.price("self-hosted", 0.006) == 0.0 and cost.price(cost.LOCAL, 0.006) is None


def test_a_merge_jobs_minutes_count_in_the_totals_and_travel_in_the_ledger(tmp_path: Path) -> None:
    attempt = Attempt(
        attempt=1,
        epochs=10,
        initial_epoch=0,
        resumed_from=None,
        outcome=BELOW,
        minutes=4.0,
        runner_kind="gpu-t4",
    )
    merge = JobMinutes("merge", 0.75, "action", "ubuntu-latest", round=1, run={"id": "7"})
    book = Ledger(attempts=[attempt], jobs=[merge])
    assert cost.total_minutes(book) == pytest.approx(4.75)  # what max_runner_minutes caps
    assert [(t.kind, t.minutes) for t in cost.ledger_totals(book, 0.006, {"gpu-t4": 0.052})] == [
        ("gpu-t4", 4.0),
        ("ubuntu-latest", 0.75),
    ]
    ledger_mod.save(tmp_path, book)
    assert ledger_mod.load(tmp_path).jobs == [merge]
    ledger_mod.save(tmp_path / "none", Ledger(attempts=[attempt]))  # no jobs: no key, as before
    assert "jobs" not in json.loads(ledger_mod.ledger_path(tmp_path / "none").read_text())


@pytest.mark.parametrize(
    "job",
    [
        {"job": "merge", "minutes": -1, "minutes_from": "action", "runner_kind": "x"},
        {"job": "train", "minutes": 1, "minutes_from": "action", "runner_kind": "x"},
        {"job": "merge", "minutes": 1, "minutes_from": "yesterday", "runner_kind": "x"},
        {"job": "merge", "minutes": 1, "minutes_from": "action", "runner_kind": "x", "price": 0},
        {"job": "merge", "minutes": 1e12, "minutes_from": "action", "runner_kind": "x"},
    ],
)
def test_a_restored_ledgers_jobs_are_checked_like_its_attempts(tmp_path: Path, job: dict[str, Any]) -> None:
    data = {"version": 1, "chain": {}, "attempts": [], "jobs": [job]}
    ledger_mod.ledger_path(tmp_path).write_text(json.dumps(data))
    with pytest.raises(LedgerError):
        ledger_mod.load(tmp_path)


ON_GITHUB = {"GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux"}


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, "local"),
        ({**ON_GITHUB, "RUNNER_ENVIRONMENT": "github-hosted"}, "ubuntu-latest"),
        ({**ON_GITHUB, "RUNNER_OS": "macOS"}, "macos-latest"),
        ({**ON_GITHUB, "RUNNER_ENVIRONMENT": "self-hosted"}, "self-hosted"),
    ],
)
def test_runner_kind_is_guessed_from_the_runner(env: dict[str, str], kind: str) -> None:
    assert cost.runner_kind(env, None) == kind
    assert cost.runner_kind(env, "gpu-a10") == "gpu-a10"


def test_minutes_count_from_the_run_start_when_known() -> None:
    now = 1_800_000_000.0
    iso = "2027-01-15T08:00:00+00:00"
    started = cost.parse_time(iso)
    assert started is not None
    assert cost.job_start({"started_at": iso}, {"KT_ACTION_STARTED": str(started + 60)}, started + 600) == (
        started,
        "run_started_at",
    )
    assert cost.job_start({}, {"KT_ACTION_STARTED": str(now - 90)}, now) == (now - 90, "action")
    # a start after the attempt's, text that is not a time, or a start older than a job may live: not used
    later = {"KT_ACTION_STARTED": str(now + 100)}
    assert cost.job_start({"started_at": "soon"}, later, now) == (now, "attempt")
    assert cost.job_start({"started_at": "2020-01-01T00:00:00Z"}, {}, now) == (now, "attempt")
    record = Attempt(attempt=1, epochs=10, initial_epoch=0, resumed_from=None, outcome=BELOW)
    cost.stamp(record, record, (now - 90, "action"), now, "ubuntu-latest")
    assert (record.minutes, record.minutes_from, record.runner_kind) == (1.5, "action", "ubuntu-latest")
    later_run = Attempt(attempt=1, epochs=10, initial_epoch=5, resumed_from=None, outcome=BELOW)
    cost.stamp(record, later_run, (now, "attempt"), now + 30, "ubuntu-latest")  # a sliced attempt's next run
    assert record.minutes == 2.0


# --------------------------------------------------------------------------- the ledger


def test_the_ledger_keeps_minutes_and_projections_and_older_ledgers_still_load(tmp_path: Path) -> None:
    book = chain_of(saturating(0.8, 5, range(1, 31)), minutes=1.25)
    book.attempts[-1].projection = projection.record(projection.of_chain(cfg(), book), 0.9)
    book.attempts[-1].minutes_from = "run_started_at"
    ledger_mod.save(tmp_path, book)
    loaded = ledger_mod.load(tmp_path)
    assert loaded.attempts[-1].projection["hopeless"] is True and loaded.attempts[-1].minutes == 1.25
    data = json.loads((tmp_path / "ledger.json").read_text())
    for record in data["attempts"]:  # a ledger written before these fields existed
        for key in ("minutes", "minutes_from", "runner_kind", "projection"):
            record.pop(key)
    (tmp_path / "ledger.json").write_text(json.dumps(data))
    old = ledger_mod.load(tmp_path)
    assert old.attempts[-1].minutes is None and old.attempts[-1].projection == {}
    data["attempts"][0]["projection"] = {"bound": 0.5, "command": "rm -rf /"}
    (tmp_path / "ledger.json").write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="projection: unknown key"):
        ledger_mod.load(tmp_path)


# The sample model's validation accuracy (ml_code/nn.py, digits, SGD 0.01): a rise, a plateau near 0.76
# from epoch 9 to 16, then a second rise that crosses 0.9 at epoch 25.
SAMPLE = [
    0.1533,
    0.3244,
    0.4311,
    0.5533,
    0.6044,
    0.6444,
    0.7111,
    0.7089,
    0.7644,
    0.7556,
    0.7689,
    0.7644,
    0.7578,
    0.74,
    0.7644,
    0.7644,
    0.7978,
    0.8,
    0.8089,
    0.8222,
    0.8578,
    0.8889,
    0.8822,
    0.8911,
    0.9022,
    0.8978,
    0.9111,
    0.9089,
    0.9178,
    0.9311,
]


def test_a_second_rise_after_a_plateau_is_never_called_hopeless() -> None:
    """One saturating curve fits the first 20 epochs badly (they rise again at the end): no bound, go on."""
    found = projection.fit(dict(enumerate(SAMPLE[:20], start=1)), 100)
    assert found is not None and not found.fits and not found.hopeless(0.9)
    assert found.to_record()["bound"] == 1e6
    book = chain_of(dict(enumerate(SAMPLE[:20], start=1)))
    assert strategy.decide(cfg(), book).kind == strategy.CONTINUE


def test_after_a_second_rise_the_recent_phase_is_fitted() -> None:
    found = projection.fit(dict(enumerate(SAMPLE, start=1)), 100)
    assert found is not None and found.fits and found.points == 15  # epochs 16-30
    assert not found.hopeless(0.9)


def test_a_huge_history_is_thinned_and_fitted_quickly() -> None:
    import time  # noqa: PLC0415

    values = saturating(0.8, 50, range(1, 20_001), noise=0.01)
    clock = time.perf_counter()
    found = projection.fit(values, 30_000)
    assert found is not None and found.points <= projection.MAX_POINTS and found.epochs_seen == 20_000
    assert found.hopeless(0.9)
    assert time.perf_counter() - clock < 30  # generous: the machine is shared


def test_summary_and_mail_lines_show_minutes_cost_and_projection() -> None:
    from keeptraining.reports import summary  # noqa: PLC0415

    book = chain_of(saturating(0.8, 5, range(1, 31)), minutes=2.0)
    for record in book.attempts:
        record.minutes_from = "run_started_at"
    book.attempts[-1].projection = projection.record(projection.of_chain(cfg(), book), 0.9)
    lines = summary.cost_lines(book, cfg())
    assert lines[0] == (
        "Runner minutes: 6.0 runner minutes (ubuntu-latest: 6.0 min, ~$0.04); estimated cost "
        "$0.04; counted from the run's start"
    )
    assert lines[1].startswith("Projection after attempt 3: accuracy 0.8") and "at 100 epochs" in lines[1]
    assert "< 0.90" in lines[1]
    markdown = summary.cost_markdown(book, cfg())
    assert markdown.startswith("**Runner minutes:** 6.0 runner minutes")
    assert "**Projection after attempt 3:**" in markdown
    assert summary.cost_lines(Ledger(), cfg()) == []
