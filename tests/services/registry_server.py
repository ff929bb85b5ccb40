"""A real image registry for the tests and the benchmark: Debian's ``docker-registry``, started
by ``scripts/docker-registry.sh --foreground`` on a free loopback port, owned by the caller.

    with RegistryServer(tmp_path / "registry", users={"kt": "secret"}) as server:
        server.repository("keeptraining-train")   # 127.0.0.1:PORT/keeptraining-train
        server.log()                              # its access log: every manifest and blob request

``read_only=True`` refuses every push (the registry's maintenance mode); ``users`` turns on
htpasswd authentication (bcrypt, as the registry requires).
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "docker-registry.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RegistryServer:
    def __init__(
        self,
        root: Path,
        *,
        users: Mapping[str, str] | None = None,
        read_only: bool = False,
        port: int | None = None,
    ) -> None:
        self.root = root
        self.users = dict(users or {})
        self.read_only = read_only
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = root / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None

    def repository(self, name: str) -> str:
        return f"{self.address}/{name}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> RegistryServer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = ["bash", str(SCRIPT), "--port", str(self.port), "--storage", str(self.root), "--foreground"]
        if self.users:
            import bcrypt  # noqa: PLC0415 - a test tool, only for registries with users

            lines = [
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"
                for user, password in self.users.items()
            ]
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            cmd += ["--htpasswd", str(self.root / "htpasswd")]
        if self.read_only:
            cmd.append("--read-only")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 120  # the script may first install the package
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the registry did not start on {self.address}:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        return self

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
