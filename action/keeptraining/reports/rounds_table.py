"""What a person reads about rounds of parallel trials: each round's trials side by side.

Used by summary.job_summary when the ledger holds rounds, and by a trial job's own summary.
Every value from the ledger (runner names, errors) is escaped for markdown (markup.py).
"""

from __future__ import annotations

from keeptraining.config.settings import Config
from keeptraining.engine import search
from keeptraining.reports import markup
from keeptraining.state.ledger import FAILED, REACHED, Attempt, Ledger

_MARKS = {REACHED: "✅", FAILED: "❌"}


def by_round(ledger: Ledger) -> dict[int, list[Attempt]]:
    """round -> its records in slot order (attempts trained one at a time are left out)."""
    rounds: dict[int, list[Attempt]] = {}
    for record in ledger.attempts:
        if record.round is not None:
            rounds.setdefault(record.round, []).append(record)
    return rounds


def where(record: Attempt) -> str:
    """``runner-3 (trial job)``: the runner (and job) that trained it, as far as the ledger knows."""
    runner = record.runner or {}
    name = runner.get("runner") or "a runner"
    job = runner.get("job")
    return f"{name} ({job})" if job else str(name)


def cell(record: Attempt, config: Config, *, slot: bool = False) -> str:
    """One trial in a round's row: trial, rung, result, runner (and slot), escaped markdown."""
    if record.outcome == FAILED or record.metric is None:
        result = f"❌ failed: {markup.md_escape(record.error or 'no metric', 80)}"
    else:
        result = f"{_MARKS.get(record.outcome, '')} {record.metric:.4f}".strip()
    in_slot = f"slot {(record.runner or {}).get('slot', '?')} · " if slot else ""
    return (
        f"trial {record.trial} · rung {record.rung}<br>{result}<br>"
        f"<sub>attempt {record.attempt} · {in_slot}{markup.md_escape(where(record), 60)}</sub>"
    )


def _by_slot(records: list[Attempt]) -> bool:
    """Whether the round's records are its slots 1..N, one each (a GitHub round, or --in-rounds)."""
    return [(r.runner or {}).get("slot") for r in records] == list(range(1, len(records) + 1))


def rounds_markdown(ledger: Ledger, config: Config) -> str:
    """A table with one row per round and one column per slot; '' when there are no rounds. A local
    chain without rounds groups its jobs by N in the order they were planned, and a slot may have
    trained two of a group: then the columns are the group's jobs, each naming its slot."""
    rounds = by_round(ledger)
    if not rounds:
        return ""
    width = max(len(records) for records in rounds.values())
    slots = all(_by_slot(records) for records in rounds.values())
    column = "Slot" if slots else "Job"
    title = (
        "trials trained at the same time"
        if slots
        else f"jobs grouped by {config.parallel} in the order they were planned"
    )
    lines = [
        f"### Rounds ({title})",
        "",
        "| Round | " + " | ".join(f"{column} {k}" for k in range(1, width + 1)) + " |",
        "| ---: | " + " | ".join("---" for _ in range(width)) + " |",
    ]
    for number, records in sorted(rounds.items()):
        cells = [cell(r, config, slot=not slots) for r in records] + [""] * (width - len(records))
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trial_summary(record: Attempt, config: Config) -> str:
    """A trial job's own summary: what it trained and how it ended (the merge job has the chain's)."""
    values = markup.md_escape(search.values_text(record.trial_params), 300)
    if record.outcome == FAILED or record.metric is None:
        result = f"failed: {markup.md_escape(record.error or 'no metric', 500)}"
    else:
        result = f"{markup.md_escape(config.metric, 40)} {record.metric:.4f} ({record.outcome})"
    return (
        f"## keeptraining: round {record.round}, slot {(record.runner or {}).get('slot', '?')}\n\n"
        f"Attempt {record.attempt}: trial {record.trial} ({values}), rung {record.rung}, epochs "
        f"{record.initial_epoch} → {record.epochs}: {result}. The round's merge job records it and "
        "decides what comes next.\n"
    )
