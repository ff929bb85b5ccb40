"""End to end: the data cache through README's workflow under act, against GitHub in a box.

A consumer's Keras script downloads its data with keras.utils.get_file from a local HTTP server
(``network: host`` in its config). Attempt 1 downloads it and the action saves the data cache with
the real actions/cache into the box's cache service; attempt 2 runs as on a fresh runner (nothing of
attempt 1 left on the machine) and restores it: the server sees one download in the chain, and
neither the chain-state artifact nor the log carries the data.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TrainingImage
from services.act_driver import consumer_repo, init_repo, keeptraining_action, readme_workflow
from services.smtp_server import Certs, SmtpTestServer
from test_data_download import SCRIPT, DataServer, tiny_npz
from test_e2e_act import FULL_NAME, box_chain, certs, official_actions, smtp, state_files  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

CONFIG = "network: host\nepochs: 1\nepoch_step: 1\nmax_attempts: 2\n"
_CACHE_FOLDER = re.compile(r"Data cache: [^\n]*? checked[^\n]* \((/[^)\n]+)\)\.")


def test_the_data_cache_is_saved_after_attempt_1_and_restored_in_attempt_2(
    tmp_path: Path,
    smtp: SmtpTestServer,
    certs: Certs,
    training_image: TrainingImage,
) -> None:
    server = DataServer("127.0.0.1")
    try:
        repo = consumer_repo(
            tmp_path / "consumer",
            training_image.base_image,
            workflow=readme_workflow(),
            script=SCRIPT.format(url=server.url),
            config=CONFIG,
        )
        (repo / "Dockerfile").write_text(f"FROM {training_image.tag}\n")  # Keras, built here already
        head = init_repo(repo, FULL_NAME)
        action = keeptraining_action(tmp_path / "keeptraining")
        with box_chain(repo, tmp_path / "work", smtp, certs, local_actions=action) as chain:
            chain.push()
            first = chain.step()
            assert first is not None
            assert first.returncode == 0, first.log[-4000:]
            found = _CACHE_FOLDER.search(first.log)
            assert found, first.log[-4000:]
            folder = Path(found.group(1))
            assert (folder / "data" / "keras" / "datasets" / "tiny.npz").read_bytes() == tiny_npz()
            key = f"keeptraining-data-v1-{head}-{first.run_id}-1"
            assert [e.key for e in chain.box.results.caches.saved()] == [key]
            shutil.rmtree(folder)  # attempt 2 runs on a fresh runner
            second = chain.step()
            assert second is not None
            assert second.returncode == 0, second.log[-4000:]
            assert f"Cache hit for restore-key: {key}" in second.log
            assert "Cache restored successfully" in second.log
            assert len(server.downloads) == 1  # once in the chain
            assert "Downloading data from" in first.log and "Downloading data from" not in second.log
            assert second.outputs["chain-status"] == "exhausted"
            # Nothing new: attempt 2 saves no second entry; its restore matched attempt 1's.
            assert [e.key for e in chain.box.results.caches.saved()] == [key]
            assert [lookup.matched for lookup in chain.box.results.caches.lookups] == [None, key]
            (entry,) = chain.box.results.caches.saved()
            archive = tmp_path / "cache.tar"
            archive.write_bytes(chain.box.results.caches.content(entry))
            listed = subprocess.run(
                ["tar", "-tf", str(archive)], capture_output=True, text=True, check=True
            ).stdout.split()
            assert listed[0].endswith("/manifest.json")  # first: a restore cut short leaves it to tell
            assert any(name.endswith("data/keras/datasets/tiny.npz") for name in listed)
            for run in (first, second):  # the data never travels with the chain state
                names = state_files(chain, run.run_id)
                assert not [n for n in names if "data-cache" in n or n.endswith("tiny.npz")], names
    finally:
        server.close()
