"""The ``keeptraining`` command line: thin, all behaviour lives in the stage modules.

    keeptraining run       the whole chain on this machine
    keeptraining attempt   exactly one attempt (what a GitHub workflow run calls)
    keeptraining trial     one trial of a round of parallel trials (a matrix job of the reusable workflow)
    keeptraining merge     merge a round's trials, decide, dispatch the next round (the round's last job)
    keeptraining compare   train this code's candidate and evaluate the champion: both, the delta, a verdict
    keeptraining pr-check  (pull_request) candidate vs champion: one PR comment, a commit status, the summary
    keeptraining pr-report (workflow_run) post a fork's pull-request report: comment and status
    keeptraining validate  check the configuration and print the effective values
    keeptraining check-resume  (the action, before its checkout) the chain's commit and the run to resume
    keeptraining data-cache    where the data cache is (on GitHub: the action's actions/cache inputs)
    keeptraining hooks     install / uninstall the git hook that pushes after each commit
    keeptraining publish   (the publish job) release a reached chain's model from its state artifact
    keeptraining init      set up a repository: its caller workflow, .keeptraining.yml, the secrets to add

Errors leave through ``main`` only: a ``::error::`` annotation on GitHub (a plain
line elsewhere) with what to fix, and a non-zero exit code (errors.py lists them).
On GitHub the secrets are masked first, then the whole command runs with workflow
commands stopped, so no text it prints can act as one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from keeptraining import __version__
from keeptraining.backends import select as backends
from keeptraining.backends.docker import registry
from keeptraining.commands import hooks
from keeptraining.commands import init as init_cmd
from keeptraining.commands import validate as command_check
from keeptraining.config import settings as config_mod
from keeptraining.engine import chain, parallel, rounds, strategy
from keeptraining.errors import ConfigError, InternalError, KeeptrainingError
from keeptraining.github import restore
from keeptraining.jobs import attempt as attempt_step
from keeptraining.jobs import compare as compare_step
from keeptraining.jobs import inputs as job_inputs
from keeptraining.jobs import pr_check
from keeptraining.jobs import publish as publish_job
from keeptraining.jobs import rounds as round_step
from keeptraining.jobs.inputs import JobInputs
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import mail as notify
from keeptraining.reports import model_card
from keeptraining.reports import search_table as search_report
from keeptraining.reports import summary as report
from keeptraining.state import data_cache, ledger
from keeptraining.state import lock as state_lock

_LIST_KEYS = {"mail_to", "notify_on"}
_FILE_ONLY = {"search", "runner_prices"}  # mappings: written in the config file, never a flag or an input
_FLAG_HELP = {"hyperparameters": "NAME=VALUE, repeatable: passed to the script as KT_HP_<NAME>"}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (overrides .keeptraining.yml)")
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file (default: {config_mod.DEFAULT_FILE} in the repository, if present)",
    )
    group.add_argument("--repo", type=Path, default=Path(), help="repository root (default: .)")
    for key, prop in config_mod.schema()["properties"].items():
        if key in _FILE_ONLY:
            continue
        if key == "hyperparameters":
            group.add_argument(
                "--hp", dest="hp", action="append", default=[], metavar="NAME=VALUE", help=_FLAG_HELP[key]
            )
            continue
        group.add_argument(
            _flag(key),
            dest=key,
            default=None,
            metavar="VALUE",
            help=prop.get("description", "").replace("%", "%%"),
        )


def _add_comparison_commands(sub: Any) -> None:
    """compare (here), pr-check (a pull_request job) and pr-report (the fork report's workflow_run job)."""
    compare = sub.add_parser(
        "compare",
        help="train this code's candidate to the champion's epochs, evaluate "
        "the champion with the same code and data; exit 3 when the "
        "candidate is worse beyond tolerance",
    )
    compare.add_argument(
        "--champion",
        type=Path,
        required=True,
        metavar="PATH",
        help="the champion's folder: its model-card.json and model file (e.g. .keeptraining/champion)",
    )
    _add_config_flags(compare)
    check = sub.add_parser(
        "pr-check",
        help="(GitHub Actions, pull_request) train the pull request's "
        "candidate, evaluate the champion, comment, set the status",
    )
    check.add_argument(
        "--champion",
        type=Path,
        default=None,
        metavar="PATH",
        help="the champion's folder (default: the latest model release; none: judged against the threshold)",
    )
    _add_config_flags(check)
    post = sub.add_parser(
        "pr-report",
        help="(GitHub Actions, workflow_run) post a fork's pull-request "
        "report (its artifact) as the comment and the status",
    )
    post.add_argument(
        "--report",
        type=Path,
        default=Path(pr_check.REPORT_DIR),
        metavar="DIR",
        help=f"the downloaded report artifact's folder (default {pr_check.REPORT_DIR})",
    )


def _add_chain_commands(sub: Any) -> None:
    """run (here, attempt after attempt) and attempt (one attempt, as a workflow job)."""
    run = sub.add_parser("run", help="train attempt after attempt until the threshold or the budget")
    run.add_argument(
        "--continue",
        dest="continue_chain",
        action="store_true",
        help="continue the chain in the state folder instead of starting a new one",
    )
    run.add_argument(
        "--in-rounds",
        action="store_true",
        help="(parallel) train round after round, each waiting for its slowest trial, as the "
        "GitHub workflow does; by default each slot starts the next trial once it is free",
    )
    _add_config_flags(run)
    attempt = sub.add_parser("attempt", help="train one attempt and record it in the chain's ledger")
    attempt.add_argument(
        "--attempt",
        dest="attempt_number",
        type=int,
        default=None,
        help="attempt number (default: the ledger's next)",
    )
    attempt.add_argument(
        "--dispatch",
        action="store_true",
        help="when below the threshold, dispatch the next attempt through the GitHub API",
    )
    attempt.add_argument("--commit", default=None, help="the commit this chain trains (default: GITHUB_SHA)")
    attempt.add_argument("--branch", default=None, help="the chain's branch (default: GITHUB_REF_NAME)")
    _add_config_flags(attempt)


def _add_round_commands(sub: Any) -> None:
    """trial and merge: a round of parallel trials, as workflow jobs."""
    trial = sub.add_parser("trial", help="(parallel) train one slot of the round into .keeptraining-trial/")
    trial.add_argument(
        "--slot",
        type=int,
        default=None,
        help="the slot in the round, 1..parallel (default: the action input trial)",
    )
    merge = sub.add_parser(
        "merge",
        help="(parallel) merge the round's trials from .keeptraining-trials/, "
        "decide, dispatch the next round",
    )
    merge.add_argument(
        "--dispatch",
        action="store_true",
        help="when the search goes on, dispatch the next round through the GitHub API",
    )
    for round_parser in (trial, merge):
        round_parser.add_argument(
            "--attempt",
            dest="attempt_number",
            type=int,
            default=None,
            help="the round's first attempt (default: the ledger's next)",
        )
        round_parser.add_argument("--commit", default=None, help="the commit this chain trains")
        round_parser.add_argument("--branch", default=None, help="the chain's branch")
        _add_config_flags(round_parser)


def _add_step_commands(sub: Any) -> None:
    """validate, check-resume, data-cache and publish: checks and workflow steps."""
    validate = sub.add_parser("validate", help="check the configuration and print the effective values")
    _add_config_flags(validate)
    sub.add_parser(
        "check-resume",
        help="(GitHub Actions) check the chain's commit and the run to resume "
        "before anything is checked out or downloaded; writes step outputs",
    )
    cache = sub.add_parser(
        "data-cache",
        help="where the data cache is and how to pre-seed it (on GitHub: "
        "writes the actions/cache inputs as step outputs)",
    )
    _add_config_flags(cache)
    publish = sub.add_parser(
        "publish",
        help="(GitHub Actions, the publish job) release a reached chain's "
        "model from its state artifact: model file, model-card.json, "
        "MODEL_CARD.md",
    )
    publish.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".keeptraining"),
        help="the downloaded chain-state artifact (default: .keeptraining)",
    )


