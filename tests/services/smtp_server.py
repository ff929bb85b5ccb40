"""A real SMTP server for the tests: aiosmtpd in a thread, with TLS and AUTH.

- ``make_certificates(folder)``: a test CA and a server certificate it signs
  (``localhost`` and ``127.0.0.1``), made with the ``cryptography`` package.
- ``SmtpTestServer(mode=...)``: a context manager running an aiosmtpd ``Controller``
  on a free port of 127.0.0.1.

  * ``starttls``: plain connection, STARTTLS required, AUTH offered only after it;
  * ``ssl``: implicit TLS from the first byte (SMTPS);
  * ``plain``: no TLS at all (a local relay).

  With ``user``/``password`` it checks AUTH PLAIN/LOGIN against them (and
  requires AUTH before MAIL). ``failures=[("MAIL", 421), ("DATA", 451)]`` answers the
  first MAIL with 421, the next end-of-DATA with 451, then accepts;
  ``("DATA", DROP_AFTER_DATA)`` stores the message and cuts the connection before
  the 250 reply (delivered, but the client cannot know).
  ``server.messages`` holds what was accepted.

aiosmtpd facts the helpers encode (see FIELD-NOTES.md):
- ``Controller`` cannot take ``port=0`` (it connects to check start-up): a free
  port is picked first, and a start that loses the race for it is retried.
- A failed login must return ``AuthResult(success=False, handled=False)`` to get a
  535 reply; ``success=False`` alone leaves the client waiting.
- With implicit TLS aiosmtpd does not know the connection is encrypted (it only
  tracks STARTTLS), so ``auth_require_tls`` must be off there or AUTH is never
  offered.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
DROP_AFTER_DATA = 0  # failures=[("DATA", DROP_AFTER_DATA)]: store the message, then cut the connection


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    ca_cert: Path  # PEM: the test CA, what a client must trust (KT_SMTP_CAFILE)
    server_cert: Path  # PEM: localhost / 127.0.0.1, signed by the CA
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_certificates(folder: Path, names: Iterable[str] = ("localhost", HOST)) -> Certs:
    """A CA and a server certificate for ``names`` (host names or IP addresses), valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keeptraining test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keeptraining test server")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    certs = Certs(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    certs.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, certs.server_key)
    return certs


# --------------------------------------------------------------------------- handler


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Records accepted messages; answers scripted temporary/permanent failures first."""

    failures: list[tuple[str, int]] = field(default_factory=list)  # (MAIL|RCPT|DATA, code)
    implicit_tls: bool = False
    messages: list[Received] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=lambda: {"MAIL": 0, "RCPT": 0, "DATA": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _fail(self, stage: str) -> str | None:
        with self.lock:
            self.commands[stage] += 1
            if self.failures and self.failures[0][0] == stage:
                code = self.failures.pop(0)[1]
                kind = "4.3.2 Try again later" if code < 500 else "5.7.1 Rejected"
                return f"{code} {kind}"
        return None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        failed = self._fail("MAIL")
        if failed:
            return failed
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        failed = self._fail("RCPT")
        if failed:
            return failed
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failed = self._fail("DATA")
        if failed and not failed.startswith(f"{DROP_AFTER_DATA} "):
            return failed
        content = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content if isinstance(content, bytes) else content.encode(),
                    tls=self.implicit_tls or session.ssl is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        if failed:  # stored, but the client never hears the 250: the ambiguous case
            server.transport.abort()
        return "250 2.0.0 Message accepted for delivery"


@dataclass
class PasswordAuthenticator:
    """Accepts exactly one user/password; records every try (mechanism, login)."""

    user: str
    password: str
    tries: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.tries.append((mechanism, auth_data.login.decode("utf-8", "replace")))
        if auth_data.login == self.user.encode() and auth_data.password == self.password.encode():
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # 535; handled=True would hang the client


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SmtpTestServer:
    """``with SmtpTestServer("starttls", certs=..., user=..., password=...) as server: ...``"""

    def __init__(
        self,
        mode: str = "starttls",
        *,
        certs: Certs | None = None,
        user: str | None = None,
        password: str | None = None,
        failures: Iterable[tuple[str, int]] = (),
    ) -> None:
        if mode not in ("starttls", "ssl", "plain"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode != "plain" and certs is None:
            raise ValueError(f"mode {mode} needs certificates")
        self.mode = mode
        self.certs = certs
        self.host = HOST
        self.port = 0
        self.handler = RecordingHandler(failures=list(failures), implicit_tls=mode == "ssl")
        self.authenticator = PasswordAuthenticator(user, password) if user and password else None
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"server_hostname": "localhost"}  # skips a slow getfqdn()
        if self.authenticator is not None:
            kwargs["authenticator"] = self.authenticator
            # Require AUTH before MAIL where aiosmtpd can tell the session is encrypted (see above).
            kwargs["auth_required"] = self.mode == "starttls"
        if self.mode == "starttls":
            assert self.certs is not None
            kwargs.update(
                tls_context=self.certs.server_context(), require_starttls=True, auth_require_tls=True
            )
        elif self.mode == "ssl":
            assert self.certs is not None
            # aiosmtpd only counts STARTTLS as TLS: with implicit TLS, AUTH must be allowed "without" it.
            kwargs.update(ssl_context=self.certs.server_context(), auth_require_tls=False)
        else:
            kwargs.update(auth_require_tls=False)
        return kwargs

    def start(self) -> SmtpTestServer:
        last: OSError | None = None
        for _ in range(5):
            self.port = free_port()
            controller = Controller(self.handler, hostname=self.host, port=self.port, **self._kwargs())
            try:
                controller.start()
            except OSError as exc:  # lost the race for the port
                last = exc
                continue
            self._controller = controller
            return self
        raise RuntimeError(f"could not start the SMTP test server: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
