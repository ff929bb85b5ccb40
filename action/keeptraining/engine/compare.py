"""Champion and challenger: the working tree's code trains a candidate, and evaluates the champion.

What a pull request's check (``keeptraining pr-check``) and ``keeptraining compare --champion PATH``
both do, in one run and with no chain:

1. *evaluate the champion* with this code and data: an evaluate-only run of the training contract
   (``KT_EPOCHS == KT_INITIAL_EPOCH``, ``KT_RESUME_FROM`` the champion's model): the script loads
   it, trains nothing and reports the metric (``contract.check.check_evaluation`` refuses a run
   that trained);
2. *train the candidate* from scratch to the champion's epochs, with the champion's
   hyperparameters (its ``model-card.json``), within this run's time budget: a script that stops
   at ``KT_DEADLINE`` is compared at the epochs it reached, and the report says so. Its
   ``KT_THRESHOLD`` is 1, so that a script (or the Keras adapter) does not stop at the target
   before the champion's epochs;
3. *judge*: the candidate passes when its metric is at least the champion's minus ``tolerance``;
   with no champion, when it reaches the threshold.

The champion is evaluated first: its cost is known and small, and the candidate's training gets
what is left of the budget. Both runs write into ``<state_dir>/compare/`` (``champion/``,
``candidate/``), which each comparison replaces; a chain's ledger and attempts are never touched.

The champion's card and model are found and checked elsewhere (``reports.model_card`` for a
folder, ``github.releases`` for a release); this module gets their few facts as a ``ChampionModel``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining.backends.base import LogFile, echo_line
from keeptraining.backends.select import Backend
from keeptraining.config.settings import Config
from keeptraining.contract import check as contract_check
from keeptraining.contract import metrics as metrics_mod
from keeptraining.engine import chain, slices, time_budget
from keeptraining.engine.strategy import Plan
from keeptraining.errors import ConfigError, PathRefused, TrainingError, TrainingTimeout
from keeptraining.output import wording
from keeptraining.state.ledger import REACHED, Attempt

COMPARE_DIR = "compare"  # inside the state folder: champion/ and candidate/, replaced by each comparison
#: Two metrics this close count as equal (a float printed with 4 decimals and read back).
EPSILON = 1e-9

Say = Callable[[str], None]


@dataclass(frozen=True)
class ChampionModel:
    """The model to beat, as its ``model-card.json`` describes it (read by ``reports.model_card``)."""

    model_path: Path  # the model file on this machine
    epochs: int  # the epochs the champion was trained for: the candidate trains as many
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None  # the metric the card records
    value: float | None = None  # its value when it was published (evaluated again here)
    name: str = ""  # what to call it: the release's tag, or the folder
    url: str | None = None  # the release's page, when known
    commit: str | None = None  # the commit it was trained from


@dataclass
class Side:
    """One of the two runs: what it reached, in how many epochs, how long it took."""

    value: float
    epochs: int | None  # epochs the model has
    history: list[float]  # per-epoch values trained in this run (empty for an evaluation)
    duration_s: float
    folder: Path
    stopped: str | None = None  # "deadline": the candidate stopped at its time budget


@dataclass
class Comparison:
    metric: str
    threshold: float
    tolerance: float
    epochs_asked: int  # what the candidate was asked to train (the champion's epochs)
    candidate: Side
    champion: ChampionModel | None = None
    champion_eval: Side | None = None  # the champion evaluated with this code and data

    @property
    def delta(self) -> float | None:
        """Candidate minus champion (None without a champion)."""
        if self.champion_eval is None:
            return None
        return self.candidate.value - self.champion_eval.value

    @property
    def passed(self) -> bool:
        if self.champion_eval is None:
            return self.candidate.value >= self.threshold - EPSILON
        return self.candidate.value >= self.champion_eval.value - self.tolerance - EPSILON

    @property
    def short(self) -> bool:
        """The candidate stopped (time budget) before the epochs it was asked for."""
        return self.candidate.epochs is not None and self.candidate.epochs < self.epochs_asked

    def verdict(self) -> str:
        """One line: the outcome, in the one wording."""
        return wording.comparison(
            self.metric,
            self.candidate.value,
            self.champion_eval.value if self.champion_eval else None,
            self.tolerance,
            self.threshold,
            self.passed,
        )


# --------------------------------------------------------------------------- the two runs


def _fresh(folder: Path) -> Path:
    """An empty folder at ``folder``: keeptraining's own scratch, replaced (never through a link)."""
    with chain.state_folder_errors(f"prepare the comparison folder {folder}"):
        if folder.is_symlink():
            raise PathRefused(f"{folder} is a symbolic link; the comparison folder must be a plain folder.")
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    return folder


