"""The ledger round-trips, writes atomically and refuses what it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keeptraining import ledger
from keeptraining.errors import LedgerError


def sample() -> ledger.Ledger:
    return ledger.Ledger(
        chain={"threshold": 0.9, "metric": "accuracy", "commit": "abc123"},
        attempts=[ledger.Attempt(attempt=1, epochs=10, initial_epoch=0, resumed_from=None,
                                 outcome=ledger.BELOW, metric=0.8, epochs_reached=10, epochs_trained=10,
                                 history=[0.5, 0.8], checkpoint="model.keras", duration_s=3.2),
                  ledger.Attempt(attempt=2, epochs=20, initial_epoch=10,
                                 resumed_from="attempt-001/model.keras", outcome=ledger.REACHED,
                                 metric=0.91, epochs_reached=17, epochs_trained=7)],
    )


def test_round_trip(tmp_path: Path) -> None:
    ledger.save(tmp_path, sample())
    loaded = ledger.load(tmp_path)
    assert loaded == sample()
    assert loaded.best() is not None and loaded.best().attempt == 2  # type: ignore[union-attr]
    assert loaded.total_epochs_trained() == 17


def test_missing_ledger_is_an_empty_chain(tmp_path: Path) -> None:
    assert ledger.load(tmp_path / "nothing") == ledger.Ledger()


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    ledger.save(tmp_path, sample())
    ledger.save(tmp_path, sample())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]


def test_unknown_record_fields_are_ignored_for_forward_compatibility(tmp_path: Path) -> None:
    ledger.save(tmp_path, sample())
    data = json.loads((tmp_path / "ledger.json").read_text())
    data["attempts"][0]["future_field"] = 1
    (tmp_path / "ledger.json").write_text(json.dumps(data))
    assert ledger.load(tmp_path).attempts[0].metric == 0.8


@pytest.mark.parametrize(("text", "expected"), [
    ("{broken", "Cannot read the chain ledger"),
    ("[]", "is not a keeptraining ledger"),
    ('{"version": 99, "attempts": []}', "is not a keeptraining ledger"),
    ('{"version": 1, "attempts": [{"attempt": 1}]}', "malformed attempt record"),
])
def test_corrupt_ledger_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "ledger.json").write_text(text)
    with pytest.raises(LedgerError, match=expected):
        ledger.load(tmp_path)
