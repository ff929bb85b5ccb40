"""scripts/release.py: the release workflow's checks and rewrite (offline), and its API part against the
GitHub emulator over a real git repository (``services.git_data.ReleaseEmulator``)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from keeptraining import __version__
from services import git_data
from services.git_data import ReleaseEmulator

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghs_releaseToken0123456789"
FULL_NAME = "acme/keeptraining"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "kt test",
    "GIT_AUTHOR_EMAIL": "kt@example.invalid",
    "GIT_COMMITTER_NAME": "kt test",
    "GIT_COMMITTER_EMAIL": "kt@example.invalid",
}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", ROOT / "scripts" / "release.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["release"] = module
    spec.loader.exec_module(module)
    return module


release = _load()

CHANGELOG = """\
# Changelog

All notable changes to this project are documented in this file. The format is based on
[Keep a Changelog](https://keepachangelog.com/en/1.1.0/), and this project adheres to
[Semantic Versioning](https://semver.org/spec/v2.0.0.html).

## [Unreleased]

## [1.0.0] - 2026-12-06

### Added
- `keeptraining init`.
- The reusable workflow keeptraining.yml.

## [0.1.0] - 2026-11-01

### Added
- The first chain.

[Unreleased]: https://github.com/acme/keeptraining/compare/v1.0.0...HEAD
[1.0.0]: https://github.com/acme/keeptraining/compare/v0.1.0...v1.0.0
"""


def project(root: Path, version: str = "1.0.0", changelog: str = CHANGELOG) -> Path:
    """What the release reads: the version file, CHANGELOG.md, the reusable workflows (this tree's)."""
    (root / "action" / "keeptraining").mkdir(parents=True)
    (root / release.VERSION_FILE).write_text(f'"""keeptraining."""\n\n__version__ = "{version}"\n')
    (root / "CHANGELOG.md").write_text(changelog)
    for relative in release.REUSABLE:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, root / relative)
    return root


# --------------------------------------------------------------------------- the checks


def test_check_reads_the_version_and_the_changelog_entry(tmp_path: Path) -> None:
    checked = release.check("v1.0.0", project(tmp_path))
    assert (checked.version, checked.major) == ("1.0.0", "1")
    assert checked.notes == ("### Added\n- `keeptraining init`.\n- The reusable workflow keeptraining.yml.")


@pytest.mark.parametrize(
    ("tag", "version", "changelog", "problem"),
    [
        ("1.0.0", "1.0.0", CHANGELOG, "is not a release tag vX.Y.Z"),
        ("v1.0", "1.0.0", CHANGELOG, "is not a release tag vX.Y.Z"),
        (
            "v1.0.1",
            "1.0.0",
            CHANGELOG,
            "the tag is v1.0.1, but action/keeptraining/__init__.py says __version__ = '1.0.0'",
        ),
        ("v1.0.0", "1.0.0", CHANGELOG.replace("## [Unreleased]\n", ""), "has no `## [Unreleased]` section"),
        ("v1.1.0", "1.1.0", CHANGELOG, "CHANGELOG.md has no entry for 1.1.0"),
        ("v0.1.0", "0.1.0", CHANGELOG, "0.1.0 is not the newest entry (1.0.0 is)"),
        ("v1.0.0", "1.0.0", CHANGELOG.replace("[1.0.0] - 2026-12-06", "[1.0.0]"), "has no date"),
        (
            "v1.0.0",
            "1.0.0",
            CHANGELOG.replace(
                "### Added\n- `keeptraining init`.\n- The reusable workflow keeptraining.yml.\n", ""
            ),
            "lists no change",
        ),
    ],
    ids=[
        "no-v",
        "two-parts",
        "version-differs",
        "no-unreleased",
        "no-entry",
        "not-newest",
        "no-date",
        "empty-entry",
    ],
)
def test_check_refuses_what_does_not_agree(
    tmp_path: Path, tag: str, version: str, changelog: str, problem: str
) -> None:
    with pytest.raises(release.ReleaseError, match=re.escape(problem)):
        release.check(tag, project(tmp_path, version, changelog))


def test_the_repository_version_is_written_once_and_shown_by_the_cli() -> None:
    assert release.package_version(ROOT) == __version__
    done = subprocess.run(
        [sys.executable, "-m", "keeptraining", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "action")},
    )
    assert done.stdout.strip() == f"keeptraining {__version__}"
    pyproject = (ROOT / "action" / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and __version__ not in pyproject


def test_the_repositorys_own_changelog_agrees_with_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    """A tag of the current version would pass the release check: CHANGELOG.md has its dated entry."""
    assert release.main(["check", f"v{__version__}"], env={}, root=ROOT) == 0
    assert capsys.readouterr().out.strip(), "the entry's notes are printed"


def test_check_command_prints_the_notes_and_fails_with_an_annotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    assert release.main(["check", "v1.0.0"], env={}, root=root) == 0
    assert capsys.readouterr().out.startswith("### Added\n")
    assert release.main(["check", "v2.0.0"], env={"GITHUB_ACTIONS": "true"}, root=root) == 1
    out = capsys.readouterr().out
    assert out.startswith("::error title=Release refused::the tag is v2.0.0, but")


# --------------------------------------------------------------------------- the rewrite


def test_rewrite_pins_every_own_action_reference_to_the_release_commit(tmp_path: Path) -> None:
    root = project(tmp_path)
    sha = "0123456789abcdef0123456789abcdef01234567"
    changed = release.rewrite(root, FULL_NAME, sha, "1.0.0")
    assert set(changed) == set(release.REUSABLE)
    for relative, text in changed.items():
        assert f"uses: {release.PLACEHOLDER}" not in text
        before = (root / relative).read_text()
        uses = f"uses: {release.PLACEHOLDER}"
        assert text.count(f"uses: {FULL_NAME}/action@{sha} # v1.0.0") == before.count(uses)
        # The action's sub-actions (action/publish) are pinned the same way.
        sub = "uses: OWNER/keeptraining/action/publish@v1"
        assert text.count(f"uses: {FULL_NAME}/action/publish@{sha} # v1.0.0") == before.count(sub)
        assert before.count(uses) + before.count(sub) >= 1, f"{relative} has nothing to pin"
        # Nothing else changed, and every step's `uses:` is now pinned to a full SHA.
        unpinned = text.replace(
            f"{FULL_NAME}/action/publish@{sha} # v1.0.0", "OWNER/keeptraining/action/publish@v1"
        )
        assert unpinned.replace(f"{FULL_NAME}/action@{sha} # v1.0.0", release.PLACEHOLDER) == before
        data = yaml.safe_load(text)
        for job in data["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert PINNED.match(step["uses"]), step["uses"]


def test_rewrite_refuses_a_bad_sha_a_bad_repository_and_a_workflow_without_the_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    with pytest.raises(release.ReleaseError, match="not a full commit SHA"):
        release.rewrite(root, FULL_NAME, "v1.0.0")
    with pytest.raises(release.ReleaseError, match="is not OWNER/NAME"):
        release.rewrite(root, "keeptraining", "0" * 40)
    path = root / release.REUSABLE[0]
    path.write_text(
        re.sub(r"OWNER/keeptraining/action(/\w+)?@v1", "acme/keeptraining/action@main", path.read_text())
    )
    with pytest.raises(release.ReleaseError, match=r"does not use OWNER/keeptraining/action@v1 \(nor"):
        release.rewrite(root, FULL_NAME, "0" * 40)
    # The command writes the files.
    shutil.copy2(ROOT / release.REUSABLE[0], path)
    assert release.main(["rewrite", FULL_NAME, "a" * 40], env={}, root=root) == 0
    assert f"uses: {FULL_NAME}/action@{'a' * 40} # v1.0.0" in path.read_text()
    assert capsys.readouterr().out.count("pinned ") == len(release.REUSABLE)


# --------------------------------------------------------------------------- publishing, through the API


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    return done.stdout.strip()


class Remote:
    """The repository on "GitHub": a bare repository served by the emulator, and a work tree."""

    def __init__(self, tmp_path: Path, immutable: bool = True, annotated: bool = False) -> None:
        self.work = project(tmp_path / "work")
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", "Release 1.0.0")
        if annotated:
            git(self.work, "tag", "-a", "-m", "keeptraining 1.0.0", "v1.0.0")
        else:
            git(self.work, "tag", "v1.0.0")
        self.sha = git(self.work, "rev-parse", "HEAD")
        self.bare = tmp_path / "remote.git"
        git(tmp_path, "clone", "-q", "--bare", str(self.work), str(self.bare))
        self.emulator = ReleaseEmulator(
            FULL_NAME, self.bare, immutable_releases=immutable, head_sha=self.sha, tokens={TOKEN}
        )

    def env(self) -> dict[str, str]:
        return {
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": self.emulator.url,
            "GITHUB_REPOSITORY": FULL_NAME,
            "GITHUB_SHA": self.sha,
            "GITHUB_ACTIONS": "true",
        }

    def publish(self) -> int:
        code: int = release.main(["publish", "v1.0.0"], env=self.env(), root=self.work)
        return code

    def rev(self, name: str) -> str:
        return git(self.bare, "rev-parse", f"{name}^{{commit}}")


@pytest.fixture(autouse=True)
def no_write_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release, "SECONDS_BETWEEN_WRITES", 0.0)
    monkeypatch.setattr(release, "SECONDS_BETWEEN_REQUESTS", 0.0)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    made = Remote(tmp_path)
    with made.emulator:
        yield made
    assert made.emulator.violations == [], "the emulator answered outside GitHub's description"


def test_publish_makes_the_release_commit_publishes_an_immutable_release_and_moves_the_major_tag(
    remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    assert remote.publish() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    release_commit = remote.rev("v1.0.0")
    assert release_commit != remote.sha
    assert git(remote.bare, "rev-parse", f"{release_commit}^") == remote.sha  # a child of the tagged commit
    assert remote.rev("v1") == release_commit  # the major tag, created on the first 1.x.y
    changed = git(remote.bare, "diff", "--name-only", remote.sha, release_commit).splitlines()
    assert sorted(changed) == sorted(p.as_posix() for p in release.REUSABLE)
    for relative in release.REUSABLE:
        text = git(remote.bare, "show", f"v1.0.0:{relative.as_posix()}")
        assert re.search(rf"uses: {FULL_NAME}/action(/publish)?@{remote.sha} # v1.0.0", text)
        assert "uses: OWNER/keeptraining/action" not in text
    # The action at the release's commit is the action of the release's tag: the same tree.
    action_tree = git(remote.bare, "rev-parse", f"{remote.sha}:action")
    assert action_tree == git(remote.bare, "rev-parse", "v1.0.0:action")
    (published,) = remote.emulator.git_releases
    assert (published["tag_name"], published["draft"], published["immutable"]) == ("v1.0.0", False, True)
    assert published["body"].startswith("### Added\n- `keeptraining init`.")
    assert f"Release commit {release_commit}" in out and "Created v1 at" in out
    # Drafted first, then published (assets, were there any, go on the draft: immutable once published).
    ops = [r.operation for r in remote.emulator.requests]
    assert ops.index("repos/create-release") < ops.index("repos/update-release")
    assert ops.index("git/update-ref") < ops.index("repos/create-release"), "the tag moves before its lock"


def test_a_rerun_does_nothing_twice_and_a_later_release_moves_the_major_tag(
    remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    assert remote.publish() == 0
    first = remote.rev("v1.0.0")
    capsys.readouterr()
    assert remote.publish() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "already points to its release commit" in out and "already published" in out
    assert remote.rev("v1.0.0") == first and len(remote.emulator.git_releases) == 1
    # The tag of an immutable release cannot move any more (GitHub refuses it, and so does the emulator).
    assert remote.rev("v1") == first


def test_a_mutable_release_fails_the_job_with_how_to_make_the_next_immutable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = Remote(tmp_path, immutable=False)
    with remote.emulator:
        assert remote.publish() == 1
    out = capsys.readouterr().out
    assert "::error title=Release refused::the release v1.0.0 is published but not immutable" in out
    assert "Enable release immutability" in out
    assert remote.rev("v1") == remote.rev("v1.0.0") != remote.sha  # everything else was done


def test_every_operation_of_the_release_emulator_is_exercised(tmp_path: Path) -> None:
    """Each operation the release emulator adds answers PyGithub (through release.py) within GitHub's
    description: a first release, its re-run, and an annotated tag."""
    seen: set[str | None] = set()
    for annotated in (False, True):
        remote = Remote(tmp_path / f"annotated-{annotated}", annotated=annotated)
        with remote.emulator:
            assert remote.publish() == 0
            assert remote.publish() == 0
        assert remote.emulator.violations == []
        seen |= {r.operation for r in remote.emulator.requests}
    assert set(git_data.OPERATIONS) <= seen


def test_an_annotated_tag_is_followed_to_its_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = Remote(tmp_path, annotated=True)
    with remote.emulator:
        assert remote.publish() == 0, capsys.readouterr().out
        assert git(remote.bare, "rev-parse", "v1.0.0^") == remote.sha
        assert remote.emulator.violations == []


def test_a_tag_moved_by_someone_else_stops_the_release(
    remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    other = git(remote.work, "commit-tree", "-m", "elsewhere", git(remote.work, "rev-parse", "HEAD^{tree}"))
    git(remote.work, "push", "-q", str(remote.bare), f"{other}:refs/heads/other")
    git(remote.bare, "update-ref", "refs/tags/v1.0.0", other)
    assert remote.publish() == 1
    assert "neither the tagged commit" in capsys.readouterr().out
    assert remote.emulator.git_releases == []


def next_release(remote: Remote, version: str, parent: str) -> str:
    """A release commit of ``version`` on ``parent`` (its ``__version__`` and CHANGELOG entry), tagged
    ``v<version>`` and pushed with a branch of its own: its SHA."""
    git(remote.work, "checkout", "-q", "--detach", parent)
    (remote.work / release.VERSION_FILE).write_text(f'"""keeptraining."""\n\n__version__ = "{version}"\n')
    changelog = (remote.work / "CHANGELOG.md").read_text()
    entry = f"## [{version}] - 2026-12-07\n\n### Fixed\n- A fix released in {version}.\n\n"
    (remote.work / "CHANGELOG.md").write_text(changelog.replace("## [1.", entry + "## [1.", 1))
    git(remote.work, "commit", "-q", "-am", f"Release {version}")
    git(remote.work, "tag", f"v{version}")
    sha = git(remote.work, "rev-parse", "HEAD")
    git(remote.work, "push", "-q", str(remote.bare), f"{sha}:refs/heads/release-{version}", f"v{version}")
    return sha


def publish_version(remote: Remote, version: str, sha: str) -> int:
    code: int = release.main(
        ["publish", f"v{version}"], env={**remote.env(), "GITHUB_SHA": sha}, root=remote.work
    )
    return code


def test_the_major_tag_moves_forwards_to_a_newer_release_and_never_back_to_an_older_lines_patch(
    remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    assert remote.publish() == 0
    # 1.1.0 on main: v1 follows it.
    minor = next_release(remote, "1.1.0", remote.sha)
    assert publish_version(remote, "1.1.0", minor) == 0, capsys.readouterr().out
    assert remote.rev("v1") == remote.rev("v1.1.0") != remote.rev("v1.0.0")
    capsys.readouterr()
    # 1.0.1, a patch of the 1.0 line made after 1.1.0: released and tagged, but v1 stays on 1.1.0.
    patch = next_release(remote, "1.0.1", remote.sha)
    assert publish_version(remote, "1.0.1", patch) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert git(remote.bare, "rev-parse", "v1.0.1^") == patch  # its release commit
    assert [r["tag_name"] for r in remote.emulator.git_releases] == ["v1.0.0", "v1.1.0", "v1.0.1"]
    assert remote.rev("v1") == remote.rev("v1.1.0"), "v1 moved backwards to an older line's patch"
    assert "v1 stays on v1.1.0, newer than v1.0.1" in out and "Moved v1" not in out
    # Its re-run leaves v1 alone too; a later 1.1.1 moves it on.
    assert publish_version(remote, "1.0.1", patch) == 0
    assert remote.rev("v1") == remote.rev("v1.1.0")
    newest = next_release(remote, "1.1.1", minor)
    assert publish_version(remote, "1.1.1", newest) == 0
    assert remote.rev("v1") == remote.rev("v1.1.1")