def _run_side(
    config: Config,
    ws: chain.Workspace,
    backend: Backend,
    plan: Plan,
    out_dir: Path,
    resume_path: Path | None,
    on_line: Callable[[str], None] | None,
    env: Mapping[str, str],
) -> tuple[metrics_mod.Metrics, contract_check.Trained, float]:
    budget = time_budget.budget(config, env)
    log = LogFile.create(out_dir)
    request = chain.train_request(
        config, ws, plan, {}, out_dir, log.sink(on_line), resume_path=resume_path, budget=budget
    )
    try:
        result = backend.run(request)
    finally:
        log.close()
    if result.timed_out:
        raise TrainingTimeout(
            f"The training ran past the timeout of {config.timeout:g} s and was stopped.",
            hint="Raise `timeout`, or set `time-budget` so that the script stops itself.",
            log_tail=result.log_tail,
        )
    if result.exit_code != 0:
        detail = f" ({result.detail})" if result.detail else ""
        raise TrainingError(
            f"The training command exited with code {result.exit_code}{detail}.",
            hint="The last lines of its log are shown above.",
            log_tail=result.log_tail,
        )
    found = metrics_mod.read(out_dir, result.output, config.metric)
    trained = contract_check.assess(found, result.output, plan, config.threshold)
    metrics_mod.check_epochs(found, asked=plan.epochs, initial=trained.initial_epoch)
    return found, trained, result.duration


def _champion_config(config: Config, champion: ChampionModel | None) -> Config:
    """The configuration both runs use: the champion's hyperparameters over the configuration's."""
    if champion is None or not champion.hyperparameters:
        return config
    return dataclasses.replace(config, hyperparameters={**config.hyperparameters, **champion.hyperparameters})


def evaluate_champion(
    config: Config,
    ws: chain.Workspace,
    backend: Backend,
    champion: ChampionModel,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    env: Mapping[str, str] = os.environ,
) -> Side:
    """The champion's metric with this code and data: an evaluate-only run of the contract."""
    out_dir = _fresh(ws.state_dir / COMPARE_DIR / "champion")
    record = Attempt(
        attempt=1,
        epochs=champion.epochs,
        initial_epoch=champion.epochs,
        resumed_from=None,
        outcome=REACHED,
        started_at="",
        checkpoint=champion.model_path.name,
    )
    plan = Plan(1, champion.epochs, champion.epochs, record)
    say(
        f"Evaluating the champion {champion.name} ({champion.epochs} epochs) with this code and data: "
        f"KT_EPOCHS = KT_INITIAL_EPOCH = {champion.epochs}, nothing is trained."
    )
    model = champion.model_path.absolute()  # the script runs in its code folder: never a relative path
    found, trained, seconds = _run_side(config, ws, backend, plan, out_dir, model, on_line, env)
    contract_check.check_evaluation(trained, plan)
    say(
        f"Champion {champion.name}: {config.metric} {wording.fmt_metric(found.value)} "
        f"({champion.epochs} epochs, evaluated in {seconds:.1f} s)"
    )
    return Side(found.value, champion.epochs, [], round(seconds, 3), out_dir)


def train_candidate(
    config: Config,
    ws: chain.Workspace,
    backend: Backend,
    epochs: int,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    env: Mapping[str, str] = os.environ,
) -> Side:
    """This code's model, trained from scratch to ``epochs`` (or until its time budget)."""
    out_dir = _fresh(ws.state_dir / COMPARE_DIR / "candidate")
    plan = Plan(1, epochs, 0, None)
    config = dataclasses.replace(config, threshold=1.0)  # to the champion's epochs: no stop at the target
    say(
        f"Training the candidate from scratch to {epochs} epochs "
        f"({time_budget.budget(config, env).describe()})."
    )
    found, trained, seconds = _run_side(config, ws, backend, plan, out_dir, None, on_line, env)
    stopped = slices.DEADLINE if found.stopped == slices.DEADLINE else None
    reached = trained.epochs_reached
    for text in trained.warnings:
        say(f"Warning: {text}")
    side = Side(found.value, reached, list(found.history), round(seconds, 3), out_dir, stopped)
    at = "an unknown number of" if reached is None else reached
    say(
        f"Candidate: {config.metric} {wording.fmt_metric(found.value)} after {at} epochs "
        f"({seconds:.1f} s)" + (" - stopped at its time budget" if stopped else "")
    )
    return side


