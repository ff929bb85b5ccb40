"""notify.py against a real SMTP server (aiosmtpd in-process): TLS, AUTH, retries, outbox.

No mocks: every mail goes over a socket to ``SmtpTestServer``; only ``sleep`` is
injected so that back-off does not slow the tests down.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message, MIMEPart
from pathlib import Path
from typing import Any

import pytest

from keeptraining.engine import strategy
from keeptraining.errors import NotifyError
from keeptraining.reports import mail as notify
from keeptraining.reports import summary as report
from keeptraining.state import ledger as ledger_mod
from services.smtp_server import (
    DROP_AFTER_DATA,
    Certs,
    Received,
    SmtpTestServer,
    free_port,
    make_certificates,
)
from test_report import HOSTILE, RUN_URL, chain_case, make_config, png_size

USER = "ci-bot@example.org"
PASSWORD = "Pa55-w0rd-xyzzy-4711"  # must never show up anywhere
RECIPIENTS = ["dev@example.org", "lead@example.org"]
SENDER = "keeptraining@example.org"
SUBJECTS = {
    "reached": "[owner/repo main] Threshold reached: accuracy 0.9300 ≥ 0.90 at attempt 3 (30 epochs)",
    "exhausted": "[owner/repo main] Threshold not reached after 3 attempts: "
    "best accuracy 0.9300 at attempt 3",
    "failed": "[owner/repo main] Attempt 2 failed: Training command exited with status 1 "
    "(MemoryError: out of memory)",
}
LOG_TAIL = (
    "Epoch 4/20\n" + "x" * 50 + "\nTraceback (most recent call last):\n  <frame> & \x1b[31mMemoryError\n"
)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(certs: Certs) -> Iterator[SmtpTestServer]:
    with SmtpTestServer("starttls", certs=certs, user=USER, password=PASSWORD) as srv:
        yield srv


def settings_for(srv: SmtpTestServer, **changes: Any) -> notify.MailSettings:
    values: dict[str, Any] = {
        "server": srv.host,
        "port": srv.port,
        "security": "ssl" if srv.mode == "ssl" else "starttls",
        "username": USER,
        "password": PASSWORD,
        "mail_from": SENDER,
        "mail_to": tuple(RECIPIENTS),
        "cafile": str(srv.certs.ca_cert) if srv.certs else None,
        "timeout": 10.0,
    }
    values.update(changes)
    return notify.MailSettings(**values)


def smtp_config(srv: SmtpTestServer | None, kind: str, **changes: Any) -> Any:
    config, ledger, decision = chain_case(kind)
    smtp: dict[str, Any] = {"mail_from": SENDER, "mail_to": RECIPIENTS}
    if srv is not None:
        smtp.update(
            smtp_server=srv.host,
            smtp_port=srv.port,
            smtp_username=USER,
            smtp_security="ssl" if srv.mode == "ssl" else "starttls",
        )
    smtp.update(changes)
    config = make_config(threshold=config.threshold, max_attempts=config.max_attempts, **smtp)
    return config, ledger, decision


def simple_message(subject: str = "hello") -> EmailMessage:
    config, ledger, decision = chain_case("reached")
    message = notify.build_message(config, ledger, decision, chart_png=None, mail_from=SENDER)
    del message["Subject"]
    message["Subject"] = subject
    del message["To"]
    message["To"] = ", ".join(RECIPIENTS)
    return message


def parts(message: Message) -> dict[str, MIMEPart]:
    found: dict[str, MIMEPart] = {}
    for part in message.walk():
        assert isinstance(part, MIMEPart)
        found[part.get_content_type()] = part
    return found


# --------------------------------------------------------------------------- the three endings


@pytest.mark.parametrize("kind", ["reached", "exhausted", "failed"])
def test_chain_end_mail_arrives_complete(
    kind: str, server: SmtpTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.CAFILE_ENV, str(server.certs.ca_cert) if server.certs else "")
    config, ledger, decision = smtp_config(server, kind)
    where = notify.notify(
        config, ledger, decision, state_dir=tmp_path, password=PASSWORD, log_tail=LOG_TAIL, sleep=Sleeps()
    )
    assert where == f"mailed to {', '.join(RECIPIENTS)} via {server.host}:{server.port}"

    assert len(server.messages) == 1
    got: Received = server.messages[0]
    assert got.tls and got.authenticated
    assert got.mail_from == SENDER
    assert got.rcpt_tos == RECIPIENTS
    mail = got.message
    assert mail["Subject"] == SUBJECTS[kind]
    assert mail["From"] == SENDER
    assert [a.addr_spec for a in mail["To"].addresses] == RECIPIENTS
    assert mail["Date"] and re.fullmatch(r"<[^<>@\s]+@example\.org>", mail["Message-ID"])
    assert mail.get_content_type() == "multipart/alternative"

    found = parts(mail)
    assert {"text/plain", "multipart/related", "text/html", "image/png"} <= set(found)
    text = found["text/plain"].get_content().replace("\r\n", "\n")  # CRLF on the wire
    page = found["text/html"].get_content().replace("\r\n", "\n")
    png = found["image/png"].get_content()
    assert report.verdict(ledger, config, decision) in text
    assert report.attempts_table(ledger, config) in text
    assert "Commit:     0123456789abcdef" in text and "Branch:     main" in text
    assert RUN_URL.format(1000 + len(ledger.attempts)) in text

    cid = found["image/png"]["Content-ID"]
    assert cid and f'src="cid:{cid.strip("<>")}"' in page
    assert found["image/png"].get_content_disposition() == "inline"
    assert png_size(png) == report.CHART_SIZE_PX
    assert png == (tmp_path / "chart.png").read_bytes()  # the chart beside the ledger

    assert f'<a href="{RUN_URL.format(1001)}">1</a>' in page  # each attempt links to its run
    assert "<code>main</code>" in page and "0123456789abcdef" in page
    if kind == "failed":
        assert "Last lines of the training log" in text and "Epoch 4/20" in text
        assert "<pre" in page and "&lt;frame&gt; &amp; " in page and "\x1b" not in page
    else:
        assert "<pre" not in page and "Epoch 4/20" not in text
    assert not (tmp_path / notify.OUTBOX_DIR).exists()


def test_ledger_values_are_escaped_in_the_mail(server: SmtpTestServer) -> None:
    config, ledger, decision = smtp_config(server, "failed")
    ledger.attempts[-1].error = HOSTILE
    ledger.chain["branch"] = "x<b>y"
    ledger.attempts[0].run["url"] = 'https://e.example/"><script>alert(1)</script>'
    decision = strategy.decide(config, ledger)
    message = notify.build_message(
        config,
        ledger,
        decision,
        chart_png=b"\x89PNG\r\n\x1a\nfake",
        log_tail="<script>alert(2)</script>",
        mail_from=SENDER,
    )
    page = parts(message)["text/html"].get_content()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>" not in page
    assert "\n" not in str(message["Subject"]) and "::error::" in str(message["Subject"])
    notify.send(message, settings_for(server), sleep=Sleeps())
    assert len(server.messages) == 1


# --------------------------------------------------------------------------- TLS


def test_starttls_with_untrusted_certificate_fails_clearly(server: SmtpTestServer) -> None:
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        notify.send(simple_message(), settings_for(server, cafile=None), sleep=sleeps)
    assert "certificate could not be verified" in str(caught.value)
    assert notify.CAFILE_ENV in str(caught.value)
    assert sleeps == []  # a certificate problem is not retried
    assert server.messages == []
    assert server.authenticator is not None and server.authenticator.tries == []  # nothing sent


def test_starttls_checks_the_host_name(tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other", names=("mail.example.org",))  # trusted CA, wrong name
    with SmtpTestServer("starttls", certs=other, user=USER, password=PASSWORD) as srv:
        with pytest.raises(NotifyError, match="certificate could not be verified") as caught:
            notify.send(simple_message(), settings_for(srv), sleep=Sleeps())
        assert "mismatch" in str(caught.value) and srv.messages == []


def test_implicit_tls(certs: Certs) -> None:
    with SmtpTestServer("ssl", certs=certs, user=USER, password=PASSWORD) as srv:
        notify.send(simple_message("over smtps"), settings_for(srv), sleep=Sleeps())
        assert len(srv.messages) == 1
        got = srv.messages[0]
        assert got.tls and got.authenticated and got.rcpt_tos == RECIPIENTS
        assert got.message["Subject"] == "over smtps"


def test_starttls_is_never_skipped(certs: Certs) -> None:
    with SmtpTestServer("plain") as srv:  # offers no STARTTLS
        with pytest.raises(NotifyError, match="does not offer STARTTLS"):
            notify.send(
                simple_message(), settings_for(srv, username=None, cafile=str(certs.ca_cert)), sleep=Sleeps()
            )
        assert srv.messages == []


def test_plain_relay_without_auth_warns(capfd: pytest.CaptureFixture[str]) -> None:
    with SmtpTestServer("plain") as srv:
        notify.send(
            simple_message(), settings_for(srv, security="none", username=None, password=None), sleep=Sleeps()
        )
        assert len(srv.messages) == 1 and not srv.messages[0].tls
    assert "unencrypted" in capfd.readouterr().err


def test_plain_auth_refused_unless_allowed() -> None:
    port = free_port()  # nothing listens: the refusal must come before any connection
    settings = notify.MailSettings(
        server="127.0.0.1",
        port=port,
        security="none",
        username=USER,
        password=PASSWORD,
        mail_from=SENDER,
        mail_to=tuple(RECIPIENTS),
    )
    with pytest.raises(NotifyError, match="unencrypted") as caught:
        notify.send(simple_message(), settings, sleep=Sleeps())
    assert PASSWORD not in str(caught.value)


# --------------------------------------------------------------------------- authentication


def test_wrong_password_is_reported_without_the_password(
    server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = "Wr0ng-" + PASSWORD
    settings = settings_for(server, password=wrong)
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        notify.send(simple_message(), settings, sleep=sleeps)
    exc = caught.value
    text = str(exc)
    assert text.startswith(f"SMTP authentication failed for user {USER} at {server.host}:{server.port}")
    assert "check the smtp-username / smtp-password secrets" in text
    assert sleeps == []  # reported at once
    assert server.messages == []
    assert server.authenticator is not None and server.authenticator.tries  # the server saw the try

    shown = "".join(traceback.format_exception(exc))
    output = capfd.readouterr()
    assert exc.__cause__ is None and exc.__suppress_context__
    for haystack in (text, repr(exc), shown, output.out, output.err, repr(settings), str(settings)):
        assert wrong not in haystack
        assert PASSWORD not in haystack


def test_settings_from_config_and_environment() -> None:
    config = make_config(smtp_server="smtp.example.org", smtp_username=USER, mail_to=RECIPIENTS)
    env = {notify.PASSWORD_ENV: PASSWORD, notify.CAFILE_ENV: "/etc/ca.pem"}
    settings = notify.MailSettings.from_config(config, environ=env)
    assert (settings.port, settings.security, settings.password, settings.cafile) == (
        587,
        "starttls",
        PASSWORD,
        "/etc/ca.pem",
    )
    assert settings.mail_from == USER and settings.mail_to == tuple(RECIPIENTS)
    assert PASSWORD not in repr(settings)
    assert notify.MailSettings.from_config(make_config(smtp_security="ssl"), environ={}).port == 465
    assert notify.MailSettings.from_config(make_config(smtp_security="none"), environ={}).port == 25
    assert notify.MailSettings.from_config(make_config(smtp_port=2525), environ={}).port == 2525
    assert notify.MailSettings.from_config(config, password="given", environ=env).password == "given"


# --------------------------------------------------------------------------- retries


def test_temporary_failures_then_accept_delivers_exactly_once(certs: Certs) -> None:
    failures = [("MAIL", 421), ("DATA", 451)]  # 421 at MAIL, then 451 after the body: both temporary
    with SmtpTestServer("starttls", certs=certs, user=USER, password=PASSWORD, failures=failures) as srv:
        sleeps = Sleeps()
        notify.send(simple_message("third time lucky"), settings_for(srv), sleep=sleeps)
        assert len(srv.messages) == 1
        assert srv.messages[0].message["Subject"] == "third time lucky"
        assert srv.handler.commands["MAIL"] == 3 and srv.handler.commands["DATA"] == 2
        assert sleeps == [2.0, 4.0]


def test_no_resend_once_the_body_went_out(certs: Certs) -> None:
    with SmtpTestServer(
        "starttls", certs=certs, user=USER, password=PASSWORD, failures=[("DATA", DROP_AFTER_DATA)]
    ) as srv:
        sleeps = Sleeps()
        with pytest.raises(NotifyError, match="may or may not have been delivered"):
            notify.send(simple_message(), settings_for(srv), sleep=sleeps)
        assert len(srv.messages) == 1 and srv.handler.commands["DATA"] == 1 and sleeps == []


def test_permanent_rejection_is_not_retried(certs: Certs) -> None:
    with SmtpTestServer(
        "starttls", certs=certs, user=USER, password=PASSWORD, failures=[("MAIL", 550)]
    ) as srv:
        sleeps = Sleeps()
        with pytest.raises(NotifyError, match="550"):
            notify.send(simple_message(), settings_for(srv), sleep=sleeps)
        assert sleeps == [] and srv.handler.commands["MAIL"] == 1 and srv.messages == []


def test_retries_are_bounded(certs: Certs) -> None:
    with SmtpTestServer(
        "starttls", certs=certs, user=USER, password=PASSWORD, failures=[("MAIL", 451)] * 10
    ) as srv:
        sleeps = Sleeps()
        with pytest.raises(NotifyError, match="after 3 tries"):
            notify.send(simple_message(), settings_for(srv), attempts=3, sleep=sleeps)
        assert srv.handler.commands["MAIL"] == 3 and sleeps == [2.0, 4.0] and srv.messages == []


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_server_down_fails_after_bounded_retries_and_keeps_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config, ledger, decision = chain_case("reached")
    ledger_mod.save(state, ledger)
    checkpoint = ledger_mod.attempt_dir(state, 3) / "model.keras"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 pretend keras zip" * 100)
    before = _snapshot(state)

    port = free_port()  # nothing listens there
    config = make_config(smtp_server="127.0.0.1", smtp_port=port, mail_to=RECIPIENTS, smtp_username=USER)
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        notify.notify(config, ledger, decision, state_dir=state, password=PASSWORD, sleep=sleeps)
    assert f"via 127.0.0.1:{port} after 4 tries" in str(caught.value)
    assert "refused" in str(caught.value).lower()
    assert sleeps == [2.0, 4.0, 8.0]
    after = _snapshot(state)
    assert {k: v for k, v in after.items() if k != notify.CHART_FILE} == before  # ledger, checkpoint intact
    assert ledger_mod.load(state).to_dict() == ledger.to_dict()
    assert not (state / notify.OUTBOX_DIR).exists()


# --------------------------------------------------------------------------- outbox, selection


def test_no_smtp_server_writes_the_mail_to_the_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ledger, decision = smtp_config(None, "exhausted")
    where = notify.notify(config, ledger, decision, state_dir=tmp_path, password=None)
    assert where is not None
    path = Path(where)
    assert path.parent == tmp_path / notify.OUTBOX_DIR and path.suffix == ".eml"
    assert re.fullmatch(
        r"\d{8}-\d{6}-owner-repo-main-threshold-not-reached-after-3-attempts[a-z0-9-]*\.eml", path.name
    )
    assert str(path) in capsys.readouterr().out
    mail = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert mail["Subject"] == SUBJECTS["exhausted"]
    assert {"text/plain", "text/html", "image/png"} <= set(parts(mail))
    # A second mail with the same subject in the same second gets its own file.
    second = notify.deliver(
        notify.build_message(config, ledger, decision, chart_png=None, mail_from=notify.DEFAULT_FROM),
        notify.MailSettings.from_config(config, environ={}),
        tmp_path / notify.OUTBOX_DIR,
    )
    assert second != where and Path(second).exists() and path.exists()


def test_notify_on_excludes_an_event(server: SmtpTestServer, tmp_path: Path) -> None:
    config, ledger, decision = smtp_config(server, "reached", notify_on=["failed", "exhausted"])
    assert notify.notify(config, ledger, decision, state_dir=tmp_path, password=PASSWORD) is None
    assert server.messages == []
    assert list(tmp_path.iterdir()) == []  # no chart, no outbox


def test_a_continuing_chain_sends_nothing(server: SmtpTestServer, tmp_path: Path) -> None:
    config, ledger, decision = smtp_config(server, "continue")
    assert notify.notify(config, ledger, decision, state_dir=tmp_path, password=PASSWORD) is None
    assert server.messages == []
