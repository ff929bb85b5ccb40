"""The default branch's new model against the champion: published, but marked latest only if not worse.

A chain on the default branch that reaches its threshold is published as a model release (the
publish job). Before that, in the train job (which may run the repository's code; the publish job
never does), the champion release is evaluated with the *new* commit's code and data (an
evaluate-only run, as for a pull request), so that both models are judged the same way. When the
new model's metric is below the champion's minus ``tolerance``, ``champion-check.json`` in the
state folder says so, the publish job releases it without marking it latest (the champion stays),
and the summary and the mail say why. No champion, or a champion that cannot be evaluated (a
warning says why): the new model is published as latest, as before.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import chain, compare
from keeptraining.errors import KeeptrainingError, PathRefused
from keeptraining.output import wording
from keeptraining.output import workflow_commands as gha
from keeptraining.state import safe_paths

CHECK_FILE = "champion-check.json"  # in the state folder: the publish job reads ``latest``
MAX_CHECK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Verdict:
    latest: bool  # mark the new release latest (the new champion)
    reason: str  # one sentence: why not, or that it beats (or matches) the champion


def _default_branch(env: Mapping[str, str]) -> str | None:
    path = env.get("GITHUB_EVENT_PATH", "")
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return None
    branch = (event.get("repository") or {}).get("default_branch") if isinstance(event, dict) else None
    return branch if isinstance(branch, str) and branch else None


def judge(metric: str, value: float, champion_name: str, champion_value: float, tolerance: float) -> Verdict:
    """The new model (``value``) against the champion evaluated with the same code."""
    delta = wording.fmt_delta(value - champion_value)
    if value >= champion_value - tolerance - compare.EPSILON:
        return Verdict(
            True,
            f"The new model ({metric} {wording.fmt_metric(value)}) is the new champion: "
            f"the champion {champion_name} scores {wording.fmt_metric(champion_value)} with "
            f"this commit's code and data ({delta}).",
        )
    allowed = f" beyond the tolerance {tolerance:g}" if tolerance else ""
    return Verdict(
        False,
        f"Published but not marked latest: the new model's {metric} "
        f"{wording.fmt_metric(value)} is worse than the champion {champion_name}'s "
        f"{wording.fmt_metric(champion_value)} ({delta}){allowed}, both evaluated with "
        "this commit's code and data; the champion stays.",
    )


def after_reached(
    config: Config, repo_root: Path, state_dir: Path, value: float, env: Mapping[str, str] = os.environ
) -> Verdict | None:
    """On the default branch (GitHub only): evaluate the champion release, write ``champion-check.json``;
    None when there is nothing to compare (not the default branch, no champion) or it failed (warned)."""
    from keeptraining.jobs import pr_check  # noqa: PLC0415 - the champion lookup lives with the pull-request job

    default = _default_branch(env)
    if not gha.in_actions(env) or default is None or env.get("GITHUB_REF") != f"refs/heads/{default}":
        return None
    try:
        ctx = pr_check.github_context(env)
        champion = pr_check.release_champion(ctx, state_dir / compare.COMPARE_DIR / pr_check.RELEASE_DIR)
        if champion is None:
            return None
        backend = backends.select(config, repo_root, allow_local_fallback=False, say=print, on_line=print)
        evaluated = compare.evaluate_champion(
            config, chain.workspace(config, repo_root), backend, champion, env=env
        )
    except KeeptrainingError as exc:
        gha.annotate(
            "warning",
            f"The champion could not be evaluated with this commit's code, so the new "
            f"model is published as the latest: {exc.message}",
            title="Champion not compared",
        )
        return None
    finally:  # the champion's model and its evaluation are not part of the chain's state artifact
        shutil.rmtree(state_dir / compare.COMPARE_DIR, ignore_errors=True)
    verdict = judge(config.metric, value, champion.name, evaluated.value, config.tolerance)
    data = {
        "latest": verdict.latest,
        "reason": verdict.reason,
        "champion": champion.name,
        "champion_value": evaluated.value,
        "value": value,
        "tolerance": config.tolerance,
    }
    safe_paths.atomic_write(state_dir / CHECK_FILE, json.dumps(data, indent=1).encode())
    print(verdict.reason)
    return verdict


def read(state_dir: Path) -> tuple[bool, str]:
    """(mark latest?, why not) from the state folder's ``champion-check.json``; (True, "") without one.
    The file travels in the state artifact: only its ``latest`` boolean and a short reason are used."""
    try:
        raw = safe_paths.read_bytes(state_dir, CHECK_FILE, CHECK_FILE, max_bytes=MAX_CHECK_BYTES)
        data: Any = json.loads(raw)
    except (OSError, ValueError, PathRefused):
        return True, ""
    if not isinstance(data, dict) or data.get("latest") is not False:
        return True, ""
    return False, wording.one_line(data.get("reason") or "worse than the champion", 500)