def run(
    config: Config,
    repo_root: Path,
    backend: Backend,
    champion: ChampionModel | None,
    *,
    say: Say = print,
    on_line: Callable[[str], None] | None = echo_line,
    env: Mapping[str, str] = os.environ,
) -> Comparison:
    """Evaluate the champion, train the candidate to its epochs, compare (the module docstring)."""
    ws = chain.workspace(config, repo_root)
    if champion is not None and champion.metric and champion.metric != config.metric:
        raise ConfigError(
            f"The champion {champion.name} was judged by {champion.metric!r}; this "
            f"configuration's metric is {config.metric!r}.",
            hint=f"Compare by the same metric: set `metric: {champion.metric}`.",
        )
    run_config = _champion_config(config, champion)
    champion_eval = None
    if champion is not None:
        champion_eval = evaluate_champion(
            run_config, ws, backend, champion, say=say, on_line=on_line, env=env
        )
    epochs = champion.epochs if champion is not None else config.epochs
    candidate = train_candidate(run_config, ws, backend, epochs, say=say, on_line=on_line, env=env)
    return Comparison(
        config.metric, config.threshold, config.tolerance, epochs, candidate, champion, champion_eval
    )


# --------------------------------------------------------------------------- the report as data

REPORT_FORMAT = "keeptraining.pr-report/1"
MAX_HISTORY = 100_000


def to_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison's numbers (and the champion's name), for a fork's report artifact."""

    def side(s: Side | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "value": s.value,
            "epochs": s.epochs,
            "history": list(s.history),
            "duration_s": s.duration_s,
            "stopped": s.stopped,
        }

    champion = comparison.champion
    return {
        "metric": comparison.metric,
        "threshold": comparison.threshold,
        "tolerance": comparison.tolerance,
        "epochs_asked": comparison.epochs_asked,
        "candidate": side(comparison.candidate),
        "champion": None
        if champion is None
        else {
            "name": champion.name,
            "epochs": champion.epochs,
            "value": champion.value,
            "evaluated": side(comparison.champion_eval),
        },
    }


def _fraction(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"{where} is not a fraction in [0, 1]")
    return float(value)


def _count(value: Any, where: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
        raise ValueError(f"{where} is not a number of epochs")
    return value


def _side(data: Any, where: str) -> Side:
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not an object")
    history = data.get("history")
    if not isinstance(history, list) or len(history) > MAX_HISTORY:
        raise ValueError(f"{where}.history is not a list of at most {MAX_HISTORY} values")
    seconds = data.get("duration_s")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e7:
        raise ValueError(f"{where}.duration_s is not a number of seconds")
    stopped = data.get("stopped")
    if stopped not in (None, slices.DEADLINE):
        raise ValueError(f"{where}.stopped is neither null nor {slices.DEADLINE!r}")
    return Side(
        _fraction(data.get("value"), f"{where}.value"),
        _count(data.get("epochs"), f"{where}.epochs", optional=True),
        [_fraction(v, f"{where}.history") for v in history],
        float(seconds),
        Path(),
        stopped,
    )


def from_dict(data: Any) -> Comparison:
    """A comparison read back from an untrusted report: every field typed and bounded (ValueError)."""
    if not isinstance(data, dict):
        raise ValueError("the comparison is not an object")
    metric = data.get("metric")
    if not isinstance(metric, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", metric):
        raise ValueError("metric is not a metric's name")
    threshold = _fraction(data.get("threshold"), "threshold")
    tolerance = _fraction(data.get("tolerance"), "tolerance")
    asked = _count(data.get("epochs_asked"), "epochs_asked")
    assert asked is not None
    candidate = _side(data.get("candidate"), "candidate")
    raw = data.get("champion")
    champion = champion_eval = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise ValueError("champion is not an object")
        name = raw.get("name")
        if not isinstance(name, str) or len(name) > 200:
            raise ValueError("champion.name is not a short text")
        value = raw.get("value")
        champion = ChampionModel(
            Path(),
            _count(raw.get("epochs"), "champion.epochs") or 0,
            name=name,
            value=None if value is None else _fraction(value, "champion.value"),
        )
        champion_eval = _side(raw.get("evaluated"), "champion.evaluated")
    return Comparison(metric, threshold, tolerance, asked, candidate, champion, champion_eval)
