"""A local emulator of the few GitHub REST operations keeptraining calls.

A real HTTP server on 127.0.0.1 (a free port) that PyGithub, ``act`` jobs or ``curl``
reach through ``GITHUB_API_URL = emulator.url``, exactly as they would reach GitHub
Enterprise. It keeps a repository with branches, workflows and workflow runs; every
accepted ``workflow_dispatch`` creates a queued run and is recorded in ``dispatches``
(an end-to-end driver replays those as the next ``act workflow_dispatch`` run).

Everything crossing the wire is checked against GitHub's own OpenAPI description
(``tests/data/github-openapi-subset.json``, refreshed by
``scripts/refresh-github-openapi.py``):

* requests: the route, path parameters, query parameters (types, enums, unknown names)
  and the JSON body against the operation's ``requestBody`` schema. A request GitHub
  would reject is answered the way GitHub answers it (400/401/404/422 with
  ``{"message", "documentation_url", "status"}``);
* responses: the status code must be one the operation documents, or one of the shared
  error responses GitHub sends from any operation (400, 401, 403, 404, 422, 429, 5xx),
  and the JSON body must validate against that response's schema. A response that does
  not is an emulator bug: it is recorded in ``violations`` and answered with 500 so that
  the test sees it.

On top of the schema it enforces GitHub's rules that matter to keeptraining: a token
is required; the workflow must exist (by id or file name) and be active; the dispatch
``ref`` must be an existing branch or tag; input values must be strings; when a
workflow declares its inputs, undeclared ones, missing required ones and values outside
``options`` are refused with 422, as GitHub does.

Artifacts follow GitHub's per-run-attempt rule (``results_service.py`` cites the sources): the REST
listing ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts`` shows the artifacts of *every*
attempt of the run (a re-run's beside the first try's, possibly with the same name), each with
``created_at`` and ``workflow_run`` ``{id, repository_id, head_repository_id, head_branch,
head_sha}`` as GitHub's OpenAPI ``artifact`` schema has them (no attempt number); ``GET
/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip`` serves any of them (a 302 to a signed
blob URL), so download-artifact with ``github-token`` + ``run-id`` reaches an earlier attempt's,
which the attempt-scoped internal API does not.

Faults for tests: ``fail_next(operation, status, ...)`` answers the next calls with an
error (5xx, 403 secondary rate limit, 429 ...), closes the connection without answering
(``drop=True``), or first performs the request and then fails (``after_accept=True``:
a dispatch that happened although the client saw an error). ``legacy_enterprise``
makes the dispatch operation behave like GitHub Enterprise Server before
``return_run_details`` existed (400 when the field is sent; the GHES body schema).

Releases (the publish job's model releases): create (a tag that already has a release is 422
``already_exists``; a new tag is made at ``target_commitish``, a branch or a known commit), list
(newest first), latest (the release last created with ``make_latest: "true"``, else the newest
published one that is not a draft or a prerelease), by tag, by id, and assets: uploaded to the
release's ``upload_url`` (a ``{?name,label}`` template on this same server, as PyGithub's
``GitRelease.upload_asset`` posts to its path; a name already on the release is 422), listed, and
downloaded with ``Accept: application/octet-stream`` (302 to a download URL on this server).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT4

from services.http_service import HttpService
from services.results_service import Artifact, ArtifactStore

SUBSET_PATH = Path(__file__).resolve().parents[1] / "data" / "github-openapi-subset.json"
_SUBSET_URI = "urn:keeptraining:github-openapi-subset"

DISPATCH_OP = "actions/create-workflow-dispatch"
DISPATCH_PATH = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
#: Short names accepted wherever an operation is named (``fail_next``, ``calls``).
OPERATION_ALIASES = {
    "get-repo": "repos/get",
    "list-workflows": "actions/list-repo-workflows",
    "get-workflow": "actions/get-workflow",
    "dispatch": DISPATCH_OP,
    "list-runs": "actions/list-workflow-runs",
    "get-run": "actions/get-workflow-run",
    "get-branch": "repos/get-branch",
    "compare": "repos/compare-commits-with-basehead",
    "create-status": "repos/create-commit-status",
    "list-artifacts": "actions/list-workflow-run-artifacts",
    "download-artifact": "actions/download-artifact",
    "list-comments": "issues/list-comments",
    "create-comment": "issues/create-comment",
    "update-comment": "issues/update-comment",
    "get-pull": "pulls/get",
    "create-release": "repos/create-release",
    "list-releases": "repos/list-releases",
    "get-latest-release": "repos/get-latest-release",
    "get-release-by-tag": "repos/get-release-by-tag",
    "get-release": "repos/get-release",
    "list-release-assets": "repos/list-release-assets",
    "upload-release-asset": "repos/upload-release-asset",
    "get-release-asset": "repos/get-release-asset",
}
#: Where a release asset's bytes are served (the 302 of get-release-asset points here).
ASSET_DOWNLOAD_PREFIX = "/_emulator/release-assets/"
#: GitHub's limit on an issue or pull request comment's body (characters).
COMMENT_BODY_LIMIT = 65536
#: GitHub's answer when the token lacks a permission the operation needs.
NOT_ACCESSIBLE = "Resource not accessible by integration"

#: GitHub's message for a secondary rate limit (PyGithub recognises it by this text).
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:000000:000000:00000000."
)
RATE_LIMIT_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
SUPPORTED_API_VERSIONS = ("2022-11-28", "2026-03-10")

# Error statuses GitHub sends from any operation although most do not document them,
# and the shared response (components/responses) whose schema their body must fit.
_SHARED_ERRORS = {
    400: "bad_request",
    401: "requires_authentication",
    403: "forbidden",
    404: "not_found",
    422: "validation_failed",
    429: "forbidden",  # same basic-error body as the 403 rate limit
    500: "internal_error",
    502: "internal_error",
    503: "service_unavailable",
    504: "internal_error",
}
_DEFAULT_ERROR_MESSAGES = {
    400: "Bad Request",
    401: "Requires authentication",
    403: SECONDARY_RATE_LIMIT_MESSAGE,
    404: "Not Found",
    422: "Validation Failed",
    429: SECONDARY_RATE_LIMIT_MESSAGE,
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that. "
    "Please try resubmitting your request.",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_sha(seed: str | None = None) -> str:
    """A 40-hex commit sha, deterministic for a seed."""
    if seed is None:
        return secrets.token_hex(20)
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def default_run_name(workflow: EmulatedWorkflow, inputs: Mapping[str, Any]) -> str:
    """The display title of a dispatched run, like the workflow's ``run-name``."""
    if "attempt" not in inputs:
        return workflow.name
    return f"attempt {inputs['attempt']} · {inputs.get('epochs', '?')} epochs"


# --------------------------------------------------------------------------- state


@dataclass
class WorkflowInput:
    """One ``on.workflow_dispatch.inputs`` entry of a workflow file."""

    type: str = "string"  # string | boolean | number | choice | environment
    required: bool = False
    default: str | None = None
    options: list[str] | None = None


@dataclass
class EmulatedWorkflow:
    id: int
    name: str
    path: str
    state: str = "active"
    #: The declared dispatch inputs; None = not modelled (any input accepted).
    inputs: dict[str, WorkflowInput] | None = None
    #: False: the workflow has no ``workflow_dispatch`` trigger.
    dispatchable: bool = True
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class EmulatedRun:
    id: int
    workflow_id: int
    run_number: int
    event: str
    head_branch: str | None
    head_sha: str
    display_title: str
    status: str = "queued"  # queued | pending (concurrency) | in_progress | completed
    conclusion: str | None = None  # success | failure | cancelled ... once completed
    inputs: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    run_attempt: int = 1
    run_started_at: str = field(default_factory=now_iso)
    #: The repository the run's code came from: another one for a pull request from a fork.
    head_repository: str | None = None


@dataclass(frozen=True)
class DispatchRecord:
    """One dispatch the emulator accepted (and so one run it created)."""

    workflow_id: int
    workflow_path: str
    ref: str
    inputs: dict[str, Any]
    return_run_details: bool | None
    run_id: int


@dataclass(frozen=True)
class StatusRecord:
    """One commit status the emulator accepted."""

    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    created_at: str


