"""``keeptraining compare --champion PATH``: the candidate trained to the champion's epochs, the
champion evaluated (evaluate-only: KT_EPOCHS == KT_INITIAL_EPOCH), both printed with the delta.

Real processes (local backend) running tests/fixtures/fake_compare_train.py, whose code decides how
well it learns (rate.txt): a smaller rate is a better pull request, a larger one a worse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from keeptraining.cli import main
from keeptraining.contract import check
from keeptraining.engine import compare
from keeptraining.engine.strategy import Plan
from keeptraining.output import wording
from keeptraining.reports import comparison as comparison_report
from keeptraining.state.ledger import REACHED, Attempt

FIXTURES = Path(__file__).parent / "fixtures"


def accuracy(epoch: int, rate: float) -> float:
    return 1 - 0.6 * rate**epoch


def code_repo(root: Path, rate: float | None, config: str = "") -> Path:
    code = root / "ml"
    code.mkdir(parents=True)
    shutil.copy(FIXTURES / "fake_compare_train.py", code / "train.py")
    if rate is not None:
        (code / "rate.txt").write_text(str(rate))
    (root / ".keeptraining.yml").write_text(
        "code_path: ml\ntrain_command: python train.py\nbackend: local\n" + config
    )
    return root


def champion_folder(
    root: Path,
    *,
    epochs: int = 30,
    rate: float = 0.95,
    card: dict | None = None,
    hyperparameters: dict | None = None,
) -> Path:
    """A champion bundle as a model release holds it: the model file and model-card.json."""
    root.mkdir(parents=True)
    model = json.dumps({"epochs": epochs, "rate": rate}).encode()
    (root / "model.keras").write_bytes(model)
    data = {
        "format": "keeptraining.model-card/1",
        "model": {"file": "model.keras", "sha256": hashlib.sha256(model).hexdigest(), "bytes": len(model)},
        "metric": "accuracy",
        "accuracy": round(accuracy(epochs, rate), 6),
        "threshold": 0.8,
        "epochs": epochs,
        "attempt": 1,
        "commit": "c" * 40,
        "branch": "main",
        "repository": "o/r",
        "server_url": None,
        "runs": [{"attempt": 1, "outcome": "reached", "epochs": epochs}],
        "hyperparameters": hyperparameters or {},
        "search": None,
        "image": {"tag": None, "content_hash": None, "digest": None},
        "data": {"files": []},
        "keeptraining": {"version": "1.0.0"},
        "created_at": "2026-12-01T00:00:00+00:00",
        "release": {"tag": "model-v1", "url": "https://github.example/o/r/releases/tag/model-v1"},
    }
    data.update(card or {})
    (root / "model-card.json").write_text(json.dumps(data))
    return root


def compare_cli(repo: Path, champion: Path, *args: str) -> int:
    return main(["compare", "--repo", str(repo), "--champion", str(champion), *args])


@pytest.mark.integration
@pytest.mark.parametrize(("rate", "code", "sign"), [(0.97, 3, "-"), (0.93, 0, "+"), (0.95, 0, "±")])
def test_compare_prints_both_and_the_delta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rate: float, code: int, sign: str
) -> None:
    repo = code_repo(tmp_path / "repo", rate)
    champion = champion_folder(tmp_path / "champion", epochs=30, rate=0.95)
    assert compare_cli(repo, champion) == code
    out = capsys.readouterr().out
    champ, cand = accuracy(30, 0.95), accuracy(30, rate)
    assert f"Champion  model-v1: accuracy {champ:.4f} at 30 epochs" in out
    assert f"Candidate (this code): accuracy {cand:.4f} at 30 epochs" in out
    assert f"Delta: {wording.fmt_delta(cand - champ)}" in out and f"Delta: {sign}" in out
    assert ("Failed:" if code else "Passed:") in out
    # The champion was evaluated, not trained: its run trained no epoch and reports its own rate.
    champion_run = json.loads((repo / ".keeptraining/compare/champion/metrics.json").read_text())
    assert champion_run["history"] == {"val_accuracy": []} and champion_run["epochs"] == 30
    assert champion_run["resumed"] is True
    candidate_run = json.loads((repo / ".keeptraining/compare/candidate/metrics.json").read_text())
    assert len(candidate_run["history"]["val_accuracy"]) == 30
    assert "fake-compare: epochs 30 -> 30" in (repo / ".keeptraining/compare/champion/train.log").read_text()


@pytest.mark.integration
def test_tolerance_lets_a_slightly_worse_candidate_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.951)  # a hair worse: -0.0019 at 30 epochs
    champion = champion_folder(tmp_path / "champion")
    assert compare_cli(repo, champion) == 3
    assert compare_cli(repo, champion, "--tolerance", "0.01") == 0
    assert "within tolerance of the champion's" in capsys.readouterr().out


@pytest.mark.integration
def test_candidate_trains_with_the_champions_hyperparameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.99)  # the code's own rate would be much worse ...
    champion = champion_folder(tmp_path / "champion", epochs=20, rate=0.9, hyperparameters={"rate": 0.9})
    assert compare_cli(repo, champion) == 0  # ... but the card's KT_HP_RATE is what it trains with
    out = capsys.readouterr().out
    assert f"Candidate (this code): accuracy {accuracy(20, 0.9):.4f} at 20 epochs" in out
    assert "Delta: ±0.0000" in out


@pytest.mark.integration
def test_a_script_that_trains_instead_of_evaluating_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    champion = champion_folder(tmp_path / "champion")
    monkeypatch.setenv("FAKE_MODE", "trainanyway")
    assert compare_cli(repo, champion) == 1
    err = capsys.readouterr()
    assert "did not load it" in err.out + err.err


@pytest.mark.integration
def test_candidate_stops_at_its_time_budget_and_says_at_how_many_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    champion = champion_folder(tmp_path / "champion", epochs=200)
    monkeypatch.setenv("FAKE_EPOCH_S", "0.25")
    code = compare_cli(repo, champion, "--time-budget", "2")
    out = capsys.readouterr().out
    reached = json.loads((repo / ".keeptraining/compare/candidate/metrics.json").read_text())["epochs"]
    assert 1 <= reached < 200
    assert f"stopped at its time budget after {reached} of 200 epochs" in out
    assert code == 3  # fewer epochs than the champion: worse


@pytest.mark.integration
@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({"epochs": "many"}, "epochs"),
        ({"epochs": 0}, "nothing to compare with"),
        ({"model": {"file": "../escape.keras", "sha256": "0" * 64, "bytes": 1}}, "model"),
        ({"model": {"file": "absent.keras", "sha256": "0" * 64, "bytes": 1}}, "has no model file"),
        ({"model": {"file": "model.keras", "sha256": "0" * 64, "bytes": 1}}, "does not match its card"),
        ({"hyperparameters": {"rate": [1, 2]}}, "hyperparameters"),
        ({"metric": "loss"}, "judged by 'loss'"),
    ],
)
def test_a_bad_champion_card_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], card: dict, message: str
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    champion = champion_folder(tmp_path / "champion", card=card)
    assert compare_cli(repo, champion) == (2 if card.get("metric") else 1)
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


@pytest.mark.integration
def test_a_relative_champion_folder_is_found_from_the_training_scripts_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    champion_folder(repo / ".keeptraining" / "champion")
    monkeypatch.chdir(repo)  # the script runs in ml/: KT_RESUME_FROM must not be relative to here
    assert main(["compare", "--champion", ".keeptraining/champion"]) == 0
    assert "Delta: ±0.0000" in capsys.readouterr().out


@pytest.mark.integration
def test_a_missing_champion_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = code_repo(tmp_path / "repo", 0.95)
    assert compare_cli(repo, tmp_path / "nowhere") == 1
    assert "does not exist" in capsys.readouterr().err


# ---- units: the evaluate-only contract check, the verdict and the report


def _plan(epochs: int = 30) -> Plan:
    record = Attempt(
        attempt=1,
        epochs=epochs,
        initial_epoch=epochs,
        resumed_from=None,
        outcome=REACHED,
        started_at="",
        checkpoint="model.keras",
    )
    return Plan(1, epochs, epochs, record)


def test_evaluate_only_plan_is_recognised_and_checked() -> None:
    plan = _plan()
    assert check.evaluate_only(plan)
    assert not check.evaluate_only(Plan(1, 30, 0, None))
    ok = check.Trained(30, 0, 30, True, "metrics.json", False)
    check.check_evaluation(ok, plan)  # trained nothing, loaded the checkpoint: fine
    with pytest.raises(check.ContractViolation, match="trained 5 epochs"):
        check.check_evaluation(check.Trained(35, 5, 30, True, "metrics.json", False), plan)
    with pytest.raises(check.ContractViolation, match="did not load it"):
        check.check_evaluation(check.Trained(30, 30, 0, False, "metrics.json", False), plan)


def _comparison(
    candidate: float,
    champion: float | None,
    *,
    tolerance: float = 0.0,
    history: list[float] | None = None,
    epochs: int = 30,
    asked: int = 30,
) -> compare.Comparison:
    side = compare.Side(candidate, epochs, history if history is not None else [0.5, candidate], 1.0, Path())
    model = (
        compare.ChampionModel(Path("m.keras"), asked, name="model-v1", value=champion)
        if champion is not None
        else None
    )
    ev = compare.Side(champion, asked, [], 0.5, Path()) if champion is not None else None
    return compare.Comparison("accuracy", 0.9, tolerance, asked, side, model, ev)


def test_verdicts() -> None:
    assert _comparison(0.91, 0.90).passed
    assert _comparison(0.90, 0.90).passed
    assert not _comparison(0.89, 0.90).passed
    assert _comparison(0.89, 0.90, tolerance=0.01).passed
    assert _comparison(0.95, None).passed and not _comparison(0.85, None).passed
    assert "no champion yet" in _comparison(0.85, None).verdict()
    assert "worse than the champion's 0.9000 (-0.0100)" in _comparison(0.89, 0.90).verdict()


def test_markdown_has_the_marker_both_values_the_delta_the_chart_and_links() -> None:
    cmp = _comparison(0.8, 0.9, history=[0.5, 0.6, 0.7, 0.8], epochs=4, asked=10)
    text = comparison_report.markdown(
        cmp, run_url="https://github.example/o/r/actions/runs/7", head_sha="a" * 40
    )
    assert text.startswith(comparison_report.MARKER)
    assert "| 0.9000 | 10 |" in text and "| 0.8000 | 4 |" in text and "**-0.1000**" in text
    assert "```mermaid" in text and "line [0.5000, 0.6000, 0.7000, 0.8000]" in text
    assert "line [0.9000, 0.9000, 0.9000, 0.9000]" in text
    assert "after 4 of 10 epochs" in text
    assert "[this run](https://github.example/o/r/actions/runs/7)" in text
    assert "`aaaaaaa`" in text


def test_markdown_escapes_untrusted_names_and_drops_unsafe_links() -> None:
    cmp = _comparison(0.8, 0.9)
    cmp.champion = compare.ChampionModel(
        Path("m"), 30, name="<img src=x>[x](javascript:1)", url="javascript:alert(1)"
    )
    text = comparison_report.markdown(cmp, run_url="javascript:alert(2)", head_sha="not a sha`")
    assert "<img" not in text and "javascript:" not in text.replace("javascript\\:", "")
    assert "not a sha" not in text
