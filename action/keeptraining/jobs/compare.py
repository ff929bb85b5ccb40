"""``keeptraining compare --champion PATH``: the pull request's check, on this machine.

The working tree's code trains a candidate to the champion's epochs with its hyperparameters, and
evaluates the champion (a folder holding ``model-card.json`` and the model file, e.g.
``.keeptraining/champion/`` or a downloaded release) with the same code and data
(``engine/compare.py``). It prints both, the delta and the verdict; exit 0 when the candidate is
not worse than the champion beyond ``tolerance``, 3 when it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from keeptraining.backends import select as backends
from keeptraining.config.settings import Config
from keeptraining.engine import compare
from keeptraining.errors import ChampionError
from keeptraining.reports import comparison as comparison_report
from keeptraining.reports import model_card

EXIT_WORSE = 3  # the candidate is worse than the champion beyond tolerance (or below the threshold)

Say = Callable[[str], None]


def from_card(found: model_card.Champion, *, name: str = "") -> compare.ChampionModel:
    """The facts a comparison needs from a champion found by ``reports.model_card`` (a folder) or
    ``github.releases`` (a release), whose card was checked against its schema there."""
    card = found.card
    if found.path is None:
        raise ChampionError(f"The champion {found.tag or name} has no model file on this machine.")
    epochs = int(card["epochs"])
    if epochs < 1:
        raise ChampionError(
            f"The champion {found.tag or name} was trained for {epochs} epochs: there is "
            "nothing to compare with.",
            hint="Publish a model that trained at least one epoch.",
        )
    hps = {k: v for k, v in card.get("hyperparameters", {}).items() if v is not None}
    return compare.ChampionModel(
        model_path=found.path,
        epochs=epochs,
        hyperparameters=hps,
        metric=found.metric,
        value=found.value,
        name=found.tag or name,
        url=found.url,
        commit=found.commit,
    )


def champion_model(folder: Path) -> compare.ChampionModel:
    """The champion in ``folder`` (``model-card.json`` and the model file it names, checked by
    ``reports.model_card``); ChampionError when there is none."""
    if not folder.is_dir() or folder.is_symlink():
        raise ChampionError(
            f"The champion folder {folder} does not exist (or is not a plain folder).",
            hint="Pass the folder that holds model-card.json and the model file.",
        )
    found = model_card.champion(folder.absolute())
    if found is None:
        raise ChampionError(
            f"{folder} holds no {model_card.CARD_JSON}.",
            hint="A champion folder holds the model file and its model-card.json, as "
            "`.keeptraining/champion/` or a model release has them.",
        )
    return from_card(found, name=folder.name)


def run_local(config: Config, repo_root: Path, champion_folder: Path, *, say: Say = print) -> int:
    """``keeptraining compare``: 0 when the candidate passes, EXIT_WORSE when it does not."""
    champion = champion_model(champion_folder)
    backend = backends.select(config, repo_root, allow_local_fallback=True, say=say, on_line=say)
    result = compare.run(config, repo_root, backend, champion, say=say)
    say("")
    say(comparison_report.text(result))
    return 0 if result.passed else EXIT_WORSE
