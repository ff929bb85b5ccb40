"""Model releases on GitHub: publish a reached chain's bundle, and find "the champion".

A model release is a GitHub Release whose tag is ``model-v<N>`` (N = 1, 2, 3 ... in the order the
models were published: unique, and it orders the releases), created through the REST API with
PyGithub, with three assets uploaded to its ``upload_url``: the model file, ``model-card.json`` and
``MODEL_CARD.md`` (reports/model_card.py). The newest one is marked "latest": that release is the
champion. ``champion(...)`` is the one place that finds it (the pull-request check builds on it).

Writes (create, upload) are sent once each: the client retries GETs only (dispatch.github_client).
A tag taken between our look and our create (two chains publishing at once) is answered by the
next number. A release that already holds this chain's model (a re-run of the publish job) is
completed, never duplicated: its body names the chain's final run and commit.
"""

from __future__ import annotations

import mimetypes
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from github import Github, GithubException
from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset
from github.Repository import Repository

from keeptraining.errors import PublishError
from keeptraining.github import dispatch
from keeptraining.reports import model_card
from keeptraining.reports.model_card import Champion
from keeptraining.reports.summary import md_escape

TAG_PREFIX = "model-v"
TAG_PATTERN = re.compile(r"model-v([1-9][0-9]{0,8})")
#: A marker in the release body: which chain (final run, commit) this release published.
MARKER = "<!-- keeptraining-model: run={run} commit={commit} -->"
MARKER_PATTERN = re.compile(r"<!-- keeptraining-model: run=(\S*) commit=(\S*) -->")
RELEASES_SCANNED = 100  # releases looked at for the next tag and for the champion
TAG_TRIES = 5  # tags tried when others publish at the same time
MAX_MODEL_BYTES = 2 * 1024**3  # GitHub's limit for one release asset
DOWNLOAD_CHUNK = 1024 * 1024


def client(api_url: str, token: str, repository: str) -> Github:
    """A PyGithub client for ``repository`` that retries GETs only (never a create or an upload)."""
    ctx = dispatch.GitHubContext(
        api_url=api_url.rstrip("/"), token=token, repository=repository, workflow="", ref=""
    )
    return dispatch.github_client(ctx)


def describe(exc: BaseException) -> str:
    if isinstance(exc, GithubException):
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or "")[:200]
        errors = data.get("errors")
        codes = (
            ", ".join(str(e.get("code")) for e in errors if isinstance(e, dict))
            if isinstance(errors, list)
            else ""
        )
        return f"HTTP {exc.status}" + (f": {message}" if message else "") + (f" ({codes})" if codes else "")
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _hint(exc: BaseException) -> str:
    if isinstance(exc, GithubException) and exc.status in (401, 403, 404):
        return (
            "Give the publish job `permissions: contents: write` (and no more), and pass it the "
            "workflow's token."
        )
    if isinstance(exc, GithubException) and exc.status == 422:
        return (
            "GitHub refused the release as sent (the chain's commit must be in the repository); "
            "re-run the publish job once that is fixed."
        )
    return "A network or server problem: re-run the publish job."


def tag_number(tag: str) -> int | None:
    found = TAG_PATTERN.fullmatch(tag)
    return int(found.group(1)) if found else None


def next_tag(tags: list[str]) -> str:
    """``model-v<N+1>`` after the highest ``model-v<N>`` among ``tags`` (``model-v1`` first)."""
    numbers = [n for n in (tag_number(t) for t in tags) if n is not None]
    return f"{TAG_PREFIX}{max(numbers, default=0) + 1}"


@dataclass
class Published:
    tag: str
    url: str
    release_id: int
    assets: dict[str, str]  # name -> browser download URL
    reused: bool = False  # the release already existed (a re-run completed it)


