"""The GitHub emulator with a real git repository behind it: the Git Data API and releases.

``ReleaseEmulator`` serves what ``scripts/release.py`` calls, each operation checked against GitHub's
OpenAPI description like every other (``github_emulator``), on a bare git repository:

* ``git/get-ref``, ``git/list-matching-refs`` (every ref whose name starts with the given one),
  ``git/update-ref`` (a fast-forward unless ``force``), ``git/create-ref``, ``git/get-commit``,
  ``git/get-tag``: the repository's refs and objects, read and written with git;
* ``git/create-tree`` (``base_tree`` plus entries given by ``sha`` or inline ``content``, which GitHub
  stores as a blob) and ``git/create-commit``: real objects, so a test can ``git show`` the result;
* ``repos/create-release``, ``repos/update-release``, ``repos/get-release-by-tag``: a draft has no tag
  yet and is not found by tag; publishing creates the tag (at ``target_commitish``) if it is missing.
  With ``immutable_releases`` (the repository setting, "Enable release immutability"), a published
  release is immutable: its tag can no longer be moved or deleted, and the release not edited, as on
  GitHub (docs: "Immutable releases").
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any

from services.github_emulator import GitHubEmulator, _Reply

#: The operations this emulator adds to the base one (test_release.py exercises each).
OPERATIONS = (
    "git/get-ref",
    "git/list-matching-refs",
    "git/update-ref",
    "git/create-ref",
    "git/get-commit",
    "git/get-tag",
    "git/create-tree",
    "git/create-commit",
    "repos/create-release",
    "repos/update-release",
    "repos/get-release-by-tag",
)
Params = dict[str, Any]
Reply = tuple[int, Any, dict[str, str]]  # status, body, headers
BOT = {"name": "github-actions[bot]", "email": "41898282+github-actions[bot]@users.noreply.github.com"}


class ReleaseEmulator(GitHubEmulator):
    """The emulator over the bare repository ``git_dir`` (see the module docstring)."""

    def __init__(
        self, repository: str, git_dir: Path, *, immutable_releases: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(repository, **kwargs)
        self.git_dir = git_dir
        self.immutable_releases = immutable_releases
        # Its own store: the release workflow's releases (drafts, immutability) are kept apart from the base
        # emulator's model releases (``EmulatedRelease``); these operations override the base's.
        self.git_releases: list[dict[str, Any]] = []

    def extra_operations(self) -> dict[str, Any]:
        handlers = {
            "git/get-ref": self._op_get_ref,
            "git/list-matching-refs": self._op_list_matching_refs,
            "git/update-ref": self._op_update_ref,
            "git/create-ref": self._op_create_ref,
            "git/get-commit": self._op_get_commit,
            "git/get-tag": self._op_get_tag,
            "git/create-tree": self._op_create_tree,
            "git/create-commit": self._op_create_commit,
            "repos/create-release": self._op_create_release,
            "repos/update-release": self._op_update_release,
            "repos/get-release-by-tag": self._op_get_release_by_tag,
        }
        assert set(handlers) == set(OPERATIONS)
        return handlers

    # ---- git
    def git(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise _Reply(422, f"git {args[0]} failed: {done.stderr.strip()[:200]}")
        return done.stdout.strip()

    def _object_type(self, sha: str) -> str | None:
        done = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "cat-file", "-t", sha],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def _ref_sha(self, ref: str) -> str | None:
        done = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-parse", "--verify", "-q", ref],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def _ref_json(self, ref: str, sha: str) -> dict[str, Any]:
        kind = self._object_type(sha) or "commit"
        api = f"{self.url}/repos/{self.full_name}/git"
        return {
            "ref": ref,
            "node_id": f"REF_{sha[:12]}",
            "url": f"{api}/{ref}",
            "object": {"type": kind, "sha": sha, "url": f"{api}/{kind}s/{sha}"},
        }

    def _protected_tag(self, ref: str) -> bool:
        """A tag of a published immutable release."""
        return any(
            r["immutable"] and not r["draft"] and ref == f"refs/tags/{r['tag_name']}"
            for r in self.git_releases
        )

    def _op_get_ref(self, params: Params, body: Any, version: str) -> Reply:
        ref = f"refs/{params['ref']}"
        sha = self._ref_sha(ref)
        if sha is None:
            raise _Reply(404, "Not Found")
        return 200, self._ref_json(ref, sha), {}

    def _op_list_matching_refs(self, params: Params, body: Any, version: str) -> Reply:
        prefix = f"refs/{params['ref']}"
        listed = self.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/")
        pairs = [line.split(" ", 1) for line in listed.splitlines() if line]
        return 200, [self._ref_json(ref, sha) for ref, sha in pairs if ref.startswith(prefix)], {}

    def _op_update_ref(self, params: Params, body: Any, version: str) -> Reply:
        ref = f"refs/{params['ref']}"
        old = self._ref_sha(ref)
        if old is None:
            raise _Reply(422, "Reference does not exist")
        if self._object_type(body["sha"]) is None:
            raise _Reply(422, "Object does not exist")
        if self._protected_tag(ref):
            raise _Reply(422, "Cannot update a tag of an immutable release")
        if not body.get("force", False):
            ancestor = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), "merge-base", "--is-ancestor", old, body["sha"]],
                capture_output=True,
                check=False,
            )
            if ancestor.returncode != 0:
                raise _Reply(422, "Update is not a fast forward")
        self.git("update-ref", ref, body["sha"])
        return 200, self._ref_json(ref, body["sha"]), {}

    def _op_create_ref(self, params: Params, body: Any, version: str) -> Reply:
        ref = body["ref"]
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _Reply(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if self._ref_sha(ref) is not None:
            raise _Reply(422, "Reference already exists")
        if self._object_type(body["sha"]) is None:
            raise _Reply(422, "Object does not exist")
        self.git("update-ref", ref, body["sha"])
        return 201, self._ref_json(ref, body["sha"]), {}

    def _person(self, line: str) -> dict[str, str]:
        """``Name <email> 1700000000 +0000`` -> GitHub's author object."""
        name, _, rest = line.partition(" <")
        email, _, stamp = rest.partition("> ")
        seconds = int(stamp.split()[0])
        date = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"name": name, "email": email, "date": date}

    def _commit_json(self, sha: str) -> dict[str, Any]:
        raw = self.git("cat-file", "commit", sha)
        header, _, message = raw.partition("\n\n")
        fields: dict[str, list[str]] = {}
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            fields.setdefault(key, []).append(value)
        api, html = f"{self.url}/repos/{self.full_name}/git", f"{self.server_url}/{self.full_name}"
        return {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "url": f"{api}/commits/{sha}",
            "html_url": f"{html}/commit/{sha}",
            "author": self._person(fields["author"][0]),
            "committer": self._person(fields["committer"][0]),
            "tree": {"sha": fields["tree"][0], "url": f"{api}/trees/{fields['tree'][0]}"},
            "message": message,
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
                for p in fields.get("parent", [])
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    def _op_get_commit(self, params: Params, body: Any, version: str) -> Reply:
        if self._object_type(params["commit_sha"]) != "commit":
            raise _Reply(404, "Not Found")
        return 200, self._commit_json(params["commit_sha"]), {}

    def _op_get_tag(self, params: Params, body: Any, version: str) -> Reply:
        sha = params["tag_sha"]
        if self._object_type(sha) != "tag":
            raise _Reply(404, "Not Found")
        header, _, message = self.git("cat-file", "tag", sha).partition("\n\n")
        fields = dict(line.partition(" ")[::2] for line in header.splitlines())
        api = f"{self.url}/repos/{self.full_name}/git"
        return (
            200,
            {
                "node_id": f"TAG_{sha[:12]}",
                "tag": fields["tag"],
                "sha": sha,
                "url": f"{api}/tags/{sha}",
                "message": message,
                "tagger": self._person(fields["tagger"]),
                "object": {
                    "sha": fields["object"],
                    "type": fields["type"],
                    "url": f"{api}/{fields['type']}s/{fields['object']}",
                },
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            {},
        )

    def _op_create_tree(self, params: Params, body: Any, version: str) -> Reply:
        index = self.git_dir / f"emulator-index-{os.getpid()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            if body.get("base_tree"):
                if self._object_type(body["base_tree"]) != "tree":
                    raise _Reply(422, "base_tree is not a valid tree oid")
                self.git("read-tree", body["base_tree"], env=env)
            else:
                self.git("read-tree", "--empty", env=env)
            for entry in body["tree"]:
                if "content" in entry:
                    blob = self.git("hash-object", "-w", "--stdin", stdin=entry["content"])
                elif entry.get("sha"):
                    blob = entry["sha"]
                else:  # sha: null deletes the path
                    self.git("update-index", "--force-remove", entry["path"], env=env)
                    continue
                self.git(
                    "update-index", "--add", "--cacheinfo", f"{entry['mode']},{blob},{entry['path']}", env=env
                )
            tree = self.git("write-tree", env=env)
        finally:
            index.unlink(missing_ok=True)
        api = f"{self.url}/repos/{self.full_name}/git"
        entries = []
        for line in self.git("ls-tree", "-l", tree).splitlines():
            meta, path = line.split("\t", 1)
            mode, kind, sha, size = meta.split()
            entry = {"path": path, "mode": mode, "type": kind, "sha": sha, "url": f"{api}/{kind}s/{sha}"}
            if size != "-":
                entry["size"] = int(size)
            entries.append(entry)
        return 201, {"sha": tree, "url": f"{api}/trees/{tree}", "truncated": False, "tree": entries}, {}

    def _op_create_commit(self, params: Params, body: Any, version: str) -> Reply:
        if self._object_type(body["tree"]) != "tree":
            raise _Reply(422, "Tree SHA does not exist")
        args = ["commit-tree", body["tree"]]
        for parent in body.get("parents", []):
            if self._object_type(parent) != "commit":
                raise _Reply(422, "Parent SHA does not exist or is not a commit object")
            args += ["-p", parent]
        author = body.get("author") or BOT
        committer = body.get("committer") or author
        env = {
            "GIT_AUTHOR_NAME": author["name"],
            "GIT_AUTHOR_EMAIL": author["email"],
            "GIT_COMMITTER_NAME": committer["name"],
            "GIT_COMMITTER_EMAIL": committer["email"],
        }
        sha = self.git(*args, stdin=body["message"], env=env)
        return 201, self._commit_json(sha), {}

    # ---- releases
    def _git_release_json(self, release: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/releases/{release['id']}"
        html = f"{self.server_url}/{self.full_name}/releases/tag/{release['tag_name']}"
        archive = f"{self.url}/repos/{self.full_name}"
        shown = {k: v for k, v in release.items() if not k.startswith("_")}
        return {
            **shown,
            "url": api,
            "html_url": html,
            "assets_url": f"{api}/assets",
            "upload_url": f"{api}/assets{{?name,label}}",
            "node_id": f"RE_{release['id']}",
            "tarball_url": f"{archive}/tarball/{release['tag_name']}",
            "zipball_url": f"{archive}/zipball/{release['tag_name']}",
            "author": self._user("github-actions[bot]", 41898282, "Bot"),
            "assets": [],
        }

    def _publish(self, release: dict[str, Any]) -> None:
        ref = f"refs/tags/{release['tag_name']}"
        if self._ref_sha(ref) is None:
            target = self._ref_sha(release["target_commitish"])
            if target is None:
                raise _Reply(422, "target_commitish is not a branch or a commit")
            self.git("update-ref", ref, target)
        release["draft"] = False
        release["published_at"] = _now()
        release["immutable"] = self.immutable_releases

    def _op_create_release(self, params: Params, body: Any, version: str) -> Reply:
        if any(r["tag_name"] == body["tag_name"] for r in self.git_releases):
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
            )
        release = {
            "id": 300_000 + len(self.git_releases) + 1,
            "tag_name": body["tag_name"],
            "target_commitish": body.get("target_commitish") or self.default_branch,
            "name": body.get("name", body["tag_name"]),
            "body": body.get("body", ""),
            "draft": True,
            "prerelease": bool(body.get("prerelease", False)),
            "immutable": False,
            "created_at": _now(),
            "published_at": None,
            "updated_at": _now(),
        }
        self.git_releases.append(release)
        if not body.get("draft", False):
            self._publish(release)
        return 201, self._git_release_json(release), {}

    def _op_update_release(self, params: Params, body: Any, version: str) -> Reply:
        release = next((r for r in self.git_releases if r["id"] == params["release_id"]), None)
        if release is None:
            raise _Reply(404, "Not Found")
        if release["immutable"]:
            raise _Reply(422, "Cannot modify an immutable release")
        for key in ("tag_name", "target_commitish", "name", "body", "prerelease"):
            if key in body:
                release[key] = body[key]
        release["updated_at"] = _now()
        if release["draft"] and body.get("draft") is False:
            self._publish(release)
        return 200, self._git_release_json(release), {}

    def _op_get_release_by_tag(self, params: Params, body: Any, version: str) -> Reply:
        release = next(
            (r for r in self.git_releases if r["tag_name"] == params["tag"] and not r["draft"]), None
        )
        if release is None:
            raise _Reply(404, "Not Found")
        return 200, self._git_release_json(release), {}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
