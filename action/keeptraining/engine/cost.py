"""What a chain costs: runner minutes per attempt, their price, and the minutes an attempt should take.

Each attempt records its run's wall time in minutes (``Attempt.minutes``): from the job's start when it
is known (on GitHub the run's ``run_started_at``, read through the API; else the action's first step,
``KT_ACTION_STARTED``), else from the attempt's own start (``keeptraining run``), to the moment its
record is written. A round of parallel trials counts the same way per trial (each trial job is the first
job of its run: ``run_started_at`` is its start; locally, each trial from its own start), and its merge
job, which starts after the trials, from the action's first step, as a job of its own
(``Ledger.jobs``). The price of a minute depends on the runner: ``runner_prices`` maps ``runs-on``
labels to USD per minute over the built-in map below; a label it does not know costs ``price_per_minute``.

Prices: GitHub's published per-minute rates for GitHub-hosted runners in private repositories (the page
"Actions runner pricing", rates in effect from 2026-01-01). Public repositories use standard runners
for free; self-hosted runners are not billed per minute (GitHub postponed the charge it announced).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keeptraining.engine import time_budget
from keeptraining.state.ledger import Attempt, JobMinutes, Ledger

PRICES_AS_OF = "2026-01-01"
DEFAULT_PRICE = 0.006  # USD per minute: GitHub-hosted Linux, 2 cores (x64), from 2026-01-01
KNOWN_PRICES: dict[str, float] = {  # runs-on label (or prefix before "-*") -> USD per minute
    "ubuntu-latest": 0.006,
    "ubuntu-24.04": 0.006,
    "ubuntu-22.04": 0.006,
    "ubuntu-slim": 0.002,  # 1 core
    "macos-latest": 0.062,
    "macos-15": 0.062,
    "macos-14": 0.062,
    "self-hosted": 0.0,
}
LOCAL = "local"  # keeptraining run on one's own machine: no price


def runner_kind(env: Mapping[str, str], configured: str | None) -> str:
    """The label the chain's runner is priced as: the configured one, else a guess from the runner's
    environment (GitHub-hosted Linux: ``ubuntu-latest``), else ``local`` outside GitHub Actions."""
    if configured:
        return configured
    if env.get("GITHUB_ACTIONS") != "true":
        return LOCAL
    if env.get("RUNNER_ENVIRONMENT") == "self-hosted":
        return "self-hosted"
    system = env.get("RUNNER_OS", "Linux")
    return {"Linux": "ubuntu-latest", "macOS": "macos-latest"}.get(system, system.lower())


def price(kind: str, default: float, overrides: Mapping[str, float] | None = None) -> float | None:
    """USD per minute of ``kind``; ``default`` for an unknown GitHub label; None for a local machine."""
    if overrides and kind in overrides:
        return float(overrides[kind])
    if kind == LOCAL:
        return None
    return KNOWN_PRICES.get(kind, default)


@dataclass(frozen=True)
class KindTotal:
    kind: str
    attempts: int
    minutes: float
    price: float | None  # USD per minute (None: not priced)

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.minutes * self.price


def totals(
    attempts: Iterable[Attempt | JobMinutes], default: float, overrides: Mapping[str, float] | None = None
) -> list[KindTotal]:
    """Minutes and estimated cost per runner kind, over the attempts (and jobs) that recorded minutes."""
    by_kind: dict[str, tuple[int, float]] = {}
    for record in attempts:
        if record.minutes is None:
            continue
        kind = record.runner_kind or LOCAL
        count, minutes = by_kind.get(kind, (0, 0.0))
        by_kind[kind] = (count + 1, minutes + record.minutes)
    return [
        KindTotal(kind, count, minutes, price(kind, default, overrides))
        for kind, (count, minutes) in sorted(by_kind.items())
    ]


def ledger_totals(
    ledger: Ledger, default: float, overrides: Mapping[str, float] | None = None
) -> list[KindTotal]:
    """``totals`` of the whole chain: its attempts and its jobs that trained nothing (merge jobs)."""
    return totals([*ledger.attempts, *ledger.jobs], default, overrides)


def total_minutes(ledger: Ledger) -> float:
    """The chain's runner minutes so far: its attempts' and its other jobs' (what max_runner_minutes caps)."""
    return sum(a.minutes for a in ledger.attempts if a.minutes is not None) + sum(
        j.minutes for j in ledger.jobs
    )


