"""The image's content hash and build context (build_context.py, docker_image.image_tag).

Unit tests on real files: what the Dockerfile copies, what never enters the context, and a
tag that stays the same across the attempts of a chain in a consumer repository, with and
without a ``.dockerignore``. The docker-marked test hashes with the real engine (the base
image's identity) and builds from the context the hash describes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from keeptraining.backends.docker import build_context
from keeptraining.backends.docker import image as docker_image

DOCKERFILE = """\
# a consumer's Dockerfile
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
"""


def consumer(root: Path, dockerfile: str = DOCKERFILE, *, dockerignore: str | None = None) -> Path:
    """A repository as a consumer has it: git, code, state of earlier attempts, data, docs."""
    root.mkdir()
    (root / "Dockerfile").write_text(dockerfile)
    (root / "requirements.txt").write_text("keras==3.15.1\n")
    (root / "README.md").write_text("docs\n")
    (root / "ml_code").mkdir()
    (root / "ml_code" / "nn.py").write_text("print('train')\n")
    (root / "ml_code" / "requirements.txt").write_text("numpy\n")
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-q",
            "-m",
            "first",
        ],
        check=True,
    )
    return root


def next_attempt(root: Path, n: int) -> None:
    """What changes between the attempts of a chain: the state folder, the code, git's files."""
    state = root / ".keeptraining" / f"attempt-{n:03d}"
    state.mkdir(parents=True)
    (state / "model.keras").write_bytes(bytes([n]) * 1000)
    (root / ".keeptraining" / "ledger.json").write_text(f'{{"attempts": {n}}}')
    (root / "ml_code" / "nn.py").write_text(f"print('train {n}')\n")
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            f"attempt {n}",
        ],
        check=True,
    )


def tag(root: Path, base: str | None = None) -> str:
    return docker_image.image_tag(root, "Dockerfile", base, excluded=[".keeptraining"], code_folder="ml_code")


@pytest.mark.parametrize(
    "dockerignore",
    [None, "", "*\n!requirements.txt\n", "!.git\n!.keeptraining\n"],
    ids=["no-dockerignore", "empty", "strict", "lets-git-in"],
)
def test_tag_is_the_same_across_the_attempts_of_a_chain(tmp_path: Path, dockerignore: str | None) -> None:
    root = consumer(tmp_path / "repo", dockerignore=dockerignore)
    first = tag(root)
    for n in (1, 2, 3):
        next_attempt(root, n)
        assert tag(root) == first, f"attempt {n}: the state, the code and .git are not in the image"
    assert docker_image.context_files(
        root, "Dockerfile", excluded=[".keeptraining"], code_folder="ml_code"
    ) == ["requirements.txt"]


def test_tag_follows_what_the_dockerfile_copies(tmp_path: Path) -> None:
    root = consumer(tmp_path / "repo")
    first = tag(root)
    (root / "README.md").write_text("other docs\n")
    (root / "data.csv").write_text("1,2\n")
    assert tag(root) == first, "files the Dockerfile does not copy are not in the image"
    (root / "requirements.txt").write_text("keras==3.15.0\n")
    assert tag(root) != first, "a copied file changed: another image"
    second = tag(root)
    assert tag(root, "python:3.12-slim") != second, "another BASE_IMAGE is another image"
    (root / "Dockerfile").write_text(DOCKERFILE + "ENV X=1\n")
    assert tag(root) != second, "another Dockerfile is another image"


def test_copy_everything_still_leaves_out_state_code_and_git(tmp_path: Path) -> None:
    root = consumer(tmp_path / "repo", "FROM python:3.11-slim\nCOPY . /app\n")
    files = docker_image.context_files(root, "Dockerfile", excluded=[".keeptraining"], code_folder="ml_code")
    assert files == ["README.md", "requirements.txt"]
    first = tag(root)
    next_attempt(root, 1)
    assert tag(root) == first
    (root / "README.md").write_text("changed\n")
    assert tag(root) != first, "COPY . copies the docs: they are part of the image"


