"""``keeptraining publish``: the publish job, which makes a reached chain's model a GitHub release.

It runs in a job of its own after the training job, with ``contents: write`` (the only job that
has it), and never checks out or runs the user's code: it reads the chain-state artifact that the
training job uploaded (``.keeptraining/`` by default), which is untrusted input — the ledger is
loaded through state/ledger.py (schema, paths inside the folder, no links) and the model file is
read through state/safe_paths.py, its sha256 computed here.

No release when the chain did not reach its threshold, or when the run is not on the repository's
default branch (a notice says why). A publish that fails (permissions, network, a refused state)
is a warning: the verdict stands, the job succeeds, and the summary says where the model is (the
artifact and its run). Outputs: ``published``, ``tag``, ``release-url``, ``model-path``,
``model-sha256``, and ``attest`` (``true`` when the runner offers an OIDC token, so the workflow's
attestation step can sign the model file; without one that step is skipped, with a notice).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from github import GithubException

from keeptraining.errors import ConfigError, KeeptrainingError, LedgerError, PathRefused, PublishError
from keeptraining.github import releases as releases_mod
from keeptraining.github import restore
from keeptraining.jobs import champion_check
from keeptraining.output import workflow_commands as gha
from keeptraining.reports import model_card
from keeptraining.reports import summary as report
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.ledger import Ledger

TOKEN_VARS = ("KT_GITHUB_TOKEN", "GITHUB_TOKEN")
#: The train job's ``state-artifact`` output (the publish action's input of that name).
STATE_ARTIFACT_VAR = "KT_STATE_ARTIFACT"
BUNDLE_DIR = "keeptraining-release"  # under RUNNER_TEMP (else the working directory)
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,255}")


def _outputs(published: bool, **values: str) -> dict[str, str]:
    out = {
        "published": "true" if published else "false",
        "tag": "",
        "release-url": "",
        "model-path": "",
        "model-sha256": "",
        "attest": "false",
    }
    out.update(values)
    return out


def state_artifact(env: Mapping[str, str]) -> str:
    """The artifact that holds the chain state: the train job's ``state-artifact`` output when it is
    given (``keeptraining-state`` or ``keeptraining-state-attempt-N``; after "Re-run failed jobs" this job's
    run attempt is not the train job's), else the name of this run attempt's (restore.state_artifact)."""
    given = env.get(STATE_ARTIFACT_VAR, "").strip()
    if given and restore.attempt_of(given, restore.STATE_ARTIFACT) is not None:
        return given
    return restore.state_artifact(env)


def _artifact_line(env: Mapping[str, str]) -> str:
    """Where the model is when no release holds it: the state artifact of this run."""
    name = state_artifact(env)
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repository, run_id = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", "")
    if _REPOSITORY.fullmatch(repository) and run_id.isdigit():
        return (
            f"The model stays in the artifact `{name}` of run "
            f"[{run_id}]({server}/{repository}/actions/runs/{run_id}) (expires with the artifact's "
            "retention)."
        )
    return f"The model stays in the chain-state artifact `{name}` of this run."


def _skip(reason: str, env: Mapping[str, str]) -> int:
    gha.annotate("notice", reason, title="No model release")
    gha.write_summary(f"### Model not published\n\n{report.md_escape(reason, 500)}\n", env)
    gha.set_outputs(_outputs(False), env)
    return 0


def _failed(error: KeeptrainingError, env: Mapping[str, str]) -> int:
    """A publish that failed: a warning, and where the model is; the verdict stands (exit 0)."""
    where = _artifact_line(env)
    gha.warn(
        f"{error.message} {error.hint} {where}".replace("`", "").replace("[", "").replace("]", " "),
        title=error.title,
    )
    gha.write_summary(
        f"### Model not published\n\n> **Warning:** {report.md_escape(error.message, 500)}"
        f"{(' ' + report.md_escape(error.hint, 300)) if error.hint else ''}\n\n{where}\n",
        env,
    )
    gha.set_outputs(_outputs(False), env)
    return 0


def _token(env: Mapping[str, str]) -> str:
    return next((env[v] for v in TOKEN_VARS if env.get(v)), "")


def _check_chain(book: Ledger, env: Mapping[str, str], default_branch: str) -> str | None:
    """Why there is no release for this chain (None: publish it)."""
    record = model_card.champion_attempt(book)
    threshold = book.chain.get("threshold")
    if (
        record is None
        or record.metric is None
        or not isinstance(threshold, (int, float))
        or record.metric < threshold
    ):
        return "The chain did not reach its threshold: there is no model to release."
    run_branch = env.get("GITHUB_REF_NAME", "")
    chain_branch = str(book.chain.get("branch") or run_branch)
    if run_branch != default_branch or chain_branch != default_branch:
        return (
            f"The chain trained branch {chain_branch!r}, not the default branch {default_branch!r}: "
            "models are released from the default branch only."
        )
    expected = env.get("KT_INPUT_COMMIT", "").strip()
    if expected and book.chain.get("commit") != expected:
        return (
            f"The chain state names commit {str(book.chain.get('commit'))[:12]!r}, not this chain's "
            f"{expected[:12]!r}: nothing is released from it."
        )
    return None


def run(state_dir: Path, env: Mapping[str, str] = os.environ) -> int:
    """The publish job; returns the exit code (0 also when publishing failed: a warning)."""
    repository = env.get("GITHUB_REPOSITORY", "")
    token = _token(env)
    gha.mask(token)
    if not _REPOSITORY.fullmatch(repository) or not token:
        raise ConfigError(
            "keeptraining publish needs GITHUB_REPOSITORY and a token (KT_GITHUB_TOKEN or GITHUB_TOKEN).",
            hint="Run it in the workflow's publish job with `permissions: contents: write`.",
        )
    try:
        book = ledger_mod.load(state_dir)
    except LedgerError as exc:
        return _failed(PublishError(f"The chain state cannot be trusted: {exc.message}"), env)
    if not book.attempts:  # the job runs for a reached chain only: its state should be there
        return _failed(
            PublishError(
                f"No chain state in {state_dir}: the artifact {state_artifact(env)} was not "
                "downloaded, or holds no ledger."
            ),
            env,
        )
    api_url = env.get("GITHUB_API_URL") or "https://api.github.com"
    releases = releases_mod.Releases(releases_mod.client(api_url, token, repository), repository)
    try:
        default_branch = env.get("KT_DEFAULT_BRANCH", "").strip() or releases.repo.default_branch
    except (GithubException, requests.RequestException) as exc:
        why = releases_mod.describe(exc)
        return _failed(PublishError(f"The repository's default branch could not be read: {why}."), env)
    if not _BRANCH.fullmatch(default_branch):
        why = f"The default branch {default_branch[:100]!r} is not a branch name."
        return _failed(PublishError(why), env)
    reason = _check_chain(book, env, default_branch)
    if reason is not None:
        return _skip(reason, env)
    try:
        return _publish(book, state_dir, releases, env)
    except PublishError as exc:
        return _failed(exc, env)
    except PathRefused as exc:
        return _failed(PublishError(f"Refusing the model file: {exc.message}"), env)
    except OSError as exc:
        return _failed(PublishError(f"The release bundle could not be written: {exc.strerror or exc}."), env)


def _bundle_folder(env: Mapping[str, str]) -> Path:
    base = Path(env.get("RUNNER_TEMP") or ".")
    folder = base / BUNDLE_DIR
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    return folder


def _publish(book: Ledger, state_dir: Path, releases: releases_mod.Releases, env: Mapping[str, str]) -> int:
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repository = env["GITHUB_REPOSITORY"]
    data = model_card.read_data_files(state_dir)
    card = model_card.build_card(book, state_dir, data=data)  # the model's sha256, from the file itself
    _record, folder, checkpoint = model_card.model_location(book, state_dir)
    bundle = _bundle_folder(env)

    def make_bundle(tag: str) -> Path:
        card["release"] = {"tag": tag, "url": f"{server}/{repository}/releases/tag/{tag}"}
        markdown = model_card.render_markdown(card, book)
        return model_card.write_bundle(bundle, folder, checkpoint, card, markdown)

    run_id = env.get("GITHUB_RUN_ID", "")
    commit = str(book.chain.get("commit") or card.get("commit") or "")
    latest, why_not = champion_check.read(state_dir)  # worse than the champion: released, not latest
    published = releases_mod.publish(
        releases,
        make_bundle,
        card,
        run_id=run_id,
        commit=commit,
        target=commit or str(book.chain.get("branch") or ""),
        latest=latest,
    )
    if not latest:
        gha.annotate("notice", why_not, title="Not marked latest")
        gha.write_summary(f"**{report.md_escape(why_not, 500)}**", env)
    model_path = bundle / card["model"]["file"]
    attest = bool(env.get("ACTIONS_ID_TOKEN_REQUEST_URL"))
    print(
        f"Published {published.tag}: {published.url}"
        + (" (completed an earlier publish)" if published.reused else "")
    )
    if not attest:
        gha.annotate(
            "notice",
            "No OIDC token on this runner (ACTIONS_ID_TOKEN_REQUEST_URL is unset: the job "
            "lacks `id-token: write`, or it runs offline): the model file is not attested.",
            title="Attestation skipped",
        )
    gha.write_summary(_summary(card, published, attest), env)
    gha.set_outputs(
        _outputs(
            True,
            tag=published.tag,
            **{
                "release-url": published.url,
                "model-path": str(model_path),
                "model-sha256": card["model"]["sha256"],
                "attest": "true" if attest else "false",
            },
        ),
        env,
    )
    return 0


def _summary(card: dict[str, Any], published: releases_mod.Published, attest: bool) -> str:
    esc = report.md_escape
    lines = [
        f"### Model published: [{esc(published.tag, 100)}]({published.url})",
        "",
        f"{esc(card['metric'], 40)} **{card['accuracy']:.4f}** (threshold {card['threshold']}), "
        f"{card['epochs']} epochs, commit `{esc(str(card.get('commit') or '?')[:12], 12)}`.",
        "",
        "| asset | |",
        "| --- | --- |",
    ]
    for name, url in published.assets.items():
        safe = report.safe_url(url)
        lines.append(
            f"| [{esc(name, 200)}]({safe}) | "
            + (f"sha256 `{card['model']['sha256']}`" if name == card["model"]["file"] else "")
            + " |"
        )
    lines += [
        "",
        "The provenance of the model file is attested (`gh attestation verify`)."
        if attest
        else "_No attestation: the runner offered no OIDC token._",
        "",
    ]
    return "\n".join(lines)
