"""The training container's network (the ``network`` setting), and what a training that failed
for want of one is told.

``default`` (the default) is what ``docker run`` gives: the engine's default network, from which
the script reaches what the runner reaches (the internet on a GitHub runner), through its own
network namespace. ``none`` leaves the container nothing but its loopback interface. ``host`` shares
the machine's own network, its loopback services included. Any other value names an existing
Docker network (``docker network create ...``), e.g. one whose only way out is a data mirror.
The image build always uses the host network; the local backend always has the machine's.

A training that exits non-zero with a name-resolution or connection error in its log, while its
container had no network, gets an error that says so and names the setting (``explain``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import docker
from docker.errors import DockerException, NotFound

from keeptraining.errors import TrainingError, quote
from keeptraining.output import workflow_commands as gha

NONE, DEFAULT, HOST = "none", "default", "host"
_DEFAULT_NAMES = (DEFAULT, "bridge")  # the engine's default network, as docker run names it

# What Python, urllib, urllib3/requests, Keras's get_file, curl and the hub clients print when a
# host cannot be resolved or reached.
_UNREACHABLE = re.compile(
    r"Temporary failure in name resolution|Name or service not known|No address associated with hostname"
    r"|nodename nor servname provided|getaddrinfo failed|NameResolutionError|Could not resolve host"
    r"|Failed to resolve|Network is unreachable|No route to host|Connection refused"
    r"|Failed to establish a new connection|URL fetch failure|Max retries exceeded with url",
    re.IGNORECASE,
)

HINT = (
    "Set `network: default` (in .keeptraining.yml, the action input `network`, or `--network default`) "
    'so that the script can download its data, or bring the data along: README, "Data your script '
    'downloads".'
)
NO_BRIDGE_HINT = (
    "Use `network: host`, or the name of a Docker network (`docker network create NAME`), or "
    "start the engine with its default bridge."
)


class Explanation(NamedTuple):
    message: str  # appended to "The training command exited with code N."
    hint: str


def unreachable_line(log: str, limit: int = 100) -> str | None:
    """The last line of ``log`` that says a host could not be resolved or reached: at most ``limit``
    characters of it, ending with the last phrase that says so (``... [Errno 111] Connection refused``)."""
    for line in reversed(log.splitlines()):
        found = list(_UNREACHABLE.finditer(line))
        if found:
            end = found[-1].end()
            start = max(0, end - limit)
            return ("..." if start else "") + line[start:end].strip()
    return None


def explain(offline: str, log: str) -> Explanation | None:
    """For a failed training whose container had no network (``offline`` says why; empty when it had
    one) and whose log shows it tried to reach one: what happened and what to do."""
    line = unreachable_line(log) if offline else None
    if line is None:
        return None
    hint = NO_BRIDGE_HINT if offline.startswith(f"`network: {DEFAULT}`") else HINT
    return Explanation(
        f" It could not reach the network ({quote(line, 110)}), and the training container "
        f"had no network: {offline}.",
        hint,
    )


def docker_mode(dc: docker.DockerClient, setting: str) -> tuple[str, str]:
    """The container's ``network_mode`` for ``setting``, and why it has no network ('' when it has one).

    A named network must exist (TrainingError otherwise). ``default`` on an engine without its
    default bridge (``dockerd --bridge=none``) gives the container only its loopback interface: a
    training that fails for want of the network is told so (not one that never needed it).
    """
    if setting == NONE:
        return NONE, f"`network: {NONE}`"
    if setting == HOST:
        return HOST, ""
    if setting in _DEFAULT_NAMES:
        if _has_default_bridge(dc):
            return DEFAULT, ""
        return DEFAULT, (
            f"`network: {setting}`, and this Docker engine has no default bridge network (it "
            "was started with --bridge=none), so the container gets only its loopback interface"
        )
    try:
        dc.networks.get(setting)
    except NotFound:
        raise TrainingError(
            f"network = {quote(setting)}: the Docker engine has no network of that name.",
            hint="Use none, default or host, or create the network first (`docker network create NAME`).",
        ) from None
    except DockerException as exc:
        raise TrainingError(f"network = {quote(setting)} cannot be looked up: {str(exc)[:200]}") from None
    return setting, ""


def _has_default_bridge(dc: docker.DockerClient) -> bool:
    try:
        return any(n.name == "bridge" for n in dc.networks.list(names=["bridge"]))
    except DockerException:  # cannot tell: assume the usual engine
        return True


def warn_if_not_contained(setting: str, backend: str) -> None:
    """``network: none`` cannot be kept by the local backend: it runs with the machine's network."""
    if setting == NONE and backend == "local":
        gha.warn(
            "`network: none` applies to the docker backend only: the local backend trains with this "
            "machine's network.",
            title="network: none not applied",
        )
