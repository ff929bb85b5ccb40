"""The ``network`` setting: its values, and the error a training gets that could not reach the network."""

from __future__ import annotations

import pytest

from keeptraining.backends.docker import network
from keeptraining.config import settings as config_mod
from keeptraining.errors import ConfigError

# What scripts print when the container has no network (Keras's get_file wraps urllib's error).
KERAS_DNS = (
    "Exception: URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    "mnist.npz: None -- [Errno -3] Temporary failure in name resolution"
)
KERAS_REFUSED = (
    "Exception: URL fetch failure on http://127.0.0.1:8000/tiny.npz: None -- [Errno 111] Connection refused"
)
REQUESTS = (
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='huggingface.co', port=443): Max "
    'retries exceeded with url: /api/models (Caused by NameResolutionError("<urllib3.connection.'
    "HTTPSConnection object>: Failed to resolve 'huggingface.co' ([Errno -3] Temporary failure in "
    'name resolution)"))'
)
UNREACHABLE = "OSError: [Errno 101] Network is unreachable"
CURL = "curl: (6) Could not resolve host: example.org"


@pytest.mark.parametrize(
    "line",
    [KERAS_DNS, KERAS_REFUSED, REQUESTS, UNREACHABLE, CURL],
    ids=["keras-dns", "keras-refused", "requests", "unreachable", "curl"],
)
def test_a_failed_download_without_a_network_names_the_setting(line: str) -> None:
    log = f'Epoch 1/1\nTraceback (most recent call last):\n  File "nn.py", line 3\n{line}\n'
    explained = network.explain("`network: none`", log)
    assert explained is not None
    assert "could not reach the network" in explained.message
    assert "the training container had no network: `network: none`." in explained.message
    assert "`network: default`" in explained.hint and "Data your script downloads" in explained.hint
    assert len(explained.message) < 300  # at most about 100 characters of the line, up to the reason


def test_the_line_quoted_is_cut_before_the_reason_never_after_it() -> None:
    quoted = network.unreachable_line(f"noise\n{KERAS_REFUSED}\nmore noise")
    assert quoted is not None and quoted.startswith("...") and len(quoted) <= 103
    assert quoted.endswith("None -- [Errno 111] Connection refused")
    assert network.unreachable_line(UNREACHABLE) == UNREACHABLE


def test_nothing_is_explained_with_a_network_or_without_a_network_error() -> None:
    assert network.explain("", KERAS_DNS) is None  # the container had a network: another problem
    assert network.explain("`network: none`", "ValueError: shapes (3,) and (4,) not aligned") is None


def test_default_on_an_engine_without_its_bridge_points_at_host() -> None:
    offline = "`network: default`, and this Docker engine has no default bridge network"
    explained = network.explain(offline, KERAS_DNS)
    assert explained is not None and explained.hint == network.NO_BRIDGE_HINT


@pytest.mark.parametrize("value", ["none", "default", "host", "kt-data-mirror", "bridge"])
def test_network_takes_the_docker_modes_and_a_networks_name(value: str) -> None:
    assert config_mod.resolve({"network": value}).network == value


@pytest.mark.parametrize("value", ["container:db", "", "-x", "a b", "n" * 129])
def test_a_network_docker_would_read_as_something_else_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="network"):
        config_mod.resolve({"network": value})


def test_the_defaults_are_the_engines_network_and_the_cache() -> None:
    defaults = config_mod.resolve({})
    assert (defaults.network, defaults.cache) == ("default", True)
    assert config_mod.coerce("cache", "false") is False