@dataclass
class EmulatedPull:
    """An open pull request: its head (a branch of this repository, or of a fork) and its base."""

    number: int
    head_sha: str
    head_ref: str = "feature"
    base_ref: str = "main"
    #: The repository the head branch lives in: a fork's full name for a pull request from a fork.
    head_repository: str | None = None
    title: str = "Improve the model"
    state: str = "open"
    created_at: str = field(default_factory=now_iso)


@dataclass
class CommentRecord:
    """One comment on an issue or pull request (``body`` as last written; ``edits`` counts updates)."""

    id: int
    issue_number: int
    body: str
    user: str
    created_at: str
    updated_at: str
    edits: int = 0


@dataclass(frozen=True)
class RequestRecord:
    """One request as received (never the token)."""

    method: str
    path: str
    query: dict[str, str]
    operation: str | None
    status: int | None  # None: the connection was dropped
    body: Any = None


@dataclass
class Fault:
    operation: str
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    drop: bool = False
    after_accept: bool = False
    skip: int = 0


@dataclass
class EmulatedAsset:
    id: int
    name: str
    label: str
    content_type: str
    data: bytes = field(repr=False)
    created_at: str = field(default_factory=now_iso)
    download_count: int = 0


@dataclass
class EmulatedRelease:
    id: int
    tag_name: str
    target_commitish: str
    name: str
    body: str
    draft: bool = False
    prerelease: bool = False
    created_at: str = field(default_factory=now_iso)
    published_at: str | None = None
    assets: list[EmulatedAsset] = field(default_factory=list)