def describe(items: list[KindTotal]) -> str:
    """``12.4 runner minutes (ubuntu-latest: 12.4 min, ~$0.07)``; empty without any minutes."""
    if not items:
        return ""
    total = sum(t.minutes for t in items)
    parts = []
    for t in items:
        cost = f", ~${t.cost:.2f}" if t.cost is not None else ""
        parts.append(f"{t.kind}: {t.minutes:.1f} min{cost}")
    return f"{total:.1f} runner minutes ({'; '.join(parts)})"


def expected_minutes(ledger: Ledger, epochs_to_train: int) -> float | None:
    """Minutes the next attempt is expected to take, from the chain's own attempts: a fixed part and a
    part per epoch trained (least squares over the attempts with minutes; one attempt, or attempts
    that all trained the same epochs: their mean, scaled by the epochs). None before any attempt."""
    points = [
        (float(a.epochs_trained), float(a.minutes))
        for a in ledger.attempts
        if a.minutes is not None and a.minutes > 0
    ]
    if not points:
        return None
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if n >= 2 and spread > 0:
        rate = max(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread, 0.0)
        fixed = max(mean_y - rate * mean_x, 0.0)
        return fixed + rate * epochs_to_train
    if mean_x > 0:
        return mean_y * epochs_to_train / mean_x
    return mean_y


def minutes_left(max_minutes: float | None, ledger: Ledger) -> float:
    return math.inf if max_minutes is None else max_minutes - total_minutes(ledger)


MAX_JOB_S = 5 * 24 * 3600.0  # a self-hosted job's limit (hosted: 6 h): an older start is not this job's


def job_start(
    run_info: Mapping[str, Any], env: Mapping[str, str], attempt_started: float
) -> tuple[float, str]:
    """(Unix time, what it is) the runner's minutes count from: the run's ``run_started_at`` (from the API,
    in ``run_info["started_at"]``), else the action's first step (``KT_ACTION_STARTED``), else the attempt's
    own start. A start after the attempt's, or more than a job's longest life before it, is not used."""
    candidates: list[tuple[Any, str]] = [
        (run_info.get("started_at"), "run_started_at"),
        (env.get(time_budget.STARTED_ENV), "action"),
    ]
    for raw, source in candidates:
        when = parse_time(raw)
        if when is not None and attempt_started - MAX_JOB_S <= when <= attempt_started + 1:
            return min(when, attempt_started), source
    return attempt_started, "attempt"


def parse_time(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool) or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def account(
    record: Attempt,
    run: Attempt,
    run_info: Mapping[str, Any] | None,
    env: Mapping[str, str],
    attempt_started: float,
    configured_kind: str | None,
) -> None:
    """Stamp ``record`` with this run's runner minutes, up to now: from the job's start (``job_start``;
    ``attempt_started``, Unix time, when nothing earlier is known), priced as the runner's kind."""
    now = time.time()
    start = job_start(run_info or {}, env, attempt_started)
    stamp(record, run, start, now, runner_kind(env, configured_kind))


def job_minutes(
    job: str,
    round_no: int | None,
    run_info: Mapping[str, Any] | None,
    env: Mapping[str, str],
    configured_kind: str | None,
) -> JobMinutes:
    """The minutes of this job, which trains nothing (a round's merge job), from the action's first step
    (``KT_ACTION_STARTED``; the run's ``run_started_at`` is the trials' start, not this job's) to now."""
    now = time.time()
    when, source = job_start({}, env, now)
    return JobMinutes(
        job,
        round(max(now - when, 0.0) / 60, 4),
        source,
        runner_kind(env, configured_kind),
        round=round_no,
        run={k: v for k, v in (run_info or {}).items() if k != "started_at"},
    )


def stamp(record: Attempt, run: Attempt, start: tuple[float, str], now: float, kind: str) -> None:
    """Record this run's minutes on the attempt's ``record`` (``run`` is this run's own record; an
    unfinished attempt's later run adds its minutes to the earlier runs')."""
    minutes = max(now - start[0], 0.0) / 60
    earlier = (record.minutes or 0.0) if record is not run else 0.0
    record.minutes = round(earlier + minutes, 4)
    record.minutes_from = start[1]
    record.runner_kind = kind
