"""GitHub in a box's cache service (``results_service.CacheService``): GitHub's cache rules over real
HTTP, and the official ``actions/cache`` saving and restoring through it under act."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from services.act_driver import ActChain, init_repo, require_official_actions
from services.github_box import GitHubBox
from services.results_service import CACHE_SERVICE, ResultsService

TOKEN = "ghs_cacheBoxToken0123456789"
VERSION = "a" * 64  # the client's sha256 of the paths and the compression method
MAIN, FEATURE = "refs/heads/main", "refs/heads/feature"


@pytest.fixture
def results() -> Iterator[ResultsService]:
    with ResultsService() as service:
        yield service


def call(service: ResultsService, method: str, body: dict[str, Any], token: str) -> requests.Response:
    return requests.post(
        f"{service.url}twirp/{CACHE_SERVICE}/{method}",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def save(
    service: ResultsService, token: str, key: str, data: bytes, version: str = VERSION
) -> requests.Response:
    """What actions/cache does to save: reserve, one PUT of the archive, finalize."""
    created = call(service, "CreateCacheEntry", {"key": key, "version": version}, token)
    if created.status_code != 200:
        return created
    put = requests.put(
        created.json()["signed_upload_url"], data=data, timeout=10, headers={"x-ms-blob-type": "BlockBlob"}
    )
    assert put.status_code == 201
    return call(
        service,
        "FinalizeCacheEntryUpload",
        {"key": key, "version": version, "size_bytes": str(len(data))},
        token,
    )


def restore(
    service: ResultsService,
    token: str,
    key: str,
    restore_keys: list[str] | None = None,
    version: str = VERSION,
) -> tuple[str | None, bytes]:
    """(the matched key, the archive) of a restore, or (None, b"") on a miss."""
    body: dict[str, Any] = {"key": key, "version": version}
    if restore_keys:
        body["restore_keys"] = restore_keys
    answer = call(service, "GetCacheEntryDownloadURL", body, token)
    assert answer.status_code == 200, answer.text
    if not answer.json().get("ok"):
        return None, b""
    blob = requests.get(answer.json()["signed_download_url"], timeout=10)
    assert blob.status_code == 200
    return answer.json()["matched_key"], blob.content


def test_a_restore_matches_the_key_then_its_prefix_then_the_restore_keys_newest_first(
    results: ResultsService,
) -> None:
    token = results.tokens.mint(1)
    for key, data in (("data-abc-1", b"one"), ("data-abc-2", b"two"), ("data-xyz-1", b"three")):
        finalized = save(results, token, key, data)
        assert finalized.status_code == 200 and finalized.json()["ok"] is True
    assert restore(results, token, "data-abc-1") == ("data-abc-1", b"one")  # exact, though older
    assert restore(results, token, "data-abc") == ("data-abc-2", b"two")  # the key's prefix, newest
    assert restore(results, token, "data-new", ["data-xyz", "data-"]) == ("data-xyz-1", b"three")
    assert restore(results, token, "data-new", ["data-"]) == ("data-xyz-1", b"three")  # newest of all
    assert restore(results, token, "other", ["nothing-"]) == (None, b"")  # a miss is ok: false, not an error
    assert restore(results, token, "data-abc-1", version="b" * 64) == (None, b"")  # the version must match
    assert [(e.key, e.size, e.scope) for e in results.caches.saved()] == [
        ("data-abc-1", 3, MAIN),
        ("data-abc-2", 3, MAIN),
        ("data-xyz-1", 5, MAIN),
    ]
    assert [lookup.matched for lookup in results.caches.lookups] == [
        "data-abc-1",
        "data-abc-2",
        "data-xyz-1",
        "data-xyz-1",
        None,
        None,
    ]


def test_an_entry_is_immutable_a_second_save_of_its_key_is_a_conflict(results: ResultsService) -> None:
    token = results.tokens.mint(2)
    assert save(results, token, "k", b"first").status_code == 200
    again = save(results, token, "k", b"second")
    assert again.status_code == 409
    assert again.json() == {
        "code": "already_exists",
        "msg": "cache entry with the same key, version, and scope already exists",
    }
    assert save(results, token, "k", b"other version", version="c" * 64).status_code == 200
    assert restore(results, token, "k") == ("k", b"first")


def test_caches_are_scoped_by_branch_and_the_default_branch_is_readable_from_others(
    results: ResultsService,
) -> None:
    on_main = results.tokens.mint(3)
    on_feature = results.tokens.mint(4, ref=FEATURE)
    assert save(results, on_main, "deps-1", b"main's").status_code == 200
    assert restore(results, on_feature, "deps-1") == ("deps-1", b"main's")  # read from the default branch
    assert save(results, on_feature, "deps-1", b"feature's").status_code == 200  # its own scope: no conflict
    assert restore(results, on_feature, "deps-1") == ("deps-1", b"feature's")  # its own scope first
    assert save(results, on_feature, "feature-only", b"x").status_code == 200
    assert restore(results, on_main, "feature-only") == (None, b"")  # main never reads a branch's caches
    assert {(e.key, e.scope) for e in results.caches.saved()} == {
        ("deps-1", MAIN),
        ("deps-1", FEATURE),
        ("feature-only", FEATURE),
    }


def test_an_entry_unused_for_seven_days_is_evicted(results: ResultsService) -> None:
    token = results.tokens.mint(5)
    assert save(results, token, "old", b"x").status_code == 200
    (entry,) = results.caches.saved()
    results.caches.age(entry, timedelta(days=6))
    assert restore(results, token, "old") == ("old", b"x")  # a restore counts as a use
    results.caches.age(entry, timedelta(days=7))
    assert restore(results, token, "old") == (None, b"")
    assert save(results, token, "old", b"new").status_code == 200  # the key is free again


@pytest.mark.parametrize(
    ("method", "body", "status", "code"),
    [
        ("CreateCacheEntry", {"key": "a,b", "version": VERSION}, 400, "invalid_argument"),
        ("CreateCacheEntry", {"key": "k" * 513, "version": VERSION}, 400, "invalid_argument"),
        ("CreateCacheEntry", {"key": "k"}, 400, "invalid_argument"),
        ("CreateCacheEntry", {"key": "k", "version": VERSION, "scope": "refs/heads/x"}, 400, "malformed"),
        (
            "GetCacheEntryDownloadURL",
            {"key": "k", "version": VERSION, "restore_keys": "k-"},
            400,
            "malformed",
        ),
        (
            "GetCacheEntryDownloadURL",
            {"key": "k", "version": VERSION, "restore_keys": ["a,b"]},
            400,
            "invalid_argument",
        ),
        (
            "FinalizeCacheEntryUpload",
            {"key": "never", "version": VERSION, "size_bytes": "1"},
            404,
            "not_found",
        ),
    ],
    ids=[
        "comma",
        "too-long",
        "no-version",
        "unknown-field",
        "restore-keys-not-a-list",
        "restore-key-comma",
        "finalize-unreserved",
    ],
)
def test_requests_github_would_refuse_are_refused(
    results: ResultsService, method: str, body: dict[str, Any], status: int, code: str
) -> None:
    answer = call(results, method, body, results.tokens.mint(6))
    assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_finalize_checks_the_size_and_every_call_needs_a_runtime_token(results: ResultsService) -> None:
    token = results.tokens.mint(7)
    created = call(results, "CreateCacheEntry", {"key": "k", "version": VERSION}, token)
    requests.put(
        created.json()["signed_upload_url"],
        data=b"12345",
        timeout=10,
        headers={"x-ms-blob-type": "BlockBlob"},
    )
    wrong = call(
        results, "FinalizeCacheEntryUpload", {"key": "k", "version": VERSION, "size_bytes": "4"}, token
    )
    assert (wrong.status_code, wrong.json()["code"]) == (400, "invalid_argument")
    assert results.caches.saved() == []
    anonymous = call(results, "GetCacheEntryDownloadURL", {"key": "k", "version": VERSION}, "nope")
    assert anonymous.status_code == 401


# --------------------------------------------------------------------------- the official action


WORKFLOW = """\
name: Cache box
on: [push, workflow_dispatch]
jobs:
  data:
    runs-on: ubuntu-latest
    steps:
      - id: cache
        uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5
        with:
          path: data
          key: data-${{ github.run_id }}
          restore-keys: data-
      - name: Use the data
        env:
          HIT: ${{ steps.cache.outputs.cache-hit }}
        run: |
          mkdir -p data
          if [ -f data/first.txt ]; then echo "restored: $(cat data/first.txt) hit=$HIT"
          else echo "downloaded in run $GITHUB_RUN_ID" > data/first.txt; fi
