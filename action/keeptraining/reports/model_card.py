"""The model card of a chain that reached its threshold, and "the champion" it describes.

A chain that reaches the threshold produces a *bundle*: the model file (the reached attempt's
checkpoint), ``model-card.json`` (machine-readable, the format below) and ``MODEL_CARD.md`` (a
Hugging Face style card: YAML front matter with a ``model-index`` entry, then what a person wants
to read). On GitHub the publish job makes it a release (github/releases.py); ``keeptraining run``
keeps it in ``<state_dir>/champion/`` (``.keeptraining/champion/`` by default).

``model-card.json`` (``"format": "keeptraining.model-card/1"``)::

    model            {file, sha256, bytes}: the model file, as published beside the card
    metric           the metric's name (e.g. "accuracy"); accuracy: its value (the training
                     contract calls the reported value "accuracy" whatever the metric); threshold
    epochs           epochs the model was trained for
    commit, branch, repository, server_url   where it was trained (null when unknown)
    attempt          the attempt whose checkpoint this is
    runs             one entry per attempt: {attempt, outcome, epochs, accuracy, run_id, run_url}
    hyperparameters  what the script got as KT_HP_<NAME> (the search's choice included);
                     search: {trial, params} when a search chose them, else null
    image            {tag, content_hash, digest}: the training image (docker backend; nulls otherwise);
                     digest: the chain's registry's manifest digest when it pushed or pulled the
                     image, else the local image id (sha256:...)
    data             {files: [{path, sha256, bytes}]}: the data cache's files, as recorded
    keeptraining     {version}
    created_at       ISO 8601, UTC
    release          {tag, url} on GitHub (null locally)

"The champion" is found in one place: ``champion(folder)`` here for the local bundle, and
``github.releases.champion(...)`` for the latest model release; both return a ``Champion``. A card
read back (from a folder or a release) is untrusted input: ``parse_card`` checks it against
``model-card.schema.json`` beside this module, and a champion's model must match the card's sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from keeptraining import __version__
from keeptraining.config import settings as config_mod
from keeptraining.errors import KeeptrainingError, PathRefused, PublishError, quote
from keeptraining.output import wording
from keeptraining.reports import summary
from keeptraining.state import artifacts, data_cache, safe_paths
from keeptraining.state import ledger as ledger_mod
from keeptraining.state.ledger import REACHED, Attempt, Ledger

CARD_JSON = "model-card.json"
CARD_MD = "MODEL_CARD.md"
CARD_FORMAT = "keeptraining.model-card/1"
CHAMPION_DIR = "champion"  # under the state folder: the local bundle
DATA_FILES = "data-files.json"  # in the state folder: the data cache's files, for the publish job's card
MAX_CARD_BYTES = 4 * 1024 * 1024
MAX_DATA_FILES = 2000  # files listed in a card; more are counted, not listed
_CHUNK = 1024 * 1024
_IMAGE_TAG = re.compile(r"[^\s:@]+:([0-9a-f]{16,64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Champion:
    """The current champion model: its card, and where its model file is."""

    card: dict[str, Any]
    source: str  # "local" (a champion folder) or "release" (a GitHub release)
    path: Path | None = None  # the model file on this machine (the local bundle's, or downloaded)
    tag: str | None = None  # the release's tag
    url: str | None = None  # the release's page
    model_url: str | None = None  # the model asset's download URL
    model_asset_id: int | None = None  # the model asset's id (github.releases.download_asset)

    @property
    def model_file(self) -> str:
        return str(self.card["model"]["file"])

    @property
    def sha256(self) -> str:
        return str(self.card["model"]["sha256"])

    @property
    def metric(self) -> str:
        return str(self.card["metric"])

    @property
    def value(self) -> float:
        """The champion's metric value (``accuracy`` in the card)."""
        return float(self.card["accuracy"])

    @property
    def commit(self) -> str | None:
        commit = self.card.get("commit")
        return str(commit) if commit else None


# --------------------------------------------------------------------------- reading a card


@cache
def schema() -> dict[str, Any]:
    path = resources.files("keeptraining.reports").joinpath("model-card.schema.json")
    text = path.read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_card(raw: bytes, where: str) -> dict[str, Any]:
    """A ``model-card.json`` read back from anywhere: PublishError unless it fits the schema."""
    if len(raw) > MAX_CARD_BYTES:
        raise PublishError(f"{where}: the model card is {len(raw)} bytes; at most {MAX_CARD_BYTES} are read.")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PublishError(f"{where}: the model card is not JSON: {str(exc)[:200]}") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(data))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PublishError(f"{where}: the model card does not fit {CARD_FORMAT}: {at}: {error.message[:200]}")
    card: dict[str, Any] = data
    return card


