"""One mail when a chain ends: threshold reached, budget exhausted, or an attempt failed.

This module builds the message (subject, text and HTML bodies, the chart, the log's tail);
delivery.py sends it (SMTP settings, retries) or writes it to the outbox. Settings come from the
configuration (``smtp_server``, ``smtp_port``, ``smtp_security``, ``smtp_username``, ``mail_from``,
``mail_to``, ``notify_on``); the password only from the environment (``KT_SMTP_PASSWORD``).
"""

from __future__ import annotations

import html
import re
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

from keeptraining.config.settings import Config
from keeptraining.engine.plan import (
    CHAIN_FAILED,
    CHAIN_REACHED,
    CHAIN_STOPPED,
    EXHAUSTED,
    SUPERSEDED,
    Decision,
)
from keeptraining.errors import NotifyError
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import model_card
from keeptraining.reports import search_table as search_report
from keeptraining.reports import summary as report
from keeptraining.reports.delivery import (
    CAFILE_ENV,
    DEFAULT_FROM,
    PASSWORD_ENV,
    MailSettings,
    Sleep,
    deliver,
    send,
    write_outbox,
)
from keeptraining.state.ledger import CHART_FILE, Ledger

OUTBOX_DIR = "outbox"
EVENTS = (CHAIN_REACHED, EXHAUSTED, CHAIN_FAILED, CHAIN_STOPPED, SUPERSEDED)
LOG_TAIL_LINES = 60
LOG_TAIL_CHARS = 8000

# Named here too: the callers of the mail find its delivery where they always did.
__all__ = [
    "CAFILE_ENV",
    "DEFAULT_FROM",
    "OUTBOX_DIR",
    "PASSWORD_ENV",
    "MailSettings",
    "build_message",
    "deliver",
    "notify",
    "send",
    "subject",
    "write_outbox",
]


# --------------------------------------------------------------------------- message


def _repo_prefix(ledger: Ledger) -> str:
    repo = report.one_line(ledger.chain.get("repository") or "", 60)
    branch = report.one_line(ledger.chain.get("branch") or "", 40)
    inside = " ".join(p for p in (repo, branch) if p)
    return f"[{inside}] " if inside else ""


def subject(config: Config, ledger: Ledger, decision: Decision) -> str:
    """``[owner/repo branch] `` and the verdict, in the words the CLI and the job summary use."""
    text = (
        report.verdict(ledger, config, decision)
        if ledger.last is not None or decision.kind == CHAIN_FAILED
        else "keeptraining: no attempt ran"
    )
    return report.one_line(_repo_prefix(ledger) + text, 200)


def _tail(log_tail: str) -> str:
    lines = log_tail.rstrip().splitlines()[-LOG_TAIL_LINES:]
    text = "\n".join(lines)[-LOG_TAIL_CHARS:]
    # Keep newlines and tabs, drop other control characters (terminal escapes, NULs).
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)


def _last_run_url(ledger: Ledger) -> str | None:
    last = ledger.last
    candidates = [(last.run or {}).get("url") if last else None, ledger.chain.get("run_url")]
    for url in candidates:
        safe = report.safe_url(url)
        if safe:
            return safe
    return None


def _provenance_text(ledger: Ledger) -> list[str]:
    chain = ledger.chain
    out = []
    if chain.get("repository"):
        out.append(f"Repository: {report.one_line(chain['repository'], 100)}")
    if chain.get("branch"):
        out.append(f"Branch:     {report.one_line(chain['branch'], 100)}")
    if chain.get("commit"):
        out.append(f"Commit:     {report.one_line(chain['commit'], 64)}")
    return out


def _text_body(config: Config, ledger: Ledger, decision: Decision, log_tail: str) -> str:
    parts = [report.verdict(ledger, config, decision), ""]
    if decision.hint:
        parts += [f"What to do: {report.one_line(decision.hint, 1000)}", ""]
    trials = search_report.trials_table(ledger, config)
    if trials:
        parts += [search_report.best_line(ledger, config), "", trials, ""]
    parts += [report.attempts_table(ledger, config), ""]
    parts += [*report.cost_lines(ledger, config), ""] if report.cost_lines(ledger, config) else []
    provenance = _provenance_text(ledger)
    if provenance:
        parts += [*provenance, ""]
    url = _last_run_url(ledger)
    if url:
        parts += [f"Last run: {url}", ""]
    model = model_card.where_the_model_is(ledger)  # a reached chain: where its model is
    if model:
        parts += [model, ""]
    if decision.kind == CHAIN_FAILED and log_tail.strip():
        parts += ["Last lines of the training log:", "", _tail(log_tail), ""]
    parts.append("-- \nkeeptraining")
    return "\n".join(parts) + "\n"


_CELL = 'style="padding:4px 10px;border:1px solid #ddd;text-align:{align}"'
_COLOURS = {CHAIN_REACHED: "#1a7f37", EXHAUSTED: "#9a6700", CHAIN_STOPPED: "#9a6700", CHAIN_FAILED: "#cf222e"}