"""


@pytest.mark.e2e
def test_the_official_cache_action_saves_and_restores_through_the_box(tmp_path: Path) -> None:
    require_official_actions()
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "cache.yml").write_text(WORKFLOW)
    init_repo(repo, "acme/cache")
    with GitHubBox(repo, tmp_path / "box", "acme/cache", TOKEN, ".github/workflows/cache.yml") as box:
        (tmp_path / "work").mkdir()
        chain = ActChain(repo, box, tmp_path / "work")
        first_run = chain.push()
        assert first_run is not None
        first = chain.step()
        assert first is not None
        assert first.returncode == 0, first.log[-3000:]
        assert f"Cache saved with key: data-{first_run.id}" in first.log
        second_id = chain.dispatch({})
        second = chain.step()
        assert second is not None
        assert second.returncode == 0, second.log[-3000:]
        assert f"Cache hit for restore-key: data-{first_run.id}" in second.log
        assert f"restored: downloaded in run {first_run.id} hit=false" in second.log
        assert f"Cache saved with key: data-{second_id}" in second.log  # a restore-key hit saves anew
        box.emulator.rerun(second_id)
        third = chain.step()
        assert third is not None
        assert third.returncode == 0, third.log[-3000:]
        assert f"Cache hit occurred on the primary key data-{second_id}, not saving cache." in third.log
        assert [e.key for e in box.results.caches.saved()] == [f"data-{first_run.id}", f"data-{second_id}"]
        assert [lookup.matched for lookup in box.results.caches.lookups] == [
            None,
            f"data-{first_run.id}",
            f"data-{second_id}",
        ]
        versions = {
            json.dumps(c.request.get("version")) for c in box.results.calls if c.service == CACHE_SERVICE
        }
        assert len(versions) == 1  # the same paths and compression: one version
