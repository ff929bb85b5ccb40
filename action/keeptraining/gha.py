"""GitHub Actions workflow commands and files, in one small place.

Outside GitHub Actions (no ``GITHUB_OUTPUT`` …) every function is a no-op or
plain printing, so the same code serves ``keeptraining run`` on a laptop.
"""

from __future__ import annotations

import os
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


def annotate(level: str, message: str, title: str = "") -> None:
    """An ``::error``/``::warning``/``::notice`` annotation on GitHub, a plain line elsewhere."""
    if in_actions():
        print(command(level, message, title=title), flush=True)
    else:
        print(f"{level}: {title + ': ' if title else ''}{message}", file=sys.stderr, flush=True)


def mask(value: str | None) -> None:
    """Ask the runner to mask a secret in all later log output (each line of it)."""
    if value and in_actions():
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
    """While the training log streams, the runner must not obey workflow commands in it.

    A training script (or a hostile commit) could otherwise print ``::add-mask::``,
    ``::error::`` or a forged ``::set-output`` and steer the job.
    """
    if not in_actions():
        yield
        return
    token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", flush=True)
    try:
        yield
    finally:
        print(f"::{token}::", flush=True)