# --------------------------------------------------------------------------- building a card


def champion_attempt(ledger: Ledger) -> Attempt | None:
    """The attempt whose checkpoint a chain that reached publishes: its last reached one; in a chain of
    parallel trials (records with a ``round``), the winning trial: the best reached one, the earlier on a
    tie, as the round's verdict names it (engine/rounds.representative). A round may hold several
    trials at the threshold, and the last of them is neither the winner nor sure to keep its
    checkpoint (pruning keeps the chain's last and best attempts)."""
    reached = [a for a in ledger.attempts if a.outcome == REACHED and a.checkpoint]
    trials = [a for a in reached if a.round is not None and a.metric is not None]
    if trials:
        return max(trials, key=lambda a: (a.metric or 0.0, -a.attempt))
    return reached[-1] if reached else None


def file_digest(base: Path, rel: str, what: str) -> tuple[str, int]:
    """(sha256, bytes) of a regular file inside ``base``, read without following a link."""
    digest, size = hashlib.sha256(), 0
    with safe_paths.open_file(base, rel, what) as fd:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def model_location(ledger: Ledger, state_dir: Path) -> tuple[Attempt, Path, str]:
    """(the reached attempt, its folder, the checkpoint's path in it); PublishError when there is none."""
    record = champion_attempt(ledger)
    if record is None or record.checkpoint is None:
        raise PublishError(
            "The chain has no attempt that reached the threshold with a checkpoint: there is "
            "no model to publish.",
            hint="A model is published only when the chain reaches its threshold.",
        )
    folder = ledger_mod.attempt_dir(state_dir, record.attempt)
    if folder.is_symlink() or not folder.is_dir():
        raise PublishError(
            f"Attempt {record.attempt}'s folder {folder} is missing (or a link): its model "
            "cannot be published."
        )
    return record, folder, record.checkpoint


def image_info(record: Attempt) -> dict[str, Any]:
    """The training image recorded for the attempt (docker backend), else nulls."""
    tag = record.params.get("image")
    if not isinstance(tag, str) or not tag:
        return {"tag": None, "content_hash": None, "digest": None}
    found = _IMAGE_TAG.fullmatch(tag)
    digest = record.params.get("image_digest")
    return {
        "tag": tag[:300],
        "content_hash": found.group(1) if found else None,
        "digest": digest if isinstance(digest, str) and digest.startswith("sha256:") else None,
    }


def data_files(
    config: config_mod.Config, state_dir: Path, env: Mapping[str, str] = os.environ
) -> list[dict[str, Any]]:
    """The data cache's files as its manifest records them ([] without a cache)."""
    folder = data_cache.folder(config, state_dir, env)
    if folder is None:
        return []
    return data_cache.recorded_files(folder)[:MAX_DATA_FILES]


def record_data_files(
    config: config_mod.Config, state_dir: Path, env: Mapping[str, str] = os.environ
) -> None:
    """Write the data cache's file list into the state folder, where the publish job finds it (the
    data cache itself is not in the chain-state artifact). Never fails the attempt."""
    try:
        files = data_files(config, state_dir, env)
        text = json.dumps({"files": files}, indent=1) + "\n"
        safe_paths.atomic_write(state_dir / DATA_FILES, text.encode())
    except (OSError, KeeptrainingError):
        pass


def read_data_files(state_dir: Path) -> list[dict[str, Any]]:
    """The state folder's data-files.json (untrusted: from the artifact); [] when absent or unfit."""
    try:
        raw = safe_paths.read_bytes(state_dir, DATA_FILES, "the data file list", max_bytes=MAX_CARD_BYTES)
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except FileNotFoundError:
        return []
    except (OSError, PathRefused, ValueError, UnicodeDecodeError, RecursionError):
        return []
    items = data.get("files") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    files = []
    for item in items[:MAX_DATA_FILES]:
        if (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and 0 < len(item["path"]) <= 1024
            and isinstance(item.get("sha256"), str)
            and _HEX64.fullmatch(item["sha256"])
            and isinstance(item.get("bytes"), int)
            and not isinstance(item["bytes"], bool)
            and item["bytes"] >= 0
        ):
            files.append({"path": item["path"], "sha256": item["sha256"], "bytes": item["bytes"]})
    return files