class _Reply(Exception):  # control flow inside the emulator
    """Raised inside a handler to answer at once with a GitHub-style error."""

    def __init__(self, status: int, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


# --------------------------------------------------------------------------- OpenAPI


def _convert_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema draft 4: ``nullable`` and absolute ``$ref``s."""
    if isinstance(node, list):
        return [_convert_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _convert_schema(value) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = _SUBSET_URI + ref
    if out.pop("nullable", False) is True:
        if "type" in out and "$ref" not in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def _check_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme and parts.netloc)


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(_check_date_time)
_FORMATS.checks("uri")(_check_uri)


@dataclass
class Operation:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]
    docs_url: str

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return list(self.spec.get("parameters", []))


class OpenAPISubset:
    """The extracted description, with validators for its schemas."""

    def __init__(self, path: Path = SUBSET_PATH) -> None:
        self.document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        converted = _convert_schema(self.document)
        self._converted: dict[str, Any] = converted
        self._registry: Registry[Any] = Registry().with_resource(
            _SUBSET_URI, DRAFT4.create_resource(converted)
        )
        self.version: str = self.document["x-keeptraining"]["version"]
        self.operations: list[Operation] = []
        for template, methods in self.document["paths"].items():
            # A branch name, a ref or "base...head" may hold slashes (x-multi-segment).
            multi = {"branch"} | {
                p["name"]
                for spec in methods.values()
                for p in spec.get("parameters", [])
                if p.get("x-multi-segment")
            }

            def group(m: re.Match[str], multi: set[str] = multi) -> str:
                return f"(?P<{m.group(1)}>.+)" if m.group(1) in multi else f"(?P<{m.group(1)}>[^/]+)"

            escaped = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
            regex = "^" + re.sub(r"\{(\w+)\}", group, escaped) + "$"
            for method, spec in methods.items():
                self.operations.append(
                    Operation(
                        operation_id=spec["operationId"],
                        method=method.upper(),
                        template=template,
                        pattern=re.compile(regex),
                        spec=self._converted["paths"][template][method],
                        docs_url=spec.get("externalDocs", {}).get("url", "https://docs.github.com/rest"),
                    )
                )

    def validator(self, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
        return jsonschema.Draft4Validator(schema, registry=self._registry, format_checker=_FORMATS)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request; a literal segment wins over a parameter, as on GitHub
        (``/releases/latest`` is not ``/releases/{release_id}``)."""
        found_all = []
        for operation in self.operations:
            if operation.method != method:
                continue
            found = operation.pattern.match(path)
            if found:
                params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
                found_all.append((operation.template.count("{"), operation, params))
        if not found_all:
            return None
        _, operation, params = min(found_all, key=lambda item: item[0])
        return operation, params

    def operation(self, operation_id: str) -> Operation:
        for operation in self.operations:
            if operation.operation_id == operation_id:
                return operation
        raise KeyError(operation_id)

    def resolve_response(self, response: dict[str, Any]) -> dict[str, Any]:
        ref = response.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[1]
            resolved: dict[str, Any] = self._converted["components"]["responses"][name]
            return resolved
        return response

    def shared_response(self, name: str) -> dict[str, Any]:
        shared: dict[str, Any] = self._converted["components"]["responses"][name]
        return shared

    def ghes_dispatch_spec(self) -> dict[str, Any] | None:
        ghes = self._converted.get("x-ghes")
        if not ghes:
            return None
        spec: dict[str, Any] = ghes["paths"][DISPATCH_PATH]["post"]
        return spec


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    """A path/query string as the type its schema wants (best effort; validation decides)."""
    options = schema.get("oneOf") or schema.get("anyOf")
    if options:
        for option in options:
            coerced = _coerce(value, option)
            if not isinstance(coerced, str):
                return coerced
        return value
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "boolean" in kinds and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _body_error_message(error: jsonschema.ValidationError) -> str:
    """GitHub's wording for a body that fails its schema."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in instance]
        return f'Invalid request.\n\n"{missing[0] if missing else "?"}" wasn\'t supplied.'
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = set(error.schema.get("properties") or {})
        extra = sorted(k for k in instance if k not in allowed)
        return f'Invalid request.\n\n"{extra[0] if extra else "?"}" is not a permitted key.'
    where = "/".join(str(p) for p in error.absolute_path)
    location = f"For 'properties/{where}', " if where else ""
    return f"Invalid request.\n\n{location}{error.message}."


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: GitHubEmulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections end by themselves
    # One write per response (headers and body together), sent at once: without these a
    # keep-alive client waits ~40 ms per request on Nagle's algorithm and delayed ACKs.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.server.emulator._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        return


class GitHubEmulator(HttpService):
    """See the module docstring. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(
        self,
        repository: str = "octo-org/keeptraining-demo",
        *,
        default_branch: str = "main",
        head_sha: str | None = None,
        workflows: list[EmulatedWorkflow] | None = None,
        tokens: set[str] | None = None,
        api_prefix: str = "",
        run_name: Callable[[EmulatedWorkflow, Mapping[str, Any]], str] = default_run_name,
        subset: OpenAPISubset | None = None,
        web_url: str | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.owner, self.repo = repository.split("/", 1)
        self.default_branch = default_branch
        self.repo_id = 700_000_001
        #: branch name -> head sha; tests may set it (a newer push).
        self.branches: dict[str, str] = {default_branch: head_sha or fake_sha("initial")}
        self.tags: dict[str, str] = {}
        #: commit -> its parent (linear history, as pushes make it); compare reads it.
        self.parents: dict[str, str | None] = {self.branches[default_branch]: None}
        self.workflows: list[EmulatedWorkflow] = (
            workflows
            if workflows is not None
            else [
                EmulatedWorkflow(
                    id=161_335, name="Continuous training", path=".github/workflows/continuous-training.yml"
                )
            ]
        )
        self.runs: list[EmulatedRun] = []
        self.dispatches: list[DispatchRecord] = []
        self.statuses: list[StatusRecord] = []
        #: Pull requests by number (``open_pull``), and the comments on them, in order of creation.
        self.pulls: dict[int, EmulatedPull] = {}
        self.comments: list[CommentRecord] = []
        self._comment_ids = itertools.count(1_700_000_001)
        #: Releases, oldest first; the one ``make_latest`` last marked (None: the newest published).
        self.releases: list[EmulatedRelease] = []
        self.latest_release_id: int | None = None
        self._release_ids = itertools.count(200_000_001)
        self._asset_ids = itertools.count(300_000_001)
        #: Artifacts of the runs (shared with the results service); None: every run has none.
        self.artifacts = artifacts
        #: Called (with the lock held) for every run created by a dispatch or ``add_run``: the
        #: driver of GitHub in a box applies the concurrency rule there.
        self.on_run_created: Callable[[EmulatedRun], None] | None = None
        #: Operations the token may not perform (answered 403 "Resource not accessible by integration").
        self.denied: set[str] = set()
        self._web_url = web_url
        self.requests: list[RequestRecord] = []
        #: Emulator bugs: responses that did not fit the description (answered 500).
        self.violations: list[str] = []
        #: Accepted tokens; None: any non-empty token is accepted.
        self.tokens = tokens
        self.api_prefix = api_prefix.rstrip("/")
        self.run_name = run_name
        #: Behave like GitHub Enterprise Server before ``return_run_details``.
        self.legacy_enterprise = False
        self.legacy_enterprise_status = 400
        #: Accept ``return_run_details`` but ignore it (answer 204), as a server may.
        self.ignore_run_details = False
        #: Answer 422 to query parameters the description does not define (GitHub ignores them).
        self.strict_query = True
        self.subset = subset or OpenAPISubset()
        self.lock = threading.RLock()
        self._faults: list[Fault] = []
        self._run_ids = itertools.count(9_000_000_001)
        self.host = "127.0.0.1"
        self.port = 0
        self._download_secret = secrets.token_hex(16)
        self._accept = ""
        self._content_type = ""

    # ---- lifecycle
    def start(self) -> GitHubEmulator:
        server = _Server((self.host, 0), _Handler)
        server.emulator = self
        self._serve_in_thread(server, "github-emulator")
        return self

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API root: GITHUB_API_URL, PyGithub's ``base_url``."""
        return self.base + self.api_prefix

    @property
    def server_url(self) -> str:
        """The web root (GITHUB_SERVER_URL): html_url links point here."""
        return self._web_url or self.base

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    # ---- test helpers
    def fail_next(
        self,
        operation: str,
        status: int = 503,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        drop: bool = False,
        after_accept: bool = False,
        skip: int = 0,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail (after letting ``skip`` through).

        ``operation``: an operationId (``actions/create-workflow-dispatch``) or an alias
        (``dispatch``, ``get-branch``, ``list-runs`` ...). ``body``: a dict (JSON) or a
        str (sent as text/html); default a GitHub-style error. ``drop``: close the
        connection without answering. ``after_accept``: perform the request first (a
        dispatch creates its run), then fail or drop.
        """
        operation_id = OPERATION_ALIASES.get(operation, operation)
        self.subset.operation(operation_id)  # KeyError for a name the emulator does not know
        with self.lock:
            self._faults.append(
                Fault(operation_id, status, times, dict(headers or {}), body, drop, after_accept, skip)
            )

    def pending_faults(self) -> int:
        with self.lock:
            return sum(f.times for f in self._faults)

    def push(self, branch: str | None = None, sha: str | None = None) -> str:
        """Move a branch to a new commit on top of its head (a newer push); returns the new sha."""
        with self.lock:
            name = branch or self.default_branch
            new = sha or fake_sha()
            if new != self.branches.get(name):
                self.parents.setdefault(new, self.branches.get(name))
            self.branches[name] = new
            return new

    def open_pull(
        self,
        number: int,
        head_sha: str,
        *,
        head_ref: str = "feature",
        head_repository: str | None = None,
        base_ref: str | None = None,
    ) -> EmulatedPull:
        """Open (or move the head of) pull request ``number``; ``head_repository``: a fork's name."""
        with self.lock:
            self.parents.setdefault(head_sha, self.branches.get(base_ref or self.default_branch))
            pull = EmulatedPull(number, head_sha, head_ref, base_ref or self.default_branch, head_repository)
            self.pulls[number] = pull
            return pull

    def comments_on(self, number: int) -> list[CommentRecord]:
        with self.lock:
            return [c for c in self.comments if c.issue_number == number]

    def run(self, run_id: int) -> EmulatedRun:
        with self.lock:
            for run in self.runs:
                if run.id == run_id:
                    return run
        raise KeyError(run_id)

    def add_workflow(self, workflow: EmulatedWorkflow) -> EmulatedWorkflow:
        with self.lock:
            self.workflows.append(workflow)
            return workflow

    def add_run(
        self,
        workflow_id: int,
        *,
        event: str = "push",
        head_branch: str | None = None,
        head_sha: str | None = None,
        display_title: str = "",
        status: str = "completed",
        conclusion: str | None = "success",
        inputs: Mapping[str, Any] | None = None,
        head_repository: str | None = None,
    ) -> EmulatedRun:
        """Record a run that did not come from a dispatch (a push run, an older one).

        ``head_repository``: where its code came from (another repository: a fork's pull request).
        """
        with self.lock:
            branch = head_branch or self.default_branch
            run = EmulatedRun(
                id=next(self._run_ids),
                workflow_id=workflow_id,
                run_number=self._next_run_number(workflow_id),
                event=event,
                head_branch=branch,
                head_sha=head_sha or self.branches.get(branch, fake_sha()),
                display_title=display_title or self._workflow_by_id(workflow_id).name,
                status=status,
                conclusion=conclusion,
                inputs=dict(inputs or {}),
                head_repository=head_repository,
            )
            self._created(run)
            return run

    def _created(self, run: EmulatedRun) -> None:
        self.runs.append(run)
        if self.on_run_created is not None:
            self.on_run_created(run)

    def set_run(self, run_id: int, *, status: str, conclusion: str | None = None) -> EmulatedRun:
        with self.lock:
            run = self.run(run_id)
            run.status = status
            run.conclusion = conclusion
            run.updated_at = now_iso()
            if status == "in_progress":
                run.run_started_at = run.updated_at
            return run

    def rerun(self, run_id: int) -> EmulatedRun:
        """A re-run ("Re-run all jobs"): the same run, its next attempt, queued again."""
        with self.lock:
            run = self.run(run_id)
            if run.status != "completed":
                raise ValueError(f"run {run_id} is {run.status}; only a completed run can be re-run")
            run.run_attempt += 1
            run.status, run.conclusion, run.updated_at = "queued", None, now_iso()
            if self.on_run_created is not None:
                self.on_run_created(run)
            return run

    def calls(self, operation: str) -> list[RequestRecord]:
        """The requests received for an operation (id or alias)."""
        operation_id = OPERATION_ALIASES.get(operation, operation)
        with self.lock:
            return [r for r in self.requests if r.operation == operation_id]

    def snapshot_dispatches(self) -> list[DispatchRecord]:
        with self.lock:
            return list(self.dispatches)

    # ---- internals: state look-ups (call with the lock held)
    def _workflow_by_id(self, workflow_id: int) -> EmulatedWorkflow:
        for workflow in self.workflows:
            if workflow.id == workflow_id:
                return workflow
        raise KeyError(workflow_id)

    def _find_workflow(self, key: int | str) -> EmulatedWorkflow:
        for workflow in self.workflows:
            if isinstance(key, int) and workflow.id == key:
                return workflow
            if isinstance(key, str) and workflow.file_name == key:
                return workflow
        raise _Reply(404, "Not Found")

    def _next_run_number(self, workflow_id: int) -> int:
        return 1 + sum(1 for run in self.runs if run.workflow_id == workflow_id)

    def _resolve_ref(self, ref: str) -> tuple[str | None, str] | None:
        """(branch name or None for a tag, sha) for a dispatch ref."""
        name = ref
        if name.startswith("refs/heads/"):
            name = name.removeprefix("refs/heads/")
            return (name, self.branches[name]) if name in self.branches else None
        if name.startswith("refs/tags/"):
            name = name.removeprefix("refs/tags/")
            return (None, self.tags[name]) if name in self.tags else None
        if name in self.branches:
            return name, self.branches[name]
        if name in self.tags:
            return None, self.tags[name]
        return None

    # ---- internals: the HTTP exchange
    def _take_fault(self, operation_id: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.operation == operation_id and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return copy.deepcopy(fault)
        return None

    def _serve(self, handler: _Handler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        path = split.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        method = handler.command

        if path.startswith(ASSET_DOWNLOAD_PREFIX) and method in ("GET", "HEAD"):
            self._serve_asset_download(handler, path, split.query)
            return
        if self.api_prefix and path.startswith(self.api_prefix + "/"):
            path = path[len(self.api_prefix) :]
        elif self.api_prefix:
            path = "/__outside_api_prefix__" + path
        matched = self.subset.match(method, path)
        operation = matched[0] if matched else None
        body_for_record: Any = None
        if raw:
            try:
                body_for_record = json.loads(raw)
            except ValueError:
                body_for_record = raw.decode("utf-8", "replace")

        def record(status: int | None) -> None:
            with self.lock:
                self.requests.append(
                    RequestRecord(
                        method,
                        split.path,
                        query,
                        operation.operation_id if operation else None,
                        status,
                        body_for_record,
                    )
                )

        if matched is None:
            status, body, headers = self._error(404, "Not Found", "https://docs.github.com/rest")
            self._send(handler, status, body, headers, record)
            return
        assert operation is not None
        path_params = matched[1]
        fault = self._take_fault(operation.operation_id)
        if fault is not None and not fault.after_accept:
            self._send_fault(handler, operation, fault, record)
            return

        try:
            status, body, headers = self._process(handler, operation, path_params, query, raw)
        except _Reply as reply:
            status, body, headers = self._error(reply.status, reply.message, operation.docs_url, reply.errors)
        except Exception as exc:  # an emulator bug: make it visible
            with self.lock:
                self.violations.append(f"{operation.operation_id}: handler crashed: {exc!r}")
            status, body, headers = self._error(500, f"emulator bug: {exc!r}", operation.docs_url)

        if fault is not None:  # after_accept: the request took effect, the client sees an error
            self._send_fault(handler, operation, fault, record)
            return
        status, body = self._check_response(operation, status, body)
        self._send(handler, status, body, headers, record)

    def _send_fault(
        self, handler: _Handler, operation: Operation, fault: Fault, record: Callable[[int | None], None]
    ) -> None:
        if fault.drop:
            record(None)
            handler.close_connection = True
            return
        if fault.body is None:
            status, body, headers = self._error(
                fault.status,
                _DEFAULT_ERROR_MESSAGES.get(fault.status, "Error"),
                RATE_LIMIT_DOCS if fault.status in (403, 429) else operation.docs_url,
            )
        else:
            status, body, headers = fault.status, fault.body, {}
        if fault.status in (403, 429):
            headers.setdefault("X-RateLimit-Remaining", "4999")
        headers.update(fault.headers)
        if isinstance(body, dict):
            status, body = self._check_response(operation, status, body)
        self._send(handler, status, body, headers, record)

    def _error(
        self, status: int, message: str, docs_url: str, errors: list[dict[str, Any]] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"message": message, "documentation_url": docs_url, "status": str(status)}
        if errors:
            body["errors"] = errors
        return status, body, {}

    def _send(
        self,
        handler: _Handler,
        status: int,
        body: Any,
        headers: Mapping[str, str],
        record: Callable[[int | None], None],
    ) -> None:
        record(status)
        if status == 204 or body is None:
            payload = b""
            content_type = None
        elif isinstance(body, bytes):
            payload = body
            content_type = "application/octet-stream"
        elif isinstance(body, str):
            payload = body.encode("utf-8")
            content_type = "text/html; charset=utf-8"
        else:
            payload = json.dumps(body).encode("utf-8")
            content_type = "application/json; charset=utf-8"
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        if status != 204:
            handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        handler.send_header("X-GitHub-Api-Version-Selected", SUPPORTED_API_VERSIONS[0])
        handler.send_header("X-GitHub-Request-Id", secrets.token_hex(8).upper())
        for name, value in (
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4999"),
            ("X-RateLimit-Reset", str(int(datetime.now(timezone.utc).timestamp()) + 3600)),
            ("X-RateLimit-Used", "1"),
            ("X-RateLimit-Resource", "core"),
        ):
            if name not in headers:
                handler.send_header(name, value)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if payload and handler.command != "HEAD":
            handler.wfile.write(payload)

    def _check_response(self, operation: Operation, status: int, body: Any) -> tuple[int, Any]:
        """Validate what is about to be sent; a misfit is an emulator bug (500)."""
        problem = self._response_problem(operation, status, body)
        if problem is None:
            return status, body
        with self.lock:
            self.violations.append(f"{operation.operation_id} {status}: {problem}")
        return 500, {
            "message": f"emulator bug: response {status} does not fit the description: {problem}",
            "documentation_url": operation.docs_url,
            "status": "500",
        }

    def _response_problem(self, operation: Operation, status: int, body: Any) -> str | None:
        documented = operation.spec["responses"].get(str(status))
        if documented is not None:
            response = self.subset.resolve_response(documented)
            if not response.get("content") and body is not None and status in _SHARED_ERRORS:
                # documented without a body (upload-release-asset's 422), sent with GitHub's error body
                response = self.subset.shared_response(_SHARED_ERRORS[status])
        elif status in _SHARED_ERRORS:
            response = self.subset.shared_response(_SHARED_ERRORS[status])
        else:
            return f"status {status} is not documented for {operation.operation_id}"
        content = response.get("content")
        if not content:
            return None if body is None else f"status {status} documents no body, but one was sent"
        if body is None:
            return f"status {status} documents a JSON body, none was sent"
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            return None
        error = jsonschema.exceptions.best_match(self.subset.validator(schema).iter_errors(body))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {error.message[:300]}"

    # ---- request validation and the operations
    def _process(
        self,
        handler: _Handler,
        operation: Operation,
        path_params: dict[str, str],
        query: dict[str, str],
        raw: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        self._check_auth(handler)
        version = handler.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            raise _Reply(400, f"API version '{version}' is not supported.")
        params = self._check_parameters(operation, path_params, query)
        if params["owner"].lower() != self.owner.lower() or params["repo"].lower() != self.repo.lower():
            raise _Reply(404, "Not Found")
        body = self._check_body(handler, operation, raw)
        handlers: dict[str, Callable[..., tuple[int, Any, dict[str, str]]]] = {
            "repos/get": self._op_get_repo,
            "actions/list-repo-workflows": self._op_list_workflows,
            "actions/get-workflow": self._op_get_workflow,
            DISPATCH_OP: self._op_dispatch,
            "actions/list-workflow-runs": self._op_list_runs,
            "actions/get-workflow-run": self._op_get_run,
            "repos/get-branch": self._op_get_branch,
            "repos/compare-commits-with-basehead": self._op_compare,
            "repos/create-commit-status": self._op_create_status,
            "actions/list-workflow-run-artifacts": self._op_list_artifacts,
            "actions/download-artifact": self._op_download_artifact,
            "issues/list-comments": self._op_list_comments,
            "issues/create-comment": self._op_create_comment,
            "issues/update-comment": self._op_update_comment,
            "pulls/get": self._op_get_pull,
            "repos/create-release": self._op_create_release,
            "repos/list-releases": self._op_list_releases,
            "repos/get-latest-release": self._op_get_latest_release,
            "repos/get-release-by-tag": self._op_get_release_by_tag,
            "repos/get-release": self._op_get_release,
            "repos/list-release-assets": self._op_list_release_assets,
            "repos/upload-release-asset": self._op_upload_release_asset,
            "repos/get-release-asset": self._op_get_release_asset,
            **self.extra_operations(),
        }
        if operation.operation_id in self.denied:
            raise _Reply(403, NOT_ACCESSIBLE)
        with self.lock:
            # The headers the release operations read (set and used under the lock).
            self._accept = handler.headers.get("Accept", "")
            self._content_type = handler.headers.get("Content-Type", "")
            return handlers[operation.operation_id](params, body, version or SUPPORTED_API_VERSIONS[0])

    def extra_operations(self) -> dict[str, Callable[..., tuple[int, Any, dict[str, str]]]]:
        """More operations of the subset, served by a subclass (e.g. ``git_data.ReleaseEmulator``)."""
        return {}

    def _check_auth(self, handler: _Handler) -> None:
        value = handler.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if not value:
            raise _Reply(401, "Requires authentication")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise _Reply(401, "Bad credentials")
        if self.tokens is not None and token.strip() not in self.tokens:
            raise _Reply(401, "Bad credentials")

    def _check_parameters(
        self, operation: Operation, path_params: dict[str, str], query: dict[str, str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        known_query = set()
        for parameter in operation.parameters:
            name, where, schema = parameter["name"], parameter["in"], parameter.get("schema", {})
            if where == "path":
                value: Any = _coerce(path_params[name], schema)
                if list(self.subset.validator(schema).iter_errors(value)):
                    raise _Reply(404, "Not Found")  # GitHub's router does not match
                out[name] = value
            elif where == "query":
                known_query.add(name)
                if name not in query:
                    if parameter.get("required"):
                        raise _Reply(422, f'Invalid request.\n\n"{name}" wasn\'t supplied.')
                    continue
                value = _coerce(query[name], schema)
                errors = list(self.subset.validator(schema).iter_errors(value))
                if errors:
                    raise _Reply(
                        422, f"Invalid request.\n\nFor '{name}', {json.dumps(value)} {errors[0].message}."
                    )
                out[name] = value
        unknown = sorted(set(query) - known_query)
        if unknown and self.strict_query:
            raise _Reply(
                422,
                f"emulator: query parameter {unknown[0]!r} is not defined for {operation.operation_id} "
                "(GitHub would silently ignore it)",
            )
        return out

    def _check_body(self, handler: _Handler, operation: Operation, raw: bytes) -> Any:
        request_body = operation.spec.get("requestBody")
        if operation.operation_id == DISPATCH_OP and self.legacy_enterprise:
            ghes = self.subset.ghes_dispatch_spec()
            if ghes is not None:
                request_body = ghes["requestBody"]
        if request_body is None:
            return None
        if not raw:
            if request_body.get("required"):
                raise _Reply(400, "Problems parsing JSON")
            return None
        content_type = handler.headers.get("Content-Type", "")
        if "application/json" not in request_body.get("content", {}):  # an upload: the bytes themselves
            if not content_type:
                raise _Reply(422, "Bad Content-Type header")  # GitHub needs the asset's media type
            return raw
        if content_type and "json" not in content_type:
            raise _Reply(415, f"Unsupported 'Content-Type': {content_type}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Reply(400, "Problems parsing JSON") from None
        schema = request_body["content"]["application/json"]["schema"]
        legacy = operation.operation_id == DISPATCH_OP and self.legacy_enterprise
        if legacy and isinstance(body, dict) and "return_run_details" in body:
            raise _Reply(
                self.legacy_enterprise_status,
                'Invalid request.\n\n"return_run_details" is not a permitted key.',
            )
        error = jsonschema.exceptions.best_match(self.subset.validator(schema).iter_errors(body))
        if error is not None:
            raise _Reply(422, _body_error_message(error))
        return body

    def _paginate(
        self, items: list[dict[str, Any]], params: Mapping[str, Any], link_path: str, extra: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        per_page = max(1, min(int(params.get("per_page", 30)), 100))
        page = max(1, int(params.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(number: int, rel: str) -> str:
            query = urllib.parse.urlencode({**extra, "per_page": per_page, "page": number})
            return f'<{self.url}{link_path}?{query}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links = [link(page - 1, "prev"), link(1, "first"), *links]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _op_get_repo(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        return 200, self._full_repository(), {}

    def _op_list_workflows(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        items = [self._workflow_json(w) for w in sorted(self.workflows, key=lambda w: w.id)]
        chunk, headers = self._paginate(items, params, f"/repos/{self.full_name}/actions/workflows", {})
        return 200, {"total_count": len(items), "workflows": chunk}, headers

    def _op_get_workflow(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        return 200, self._workflow_json(self._find_workflow(params["workflow_id"])), {}

    def _op_list_runs(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        workflow = self._find_workflow(params["workflow_id"])
        runs = [r for r in self.runs if r.workflow_id == workflow.id]
        if "branch" in params:
            runs = [r for r in runs if r.head_branch == params["branch"]]
        if "event" in params:
            runs = [r for r in runs if r.event == params["event"]]
        if "head_sha" in params:
            runs = [r for r in runs if r.head_sha == params["head_sha"]]
        if "status" in params:
            wanted = params["status"]
            runs = [r for r in runs if wanted in (r.status, r.conclusion)]
        if "actor" in params:
            runs = [r for r in runs if params["actor"] == "github-actions[bot]"]
        if "check_suite_id" in params:
            runs = [r for r in runs if r.id == params["check_suite_id"]]
        if "created" in params:
            raise _Reply(422, "emulator: the 'created' filter is not emulated")
        runs.sort(key=lambda r: r.id, reverse=True)
        items = [self._run_json(r, workflow) for r in runs]
        extra: dict[str, Any] = {
            k: params[k] for k in ("branch", "event", "head_sha", "status", "actor") if k in params
        }
        chunk, headers = self._paginate(
            items, params, f"/repos/{self.full_name}/actions/workflows/{params['workflow_id']}/runs", extra
        )
        return 200, {"total_count": len(items), "workflow_runs": chunk}, headers

    def _op_get_run(self, params: dict[str, Any], body: Any, version: str) -> tuple[int, Any, dict[str, str]]:
        for run in self.runs:
            if run.id == params["run_id"]:
                return 200, self._run_json(run, self._workflow_by_id(run.workflow_id)), {}
        raise _Reply(404, "Not Found")

    def _op_get_branch(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        name = params["branch"]
        if name not in self.branches:
            raise _Reply(404, "Branch not found")
        return 200, self._branch_json(name, self.branches[name]), {}

    def _ancestors(self, sha: str) -> list[str]:
        """``sha`` and the commits before it, newest first."""
        chain: list[str] = []
        current: str | None = sha
        while current is not None and current not in chain:
            chain.append(current)
            current = self.parents.get(current)
        return chain

    def _known_commit(self, sha: str) -> bool:
        return (
            sha in self.parents or sha in self.branches.values() or any(r.head_sha == sha for r in self.runs)
        )

    def _op_compare(self, params: dict[str, Any], body: Any, version: str) -> tuple[int, Any, dict[str, str]]:
        base, dots, head = str(params["basehead"]).partition("...")
        if not dots:
            raise _Reply(404, "Not Found")
        base, head = (self.branches.get(base, base), self.branches.get(head, head))
        if not (self._known_commit(base) and self._known_commit(head)):
            raise _Reply(404, "Not Found")
        head_line, base_line = self._ancestors(head), self._ancestors(base)
        merge_base = next((c for c in head_line if c in base_line), None)
        if merge_base is None:
            raise _Reply(404, f"No common ancestor between {base} and {head}.")
        ahead, behind = head_line.index(merge_base), base_line.index(merge_base)
        status = (
            "identical"
            if ahead == behind == 0
            else "ahead"
            if behind == 0
            else "behind"
            if ahead == 0
            else "diverged"
        )
        commits = [self._commit_json(c) for c in reversed(head_line[:ahead])]
        api, html = f"{self.url}/repos/{self.full_name}", f"{self.server_url}/{self.full_name}"
        spec = f"{base}...{head}"
        return (
            200,
            {
                "url": f"{api}/compare/{spec}",
                "html_url": f"{html}/compare/{spec}",
                "permalink_url": f"{html}/compare/{self.owner}:{base[:7]}...{self.owner}:{head[:7]}",
                "diff_url": f"{html}/compare/{spec}.diff",
                "patch_url": f"{html}/compare/{spec}.patch",
                "base_commit": self._commit_json(base),
                "merge_base_commit": self._commit_json(merge_base),
                "status": status,
                "ahead_by": ahead,
                "behind_by": behind,
                "total_commits": ahead,
                "commits": commits,
            },
            {},
        )

    def _op_create_status(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        sha = str(params["sha"])
        if not self._known_commit(sha):
            raise _Reply(422, f"No commit found for SHA: {sha}")
        description = body.get("description")
        if description is not None and len(description) > 140:
            raise _Reply(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "description",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        target_url = body.get("target_url")
        if target_url and not urllib.parse.urlsplit(target_url).scheme.startswith("http"):
            raise _Reply(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "target_url",
                        "message": "target_url must use http(s) scheme",
                    }
                ],
            )
        record = StatusRecord(
            len(self.statuses) + 1,
            sha,
            body["state"],
            body.get("context") or "default",
            description,
            target_url,
            now_iso(),
        )
        self.statuses.append(record)
        location = f"{self.url}/repos/{self.full_name}/statuses/{sha}"
        return 201, self._status_json(record), {"Location": location}

    def _pull(self, number: int) -> EmulatedPull:
        pull = self.pulls.get(number)
        if pull is None:
            raise _Reply(404, "Not Found")
        return pull

    def _check_comment_body(self, body: Any) -> str:
        text = str(body.get("body") or "")
        if not text.strip():
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "IssueComment", "code": "missing_field", "field": "body"}],
            )
        if len(text) > COMMENT_BODY_LIMIT:
            raise _Reply(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "IssueComment",
                        "code": "custom",
                        "field": "body",
                        "message": f"body is too long (maximum is {COMMENT_BODY_LIMIT} characters)",
                    }
                ],
            )
        return text

    def _op_list_comments(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        number = int(params["issue_number"])
        self._pull(number)  # the emulator's issues are its pull requests
        items = [self._comment_json(c) for c in self.comments if c.issue_number == number]
        chunk, headers = self._paginate(
            items, params, f"/repos/{self.full_name}/issues/{number}/comments", {}
        )
        return 200, chunk, headers

    def _op_create_comment(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        number = int(params["issue_number"])
        self._pull(number)
        stamp = now_iso()
        record = CommentRecord(
            next(self._comment_ids),
            number,
            self._check_comment_body(body),
            "github-actions[bot]",
            stamp,
            stamp,
        )
        self.comments.append(record)
        url = f"{self.url}/repos/{self.full_name}/issues/comments/{record.id}"
        return 201, self._comment_json(record), {"Location": url}

    def _op_update_comment(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        record = next((c for c in self.comments if c.id == int(params["comment_id"])), None)
        if record is None:
            raise _Reply(404, "Not Found")
        record.body = self._check_comment_body(body)
        record.updated_at = now_iso()
        record.edits += 1
        return 200, self._comment_json(record), {}

    def _op_get_pull(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        return 200, self._pull_json(self._pull(int(params["pull_number"]))), {}

    def _op_list_artifacts(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        """Every attempt's artifacts of the run (GitHub's REST view; the internal API is per attempt)."""
        run_id = params["run_id"]
        if not any(r.id == run_id for r in self.runs):
            raise _Reply(404, "Not Found")
        found = (
            self.artifacts.of_run(run_id, name=params.get("name"), include_expired=True)
            if self.artifacts is not None
            else []
        )
        found.sort(key=lambda a: a.id, reverse=params.get("direction", "desc") == "desc")
        items = [self._artifact_json(a) for a in found]
        extra: dict[str, Any] = {k: params[k] for k in ("name", "direction") if k in params}
        link = f"/repos/{self.full_name}/actions/runs/{run_id}/artifacts"
        chunk, headers = self._paginate(items, params, link, extra)
        return 200, {"total_count": len(items), "artifacts": chunk}, headers

    def _op_download_artifact(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        if params["archive_format"] != "zip":
            raise _Reply(404, "Not Found")
        artifact = self.artifacts.get(params["artifact_id"]) if self.artifacts is not None else None
        if artifact is None:
            raise _Reply(404, "Not Found")
        if artifact.expired:
            raise _Reply(410, "Artifact has expired")
        url = (
            self.artifacts.blobs.signed_url(artifact.blob_path, "r", timedelta(minutes=1))
            if self.artifacts is not None
            else ""
        )
        return 302, None, {"Location": url}

    # ---- releases
    def latest_release(self) -> EmulatedRelease | None:
        """What ``GET /releases/latest`` answers (None: 404)."""
        with self.lock:
            marked = [r for r in self.releases if r.id == self.latest_release_id]
            if marked and not marked[0].draft and not marked[0].prerelease:
                return marked[0]
            published = [r for r in self.releases if not r.draft and not r.prerelease]
            return max(published, key=lambda r: (r.created_at, r.id)) if published else None

    def release_asset_bytes(self, release: EmulatedRelease, name: str) -> bytes | None:
        found = [a for a in release.assets if a.name == name]
        return found[0].data if found else None

    def _release(self, release_id: int) -> EmulatedRelease:
        for release in self.releases:
            if release.id == release_id:
                return release
        raise _Reply(404, "Not Found")

    def _op_create_release(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        tag = str(body["tag_name"])
        if not tag.strip() or tag.startswith("refs/") or ".." in tag or tag.endswith((".lock", "/")):
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "Release", "code": "invalid", "field": "tag_name"}],
            )
        if any(r.tag_name == tag for r in self.releases):
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
            )
        target = str(body.get("target_commitish") or self.default_branch)
        if tag not in self.tags:
            if target in self.branches:
                sha = self.branches[target]
            elif self._known_commit(target):
                sha = target
            else:
                raise _Reply(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "Release", "code": "invalid", "field": "target_commitish"}],
                )
            self.tags[tag] = sha
        draft = bool(body.get("draft", False))
        release = EmulatedRelease(
            id=next(self._release_ids),
            tag_name=tag,
            target_commitish=target,
            name=str(body.get("name") or tag),
            body=str(body.get("body") or ""),
            draft=draft,
            prerelease=bool(body.get("prerelease", False)),
        )
        release.published_at = None if draft else release.created_at
        self.releases.append(release)
        if body.get("make_latest", "true") == "true" and not draft and not release.prerelease:
            self.latest_release_id = release.id
        elif body.get("make_latest") == "legacy":
            self.latest_release_id = None
        return 201, self._release_json(release), {"Location": self._release_json(release)["url"]}

    def _op_list_releases(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        items = [
            self._release_json(r)
            for r in sorted(self.releases, key=lambda r: (r.created_at, r.id), reverse=True)
        ]
        chunk, headers = self._paginate(items, params, f"/repos/{self.full_name}/releases", {})
        return 200, chunk, headers

    def _op_get_latest_release(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        latest = self.latest_release()
        if latest is None:
            raise _Reply(404, "Not Found")
        return 200, self._release_json(latest), {}

    def _op_get_release_by_tag(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        for release in self.releases:
            if release.tag_name == params["tag"] and not release.draft:
                return 200, self._release_json(release), {}
        raise _Reply(404, "Not Found")

    def _op_get_release(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        return 200, self._release_json(self._release(params["release_id"])), {}

    def _op_list_release_assets(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        release = self._release(params["release_id"])
        items = [self._asset_json(a) for a in release.assets]
        link = f"/repos/{self.full_name}/releases/{release.id}/assets"
        chunk, headers = self._paginate(items, params, link, {})
        return 200, chunk, headers

    def _op_upload_release_asset(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        release = self._release(params["release_id"])
        name = str(params["name"])
        if not name.strip() or "/" in name:
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "ReleaseAsset", "code": "invalid", "field": "name"}],
            )
        if any(a.name == name for a in release.assets):
            raise _Reply(
                422,
                "Validation Failed",
                errors=[{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}],
            )
        data = body if isinstance(body, bytes) else b""
        asset = EmulatedAsset(
            id=next(self._asset_ids),
            name=name,
            label=str(params.get("label") or ""),
            content_type=self._content_type.split(";")[0].strip(),
            data=data,
        )
        release.assets.append(asset)
        return 201, self._asset_json(asset), {}

    def _op_get_release_asset(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        for release in self.releases:
            for asset in release.assets:
                if asset.id == params["asset_id"]:
                    if "application/octet-stream" in self._accept:
                        return 302, None, {"Location": self._asset_download_url(asset)}
                    return 200, self._asset_json(asset), {}
        raise _Reply(404, "Not Found")

    def _asset_download_url(self, asset: EmulatedAsset) -> str:
        token = hashlib.sha256(f"{self._download_secret}:{asset.id}".encode()).hexdigest()[:32]
        return f"{self.base}{ASSET_DOWNLOAD_PREFIX}{asset.id}/{urllib.parse.quote(asset.name)}?token={token}"

    def _serve_asset_download(self, handler: _Handler, path: str, query: str) -> None:
        """The bytes of an asset, at the URL the 302 gave (a signed URL: no Authorization needed)."""

        def record(status: int | None) -> None:
            with self.lock:
                self.requests.append(
                    RequestRecord(handler.command, path, {}, "release-asset-download", status, None)
                )

        rest = path[len(ASSET_DOWNLOAD_PREFIX) :].split("/", 1)[0]
        token = urllib.parse.parse_qs(query).get("token", [""])[-1]
        with self.lock:
            found = [a for r in self.releases for a in r.assets if str(a.id) == rest]
            if (
                found
                and token
                == hashlib.sha256(f"{self._download_secret}:{found[0].id}".encode()).hexdigest()[:32]
            ):
                found[0].download_count += 1
                self._send(handler, 200, found[0].data, {}, record)
                return
        self._send(handler, 404, {"message": "Not Found"}, {}, record)

    def _release_json(self, release: EmulatedRelease) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/releases/{release.id}"
        html = f"{self.server_url}/{self.full_name}/releases/tag/{urllib.parse.quote(release.tag_name)}"
        return {
            "url": api,
            "html_url": html,
            "assets_url": f"{api}/assets",
            "upload_url": f"{api}/assets{{?name,label}}",
            "tarball_url": f"{self.url}/repos/{self.full_name}/tarball/{release.tag_name}",
            "zipball_url": f"{self.url}/repos/{self.full_name}/zipball/{release.tag_name}",
            "id": release.id,
            "node_id": f"RE_kwDO{release.id}",
            "tag_name": release.tag_name,
            "target_commitish": release.target_commitish,
            "name": release.name,
            "body": release.body,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "immutable": False,
            "created_at": release.created_at,
            "published_at": release.published_at,
            "updated_at": release.created_at,
            "author": self._user("github-actions[bot]", 41_898_282, "Bot"),
            "assets": [self._asset_json(a) for a in release.assets],
        }

    def _asset_json(self, asset: EmulatedAsset) -> dict[str, Any]:
        release = next(r for r in self.releases if asset in r.assets)
        return {
            "url": f"{self.url}/repos/{self.full_name}/releases/assets/{asset.id}",
            "browser_download_url": f"{self.server_url}/{self.full_name}/releases/download/"
            f"{urllib.parse.quote(release.tag_name)}/{urllib.parse.quote(asset.name)}",
            "id": asset.id,
            "node_id": f"RA_kwDO{asset.id}",
            "name": asset.name,
            "label": asset.label,
            "state": "uploaded",
            "content_type": asset.content_type,
            "size": len(asset.data),
            "digest": "sha256:" + hashlib.sha256(asset.data).hexdigest(),
            "download_count": asset.download_count,
            "created_at": asset.created_at,
            "updated_at": asset.created_at,
            "uploader": self._user("github-actions[bot]", 41_898_282, "Bot"),
        }

    def _op_dispatch(
        self, params: dict[str, Any], body: Any, version: str
    ) -> tuple[int, Any, dict[str, str]]:
        workflow = self._find_workflow(params["workflow_id"])
        if not workflow.dispatchable:
            raise _Reply(422, "Workflow does not have 'workflow_dispatch' trigger")
        if workflow.state != "active":
            raise _Reply(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
        ref = body["ref"]
        resolved = self._resolve_ref(ref)
        if resolved is None:
            raise _Reply(422, f"No ref found for: {ref}")
        head_branch, head_sha = resolved
        given: dict[str, Any] = dict(body.get("inputs") or {})
        for name, value in given.items():
            if not isinstance(value, str):
                raise _Reply(
                    422, f"Invalid request.\n\nFor 'properties/{name}', {json.dumps(value)} is not a string."
                )
        inputs = self._apply_declared_inputs(workflow, given)
        run = EmulatedRun(
            id=next(self._run_ids),
            workflow_id=workflow.id,
            run_number=self._next_run_number(workflow.id),
            event="workflow_dispatch",
            head_branch=head_branch,
            head_sha=head_sha,
            display_title=self.run_name(workflow, inputs),
            inputs=inputs,
        )
        self._created(run)
        details = body.get("return_run_details")
        self.dispatches.append(DispatchRecord(workflow.id, workflow.path, ref, given, details, run.id))
        if (details is True and not self.ignore_run_details) or version >= "2026-03-10":
            return (
                200,
                {
                    "workflow_run_id": run.id,
                    "run_url": f"{self.url}/repos/{self.full_name}/actions/runs/{run.id}",
                    "html_url": self._run_html_url(run),
                },
                {},
            )
        return 204, None, {}

    def _apply_declared_inputs(self, workflow: EmulatedWorkflow, given: dict[str, Any]) -> dict[str, Any]:
        if workflow.inputs is None:
            return dict(given)
        unexpected = sorted(set(given) - set(workflow.inputs))
        if unexpected:
            raise _Reply(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        merged: dict[str, Any] = {}
        for name, declared in workflow.inputs.items():
            if name not in given:
                if declared.required and declared.default is None:
                    raise _Reply(422, f"Required input '{name}' not provided")
                if declared.default is not None:
                    merged[name] = declared.default
                continue
            value = given[name]
            if declared.type == "choice" and declared.options is not None and value not in declared.options:
                raise _Reply(
                    422, f"Provided value '{value}' for input '{name}' not in the list of allowed values"
                )
            if declared.type == "boolean" and value not in ("true", "false"):
                raise _Reply(422, f"Provided value '{value}' for input '{name}' is not a boolean")
            if declared.type == "number":
                try:
                    float(value)
                except ValueError:
                    raise _Reply(
                        422, f"Provided value '{value}' for input '{name}' is not a number"
                    ) from None
            merged[name] = value
        return merged

    # ---- JSON builders (shapes from the description; validated on the way out)
    def _user(self, login: str, user_id: int, kind: str = "Organization") -> dict[str, Any]:
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": f"MDQ6VXNlcn{user_id}",
            "avatar_url": f"{self.server_url}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.server_url}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def _minimal_repository(self, full_name: str | None = None) -> dict[str, Any]:
        """This repository, or (``full_name``) a fork of it."""
        full_name = full_name or self.full_name
        fork = full_name != self.full_name
        owner, name = full_name.split("/", 1)
        api = f"{self.url}/repos/{full_name}"
        html = f"{self.server_url}/{full_name}"
        return {
            "id": self._repository_id(full_name),
            "node_id": "R_kgDOkeeptrain",
            "name": name,
            "full_name": full_name,
            "owner": self._user(owner, 500_001 + fork),
            "private": True,
            "html_url": html,
            "description": "keeptraining demo repository (emulated)",
            "fork": fork,
            "url": api,
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{api}/assignees{{/user}}",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "comments_url": f"{api}/comments{{/number}}",
            "commits_url": f"{api}/commits{{/sha}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "contributors_url": f"{api}/contributors",
            "deployments_url": f"{api}/deployments",
            "downloads_url": f"{api}/downloads",
            "events_url": f"{api}/events",
            "forks_url": f"{api}/forks",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "hooks_url": f"{api}/hooks",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "keys_url": f"{api}/keys{{/key_id}}",
            "labels_url": f"{api}/labels{{/name}}",
            "languages_url": f"{api}/languages",
            "merges_url": f"{api}/merges",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "releases_url": f"{api}/releases{{/id}}",
            "stargazers_url": f"{api}/stargazers",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "tags_url": f"{api}/tags",
            "teams_url": f"{api}/teams",
            "trees_url": f"{api}/git/trees{{/sha}}",
        }

    def _full_repository(self) -> dict[str, Any]:
        html = f"{self.server_url}/{self.full_name}"
        stamp = "2024-01-01T00:00:00Z"
        return {
            **self._minimal_repository(),
            "clone_url": f"{html}.git",
            "git_url": f"git://{self.host}/{self.full_name}.git",
            "ssh_url": f"git@{self.host}:{self.full_name}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "default_branch": self.default_branch,
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "open_issues": 0,
            "open_issues_count": 0,
            "size": 128,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private",
            "license": None,
            "pushed_at": now_iso(),
            "created_at": stamp,
            "updated_at": stamp,
            "network_count": 0,
            "subscribers_count": 1,
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        }

    def _workflow_json(self, workflow: EmulatedWorkflow) -> dict[str, Any]:
        return {
            "id": workflow.id,
            "node_id": f"W_kwDO{workflow.id}",
            "name": workflow.name,
            "path": workflow.path,
            "state": workflow.state,
            "created_at": workflow.created_at,
            "updated_at": workflow.updated_at,
            "url": f"{self.url}/repos/{self.full_name}/actions/workflows/{workflow.id}",
            "html_url": f"{self.server_url}/{self.full_name}/blob/{self.default_branch}/{workflow.path}",
            "badge_url": f"{self.server_url}/{self.full_name}/workflows/"
            f"{urllib.parse.quote(workflow.name)}/badge.svg",
        }

    def _run_html_url(self, run: EmulatedRun) -> str:
        return f"{self.server_url}/{self.full_name}/actions/runs/{run.id}"

    def _repository_id(self, full_name: str) -> int:
        if full_name == self.full_name:
            return self.repo_id
        return 700_000_002 + int(hashlib.sha1(full_name.encode(), usedforsecurity=False).hexdigest()[:6], 16)

    def _run_json(self, run: EmulatedRun, workflow: EmulatedWorkflow) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/actions/runs/{run.id}"
        bot = self._user("github-actions[bot]", 41_898_282, "Bot")
        repository = self._minimal_repository()
        head_repository = self._minimal_repository(run.head_repository)
        return {
            "id": run.id,
            "name": workflow.name,
            "node_id": f"WFR_kwLO{run.id}",
            "check_suite_id": run.id + 1,
            "check_suite_node_id": f"CS_kwDO{run.id}",
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": workflow.path,
            "display_title": run.display_title,
            "run_number": run.run_number,
            "run_attempt": run.run_attempt,
            "referenced_workflows": [],
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": workflow.id,
            "url": api,
            "html_url": self._run_html_url(run),
            "pull_requests": [],
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "run_started_at": run.run_started_at,
            "actor": bot,
            "triggering_actor": bot,
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "check_suite_url": f"{self.url}/repos/{self.full_name}/check-suites/{run.id + 1}",
            "artifacts_url": f"{api}/artifacts",
            "cancel_url": f"{api}/cancel",
            "rerun_url": f"{api}/rerun",
            "previous_attempt_url": f"{api}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None,
            "workflow_url": f"{self.url}/repos/{self.full_name}/actions/workflows/{workflow.id}",
            "head_commit": {
                "id": run.head_sha,
                "tree_id": fake_sha("tree-" + run.head_sha),
                "message": "Train the model",
                "timestamp": run.created_at,
                "author": {"name": "Octo Cat", "email": "octocat@example.com"},
                "committer": {"name": "Octo Cat", "email": "octocat@example.com"},
            },
            "repository": repository,
            "head_repository": head_repository,
            "head_repository_id": head_repository["id"],
        }

    def _commit_json(self, sha: str) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        html = f"{self.server_url}/{self.full_name}"
        author = self._user("octocat", 583_231, "User")
        person = {"name": "Octo Cat", "email": "octocat@example.com", "date": "2024-01-01T00:00:00Z"}
        parent = self.parents.get(sha)
        return {
            "sha": sha,
            "node_id": f"C_kwDO{sha[:12]}",
            "url": f"{api}/commits/{sha}",
            "html_url": f"{html}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{sha}",
                "author": person,
                "committer": person,
                "message": "Train the model",
                "comment_count": 0,
                "tree": {
                    "sha": fake_sha("tree-" + sha),
                    "url": f"{api}/git/trees/{fake_sha('tree-' + sha)}",
                },
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "payload": None,
                    "signature": None,
                    "verified_at": None,
                },
            },
            "author": author,
            "committer": author,
            "parents": [
                {"sha": parent, "url": f"{api}/commits/{parent}", "html_url": f"{html}/commit/{parent}"}
            ]
            if parent
            else [],
        }

    def _branch_json(self, name: str, sha: str) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        html = f"{self.server_url}/{self.full_name}"
        quoted = urllib.parse.quote(name, safe="")
        return {
            "name": name,
            "commit": self._commit_json(sha),
            "_links": {"self": f"{api}/branches/{quoted}", "html": f"{html}/tree/{quoted}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{api}/branches/{quoted}/protection",
        }

    def _artifact_json(self, artifact: Artifact) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/actions/artifacts/{artifact.id}"
        run = self.run(artifact.run_id)
        stamp = artifact.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "id": artifact.id,
            "node_id": f"MDg6QXJ0aWZhY3Q{artifact.id}",
            "name": artifact.name,
            "size_in_bytes": artifact.size,
            "url": api,
            "archive_download_url": f"{api}/zip",
            "expired": artifact.expired,
            "created_at": stamp,
            "expires_at": artifact.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": stamp,
            "digest": artifact.digest,
            "workflow_run": {
                "id": run.id,
                "repository_id": self.repo_id,
                "head_repository_id": self._repository_id(run.head_repository or self.full_name),
                "head_branch": run.head_branch or "",
                "head_sha": run.head_sha,
            },
        }

    def _comment_json(self, comment: CommentRecord) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        html = f"{self.server_url}/{self.full_name}"
        return {
            "id": comment.id,
            "node_id": f"IC_kwDO{comment.id}",
            "url": f"{api}/issues/comments/{comment.id}",
            "body": comment.body,
            "html_url": f"{html}/pull/{comment.issue_number}#issuecomment-{comment.id}",
            "user": self._user(
                comment.user,
                41_898_282 if comment.user.endswith("[bot]") else 583_231,
                "Bot" if comment.user.endswith("[bot]") else "User",
            ),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "issue_url": f"{api}/issues/{comment.issue_number}",
            "author_association": "NONE",
        }

    def _repository_json(self, full_name: str) -> dict[str, Any]:
        """The ``repository`` shape of this repository or (a pull request's head) a fork of it."""
        html = f"{self.server_url}/{full_name}"
        return {
            **self._full_repository(),
            **self._minimal_repository(full_name),
            "clone_url": f"{html}.git",
            "git_url": f"git://{self.host}/{full_name}.git",
            "ssh_url": f"git@{self.host}:{full_name}.git",
            "svn_url": html,
            "has_downloads": True,
        }

    def _pull_json(self, pull: EmulatedPull) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        html = f"{self.server_url}/{self.full_name}"
        number = pull.number
        head_repo = pull.head_repository or self.full_name
        author = self._user(head_repo.split("/", 1)[0], 583_231, "User")
        base_sha = self.branches.get(pull.base_ref, fake_sha("base"))

        def end(ref: str, sha: str, repo: str) -> dict[str, Any]:
            return {
                "label": f"{repo.split('/', 1)[0]}:{ref}",
                "ref": ref,
                "sha": sha,
                "repo": self._repository_json(repo),
                "user": self._user(repo.split("/", 1)[0], 500_001),
            }

        links = {
            "self": f"{api}/pulls/{number}",
            "html": f"{html}/pull/{number}",
            "issue": f"{api}/issues/{number}",
            "comments": f"{api}/issues/{number}/comments",
            "review_comments": f"{api}/pulls/{number}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{api}/pulls/{number}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }
        return {
            "url": links["self"],
            "id": 1_500_000_000 + number,
            "node_id": f"PR_kwDO{number}",
            "html_url": links["html"],
            "diff_url": f"{html}/pull/{number}.diff",
            "patch_url": f"{html}/pull/{number}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": author,
            "body": None,
            "labels": [],
            "milestone": None,
            "created_at": pull.created_at,
            "updated_at": pull.created_at,
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": end(pull.head_ref, pull.head_sha, head_repo),
            "base": end(pull.base_ref, base_sha, self.full_name),
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": "CONTRIBUTOR" if pull.head_repository else "MEMBER",
            "auto_merge": None,
            "draft": False,
            "merged": False,
            "mergeable": True,
            "rebaseable": True,
            "mergeable_state": "clean",
            "merged_by": None,
            "comments": len(self.comments_on(number)),
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def _status_json(self, status: StatusRecord) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        return {
            "url": f"{api}/statuses/{status.sha}",
            "avatar_url": None,
            "id": status.id,
            "node_id": f"SC_kwDO{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": status.created_at,
            "updated_at": status.created_at,
            "creator": self._user("github-actions[bot]", 41_898_282, "Bot"),
        }


def iter_operations(subset: OpenAPISubset | None = None) -> Iterator[Operation]:
    """The operations the emulator serves (for tests that check coverage)."""
    yield from (subset or OpenAPISubset()).operations
