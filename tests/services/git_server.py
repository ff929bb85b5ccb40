"""GitHub in a box: the repository over git's smart HTTP protocol, for ``actions/checkout``.

``git http-backend`` (the CGI program that ships with git) answers behind a small Python
HTTP server on 127.0.0.1, so ``actions/checkout`` fetches exactly the commit it is given
(``ref:``) from ``${{ github.server_url }}/<owner>/<repo>``, offline, the way it fetches
from github.com. The repository is private: every request must carry the token, as
checkout sends it (``Authorization: basic base64(x-access-token:<token>)``).

Serve it as ``http://github.localhost:<port>``: git (through curl) resolves ``*.localhost``
to the loopback address by itself, and the artifact actions only look at the host name
(a ``*.localhost`` server is not GitHub Enterprise to them).
"""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.http_service import HttpService

HOST_NAME = "github.localhost"


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    git_server: GitServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60

    def do_GET(self) -> None:
        self.server.git_server.serve(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


class GitServer(HttpService):
    """Bare repositories under ``root`` (``<owner>/<repo>.git``), served read-only over smart HTTP."""

    def __init__(self, root: Path, tokens: Iterable[str]) -> None:
        self.root = root
        self.tokens = set(tokens)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.lock = threading.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        """``GITHUB_SERVER_URL``."""
        return f"http://{HOST_NAME}:{self.port}"

    def bare(self, full_name: str) -> Path:
        return self.root / f"{full_name}.git"

    def create(self, full_name: str) -> Path:
        """An empty bare repository that serves any commit it holds by its id (as GitHub does)."""
        path = self.bare(full_name)
        path.mkdir(parents=True)
        _git("init", "-q", "--bare", "-b", "main", str(path))
        _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=path)
        _git("config", "http.receivepack", "false", cwd=path)
        return path

    def push(self, full_name: str, work_tree: Path, branch: str = "main") -> str:
        """Push the work tree's HEAD to ``branch`` (a force push, like a rewritten branch); return the sha."""
        _git("push", "-q", "--force", str(self.bare(full_name)), f"HEAD:refs/heads/{branch}", cwd=work_tree)
        return _git("rev-parse", "HEAD", cwd=work_tree)

    def start(self) -> GitServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.git_server = self
        self._serve_in_thread(server, "git-server")
        return self

    def _authorised(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return password in self.tokens

    def serve(self, handler: _Handler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        body = _read_body(handler)
        if not self._authorised(handler.headers.get("Authorization", "")):
            self._answer(
                handler,
                split.path,
                401,
                {"WWW-Authenticate": 'Basic realm="GitHub"', "Content-Type": "text/plain"},
                b"Unauthorized\n",
            )
            return
        if split.path.endswith("/git-receive-pack") or "service=git-receive-pack" in split.query:
            self._answer(handler, split.path, 403, {"Content-Type": "text/plain"}, b"read-only\n")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": urllib.parse.unquote(split.path),
            "QUERY_STRING": split.query,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False, timeout=120
        )
        status, headers, payload = _parse_cgi(done.stdout)
        if done.returncode != 0 and status == 200:
            status, payload = 500, done.stderr
        self._answer(handler, split.path, status, headers, payload)

    def _answer(
        self, handler: _Handler, path: str, status: int, headers: dict[str, str], payload: bytes
    ) -> None:
        with self.lock:
            self.requests.append((handler.command, path, status))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body: chunked or sized, gunzipped when git compressed it."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        body = b"".join(parts)
    else:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
    if handler.headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return body


def _parse_cgi(output: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, payload = output.partition(b"\r\n\r\n")
    if not _:
        head, _, payload = output.partition(b"\n\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, payload
