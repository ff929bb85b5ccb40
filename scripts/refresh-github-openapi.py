#!/usr/bin/env python3
"""Refresh tests/data/github-openapi-subset.json from GitHub's published OpenAPI description.

keeptraining calls a handful of GitHub REST operations. The local GitHub emulator
(tests/services/github_emulator.py) checks every request it receives and every response it sends
against GitHub's own description of those operations, kept in the repository as a
small extract so that tests run offline.

This script fetches the npm package ``@octokit/openapi`` with the ordinary npm client
(``npm pack``, into a temporary folder), reads ``generated/api.github.com.json`` (the
variant that keeps ``$ref``s, so each shared schema is stored once; the ``.deref.json``
beside it repeats every nested schema in place) and writes:

* the operations below with their parameters (inlined), request body and every
  documented response;
* the component schemas those reference, transitively, and the shared error responses
  GitHub sends although most operations do not list them (401, 404, 422, 5xx ...);
* the dispatch operation as described for the newest GitHub Enterprise Server in the
  package (``x-ghes``), which the emulator's "legacy enterprise" mode follows.

Descriptions and examples are dropped to keep the file small; nothing else is changed
(``nullable`` and ``$ref`` stay as in the description; the emulator converts them).

Usage:
    scripts/refresh-github-openapi.py                 # npm pack the latest version
    scripts/refresh-github-openapi.py --version 23.0.2
    scripts/refresh-github-openapi.py --tarball octokit-openapi-23.0.2.tgz
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
MEMBER = "package/generated/api.github.com.json"
GHES_MEMBER = re.compile(r"^package/generated/ghes-(\d+)\.(\d+)\.json$")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "github-openapi-subset.json"

# (method, path): the operations keeptraining (dispatch.py, restore.py, commit_status.py, releases.py) and the
# official actions it runs call, which the emulator serves.
OPERATIONS: list[tuple[str, str]] = [
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/actions/workflows"),
    ("get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}"),
    ("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"),
    ("get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("get", "/repos/{owner}/{repo}/branches/{branch}"),
    ("get", "/repos/{owner}/{repo}/compare/{basehead}"),
    ("post", "/repos/{owner}/{repo}/statuses/{sha}"),
    # The artifact hand-off between runs (actions/download-artifact with run-id, and keeptraining's
    # check of the run to resume).
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("get", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    # The pull-request check (jobs/pr_check.py): one comment, found again and edited in place, and the
    # pull request itself (the workflow_run workflow checks a fork's report against it).
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    # The release workflow (scripts/release.py): the release commit (its reusable workflows pinned to the
    # release's action), the tags it moves, and the release it publishes.
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("get", "/repos/{owner}/{repo}/git/matching-refs/{ref}"),  # the release tags of a major version
    ("patch", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("post", "/repos/{owner}/{repo}/git/refs"),
    ("get", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    ("post", "/repos/{owner}/{repo}/git/commits"),
    ("post", "/repos/{owner}/{repo}/git/trees"),
    ("get", "/repos/{owner}/{repo}/git/tags/{tag_sha}"),
    ("post", "/repos/{owner}/{repo}/releases"),
    ("patch", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("get", "/repos/{owner}/{repo}/releases/tags/{tag}"),
    # Model releases (github/releases.py): the publish job creates one and uploads its assets to the
    # release's upload_url; the champion is the latest one, its card downloaded as an asset.
    ("get", "/repos/{owner}/{repo}/releases"),
    ("get", "/repos/{owner}/{repo}/releases/latest"),
    ("get", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("get", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
    ("post", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
    ("get", "/repos/{owner}/{repo}/releases/assets/{asset_id}"),
]
DISPATCH = ("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches")

# Shared error responses: GitHub sends these from any operation, documented or not.
ERROR_RESPONSES = [
    "bad_request",
    "requires_authentication",
    "forbidden",
    "not_found",
    "validation_failed",
    "validation_failed_simple",
    "internal_error",
    "service_unavailable",
]

# Annotation keywords dropped from schemas (never when they name a property).
DROPPED_KEYS = {"description", "examples", "example", "x-octokit", "x-github"}


def npm_pack(version: str | None, into: Path) -> Path:
    spec = f"{PACKAGE}@{version}" if version else PACKAGE
    result = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    name = result.stdout.strip().splitlines()[-1]
    return into / name


def read_member(tarball: Path, member: str) -> Any:
    with tarfile.open(tarball, "r:gz") as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise SystemExit(f"{tarball}: {member} is not a file")
        return json.load(handle)


def newest_ghes_member(tarball: Path) -> str | None:
    with tarfile.open(tarball, "r:gz") as tar:
        found = []
        for name in tar.getnames():
            match = GHES_MEMBER.match(name)
            if match:
                found.append(((int(match.group(1)), int(match.group(2))), name))
    return max(found)[1] if found else None


def resolve(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise SystemExit(f"unexpected external $ref {ref!r}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def strip(node: Any, *, in_properties: bool = False) -> Any:
    """Drop annotations, keep everything that validates."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not in_properties and key in DROPPED_KEYS:
                continue
            out[key] = strip(value, in_properties=(key == "properties" and not in_properties))
        return out
    if isinstance(node, list):
        return [strip(item) for item in node]
    return node


