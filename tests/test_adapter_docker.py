"""The adapter on the docker backend: a repository with a plain Keras script, a requirements.txt
and no Dockerfile, through a real engine; and the adapter inside a locked-down container."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import docker
import pytest
import yaml

from conftest import REPO_ROOT, TrainingImage
from keeptraining import adapter
from keeptraining.backends.docker import run as backend_docker
from keeptraining.cli import main
from keeptraining.state import ledger

pytestmark = [pytest.mark.docker, pytest.mark.integration]

ZOO = Path(__file__).resolve().parent / "zoo"
SCRIPT = "sequential_fixed_epochs.py"


def test_no_dockerfile_plain_script_resumes_in_the_generated_image(
    tmp_path: Path, training_image: TrainingImage, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    for name in ("zoo_data.py", SCRIPT):
        shutil.copy(ZOO / name, repo / "code")
    shutil.copy(REPO_ROOT / "requirements.txt", repo / "requirements.txt")
    (repo / ".keeptraining.yml").write_text(
        yaml.safe_dump(
            {
                "code_path": "code",
                "train_command": f"python {SCRIPT}",
                "backend": "docker",
                "threshold": 0.999,
                "max_attempts": 2,
                "base_image": training_image.base_image,
            }
        )
    )
    assert main(["run", "--repo", str(repo)]) == 3
    out = capsys.readouterr().out
    assert "No Dockerfile: keeptraining generates the training image." in out
    assert f"{SCRIPT} imports keras, numpy (local: zoo_data)" in out
    assert "requirements.txt names tensorflow-cpu==2.21.0" in out
    assert re.search(r"^Epoch 11/20$", out, flags=re.MULTILINE)
    first, second = ledger.load(repo / ".keeptraining").attempts
    assert second.resumed_from == "attempt-001/model.keras" and second.epochs_reached == 20
    assert second.metric_source == "evaluate"
    steps = first.adapter["optimizer_iterations"]["end"]
    assert second.adapter["optimizer_iterations"] == {"start": steps, "end": 2 * steps}
    assert not (repo / "Dockerfile").exists() and not (repo / "code" / "Dockerfile").exists()


def test_the_adapter_writes_only_to_the_output_folder_in_a_read_only_container(
    tmp_path: Path, training_image: TrainingImage, docker_client: docker.DockerClient
) -> None:
    """Read-only root, tmpfs /tmp, no capabilities, not root: what a hardened container allows."""
    code, output = tmp_path / "code", tmp_path / "output"
    code.mkdir()
    output.mkdir(mode=0o777)
    output.chmod(0o777)
    for name in ("zoo_data.py", SCRIPT):
        shutil.copy(ZOO / name, code)
    mounts = [
        docker.types.Mount("/workspace/code", str(code), type="bind", read_only=True),
        docker.types.Mount("/workspace/output", str(output), type="bind"),
        docker.types.Mount(adapter.CONTAINER_DIR, str(adapter.folder()), type="bind", read_only=True),
    ]
    env = {
        "KT_ADAPT": "auto",
        "KT_EPOCHS": "2",
        "KT_INITIAL_EPOCH": "0",
        "KT_RESUME_FROM": "",
        "KT_THRESHOLD": "0.999",
        "KT_METRIC": "accuracy",
        "KT_OUTPUT_DIR": "/workspace/output",
        "HOME": "/tmp",
        "PYTHONPATH": adapter.CONTAINER_DIR,
    }
    container = docker_client.containers.create(
        training_image.tag,
        ["python", SCRIPT],
        working_dir="/workspace/code",
        mounts=mounts,
        environment=env,
        user="1000:1000",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        cap_drop=["ALL"],
        network_mode="none",
        labels=dict(backend_docker.LABELS),
    )
    try:
        container.start()
        status = container.wait(timeout=300)
        log = container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, log
    assert sorted(p.name for p in output.iterdir()) == ["metrics.json", "model.keras"]
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["metric_source"]) == (2, "evaluate")
    assert "could not" not in log


def docker_repo(root: Path, image: TrainingImage, *scripts: str, **config: object) -> Path:
    repo = root / "repo"
    (repo / "code").mkdir(parents=True)
    for name in ("zoo_data.py", *scripts):
        shutil.copy(ZOO / name, repo / "code")
    shutil.copy(REPO_ROOT / "requirements.txt", repo / "requirements.txt")
    (repo / ".keeptraining.yml").write_text(
        yaml.safe_dump(
            {
                "code_path": "code",
                "train_command": f"python {scripts[0]}",
                "backend": "docker",
                "threshold": 0.999,
                "max_attempts": 2,
                "base_image": image.base_image,
                **config,
            }
        )
    )
    return repo


def test_a_script_that_saves_next_to_itself_runs_as_written_and_its_files_stay_with_the_attempt(
    tmp_path: Path, training_image: TrainingImage, capsys: pytest.CaptureFixture[str]
) -> None:
    """`os.getcwd()/saved_models` and `./modelCheckpoint/`: a writable copy of the code folder in the
    container; what the script wrote is kept in attempt-NNN/workdir/, the repository is untouched."""
    script = "saves_next_to_itself.py"
    repo = docker_repo(tmp_path, training_image, script, epochs=3, epoch_step=3)
    before = sorted(p.name for p in (repo / "code").iterdir())
    assert main(["run", "--repo", str(repo)]) == 3
    out = capsys.readouterr().out
    first, second = ledger.load(repo / ".keeptraining").attempts
    assert [a.outcome for a in (first, second)] == ["below", "below"]
    assert (second.resumed_from, second.initial_epoch, second.epochs_reached) == (
        "attempt-001/model.keras",
        3,
        6,
    )
    steps = first.adapter["optimizer_iterations"]["end"]
    assert second.adapter["optimizer_iterations"] == {"start": steps, "end": 2 * steps}
    for attempt in (1, 2):
        kept = repo / f".keeptraining/attempt-{attempt:03d}/workdir"
        assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()) == [
            "modelCheckpoint/best.keras",
            "saved_models/digits.keras",
        ]
    assert (
        "the script wrote 2 files in its folder (modelCheckpoint/best.keras, saved_models/digits.keras)"
        in out
    )
    assert sorted(p.name for p in (repo / "code").iterdir()) == before  # the repository is untouched
    # keeptraining runs as root here: the files the container (uid 1000) wrote are given back.
    state = repo / ".keeptraining"
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in state.rglob("*")}
    assert owners == {(state.stat().st_uid, state.stat().st_gid)}


def test_a_write_to_the_read_only_file_system_names_the_fix_and_keeps_the_trained_epochs(
    tmp_path: Path, training_image: TrainingImage, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = docker_repo(tmp_path, training_image, "writes_outside.py", max_attempts=1, epochs=3)
    assert main(["run", "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "It tried to write '/opt/digits-notes.txt', which is on a read-only file system." in err
    assert "$KT_OUTPUT_DIR" in err and "workdir/" in err
    (record,) = ledger.load(repo / ".keeptraining").attempts
    assert (record.outcome, record.epochs_reached, record.checkpoint) == ("failed", 3, "model.keras")
    assert (repo / ".keeptraining/attempt-001/model.keras").is_file()


def test_a_helper_modules_missing_package_is_named_with_the_requirement_to_add(
    tmp_path: Path, training_image: TrainingImage, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generated Dockerfile reads the helper's imports too: the run says before training that
    requirements.txt lacks pandas, and the failure says which requirement to add and where."""
    repo = docker_repo(tmp_path, training_image, "two_files.py", max_attempts=1, epochs=3)
    shutil.copy(ZOO / "prepare.py", repo / "code")
    assert main(["run", "--repo", str(repo)]) == 1
    captured = capsys.readouterr()
    assert "two_files.py imports keras, numpy, pandas (local: prepare, zoo_data)" in captured.out
    assert "note: `import pandas` in prepare.py: add `pandas` (pinned) to requirements.txt" in captured.out
    assert "The training imports 'pandas', which is not installed where it runs." in captured.err
    assert "Add `pandas` (pinned, e.g. `pandas==<version>`) to requirements.txt" in captured.err
