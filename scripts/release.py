#!/usr/bin/env python3
"""Release keeptraining: what .github/workflows/release.yml runs when a tag vX.Y.Z is pushed.

    scripts/release.py check vX.Y.Z                 CHANGELOG.md and the version agree with the tag;
                                                    prints the release notes
    scripts/release.py rewrite OWNER/REPO SHA       (in the work tree) the reusable workflows' own
                                                    action references -> OWNER/REPO/action@SHA
    scripts/release.py publish vX.Y.Z               (GitHub Actions) the release, through the API:

1. check: the tag is ``vX.Y.Z``; ``__version__`` in action/keeptraining/__init__.py (the one place the
   version is written) is ``X.Y.Z``; CHANGELOG.md (Keep a Changelog) has an ``[Unreleased]`` section and
   a ``## [X.Y.Z] - YYYY-MM-DD`` entry with content, the newest of its entries.
2. the release commit: a reusable workflow cannot name its own ref, so keeptraining.yml,
   parallel-training.yml and publish-model.yml say ``OWNER/keeptraining/action@v1`` (or its
   sub-action ``action/publish``) on the default branch. The release commit
   (a child of the tagged commit, made with the Git Data API) rewrites each to ``<this repository>/action@<the
   tagged commit>``: whoever pins ``keeptraining.yml@vX.Y.Z`` (or its SHA) runs the action of the same
   release, never a later one. The tag ``vX.Y.Z`` is moved to that commit.
3. the GitHub release for ``vX.Y.Z``, created as a draft and then published with the CHANGELOG entry as its
   notes; with the repository's "release immutability" setting on, the published release and its tag can no
   longer change. A release that comes out mutable fails the job (after step 4) with how to turn it on.
4. the major tag ``vX`` moves to the release commit (created on a first ``X.0.0``), unless a newer ``vX.Y.Z``
   tag exists: ``vX`` means the newest X.y.z release, so it never moves backwards. A patch of an older line
   (1.0.1 released after 1.1.0) is released and tagged like any other, and ``vX`` stays where it is (said
   in the log); whoever wants it pins ``@v1.0.1``.

Run again (a re-run of the job), it finds the release commit it made and the release it published, and
does nothing twice. The token comes from ``GITHUB_TOKEN`` (the job needs ``contents: write``), the API from
``GITHUB_API_URL``, the repository and the tagged commit from ``GITHUB_REPOSITORY`` and ``GITHUB_SHA``.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = Path("action") / "keeptraining" / "__init__.py"
CHANGELOG = Path("CHANGELOG.md")
#: The reusable workflows whose action references the release pins.
REUSABLE = (
    Path(".github") / "workflows" / "keeptraining.yml",
    Path(".github") / "workflows" / "parallel-training.yml",
    Path(".github") / "workflows" / "publish-model.yml",
)
#: How they name the action on the default branch (README's placeholder owner and major tag).
PLACEHOLDER = "OWNER/keeptraining/action@v1"
#: PyGithub's pauses between two requests and two writes (GitHub's advice against its secondary rate
#: limits; PyGithub's defaults).
SECONDS_BETWEEN_REQUESTS = 0.25
SECONDS_BETWEEN_WRITES = 1.0
_TAG = re.compile(r"v(?P<major>0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)")
_ENTRY = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\S+))?[ \t]*$", re.MULTILINE)
#: ... and its sub-actions (``OWNER/keeptraining/action/publish@v1``): the same placeholder with a path.
_SELF_USES = re.compile(
    r"(?P<lead>uses:\s*)OWNER/keeptraining/action(?P<sub>(?:/[\w.-]+)*)@v1"
    r"(?P<tail>[ \t]*(?:#[^\n]*)?)$",
    re.MULTILINE,
)


class ReleaseError(Exception):
    """What stops the release, with what to fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Release:
    tag: str
    version: str
    major: str
    notes: str


# --------------------------------------------------------------------------- the checks (offline)


def package_version(root: Path = ROOT) -> str:
    """``__version__`` as written in the package (read, not imported)."""
    path = root / VERSION_FILE
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ReleaseError(
        f'{VERSION_FILE} has no `__version__ = "X.Y.Z"`.',
        hint="The version is written there, once: add the line.",
    )


