"""The ledger round-trips, writes atomically and refuses what it cannot read."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keeptraining.errors import LedgerError
from keeptraining.state import ledger


def sample() -> ledger.Ledger:
    return ledger.Ledger(
        chain={"threshold": 0.9, "metric": "accuracy", "commit": "abc1234"},
        attempts=[
            ledger.Attempt(
                attempt=1,
                epochs=10,
                initial_epoch=0,
                resumed_from=None,
                outcome=ledger.BELOW,
                metric=0.8,
                epochs_reached=10,
                epochs_trained=10,
                history=[0.5, 0.8],
                checkpoint="model.keras",
                duration_s=3.2,
            ),
            ledger.Attempt(
                attempt=2,
                epochs=20,
                initial_epoch=10,
                resumed_from="attempt-001/model.keras",
                outcome=ledger.REACHED,
                metric=0.91,
                epochs_reached=17,
                epochs_trained=7,
            ),
        ],
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


def test_schema_lists_exactly_the_record_fields() -> None:
    """Adding an optional ledger field is one dataclass field plus one schema line; both or neither."""
    record = ledger.schema()["properties"]["attempts"]["items"]
    assert set(record["properties"]) == set(ledger.Attempt.__dataclass_fields__)
    assert set(record["required"]) == {
        name
        for name, f in ledger.Attempt.__dataclass_fields__.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def hostile(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A state folder whose ledger is the sample with ``change`` applied."""
    state = tmp_path / "state"
    ledger.save(state, sample())
    data = json.loads((state / "ledger.json").read_text())
    change(data)
    (state / "ledger.json").write_text(json.dumps(data))
    return state


def set_at(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (set_at("attempts", value=[1]), "attempts[0]: 1 has the wrong type"),
        (set_at("chain", value=[1, 2]), "chain: [1, 2] has the wrong type"),
        (set_at("attempts", 0, "attempt", value="1"), "attempts[0].attempt: '1' has the wrong type"),
        (set_at("attempts", 0, "metric", value="x"), "attempts[0].metric: 'x' has the wrong type"),
        (
            set_at("attempts", 0, "outcome", value="banana"),
            "attempts[0].outcome: 'banana' is not a known value",
        ),
        (set_at("attempts", 0, "future_field", value=1), "unknown key(s) 'future_field'"),
        (set_at("attempts", 0, "history", value=[0.5, 1e9]), "attempts[0].history[1]"),
        (set_at("attempts", 0, "epochs", value=10**30), "attempts[0].epochs"),
        (set_at("attempts", 1, "attempt", value=1), "attempt 1 follows attempt 1"),
        (
            set_at("attempts", 0, "checkpoint", value="../../victim.txt"),
            "attempts[0].checkpoint: '../../victim.txt' is not a relative path inside",
        ),
        (set_at("attempts", 0, "checkpoint", value="/etc/passwd"), "attempts[0].checkpoint"),
        (set_at("attempts", 1, "resumed_from", value="../outside/model.keras"), "attempts[1].resumed_from"),
        (
            set_at("attempts", 0, "params", value={"a": {"b": {"c": 1}}}),
            "attempts[0].params.a.b: {'c': 1} has the wrong type",
        ),
        (set_at("attempts", 0, "run", value={"url": "x" * 5000}), "attempts[0].run.url"),
        (set_at("chain", "commit", value="$(id)"), "chain.commit"),
    ],
)
def test_hostile_ledger_is_refused_before_anything_is_used(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    state = hostile(tmp_path, change)
    with pytest.raises(LedgerError) as info:
        ledger.load(state)
    assert expected in str(info.value)
    assert len(str(info.value)) < 600, "a bad value is quoted briefly"
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100000 + "]" * 100000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"version": 1, "chain": {}, "attempts": [' + "[" * 50 + "]" * 50 + "]}",
    ],
)
def test_deeply_nested_ledger_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "ledger.json").write_text(text)
    with pytest.raises(LedgerError, match=r"nests|not a keeptraining ledger|does not fit"):
        ledger.load(tmp_path)


def test_checkpoint_behind_a_symlinked_folder_is_refused_and_nothing_is_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("host secret")
    state = hostile(tmp_path, set_at("attempts", 0, "checkpoint", value="sub/victim.txt"))
    (state / "attempt-001").mkdir()
    (state / "attempt-001" / "sub").symlink_to(outside)
    with pytest.raises(LedgerError, match="'sub' on the way is not a folder"):
        ledger.load(state)
    assert (outside / "victim.txt").read_text() == "host secret"


@pytest.mark.parametrize("target", ["file", "fifo", "dir"])
def test_checkpoint_that_is_not_a_regular_file_is_refused(tmp_path: Path, target: str) -> None:
    state = hostile(tmp_path, lambda data: None)
    folder = state / "attempt-001"
    folder.mkdir()
    outside = tmp_path / "host.txt"
    outside.write_text("host")
    if target == "file":
        (folder / "model.keras").symlink_to(outside)
    elif target == "fifo":
        os.mkfifo(folder / "model.keras")
    else:
        (folder / "model.keras").mkdir()
    with pytest.raises(LedgerError, match="only a regular file"):
        ledger.load(state)


def test_symlinked_attempt_folder_is_refused(tmp_path: Path) -> None:
    state = hostile(tmp_path, lambda data: None)
    (tmp_path / "elsewhere").mkdir()
    (state / "attempt-001").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LedgerError, match="attempt-001 is a symbolic link"):
        ledger.load(state)


def test_ledger_that_is_a_symlink_or_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text(json.dumps(sample().to_dict()))
    (tmp_path / "ledger.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(LedgerError, match="is a symbolic link"):
        ledger.load(tmp_path)
    (tmp_path / "ledger.json").unlink()
    os.mkfifo(tmp_path / "ledger.json")
    with pytest.raises(LedgerError, match="is a FIFO"):
        ledger.load(tmp_path)  # returns at once: a FIFO is never opened for reading


@pytest.mark.parametrize("kind", ["file", "dangling", "loop"])
def test_state_folder_that_is_not_a_folder_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    if kind == "file":
        state.write_text("x")
    elif kind == "dangling":
        state.symlink_to(tmp_path / "nowhere")
    else:
        state.symlink_to(tmp_path / "state")
    with pytest.raises(LedgerError, match="not a folder"):
        ledger.load(state)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 KB tmpfs: writes fail with ENOSPC once it is full (needs root, as the test machines are)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_the_previous_ledger(tiny_disk: Path) -> None:
    ledger.save(tiny_disk, sample())
    before = (tiny_disk / "ledger.json").read_bytes()
    (tiny_disk / "filler").write_bytes(b"x" * (48 * 1024 - len(before) - 4096))
    big = sample()
    big.attempts[0].history = [0.5] * 20000
    with pytest.raises(LedgerError, match=r"No space left on device.*previous ledger is kept"):
        ledger.save(tiny_disk, big)
    assert (tiny_disk / "ledger.json").read_bytes() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "ledger.json"]


def test_read_only_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "ro"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(state)], check=True)
    try:
        with pytest.raises(LedgerError, match="Read-only file system"):
            ledger.save(state, sample())
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
