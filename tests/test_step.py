"""One training step (engine/step.py) for the chain and for parallel slots: the same start line, time
budget, network warning, contract and record on every way out.

Fast tier: the backend here is a stand-in object (no process), so what is checked is the step's own
bookkeeping; the real processes are tests/test_chain_local.py's and tests/test_parallel.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakes import fake_repo
from keeptraining.backends.base import TrainRequest, TrainResult
from keeptraining.config import settings as config_mod
from keeptraining.contract import env as kt_env
from keeptraining.engine import chain, parallel, rounds, search, step
from keeptraining.errors import RestoreError, TrainingError
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.folder import workspace
from keeptraining.state.ledger import Ledger

SEARCH = (
    "strategy: search\nsearch:\n  seed: 1\n  space:\n    learning_rate: {type: float, low: 0.01, high: 0.1}\n"
)


class StandIn:
    """A backend that writes metrics.json itself (``accuracy`` after the epochs asked), or fails as told."""

    def __init__(
        self, name: str = "local", *, accuracy: float = 0.5, fail: BaseException | None = None
    ) -> None:
        self.name, self.accuracy, self.fail = name, accuracy, fail
        self.requests: list[TrainRequest] = []

    def run(self, request: TrainRequest) -> TrainResult:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        epochs = int(request.env[kt_env.EPOCHS])
        (request.output_dir / "metrics.json").write_text(
            json.dumps(
                {
                    "accuracy": self.accuracy,
                    "epochs": epochs,
                    "initial_epoch": 0,
                    "history": {"val_accuracy": [self.accuracy] * epochs},
                }
            )
        )
        return TrainResult(exit_code=0, duration=0.25, output="")


def _config(repo: Path, extra: str = "", **overrides: Any) -> config_mod.Config:
    fake_repo(repo, "threshold: 0.9\nepochs: 2\nadapt: none\n" + extra)
    return config_mod.resolve(overrides, repo / ".keeptraining.yml")


def _slot(tmp_path: Path, backend: StandIn, extra: str = "", **overrides: Any) -> tuple[Any, Path]:
    config = _config(tmp_path / "repo", SEARCH + extra, **overrides)
    ws = workspace(config, tmp_path / "repo")
    job = rounds.plan_round(config, Ledger())[0]
    folder = tmp_path / "slot-1"
    return (config, ws, job, folder), folder


def test_a_slot_and_an_attempt_say_the_same_start_line_with_the_time_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path / "repo")
    chain.run_attempt(config, tmp_path / "repo", StandIn(), on_line=None)
    (cfg, ws, job, folder), _ = _slot(tmp_path / "p", StandIn())
    parallel.train_slot(cfg, ws, StandIn(), Ledger(), job, 1, folder, round_no=1, on_line=None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("== ")]
    assert lines[0].startswith("== Attempt 1/10: epochs 0 -> 2 from scratch on local; training time: timeout")
    assert lines[1].startswith("== Round 1, slot 1: attempt 1, new trial 1")
    assert "on local; training time: timeout" in lines[1]


def test_a_slot_interrupted_records_its_duration_and_fails(tmp_path: Path) -> None:
    (config, ws, job, folder), _ = _slot(tmp_path, StandIn())
    with pytest.raises(KeyboardInterrupt):
        parallel.train_slot(
            config,
            ws,
            StandIn(fail=KeyboardInterrupt()),
            Ledger(),
            job,
            1,
            folder,
            round_no=1,
            on_line=None,
            say=lambda _line: None,
        )
    record = ledger_mod.load(folder).attempts[0]
    assert record.outcome == "failed" and record.error == step.INTERRUPTED
    assert record.duration_s is not None and record.duration_s >= 0.0


def test_a_slot_whose_training_fails_is_recorded_failed_with_one_line(tmp_path: Path) -> None:
    (config, ws, job, folder), _ = _slot(tmp_path, StandIn())
    failing = StandIn(fail=TrainingError("The image\nbuild failed."))
    record, error, _tail = parallel.train_slot(
        config, ws, failing, Ledger(), job, 1, folder, round_no=1, on_line=None, say=lambda _line: None
    )
    assert isinstance(error, TrainingError)
    assert record.outcome == "failed" and record.error == "The image build failed."
    assert ledger_mod.load(folder).attempts[0].error == "The image build failed."


def test_a_slot_warns_that_the_local_backend_cannot_keep_network_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config, ws, job, folder), _ = _slot(tmp_path, StandIn(), "network: none\n")
    parallel.train_slot(config, ws, StandIn(), Ledger(), job, 1, folder, round_no=1, on_line=None)
    assert "`network: none` applies to the docker backend only" in capsys.readouterr().err


def test_a_slot_and_an_attempt_hand_the_script_the_same_contract(tmp_path: Path) -> None:
    config = _config(tmp_path / "repo", "hyperparameters: {dropout: 0.2, augment: true}\n")
    attempt_backend = StandIn()
    chain.run_attempt(config, tmp_path / "repo", attempt_backend, on_line=None, say=lambda _line: None)
    (cfg, ws, job, folder), _ = _slot(tmp_path / "p", StandIn(), "hyperparameters: {dropout: 0.2}\n")
    slot_backend = StandIn()
    parallel.train_slot(
        cfg, ws, slot_backend, Ledger(), job, 1, folder, round_no=1, on_line=None, say=lambda _line: None
    )
    attempt_env, slot_env = attempt_backend.requests[0].env, slot_backend.requests[0].env
    for name in (
        kt_env.EPOCHS,
        kt_env.INITIAL_EPOCH,
        kt_env.THRESHOLD,
        kt_env.METRIC,
        kt_env.ATTEMPT,
        kt_env.ADAPT,
    ):
        assert name in attempt_env and name in slot_env
    assert attempt_env["KT_HP_AUGMENT"] == "true" and attempt_env["KT_HP_DROPOUT"] == "0.2"
    assert slot_env["KT_HP_LEARNING_RATE"] == search.hp_env(job.params)["KT_HP_LEARNING_RATE"]
    assert attempt_backend.requests[0].budget is not None and slot_backend.requests[0].budget is not None


def test_every_record_builder_records_the_same_params(tmp_path: Path) -> None:
    """The attempt that trained, the one that failed before training and the one whose state was not
    restored record the same params (record_unrestored used to leave out network and cache)."""
    config = _config(tmp_path / "repo", "network: none\n")
    trained = chain.run_attempt(config, tmp_path / "repo", StandIn(), on_line=None, say=lambda _line: None)
    failed = chain.record_failure(config, tmp_path / "repo", TrainingError("no engine"), backend="local")
    unrestored = chain.record_unrestored(
        config, tmp_path / "repo", RestoreError("gone", hint="Re-run."), attempt=3, say=lambda _line: None
    )
    keys = {"backend", "resume", "hyperparameters", "network", "cache"}
    for report in (trained, failed, unrestored):
        assert set(report.record.params) == keys, report.record.params
        assert report.record.params["network"] == "none"
    assert unrestored.record.error == "gone Re-run." and unrestored.record.outcome == "failed"


def test_one_helper_flattens_an_error_for_the_ledger() -> None:
    long = "x" * (step.ERROR_LIMIT + 50)
    assert step.error_text("a\n  b\r\n\tc") == "a b c"
    assert len(step.error_text(long)) == step.ERROR_LIMIT
    assert step.error_text(TrainingError("exited\x1b[31m  3")) == "exited [31m 3"