def changelog_notes(text: str, version: str) -> str:
    """The CHANGELOG entry of ``version`` (Keep a Changelog), checked; ReleaseError otherwise."""
    entries = list(_ENTRY.finditer(text))
    names = [m["version"] for m in entries]
    if "Unreleased" not in names:
        raise ReleaseError(
            f"{CHANGELOG} has no `## [Unreleased]` section.",
            hint="Keep a Changelog keeps one at the top for changes not released yet.",
        )
    released = [m for m in entries if m["version"] != "Unreleased"]
    entry = next((m for m in released if m["version"] == version), None)
    if entry is None:
        raise ReleaseError(
            f"{CHANGELOG} has no entry for {version}.",
            hint=f"Move the [Unreleased] changes under `## [{version}] - "
            f"{datetime.date.today().isoformat()}`, commit, and tag that commit.",
        )
    if released[0] is not entry:
        raise ReleaseError(
            f"{CHANGELOG}: {version} is not the newest entry ({released[0]['version']} is).",
            hint="The newest entry comes first, under [Unreleased]: release in order.",
        )
    try:
        datetime.date.fromisoformat(entry["date"] or "")
    except ValueError:
        raise ReleaseError(
            f"{CHANGELOG}: the entry of {version} has no date (`## [{version}] - YYYY-MM-DD`).",
            hint="Write the release date after the version.",
        ) from None
    following = next((m.start() for m in entries if m.start() > entry.start()), None)
    end = following if following is not None else len(text)
    body = text[entry.end() : end]
    body = re.split(r"^\[[^\]]+\]: ", body, maxsplit=1, flags=re.MULTILINE)[0].strip()  # link references
    if not re.search(r"^\s*[-*] \S", body, re.MULTILINE):
        raise ReleaseError(
            f"{CHANGELOG}: the entry of {version} lists no change.",
            hint="List the changes under ### Added / Changed / Fixed ... as `- ` items.",
        )
    return body


def check(tag: str, root: Path = ROOT) -> Release:
    match = _TAG.fullmatch(tag)
    if not match:
        raise ReleaseError(
            f"tag {tag!r} is not a release tag vX.Y.Z.",
            hint="The release workflow runs on tags such as v1.2.3.",
        )
    version = tag[1:]
    written = package_version(root)
    if written != version:
        raise ReleaseError(
            f"the tag is {tag}, but {VERSION_FILE} says __version__ = {written!r}.",
            hint=f'Set __version__ = "{version}" (and the CHANGELOG entry), commit, and tag '
            f"that commit; or tag v{written}.",
        )
    if not (root / CHANGELOG).is_file():
        raise ReleaseError(f"{CHANGELOG} is missing.", hint="Keep a Changelog: https://keepachangelog.com")
    notes = changelog_notes((root / CHANGELOG).read_text(), version)
    return Release(tag, version, match["major"], notes)