def _add_repository_commands(sub: Any) -> None:
    """hooks and init: what keeptraining sets up in a repository."""
    hook = sub.add_parser("hooks", help="git post-commit hook that pushes the branch after each commit")
    hook.add_argument("action", choices=("install", "uninstall"))
    hook.add_argument("--repo", type=Path, default=Path(), help="repository (default: .)")
    hook.add_argument(
        "--force",
        action="store_true",
        help="install even into a hooks folder outside the repository (a shared core.hooksPath)",
    )
    init_cmd.add_arguments(
        sub.add_parser(
            "init",
            help="set up this repository: the caller workflow, a "
            "commented .keeptraining.yml, the secrets to add",
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keeptraining",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keeptraining {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_chain_commands(sub)
    _add_round_commands(sub)
    _add_comparison_commands(sub)
    _add_step_commands(sub)
    _add_repository_commands(sub)
    return parser


def _overrides(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(action inputs from KT_INPUT_* variables, CLI flags), each converted by the schema's types."""
    props = config_mod.schema()["properties"]
    inputs: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    for key in props:
        if key == "hyperparameters" or key in _FILE_ONLY:
            continue
        raw_input = env.get(f"KT_INPUT_{key.upper()}", "")
        if raw_input.strip():
            inputs[key] = config_mod.coerce(key, raw_input, source=f"input {key.replace('_', '-')}")
        raw_flag = getattr(args, key, None)
        if raw_flag is not None:
            flags[key] = config_mod.coerce(key, raw_flag, source=_flag(key))
    hps = _hyperparameters(args.hp, "--hp")
    if hps:
        flags["hyperparameters"] = hps
    return inputs, flags


def _hyperparameters(pairs: Sequence[str], source: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{source} {pair!r} is not NAME=VALUE.", hint="e.g. --hp learning_rate=0.01")
        result[name.strip()] = value
    return result


def load_config(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> config_mod.Config:
    inputs, flags = _overrides(args, env)
    given = (
        args.config
        if args.config is not None
        else (Path(env["KT_INPUT_CONFIG"]) if env.get("KT_INPUT_CONFIG", "").strip() else None)
    )
    config_file = given if given is not None else args.repo / config_mod.DEFAULT_FILE
    if given is not None and not given.is_absolute():
        config_file = args.repo / given
    merged_inputs = {**inputs, **flags}
    return config_mod.resolve(
        merged_inputs,
        config_file,
        file_required=given is not None,
        source="action inputs" if inputs and not flags else "command line",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args)
    ws = chain.workspace(config, args.repo)
    checked = command_check.check(config, ws)
    print("Configuration is valid. Effective values (source):")
    for key, value in config.to_dict().items():
        print(f"  {key}: {value!r}  ({config.sources.get(key, 'default')})")
    for line in checked:
        print(f"Checked: {line}.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args)
    ws = chain.workspace(config, args.repo)
    with state_lock.hold(ws.state_dir):
        return _run_chain(args, config, ws)


def _run_chain(args: argparse.Namespace, config: config_mod.Config, ws: chain.Workspace) -> int:
    backend = backends.select(config, args.repo, allow_local_fallback=True, say=print, on_line=print)
    if not args.continue_chain:
        chain.archive_previous(ws.state_dir, print)
    else:
        ended = rounds.verdict(config, ledger.load(ws.state_dir))
        if ended.kind in (strategy.CHAIN_REACHED, strategy.EXHAUSTED, strategy.CHAIN_STOPPED):
            print(f"The chain in {ws.state_dir} has already ended: {ended.reason}")
            return 0 if ended.kind == strategy.CHAIN_REACHED else 3
    steps = "per promotion of a search trial" if config.strategy == "search" else "per attempt"
    at_once = f", {config.parallel} trials at once" if config.parallel > 1 else ""
    print(
        f"keeptraining: {config.metric} >= {config.threshold}, {config.epochs} epochs then "
        f"+{config.epoch_step} {steps}, at most {config.max_attempts} attempts{at_once}, "
        f"resume={str(config.resume).lower()}, backend={backend.name}"
    )
    if config.parallel > 1:
        final = parallel.run_chain(config, args.repo, backend, say=print, in_rounds=args.in_rounds)
    else:
        final = chain.run_chain(config, args.repo, backend, say=print)
    print("\n" + report.attempts_table(final.ledger, config))
    if config.strategy == "search":
        print("\n" + search_report.trials_table(final.ledger, config))
        print("\n" + search_report.best_line(final.ledger, config))
    print("\n" + report.verdict(final.ledger, config, final.decision))
    if final.decision.kind == strategy.CHAIN_REACHED:  # the bundle in <state_dir>/champion/
        model_card.write_local_champion(config, ws.state_dir, final.ledger, args.repo)
    attempt_step.notify_end(config, final, ws.state_dir)
    if final.error is not None:
        raise final.error
    return 0 if final.decision.kind == strategy.CHAIN_REACHED else 3


def cmd_compare(args: argparse.Namespace) -> int:
    config = load_config(args)
    ws = chain.workspace(config, args.repo)
    with state_lock.hold(ws.state_dir):
        return compare_step.run_local(config, args.repo, args.champion)


def cmd_pr_check(args: argparse.Namespace) -> int:
    config = load_config(args)
    ws = chain.workspace(config, args.repo)
    with state_lock.hold(ws.state_dir):
        return pr_check.run_check(config, args.repo, args.champion)


def cmd_pr_report(args: argparse.Namespace) -> int:
    return pr_check.run_report(args.report)


def cmd_publish(args: argparse.Namespace) -> int:
    return publish_job.run(args.state_dir)


def cmd_hooks(args: argparse.Namespace) -> int:
    if args.action == "install":
        path, written = hooks.install(args.repo, force=args.force)
        print(
            f"{'Installed' if written else 'Already installed:'} {path}: each commit on a branch is "
            "pushed to its remote (KEEPTRAINING_NO_PUSH=1 skips one)."
        )
    else:
        path, removed = hooks.uninstall(args.repo)
        print(f"Removed {path}." if removed else f"No {hooks.HOOK_NAME} hook at {path}; nothing to remove.")
    return 0


def cmd_attempt(args: argparse.Namespace) -> int:
    try:
        config = load_config(args)
        round_step.reject_single_job(config, os.environ)
    except ConfigError as exc:
        attempt_step.fail_before_config(exc)
        raise
    return attempt_step.run(JobInputs.from_args(args), config)


def _needs_search(config: config_mod.Config, command: str) -> None:
    """``trial`` and ``merge`` are the jobs of a round of parallel trials: only a search has those."""
    if config.strategy != "search":
        raise ConfigError(
            f"`keeptraining {command}` is a job of a round of parallel trials, which needs "
            f"strategy: search; this configuration has strategy: {config.strategy}.",
            hint="Use `keeptraining attempt` (or `run`) for the epochs strategy, or set "
            "strategy: search with a `search:` space and parallel > 1.",
        )


def cmd_trial(args: argparse.Namespace) -> int:
    config = load_config(args)
    _needs_search(config, "trial")
    return round_step.run_trial(JobInputs.from_args(args), config)


def cmd_merge(args: argparse.Namespace) -> int:
    try:
        config = load_config(args)
        _needs_search(config, "merge")
    except ConfigError as exc:
        attempt_step.fail_before_config(exc)
        raise
    return attempt_step.run(JobInputs.from_args(args), config, merge=round_step.merge)


def cmd_check_resume(args: argparse.Namespace) -> int:
    """Outputs ``commit``, ``resume``, ``problem`` for the action's later steps; never fails on bad input."""
    token = job_inputs.token(os.environ)
    gha.mask(token)
    gha.set_outputs(restore.check_step(os.environ, token))
    return 0


def cmd_data_cache(args: argparse.Namespace) -> int:
    """On GitHub: the path and keys for the action's actions/cache steps, never an error (the attempt
    step reports a bad configuration). Elsewhere: where the cache is and how to pre-seed it."""
    if gha.in_actions():
        try:
            config = load_config(args)
            outputs = data_cache.step_outputs(config, chain.workspace(config, args.repo).state_dir)
        except KeeptrainingError:
            outputs = {"path": "", "key": "", "restore-keys": ""}
        gha.set_outputs(outputs)
        return 0
    config = load_config(args)
    for line in data_cache.describe(config, chain.workspace(config, args.repo).state_dir):
        print(line)
    return 0


#: After the first SIGINT/SIGTERM, later ones are ignored this long: a cancelled GitHub job gets
#: SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that, and the first one's unwinding
#: (stop the training, record what it saved, write outputs) must not be cut short by the second.
SIGNAL_SHIELD_S = 30.0
_first_signal: list[float] = []


def _interrupt_on_signal(signum: int, frame: object) -> None:
    """SIGINT or SIGTERM (a cancelled job): unwind like Ctrl-C so cleanup code runs, once."""
    now = time.monotonic()
    if _first_signal and now - _first_signal[0] < SIGNAL_SHIELD_S:
        return
    _first_signal[:] = [now]
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """SIGINT and SIGTERM become one KeyboardInterrupt (main thread only); the handlers are put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _first_signal.clear()
    previous = {sig: signal.signal(sig, _interrupt_on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _SurvivingStream:
    """stdout or stderr that a closed reader (``keeptraining run 2>&1 | head``) cannot break.

    On the first BrokenPipeError the descriptor is pointed at /dev/null: the run goes
    on to its end (the log is in the attempt folder), and nothing raises later.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def _surviving_output() -> Iterator[None]:
    previous = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, _SurvivingStream):
        sys.stdout = _SurvivingStream(sys.stdout)
    if not isinstance(sys.stderr, _SurvivingStream):
        sys.stderr = _SurvivingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = previous


def _mask_secrets(env: Mapping[str, str]) -> None:
    """Mask the token and the SMTP and registry passwords before anything can print them (and before
    the stop)."""
    for name in (*job_inputs.TOKEN_VARS, notify.PASSWORD_ENV, registry.PASSWORD_ENV):
        gha.mask(env.get(name))


def _run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """The command, with any unexpected exception turned into an InternalError (traceback shown)."""
    try:
        return command(args)
    except (KeeptrainingError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise InternalError.from_exception(exc) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "run": cmd_run,
        "attempt": cmd_attempt,
        "trial": cmd_trial,
        "merge": cmd_merge,
        "validate": cmd_validate,
        "hooks": cmd_hooks,
        "check-resume": cmd_check_resume,
        "data-cache": cmd_data_cache,
        "publish": cmd_publish,
        "init": init_cmd.run,
        "compare": cmd_compare,
        "pr-check": cmd_pr_check,
        "pr-report": cmd_pr_report,
    }
    with _surviving_output(), _signals_unwind():
        _mask_secrets(os.environ)
        gha.new_step()
        try:
            with gha.commands_stopped():
                try:
                    return _run(commands[args.command], args)
                except InternalError as exc:  # the traceback, while commands are still stopped
                    print(exc.details, file=sys.stderr, flush=True)
                    raise
        except KeeptrainingError as exc:
            gha.annotate("error", str(exc), title=exc.title)
            return exc.exit_code
        except KeyboardInterrupt:
            gha.annotate(
                "error",
                "Interrupted; the ledger and checkpoints written so far are kept.",
                title="keeptraining interrupted",
            )
            return 130


def entrypoint() -> None:
    sys.exit(main())