def test_a_file_of_the_code_folder_named_by_copy_is_kept(tmp_path: Path) -> None:
    root = consumer(tmp_path / "repo", "FROM python:3.11-slim\nCOPY ml_code/requirements.txt /r.txt\n")
    files = docker_image.context_files(root, "Dockerfile", excluded=[".keeptraining"], code_folder="ml_code")
    assert files == ["ml_code/requirements.txt"]
    first = tag(root)
    next_attempt(root, 1)  # changes ml_code/nn.py
    assert tag(root) == first
    (root / "ml_code" / "requirements.txt").write_text("numpy==2\n")
    assert tag(root) != first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("COPY a.txt b/ /dst/\n", ["a.txt", "b"]),
        ("COPY --chown=1000:1000 ./req*.txt /x/\n", ["req*.txt"]),
        ('COPY ["with space.txt", "/dst/"]\n', ["with space.txt"]),
        (
            "COPY --from=build /out /out\nADD https://example.invalid/x.tgz /x\nADD local.tgz /y\n",
            ["local.tgz"],
        ),
        ("COPY . /app\n", [""]),
        ("COPY a \\\n     b /dst/\n", ["a", "b"]),
        ("copy ../../etc/passwd /x\n", ["etc/passwd"]),
    ],
    ids=[
        "files-and-folder",
        "flag-and-wildcard",
        "json-form",
        "from-stage-and-url",
        "everything",
        "continuation",
        "dotdot-stays-inside",
    ],
)
def test_copy_sources(text: str, expected: list[str]) -> None:
    assert build_context.copy_sources("FROM x\n" + text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "COPY $SRC /x\n",
        "COPY <<EOF /x\nhi\nEOF\n",
        "COPY --parents a /x\n",
        "# escape=`\nFROM x\n",
        'COPY "a b" /x\n',
    ],
    ids=["variable", "heredoc", "unknown-flag", "escape-directive", "quoted"],
)
def test_copy_sources_unreadable_means_the_whole_context(text: str, tmp_path: Path) -> None:
    assert build_context.copy_sources("FROM x\n" + text) is None
    root = consumer(tmp_path / "repo", "FROM python:3.11-slim\n" + text)
    files = docker_image.context_files(root, "Dockerfile", excluded=[".keeptraining"], code_folder="ml_code")
    assert files == ["README.md", "requirements.txt"], "all but .git, the state and the code"


def test_copied_matches_like_docker() -> None:
    assert build_context.copied("requirements.txt", "requirements.txt")
    assert build_context.copied("conf/a/b.yml", "conf")
    assert build_context.copied("req-dev.txt", "req*.txt")
    assert not build_context.copied("sub/req.txt", "req*.txt"), "* does not cross a folder"
    assert not build_context.copied("conf.yml", "conf")
    assert build_context.copied("anything/at/all", "")


def test_base_images() -> None:
    text = (
        "ARG BASE_IMAGE=python:3.11-slim\nARG TAG=1\nFROM ${BASE_IMAGE} AS build\nFROM build\n"
        "FROM --platform=linux/amd64 other:$TAG\nFROM scratch\n"
    )
    assert build_context.base_images(text, {}) == ["python:3.11-slim", "other:1"]
    assert build_context.base_images(text, {"BASE_IMAGE": "local:bookworm"}) == ["local:bookworm", "other:1"]


@pytest.mark.docker
def test_tag_uses_the_base_image_identity_and_the_context_builds(
    tmp_path: Path, docker_client: docker.DockerClient, docker_base_image: str
) -> None:
    dockerfile = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY requirements.txt /tmp/requirements.txt\n"
    root = consumer(tmp_path / "repo", dockerfile)
    with_engine = docker_image.image_tag(
        root,
        "Dockerfile",
        docker_base_image,
        docker_client=docker_client,
        excluded=[".keeptraining"],
        code_folder="ml_code",
    )
    assert with_engine != tag(root, docker_base_image), "the base image's identity is in the hash"
    base = docker_client.images.get(docker_base_image)
    assert docker_image.base_identity(docker_client, docker_base_image) == base.id, (
        "a base no registry knows: its local id"
    )
    assert docker_image.base_identity(docker_client, "keeptraining-no-such-base:1") == ""
