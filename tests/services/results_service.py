"""GitHub in a box: the Actions *results service* that the artifact (and cache) actions talk to.

A real HTTP server on 127.0.0.1 that the official ``actions/upload-artifact`` and
``actions/download-artifact`` reach through ``ACTIONS_RESULTS_URL``, authorised by
``ACTIONS_RUNTIME_TOKEN``, exactly as on GitHub:

* **Twirp JSON** services under ``/twirp/<package>.<Service>/<Method>``. Requests use the
  protobuf field names (snake_case); int64 values travel as strings; an unknown field or a
  wrong type is refused (``malformed``), so a client that sends a shape GitHub would not
  accept fails here too. Errors are Twirp's ``{"code", "msg"}`` with the matching status.
* the runtime token is a JWT (HS256, signed by this service) whose ``scp`` claim holds
  ``Actions.Results:<run backend id>:<job backend id>``; every request must name the run and
  job of its token.
* **signed blob URLs** (Azure-blob style, ``/<account>/<container>/<blob>?sig=...``) taking a
  single PUT, or block PUTs (``comp=block``) and the block list (``comp=blocklist``), and
  serving GETs; the signature covers the path, the permission and the expiry.

``ArtifactService`` (CreateArtifact, FinalizeArtifact, ListArtifacts, GetSignedArtifactURL,
DeleteArtifact) follows GitHub's rules: FinalizeArtifact checks the size and the sha256 digest of
what was uploaded; every artifact has a retention (``expires_at``, default 90 days) and disappears
from the service once expired. ``ArtifactStore`` keeps the artifacts; the REST API of the emulator
(``github_emulator.py``) lists and serves the same ones.

**Artifacts belong to a run attempt.** The rule, and where it comes from:

* a name is unique per run *attempt*, not per run: a re-run ("Re-run jobs") uploads a second
  artifact of the same name to the same run. Every attempt has its own run backend id in its
  runtime token (``RuntimeTokens.mint``), and the internal (Twirp) API is scoped to the token's
  run backend id: ListArtifacts, GetSignedArtifactURL, DeleteArtifact and the name check of
  CreateArtifact see only the current attempt's artifacts. So upload-artifact's ``overwrite: true``
  (``deleteArtifactInternal``: ListArtifacts with the token's backend ids, then DeleteArtifact)
  deletes only a copy of the *same* attempt, and a token-less download-artifact cannot reach an
  earlier attempt's artifact (GitHub answers 404 for it since 2026-07).
* the REST API (``GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts``) lists every
  attempt's artifacts, each with ``created_at`` and ``workflow_run`` ``{id, repository_id,
  head_repository_id, head_branch, head_sha}`` (GitHub's OpenAPI ``artifact`` schema: no attempt
  number); download-artifact with ``github-token`` + ``run-id`` goes through it.
* download by name returns the highest artifact id among those of the name
  (``getArtifactPublic`` / ``getArtifactInternal``: ``sort((a, b) => b.id - a.id)[0]``), and a
  listing with ``latest`` keeps the highest id per name (``filterLatest``); 2026 reports show an
  older upload holding the higher id, so nothing may rely on the order of ids.
  ``ArtifactStore(descending_ids=True)`` hands out ids that way, to prove that.

Sources: @actions/artifact 6.2.1 as built into actions/upload-artifact v7.0.0 and
actions/download-artifact v8.0.1 (``../shared/gha-actions/actions/*/dist``: ``getBackendIdsFromToken``,
``deleteArtifactInternal``, ``getArtifactPublic``, ``filterLatest``); GitHub's REST description
(``@octokit/openapi``, operation ``actions/list-workflow-run-artifacts``); the project's checked
notes (``FIELD-NOTES.md``, "Checked since (2026-12)"), from GitHub's docs and changelog.

``CacheService`` (CreateCacheEntry, FinalizeCacheEntryUpload, GetCacheEntryDownloadURL: the
cache service v2 that ``actions/cache`` v4.2+ speaks when ``ACTIONS_CACHE_SERVICE_V2`` is set)
follows GitHub's cache rules: an entry is a key, a version (the client's hash of the paths and the
compression) and a scope (the ref it was saved from, taken from the runtime token's ``ac`` claim);
a restore matches the version exactly and looks, in each scope the token may read (the run's ref,
then the default branch), for the key exactly, then for the newest entry whose key starts with
the key, then with each restore key in order; entries are immutable (saving an existing key,
version and scope again is a 409 Conflict, as on GitHub); an entry not restored for 7 days is
evicted. ``CacheStore`` keeps the entries: ``saved()`` lists them and ``lookups`` records every
restore with the key it matched, for tests.

    with GitHubBox(...) as box:            # its runs get ACTIONS_CACHE_SERVICE_V2=true
        ...run a workflow that uses actions/cache...
        [entry.key for entry in box.results.caches.saved()]
        box.results.caches.lookups          # [CacheLookup(key, restore_keys, version, matched)]
        box.results.caches.content(entry)   # the archive's bytes (tar + zstd or gzip)

More Twirp services plug in beside them: subclass ``TwirpService``, declare each method's request
fields, and use ``ResultsService.blobs`` for the bytes (``BlobStore.signed_url`` / ``blob``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from services.http_service import HttpService

ARTIFACT_SERVICE = "github.actions.results.api.v1.ArtifactService"
CACHE_SERVICE = "github.actions.results.api.v1.CacheService"
DEFAULT_RETENTION = timedelta(days=90)  # GitHub's default for a public or private repository
BLOB_ACCOUNT = "actionsresults"
SIGNED_URL_TTL = timedelta(hours=1)
CACHE_EVICTION = timedelta(days=7)  # GitHub evicts a cache entry not accessed for this long
CACHE_KEY_LIMIT = 512  # characters; the client refuses longer keys too, and any comma
READ, WRITE = 1, 2  # the permission bits of a scope in the runtime token's ``ac`` claim
_UUID_NAMESPACE = uuid.UUID("6f3f0b36-6d1c-4a7e-9d55-5f0e0c9b1a00")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(when: datetime) -> str:
    """A protobuf Timestamp in JSON: RFC 3339 in UTC with a ``Z``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when


