"""strategy: search: the space (every bad input), proposals, the study rebuilt from the ledger,
and the successive-halving decisions from given histories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from keeptraining.cli import main
from keeptraining.config import search_space
from keeptraining.config import settings as config
from keeptraining.engine import search, strategy
from keeptraining.errors import ConfigError, LedgerError
from keeptraining.state import ledger
from keeptraining.state.ledger import BELOW, FAILED, REACHED, Attempt, Ledger
from test_report import decode_png

SPACE = {
    "learning_rate": {"type": "float", "low": 0.0001, "high": 0.3, "log": True},
    "width": {"type": "int", "low": 16, "high": 128, "step": 16},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
}


def cfg(space: dict[str, Any] | None = None, **overrides: Any) -> config.Config:
    search_section = {"space": space or SPACE, **overrides.pop("search", {})}
    return config.resolve({"strategy": "search", "search": search_section, **overrides}, None)


# --------------------------------------------------------------------------- the space


def test_the_issue_example_parses() -> None:
    settings = cfg().search_settings()
    assert (settings.sampler, settings.reduction_factor, settings.seed) == ("tpe", 3, 0)
    lr, width, dropout, optimizer = settings.space
    assert (lr.type, lr.low, lr.high, lr.log, lr.step) == ("float", 0.0001, 0.3, True, None)
    assert (width.type, width.step, width.grid()[:3]) == ("int", 16, [16, 32, 48])
    assert dropout.describe() == "float in [0, 0.5]"
    assert optimizer.choices == ("sgd", "adam")


@pytest.mark.parametrize(
    ("param", "message"),
    [
        pytest.param(
            {"type": "double", "low": 0, "high": 1},
            "lr.type = 'double' is not a known type; expected float, int or categorical",
            id="unknown-type",
        ),
        pytest.param({"low": 0, "high": 1}, "lr.type = None is not a known type", id="no-type"),
        pytest.param(
            {"type": "float", "low": 0.5, "high": 0.1},
            "lr: low = 0.5 is above high = 0.1",
            id="low-above-high",
        ),
        pytest.param(
            {"type": "float", "low": 0.0, "high": 0.1, "log": True},
            "lr: log: true needs low > 0 (got low = 0.0)",
            id="log-low-zero",
        ),
        pytest.param(
            {"type": "float", "low": -1, "high": 0.1, "log": True},
            "log: true needs low > 0",
            id="log-low-negative",
        ),
        pytest.param({"type": "categorical", "choices": []}, "lr.choices is empty", id="empty-choices"),
        pytest.param(
            {"type": "categorical", "choices": "sgd"},
            "lr.choices = 'sgd' is not valid; expected a list",
            id="choices-not-a-list",
        ),
        pytest.param(
            {"type": "categorical", "choices": [{"a": 1}]},
            "lr.choices: {'a': 1} is not valid",
            id="choice-mapping",
        ),
        pytest.param(
            {"type": "categorical", "choices": ["a", "a"]}, "lists a value twice", id="choice-twice"
        ),
        pytest.param({"type": "categorical"}, "lr.choices = None is not valid", id="no-choices"),
        pytest.param({"type": "float", "high": 1}, "lr: low is missing", id="no-low"),
        pytest.param(
            {"type": "int", "low": 0.5, "high": 4},
            "lr.low = 0.5 is not valid; expected a whole number",
            id="int-float-bound",
        ),
        pytest.param(
            {"type": "float", "low": "0", "high": 1},
            "lr.low = '0' is not valid; expected a finite number",
            id="text-bound",
        ),
        pytest.param(
            {"type": "float", "low": True, "high": 1}, "lr.low = True is not valid", id="bool-bound"
        ),
        pytest.param(
            {"type": "float", "low": 0, "high": float("inf")},
            "lr.high = inf is not valid",
            id="infinite-bound",
        ),
        pytest.param(
            {"type": "float", "low": 0.001, "high": 0.1, "log": True, "step": 0.001},
            "step and log: true cannot be combined",
            id="step-and-log",
        ),
        pytest.param(
            {"type": "int", "low": 16, "high": 250, "step": 16},
            "high = 250 is not low + a whole number of steps of 16; use high: 240",
            id="high-off-step",
        ),
        pytest.param(
            {"type": "int", "low": 1, "high": 4, "step": 0}, "lr.step = 0 is not valid", id="zero-step"
        ),
        pytest.param(
            {"type": "float", "low": 0, "high": 1, "log": "yes"}, "lr.log = 'yes' is not valid", id="log-text"
        ),
        pytest.param(
            {"type": "categorical", "choices": ["a"], "low": 0},
            "lr: key(s) low do not apply to type categorical",
            id="key-of-other-type",
        ),
        pytest.param(0.1, "lr = 0.1 is not valid; expected a mapping", id="not-a-mapping"),
    ],
)
def test_bad_parameter_is_named_with_what_to_fix(param: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        search_space.parse({"space": {"lr": param}}, "x.yml")
    assert message in str(caught.value)
    assert "x.yml: search.space.lr" in str(caught.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param({"space": {}}, "search.space = {} is not valid", id="empty-space"),
        pytest.param({"sampler": "tpe"}, "search.space = None is not valid", id="no-space"),
        pytest.param(
            {"space": SPACE, "sampler": "bayes"},
            "search.sampler = 'bayes' is not valid; expected one of tpe, random, grid",
            id="sampler",
        ),
        pytest.param({"space": SPACE, "reduction_factor": 1}, "reduction_factor = 1 is not valid", id="eta"),
        pytest.param({"space": SPACE, "seed": -1}, "search.seed = -1 is not valid", id="seed"),
        pytest.param({"space": SPACE, "pruner": "median"}, "unknown key(s) pruner", id="unknown-key"),
        pytest.param({"space": {"1lr": SPACE["dropout"]}}, "parameter name '1lr' is not valid", id="name"),
        pytest.param(
            {"space": SPACE, "sampler": "grid"},
            "sampler grid needs a step for float parameter learning_rate",
            id="grid-float-without-step",
        ),
        pytest.param(
            {
                "space": {
                    "a": {"type": "int", "low": 1, "high": 1000},
                    "b": {"type": "int", "low": 1, "high": 1000},
                },
                "sampler": "grid",
            },
            "the grid has 1000000 points",
            id="grid-too-large",
        ),
        pytest.param("tpe", "search = 'tpe' is not valid; expected a mapping", id="not-a-mapping"),
    ],
)
def test_bad_search_section(section: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        config.resolve({"strategy": "search", "search": section}, None)
    assert message in str(caught.value)


def test_strategy_search_without_a_space_says_where_to_write_it() -> None:
    with pytest.raises(ConfigError) as caught:
        config.resolve({"strategy": "search"}, None)
    assert "strategy: search needs a search space" in str(caught.value)
    assert "search: {space:" in str(caught.value)


def test_a_value_both_fixed_and_searched_is_refused() -> None:
    with pytest.raises(ConfigError, match="learning_rate is both in hyperparameters"):
        cfg(hyperparameters={"LEARNING_RATE": 0.01})


def test_unknown_strategy_and_long_bad_values_are_cut(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strategy = 'hyperband' is not valid; expected one of epochs"):
        config.resolve({"strategy": "hyperband"}, None)
    with pytest.raises(ConfigError) as caught:
        search_space.parse({"space": {"lr": {"type": "x" * 500}}})
    assert len(str(caught.value)) < 250


def test_the_space_is_read_from_the_file_and_never_from_a_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "nn.py").write_text("print('Test accuracy: 0.5')\n")  # validate checks the command
    (tmp_path / ".keeptraining.yml").write_text(
        yaml.safe_dump(
            {"code_path": "ml", "strategy": "search", "search": {"space": SPACE}, "backend": "local"}
        )
    )
    assert main(["validate", "--repo", str(tmp_path), "--strategy", "search"]) == 0
    out = capsys.readouterr().out
    assert "strategy: 'search'" in out and "learning_rate" in out
    with pytest.raises(SystemExit):
        main(["validate", "--repo", str(tmp_path), "--search", "{}"])
    (tmp_path / ".keeptraining.yml").write_text(
        "code_path: ml\nstrategy: search\nsearch:\n  space:\n    lr: {type: float, low: 1, high: 0}\n"
    )
    assert main(["validate", "--repo", str(tmp_path)]) == 2
    assert "search.space.lr: low = 1 is above high = 0" in capsys.readouterr().err


# --------------------------------------------------------------------------- proposals


def run(
    attempt: int,
    trial: int,
    rung: int,
    params: dict[str, Any],
    metric: float | None,
    epochs: int = 10,
    initial: int = 0,
    outcome: str = BELOW,
) -> Attempt:
    """A ledger record of one run of a trial, with a linear learning curve up to ``metric``."""
    history = (
        []
        if metric is None
        else [round(metric - 0.01 * (epochs - initial - 1 - i), 4) for i in range(epochs - initial)]
    )
    return Attempt(
        attempt=attempt,
        epochs=epochs,
        initial_epoch=initial,
        resumed_from=None,
        outcome=FAILED if metric is None else outcome,
        metric=metric,
        epochs_reached=None if metric is None else epochs,
        epochs_trained=epochs - initial,
        history=history,
        checkpoint=None if metric is None else "model.keras",
        error="exited with code 1" if metric is None else None,
        trial=trial,
        rung=rung,
        trial_params=dict(params),
    )


def point(lr: float, width: int = 32, dropout: float = 0.1, optimizer: str = "adam") -> dict[str, Any]:
    return {"learning_rate": lr, "width": width, "dropout": dropout, "optimizer": optimizer}


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_proposals_lie_inside_the_space_and_follow_the_seed(sampler: str) -> None:
    settings = cfg(search={"sampler": sampler}).search_settings()
    trials = search.validated_trials(
        Ledger(attempts=[run(n, n, 0, point(0.001 * n), 0.5 + 0.01 * n) for n in range(1, 8)]), settings
    )
    proposals = search.propose(settings, trials, k=25)
    assert len(proposals) == 25
    for values in proposals:
        assert list(values) == ["learning_rate", "width", "dropout", "optimizer"]
        for p in settings.space:
            assert p.contains(values[p.name]), (p, values)
    assert len({v["learning_rate"] for v in proposals}) == 25  # one batch never repeats itself
    assert search.propose(settings, trials, k=3) == proposals[:3]  # seeded: the same ledger, the same values
    fewer = search.validated_trials(Ledger(attempts=[run(1, 1, 0, point(0.001), 0.5)]), settings)
    assert search.propose(settings, fewer, k=1) != proposals[:1]  # seed + trials so far


def test_grid_walks_every_point_once_then_ends() -> None:
    space = {
        "optimizer": SPACE["optimizer"],
        "dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
    }
    # reduction_factor 10: six results never make a top tenth, so nothing is promoted.
    config_ = cfg(space, search={"sampler": "grid", "reduction_factor": 10}, max_attempts=20)
    seen: list[dict[str, Any]] = []
    book = Ledger()
    for n in range(1, 7):
        (job,) = search.next_runs(config_, book)
        assert (job.trial, job.rung) == (n, 0)
        seen.append(job.params)
        book.attempts.append(run(n, n, 0, job.params, 0.1 * n))
    assert sorted((p["optimizer"], p["dropout"]) for p in seen) == sorted(
        (o, d) for o in ("sgd", "adam") for d in (0.0, 0.1, 0.2)
    )
    assert search.next_runs(config_, book) == []
    end = strategy.decide(config_, book)
    assert end.kind == strategy.EXHAUSTED and "every point of the grid tried" in end.reason
    assert seen == search.grid_points(config_.search_settings())  # one fixed, seeded order


def test_values_reach_the_script_as_hp_variables() -> None:
    env = search.hp_env({"learning_rate": 0.000123456789, "width": 48, "optimizer": "adam", "bn": True})
    assert env == {
        "KT_HP_LEARNING_RATE": "0.000123456789",
        "KT_HP_WIDTH": "48",
        "KT_HP_OPTIMIZER": "adam",
        "KT_HP_BN": "true",
    }


# --------------------------------------------------------------------------- the study in the ledger


def test_study_round_trips_through_the_saved_ledger(tmp_path: Path) -> None:
    """The ledger file is the whole study: saved and loaded, it rebuilds the same trials and the
    next process asks the same next values."""
    config_ = cfg()
    book = Ledger(
        attempts=[
            run(1, 1, 0, point(0.01), 0.7),
            run(2, 2, 0, point(0.2, 64, 0.3, "sgd"), 0.4),
            run(3, 3, 0, point(0.003, 128, 0.0), 0.6),
            run(4, 1, 1, point(0.01), 0.8, 20, 10),
            run(5, 4, 0, point(0.05), None),
        ]
    )
    ledger.save(tmp_path, book)
    again = ledger.load(tmp_path)
    settings = config_.search_settings()
    before, after = search.validated_trials(book, settings), search.validated_trials(again, settings)
    assert [(t.number, t.params, t.rung, t.best) for t in after] == [
        (t.number, t.params, t.rung, t.best) for t in before
    ]
    assert after[0].curve()[20] == 0.8 and after[0].curve()[11] == pytest.approx(0.71)
    assert search.next_runs(config_, again) == search.next_runs(config_, book)
    study = search.build_study(settings, after)
    states = [t.state.name for t in study.trials]
    assert states == ["PRUNED", "PRUNED", "PRUNED", "FAIL"]  # curves for TPE; the failed one ignored


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        pytest.param(
            lambda a: a[0]["trial_params"].update(learning_rate=5.0),
            "trial 1 has learning_rate = '5.0', outside the space",
            id="value-outside",
        ),
        pytest.param(
            lambda a: a[0]["trial_params"].update(optimizer="adam; rm -rf /"),
            "optimizer = 'adam; rm -rf /', outside the space",
            id="choice-not-in-space",
        ),
        pytest.param(
            lambda a: a[0]["trial_params"].update(extra=1), "has values for dropout, extra", id="extra-value"
        ),
        pytest.param(
            lambda a: a[0]["trial_params"].update(width=32.0), "width = '32.0', outside", id="int-as-float"
        ),
        pytest.param(lambda a: a[1].update(trial=7), "trial 7 does not follow trial 1", id="trial-jump"),
        pytest.param(
            lambda a: a[1].update(trial=1, rung=3, trial_params=a[0]["trial_params"]),
            "trial 1 cannot run rung 3 after rung 0",
            id="rung-jump",
        ),
        pytest.param(lambda a: a[0].update(rung=1), "trial 1 starts at rung 1", id="first-rung"),
        pytest.param(
            lambda a: a[0].update(trial=None), "trial = 'None' is not a trial number", id="epochs-chain"
        ),
        pytest.param(
            lambda a: a[0].update(trial="1"), "attempts[0].trial: '1' has the wrong type", id="trial-text"
        ),
        pytest.param(
            lambda a: a[0].update(metric="0.9"),
            "attempts[0].metric: '0.9' has the wrong type",
            id="metric-text",
        ),
        pytest.param(
            lambda a: a[0].update(metric=7.5), "attempts[0].metric: 7.5 is too large", id="metric-range"
        ),
        pytest.param(
            lambda a: a[0].update(history=[0.1, "x"]),
            "attempts[0].history[1]: 'x' has the wrong type",
            id="history-text",
        ),
        pytest.param(
            lambda a: a[0].update(epochs_reached=-3),
            "attempts[0].epochs_reached: -3 is too small",
            id="epochs-negative",
        ),
    ],
)
def test_a_tampered_ledger_is_refused_before_optuna_or_a_script_sees_it(
    tmp_path: Path, tamper: Any, message: str
) -> None:
    ledger.save(tmp_path, Ledger(attempts=[run(1, 1, 0, point(0.01), 0.7), run(2, 2, 0, point(0.02), 0.6)]))
    path = tmp_path / "ledger.json"
    data = json.loads(path.read_text())
    tamper(data["attempts"])
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError) as caught:  # the ledger's schema, or the search's own checks
        search.next_runs(cfg(), ledger.load(tmp_path))
    assert message in str(caught.value)
    assert "start a" in str(caught.value).lower() and "chain" in str(caught.value)


# --------------------------------------------------------------------------- successive halving


def trials_of(*results: tuple[int, list[float | None]]) -> list[search.Trial]:
    """Trials from (number, [result at rung 0, rung 1, …])."""
    out = []
    attempt = 0
    for number, scores in results:
        runs = []
        for rung, score in enumerate(scores):
            attempt += 1
            runs.append(run(attempt, number, rung, point(0.001 * number), score, 10 * (rung + 1), 10 * rung))
        out.append(search.Trial(number, point(0.001 * number), runs))
    return out


def always(_trial: search.Trial) -> bool:
    return True


@pytest.mark.parametrize(
    ("results", "eta", "promoted"),
    [
        pytest.param([(1, [0.9])], 3, None, id="one-result-waits-for-competitors"),
        pytest.param([(1, [0.5]), (2, [0.7])], 3, None, id="two-results-wait"),
        pytest.param([(1, [0.5]), (2, [0.7]), (3, [0.6])], 3, 2, id="third-result-promotes-the-best"),
        pytest.param([(1, [0.5]), (2, [0.7])], 2, 2, id="eta-2-promotes-the-better-of-two"),
        pytest.param([(1, [0.5]), (2, [0.7, 0.8]), (3, [0.6])], 3, None, id="best-already-promoted"),
        pytest.param(
            [(1, [0.5]), (2, [0.7, 0.8]), (3, [0.6]), (4, [0.4]), (5, [0.3]), (6, [0.55])],
            3,
            3,
            id="six-results-promote-the-second-best",
        ),
        pytest.param(
            [
                (1, [0.5, 0.6]),
                (2, [0.7, 0.8]),
                (3, [0.6, 0.7]),
                (4, [0.4]),
                (5, [0.3]),
                (6, [0.1]),
                (7, [0.1]),
                (8, [0.1]),
                (9, [0.1]),
            ],
            3,
            2,
            id="higher-rung-first",
        ),
        pytest.param(
            [(1, [0.5]), (2, [0.7, None]), (3, [0.6])], 3, None, id="failed-promotion-is-not-retried"
        ),
        pytest.param([(1, [None]), (2, [None]), (3, [0.1])], 3, None, id="failures-are-not-results"),
        pytest.param([(1, [0.6]), (2, [0.6]), (3, [0.5])], 3, 1, id="tie-goes-to-the-earlier-trial"),
    ],
)
def test_promotion_from_given_histories(
    results: list[tuple[int, list[float | None]]], eta: int, promoted: int | None
) -> None:
    chosen = search.promotion(trials_of(*results), eta, always)
    assert (chosen.number if chosen else None) == promoted


def test_promotion_respects_max_epochs() -> None:
    trials = trials_of((1, [0.5]), (2, [0.7]), (3, [0.6]))
    assert search.promotion(trials, 3, lambda t: t.epochs < 10) is None


@pytest.mark.parametrize(
    ("number", "attempts_left", "expected"),
    [
        pytest.param(2, 1, True, id="best-can-be-promoted-next"),
        pytest.param(3, 1, False, id="second-needs-more-competitors"),
        pytest.param(3, 4, True, id="second-with-room-for-three-more"),
        pytest.param(1, 4, False, id="worst-cannot-make-the-top-third"),
        pytest.param(2, 0, False, id="no-attempt-left"),
    ],
)
def test_which_checkpoints_may_still_be_promoted(number: int, attempts_left: int, expected: bool) -> None:
    trials = trials_of((1, [0.5]), (2, [0.7]), (3, [0.6]))
    assert search.may_be_promoted(trials[number - 1], trials, 3, attempts_left) is expected


def test_next_runs_promote_first_then_ask_for_new_trials() -> None:
    config_ = cfg(epochs=5, epoch_step=3)
    book = Ledger(
        attempts=[
            run(1, 1, 0, point(0.01), 0.5, 5),
            run(2, 2, 0, point(0.02), 0.7, 5),
            run(3, 3, 0, point(0.03), 0.6, 5),
        ]
    )
    jobs = search.next_runs(config_, book, k=3)
    assert [(j.trial, j.rung, j.initial_epoch, j.epochs) for j in jobs] == [
        (2, 1, 5, 8),
        (4, 0, 0, 5),
        (5, 0, 0, 5),
    ]
    assert jobs[0].resume_from is book.attempts[1] and jobs[0].params == point(0.02)
    assert jobs[1].params != jobs[2].params


def test_a_trial_its_scripts_early_stopping_ended_is_not_promoted() -> None:
    """EarlyStopping ended trial 2, the best at its rung: the search starts a new trial instead of resuming
    it, and its checkpoint is no longer kept for a promotion."""
    book = Ledger(
        attempts=[
            run(1, 1, 0, point(0.01), 0.5, 5),
            run(2, 2, 0, point(0.02), 0.7, 5),
            run(3, 3, 0, point(0.03), 0.6, 5),
        ]
    )
    config_ = cfg(epochs=5, epoch_step=3, stop_when_hopeless=False)
    ((job,), keep) = search.next_runs(config_, book), search.attempts_to_keep(config_, book)
    assert (job.trial, job.rung) == (2, 1) and 2 in keep
    book.attempts[1].early_stopped = True
    (job,) = search.next_runs(config_, book)
    assert (job.trial, job.rung) == (4, 0)
    assert 2 not in search.attempts_to_keep(config_, book)


def test_resume_false_promotes_by_retraining_from_scratch() -> None:
    book = Ledger(
        attempts=[
            run(1, 1, 0, point(0.01), 0.5),
            run(2, 2, 0, point(0.02), 0.7),
            run(3, 3, 0, point(0.03), 0.6),
        ]
    )
    (job,) = search.next_runs(cfg(resume=False), book)
    assert (job.trial, job.rung, job.initial_epoch, job.epochs, job.resume_from) == (2, 1, 0, 20, None)


def test_budget_caps_and_decisions() -> None:
    book = Ledger(
        attempts=[
            run(1, 1, 0, point(0.01), 0.5),
            run(2, 2, 0, point(0.02), 0.7),
            run(3, 3, 0, point(0.03), 0.6),
        ]
    )
    # stop_when_hopeless off: trial 2's straight curve cannot reach 0.9 in 5 more epochs, which would
    # stop its promotion (test_projection.py); this test is about the budget's caps
    (job,) = search.next_runs(cfg(max_epochs_total=35, stop_when_hopeless=False), book)
    assert (job.trial, job.initial_epoch, job.epochs) == (2, 10, 15)  # 5 of the 35 epochs left
    assert strategy.decide(cfg(max_epochs_total=30), book).kind == strategy.EXHAUSTED
    assert strategy.decide(cfg(max_attempts=3), book).kind == strategy.EXHAUSTED
    assert "best accuracy 0.7000 at attempt 2 (trial 2:" in strategy.decide(cfg(max_attempts=3), book).reason
    going = strategy.decide(cfg(), book)
    assert (going.kind, going.next_epochs) == (strategy.CONTINUE, 20)
    assert "next attempt 4 promotes trial 2 to rung 1 (10 -> 20 epochs)" in going.reason
    book.attempts.append(run(4, 2, 1, point(0.02), 0.95, 20, 10, outcome=REACHED))
    reached = strategy.decide(cfg(), book)
    assert reached.kind == strategy.CHAIN_REACHED and "trial 2: learning_rate=0.02" in reached.reason


def test_a_failed_trial_does_not_end_the_search_but_three_in_a_row_do() -> None:
    book = Ledger(attempts=[run(1, 1, 0, point(0.01), 0.5), run(2, 2, 0, point(0.3), None)])
    going = strategy.decide(cfg(), book)
    assert going.kind == strategy.CONTINUE and "Attempt 2 failed" in going.reason
    book.attempts += [run(3, 3, 0, point(0.2), None), run(4, 4, 0, point(0.25), None)]
    ended = strategy.decide(cfg(), book)
    assert ended.kind == strategy.CHAIN_FAILED and "the last 3 attempts failed" in ended.reason


def test_reports_show_every_trial_escaped_and_survive_a_foreign_ledger(tmp_path: Path) -> None:
    from keeptraining.reports import search_table as search_report  # noqa: PLC0415
    from keeptraining.reports import summary as report  # noqa: PLC0415

    space = {"optimizer": {"type": "categorical", "choices": ["sgd", "<b>adam|x</b>"]}}
    config_ = cfg(space, max_attempts=3)
    book = Ledger(
        attempts=[
            run(1, 1, 0, {"optimizer": "sgd"}, 0.5),
            run(2, 2, 0, {"optimizer": "<b>adam|x</b>"}, 0.7),
            run(3, 2, 1, {"optimizer": "<b>adam|x</b>"}, 0.8, 20, 10),
        ]
    )
    decision = strategy.decide(config_, book)
    summary = report.job_summary(book, config_, decision)
    assert "### Search" in summary and "Best trial 2" in summary
    assert "<b>" not in summary and "&lt;b&gt;adam\\|x&lt;/b&gt;" in summary  # one cell, inert
    assert "| 2 | &lt;b&gt;adam\\|x&lt;/b&gt; | 1 | 20 | 0.8000 | stopped | 2, 3 |" in summary
    assert 'x-axis "optimizer" ["sgd", "badamxb"]' in summary and "bar [0.5000, 0.8000]" in summary
    text = search_report.trials_table(book, config_)
    assert text.splitlines()[0].split() == ["Trial", "optimizer", "Rung", "Epochs", "accuracy", "Status"]
    pixels = decode_png(search_report.render_chart(book, config_, tmp_path / "c.png").read_bytes())
    assert len(pixels) == 450 and len(pixels[0]) == 900  # two panels: the trials, the optimizer
    found = {p for row in pixels for p in row}
    assert (220, 20, 60) in found  # the threshold
    bars = {(26, 127, 55), (207, 34, 46), (9, 105, 218), (140, 149, 159)}  # reached failed promotable stopped
    assert bars & found  # the trials' bars in their status's colour
    foreign = Ledger(attempts=[run(1, 1, 0, {"optimizer": "rmsprop"}, 0.5)])  # not in this space
    assert search_report.summary_markdown(foreign, config_) == ""
    assert "| 1 |" in report.job_summary(foreign, config_, decision)  # the attempts table is still there