def collect_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                collect_refs(value, found)
    elif isinstance(node, list):
        for item in node:
            collect_refs(item, found)


def extract_operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    try:
        operation = document["paths"][path][method]
    except KeyError:
        raise SystemExit(
            f"the description has no {method.upper()} {path}; check the operation list"
        ) from None
    parameters = []
    for listed in operation.get("parameters", []):
        parameter = resolve(document, listed["$ref"]) if "$ref" in listed else listed
        parameters.append(strip(parameter))
    responses: dict[str, Any] = {}
    for status, response in operation["responses"].items():
        ref = response.get("$ref")
        if ref:
            # A shared response: keep the reference, its body is in components/responses.
            responses[status] = {"$ref": ref}
        else:
            responses[status] = strip(response)
    out: dict[str, Any] = {
        "operationId": operation["operationId"],
        "summary": operation.get("summary", ""),
        "externalDocs": operation.get("externalDocs", {}),
        "parameters": parameters,
    }
    if "requestBody" in operation:
        out["requestBody"] = strip(operation["requestBody"])
    out["responses"] = responses
    if "x-github-breaking-changes" in operation:
        out["x-github-breaking-changes"] = operation["x-github-breaking-changes"]
    return out


def build_subset(
    document: dict[str, Any], version: str, ghes: tuple[str, dict[str, Any]] | None
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        paths.setdefault(path, {})[method] = extract_operation(document, method, path)

    responses = {}
    for name in ERROR_RESPONSES:
        responses[name] = strip(document["components"]["responses"][name])

    # Close over every referenced component, transitively.
    wanted: set[str] = set()
    collect_refs(paths, wanted)
    collect_refs(responses, wanted)
    schemas: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    pending = sorted(wanted)
    while pending:
        ref = pending.pop()
        if ref.startswith("#/components/responses/"):
            name = ref.rsplit("/", 1)[1]
            if name not in responses:
                responses[name] = strip(resolve(document, ref))
                more: set[str] = set()
                collect_refs(responses[name], more)
                pending.extend(sorted(more - wanted))
                wanted |= more
            continue
        if ref.startswith("#/components/headers/"):
            headers[ref.rsplit("/", 1)[1]] = strip(resolve(document, ref))
            continue
        if not ref.startswith("#/components/schemas/"):
            raise SystemExit(f"unexpected $ref kind {ref!r}")
        name = ref.rsplit("/", 1)[1]
        if name in schemas:
            continue
        schemas[name] = strip(resolve(document, ref))
        more = set()
        collect_refs(schemas[name], more)
        pending.extend(sorted(more - wanted))
        wanted |= more

    subset: dict[str, Any] = {
        "x-keeptraining": {
            "source": f"npm package {PACKAGE}",
            "version": version,
            "file": MEMBER.removeprefix("package/"),
            "generator": "scripts/refresh-github-openapi.py",
            "note": "Extract of GitHub's REST description: only the operations keeptraining calls; "
            "descriptions and examples dropped. Regenerate, do not edit.",
        },
        "openapi": document["openapi"],
        "info": {"title": document["info"]["title"], "version": document["info"]["version"]},
        "paths": paths,
        "components": {
            "headers": dict(sorted(headers.items())),
            "responses": dict(sorted(responses.items())),
            "schemas": dict(sorted(schemas.items())),
        },
    }
    if ghes is not None:
        ghes_name, ghes_document = ghes
        method, path = DISPATCH
        operation = extract_operation(ghes_document, method, path)
        subset["x-ghes"] = {
            "file": ghes_name.removeprefix("package/"),
            "paths": {
                path: {method: {k: operation[k] for k in ("requestBody", "responses") if k in operation}}
            },
        }
    return subset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help=f"{PACKAGE} version (default: the latest)")
    parser.add_argument("--tarball", type=Path, help="use this downloaded package instead of npm pack")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="octokit-openapi-") as tmp:
        tarball = args.tarball or npm_pack(args.version, Path(tmp))
        package = read_member(tarball, "package/package.json")
        document = read_member(tarball, MEMBER)
        ghes_member = newest_ghes_member(tarball)
        ghes = (ghes_member, read_member(tarball, ghes_member)) if ghes_member else None
        subset = build_subset(document, package["version"], ghes)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(subset, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({size // 1024} KiB) from {PACKAGE} {package['version']}: "
        f"{len(OPERATIONS)} operations, {len(subset['components']['schemas'])} schemas"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