class TwirpError(Exception):
    """Answered as Twirp's JSON error: ``{"code": ..., "msg": ...}``."""

    STATUS: ClassVar[dict[str, int]] = {
        "malformed": 400,
        "invalid_argument": 400,
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "already_exists": 409,
        "failed_precondition": 412,
        "internal": 500,
        "bad_route": 404,
    }

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg

    @property
    def status(self) -> int:
        return self.STATUS[self.code]


# --------------------------------------------------------------------------- runtime tokens


@dataclass(frozen=True)
class Identity:
    """Whose request it is: the run and job named by the runtime token's ``scp`` claim, and the
    cache scopes of its ``ac`` claim (``(ref, permission bits)``, the run's own ref first)."""

    run_backend_id: str
    job_backend_id: str
    cache_scopes: tuple[tuple[str, int], ...] = ()

    def cache_scope(self, permission: int) -> list[str]:
        """The refs whose caches this token may read (``READ``) or write (``WRITE``), in order."""
        return [ref for ref, granted in self.cache_scopes if granted & permission]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RuntimeTokens:
    """Mints and checks the JWTs that act passes to a job as ``ACTIONS_RUNTIME_TOKEN``."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.run_ids: dict[str, int] = {}  # run backend id -> the REST run id
        self.run_attempts: dict[str, int] = {}  # run backend id -> the run attempt it stands for

    @staticmethod
    def run_backend_id(run_id: int, run_attempt: int = 1) -> str:
        """The backend id of one run *attempt*: a re-run gets another one (the artifact scope)."""
        return str(uuid.uuid5(_UUID_NAMESPACE, f"run-{run_id}-attempt-{run_attempt}"))

    def mint(
        self,
        run_id: int,
        run_attempt: int = 1,
        job: str = "train",
        *,
        ref: str = "refs/heads/main",
        default_ref: str = "refs/heads/main",
    ) -> str:
        """A token for one job of one run attempt (each attempt has its own run backend id).

        Its ``ac`` claim is GitHub's: the run's ``ref`` may read and write caches, the default
        branch's ``default_ref`` (when another) may only be read.
        """
        run_backend = self.run_backend_id(run_id, run_attempt)
        job_backend = str(uuid.uuid5(_UUID_NAMESPACE, f"job-{run_id}-{run_attempt}-{job}"))
        self.run_ids[run_backend] = run_id
        self.run_attempts[run_backend] = run_attempt
        scopes = [{"Scope": ref, "Permission": READ | WRITE}]
        if default_ref != ref:
            scopes.append({"Scope": default_ref, "Permission": READ})
        claims = {
            "scp": f"Actions.GenericRead:{run_backend} Actions.Results:{run_backend}:{job_backend} "
            f"Actions.UploadArtifacts:{run_backend}:{job_backend}",
            "iss": "github-in-a-box",
            "aud": "vso:actions",
            "exp": int((utcnow() + timedelta(hours=6)).timestamp()),
            "ac": json.dumps(scopes),
        }
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64url(json.dumps(claims).encode())
        signature = hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64url(signature)}"

    def identify(self, authorization: str) -> Identity:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise TwirpError("unauthenticated", "a bearer runtime token is required")
        header, body, signature = token.split(".")
        expected = hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(_unb64url(signature), expected)
            claims = json.loads(_unb64url(body)) if valid else {}
        except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
            valid = False
        if not valid:
            raise TwirpError("unauthenticated", "the runtime token's signature is not valid")
        if claims.get("exp", 0) < utcnow().timestamp():
            raise TwirpError("unauthenticated", "the runtime token has expired")
        for scope in str(claims.get("scp", "")).split(" "):
            parts = scope.split(":")
            if parts[0] == "Actions.Results" and len(parts) == 3:
                return Identity(parts[1], parts[2], _cache_scopes(claims.get("ac", "[]")))
        raise TwirpError("permission_denied", "the runtime token has no Actions.Results scope")


def _cache_scopes(claim: Any) -> tuple[tuple[str, int], ...]:
    """The ``ac`` claim, a JSON text: ``[{"Scope": "refs/heads/main", "Permission": 3}, ...]``."""
    try:
        scopes = json.loads(claim) if isinstance(claim, str) else []
        return tuple((str(s["Scope"]), int(s["Permission"])) for s in scopes)
    except (ValueError, TypeError, KeyError):
        raise TwirpError("unauthenticated", "the runtime token's ac claim is not valid") from None


# --------------------------------------------------------------------------- blobs


@dataclass
class Blob:
    data: bytes = b""
    content_type: str = "application/octet-stream"
    committed: bool = False
    blocks: dict[str, bytes] = field(default_factory=dict)  # staged, not yet in the block list


class BlobStore:
    """Blob storage behind signed URLs, the way Azure Blob Storage answers the Azure SDK."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.blobs: dict[str, Blob] = {}  # "/<account>/<container>/<blob>" -> Blob
        self.base_url = ""  # set by ResultsService.start()
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path?comp, status)

    def signed_url(self, path: str, permission: str, ttl: timedelta = SIGNED_URL_TTL) -> str:
        """A URL that allows ``permission`` (``r`` read, ``cw`` create/write) on ``path`` until it expires."""
        expiry = rfc3339(utcnow() + ttl)
        sig = self._sign(path, permission, expiry)
        query = urllib.parse.urlencode(
            {"sv": "2024-08-04", "sr": "b", "sp": permission, "se": expiry, "sig": sig}
        )
        return f"{self.base_url}{urllib.parse.quote(path)}?{query}"

    def blob(self, path: str) -> Blob | None:
        with self.lock:
            found = self.blobs.get(path)
            return found if found is not None and found.committed else None

    def uploaded(self, path: str, size: Any, field: str) -> Blob:
        """The committed blob a Finalize call names, whose size must be the ``size`` it declares
        (as its request's ``field``); a TwirpError otherwise, as the service answers."""
        blob = self.blob(path)
        if blob is None:
            raise TwirpError("failed_precondition", "nothing was uploaded to the signed URL")
        if size != len(blob.data):
            raise TwirpError("invalid_argument", f"{field} {size} is not the {len(blob.data)} bytes uploaded")
        return blob

    def delete(self, path: str) -> None:
        with self.lock:
            self.blobs.pop(path, None)

    def _sign(self, path: str, permission: str, expiry: str) -> str:
        message = f"{path}\n{permission}\n{expiry}".encode()
        return base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest()).decode()

    def _authorise(self, path: str, query: Mapping[str, str], needs: str) -> None:
        permission, expiry, sig = query.get("sp", ""), query.get("se", ""), query.get("sig", "")
        if not hmac.compare_digest(sig.encode(), self._sign(path, permission, expiry).encode()):
            raise _BlobError(403, "AuthenticationFailed", "Signature did not match.")
        if parse_rfc3339(expiry) < utcnow():
            raise _BlobError(403, "AuthenticationFailed", "Signed expiry time has passed.")
        if not set(needs) <= set(permission):
            raise _BlobError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )

    def handle(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One blob request: (status, headers, body)."""
        try:
            if method in ("GET", "HEAD"):
                self._authorise(path, query, "r")
                blob = self.blob(path)
                if blob is None:
                    raise _BlobError(404, "BlobNotFound", "The specified blob does not exist.")
                return 200, {"Content-Type": blob.content_type, **self._stamp(blob.data)}, blob.data
            if method == "PUT":
                self._authorise(path, query, "w")
                return self._put(path, query, headers, body)
            raise _BlobError(405, "UnsupportedHttpVerb", f"{method} is not supported")
        except _BlobError as err:
            payload = (
                f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{err.code}</Code>'
                f"<Message>{err.message}</Message></Error>"
            ).encode()
            return (
                err.status,
                {"Content-Type": "application/xml", "x-ms-error-code": err.code, **self._stamp(payload)},
                payload,
            )

    def _put(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        comp = query.get("comp")
        with self.lock:
            blob = self.blobs.setdefault(path, Blob())
            if comp == "block":
                block_id = query.get("blockid", "")
                if not block_id:
                    raise _BlobError(400, "InvalidQueryParameterValue", "blockid is required")
                blob.blocks[block_id] = body
                return 201, self._stamp(b""), b""
            if comp == "blocklist":
                listed = re.findall(rb"<(Latest|Uncommitted)>([^<]*)</\1>", body)
                ids = [block_id.decode() for _, block_id in listed]
                missing = [i for i in ids if i not in blob.blocks]
                if missing:
                    raise _BlobError(400, "InvalidBlockList", f"unknown block {missing[0]}")
                blob.data = b"".join(blob.blocks[i] for i in ids)
                blob.blocks.clear()
                blob.content_type = headers.get("x-ms-blob-content-type", blob.content_type)
                blob.committed = True
                return 201, self._stamp(blob.data), b""
            if comp is None and headers.get("x-ms-blob-type", "").lower() == "blockblob":
                blob.data, blob.committed = body, True
                blob.content_type = headers.get("Content-Type", blob.content_type)
                return 201, self._stamp(body), b""
            raise _BlobError(400, "InvalidQueryParameterValue", f"unsupported PUT (comp={comp})")

    @staticmethod
    def _stamp(data: bytes) -> dict[str, str]:
        """Headers every Azure blob response carries (the SDK reads them)."""
        return {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-version": "2024-08-04",
            "ETag": f'"0x{hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16].upper()}"',
            "Last-Modified": utcnow().strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "x-ms-request-server-encrypted": "true",
            "Content-MD5": base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
        }


class _BlobError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --------------------------------------------------------------------------- Twirp services


#: Request field types: "string", "int64" (a JSON string or number), "int32", "timestamp"
#: (RFC 3339 string), "string_value" / "int64_value" (wrappers: the bare value in JSON),
#: "strings" (a repeated string: a JSON list), "message" (a nested message, kept as a dict).
Fields = Mapping[str, str]
Handler = Callable[[Identity, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    fields: Fields
    handler: Handler


class TwirpService:
    """One Twirp service: a name and its methods, each with its request fields."""

    name = ""

    def methods(self) -> dict[str, Method]:
        raise NotImplementedError

    def call(self, method: str, identity: Identity, raw: bytes) -> dict[str, Any]:
        spec = self.methods().get(method)
        if spec is None:
            raise TwirpError("bad_route", f"no method {method} in {self.name}")
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            raise TwirpError("malformed", "the body is not JSON") from None
        if not isinstance(request, dict):
            raise TwirpError("malformed", "the body is not a JSON object")
        return spec.handler(identity, _decode(request, spec.fields))


def _decode(request: dict[str, Any], fields: Fields) -> dict[str, Any]:
    """The request as Python values; unknown fields and wrong types are ``malformed``."""
    out: dict[str, Any] = {}
    for name, value in request.items():
        kind = fields.get(name)
        if kind is None:
            raise TwirpError("malformed", f'unknown field "{name}"')
        try:
            out[name] = _convert(kind, value)
        except (TypeError, ValueError):
            raise TwirpError("malformed", f"field {name}: {json.dumps(value)[:60]} is not a {kind}") from None
    return out


def _convert(kind: str, value: Any) -> Any:
    if kind in ("string", "string_value"):
        if not isinstance(value, str):
            raise TypeError(kind)
        return value
    if kind in ("int64", "int64_value", "int32"):
        digits = isinstance(value, (int, str)) and not isinstance(value, bool)
        if not digits or not re.fullmatch(r"-?\d+", str(value)):
            raise TypeError(kind)
        return int(value)
    if kind == "timestamp":
        if not isinstance(value, str):
            raise TypeError(kind)
        return parse_rfc3339(value)
    if kind == "strings":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TypeError(kind)
        return list(value)
    if kind == "message":
        if not isinstance(value, dict):
            raise TypeError(kind)
        return value
    raise ValueError(kind)


_RUN_JOB = {"workflow_run_backend_id": "string", "workflow_job_run_backend_id": "string"}


@dataclass
class Artifact:
    """One artifact of one run, as GitHub keeps it."""

    id: int
    run_id: int
    run_backend_id: str
    job_backend_id: str
    name: str
    blob_path: str
    created_at: datetime
    expires_at: datetime
    size: int = 0
    digest: str | None = None  # "sha256:<hex>", set by FinalizeArtifact
    finalized: bool = False
    deleted: bool = False
    run_attempt: int = 1  # the attempt whose job uploaded it (run_backend_id is that attempt's)

    @property
    def expired(self) -> bool:
        return utcnow() >= self.expires_at

    @property
    def live(self) -> bool:
        """Listed and downloadable: finalized, not deleted, not expired."""
        return self.finalized and not self.deleted and not self.expired


class ArtifactStore:
    """Every artifact of the box, shared by the results service and the REST API."""

    def __init__(self, blobs: BlobStore, *, descending_ids: bool = False) -> None:
        self.blobs = blobs
        self.artifacts: list[Artifact] = []
        self.lock = threading.RLock()
        #: True: each new artifact gets a *lower* id than the ones before (2026 reports: an older upload
        #: can hold the higher id), so a test shows that no selection relies on the order of ids.
        self.descending_ids = descending_ids
        self._ids = iter(range(4_000_000_001, 5_000_000_000))
        self._lower_ids = iter(range(4_000_000_000, 3_000_000_000, -1))

    def create(
        self, run_id: int, identity: Identity, name: str, expires_at: datetime, run_attempt: int | None = None
    ) -> Artifact:
        """A new artifact of ``identity``'s run attempt (``run_attempt``: the token's, else 1)."""
        with self.lock:
            artifact_id = next(self._lower_ids if self.descending_ids else self._ids)
            artifact = Artifact(
                artifact_id,
                run_id,
                identity.run_backend_id,
                identity.job_backend_id,
                name,
                f"/{BLOB_ACCOUNT}/run-{run_id}/{artifact_id}.zip",
                utcnow(),
                expires_at,
                run_attempt=run_attempt or 1,
            )
            self.artifacts.append(artifact)
            return artifact

    def of_attempt(self, run_backend_id: str, *, name: str | None = None) -> list[Artifact]:
        """Live artifacts of one run attempt (its run backend id): what the internal API sees."""
        with self.lock:
            return [
                a
                for a in self.artifacts
                if a.run_backend_id == run_backend_id and a.live and (name is None or a.name == name)
            ]

    def of_run(
        self, run_id: int, *, name: str | None = None, include_expired: bool = False
    ) -> list[Artifact]:
        """Finalized, undeleted artifacts of a run, every attempt's (expired ones too with
        ``include_expired``): what the REST API lists."""
        with self.lock:
            return [
                a
                for a in self.artifacts
                if a.run_id == run_id
                and a.finalized
                and not a.deleted
                and (include_expired or not a.expired)
                and (name is None or a.name == name)
            ]

    def get(self, artifact_id: int) -> Artifact | None:
        with self.lock:
            found = (a for a in self.artifacts if a.id == artifact_id and a.finalized and not a.deleted)
            return next(found, None)

    def content(self, artifact: Artifact) -> bytes:
        blob = self.blobs.blob(artifact.blob_path)
        return blob.data if blob is not None else b""

    def delete(self, artifact: Artifact) -> None:
        with self.lock:
            artifact.deleted = True
            self.blobs.delete(artifact.blob_path)

    def expire(self, run_id: int, name: str) -> Artifact:
        """Test helper: the run's artifact passed its retention (GitHub keeps listing it as expired)."""
        with self.lock:
            artifact = max(self.of_run(run_id, name=name), key=lambda a: a.created_at)
            artifact.expires_at = utcnow() - timedelta(seconds=1)
            return artifact

    def history(self) -> Iterator[Artifact]:
        with self.lock:
            yield from list(self.artifacts)


