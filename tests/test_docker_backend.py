"""The docker backend against a real engine and the real image (no mocks).

The engine and image come from the session fixtures in conftest.py (`# --- docker ---`):
scripts/docker-engine.sh, then ensure_image on the repository's own Dockerfile.
Training scripts here are tiny ones written into tmp_path, so that these tests
check the container contract, not a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from conftest import REPO_ROOT, TrainingImage
from keeptraining.backends.base import TrainRequest, TrainResult
from keeptraining.backends.docker import image as docker_image
from keeptraining.backends.docker import run as backend_docker
from keeptraining.errors import BackendUnavailable, ConfigError, ImageBuildError, TrainingError

EXPECTED_UID = backend_docker.CONTAINER_UID if os.getuid() == 0 else os.getuid()

CONTRACT_SCRIPT = """\
import json, os, socket, sys

print("uid", os.getuid(), flush=True)
try:
    with open("probe.txt", "w") as f:
        f.write("x")
    code_dir = "writable"
except OSError as exc:
    code_dir = f"read-only errno={exc.errno}"
print("code-dir", code_dir, flush=True)
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2).close()
    network = "yes"
except OSError:
    network = "none"

import keras
import tensorflow as tf
print("tensorflow", tf.__version__, "keras", keras.__version__, flush=True)

out = os.environ["KT_OUTPUT_DIR"]
resume = os.environ["KT_RESUME_FROM"]
resumed = ""
if resume:
    with open(resume) as f:
        resumed = f.read()
report = {
    "accuracy": 0.5,
    "epochs": int(os.environ["KT_EPOCHS"]),
    "uid": os.getuid(),
    "cwd": os.getcwd(),
    "code_dir": code_dir,
    "network": network,
    "resumed": resumed,
    "tensorflow": tf.__version__,
    "env": {k: v for k, v in os.environ.items() if k.startswith("KT_")},
}
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(report, f)
with open(os.path.join(out, "model.keras"), "wb") as f:
    f.write(b"fake checkpoint")
print("Test accuracy: 0.5")
"""

CONTRACT_ENV = {
    "KT_EPOCHS": "20",
    "KT_INITIAL_EPOCH": "10",
    "KT_THRESHOLD": "0.9",
    "KT_METRIC": "accuracy",
    "KT_HP_LEARNING_RATE": "0.01",
}


def write_script(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / name).write_text(textwrap.dedent(body))
    return code


def request(
    tmp_path: Path,
    code: Path,
    *,
    command: list[str] | None = None,
    timeout: float = 60,
    resume_from: Path | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> TrainRequest:
    return TrainRequest(
        code_dir=code,
        command=command or ["python", "train.py"],
        output_dir=tmp_path / "out",
        env=dict(CONTRACT_ENV if env is None else env),
        timeout=timeout,
        resume_from=resume_from,
        on_line=on_line,
    )


@pytest.fixture
def run_label() -> dict[str, str]:
    """A label unique to one test, to find its containers without touching anyone else's."""
    return {"keeptraining.test": uuid.uuid4().hex}


def containers_with(dc: docker.DockerClient, labels: dict[str, str]) -> list[Any]:
    filters = {"label": [f"{k}={v}" for k, v in {**backend_docker.LABELS, **labels}.items()]}
    return list(dc.containers.list(all=True, filters=filters))


def run_in(
    image: TrainingImage, dc: docker.DockerClient, req: TrainRequest, labels: dict[str, str]
) -> TrainResult:
    result = backend_docker.run(req, image.tag, docker_client=dc, extra_labels=labels)
    assert containers_with(dc, labels) == [], "the container must be removed"
    return result


# --- image ----------------------------------------------------------------------