def _hyperparameters(record: Attempt) -> tuple[dict[str, Any], dict[str, Any] | None]:
    fixed = record.params.get("hyperparameters")
    values: dict[str, Any] = dict(fixed) if isinstance(fixed, dict) else {}
    values.update(record.trial_params)
    search = None
    if record.trial is not None:
        search = {"trial": record.trial, "params": dict(record.trial_params)}
    return values, search


def _run_entry(record: Attempt) -> dict[str, Any]:
    run = record.run or {}
    run_id = run.get("id")
    url = summary.safe_url(run.get("url"))
    return {
        "attempt": record.attempt,
        "outcome": record.outcome,
        "epochs": summary.epochs_done(record),
        "accuracy": record.metric,
        "run_id": str(run_id)[:40] if run_id is not None else None,
        "run_url": url,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _text(value: object, limit: int = 500) -> str | None:
    return str(value)[:limit] if isinstance(value, str) and value else None


def build_card(
    ledger: Ledger,
    state_dir: Path,
    *,
    data: list[dict[str, Any]] | None = None,
    commit: str | None = None,
    created_at: str | None = None,
    release: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of the chain's reached model (PublishError when there is none).

    The model's sha256 and size are computed here, from the file itself.
    """
    record, folder, checkpoint = model_location(ledger, state_dir)
    try:
        sha, size = file_digest(folder, checkpoint, f"attempt {record.attempt}'s checkpoint")
    except FileNotFoundError:
        raise PublishError(
            f"Attempt {record.attempt}'s checkpoint {folder / checkpoint} is missing: "
            "there is no model to publish."
        ) from None
    except PathRefused as exc:
        raise PublishError(f"Refusing the model file: {exc.message}") from None
    except OSError as exc:
        raise PublishError(
            f"Cannot read the model file {folder / checkpoint}: {exc.strerror or exc}."
        ) from None
    chain = ledger.chain
    values, search = _hyperparameters(record)
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model": {"file": PurePosixPath(checkpoint).name, "sha256": sha, "bytes": size},
        "metric": _text(chain.get("metric"), 100) or "accuracy",
        "accuracy": record.metric,
        "threshold": chain.get("threshold"),
        "epochs": summary.epochs_done(record),
        "attempt": record.attempt,
        "commit": _text(chain.get("commit"), 64) or commit,
        "branch": _text(chain.get("branch"), 255),
        "repository": _text(chain.get("repository"), 255),
        "server_url": summary.safe_url(chain.get("server_url")),
        "runs": [_run_entry(a) for a in ledger.attempts],
        "hyperparameters": values,
        "search": search,
        "image": image_info(record),
        "data": {"files": list(data or [])},
        "keeptraining": {"version": __version__},
        "created_at": created_at or _now(),
        "release": dict(release) if release else None,
    }
    parse_card(json.dumps(card).encode(), "the new model card")  # what is written, is readable back
    return card


def card_json(card: Mapping[str, Any]) -> bytes:
    return (json.dumps(card, indent=2, allow_nan=False) + "\n").encode("utf-8")


def where_the_model_is(ledger: Ledger) -> str | None:
    """One sentence for the mail: where a reached chain's model is (None when it did not reach)."""
    record = champion_attempt(ledger)
    if record is None or record.checkpoint is None:
        return None
    name = PurePosixPath(record.checkpoint).name
    run = record.run or {}
    run_url = summary.safe_url(run.get("url"))
    if run_url:  # the state artifact of the run attempt that trained it (keeptraining-state-attempt-2 ...)
        run_attempt = artifacts.run_attempt(run.get("attempt"))
        artifact = artifacts.artifact_name(artifacts.STATE_ARTIFACT, run_attempt)
        return (
            f"The model: {name} of attempt {record.attempt}, in the artifact {artifact} of run "
            f"{run_url}. On the default branch the workflow's publish job releases it (model-v<N>, the "
            "latest release: the champion) with model-card.json and MODEL_CARD.md."
        )
    return (
        f"The model: {name} of attempt {record.attempt}, with model-card.json and MODEL_CARD.md in the "
        f"state folder's {CHAMPION_DIR}/ (the champion)."
    )


# --------------------------------------------------------------------------- MODEL_CARD.md


def _yaml_str(value: object) -> str:
    """A YAML scalar that is always a string (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def _config_for(card: Mapping[str, Any]) -> config_mod.Config:
    return config_mod.resolve({"threshold": card["threshold"] or 1.0, "metric": card["metric"]}, None)


def _front_matter(card: Mapping[str, Any]) -> list[str]:
    """Hugging Face's model card metadata: a model-index entry with the metric and its value."""
    metric, file_name = card["metric"], str(card["model"]["file"])
    front = ["---"]
    if file_name.endswith((".keras", ".h5")):
        front.append("library_name: keras")
    return [
        *front,
        "tags:",
        "  - keeptraining",
        "model-index:",
        f"  - name: {_yaml_str(_name(card))}",
        "    results:",
        "      - task:",
        "          type: other",
        "        metrics:",
        f"          - type: {_yaml_str(metric)}",
        f"            value: {card['accuracy']}",
        f"            name: {_yaml_str(metric)}",
        "            verified: false",
        "---",
        "",
    ]


def _name(card: Mapping[str, Any]) -> str:
    repo = card.get("repository")
    return repo.split("/", 1)[1] if isinstance(repo, str) and "/" in repo else "model"


def _intro(card: Mapping[str, Any]) -> list[str]:
    esc = summary.md_escape
    metric, value, repo, commit = card["metric"], card["accuracy"], card.get("repository"), card.get("commit")
    short = str(commit)[:12] if commit else "an uncommitted working tree"
    lines = [
        f"# {esc(_name(card), 100)}: {esc(metric, 40)} {wording.fmt_metric(value)}",
        "",
        f"A model trained by keeptraining until its {esc(metric, 40)} reached the threshold "
        f"{card['threshold']}: {esc(metric, 40)} **{value}** after {card['epochs']} epochs "
        f"(attempt {card['attempt']}), trained on commit `{esc(short, 64)}`"
        + (f" of `{esc(repo, 200)}`" if repo else "")
        + (f", branch `{esc(card['branch'], 100)}`" if card.get("branch") else "")
        + ".",
        "",
    ]
    provenance = summary.provenance_markdown(
        {k: card.get(k) for k in ("commit", "branch", "repository", "server_url")}
    )
    if provenance:
        lines += [provenance, ""]
    release = card.get("release") or {}
    if release.get("tag"):
        lines += [f"**Release:** `{esc(release['tag'], 100)}`", ""]
    return lines


def _details(card: Mapping[str, Any]) -> list[str]:
    """The model file, the hyperparameters, the training image and the data."""
    esc = summary.md_escape
    model = card["model"]
    lines = [
        "## The model",
        "",
        "| file | bytes | sha256 |",
        "| --- | ---: | --- |",
        f"| `{esc(model['file'], 200)}` | {model['bytes']} | `{model['sha256']}` |",
        "",
    ]
    hps = card.get("hyperparameters") or {}
    if hps:
        lines += ["## Hyperparameters", "", "| name | value |", "| --- | --- |"]
        lines += [f"| `{esc(k, 64)}` | `{esc(v, 200)}` |" for k, v in sorted(hps.items())]
        if card.get("search"):
            lines += ["", f"Chosen by the search (trial {card['search']['trial']})."]
        lines.append("")
    image = card.get("image") or {}
    if image.get("tag"):
        digest = f" (digest `{image['digest']}`)" if image.get("digest") else ""
        lines += ["## Training image", "", f"`{esc(image['tag'], 300)}`{digest}", ""]
    files = (card.get("data") or {}).get("files") or []
    if files:
        lines += [
            "## Data",
            "",
            "The data cache's files when the model was trained:",
            "",
            "| file | bytes | sha256 |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| `{esc(f['path'], 200)}` | {f['bytes']} | `{f['sha256']}` |" for f in files[:50]]
        if len(files) > 50:
            lines.append(f"\n_…and {len(files) - 50} more in model-card.json._")
        lines.append("")
    return lines


def _usage(card: Mapping[str, Any]) -> list[str]:
    """How to load it (two lines of Python) and how to verify it (names quoted: they come from the
    training script's checkpoint and are pasted into a shell)."""
    file_name, repo = str(card["model"]["file"]), card.get("repository")
    lines = [
        "## Use it",
        "",
        "```python",
        "import keras",
        f"model = keras.saving.load_model({json.dumps(file_name)})",
        "```",
        "",
        "## Verify it",
        "",
        "The file's sha256 must be the one above and in `model-card.json`:",
        "",
        "```bash",
        f"sha256sum {shlex.quote(file_name)}",
        "```",
        "",
    ]
    if repo:
        lines += [
            "Its build provenance (attested by the publish job on GitHub):",
            "",
            "```bash",
            f"gh attestation verify {shlex.quote(file_name)} --repo {shlex.quote(repo)}",
            "```",
            "",
        ]
    return [*lines, f"_keeptraining {card['keeptraining']['version']}, {card['created_at']}._", ""]


def render_markdown(card: Mapping[str, Any], ledger: Ledger) -> str:
    """MODEL_CARD.md: Hugging Face style front matter (model-index with the metric), then the card."""
    config, metric = _config_for(card), summary.md_escape(card["metric"], 40)
    charts = [
        "## Attempts",
        "",
        summary.attempts_markdown(ledger, config),
        "",
        f"## {metric} per epoch",
        "",
        summary.mermaid_chart(ledger, config),
        "",
    ]
    return "\n".join(_front_matter(card) + _intro(card) + _details(card) + charts + _usage(card))


# --------------------------------------------------------------------------- the bundle


def write_bundle(
    dest: Path, model_base: Path, model_rel: str, card: Mapping[str, Any], markdown: str
) -> Path:
    """Write model file, model-card.json and MODEL_CARD.md into ``dest``, replacing what was there.

    Built in a sibling temporary folder, then swapped in: a failure leaves the previous bundle whole.
    """
    parent = dest.parent
    safe_paths.plain_dir(parent, "The champion's parent folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=parent))
    try:
        safe_paths.copy_file(model_base, model_rel, tmp / card["model"]["file"], "the model file")
        safe_paths.atomic_write(tmp / CARD_JSON, card_json(card))
        safe_paths.atomic_write(tmp / CARD_MD, markdown.encode("utf-8"))
        old = parent / f".{dest.name}-old"
        if os.path.lexists(old):
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        if os.path.lexists(dest):
            if dest.is_symlink() or not dest.is_dir():
                raise PathRefused(f"{dest} is not a plain folder; the champion is not written there.")
            os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _git_head(repo_root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    head = out.stdout.strip()
    return head if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", head) else None


def champion_dir(state_dir: Path) -> Path:
    return state_dir / CHAMPION_DIR


def write_local_champion(
    config: config_mod.Config, state_dir: Path, ledger: Ledger, repo_root: Path, say: Say = print
) -> Path | None:
    """``keeptraining run`` reached: the bundle in ``<state_dir>/champion/``, replacing the previous one.

    A chain that did not reach writes nothing (and leaves an existing champion alone). A problem is
    said, never raised: the chain's verdict stands.
    """
    if champion_attempt(ledger) is None:
        return None
    try:
        _record, folder, checkpoint = model_location(ledger, state_dir)
        card = build_card(ledger, state_dir, data=data_files(config, state_dir), commit=_git_head(repo_root))
        dest = write_bundle(champion_dir(state_dir), folder, checkpoint, card, render_markdown(card, ledger))
    except KeeptrainingError as exc:
        say(f"The champion bundle was not written: {exc.message}")
        return None
    except OSError as exc:
        say(f"The champion bundle was not written: {exc.strerror or exc}.")
        return None
    value = wording.fmt_metric(card["accuracy"])
    say(
        f"Champion: {dest} ({card['model']['file']}, {card['metric']} {value}, "
        f"sha256 {card['model']['sha256'][:12]}…)"
    )
    return dest


def champion(folder: Path) -> Champion | None:
    """The local champion in ``folder`` (e.g. ``.keeptraining/champion``): None when there is none.

    PublishError when a bundle is there but cannot be trusted: a card that does not fit the
    schema, a missing model file, or one whose sha256 is not the card's.
    """
    if not os.path.lexists(folder / CARD_JSON):
        return None
    try:
        raw = safe_paths.read_bytes(folder, CARD_JSON, "the model card", max_bytes=MAX_CARD_BYTES)
    except PathRefused as exc:
        raise PublishError(f"Refusing the champion's card in {folder}: {exc.message}") from None
    except OSError as exc:
        raise PublishError(f"Cannot read {folder / CARD_JSON}: {exc.strerror or exc}.") from None
    card = parse_card(raw, str(folder / CARD_JSON))
    name = card["model"]["file"]
    try:
        sha, size = file_digest(folder, name, "the champion's model file")
    except FileNotFoundError:
        raise PublishError(f"The champion in {folder} has no model file {quote(name)}.") from None
    except (PathRefused, OSError) as exc:
        raise PublishError(f"Cannot read the champion's model file in {folder}: {exc}") from None
    if sha != card["model"]["sha256"] or size != card["model"]["bytes"]:
        raise PublishError(
            f"The champion's model file {folder / name} does not match its card (sha256 "
            f"{sha[:12]}…, card {card['model']['sha256'][:12]}…).",
            hint="Delete the champion folder; the next chain that reaches writes it again.",
        )
    release = card.get("release") or {}
    return Champion(
        card=card, source="local", path=folder / name, tag=release.get("tag"), url=release.get("url")
    )