class ArtifactService(TwirpService):
    """``github.actions.results.api.v1.ArtifactService`` (artifact.proto of @actions/artifact)."""

    name = ARTIFACT_SERVICE

    def __init__(self, store: ArtifactStore, tokens: RuntimeTokens) -> None:
        self.store = store
        self.tokens = tokens

    def methods(self) -> dict[str, Method]:
        return {
            "CreateArtifact": Method(
                {
                    **_RUN_JOB,
                    "name": "string",
                    "expires_at": "timestamp",
                    "version": "int32",
                    "mime_type": "string_value",
                },
                self.create,
            ),
            "FinalizeArtifact": Method(
                {**_RUN_JOB, "name": "string", "size": "int64", "hash": "string_value"}, self.finalize
            ),
            "ListArtifacts": Method(
                {**_RUN_JOB, "name_filter": "string_value", "id_filter": "int64_value"}, self.list
            ),
            "GetSignedArtifactURL": Method({**_RUN_JOB, "name": "string"}, self.signed_url),
            "DeleteArtifact": Method({**_RUN_JOB, "name": "string"}, self.delete),
        }

    def _run_id(self, identity: Identity, request: Mapping[str, Any], *, own_job: bool = True) -> int:
        """The run of the request, whose run attempt must be the token's (and its job, unless ``own_job``
        is False: DeleteArtifact and GetSignedArtifactURL name the job that uploaded the artifact, e.g.
        another job of the same attempt)."""
        same_job = request.get("workflow_job_run_backend_id") == identity.job_backend_id or not own_job
        if request.get("workflow_run_backend_id") != identity.run_backend_id or not same_job:
            raise TwirpError("permission_denied", "the request names another run or job than its token")
        return self.tokens.run_ids[identity.run_backend_id]

    @staticmethod
    def _name(request: Mapping[str, Any]) -> str:
        name = request.get("name", "")
        if not name or re.search(r'[":<>|*?\r\n\\/]', name):
            raise TwirpError("invalid_argument", "the artifact name is empty or holds a character it may not")
        return str(name)

    def create(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        run_id, name = self._run_id(identity, request), self._name(request)
        if request.get("version") not in (4, 5, 6, 7):
            raise TwirpError("invalid_argument", f"unsupported artifact version {request.get('version')}")
        if self.store.of_attempt(identity.run_backend_id, name=name):  # unique per run attempt
            raise TwirpError(
                "already_exists", "an artifact with this name already exists on the workflow run"
            )
        expires_at = request.get("expires_at") or utcnow() + DEFAULT_RETENTION
        artifact = self.store.create(
            run_id, identity, name, expires_at, self.tokens.run_attempts.get(identity.run_backend_id, 1)
        )
        url = self.store.blobs.signed_url(artifact.blob_path, "cw")
        return {"ok": True, "signed_upload_url": url}

    def finalize(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        self._run_id(identity, request)
        name = self._name(request)
        pending = [
            a
            for a in self.store.history()
            if a.run_backend_id == identity.run_backend_id
            and a.name == name
            and not a.finalized
            and not a.deleted
        ]
        if not pending:
            raise TwirpError("not_found", f"no artifact {name} is being uploaded in this run")
        artifact = pending[-1]
        blob = self.store.blobs.uploaded(artifact.blob_path, request.get("size"), "size")
        digest = f"sha256:{hashlib.sha256(blob.data).hexdigest()}"
        if request.get("hash") not in (None, digest):
            raise TwirpError("invalid_argument", "hash does not match the uploaded bytes")
        with self.store.lock:
            artifact.size, artifact.digest, artifact.finalized = len(blob.data), digest, True
        return {"ok": True, "artifact_id": str(artifact.id)}

    def list(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        self._run_id(identity, request)
        found = self.store.of_attempt(identity.run_backend_id, name=request.get("name_filter"))
        if "id_filter" in request:
            found = [a for a in found if a.id == request["id_filter"]]
        return {
            "artifacts": [
                {
                    "workflow_run_backend_id": a.run_backend_id,
                    "workflow_job_run_backend_id": a.job_backend_id,
                    "database_id": str(a.id),
                    "name": a.name,
                    "size": str(a.size),
                    "created_at": rfc3339(a.created_at),
                    "digest": a.digest,
                }
                for a in found
            ]
        }

    def signed_url(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        # Any job of the run attempt may download what another job of it uploaded (download-artifact
        # names the uploading job, from ListArtifacts): only the run attempt must be the token's. An
        # earlier attempt's artifact is not found here (404): only the REST API, with a token, reaches it.
        self._run_id(identity, request, own_job=False)
        name = self._name(request)
        found = self.store.of_attempt(identity.run_backend_id, name=name)
        if not found:
            raise TwirpError("not_found", f"no artifact {name} in this run attempt")
        return {"signed_url": self.store.blobs.signed_url(found[-1].blob_path, "r")}

    def delete(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        self._run_id(identity, request, own_job=False)
        name = self._name(request)
        found = [
            a
            for a in self.store.artifacts
            if a.run_backend_id == identity.run_backend_id
            and a.name == name
            and a.finalized
            and not a.deleted
            and a.job_backend_id == request.get("workflow_job_run_backend_id")
        ]
        if not found:
            raise TwirpError("not_found", f"no artifact {name} in this run attempt")
        for artifact in found:
            self.store.delete(artifact)
        return {"ok": True, "artifact_id": str(found[-1].id)}


# --------------------------------------------------------------------------- caches


@dataclass
class CacheEntry:
    """One saved (or being saved) cache entry: immutable once finalized."""

    id: int
    key: str
    version: str  # the client's hash of the cached paths and the compression method
    scope: str  # the ref it was saved from, e.g. refs/heads/main
    blob_path: str
    created_at: datetime
    size: int = 0
    finalized: bool = False
    last_accessed_at: datetime | None = None

    @property
    def evicted(self) -> bool:
        """Not accessed (restored, or created) for ``CACHE_EVICTION``: GitHub has removed it."""
        return utcnow() - (self.last_accessed_at or self.created_at) >= CACHE_EVICTION


@dataclass(frozen=True)
class CacheLookup:
    """One restore as the service answered it (``matched`` is None on a miss)."""

    key: str
    restore_keys: tuple[str, ...]
    version: str
    scopes: tuple[str, ...]
    matched: str | None


class CacheStore:
    """Every cache entry of the repository, with GitHub's matching rules."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.entries: list[CacheEntry] = []
        self.lookups: list[CacheLookup] = []
        self.lock = threading.RLock()
        self._ids = iter(range(1, 1_000_000_000))

    def reserve(self, key: str, version: str, scope: str) -> CacheEntry:
        """A new entry being uploaded; an existing one with the same key, version and scope is a conflict."""
        with self.lock:
            if any(
                e.key == key and e.version == version and e.scope == scope and not e.evicted
                for e in self.entries
            ):
                raise TwirpError(
                    "already_exists", "cache entry with the same key, version, and scope already exists"
                )
            entry_id = next(self._ids)
            entry = CacheEntry(entry_id, key, version, scope, f"/{BLOB_ACCOUNT}/caches/{entry_id}", utcnow())
            self.entries.append(entry)
            return entry

    def find(self, scopes: list[str], key: str, restore_keys: list[str], version: str) -> CacheEntry | None:
        """The entry a restore gets, as GitHub picks it: in each readable scope in turn, the key
        exactly, then the newest entry whose key starts with the key, then with each restore key."""
        with self.lock:
            found = None
            for scope in scopes:
                newest = [
                    e
                    for e in reversed(self.entries)
                    if e.finalized and not e.evicted and e.version == version and e.scope == scope
                ]
                found = next((e for e in newest if e.key == key), None) or next(
                    (e for prefix in (key, *restore_keys) for e in newest if e.key.startswith(prefix)), None
                )
                if found is not None:
                    found.last_accessed_at = utcnow()
                    break
            self.lookups.append(
                CacheLookup(
                    key, tuple(restore_keys), version, tuple(scopes), found.key if found is not None else None
                )
            )
            return found

    def saved(self, key: str | None = None) -> list[CacheEntry]:
        """Finalized entries that GitHub still keeps (optionally with one key), oldest first."""
        with self.lock:
            return [e for e in self.entries if e.finalized and not e.evicted and key in (None, e.key)]

    def content(self, entry: CacheEntry) -> bytes:
        blob = self.blobs.blob(entry.blob_path)
        return blob.data if blob is not None else b""

    def age(self, entry: CacheEntry, unused_for: timedelta) -> None:
        """Test helper: the entry was last restored ``unused_for`` ago (past 7 days it is evicted)."""
        with self.lock:
            entry.created_at = entry.last_accessed_at = utcnow() - unused_for


class CacheService(TwirpService):
    """``github.actions.results.api.v1.CacheService`` (cache.proto of @actions/cache)."""

    name = CACHE_SERVICE

    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def methods(self) -> dict[str, Method]:
        common = {"metadata": "message", "key": "string", "version": "string"}
        return {
            "CreateCacheEntry": Method(common, self.create),
            "FinalizeCacheEntryUpload": Method({**common, "size_bytes": "int64"}, self.finalize),
            "GetCacheEntryDownloadURL": Method({**common, "restore_keys": "strings"}, self.download_url),
        }

    @staticmethod
    def _key_and_version(request: Mapping[str, Any]) -> tuple[str, str]:
        key, version = str(request.get("key", "")), str(request.get("version", ""))
        for text in (key, *request.get("restore_keys", [])):
            if not text or len(text) > CACHE_KEY_LIMIT or "," in text:
                raise TwirpError(
                    "invalid_argument",
                    f"a cache key must be 1 to {CACHE_KEY_LIMIT} characters without a comma",
                )
        if not version:
            raise TwirpError("invalid_argument", "the cache version is required")
        return key, version

    @staticmethod
    def _write_scope(identity: Identity) -> str:
        writable = identity.cache_scope(WRITE)
        if not writable:
            raise TwirpError("permission_denied", "the runtime token may not write caches")
        return writable[0]

    def create(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        key, version = self._key_and_version(request)
        entry = self.store.reserve(key, version, self._write_scope(identity))
        return {"ok": True, "signed_upload_url": self.store.blobs.signed_url(entry.blob_path, "cw")}

    def finalize(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        key, version = self._key_and_version(request)
        scope = self._write_scope(identity)
        with self.store.lock:
            pending = [
                e
                for e in self.store.entries
                if (e.key, e.version, e.scope) == (key, version, scope) and not e.finalized
            ]
            if not pending:
                raise TwirpError("not_found", "no cache entry with this key and version is being uploaded")
            entry = pending[-1]
            blob = self.store.blobs.uploaded(entry.blob_path, request.get("size_bytes"), "size_bytes")
            entry.size, entry.finalized = len(blob.data), True
        return {"ok": True, "entry_id": str(entry.id)}

    def download_url(self, identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
        key, version = self._key_and_version(request)
        found = self.store.find(identity.cache_scope(READ), key, request.get("restore_keys", []), version)
        if found is None:  # a miss is an answer, not an error: the client then restores nothing
            return {"ok": False}
        return {
            "ok": True,
            "signed_download_url": self.store.blobs.signed_url(found.blob_path, "r"),
            "matched_key": found.key,
        }


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class TwirpCall:
    """One Twirp request as received (the tests read these)."""

    service: str
    method: str
    request: Any
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: ResultsService


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.server.service.serve(self)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return


class ResultsService(HttpService):
    """The results service on a free loopback port; ``url`` is ``ACTIONS_RESULTS_URL``."""

    def __init__(self, blobs: BlobStore | None = None, tokens: RuntimeTokens | None = None) -> None:
        self.blobs = blobs or BlobStore()
        self.tokens = tokens or RuntimeTokens()
        self.artifacts = ArtifactStore(self.blobs)
        self.caches = CacheStore(self.blobs)
        self.services: dict[str, TwirpService] = {}
        self.calls: list[TwirpCall] = []
        self.lock = threading.RLock()
        self.register(ArtifactService(self.artifacts, self.tokens))
        self.register(CacheService(self.caches))

    def register(self, service: TwirpService) -> None:
        self.services[service.name] = service

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> ResultsService:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.service = self
        self._serve_in_thread(server, "results-service")
        self.blobs.base_url = self.url.rstrip("/")
        return self

    def twirp_calls(self, method: str) -> list[TwirpCall]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def serve(self, handler: _Handler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        match = re.fullmatch(r"/twirp/([\w.]+)/(\w+)", split.path)
        if match:
            status, headers, payload = self._twirp(match.group(1), match.group(2), handler, body)
        else:
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
            path = urllib.parse.unquote(split.path)
            status, headers, payload = self.blobs.handle(
                handler.command, path, query, dict(handler.headers.items()), body
            )
            with self.blobs.lock:
                self.blobs.requests.append((handler.command, f"{path}?comp={query.get('comp', '')}", status))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if payload and handler.command != "HEAD":
            handler.wfile.write(payload)

    def _twirp(
        self, service_name: str, method: str, handler: _Handler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            if handler.command != "POST":
                raise TwirpError("bad_route", "Twirp methods are called with POST")
            if "json" not in handler.headers.get("Content-Type", ""):
                raise TwirpError("bad_route", "only the JSON protocol is served")
            service = self.services.get(service_name)
            if service is None:
                raise TwirpError("bad_route", f"no service {service_name}")
            identity = self.tokens.identify(handler.headers.get("Authorization", ""))
            status, answer = 200, service.call(method, identity, body)
        except TwirpError as err:
            status, answer = err.status, {"code": err.code, "msg": err.msg}
        try:
            recorded = json.loads(body or b"{}")
        except ValueError:
            recorded = body.decode("utf-8", "replace")
        with self.lock:
            self.calls.append(TwirpCall(service_name, method, recorded, status))
        payload = json.dumps({k: v for k, v in answer.items() if v is not None}).encode()
        return status, {"Content-Type": "application/json"}, payload