def _html_table(config: Config, ledger: Ledger) -> str:
    head = ["Attempt", "Epochs", "Trained", report.one_line(config.metric, 40), "Duration (s)", "Outcome"]
    cells = "".join(f"<th {_CELL.format(align='left')}>{html.escape(h)}</th>" for h in head)
    out = [f'<table style="border-collapse:collapse;font-size:14px"><tr>{cells}</tr>']
    for r in report.rows(ledger):
        attempt = html.escape(r.label)
        if r.run_url:
            attempt = f'<a href="{html.escape(r.run_url, quote=True)}">{attempt}</a>'
        outcome = report.outcome_text(r, 300)
        values = [attempt, f"{r.epochs_from} → {r.epochs_to}", str(r.trained), r.metric, r.duration]
        right = "".join(f"<td {_CELL.format(align='right')}>{v}</td>" for v in values)
        out.append(f"<tr>{right}<td {_CELL.format(align='left')}>{report.html_text(outcome, 300)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _html_provenance(ledger: Ledger) -> str:
    chain = ledger.chain
    items = []
    for key, label in (("repository", "Repository"), ("branch", "Branch"), ("commit", "Commit")):
        if chain.get(key):
            items.append(f"{label}: <code>{report.html_text(chain[key], 100)}</code>")
    return "<p>" + "<br>\n".join(items) + "</p>" if items else ""


def _html_body(
    config: Config, ledger: Ledger, decision: Decision, log_tail: str, chart_cid: str | None
) -> str:
    colour = _COLOURS.get(decision.kind, "#24292f")
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head>',
        '<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#24292f">',
        f'<h2 style="color:{colour}">{report.html_text(report.verdict(ledger, config, decision))}</h2>',
        _html_provenance(ledger),
    ]
    if decision.hint:
        parts.append(f"<p><b>What to do:</b> {report.html_text(decision.hint, 1000)}</p>")
    trials = search_report.trials_html(ledger, config)
    if trials:
        parts += [f"<p>{report.html_text(search_report.best_line(ledger, config), 400)}</p>", trials]
    parts.append(_html_table(config, ledger))
    parts += [f"<p>{report.html_text(line, 600)}</p>" for line in report.cost_lines(ledger, config)]
    if chart_cid:
        w, h = report.CHART_SIZE_PX
        per = "per trial and against each searched value" if trials else "per epoch"
        alt = html.escape(f"{report.one_line(config.metric, 40)} {per}", quote=True)
        parts.append(
            f'<p><img src="cid:{html.escape(chart_cid, quote=True)}" alt="{alt}" '
            f'width="{w}" height="{h}" style="max-width:100%;height:auto"></p>'
        )
    url = _last_run_url(ledger)
    if url:
        parts.append(f'<p><a href="{html.escape(url, quote=True)}">Open the last run</a></p>')
    model = model_card.where_the_model_is(ledger)
    if model:
        parts.append(f"<p>{report.html_text(model, 600)}</p>")
    if decision.kind == CHAIN_FAILED and log_tail.strip():
        parts.append("<h3>Last lines of the training log</h3>")
        parts.append(
            '<pre style="background:#f6f8fa;padding:8px;font-size:12px;white-space:pre-wrap">'
            f"{html.escape(_tail(log_tail), quote=True)}</pre>"
        )
    parts += ['<p style="color:#57606a;font-size:12px">Sent by keeptraining.</p>', "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"


def _domain(address: str) -> str:
    domain = parseaddr(address)[1].rpartition("@")[2]
    return domain if re.fullmatch(r"[A-Za-z0-9.-]{1,253}", domain or "") else "keeptraining.local"


def build_message(
    config: Config,
    ledger: Ledger,
    decision: Decision,
    *,
    chart_png: bytes | None,
    mail_from: str,
    log_tail: str = "",
) -> EmailMessage:
    """The notification: multipart/alternative of text and HTML (multipart/related with the chart).

    ``mail_from`` is ``MailSettings.mail_from``: the sender is worked out there only.
    """
    sender = mail_from
    domain = _domain(sender)
    message = EmailMessage()
    try:
        message["From"] = sender
        if config.mail_to:
            message["To"] = ", ".join(config.mail_to)
        message["Subject"] = subject(config, ledger, decision)
    except (ValueError, TypeError) as exc:  # a header with CR/LF or a malformed address
        raise NotifyError(
            f"Invalid mail header value: {exc}", hint="Check the mail-from and mail-to settings."
        ) from None
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Keeptraining-Outcome"] = decision.kind

    chart_cid = make_msgid(domain=domain) if chart_png else None
    message.set_content(_text_body(config, ledger, decision, log_tail), subtype="plain", charset="utf-8")
    message.add_alternative(
        _html_body(config, ledger, decision, log_tail, chart_cid[1:-1] if chart_cid else None),
        subtype="html",
        charset="utf-8",
    )
    if chart_png and chart_cid:
        html_part = message.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(
            chart_png,
            maintype="image",
            subtype="png",
            cid=chart_cid,
            disposition="inline",
            filename=CHART_FILE,
        )
    return message


def notify(
    config: Config,
    ledger: Ledger,
    decision: Decision,
    *,
    state_dir: Path,
    password: str | None = None,
    log_tail: str = "",
    attempts: int = 4,
    sleep: Sleep = time.sleep,
) -> str | None:
    """Mail the end of the chain when ``notify_on`` selects it; returns where it went, or None."""
    if decision.kind not in EVENTS or decision.kind not in config.notify_on:
        return None
    settings = MailSettings.from_config(config, password)
    chart_png: bytes | None = None
    try:
        chart = report.render_chart(ledger, config, state_dir / CHART_FILE, decision)
        chart_png = chart.read_bytes()
    except (OSError, ValueError, RuntimeError) as exc:  # the mail matters more than its picture
        gha.warn(f"The chart could not be drawn ({exc}); the mail goes without it.", title="No chart")
    message = build_message(
        config, ledger, decision, chart_png=chart_png, log_tail=log_tail, mail_from=settings.mail_from
    )
    return deliver(message, settings, state_dir / OUTBOX_DIR, attempts=attempts, sleep=sleep)
