"""Delivering the notification mail: the SMTP settings (the password from the environment only), the
SMTP conversation with its retries, and the outbox for when no server is configured.

``KT_SMTP_PASSWORD``
    The SMTP password. Only ever read from the environment (a secret passed to the
    action), never from a file, never stored in the ledger, never printed: it is
    not part of ``MailSettings``' repr, no error message contains it, and
    ``set_debuglevel`` (which would log the AUTH line) is never used.
``KT_SMTP_CAFILE``
    A PEM file of CA certificates to trust *instead of* the system's, for a relay
    with a private CA (and for the tests). Verification of the certificate and of
    the host name stays on in every case.
``KT_SMTP_ALLOW_PLAIN_AUTH``
    ``true`` lets ``smtp_security: none`` log in over an unencrypted connection
    (a local relay on a trusted network only). Without it such a login is refused
    before anything is sent.

Without ``smtp_server`` nothing is sent: the mail is written as an ``.eml`` file
into the outbox and its path printed, so ``keeptraining run`` on a laptop never
fails for want of a mail server.

Delivery retries, with back-off, on connection errors, timeouts and 4xx replies;
never on 5xx; an authentication failure is reported at once. Nothing is retried
once the message body has gone out, so a mail is never delivered twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.policy
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path

from keeptraining.config.settings import Config
from keeptraining.errors import NotifyError, PathRefused
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.state import safe_paths

PASSWORD_ENV = "KT_SMTP_PASSWORD"  # noqa: S105 - the variable's name, not a password
CAFILE_ENV = "KT_SMTP_CAFILE"
ALLOW_PLAIN_AUTH_ENV = "KT_SMTP_ALLOW_PLAIN_AUTH"
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_FROM = "keeptraining@localhost"

Sleep = Callable[[float], None]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MailSettings:
    server: str | None  # None: write to the outbox instead of sending
    port: int
    security: str  # starttls | ssl | none
    username: str | None
    mail_from: str
    mail_to: tuple[str, ...]
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    allow_plain_auth: bool = False
    timeout: float = 30.0  # seconds, for the connection and each reply

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port}"

    @classmethod
    def from_config(
        cls, config: Config, password: str | None = None, environ: Mapping[str, str] | None = None
    ) -> MailSettings:
        """Settings from the configuration; the password from ``password`` or ``KT_SMTP_PASSWORD``."""
        env = os.environ if environ is None else environ
        security = config.smtp_security or "starttls"
        if security not in DEFAULT_PORTS:
            raise NotifyError(
                f"smtp_security = {security!r} is not valid; expected one of {', '.join(DEFAULT_PORTS)}."
            )
        if password is None:  # the one place the password is read
            password = env.get(PASSWORD_ENV) or None
        username = config.smtp_username or None
        # The one place the sender is worked out: mail_from, else a user name that is an address.
        sender = config.mail_from or (username if username and "@" in username else DEFAULT_FROM)
        return cls(
            server=(config.smtp_server or "").strip() or None,
            port=config.smtp_port or DEFAULT_PORTS[security],
            security=security,
            username=username,
            mail_from=sender,
            mail_to=tuple(config.mail_to),
            password=password,
            cafile=env.get(CAFILE_ENV) or None,
            allow_plain_auth=env.get(ALLOW_PLAIN_AUTH_ENV, "").strip().lower() in ("1", "true", "yes", "on"),
        )


# --------------------------------------------------------------------------- sending


class _Retry(Exception):
    """A temporary failure: try again after a pause."""


class _AlreadySent(Exception):
    """The connection broke after the body went out: delivered or not, never resend."""


def _scrubber(settings: MailSettings) -> Callable[[str], str]:
    secrets: list[str] = []
    if settings.password:
        pw = settings.password
        user = settings.username or ""
        secrets = [
            pw,
            base64.b64encode(pw.encode()).decode(),
            base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
            base64.b64encode(f"{user}\0{user}\0{pw}".encode()).decode(),
        ]

    def scrub(text: str) -> str:
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    return scrub


def _reply(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return wording.one_line(f"{code} {text}", 200)


def _context(settings: MailSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=settings.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise NotifyError(f"Cannot load the CA file {settings.cafile} ({CAFILE_ENV}): {exc}") from None


def _recipients(message: EmailMessage, settings: MailSettings) -> list[str]:
    if settings.mail_to:
        return list(settings.mail_to)
    fields = [str(v) for key in ("To", "Cc") for v in message.get_all(key, [])]
    return [addr for _, addr in getaddresses(fields) if addr]


def _open(settings: MailSettings) -> smtplib.SMTP:
    assert settings.server is not None
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.server, settings.port, timeout=settings.timeout, context=_context(settings)
        )
    return smtplib.SMTP(settings.server, settings.port, timeout=settings.timeout)


def _auth_error(settings: MailSettings, code: int) -> NotifyError:
    return NotifyError(
        f"SMTP authentication failed for user {settings.username} at {settings.where} ({code}) — "
        "check the smtp-username / smtp-password secrets",
        hint=f"The password comes from the {PASSWORD_ENV} environment variable (the smtp-password input).",
    )


def _handshake(conn: smtplib.SMTP, settings: MailSettings) -> None:
    """EHLO, STARTTLS (never skipped when configured), then AUTH when a user is set."""
    conn.ehlo()
    if settings.security == "starttls":
        if not conn.has_extn("starttls"):
            raise NotifyError(
                f"The SMTP server {settings.where} does not offer STARTTLS.",
                hint="Use smtp-security: ssl (port 465) if it speaks implicit TLS; "
                "the mail is never sent unencrypted unless smtp-security is none.",
            )
        conn.starttls(context=_context(settings))
        conn.ehlo()
    if settings.username:
        try:
            conn.login(settings.username, settings.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise _Retry(f"temporary authentication failure {exc.smtp_code}") from None
            raise _auth_error(settings, exc.smtp_code) from None


def _send_once(
    payload: bytes, sender: str, recipients: list[str], settings: MailSettings
) -> dict[str, tuple[int, str]]:
    """One connection. Returns refused recipients; raises _Retry, _AlreadySent or NotifyError."""
    conn = _open(settings)
    try:
        _handshake(conn, settings)
        code, resp = conn.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, sender)
        refused: dict[str, tuple[int, str]] = {}
        for rcpt in recipients:
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                refused[rcpt] = (code, _reply(code, resp))
        if len(refused) == len(recipients):
            codes = {c for c, _ in refused.values()}
            reason = "; ".join(f"{r}: {t}" for r, (_, t) in refused.items())
            if all(400 <= c < 500 for c in codes):
                raise _Retry(f"recipients refused for now ({reason})")
            raise NotifyError(
                f"The SMTP server {settings.where} refused every recipient: {reason}",
                hint="Check the mail-to setting.",
            )
        try:
            code, resp = conn.data(payload)
        except smtplib.SMTPResponseException:
            raise  # the DATA command itself was answered with an error: nothing was sent
        except (smtplib.SMTPException, OSError) as exc:
            raise _AlreadySent(f"{type(exc).__name__}: {exc}") from None
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)  # an explicit rejection: the message was not taken
        return refused
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


def _classify(exc: BaseException, settings: MailSettings) -> tuple[bool, str]:
    """(retry?, reason) for an exception of one delivery try."""
    where = settings.where
    if isinstance(exc, _Retry):
        return True, str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False, (
            f"the server's TLS certificate could not be verified ({exc.verify_message}); "
            f"set {CAFILE_ENV} to a CA file that signs it, or fix the server's certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return False, (
            f"TLS with {where} failed ({exc.reason or exc}); check smtp-security "
            f"({settings.security}) and smtp-port: 465 is implicit TLS (ssl), 587 is starttls"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        text = _reply(code, exc.smtp_error)
        return 400 <= code < 500 or code == -1, f"the server answered {text}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True, f"the server closed the connection ({exc})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return False, f"{exc}"
    if isinstance(exc, smtplib.SMTPException):  # (an OSError subclass) any other SMTP-level problem
        return False, str(exc)
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN, f"cannot resolve {settings.server}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return True, f"timed out after {settings.timeout:g} s"
    if isinstance(exc, OSError):
        return True, exc.strerror or str(exc) or type(exc).__name__
    return False, f"{type(exc).__name__}: {exc}"


def _check(settings: MailSettings, recipients: list[str]) -> None:
    if settings.server is None:
        raise NotifyError("No SMTP server is configured.", hint="Set smtp-server, or use deliver().")
    if not recipients:
        raise NotifyError(
            "No recipient for the notification mail.", hint="Set mail-to (one or more addresses)."
        )
    if settings.username and not settings.password:
        raise NotifyError(
            f"smtp-username {settings.username} is set but no password was given.",
            hint=f"Pass the password in the {PASSWORD_ENV} environment variable "
            "(the smtp-password input, from a secret).",
        )
    if settings.security == "none":
        if settings.username and not settings.allow_plain_auth:
            raise NotifyError(
                f"Refusing to send the SMTP password unencrypted to {settings.where} (smtp-security: none).",
                hint=f"Use starttls or ssl, or set {ALLOW_PLAIN_AUTH_ENV}=true for a trusted local relay.",
            )
        gha.warn(
            f"smtp-security is none: the mail to {settings.where} travels unencrypted; "
            "use this only for a local relay.",
            title="Unencrypted mail",
        )


def _deliver_smtp(
    message: EmailMessage, settings: MailSettings, attempts: int, sleep: Sleep
) -> dict[str, tuple[int, str]]:
    recipients = _recipients(message, settings)
    _check(settings, recipients)
    sender = parseaddr(settings.mail_from)[1] or settings.mail_from
    payload = message.as_bytes(policy=email.policy.SMTP)
    scrub = _scrubber(settings)
    tries = max(1, attempts)
    reasons: list[str] = []
    for number in range(1, tries + 1):
        try:
            return _send_once(payload, sender, recipients, settings)
        except NotifyError as exc:
            raise NotifyError(scrub(exc.message), hint=scrub(exc.hint)) from None
        except _AlreadySent as exc:
            raise NotifyError(
                f"The connection to {settings.where} broke after the message was sent "
                f"({scrub(str(exc))}); it may or may not have been delivered, so it is not sent again.",
                hint="Check the mailbox; the chart and ledger are kept in the state folder.",
            ) from None
        except Exception as exc:  # classified below; anything unknown is not retried
            retry, reason = _classify(exc, settings)
            reasons.append(scrub(reason))
            if not retry:
                raise NotifyError(
                    f"Could not send the notification mail via {settings.where}: {reasons[-1]}."
                ) from None
        if number < tries:
            sleep(min(60.0, 2.0 * 2 ** (number - 1)))
    raise NotifyError(
        f"Could not send the notification mail via {settings.where} after {tries} tries: {reasons[-1]}.",
        hint="Check smtp-server, smtp-port and smtp-security; the ledger, checkpoints and chart are kept.",
    )


def send(
    message: EmailMessage, settings: MailSettings, *, attempts: int = 4, sleep: Sleep = time.sleep
) -> None:
    """Send ``message`` over SMTP, retrying temporary failures; NotifyError when it cannot."""
    refused = _deliver_smtp(message, settings, attempts, sleep)
    if refused:
        _warn_refused(refused)


def _warn_refused(refused: dict[str, tuple[int, str]]) -> None:
    listed = "; ".join(f"{r}: {t}" for r, (_, t) in refused.items())
    gha.warn(f"The SMTP server refused some recipients: {listed}", title="Mail recipients refused")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].rstrip("-") or "mail"


def write_outbox(message: EmailMessage, outbox: Path) -> Path:
    """Write ``message`` as ``<timestamp>-<subject slug>.eml`` in ``outbox`` (never overwriting)."""
    try:
        safe_paths.plain_dir(outbox, "The outbox")
    except PathRefused as exc:
        raise NotifyError(exc.message) from None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{_slug(str(message.get('Subject', '')))}"
    data = message.as_bytes(policy=email.policy.default)
    for n in range(1, 1000):
        path = outbox / (f"{base}.eml" if n == 1 else f"{base}-{n}.eml")
        try:
            with path.open("xb") as fh:
                fh.write(data)
        except FileExistsError:
            continue
        return path
    raise NotifyError(f"Cannot write the mail into {outbox}: too many files named {base}*.eml.")


def deliver(
    message: EmailMessage,
    settings: MailSettings,
    outbox: Path,
    *,
    attempts: int = 4,
    sleep: Sleep = time.sleep,
) -> str:
    """Send the message, or, with no SMTP server configured, write it to the outbox. Says where it went."""
    if settings.server is None:
        try:
            path = write_outbox(message, outbox)
        except OSError as exc:
            raise NotifyError(f"Cannot write the mail into {outbox}: {exc.strerror or exc}.") from None
        print(f"No smtp-server configured: the notification mail was written to {path}", flush=True)
        return str(path)
    refused = _deliver_smtp(message, settings, attempts, sleep)
    delivered = [r for r in _recipients(message, settings) if r not in refused]
    text = f"mailed to {', '.join(delivered)} via {settings.where}"
    if refused:
        _warn_refused(refused)
        text += f" (refused: {', '.join(refused)})"
    return text
