"""A training script that downloads its data with keras.utils.get_file, the way Keras's own loaders
do, from a real HTTP server on this machine: through the docker backend with each ``network``, and
through the data cache that keeps the download from attempt to attempt (and across backends)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import numpy as np
import pytest
import yaml

from conftest import TrainingImage
from keeptraining.cli import main
from keeptraining.state import ledger

pytestmark = [pytest.mark.docker, pytest.mark.integration]

SCRIPT = """\
import keras
import numpy as np

# Like keras.datasets.*.load_data(): downloaded once into KERAS_HOME/datasets, then found there.
path = keras.utils.get_file("tiny.npz", origin="{url}")
with np.load(path) as data:
    x, y = data["x"], data["y"]
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=5, validation_split=0.25, verbose=2)
print("Test accuracy:", model.evaluate(x, y, verbose=0)[1])
"""


def tiny_npz() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(64, 8)).astype("float32"), y=rng.integers(0, 2, size=64))
    return buffer.getvalue()


class DataServer:
    """An HTTP server that serves one data file and counts its downloads."""

    def __init__(self, host: str) -> None:
        payload, downloads = tiny_npz(), []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/tiny.npz":
                    self.send_error(404)
                    return
                downloads.append(self.client_address[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.downloads: list[str] = downloads
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/tiny.npz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback_server() -> Iterator[DataServer]:
    server = DataServer("127.0.0.1")
    yield server
    server.close()


def repo_with(tmp_path: Path, training_image: TrainingImage, url: str, **settings: Any) -> Path:
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "code" / "train.py").write_text(SCRIPT.format(url=url))
    config = {
        "code_path": "code",
        "train_command": "python train.py",
        "image": training_image.tag,
        "backend": "docker",
        "threshold": 0.99,
        "epochs": 1,
        "epoch_step": 1,
        "max_attempts": 2,
        **settings,
    }
    (repo / ".keeptraining.yml").write_text(yaml.safe_dump(config))
    return repo


def attempt_logs(repo: Path) -> list[str]:
    return [(repo / ".keeptraining" / f"attempt-{n:03d}" / "train.log").read_text() for n in (1, 2)]


def test_without_a_network_the_error_says_so_and_names_the_setting(
    tmp_path: Path,
    training_image: TrainingImage,
    loopback_server: DataServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = repo_with(tmp_path, training_image, loopback_server.url, network="none", max_attempts=1)
    assert main(["run", "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "It could not reach the network (" in err and "Connection refused" in err
    assert "the training container had no network: `network: none`." in err
    assert "Set `network: default`" in err
    assert loopback_server.downloads == []


def test_with_the_network_attempt_2_finds_the_download_of_attempt_1_in_the_cache(
    tmp_path: Path, training_image: TrainingImage, loopback_server: DataServer
) -> None:
    repo = repo_with(tmp_path, training_image, loopback_server.url, network="host")
    assert main(["run", "--repo", str(repo)]) == 3  # two attempts below the threshold, both trained
    assert [a.outcome for a in ledger.load(repo / ".keeptraining").attempts] == ["below", "below"]
    assert len(loopback_server.downloads) == 1  # once across the chain
    first, second = attempt_logs(repo)
    assert "Downloading data from" in first and "Downloading data from" not in second
    cache = repo / ".keeptraining" / "data-cache"
    assert (cache / "data" / "keras" / "datasets" / "tiny.npz").read_bytes() == tiny_npz()
    recorded = json.loads((cache / "manifest.json").read_text())
    assert "keras/datasets/tiny.npz" in recorded["files"]


def test_a_docker_network_reaches_a_server_on_its_gateway(
    tmp_path: Path, training_image: TrainingImage, docker_client: docker.DockerClient
) -> None:
    """A user-defined bridge: the container's own network namespace, as with the default network on a
    GitHub runner (here without a way out beyond the host: the engine runs with --iptables=false)."""
    name = f"kt-test-{tmp_path.name[-24:].lower().replace('_', '-')}"
    net = docker_client.networks.create(name, driver="bridge", labels={"keeptraining-test": "1"})
    try:
        gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        server = DataServer(gateway)
        try:
            repo = repo_with(tmp_path, training_image, server.url, network=name, max_attempts=1)
            assert main(["run", "--repo", str(repo)]) == 3
            assert ledger.load(repo / ".keeptraining").attempts[0].outcome == "below"
            assert len(server.downloads) == 1
            assert server.downloads[0] != gateway  # from the container's own address on that network
        finally:
            server.close()
    finally:
        net.remove()


def test_default_network_on_this_engine(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``network: default`` is the engine's default bridge; an engine started with --bridge=none (the
    test engine) has none, and a script that needs the network is told so and pointed at host."""
    bridges = [n for n in docker_client.networks.list(names=["bridge"]) if n.name == "bridge"]
    host = bridges[0].attrs["IPAM"]["Config"][0]["Gateway"] if bridges else "127.0.0.1"
    server = DataServer(host)
    try:
        repo = repo_with(tmp_path, training_image, server.url, max_attempts=1)  # network: default
        code = main(["run", "--repo", str(repo)])
        err = capsys.readouterr().err
        if bridges:
            assert code == 3 and len(server.downloads) == 1
        else:
            assert code == 1 and server.downloads == []
            assert "this Docker engine has no default bridge network" in err
            assert "Use `network: host`" in err
    finally:
        server.close()


def test_the_local_backend_uses_the_same_cache(
    tmp_path: Path, training_image: TrainingImage, loopback_server: DataServer
) -> None:
    repo = repo_with(tmp_path, training_image, loopback_server.url, network="host")
    assert main(["attempt", "--repo", str(repo)]) == 0  # docker: downloads
    assert main(["attempt", "--repo", str(repo), "--backend", "local"]) == 0  # local: finds it
    assert [a.params["backend"] for a in ledger.load(repo / ".keeptraining").attempts] == ["docker", "local"]
    assert len(loopback_server.downloads) == 1
    assert "Downloading data from" not in attempt_logs(repo)[1]


def test_a_damaged_cache_is_discarded_and_the_data_downloaded_again(
    tmp_path: Path,
    training_image: TrainingImage,
    loopback_server: DataServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = repo_with(tmp_path, training_image, loopback_server.url, backend="local")
    assert main(["attempt", "--repo", str(repo)]) == 0
    cached = repo / ".keeptraining" / "data-cache" / "data" / "keras" / "datasets" / "tiny.npz"
    cached.write_bytes(cached.read_bytes()[:100])  # cut short: np.load would fail on it
    assert main(["attempt", "--repo", str(repo)]) == 0
    err = capsys.readouterr().err
    assert "is damaged (keras/datasets/tiny.npz is not what was recorded): discarded" in err
    assert len(loopback_server.downloads) == 2
    assert cached.read_bytes() == tiny_npz()
