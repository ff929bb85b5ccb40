"""Markup that is safe for what it holds: every value from the ledger or the training script is escaped
for where it goes (markdown, HTML, a URL), flattened to one line first (wording.one_line).

Shared by the summaries, the tables (summary.py, rounds_table.py, search_table.py), the mail and the
commit status.
"""

from __future__ import annotations

import html
import re
import urllib.parse

from keeptraining.output.wording import fmt_threshold, one_line

__all__ = ["CHART_DPI", "CHART_SIZE_PX", "fmt_threshold", "html_text", "md_escape", "one_line", "safe_url"]

CHART_SIZE_PX = (900, 450)
CHART_DPI = 100

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~:])")  # < > & are left to html.escape


def md_escape(value: object, limit: int | None = None) -> str:
    """``value`` as inert markdown text: one line, markdown punctuation and HTML escaped.

    Backslash escapes neutralise table pipes, code spans, emphasis, links and
    autolinks; ``html.escape`` makes ``<script>`` and friends literal text.
    """
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one_line(value, limit)), quote=True)


def html_text(value: object, limit: int | None = None) -> str:
    """``value`` as one line of escaped HTML text."""
    return html.escape(one_line(value, limit), quote=True)


def safe_url(value: object) -> str | None:
    """An ``http(s)`` URL with characters that could break markdown/HTML percent-encoded; else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or _CONTROL.search(url):
        return None
    # Keep the URL's own syntax, encode the rest (spaces, quotes, <>, (), |, backticks …).
    return urllib.parse.quote(url, safe=":/?#@!$&*+,;=%-._~")
