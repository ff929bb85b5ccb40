"""``keeptraining compare --champion PATH``: the pull request's check, on this machine.

The working tree's code trains a candidate to the champion's epochs with its hyperparameters, and
evaluates the champion (a folder holding ``model-card.json`` and the model file, e.g.
``.keeptraining/champion/`` or a downloaded release) with the same code and data
(``engine/compare.py``). It prints both, the delta and the verdict; exit 0 when the candidate is
not worse than the champion beyond ``tolerance``, 3 when it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import compare
from keeptraining.errors import ChampionError, PathRefused
from keeptraining.reports import comparison as comparison_report
from keeptraining.state import safe_paths

CARD_JSON = "model-card.json"
MAX_CARD_BYTES = 4 * 1024 * 1024
EXIT_WORSE = 3  # the candidate is worse than the champion beyond tolerance (or below the threshold)

Say = Callable[[str], None]


def _card_error(folder: Path, what: str) -> ChampionError:
    return ChampionError(f"{folder / CARD_JSON}: {what}",
                         hint="A champion folder holds the model file and its model-card.json, as "
                              "`.keeptraining/champion/` or a model release has them.")


def champion_model(folder: Path, *, name: str = "", url: str | None = None) -> compare.ChampionModel:
    """The champion in ``folder``, read from its untrusted ``model-card.json``: ChampionError if the
    card or the model file is missing or malformed."""
    if not folder.is_dir() or folder.is_symlink():
        raise ChampionError(f"The champion folder {folder} does not exist (or is not a plain folder).",
                            hint="Pass the folder that holds model-card.json and the model file.")
    try:
        raw = safe_paths.read_bytes(folder, CARD_JSON, CARD_JSON, max_bytes=MAX_CARD_BYTES)
        card = json.loads(raw)
    except PathRefused as exc:
        raise _card_error(folder, exc.message) from None
    except FileNotFoundError:
        raise _card_error(folder, "missing.") from None
    except OSError as exc:
        raise _card_error(folder, f"cannot be read ({exc.strerror or exc}).") from None
    except (ValueError, RecursionError) as exc:
        raise _card_error(folder, f"not JSON ({str(exc)[:200]}).") from None
    if not isinstance(card, dict):
        raise _card_error(folder, "not a JSON object.")
    epochs = card.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 10_000_000:
        raise _card_error(folder, f"epochs = {str(epochs)[:40]} is not a number of epochs.")
    hps = card.get("hyperparameters") or {}
    if not isinstance(hps, dict) or len(hps) > 100 or not all(
            isinstance(k, str) and len(k) <= 64 and (v is None or isinstance(v, (str, int, float, bool)))
            for k, v in hps.items()):
        raise _card_error(folder, "hyperparameters is not a mapping of names to plain values.")
    model = card.get("model")
    model_file = model.get("file") if isinstance(model, dict) else None
    if not isinstance(model_file, str):
        raise _card_error(folder, "model.file (the model file's name) is missing.")
    try:
        what = "the champion's model file"
        present = safe_paths.is_file(folder, safe_paths.check_relative(model_file, what), what)
    except PathRefused as exc:
        raise _card_error(folder, exc.message) from None
    if not present:
        raise _card_error(folder, f"its model file {model_file[:100]!r} is not in {folder}.")
    metric = card.get("metric") if isinstance(card.get("metric"), str) else None
    value = card.get("accuracy")
    value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and 0 <= value <= 1 else None
    release: dict[str, Any] = card["release"] if isinstance(card.get("release"), dict) else {}
    tag = release.get("tag") if isinstance(release.get("tag"), str) else None
    commit = card.get("commit") if isinstance(card.get("commit"), str) else None
    return compare.ChampionModel(
        model_path=folder / model_file, epochs=epochs,
        hyperparameters={k: v for k, v in hps.items() if v is not None}, metric=metric, value=value,
        name=name or tag or folder.name, url=url or (release.get("url") if isinstance(release.get("url"), str)
                                                     else None), commit=commit)


def run_local(config: Config, repo_root: Path, champion_folder: Path, *, say: Say = print) -> int:
    """``keeptraining compare``: 0 when the candidate passes, EXIT_WORSE when it does not."""
    champion = champion_model(champion_folder)
    backend = backends.select(config, repo_root, allow_local_fallback=True, say=say, on_line=say)
    result = compare.run(config, repo_root, backend, champion, say=say)
    say("")
    say(comparison_report.text(result))
    return 0 if result.passed else EXIT_WORSE
