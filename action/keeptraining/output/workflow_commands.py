"""GitHub Actions workflow commands and files, in one small place.

Outside GitHub Actions (no ``GITHUB_OUTPUT`` …) every function is a no-op or
plain printing, so the same code serves ``keeptraining run`` on a laptop.

On GitHub, ``keeptraining`` runs its whole command with workflow commands
stopped (``commands_stopped``): every line it prints that carries text from the
training script, ``metrics.json``, the configuration or a dispatch input is then
inert. Its own annotations are queued meanwhile and printed, escaped, once
commands are back on; secrets are masked before the stop.

GitHub shows at most 10 warning and 10 error annotations per step (and 10 notices); the rest
are dropped silently. So the first ``ANNOTATION_LIMIT`` of each level become annotations; from
the next one on, each is a plain log line, and the step summary gets every annotation of that
level, the first ones included, under "All warnings" / "All errors".
"""

from __future__ import annotations

import html
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


def in_actions(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **props: str) -> str:
    rendered = ",".join(f"{k}={escape_property(v)}" for k, v in props.items() if v)
    return f"::{name}{' ' + rendered if rendered else ''}::{escape_data(message)}"


ANNOTATION_LIMIT = 10  # GitHub shows at most this many annotations of each level per step
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~:<>&])")


class _Commands:
    """Whether workflow commands are stopped (the resume token) and the annotations queued meanwhile."""

    token: str | None = None
    pending: list[str] = []  # noqa: RUF012 - one process-wide queue, on purpose
    #: Every annotation of this step, per level: (title, message), for the summary past the limit.
    shown: dict[str, list[tuple[str, str]]] = {}  # noqa: RUF012 - one process-wide record, on purpose


_commands = _Commands()


def _summary_line(title: str, message: str) -> str:
    """One annotation as an inert markdown list item (one line; markdown and HTML escaped)."""
    text = " ".join((f"{title}: {message}" if title else message).split())[:2000]

    def inert(match: re.Match[str]) -> str:
        char = match.group(1)
        return html.escape(char) if char in "<>&" else "\\" + char

    return "- " + _MD_SPECIAL.sub(inert, text)


def new_step() -> None:
    """Start counting annotations afresh (one keeptraining command is one step)."""
    _commands.shown = {}


def _over_limit(level: str, title: str, message: str) -> bool:
    """Record the annotation; True when GitHub would no longer show it (then the summary lists them all)."""
    seen = _commands.shown.setdefault(level, [])
    seen.append((title, message))
    if len(seen) <= ANNOTATION_LIMIT:
        return False
    if len(seen) == ANNOTATION_LIMIT + 1:
        heading = {"error": "errors", "warning": "warnings", "notice": "notices"}.get(level, level)
        write_summary(
            f"\n### All {heading} of this step\n\nGitHub shows the first {ANNOTATION_LIMIT} "
            f"{heading} of a step as annotations; here are all of them.\n\n"
            + "\n".join(_summary_line(t, m) for t, m in seen[:-1])
        )
    write_summary(_summary_line(title, message))
    return True


def annotate(level: str, message: str, title: str = "") -> None:
    """An ``::error``/``::warning``/``::notice`` annotation on GitHub, a line on stderr elsewhere.

    While commands are stopped the annotation is queued (and its text shown at once
    as a plain line), so that the runner still turns it into an annotation.
    """
    plain = f"{level}: {title + ': ' if title else ''}{message}"
    # Past GitHub's limit per step the annotation would be dropped: a log line, and the summary.
    if not in_actions() or _over_limit(level, title, message):
        print(plain, file=sys.stderr, flush=True)
    elif _commands.token is not None:
        print(plain, file=sys.stderr, flush=True)
        _commands.pending.append(command(level, message, title=title))
    else:
        print(command(level, message, title=title), flush=True)


def warn(message: str, title: str = "") -> None:
    """The one way keeptraining warns: a ``::warning::`` annotation on GitHub, stderr elsewhere."""
    annotate("warning", message, title)


def mask(value: str | None) -> None:
    """Ask the runner to mask a secret in all later log output (each line of it).

    Never while commands are stopped: the runner would print the line, secret and all,
    instead of obeying it. Secrets are masked before the stop (``cli.main``).
    """
    if value and in_actions() and _commands.token is None:
        for line in value.splitlines():
            if line.strip():
                print(f"::add-mask::{escape_data(line)}", flush=True)


def set_outputs(outputs: Mapping[str, str], env: Mapping[str, str] = os.environ) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT`` with a random delimiter (multi-line safe)."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
            fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def write_summary(markdown: str, env: Mapping[str, str] = os.environ) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip() + "\n")


@contextmanager
def commands_stopped() -> Iterator[None]:
    """While keeptraining prints untrusted text, the runner must not obey workflow commands in it.

    A training script (or a hostile commit, metrics file or input) could otherwise
    print ``::add-mask::``, ``::error::`` or a forged ``::set-output`` and steer the
    job. Re-entrant: an inner use inside an outer one changes nothing. Annotations
    queued meanwhile are printed after the resume line.
    """
    if not in_actions() or _commands.token is not None:
        yield
        return
    token = _commands.token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", flush=True)
    try:
        yield
    finally:
        sys.stderr.flush()
        print(f"::{token}::", flush=True)
        _commands.token = None
        queued, _commands.pending = _commands.pending, []
        for line in queued:
            print(line, flush=True)
