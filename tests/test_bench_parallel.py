"""scripts/bench_parallel.py (``bench.py --parallel``): its model of GitHub's wall time (unit), and a
real --quick run (integration)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = REPO_ROOT / "scripts" / "bench_parallel.py"
    spec = importlib.util.spec_from_file_location("bench_parallel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_parallel"] = module
    spec.loader.exec_module(module)
    return module


def _chain(bench: ModuleType, parallel: int, rounds: list[list[int]]) -> object:
    trials = [[{"epochs": e, "seconds": 1.0 + e, "failed": False} for e in r] for r in rounds]
    return bench.Chain(parallel, 0, True, 1.0, sum(map(sum, rounds)), None, sum(map(len, rounds)), trials)


def test_a_round_on_github_lasts_its_slowest_trial_job_plus_the_merge(bench: ModuleType) -> None:
    costs = {"attempt": 30.0, "trial": 25.0, "merge": 10.0}
    fit = (2.0, 0.5)  # 2 s + 0.5 s an epoch
    serial = _chain(bench, 1, [[3], [3], [6]])
    assert bench.modelled_wall(serial, fit, costs) == pytest.approx(3 * 30 + (3.5 + 3.5 + 5.0))
    rounds = _chain(bench, 2, [[3, 3], [6, 3]])
    assert bench.modelled_wall(rounds, fit, costs) == pytest.approx(2 * (25 + 10) + 3.5 + 5.0)


def test_a_trial_alone_is_fitted_to_the_one_at_a_time_attempts(bench: ModuleType) -> None:
    serial = _chain(bench, 1, [[2], [4], [6]])  # seconds = 1 + epochs
    parallel = _chain(bench, 2, [[100, 100]])  # ran side by side: not used for the fit
    assert bench.fit_training([serial, parallel]) == pytest.approx((1.0, 1.0))


def test_jobs_are_timed_from_acts_log_by_their_own_steps(bench: ModuleType) -> None:
    log = "\n".join(
        [
            "[train/keeptraining round/Trial 1-1]   ✅  Success - Pre Train this trial [5.7ms]",
            "[train/keeptraining round/Trial 1-1]   ✅  Success - Main Install keeptraining [468ms]",  # in
            "[train/keeptraining round/Trial 1-1]   ✅  Success - Main Train this trial [5.25s]",
            "[train/keeptraining round/Trial 1-1]   ✅  Success - Post Train this trial [910ms]",
            "[train/keeptraining round/Merge the round, continue the chain]   ✅  Success - "
            "Main Merge the trials, decide, dispatch the next round [1m4.5s]",
        ]
    )
    jobs = bench.job_seconds(log)
    assert jobs["Trial 1-1"] == pytest.approx(0.0057 + 5.25 + 0.91)
    assert jobs["Merge the round, continue the chain"] == pytest.approx(64.5)


def test_costs_come_from_the_cold_runner_benchmark_when_it_has_run(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    parts = {
        "install": 5.0,
        "checkout": 2.0,
        "restore": 1.0,
        "image": 20.0,
        "train": 30.0,
        "dispatch": 3.0,
        "upload": 2.0,
        "other": 4.0,
    }
    path.write_text(json.dumps({"jobs": [{"variant": "cold", "parts": parts, "fixed_s": 37.0}]}))
    costs = bench.costs_from_cold(path)["scenarios"]["cold runners"]
    assert costs["attempt"] == 37.0 and costs["trial"] == 34.0
    assert costs["merge"] == pytest.approx(5 + 2 + 1 + 3 + 2 + 4 + 1)  # no image, no training
    assert bench.costs_from_cold(tmp_path / "none.json") is None


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--parallel", "--quick", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.integration
def test_quick_parallel_benchmark_times_chains_of_each_width(tmp_path: Path) -> None:
    out = tmp_path / "parallel"
    # --search-rounds: the planner and the sample model in one process, round after round (GitHub's way).
    done = _bench("--search-rounds", "1", "--out", str(out))
    alone = json.loads((out / "parallel-search.json").read_text())["chains"]
    table = (out / "parallel-search.md").read_text()
    assert "| 2 | 1/1 |" in table and table.split("\n", 2)[2] in done.stdout

    # keeptraining run --in-rounds gives the seed the same chains.
    rounds = tmp_path / "rounds"
    _bench("--in-rounds", "--out", str(rounds))
    raw = json.loads((rounds / "parallel.json").read_text())
    assert [
        (
            c["parallel"],
            c["seed"],
            c["attempts"],
            [[t["epochs"] for t in r] for r in c["rounds"]],
            c["epochs_trained"],
        )
        for c in raw["chains"]
    ] == [(c["parallel"], c["seed"], c["attempts"], c["round_epochs"], c["epochs_trained"]) for c in alone]
    assert len(raw["chains"][1]["rounds"][0]) == 2, "the first round trains two trials at once"

    # The default: free slots, timed; the GitHub model takes --search-rounds' rounds from the same folder.
    done = _bench("--out", str(out))
    text = (out / "parallel.md").read_text()
    assert text.split("\n", 2)[2] in done.stdout
    raw = json.loads((out / "parallel.json").read_text())
    assert [c["parallel"] for c in raw["chains"]] == [1, 2] and not raw["meta"]["in_rounds"]
    assert all(1 <= c["attempts"] <= 4 for c in raw["chains"])  # the quick budget: 4 attempts
    assert "| 1 | " in text and "| 2 | " in text and "rounds on GitHub" in text
    assert "the rounds from `--search-rounds` for the same seeds" in text
    assert set(raw["github_wall_s"]["cold runners"]) == {"1-0", "2-0"}