def rewrite(root: Path, repository: str, sha: str, version: str = "") -> dict[Path, str]:
    """The reusable workflows with their own action references pinned: {path: new text}."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ReleaseError(f"repository {repository!r} is not OWNER/NAME.")
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise ReleaseError(
            f"{sha!r} is not a full commit SHA.", hint="Pin the release's commit, 40 hex digits."
        )
    comment = f" # v{version}" if version else ""
    changed: dict[Path, str] = {}
    for relative in REUSABLE:
        text = (root / relative).read_text()
        if _SELF_USES.search(text) is None:
            raise ReleaseError(
                f"{relative} does not use {PLACEHOLDER} (nor one of its sub-actions): nothing to pin to "
                "the release.",
                hint=f"Its action steps say `uses: {PLACEHOLDER}` on the default branch; the "
                "release rewrites them.",
            )
        pinned = lambda m: f"{m['lead']}{repository}/action{m['sub']}@{sha}{comment}"  # noqa: E731
        changed[relative] = _SELF_USES.sub(pinned, text)
    return changed


# --------------------------------------------------------------------------- publishing (the API)


def publish(tag: str, env: Mapping[str, str], root: Path = ROOT, say: Callable[[str], None] = print) -> int:
    from github import Auth, Github  # noqa: PLC0415 (only the API part needs PyGithub)

    release = check(tag, root)
    token, repository = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
    tagged = env.get("GITHUB_SHA", "")
    if not token:
        raise ReleaseError(
            "GITHUB_TOKEN is not set.",
            hint="Pass the job's token (contents: write): env: GITHUB_TOKEN: ${{ github.token }}.",
        )
    files = rewrite(root, repository, tagged, release.version)
    gh = Github(
        auth=Auth.Token(token),
        base_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        retry=None,
        seconds_between_requests=SECONDS_BETWEEN_REQUESTS,
        seconds_between_writes=SECONDS_BETWEEN_WRITES,
    )
    repo = gh.get_repo(repository)
    commit_sha = _release_commit(repo, release, files, repository, tagged, say)
    published = _published_release(repo, release, commit_sha, say)
    newer = _newer_release(repo, release)
    if newer is None:
        _move_major_tag(repo, f"v{release.major}", commit_sha, say)
    else:
        say(
            f"v{release.major} stays on {newer}, newer than {tag}: the major tag follows the newest "
            f"{release.major}.y.z release and never moves backwards (pin @{tag} for this one)."
        )
    if published.raw_data.get("immutable") is not True:
        raise ReleaseError(
            f"the release {tag} is published but not immutable: its tag and files can still be changed.",
            hint='Turn on Settings -> General -> Releases -> "Enable release immutability" '
            "for the next releases (a published release does not become immutable "
            "afterwards).",
        )
    return 0


def _release_commit(
    repo: Any,
    release: Release,
    files: Mapping[Path, str],
    repository: str,
    tagged: str,
    say: Callable[[str], None],
) -> str:
    """The release commit (made, or found on a re-run), with the tag moved to it."""
    from github import InputGitTreeElement  # noqa: PLC0415

    tag = release.tag
    tag_ref = repo.get_git_ref(f"tags/{tag}")
    target = tag_ref.object.sha
    if tag_ref.object.type == "tag":  # an annotated tag: the commit it names
        target = repo.get_git_tag(target).object.sha
    if target == tagged:
        base = repo.get_git_commit(tagged)
        elements = [
            InputGitTreeElement(path.as_posix(), "100644", "blob", content=text)
            for path, text in files.items()
        ]
        tree = repo.create_git_tree(elements, base.tree)
        message = (
            f"Release {tag}\n\nThe reusable workflows run {repository}/action@{tagged}, the "
            "action of this release.\n"
        )
        commit_sha: str = repo.create_git_commit(message, tree, [base]).sha
        tag_ref.edit(commit_sha, force=True)
        say(
            f"Release commit {commit_sha}: {', '.join(p.as_posix() for p in files)} pinned to "
            f"{repository}/action@{tagged}; {tag} moved there."
        )
        return commit_sha
    if [p.sha for p in repo.get_git_commit(target).parents] == [tagged]:
        say(f"{tag} already points to its release commit {target} (a re-run).")
        return str(target)
    raise ReleaseError(
        f"{tag} points to {target}, neither the tagged commit {tagged} nor its release commit.",
        hint="Someone moved the tag: push the tag again on the commit to release.",
    )


def _published_release(repo: Any, release: Release, commit_sha: str, say: Callable[[str], None]) -> Any:
    """The GitHub release of the tag: drafted, then published (or found, on a re-run)."""
    from github import GithubException  # noqa: PLC0415

    try:
        found = repo.get_release(release.tag)  # published releases only: a draft has no tag yet
        say(f"The release {release.tag} is already published: {found.html_url}")
        return found
    except GithubException as exc:
        if exc.status != 404:
            raise
    draft = repo.create_git_release(
        release.tag, name=release.tag, message=release.notes, draft=True, target_commitish=commit_sha
    )
    published = draft.update_release(name=release.tag, message=release.notes, draft=False)
    say(f"Published the release {release.tag}: {published.html_url}")
    return published


def _version(tag: str) -> tuple[int, ...] | None:
    """``v1.2.3`` -> (1, 2, 3); None for any other tag."""
    return tuple(int(n) for n in tag[1:].split(".")) if _TAG.fullmatch(tag) else None


def _newer_release(repo: Any, release: Release) -> str | None:
    """The newest release tag ``vX.Y.Z`` of this release's major version above its own, if any."""
    mine = _version(release.tag)
    found = (r.ref.removeprefix("refs/tags/") for r in repo.get_git_matching_refs(f"tags/v{release.major}."))
    newer = [(v, t) for t in found if (v := _version(t)) is not None and mine is not None and v > mine]
    return max(newer)[1] if newer else None


def _move_major_tag(repo: Any, major: str, commit_sha: str, say: Callable[[str], None]) -> None:
    from github import GithubException  # noqa: PLC0415

    try:
        ref = repo.get_git_ref(f"tags/{major}")
    except GithubException as exc:
        if exc.status != 404:
            raise
        repo.create_git_ref(f"refs/tags/{major}", commit_sha)
        say(f"Created {major} at {commit_sha}.")
        return
    ref.edit(commit_sha, force=True)
    say(f"Moved {major} to {commit_sha}.")


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("tag")
    rewriting = sub.add_parser("rewrite")
    rewriting.add_argument("repository")
    rewriting.add_argument("sha")
    sub.add_parser("publish").add_argument("tag")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(check(args.tag, root).notes)
        elif args.command == "rewrite":
            for path, text in rewrite(root, args.repository, args.sha, package_version(root)).items():
                (root / path).write_text(text)
                print(f"pinned {path}")
        else:
            return publish(args.tag, env, root)
    except ReleaseError as exc:
        message = f"{exc} {exc.hint}".strip()
        in_actions = env.get("GITHUB_ACTIONS") == "true"
        print(
            f"::error title=Release refused::{_escape(message)}" if in_actions else f"error: {message}",
            file=sys.stdout if in_actions else sys.stderr,
        )
        return 1
    return 0


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


if __name__ == "__main__":
    sys.exit(main())
