"""Read a step's log the way the GitHub runner does: which workflow commands would it obey?

The runner (actions/runner, ActionCommandManager) looks at every line: while
``::stop-commands::TOKEN`` is in force it obeys nothing until a line ``::TOKEN::``;
otherwise a line whose text after leading white space starts with ``::`` is a
command (``::name props::data``), and the legacy form ``##[name ...]`` is matched
anywhere in a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROPS = re.compile(r"(\w[\w-]*)=([^,]*)")


@dataclass(frozen=True)
class Command:
    name: str
    props: dict[str, str]
    data: str
    line: str


def obeyed(log: str) -> list[Command]:
    """The commands a runner would act on in ``log``, in order (stop/resume included)."""
    commands: list[Command] = []
    stopped_by: str | None = None
    for raw in log.splitlines():
        line = raw.lstrip()
        if line.startswith("::"):
            end = line.find("::", 2)
            if end > 2:
                head, data = line[2:end], line[end + 2 :]
                name, _, props = head.partition(" ")
                if stopped_by is not None:
                    if name == stopped_by:
                        stopped_by = None
                        commands.append(Command("resume", {}, "", line))
                    continue
                commands.append(Command(name, dict(_PROPS.findall(props)), data, line))
                if name == "stop-commands":
                    stopped_by = data
                continue
        if stopped_by is None and "##[" in line:
            commands.append(Command("legacy", {}, line, line))
    return commands
