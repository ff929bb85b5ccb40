"""scripts/bench.py: its arithmetic and tables (unit), and a real --quick run (integration).

No timing is asserted anywhere: the machine is shared and noisy. The integration test runs
the smoke version of the benchmark that CI runs so that it cannot rot (about 1.5 min on
2 CPU cores) and checks the structure of what it writes: the table's rows and columns,
the files, and that every number parses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "scripts" / "bench.py"
NN = REPO_ROOT / "ml_code" / "nn.py"


def load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load("kt_bench", BENCH)


def attempt(bench: ModuleType, **over: Any) -> Any:
    values: dict[str, Any] = {
        "attempt": 1,
        "epochs": 10,
        "initial_epoch": 0,
        "outcome": "below",
        "metric": 0.75,
        "epochs_reached": 10,
        "epochs_trained": 10,
        "wall_s": 6.0,
        "image_check_s": 0.05,
        "backend_s": 5.8,
        "duration_s": 5.6,
        "epoch_seconds": [0.7] + [0.3] * 9,
        "timings": {
            "import_s": 2.0,
            "data_s": 0.01,
            "build_or_load_s": 0.05,
            "fit_s": 3.5,
            "evaluate_s": 0.0,
            "save_s": 0.03,
            "total_s": 5.6,
        },
        "stages": {
            "engine_check_s": 0.01,
            "container_create_s": 0.01,
            "container_start_s": 0.1,
            "cleanup_s": 0.01,
        },
    }
    values.update(over)
    return bench.AttemptRun(**values)


# --------------------------------------------------------------------------- unit


def test_overhead_breakdown_adds_up_to_wall_minus_epochs(bench: ModuleType) -> None:
    a = attempt(bench)
    parts = bench.breakdown(a)
    assert list(parts) == [key for key, _ in bench.BREAKDOWN]
    assert sum(parts.values()) == pytest.approx(a.overhead_s)
    assert a.overhead_s == pytest.approx(6.0 - 3.4)
    assert parts["import"] == 2.0 and parts["image_check"] == 0.05
    assert parts["container"] == pytest.approx(0.13)
    assert parts["fit_setup"] == pytest.approx(0.1)
    assert parts["bookkeeping"] == pytest.approx(0.15)


def test_stat_formats_median_and_spread(bench: ModuleType) -> None:
    assert bench.Stat.of([3.0, 1.0, 2.0]).fmt(1) == "2.0 [1.0–3.0]"
    assert bench.Stat.of([2.0, 2.0]).fmt(0) == "2"
    assert bench.Stat.of([0.456]).fmt(0, percent=True) == "46 %"
    assert bench.Stat.of([]).fmt() == "n/a"


def synthetic_runs(bench: ModuleType) -> list[Any]:
    """Chains shaped like the real ones: seed retrains 10+20+30, keeptraining 10+10+5."""
    runs = []
    for backend in ("local", "docker"):
        for repeat in (1, 2):
            for key, trained in (("a", [10, 20, 30]), ("b", [10, 10, 10]), ("c", [10, 10, 5]), ("d", [25])):
                run = bench.ChainRun("main", backend, key, 0.9, 10, 10, repeat, verdict="reached")
                for n, epochs in enumerate(trained, 1):
                    run.attempts.append(
                        attempt(
                            bench,
                            attempt=n,
                            epochs_trained=epochs,
                            epoch_seconds=[0.3] * epochs,
                            wall_s=2.5 + 0.3 * epochs,
                            metric=0.91 if n == len(trained) else 0.8,
                        )
                    )
                runs.append(run)
    for needed, threshold in ((2, 0.7), (4, 0.845)):
        for key, trained in (
            ("a", [5 * k for k in range(1, needed + 1)]),
            ("c", [5] * needed),
            ("d", [5 * needed]),
        ):
            run = bench.ChainRun("scaling", "local", key, threshold, 5, 5, 1, verdict="reached")
            for n, epochs in enumerate(trained, 1):
                run.attempts.append(
                    attempt(
                        bench,
                        attempt=n,
                        epochs_trained=epochs,
                        epoch_seconds=[0.3] * epochs,
                        wall_s=2.5 + 0.3 * epochs,
                    )
                )
            runs.append(run)
    return runs


def test_summary_tables_and_targets(bench: ModuleType, tmp_path: Path) -> None:
    settings = bench.replace(bench.FULL, repeats=2, scaling=((2, 0.7), (4, 0.845)), fit_repeats=1)
    fits = [
        {"backend": b, "repeat": 1, "via_keeptraining": [0.7, 0.3, 0.3], "direct": [0.7, 0.3, 0.31]}
        for b in ("local", "docker")
    ]
    summary = bench.summarize(synthetic_runs(bench), fits, settings)

    targets = {(t["target"].split(" ")[0], t["backend"]): t for t in summary["targets"]}
    assert targets[("epochs", "local")]["value"] == pytest.approx(25 / 25)
    assert targets[("epochs", "local")]["met"] is True
    assert targets[("training", "docker")]["value"] == pytest.approx(60 / 25)
    assert targets[("training", "docker")]["met"] is False  # 2.4 < 2.5: reported, not hidden
    assert targets[("seed", "local")]["met"] is True  # ratios grow from 2 to 4 attempts
    assert summary["scaling"][1]["epochs_ratio"] == pytest.approx(50 / 20)

    meta = {
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "memory_gib": 8.0,
            "os": "Linux",
            "python": "3.11",
            "tensorflow": "2",
            "keras": "3",
        },
        "load_before": (0.1, 0, 0),
        "load_after": (0.2, 0, 0),
        "finished": "now",
        "wall_s": 60.0,
        "command": "python scripts/bench.py",
    }
    sections = bench.markdown(summary, meta, settings)
    rows = [
        line
        for line in sections["chains"].splitlines()
        if line.startswith("| local") or line.startswith("| docker")
    ]
    assert len(rows) == 8
    assert all(len(row.split("|")) == 11 for row in rows)
    assert set(sections) == {"machine", "chains", "targets", "overhead", "fit", "scaling"}
    assert "missed" in sections["targets"] and "met" in sections["targets"]

    charts = bench.charts(summary, settings, tmp_path)
    assert sorted(p.name for p in charts) == ["chains.png", "overhead.png", "scaling.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in charts)


def test_update_readme_replaces_only_its_block(bench: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n## Performance\n\n{bench.README_BEGIN}\nold\n{bench.README_END}\n\n## Development\nkept\n"
    )
    bench.update_readme(f"{bench.README_BEGIN}\nnew | table\n{bench.README_END}", readme)
    text = readme.read_text()
    assert "old" not in text and "new | table" in text
    assert text.startswith("# x\n") and text.endswith("## Development\nkept\n")
    readme.write_text("# no block\n")
    with pytest.raises(bench.BenchError):
        bench.update_readme("x", readme)


def test_sample_model_digits_split_is_scikit_learns() -> None:
    """nn.py reads digits without importing scikit-learn (a 1 s saving per attempt): same arrays."""
    np = pytest.importorskip("numpy")
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    nn = load("kt_bench_nn", NN)

    x_train, y_train, x_val, y_val = nn.load_digits()

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    expected = selection.train_test_split(
        images,
        digits.target,
        test_size=nn.VALIDATION_FRACTION,
        stratify=digits.target,
        random_state=nn.SPLIT_SEED,
    )
    for got, want in zip((x_train, x_val, y_train, y_val), expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


@pytest.mark.parametrize(("value", "ok"), [("false", True), ("TRUE", True), ("0", True), ("maybe", False)])
def test_sample_model_early_stop_hyperparameter(
    value: str, ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    nn = load("kt_bench_nn", NN)
    monkeypatch.setenv("KT_HP_EARLY_STOP", value)
    if ok:
        assert nn.read_config().early_stop is (value.lower() in ("true", "1"))
    else:
        with pytest.raises(nn.ConfigError, match="KT_HP_EARLY_STOP='maybe' is not a boolean"):
            nn.read_config()


# --------------------------------------------------------------------------- integration

NUMBER = re.compile(r"^-?\d+(\.\d+)?( %)?( \[-?\d+(\.\d+)?–-?\d+(\.\d+)?\])?$")
COLUMNS = [
    "backend",
    "variant",
    "attempts",
    "epochs trained",
    "training s",
    "total s",
    "overhead s / attempt",
    "overhead % of attempt",
    "final accuracy",
]


def table(markdown: str, header_first_cell: str) -> tuple[list[str], list[list[str]]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_first_cell} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [cell.strip() for cell in lines[start].strip("|").split("|")], rows


@pytest.mark.integration
def test_quick_benchmark_writes_tables_charts_and_raw_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    assert sorted(p.name for p in out.iterdir()) == [
        "chains.png",
        "overhead.png",
        "results.json",
        "results.md",
        "scaling.png",
    ]
    for png in out.glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG"), png
    text = (out / "results.md").read_text()
    assert text in done.stdout  # the same tables are printed

    header, rows = table(text, "backend")
    assert header == COLUMNS
    assert [(r[0], r[1][:3]) for r in rows] == [("local", f"({k})") for k in "abcd"]
    for row in rows:
        for cell in row[2:]:
            assert NUMBER.match(cell.removesuffix(" (not reached)")), (row, cell)

    _, targets = table(text, "target")
    assert len(targets) == 4 and all(r[-1] in ("met", "missed") for r in targets)
    _, parts = table(text, "part")
    assert all(NUMBER.match(r[1]) for r in parts), parts
    assert "## Cost against the number of attempts" in text
    assert "## Training through keeptraining vs the same fit run directly" in text

    raw = json.loads((out / "results.json").read_text())
    assert raw["meta"]["settings"]["quick"] is True
    main = [r for r in raw["runs"] if r["group"] == "main"]
    assert sorted(r["variant"] for r in main) == ["a", "b", "c", "d"]
    by = {r["variant"]: r for r in main}
    # What distinguishes the variants, as the ledger recorded it.
    assert all(a["initial_epoch"] == 0 for a in by["a"]["attempts"])
    assert all(a["epochs_reached"] == a["epochs"] for r in ("a", "b") for a in by[r]["attempts"])
    assert [a["initial_epoch"] for a in by["c"]["attempts"][1:]] == [
        a["epochs_reached"] for a in by["c"]["attempts"][:-1]
    ]
    assert len(by["d"]["attempts"]) == 1
    for run in raw["runs"]:
        for a in run["attempts"]:
            assert sum(a["overhead"].values()) == pytest.approx(a["overhead_s"], abs=1e-6)
    assert {f["backend"] for f in raw["fit_comparison"]} == {"local"}


# --------------------------------------------------------------------------- search (issue 13)

SEARCH_COLUMNS = [
    "method",
    "reached",
    "median epochs to threshold, all seeds",
    "epochs to threshold, seeds that reached it",
    "epochs trained",
    "attempts / trials",
    "best accuracy",
]


def test_search_table_reports_medians_and_unreached_methods(bench: ModuleType) -> None:
    runs = [bench.SearchRun("epochs", 0, False, None, 45, 15, 0.61, 60.0)]
    for seed, (tpe, hb) in enumerate(((9, 14), (12, 20), (6, None))):
        runs.append(bench.SearchRun("tpe", seed, True, tpe, tpe, 4, 0.981, 20.0))
        runs.append(bench.SearchRun("hyperband", seed, hb is not None, hb, hb or 60, 9, 0.97, 30.0))
    meta = {
        "machine": {"cpu": "cpu", "cores": 2, "python": "3.11"},
        "optuna": "5",
        "keras_tuner": "1",
        "finished": "now",
        "wall_s": 60.0,
        "command": "python scripts/bench.py --search",
    }
    text = bench.search_markdown(runs, bench.SEARCH_FULL, meta)
    header, rows = table(text, "method")
    assert header == SEARCH_COLUMNS
    by = {r[0]: r for r in rows}
    assert by["epochs chain (learning rate 0.001)"][1:4] == ["0/1", "> 60 (budget)", "not reached"]
    assert by["search: TPE + successive halving"][1:4] == ["3/3", "9", "9 [6–12]"]
    # over all seeds, one that never reached it counts as more than the budget: the median is the worse
    assert by["KerasTuner Hyperband"][1:4] == ["2/3", "20", "17 [14–20] (2 of 3)"]
    assert "search: random + successive halving" not in by  # no runs, no row
    assert "in-process pruner): not measured in this run." in text
    pruner = [
        bench.SearchRun("optuna-hyperband", s, r is not None, r, r or 60, 5, 0.97, 9.0)
        for s, r in enumerate((4, None, None))
    ]
    text = bench.search_markdown(runs + pruner, bench.SEARCH_FULL, meta)
    assert "median over all 3 seeds, than Optuna's in-process pruner): 9 against > 60 (budget), met." in text
    faster = [bench.SearchRun("optuna-hyperband", s, True, 5, 5, 5, 0.98, 9.0) for s in range(3)]
    assert "9 against 5, not met." in bench.search_markdown(runs + faster, bench.SEARCH_FULL, meta)


@pytest.mark.integration
def test_quick_search_benchmark_runs_every_method_in_separate_processes(tmp_path: Path) -> None:
    out = tmp_path / "search"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--search", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = (out / "search.md").read_text()
    header, rows = table(text, "method")
    assert header == SEARCH_COLUMNS
    assert [r[0] for r in rows] == [
        "epochs chain (learning rate 0.001)",
        "search: TPE + successive halving",
        "search: random + successive halving",
        "KerasTuner Hyperband",
        "Optuna TPE + HyperbandPruner, in process",
    ]
    raw = json.loads((out / "search.json").read_text())
    runs = {r["method"]: r for r in raw["runs"]}
    budget = raw["meta"]["settings"]["epoch_budget"]
    for method, run in runs.items():
        assert 1 <= run["epochs_trained"] <= budget, (method, run)
        assert run["reached"] == (run["epochs_to_threshold"] is not None)
    # One keeptraining attempt process per attempt: the search log names each trial it trained.
    assert "search tpe       seed 0: attempt 1 trial 1 rung 0" in done.stderr
    assert "search hyperband seed 0:" in done.stderr
    assert "search optuna-hyperband seed 0:" in done.stderr  # Optuna's own pruning, in one process


# --------------------------------------------------------------------------- a cold runner (issue 12)

BENCH_COLD = REPO_ROOT / "scripts" / "bench_cold.py"
COLD_COLUMNS = [
    "variant",
    "attempt",
    "install",
    "checkout",
    "restore state",
    "image",
    "train",
    "dispatch, summary",
    "upload state",
    "other (act, set-up)",
    "total s",
    "fixed s",
]


@pytest.fixture(scope="module")
def bench_cold() -> ModuleType:
    return load("kt_bench_cold", BENCH_COLD)


def test_act_durations_parse(bench_cold: ModuleType) -> None:
    assert bench_cold.duration("66.280083ms") == pytest.approx(0.066280083)
    assert bench_cold.duration("2.045195285s") == pytest.approx(2.045195285)
    assert bench_cold.duration("1m5.5s") == pytest.approx(65.5)
    assert bench_cold.duration("850µs") == pytest.approx(0.00085)


def act_log(steps: dict[str, str], lines: list[str]) -> str:
    prefix = "[Continuous training/train]"
    text = [f"{prefix} ⭐ Run Main Set up job"]
    for name, took in steps.items():
        text.append(f"{prefix}   ✅  Success - Main {name} [{took}]")
    text += [f"{prefix}   | {line}" for line in lines]
    return "\n".join(text) + "\n"


def test_a_job_is_split_into_the_parts_of_an_attempt(bench_cold: ModuleType) -> None:
    steps = {
        "Mask secrets": "2ms",
        "Locate keeptraining's environment": "60ms",
        "Restore keeptraining's environment": "1.5s",
        "Install keeptraining": "90ms",
        "Check the chain's commit and the run to resume": "1.2s",
        "Check out the chain's commit": "1s",
        "Restore the chain state": "600ms",
        "Train one attempt": "20s",
        "Save the chain state": "700ms",
        "Train, check the threshold, dispatch the next attempt": "26s",
    }
    lines = [
        "keeptraining's environment: restored from the actions cache (key k)",
        "Pulled the training image 127.0.0.1:5000/kt:0123456789abcdef in 6.0 s",
        "Training image keeptraining-train:0123456789abcdef ready in 6.5 s",
    ]
    run = bench_cold.ActRun(7, 1, "workflow_dispatch", {}, 0, 28.0, act_log(steps, lines), {"attempt": "2"})
    job = bench_cold.job_from_log("cold", run, train_s=11.0)
    assert (job.attempt, job.image_tag, job.image_how) == (2, "keeptraining-train:0123456789abcdef", "pulled")
    assert job.install_how.startswith("restored from the actions cache")
    assert job.parts["install"] == pytest.approx(1.652)
    assert job.parts["checkout"] == pytest.approx(2.2)
    assert (job.parts["image"], job.parts["train"], job.parts["dispatch"]) == (6.5, 11.0, 2.5)
    assert sum(job.parts.values()) == pytest.approx(job.wall_s)
    assert job.fixed_s == pytest.approx(17.0)


def cold_job(bench_cold: ModuleType, variant: str, **parts: float) -> Any:
    job = bench_cold.Job(variant, 2, 1, sum(parts.values()), image_tag="keeptraining-train:aa")
    job.parts = {key: parts.get(key, 0.0) for key, _ in bench_cold.STEP_PARTS}
    return job


def test_cold_targets_report_met_and_missed(bench_cold: ModuleType) -> None:
    first = cold_job(bench_cold, "attempt1", install=9.0, image=80.0, train=8.0)
    first.build_s = 60.0
    jobs = [
        first,
        cold_job(bench_cold, "cold", install=4.0, image=20.0, train=8.0),
        cold_job(bench_cold, "warm", install=0.2, image=0.01, train=8.0),
        cold_job(bench_cold, "today", install=30.0, image=65.0, train=8.0),
        cold_job(bench_cold, "before1", install=25.0, image=20.0, train=8.0),
        cold_job(bench_cold, "before", install=5.5, image=20.0, train=8.0),
    ]
    found = bench_cold.targets(jobs)
    verdicts = [t["verdict"] for t in found]
    # pull 20 s of a 60 s build; fixed 24 s of 95 s; install 9 s cold, 4 s on a hit; one tag; 0.01 s warm
    assert verdicts == ["missed", "met", "met", "missed", "met", "met"]
    # the install targets show the action before issue 28, measured in the same run, beside them
    assert found[2]["measured"].endswith("before issue 28, same run: 25.0 s")
    assert found[3]["measured"].endswith("before issue 28, same run: 5.5 s")
    meta = {
        "machine": {"cpu": "cpu", "cores": 2},
        "finished": "now",
        "wall_s": 60.0,
        "command": "python scripts/bench.py --cold",
    }
    text = bench_cold.markdown(jobs, meta)
    header, rows = table(text, "variant")
    assert header == COLD_COLUMNS and len(rows) == 6


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.docker
def test_quick_cold_benchmark_pulls_restores_and_times_every_step(
    tmp_path: Path, docker_base_image: str
) -> None:
    from services.act_driver import require_official_actions  # noqa: PLC0415 - the e2e tests' own check

    require_official_actions()
    out = tmp_path / "cold"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_") or k == "KT_GHA_ACTIONS_DIR"}
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--cold",
            "--quick",
            "--base-image",
            docker_base_image,
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = (out / "cold.md").read_text()
    header, rows = table(text, "variant")
    assert header == COLD_COLUMNS
    assert [r[0] for r in rows] == [
        "attempt 1 (build + push)",
        "attempt 2+ cold (pull)",
        "attempt 2+ warm (cached)",
    ]
    for row in rows:
        assert all(NUMBER.match(cell) for cell in row[1:]), row
    raw = json.loads((out / "cold.json").read_text())
    jobs = {j["variant"]: j for j in raw["jobs"]}
    assert jobs["attempt1"]["image_how"] == "built + pushed"
    assert jobs["cold"]["image_how"] == "pulled" and jobs["warm"]["image_how"] == "on the runner"
    assert jobs["attempt1"]["install_how"].startswith("installed with uv")
    assert jobs["cold"]["install_how"].startswith("restored from the actions cache")
    assert jobs["warm"]["install_how"].startswith("reused from this runner's tool cache")
    assert len({j["image_tag"] for j in jobs.values()}) == 1, "one content hash for the chain"
    for job in jobs.values():
        assert sum(job["parts"].values()) == pytest.approx(job["wall_s"], abs=0.01)
    assert (out / "cold.png").read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- --hopeless


@pytest.fixture(scope="module")
def bench_hopeless() -> ModuleType:
    return load("bench_hopeless", REPO_ROOT / "scripts" / "bench_hopeless.py")


def test_hopeless_synthetic_chains_meet_the_targets(bench_hopeless: ModuleType) -> None:
    """The quick draw (5 + 5 chains) through the real decision code: every unreachable chain stops on the
    projection before half its budget, no reachable one is stopped, and the table says so."""
    results, model = bench_hopeless.run(quick=True, with_model=False)
    assert model is None and len(results) == 10
    unreachable = [c for c in results if c.kind == "unreachable"]
    reachable = [c for c in results if c.kind == "reachable"]
    assert all(c.stopped and c.share < 0.5 and not c.reached for c in unreachable)
    assert not any(c.stopped for c in reachable) and all(c.reached for c in reachable)
    verdict = unreachable[0].verdict
    assert "stopped on the projection" in verdict and "projected accuracy" in verdict
    assert bench_hopeless.targets(results, None) == []
    text = bench_hopeless.markdown(results, None, {"finished": "now", "command": "x", "seed": 0})
    _header, rows = table(text, "chains")
    assert [row[1] for row in rows] == ["5/5", "0/5"]


def test_hopeless_targets_name_what_was_missed(bench_hopeless: ModuleType) -> None:
    chain = bench_hopeless.Chain(
        "reachable",
        0.95,
        30.0,
        1,
        attempts=2,
        epochs=20,
        budget=100,
        verdict="Threshold not reached, stopped on the projection: …",
    )
    missed = bench_hopeless.targets(
        [chain, bench_hopeless.Chain("unreachable", 0.8, 5.0, 2, attempts=10, epochs=100, budget=100)], None
    )
    assert "no reachable chain is stopped" in missed
    assert any("median unreachable" in m for m in missed)


@pytest.mark.integration
def test_quick_hopeless_benchmark_stops_the_sample_model(tmp_path: Path) -> None:
    """The sample model at threshold 0.999, a real local chain, ends on the projection before its budget."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--hopeless", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "action")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "hopeless.json").read_text(encoding="utf-8"))
    model = data["sample_model"]
    assert "stopped on the projection" in model["verdict"] and model["epochs"] < model["budget"]
    assert model["projection"]["hopeless"] is True and model["minutes"] > 0
    assert data["missed"] == []
    assert "Sample model, threshold 0.999" in (tmp_path / "hopeless.md").read_text(encoding="utf-8")