class Releases:
    """The repository's releases, through PyGithub."""

    def __init__(self, gh: Github, repository: str) -> None:
        self.gh = gh
        self.repository = repository
        self._repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = self.gh.get_repo(self.repository)
        return self._repo

    def latest(self) -> GitRelease | None:
        """The release GitHub marks latest (None when there is none)."""
        try:
            release = self.repo.get_latest_release()
            release.tag_name  # noqa: B018 - completes the lazy object: a 404 surfaces here
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise
        return release

    def by_tag(self, tag: str) -> GitRelease | None:
        try:
            release = self.repo.get_release(tag)
            release.id  # noqa: B018
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise
        return release

    def list(self, limit: int = RELEASES_SCANNED) -> list[GitRelease]:
        """The newest releases first, at most ``limit``."""
        out: list[GitRelease] = []
        for release in self.repo.get_releases():
            out.append(release)
            if len(out) >= limit:
                break
        return out

    def create(self, tag: str, name: str, body: str, target: str, *, latest: bool = True) -> GitRelease:
        """Create a published release, marked latest unless ``latest`` is False (a model worse than the
        champion: champion_check.py); one POST, never retried by the client."""
        return self.repo.create_git_release(
            tag=tag,
            name=name,
            message=body,
            draft=False,
            prerelease=False,
            target_commitish=target,
            make_latest="true" if latest else "false",
        )

    def upload(self, release: GitRelease, path: Path, name: str) -> GitReleaseAsset:
        """Upload one asset to the release's ``upload_url``."""
        content_type = (
            "application/json"
            if name.endswith(".json")
            else "text/markdown"
            if name.endswith(".md")
            else (mimetypes.guess_type(name)[0] or "application/octet-stream")
        )
        return release.upload_asset(str(path), label="", content_type=content_type, name=name)

    def download(self, asset: GitReleaseAsset, max_bytes: int) -> bytes:
        """An asset's bytes (at most ``max_bytes``: PublishError beyond)."""
        if asset.size > max_bytes:
            raise PublishError(
                f"The release asset {asset.name!r} is {asset.size} bytes; at most {max_bytes} are read."
            )
        _status, _headers, chunks = asset.download_asset(None, chunk_size=DOWNLOAD_CHUNK)
        return _bounded(chunks, max_bytes, asset.name)

    def download_to(self, asset: GitReleaseAsset, dest: Path, max_bytes: int = MAX_MODEL_BYTES) -> Path:
        _status, _headers, chunks = asset.download_asset(None, chunk_size=DOWNLOAD_CHUNK)
        size = 0
        with dest.open("xb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PublishError(f"The release asset {asset.name!r} is larger than {max_bytes} bytes.")
                fh.write(chunk)
        return dest


def _bounded(chunks: Iterator[bytes], max_bytes: int, name: str) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > max_bytes:
            raise PublishError(f"The release asset {name!r} is larger than {max_bytes} bytes.")
    return bytes(out)


def _assets(release: GitRelease) -> dict[str, GitReleaseAsset]:
    return {asset.name: asset for asset in release.get_assets()}


def _marked(release: GitRelease) -> tuple[str, str] | None:
    found = MARKER_PATTERN.search(release.body or "")
    return (found.group(1), found.group(2)) if found else None


def publish(
    releases: Releases,
    make_bundle: Callable[[str], Path],
    card: dict[str, Any],
    *,
    run_id: str,
    commit: str,
    target: str,
    latest: bool = True,
) -> Published:
    """Create the next ``model-v<N>`` release (latest) and upload the bundle's three files.

    ``make_bundle(tag)`` writes the model file, model-card.json and MODEL_CARD.md (which name the
    tag) into a folder and returns it. A release that already names this run and commit is completed
    instead. PublishError on any refusal or network fault.
    """
    marker = MARKER.format(run=run_id, commit=commit)
    names = [card["model"]["file"], model_card.CARD_JSON, model_card.CARD_MD]
    try:
        existing = releases.list()
        release = next((r for r in existing if _marked(r) == (run_id, commit)), None)
        reused = release is not None
        tags = [r.tag_name for r in existing]
        for _ in range(TAG_TRIES if release is None else 0):
            tag = next_tag(tags)
            body = _release_body(card, tag, marker)
            try:
                name = f"Model {tag}: {md_escape(card['metric'], 40)} {card['accuracy']:.4f}"
                release = releases.create(tag, name, body, target, latest=latest)
            except GithubException as exc:
                if exc.status == 422 and "already_exists" in describe(exc):  # taken meanwhile: next number
                    tags.append(tag)
                    continue
                raise
            break
        if release is None:
            raise PublishError(
                f"No free release tag after {TAG_TRIES} tries ({tags[-1]} was the last).",
                hint="Re-run the publish job.",
            )
        bundle = make_bundle(release.tag_name)
        present = _assets(release)
        uploaded = {}
        for name in names:
            if name not in present:
                present[name] = releases.upload(release, bundle / name, name)
            uploaded[name] = present[name].browser_download_url
    except (GithubException, requests.RequestException) as exc:
        raise PublishError(
            f"The model release could not be published: {describe(exc)}.", hint=_hint(exc)
        ) from None
    return Published(
        tag=release.tag_name, url=release.html_url, release_id=release.id, assets=uploaded, reused=reused
    )


def _release_body(card: dict[str, Any], tag: str, marker: str) -> str:
    commit = card.get("commit") or "?"
    runs = [r for r in card.get("runs", []) if r.get("run_url")]
    metric = md_escape(card["metric"], 40)
    lines = [
        f"**{metric} {card['accuracy']:.4f}** (threshold {card['threshold']}) after "
        f"{card['epochs']} epochs, trained on commit `{str(commit)[:12]}` by keeptraining.",
        "",
        f"Assets: `{card['model']['file']}` (sha256 `{card['model']['sha256']}`), "
        f"`{model_card.CARD_JSON}`, `{model_card.CARD_MD}`.",
        "",
    ]
    if runs:
        lines += ["Runs: " + ", ".join(f"[attempt {r['attempt']}]({r['run_url']})" for r in runs), ""]
    repo = card.get("repository")
    if repo:
        lines += [
            "Verify the model's provenance:",
            "",
            "```bash",
            f"gh release download {tag} --repo {repo} --pattern {card['model']['file']}",
            f"gh attestation verify {card['model']['file']} --repo {repo}",
            "```",
            "",
        ]
    lines.append(marker)
    return "\n".join(lines)


def _is_model_release(release: GitRelease) -> bool:
    return tag_number(release.tag_name) is not None and not release.draft and not release.prerelease


def champion(releases: Releases, *, download_model_to: Path | None = None) -> Champion | None:
    """The champion: the latest model release and its model-card.json (None when there is none).

    The latest release if it is a model release (``model-v<N>``), else the newest model release
    among the recent ones (a repository may publish other releases too). Its card is untrusted:
    checked against the schema. With ``download_model_to`` (a folder), the model file is
    downloaded there and must match the card's sha256. PublishError when the release or its card
    cannot be read or trusted.
    """
    try:
        latest = releases.latest()
        if latest is None or not _is_model_release(latest):
            candidates = [r for r in releases.list() if _is_model_release(r)]
            numbered = sorted(candidates, key=lambda r: tag_number(r.tag_name) or 0, reverse=True)
            latest = numbered[0] if numbered else None
        if latest is None:
            return None
        assets = _assets(latest)
        card_asset = assets.get(model_card.CARD_JSON)
        if card_asset is None:
            raise PublishError(
                f"The model release {latest.tag_name} has no {model_card.CARD_JSON}.",
                hint="Delete the release or publish the model again.",
            )
        where = f"release {latest.tag_name}"
        card = model_card.parse_card(releases.download(card_asset, model_card.MAX_CARD_BYTES), where)
        model = assets.get(card["model"]["file"])
        if model is None:
            raise PublishError(f"The model release {latest.tag_name} has no {card['model']['file']}.")
        path = None
        if download_model_to is not None:
            path = _download_checked(releases, model, card, download_model_to)
    except (GithubException, requests.RequestException) as exc:
        raise PublishError(
            f"The champion release could not be read: {describe(exc)}.", hint=_hint(exc)
        ) from None
    return Champion(
        card=card,
        source="release",
        path=path,
        tag=latest.tag_name,
        url=latest.html_url,
        model_url=model.browser_download_url,
        model_asset_id=model.id,
    )


def _download_checked(releases: Releases, asset: GitReleaseAsset, card: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / card["model"]["file"]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        part = releases.download_to(asset, Path(tmp) / "model.part")
        sha, size = model_card.file_digest(Path(tmp), "model.part", "the downloaded model")
        if sha != card["model"]["sha256"] or size != card["model"]["bytes"]:
            raise PublishError(
                f"The champion's model {asset.name} does not match its card's sha256 "
                f"({sha[:12]}…, card {card['model']['sha256'][:12]}…)."
            )
        part.replace(dest)
    return dest
