"""The data cache (data_cache.py): where it is, its actions/cache keys, and what is trusted of it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest

from keeptraining.cli import main
from keeptraining.config import settings as config_mod
from keeptraining.state import data_cache
from keeptraining.state.data_cache import DATA, IN_USE, MANIFEST, Session

COMMIT = "c0ffee" + "0" * 34
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache",
    "GITHUB_REPOSITORY": "acme/model",
    "GITHUB_SHA": COMMIT,
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "2",
}
TOKEN = "ghs_dataCacheSecretToken123"


def config(**overrides: object) -> config_mod.Config:
    return config_mod.resolve(dict(overrides))


def session(root: Path, *, secrets: tuple[str, ...] = ()) -> tuple[Session, list[str]]:
    said: list[str] = []
    return Session(root, [s.encode() for s in secrets], said.append), said


def write(root: Path, rel: str, data: bytes) -> Path:
    path = root / DATA / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def manifest(root: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((root / MANIFEST).read_text())
    return loaded


def test_the_folder_is_the_state_folders_locally_and_one_per_chain_in_the_runners_tool_cache(
    tmp_path: Path,
) -> None:
    assert data_cache.folder(config(), tmp_path, {}) == tmp_path / "data-cache"
    assert data_cache.folder(config(cache=False), tmp_path, {}) is None
    assert (
        data_cache.folder(config(), tmp_path, GITHUB)
        == Path("/opt/hostedtoolcache/keeptraining-data/acme/model") / COMMIT[:12]
    )
    chain = "d" * 40
    assert (
        data_cache.folder(config(), tmp_path, {**GITHUB, "KT_INPUT_COMMIT": chain})
        == Path("/opt/hostedtoolcache/keeptraining-data/acme/model") / chain[:12]
    )
    for broken in ({"GITHUB_SHA": "main"}, {"GITHUB_REPOSITORY": "acme/.."}, {"RUNNER_TOOL_CACHE": ""}):
        assert data_cache.folder(config(), tmp_path, {**GITHUB, **broken}) is None


def test_the_plan_keys_each_run_attempt_and_restores_the_chains_newest_entry_else_any(tmp_path: Path) -> None:
    env = {**GITHUB, "RUNNER_TOOL_CACHE": str(tmp_path / "tools")}
    where = tmp_path / "tools" / "keeptraining-data" / "acme" / "model" / COMMIT[:12]
    planned = data_cache.plan(config(), tmp_path, env)
    assert planned == {
        "path": f"{where / MANIFEST}\n{where / DATA}",  # the manifest first in the archive
        "key": f"keeptraining-data-v1-{COMMIT}-4242-2",
        "restore-keys": f"keeptraining-data-v1-{COMMIT}-\nkeeptraining-data-v1-",
    }
    assert data_cache.plan(config(cache=False), tmp_path, env) == {"path": "", "key": "", "restore-keys": ""}


def test_the_plan_removes_other_chains_folders_unused_for_a_week(tmp_path: Path) -> None:
    env = {**GITHUB, "RUNNER_TOOL_CACHE": str(tmp_path)}
    chains = tmp_path / "keeptraining-data" / "acme" / "model"
    old, recent, current = (chains / name for name in ("old", "recent", COMMIT[:12]))
    for folder in (old, recent, current):
        (folder / DATA).mkdir(parents=True)
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    os.utime(current, (week_ago, week_ago))
    data_cache.plan(config(), tmp_path, env)
    assert sorted(p.name for p in chains.iterdir()) == sorted([recent.name, current.name])


def test_libraries_are_pointed_into_the_cache_unless_already_set() -> None:
    env = data_cache.library_env("/workspace/cache", lambda name: name == "HF_HOME")
    assert env["KERAS_HOME"] == "/workspace/cache/keras"
    assert env["XDG_CACHE_HOME"] == "/workspace/cache/xdg"
    assert env["TORCH_HOME"] == "/workspace/cache/torch"
    assert env["KT_CACHE_DIR"] == "/workspace/cache"
    assert "HF_HOME" not in env


def test_what_an_attempt_downloads_is_recorded_and_verified_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    root = tmp_path / "cache"
    first, said = session(root)
    first.open()
    assert (root / IN_USE).exists()
    write(root, "keras/datasets/mnist.npz", b"pixels" * 1000)
    (root / DATA / "huggingface" / "hub").mkdir(parents=True)
    os.symlink("../../keras/datasets/mnist.npz", root / DATA / "huggingface" / "hub" / "link")
    assert first.close(complete=True) is True
    assert not (root / IN_USE).exists()
    recorded = manifest(root)
    assert recorded["files"] == {
        "keras/datasets/mnist.npz": {"size": 6000, "sha256": hashlib.sha256(b"pixels" * 1000).hexdigest()}
    }
    assert recorded["links"] == {"huggingface/hub/link": "../../keras/datasets/mnist.npz"}
    second, said = session(root)
    second.open()
    assert "1 file, 5.9 KB checked" in said[0]
    assert second.close(complete=True) is False
    written = re.findall(r"^data-cache<<(\S+)\n(.*?)\n\1$", outputs.read_text(), re.MULTILINE)
    assert [value for _, value in written] == ["changed", "unchanged"]  # the action saves the first only
    assert step_outputs(outputs) == {"data-cache": "unchanged"}


@pytest.mark.parametrize("damage", ["changed", "truncated", "missing", "manifest", "relinked"])
def test_a_cache_that_does_not_match_its_manifest_is_discarded_with_a_warning(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    first, _ = session(root)
    first.open()
    data = write(root, "keras/datasets/a.npz", b"0123456789")
    write(root, "keras/datasets/b.npz", b"kept only if all is well")
    (root / DATA / "hub").mkdir()
    os.symlink("../keras", root / DATA / "hub" / "ref")
    first.close(complete=True)
    if damage == "changed":
        data.write_bytes(b"9876543210")
    elif damage == "truncated":
        data.write_bytes(b"01234")
    elif damage == "missing":
        data.unlink()
    elif damage == "manifest":
        (root / MANIFEST).write_text('{"format": 1, "files": {"a": {"size": 1, "sha256": "?"}}, "links": {}}')
    else:
        (root / DATA / "hub" / "ref").unlink()
        os.symlink("../keras/datasets", root / DATA / "hub" / "ref")
    second, said = session(root)
    second.open()
    assert "damaged" in capsys.readouterr().err
    assert list((root / DATA).iterdir()) == [] and not (root / MANIFEST).exists()
    assert "0 files, 0 bytes checked" in said[0]


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "a/../../outside.txt"])
def test_a_manifest_naming_a_path_out_of_the_cache_is_not_believed(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    (root / DATA).mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the cache's")
    sha = hashlib.sha256(b"not the cache's").hexdigest()
    (root / MANIFEST).write_text(
        json.dumps({"format": 1, "files": {name: {"size": 15, "sha256": sha}}, "links": {}})
    )
    opened, said = session(root)
    opened.open()
    assert "its manifest is not valid" in capsys.readouterr().err
    assert outside.read_text() == "not the cache's"
    assert "0 files" in said[0]


def test_files_the_manifest_does_not_know_are_kept_as_pre_seeded(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    write(root, "keras/datasets/cifar-10-batches-py.tar.gz", b"seeded by hand")
    opened, said = session(root)
    opened.open()
    assert "1 file(s) it had not recorded were kept (pre-seeded)" in said[0]
    assert opened.close(complete=True) is True  # now recorded: the next attempt checks it
    assert manifest(root)["files"] == {
        "keras/datasets/cifar-10-batches-py.tar.gz": {
            "size": 14,
            "sha256": hashlib.sha256(b"seeded by hand").hexdigest(),
        }
    }


def test_after_a_killed_attempt_what_it_left_unrecorded_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first, _ = session(root)
    first.open()
    write(root, "keras/datasets/whole.npz", b"complete")
    first.close(complete=True)
    killed, _ = session(root)
    killed.open()
    write(root, "keras/datasets/half.npz", b"half writ")  # then SIGKILL: close() never runs
    assert (root / IN_USE).exists()
    after, said = session(root)
    after.open()
    assert sorted(p.name for p in (root / DATA / "keras" / "datasets").iterdir()) == ["whole.npz"]
    assert "cut short" in said[0]


def test_a_training_stopped_at_its_timeout_leaves_only_what_was_there_before(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first, _ = session(root)
    first.open()
    kept = write(root, "keras/kept.npz", b"before")
    first.close(complete=True)
    second, said = session(root)
    second.open()
    write(root, "keras/new.npz", b"half")
    time.sleep(0.01)
    kept.write_bytes(b"rewrote")
    assert second.close(complete=False) is True
    assert [p.name for p in (root / DATA / "keras").iterdir()] == []  # the changed file goes too
    assert manifest(root)["files"] == {}
    assert "cut short" in said[-1]


def test_links_out_of_the_cache_special_files_and_secrets_are_removed_never_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    opened, _ = session(root, secrets=(TOKEN,))
    opened.open()
    os.symlink("/etc/passwd", root / DATA / "absolute")
    os.symlink("../../outside", root / DATA / "escaping")
    os.mkfifo(root / DATA / "fifo")
    # the token across a read-chunk boundary: found all the same
    write(root, "leak.bin", b"x" * (data_cache._CHUNK - 5) + TOKEN.encode() + b"tail")
    write(root, "clean.bin", b"no secret here")
    opened.close(complete=True)
    assert sorted(p.name for p in (root / DATA).iterdir()) == ["clean.bin"]
    assert manifest(root)["files"] == {
        "clean.bin": {"size": 14, "sha256": hashlib.sha256(b"no secret here").hexdigest()}
    }
    warnings = capsys.readouterr().err
    assert "absolute is a link out of the cache" in warnings and "escaping is a link out" in warnings
    assert "fifo is not a regular file" in warnings
    assert "leak.bin holds one of keeptraining's secrets" in warnings and TOKEN not in warnings


def test_a_cache_that_cannot_be_used_is_a_warning_never_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "data-cache").symlink_to(tmp_path)  # a restored state could make it a link
    assert data_cache.open_session(config(), state, {}, say=print) is None
    assert "cannot be used" in capsys.readouterr().err
    assert data_cache.open_session(config(cache=False), state, {}) is None


def test_describe_tells_where_to_pre_seed(tmp_path: Path) -> None:
    lines = data_cache.describe(config(), tmp_path, {})
    assert lines[0] == f"Data cache: {tmp_path / 'data-cache' / DATA} (0 recorded files)."
    assert f"  KERAS_HOME={tmp_path / 'data-cache' / DATA / 'keras'}" in lines
    off = data_cache.describe(config(cache=False), tmp_path, {})
    assert off == ["The data cache is off (`cache: false`)."]


def step_outputs(path: Path) -> dict[str, str]:
    """What a step wrote to $GITHUB_OUTPUT (name<<delimiter blocks)."""
    found = re.findall(r"^([\w-]+)<<(\S+)\n(.*?)\n?\2$", path.read_text(), re.MULTILINE | re.DOTALL)
    return {name: value for name, _, value in found}


def test_the_action_step_writes_the_cache_inputs_and_never_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "ml_code").mkdir(parents=True)
    outputs = tmp_path / "outputs"
    for name, value in {
        **GITHUB,
        "RUNNER_TOOL_CACHE": str(tmp_path / "tools"),
        "GITHUB_OUTPUT": str(outputs),
        "KT_INPUT_STATE_DIR": ".keeptraining",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["data-cache", "--repo", str(repo)]) == 0
    written = step_outputs(outputs)
    assert written["key"] == f"keeptraining-data-v1-{COMMIT}-4242-2"
    assert written["path"].splitlines()[0].endswith(f"acme/model/{COMMIT[:12]}/manifest.json")
    outputs.write_text("")
    (repo / ".keeptraining.yml").write_text("cache: maybe\n")  # the attempt step reports it; no restore
    assert main(["data-cache", "--repo", str(repo)]) == 0
    assert step_outputs(outputs) == {"path": "", "key": "", "restore-keys": ""}
    monkeypatch.delenv("GITHUB_ACTIONS")
    (repo / ".keeptraining.yml").write_text("")
    assert main(["data-cache", "--repo", str(repo)]) == 0
    assert f"Data cache: {repo / '.keeptraining' / 'data-cache' / 'data'}" in capsys.readouterr().out


def test_library_settings_and_font_caches_are_no_data_and_change_nothing(tmp_path: Path) -> None:
    """keras.json and matplotlib's font list appear in every run of a script that downloads nothing:
    not recorded, not saved, and the cache reads as unchanged."""
    root = tmp_path / "cache"
    first, said = session(root)
    first.open()
    write(root, "keras/datasets/digits.npz", b"pixels" * 10)
    assert first.close(complete=True) is True
    second, said = session(root)
    second.open()
    write(root, "keras/keras.json", b'{"backend": "tensorflow"}')
    write(root, "xdg/matplotlib/fontlist-v390.json", b"{}")
    assert second.close(complete=True) is False
    assert said[-1] == "Data cache: 1 file, 60 bytes."
    files = manifest(root)["files"]
    assert isinstance(files, dict) and list(files) == ["keras/datasets/digits.npz"]
    assert not (root / DATA / "keras" / "keras.json").exists()


# --- hostile inputs, round three (issue 25, items 1 and 3) ------------------------------------


def test_a_chain_of_links_that_each_look_inside_but_together_reach_the_host_is_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    opened, _ = session(root)
    opened.open()
    data = root / DATA
    os.symlink(".", data / "b")
    os.symlink("b/..", data / "l1")
    for i in range(2, 8):
        os.symlink(f"l{i - 1}/..", data / f"l{i}")
    os.symlink("l7/etc", data / "hostetc")
    (data / "hf").mkdir()
    write(root, "hf/blobs/abc", b"weights")
    os.symlink("blobs/abc", data / "hf" / "model.bin")  # a Hugging Face style link: kept
    opened.close(complete=True)
    links = manifest(root)["links"]
    assert links == {"b": ".", "hf/model.bin": "blobs/abc"}
    assert not os.path.lexists(data / "hostetc") and not os.path.lexists(data / "l1")
    assert "hostetc is a link that leads out of the cache" in capsys.readouterr().err


def test_setuid_bits_are_dropped_and_a_link_naming_a_secret_is_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    opened, said = session(root, secrets=(TOKEN,))
    opened.open()
    tool = write(root, "tool", b"#!/bin/sh\n")
    tool.chmod(0o6755)
    write(root, "x", b"data")
    os.symlink(f"x-{TOKEN}", root / DATA / "leak")  # dangling, inside, but its text is the token
    opened.close(complete=True)
    assert os.stat(tool).st_mode & 0o7777 == 0o755
    assert "leak" not in str(manifest(root)["links"]) and not os.path.lexists(root / DATA / "leak")
    err = capsys.readouterr().err
    assert "leak is a link whose target holds one of keeptraining's secrets" in err and TOKEN not in err
    assert "setuid/setgid bit of tool was dropped" in said[-1]


def test_the_registry_password_is_one_of_the_secrets_the_cache_looks_for() -> None:
    assert data_cache._secrets({"KT_REGISTRY_PASSWORD": "registry-pass-123"}) == [b"registry-pass-123"]


def test_a_fifo_manifest_does_not_hang_and_a_linked_one_is_not_read_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    write(root, "f", b"data")
    os.mkfifo(root / MANIFEST)
    opened, _ = session(root)
    opened.open()  # would block forever opening the FIFO
    assert "manifest cannot be read" in capsys.readouterr().err
    opened.close(complete=True)
    assert (root / MANIFEST).is_file() and not (root / MANIFEST).is_symlink()
    secret = tmp_path / "host-file"
    secret.write_text('{"format": 1, "files": {}, "links": {}}')
    (root / MANIFEST).unlink()
    os.symlink(secret, root / MANIFEST)
    again, _ = session(root)
    again.open()
    assert "manifest cannot be read" in capsys.readouterr().err
    assert secret.read_text().startswith('{"format": 1')  # never written through either


def test_an_in_use_link_to_a_file_outside_is_never_written_through(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / DATA).mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    os.symlink(victim, root / IN_USE)
    opened, _ = session(root)
    opened.open()
    assert victim.read_text() == "keep me"
    assert (root / IN_USE).is_file() and not (root / IN_USE).is_symlink()
    opened.close(complete=True)
    assert victim.read_text() == "keep me" and not os.path.lexists(root / IN_USE)


def test_a_path_whose_name_holds_a_secret_is_removed_without_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the repeat pass: names, like link targets, were never scanned."""
    root = tmp_path / "cache"
    opened, _ = session(root, secrets=(TOKEN,))
    opened.open()
    write(root, f"keras/{TOKEN}.npz", b"data")
    (root / DATA / f"dir-{TOKEN}").mkdir()
    write(root, "kept.bin", b"ok")
    opened.close(complete=True)
    assert sorted(p.name for p in (root / DATA).rglob("*")) == ["kept.bin", "keras"]
    assert TOKEN not in (root / MANIFEST).read_text()
    err = capsys.readouterr().err
    assert "holds one of keeptraining's secrets" in err and TOKEN not in err