@pytest.mark.docker
def test_image_builds_on_local_base_and_is_then_a_cache_hit(
    training_image: TrainingImage, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = docker_client.images.get(training_image.tag)
    assert training_image.tag.startswith("keeptraining-train:")
    assert image.labels.get("keeptraining") == "1"
    assert image.attrs["Config"]["User"] == "trainer"
    assert image.attrs["Config"]["WorkingDir"] == "/workspace/code"
    assert "PATH=/opt/venv/bin:" in " ".join(image.attrs["Config"]["Env"])
    # Built on the local base: its top layer is one of ours.
    base_layers = docker_client.images.get(training_image.base_image).attrs["RootFS"]["Layers"]
    assert image.attrs["RootFS"]["Layers"][: len(base_layers)] == base_layers

    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cache hit must not send a build (nor its context)")

    monkeypatch.setattr(docker_client.api, "build", no_build)
    start = time.monotonic()
    tag, built = docker_image.ensure_image(
        REPO_ROOT, "Dockerfile", training_image.base_image, docker_client=docker_client
    )
    took = time.monotonic() - start
    assert (tag, built) == (training_image.tag, False)
    assert took < 2.0
    print(
        f"\nimage: first ensure_image {training_image.seconds:.1f}s (built={training_image.built}); "
        f"cache hit {took * 1000:.0f} ms"
    )


def copy_build_inputs(dest: Path) -> Path:
    dest.mkdir()
    for name in ("Dockerfile", ".dockerignore", "requirements.txt"):
        shutil.copy(REPO_ROOT / name, dest / name)
    return dest


@pytest.mark.docker
def test_image_tag_follows_build_inputs_not_code(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    repo = copy_build_inputs(tmp_path / "repo")

    def tag(base: str | None = docker_base_image) -> str:
        return docker_image.image_tag(repo, "Dockerfile", base, docker_client=docker_client)

    first = tag()
    assert first == docker_image.image_tag(
        REPO_ROOT, "Dockerfile", docker_base_image, docker_client=docker_client
    )
    assert docker_image.context_files(repo, "Dockerfile") == ["requirements.txt"], (
        "only what the Dockerfile copies (the Dockerfile is hashed on its own)"
    )
    (repo / "ml_code").mkdir()
    (repo / "ml_code" / "nn.py").write_text("print('changed code')\n")
    (repo / "README.md").write_text("docs\n")
    assert tag() == first, "code and docs are mounted, not built in: no rebuild"
    assert tag(None) != first, "another BASE_IMAGE is another image"
    (repo / "requirements.txt").write_text("keras==3.15.1\n")
    assert tag() != first, "new requirements are a new image"


@pytest.mark.docker
def test_broken_dockerfile_raises_image_build_error_with_log_tail(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = f"broken-step-{uuid.uuid4().hex[:8]}"
    (repo / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {marker} && exit 7\n")
    lines: list[str] = []
    with pytest.raises(ImageBuildError) as info:
        docker_image.ensure_image(
            repo, "Dockerfile", docker_base_image, on_line=lines.append, docker_client=docker_client
        )
    message = str(info.value)
    assert marker in info.value.log_tail
    assert "non-zero code: 7" in message
    assert lines[0].startswith("Building the training image keeptraining-train:")
    steps = lines[1 : lines.index("Last lines of the build log:")]
    assert steps and all(line.startswith("Step ") for line in steps), "one line per Dockerfile step"
    assert any(marker in line for line in steps), "the failing step is named as it starts"
    assert lines[-1] == info.value.log_tail.splitlines()[-1], "then the log's end, to see why"
    tag = docker_image.image_tag(repo, "Dockerfile", docker_base_image, docker_client=docker_client)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


@pytest.mark.docker
def test_dockerfile_outside_the_repository_is_refused(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ConfigError, match="outside the repository"):
        docker_image.ensure_image(repo, "../Dockerfile", None, docker_client=docker_client)
    with pytest.raises(ConfigError, match="does not exist"):
        docker_image.ensure_image(repo, "Dockerfile", None, docker_client=docker_client)


# --- run ----------------------------------------------------------------------------


@pytest.mark.docker
def test_training_run_honours_the_contract(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(tmp_path, CONTRACT_SCRIPT)
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "model.keras").write_text("checkpoint of attempt 1")
    lines: list[str] = []
    req = request(tmp_path, code, resume_from=previous / "model.keras", on_line=lines.append)

    result = run_in(training_image, docker_client, req, run_label)

    assert result.exit_code == 0, result.output
    assert not result.timed_out
    assert result.detail == ""
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["uid"] == EXPECTED_UID != 0
    # The script works in a writable copy of its folder: what it writes there is kept with the
    # attempt (out/workdir/), never in the code folder itself.
    assert metrics["code_dir"] == "writable"
    assert not (code / "probe.txt").exists()
    assert (tmp_path / "out" / "workdir" / "probe.txt").read_text() == "x"
    assert any("the script wrote 1 file in its folder (probe.txt)" in line for line in lines)
    assert metrics["network"] == "none"
    assert metrics["cwd"] == "/workspace/code"
    assert metrics["tensorflow"] == "2.21.0"
    assert metrics["env"] == {
        **CONTRACT_ENV,
        "KT_OUTPUT_DIR": "/workspace/output",
        "KT_RESUME_FROM": "/workspace/resume/model.keras",
    }
    assert metrics["resumed"] == "checkpoint of attempt 1"
    checkpoint = tmp_path / "out" / "model.keras"
    assert checkpoint.read_bytes() == b"fake checkpoint"
    # Written by the container's user, then handed back to whoever owns the state folder (here the
    # output folder's parent): keeptraining running as root finds its own files, not uid 1000's.
    assert checkpoint.stat().st_uid == tmp_path.stat().st_uid
    assert (previous / "model.keras").read_text() == "checkpoint of attempt 1"
    assert "Test accuracy: 0.5" in result.output
    assert "Test accuracy: 0.5" in lines
    assert f"uid {EXPECTED_UID}" in lines
    assert {"container_create_s", "container_start_s", "run_s", "cleanup_s"} <= set(result.stages)
    print(
        f"\ncontract run: {result.duration:.2f}s (TensorFlow import included); "
        + ", ".join(f"{k}={v:.2f}" for k, v in result.stages.items())
    )


@pytest.mark.docker
def test_fresh_run_has_empty_resume_and_may_resume_from_its_own_output_folder(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        import os
        print("resume=[" + os.environ["KT_RESUME_FROM"] + "]")
        if os.environ["KT_RESUME_FROM"]:
            print("read:", open(os.environ["KT_RESUME_FROM"]).read())
        open(os.path.join(os.environ["KT_OUTPUT_DIR"], "model.keras"), "w").write("attempt 2")
    """,
    )
    fresh = run_in(training_image, docker_client, request(tmp_path, code), run_label)
    assert fresh.exit_code == 0, fresh.output
    assert "resume=[]" in fresh.output

    # The usual chain: attempt n+1 resumes from the checkpoint in the same output folder.
    resumed = run_in(
        training_image,
        docker_client,
        request(tmp_path, code, resume_from=tmp_path / "out" / "model.keras"),
        run_label,
    )
    assert resumed.exit_code == 0, resumed.output
    assert "resume=[/workspace/resume/model.keras]" in resumed.output
    assert "read: attempt 2" in resumed.output


@pytest.mark.docker
def test_trivial_script_start_overhead(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(tmp_path, "print('hello')\n")
    start = time.monotonic()
    result = run_in(training_image, docker_client, request(tmp_path, code), run_label)
    total = time.monotonic() - start
    assert result.exit_code == 0
    assert result.output.strip() == "hello"
    assert total < 15
    print(
        f"\ntrivial script: {total:.2f}s end to end, container {result.duration:.2f}s; "
        + ", ".join(f"{k}={v:.2f}" for k, v in result.stages.items())
    )


@pytest.mark.docker
def test_failing_script_returns_exit_code_and_log_tail(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        import sys
        for i in range(100):
            print("line", i)
        print("Traceback: the model exploded", file=sys.stderr)
        sys.exit(3)
    """,
    )
    result = run_in(training_image, docker_client, request(tmp_path, code), run_label)
    assert result.exit_code == 3
    assert not result.timed_out
    # stdout and stderr reach the engine through separate pipes: their relative
    # order is not kept, the order within each is.
    tail = result.log_tail.splitlines()
    assert "Traceback: the model exploded" in tail
    assert [line for line in tail if line.startswith("line")][-1] == "line 99"
    assert "line 0" in result.output  # the whole log is kept, not only the tail
    assert "line 0" not in result.log_tail


@pytest.mark.docker
def test_missing_program_raises_and_leaves_no_container(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(tmp_path, "print('never')\n")
    with pytest.raises(TrainingError, match="'no-such-program' could not be started"):
        backend_docker.run(
            request(tmp_path, code, command=["no-such-program", "x"]),
            training_image.tag,
            docker_client=docker_client,
            extra_labels=run_label,
        )
    assert containers_with(docker_client, run_label) == []


@pytest.mark.docker
def test_timeout_stops_and_removes_the_container(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        import time
        print("sleeping", flush=True)
        time.sleep(600)
    """,
    )
    start = time.monotonic()
    result = run_in(training_image, docker_client, request(tmp_path, code, timeout=3), run_label)
    took = time.monotonic() - start
    assert result.timed_out
    assert result.exit_code != 0
    assert "timed out after 3s" in result.detail
    assert "sleeping" in result.output
    assert took < 3 + 5, f"took {took:.1f}s"


@pytest.mark.docker
def test_container_past_its_memory_limit_is_killed_and_said_so(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        print("allocating", flush=True)
        hog = [bytearray(16 * 1024 * 1024) for _ in range(64)]  # 1 GiB, touched
        print("survived", len(hog), flush=True)
    """,
    )
    req = dataclasses.replace(request(tmp_path, code), memory_limit="128m")
    result = run_in(training_image, docker_client, req, run_label)
    assert result.exit_code == 137
    assert "out of memory" in result.detail
    assert "allocating" in result.output and "survived" not in result.output


@pytest.mark.docker
def test_timeout_kills_a_script_that_ignores_sigterm(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(600)
    """,
    )
    start = time.monotonic()
    result = run_in(training_image, docker_client, request(tmp_path, code, timeout=2), run_label)
    took = time.monotonic() - start
    assert result.timed_out
    assert result.exit_code == 137  # SIGKILL after the grace period
    assert took < 2 + backend_docker.STOP_GRACE_S + 5, f"took {took:.1f}s"


INTERRUPTED_RUNNER = """\
import faulthandler, json, signal, sys
from pathlib import Path
from keeptraining.backends.base import TrainRequest
from keeptraining.backends.docker import run as backend_docker

def stop(signum, frame):
    raise SystemExit(128 + signum)  # what a CLI does with SIGTERM: unwind, run finally blocks

signal.signal(signal.SIGTERM, stop)
# Ctrl-C as in a terminal: a process started in the background of a shell without job control (a CI
# script's `cmd &`) inherits SIGINT ignored, and Python then leaves it ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
faulthandler.dump_traceback_later(50)  # a run that hangs after the signal says where (to stderr)
args = json.loads(sys.argv[1])
request = TrainRequest(code_dir=Path(args["code"]), command=["python", "train.py"],
                       output_dir=Path(args["out"]), env={}, timeout=600,
                       on_line=lambda line: print(line, flush=True))
backend_docker.run(request, args["image"], extra_labels=args["labels"])
"""


@pytest.mark.docker
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_removes_its_container(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
    signum: signal.Signals,
) -> None:
    code = write_script(
        tmp_path,
        """\
        import time
        print("training", flush=True)
        time.sleep(600)
    """,
    )
    args = {"code": str(code), "out": str(tmp_path / "out"), "image": training_image.tag, "labels": run_label}
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUNNER, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "training"  # the container runs
        assert len(containers_with(docker_client, run_label)) == 1
        proc.send_signal(signum)
        # Stopping (SIGTERM, 5 s of grace, SIGKILL) and removing the container take seconds; past 60 s the
        # run hangs: its threads' stacks are in stderr.
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the interrupted run did not end within 60 s; its stacks:\n{err[-6000:]}")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert containers_with(docker_client, run_label) == []


@pytest.mark.docker
def test_log_lines_arrive_live(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    code = write_script(
        tmp_path,
        """\
        import time
        print("epoch 1", flush=True)
        time.sleep(3)
        print("epoch 2", flush=True)
    """,
    )
    seen: dict[str, float] = {}

    def on_line(line: str) -> None:
        seen.setdefault(line, time.monotonic())

    result = run_in(training_image, docker_client, request(tmp_path, code, on_line=on_line), run_label)
    ended = time.monotonic()
    assert result.exit_code == 0
    assert list(seen) == ["epoch 1", "epoch 2"]
    assert seen["epoch 2"] - seen["epoch 1"] > 2.0, "the first line came before the script went on"
    assert ended - seen["epoch 1"] > 2.0


@pytest.mark.docker
def test_sweep_removes_leftover_labelled_containers(
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    docker_client.containers.create(
        training_image.tag, ["sleep", "600"], labels={**backend_docker.LABELS, **run_label}
    )
    assert len(containers_with(docker_client, run_label)) == 1
    assert backend_docker.sweep(docker_client=docker_client, labels=run_label) == 1
    assert containers_with(docker_client, run_label) == []


# --- no engine ------------------------------------------------------------------------


def test_no_engine_is_reported_quickly_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    start = time.monotonic()
    assert backend_docker.engine_available() is False
    with pytest.raises(BackendUnavailable) as info:
        backend_docker.require_engine()
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "no-engine.sock" in message
    assert "scripts/" not in message, "users are not told about our test scripts"
    assert "Start the Docker engine" in message
    assert "backend: local" in message and "--backend local" in message


# --- hardening --------------------------------------------------------------------------

HARDENING_PROBE = """\
import json, os

def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "writable"
    except OSError as exc:
        return f"errno={exc.errno}"

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
report = {
    "root": attempt("/probe"),
    "etc": attempt("/etc/probe"),
    "tmp": attempt("/tmp/probe"),
    "home": attempt(os.path.join(os.environ["HOME"], "probe")),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "resume_dir": sorted(os.listdir("/workspace/resume")) if os.path.isdir("/workspace/resume") else None,
}
with open(os.path.join(os.environ["KT_OUTPUT_DIR"], "metrics.json"), "w") as f:
    json.dump(report, f)
"""


@pytest.mark.docker
def test_container_is_hardened(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = write_script(tmp_path, HARDENING_PROBE)
    attempt_dir = tmp_path / "state" / "attempt-001"
    attempt_dir.mkdir(parents=True)
    (attempt_dir / "model.keras").write_text("checkpoint")
    (attempt_dir / "secret-sibling.txt").write_text("must stay outside")
    seen: dict[str, Any] = {}
    real_create = backend_docker._create

    def recording_create(*args: Any, **kwargs: Any) -> Any:
        container = real_create(*args, **kwargs)
        seen.update(docker_client.api.inspect_container(container.id))
        return container

    monkeypatch.setattr(backend_docker, "_create", recording_create)
    req = request(tmp_path, code, resume_from=attempt_dir / "model.keras")
    result = run_in(training_image, docker_client, req, run_label)
    assert result.exit_code == 0, result.output
    probe = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert probe["root"] == "errno=30" and probe["etc"] == "errno=30", "the root filesystem is read-only"
    assert probe["tmp"] == "writable" and probe["home"] == "writable"
    assert int(probe["cap_eff"], 16) == 0, "every capability is dropped"
    assert probe["no_new_privs"] == "1"
    assert probe["resume_dir"] == ["model.keras"], "only the checkpoint file is mounted, not its folder"
    host = seen["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert host["PidsLimit"] == backend_docker.PIDS_LIMIT
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert seen["Config"]["Entrypoint"] == ["python", "train.py"] and not seen["Config"]["Cmd"]
    sources = [m["Source"] for m in seen["Mounts"]]
    assert not any(s.startswith(str(tmp_path / "state")) for s in sources), "the state folder is not mounted"


@pytest.mark.docker
def test_image_entrypoint_cannot_replace_the_train_command(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    """An image whose ENTRYPOINT prints a winning line never runs instead of the train command."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text(
        f'FROM {training_image.tag}\nENTRYPOINT ["sh", "-c", "echo Test accuracy: 0.99", "--"]\n'
    )
    tag, _ = docker_image.ensure_image(repo, "Dockerfile", None, docker_client=docker_client)
    try:
        code = write_script(tmp_path, "print('the train command ran')\n")
        result = backend_docker.run(
            request(tmp_path, code), tag, docker_client=docker_client, extra_labels=run_label
        )
    finally:
        docker_client.images.remove(tag, force=True)
    assert result.exit_code == 0
    assert result.output.strip() == "the train command ran"


@pytest.mark.docker
def test_checkpoint_link_to_a_host_file_is_never_mounted(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "id_rsa").write_text("host secret")
    out = tmp_path / "state" / "attempt-001"
    out.mkdir(parents=True)
    (out / "model.keras").symlink_to(host / "id_rsa")
    (out / "pid").symlink_to("/var/run/docker.pid")
    code = write_script(tmp_path, "print('never')\n")
    for target in (out / "model.keras", out / "pid"):
        with pytest.raises(TrainingError, match="is a symbolic link"):
            backend_docker.run(
                request(tmp_path, code, resume_from=target),
                training_image.tag,
                docker_client=docker_client,
                extra_labels=run_label,
            )
    assert containers_with(docker_client, run_label) == []
    assert (host / "id_rsa").read_text() == "host secret"


@pytest.mark.docker
@pytest.mark.parametrize("where", ["/var/run", "/run", "/proc/self", "socket"])
def test_nothing_near_the_engine_is_ever_mounted(
    tmp_path: Path,
    training_image: TrainingImage,
    docker_client: docker.DockerClient,
    run_label: dict[str, str],
    where: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = write_script(tmp_path, "print('never')\n")
    req = request(tmp_path, code)
    if where == "socket":
        sock_dir = tmp_path / "engine"
        sock_dir.mkdir()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock_dir}/docker.sock")
        req = dataclasses.replace(req, output_dir=sock_dir)
    else:
        req = dataclasses.replace(req, output_dir=Path(where))
    with pytest.raises(TrainingError, match="Refusing to mount"):
        backend_docker.run(req, training_image.tag, docker_client=docker_client, extra_labels=run_label)
    assert containers_with(docker_client, run_label) == []


@pytest.mark.docker
def test_build_past_build_timeout_is_cancelled(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = f"slow-step-{uuid.uuid4().hex[:8]}"
    (repo / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {marker} && sleep 600\n"
    )
    lines: list[str] = []
    with pytest.raises(ImageBuildError, match=r"ran past build_timeout \(3 s\) and was cancelled"):
        docker_image.ensure_image(
            repo,
            "Dockerfile",
            docker_base_image,
            on_line=lines.append,
            docker_client=docker_client,
            timeout=3,
        )
    assert any(re.fullmatch(rf"Step \d/\d : RUN echo {marker} && sleep 600", line) for line in lines), lines

    def build_still_running() -> bool:
        return any(
            marker in " ".join(c.attrs["Config"].get("Cmd") or []) for c in docker_client.containers.list()
        )

    for _ in range(60):  # the engine cancels the build once the connection is gone
        if not build_still_running():
            break
        time.sleep(0.5)
    assert not build_still_running(), "the cancelled build's container must not keep running"
