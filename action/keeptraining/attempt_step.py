"""``keeptraining attempt``: one GitHub workflow run's worth of work.

Train one attempt (``chain.run_attempt``), then, in this order: dispatch the
next attempt when the chain continues, write the step outputs and the job
summary, and mail when the chain has ended. Outputs and summary are written
even when the attempt failed, before the error leaves through the CLI.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import backends, chain, dispatch, gha, ledger, notify, report, search, strategy
from .config import Config
from .errors import ConfigError, DispatchError

TOKEN_VARS = ("KT_GITHUB_TOKEN", "GITHUB_TOKEN")


_COMMIT = re.compile(r"[0-9a-f]{7,64}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,255}")


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if value and not pattern.fullmatch(value):
        raise ConfigError(f"{what} = {value!r} is not valid.",
                          hint=f"Pass a {what} such as the workflow's github.sha / github.ref_name.")
    return value


def chain_info(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    commit = args.commit or env.get("KT_INPUT_COMMIT") or env.get("GITHUB_SHA", "")
    branch = args.branch or env.get("KT_INPUT_BRANCH") or env.get("GITHUB_REF_NAME", "")
    info = {
        "commit": _checked(commit.strip(), _COMMIT, "commit"),
        "branch": _checked(branch.strip(), _BRANCH, "branch"),
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "server_url": env.get("GITHUB_SERVER_URL", ""),
    }
    return {k: v for k, v in info.items() if v}


def run_info(env: Mapping[str, str]) -> dict[str, Any]:
    run_id = env.get("GITHUB_RUN_ID")
    if not run_id or not gha.in_actions(env):
        return {}
    url = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env.get('GITHUB_REPOSITORY', '')}" \
          f"/actions/runs/{run_id}"
    return {"id": run_id, "attempt": env.get("GITHUB_RUN_ATTEMPT", "1"), "url": url}


def explicit_epochs(config: Config) -> int | None:
    """Epochs given for *this* attempt (flag or action input), not the first-attempt default."""
    return config.epochs if config.sources.get("epochs") in ("command line", "action inputs") else None


def attempt_number(args: argparse.Namespace, env: Mapping[str, str]) -> int | None:
    if args.attempt_number is not None:
        return int(args.attempt_number)
    raw = env.get("KT_INPUT_ATTEMPT", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"input attempt = {raw!r} is not valid; expected a whole number >= 1.")
    return int(raw)


def wants_dispatch(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    raw = env.get("KT_INPUT_DISPATCH", "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigError(f"input dispatch = {raw!r} is not valid; expected true or false.")
    return bool(args.dispatch) or raw == "true"


def run(args: argparse.Namespace, config: Config, env: Mapping[str, str] = os.environ) -> int:
    token = next((env[v] for v in TOKEN_VARS if env.get(v)), "")
    args.dispatch = wants_dispatch(args, env)
    if args.dispatch and not (token and env.get("GITHUB_REPOSITORY")):
        raise ConfigError("--dispatch needs GITHUB_REPOSITORY and a token in GITHUB_TOKEN.",
                          hint="Run it inside GitHub Actions with `github-token: ${{ github.token }}` "
                               "and `permissions: actions: write`.")
    gha.mask(token)
    ws = chain.workspace(config, args.repo)
    info = chain_info(args, env)
    checked_out = env.get("GITHUB_SHA", "")
    if gha.in_actions(env) and checked_out and info.get("commit") and info["commit"] != checked_out:
        gha.annotate("notice", f"This run checked out {checked_out[:7]}, not the chain's commit "
                     f"{info['commit'][:7]}: the branch moved before the run was created, so the "
                     "newer push's chain takes over and this chain ends here.", title="Chain superseded")
        gha.set_outputs({"dispatched": "false", "chain-status": "superseded", "threshold-reached": "false"})
        return 0
    backend = backends.select(config, args.repo, allow_local_fallback=False, say=print)
    with gha.commands_stopped():
        result = chain.run_attempt(config, args.repo, backend, attempt=attempt_number(args, env),
                                   epochs=explicit_epochs(config), chain_info=info, run_info=run_info(env))
    decision = result.decision
    print(decision.reason)
    next_run: dict[str, Any] = {}
    dispatch_error: DispatchError | None = None
    # CONTINUE after a failed attempt happens only in a search, which goes on past a failed trial.
    if args.dispatch and decision.kind == strategy.CONTINUE:
        try:
            next_run = _dispatch(result, info, token, env, config)
        except DispatchError as exc:  # reported after the outputs and the summary are written
            dispatch_error = exc
        ledger.save(ws.state_dir, result.ledger)
    if gha.in_actions(env):
        promotable = search.attempts_to_keep(config, result.ledger) if config.strategy == search.SEARCH \
            else set()
        chain.prune_checkpoints(ws.state_dir, result.ledger, promotable)
    _write_outputs(config, result, next_run)
    _write_summary(config, result, next_run)
    if decision.kind != strategy.CONTINUE:
        notify_end(config, result, ws.state_dir)
    if result.error is not None:
        raise result.error
    if dispatch_error is not None:
        raise dispatch_error
    return 0


def notify_end(config: Config, final: chain.AttemptReport, state_dir: Path) -> str | None:
    """The one mail at the end of a chain (reached, exhausted or failed), if configured."""
    if final.decision.kind == strategy.CONTINUE:
        return None
    password = os.environ.get(notify.PASSWORD_ENV) or None
    gha.mask(password)
    where = notify.notify(config, final.ledger, final.decision, state_dir=state_dir, password=password,
                          log_tail=final.log_tail)
    if where and config.smtp_server:
        print(f"Notification: {where}")
    elif where and gha.in_actions():
        gha.annotate("notice", "No smtp-server is configured, so no mail was sent; the message is in "
                     "the chain state artifact (outbox/).", title="No mail sent")
    return where


def _dispatch(result: chain.AttemptReport, info: Mapping[str, Any], token: str,
              env: Mapping[str, str], config: Config) -> dict[str, Any]:
    """Dispatch the next attempt and note it in the attempt's record (the caller saves).

    A search dispatches the attempt number only: the next run reads its trial and values from
    the study in the chain state, so a dispatch input can never choose them.
    """
    record, decision = result.record, result.decision
    assert decision.next_epochs is not None
    epochs = "" if config.strategy == search.SEARCH else str(decision.next_epochs)
    inputs = {"attempt": str(record.attempt + 1), "epochs": epochs, "commit": str(info.get("commit", ""))}
    if env.get("GITHUB_RUN_ID"):
        inputs["resume-run-id"] = env["GITHUB_RUN_ID"]
    ctx = dispatch.context_from_env(env, token, ref=info.get("branch") or None)
    outcome = dispatch.dispatch_next(ctx, chain_commit=str(info.get("commit", "")),
                                     next_attempt=record.attempt + 1, inputs=inputs)
    if not outcome.dispatched:
        gha.annotate("notice", outcome.reason, title="Chain not continued")
        return {}
    next_run = {"attempt": record.attempt + 1, "epochs": decision.next_epochs,
                "run_id": outcome.run_id, "url": outcome.run_url, "reused": outcome.reused}
    record.dispatched = next_run
    print(f"Dispatched attempt {record.attempt + 1} ({decision.next_epochs} epochs)"
          f"{': ' + outcome.run_url if outcome.run_url else ''}")
    return next_run


def _write_outputs(config: Config, result: chain.AttemptReport, next_run: Mapping[str, Any]) -> None:
    record, decision = result.record, result.decision
    best = result.ledger.best()
    gha.set_outputs({
        "accuracy": f"{record.metric:.4f}" if record.metric is not None else "",
        "threshold-reached": str(record.outcome == ledger.REACHED).lower(),
        "epochs": str(record.epochs_reached if record.epochs_reached is not None else record.epochs),
        "attempt": str(record.attempt),
        "dispatched": str(bool(next_run)).lower(),
        "next-epochs": str(decision.next_epochs) if decision.kind == strategy.CONTINUE else "",
        "next-run-url": str(next_run.get("url") or ""),
        "chain-status": decision.kind,
        "best-accuracy": f"{best.metric:.4f}" if best and best.metric is not None else "",
    })


def _write_summary(config: Config, result: chain.AttemptReport, next_run: Mapping[str, Any]) -> None:
    gha.write_summary(report.job_summary(result.ledger, config, result.decision,
                                         next_run=dict(next_run) or None))
