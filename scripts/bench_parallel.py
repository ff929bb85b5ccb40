"""Benchmark section: ``parallel: N``, the wall time to the threshold with 1, 2 and 4 trials at once.

    .venv/bin/python scripts/bench.py --parallel --search-rounds 20   # GitHub's rounds, ~25 min
    .venv/bin/python scripts/bench.py --parallel --update-readme      # then the timed chains, ~46 min
    .venv/bin/python scripts/bench.py --parallel --quick              # its smoke run, ~1 min (CI)

**On this machine** each chain is one ``keeptraining run --parallel N`` process on the local backend
(each trial its own training process, pinned to its share of the cores; by default each slot starts
the next trial as soon as it is free, with ``--in-rounds`` round after round as on GitHub), searching
the sample model's space (bench.py's ``SEARCH_SPACE``, TPE + successive halving) with 20 seeds: the
wall time until the chain ends, whether and after how many epochs it reached the threshold, and the
epochs it trained. A seed's search differs between seeds by a factor of five: 20 seeds, and each seed's
chain compared with the same seed's chain one trial at a time, are what separate the method from the
luck of a seed (in rounds a seed's search is deterministic; with free slots it also depends on which
trial ends first).

**On GitHub** (modelled): a round is a run of N trial jobs, each on its own runner, then a merge job;
its wall time is its slowest trial job plus the merge job, and a chain's is the sum over its rounds
(parallel 1: the sum over its attempts, one job each). The model takes each seed's rounds as a GitHub
chain trains them (the epochs each trial trained: from ``--search-rounds``' results in the same
``--out``, or from the chains themselves with ``--in-rounds``), a trial's training time alone on a
runner (a + b x epochs, fitted to the parallel-1 attempts, which ran alone), and each kind of job's
fixed cost (every step but the training): from the cold-runner measurements
(``scripts/bench_results/cold.json``, issue 12) when they exist, else measured here under act with
GitHub in a box (a tiny script, the local backend, a warm tool cache: a lower bound for GitHub's
runners). Not in the model: the time GitHub takes to give each job a runner, and the queueing when
the account's concurrent-job limit is lower than N.

Writes ``parallel.md`` and ``parallel.json`` to ``--out`` (default scripts/bench_results) and, with
``--update-readme``, the table into README.md's "Parallel trials" section.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: issue 12's cold-runner measurements; KT_BENCH_COLD_JSON names another copy (e.g. a branch's).
COLD_JSON = Path(
    os.environ.get("KT_BENCH_COLD_JSON") or REPO_ROOT / "scripts" / "bench_results" / "cold.json"
)
README_BEGIN = "<!-- bench-parallel:begin (scripts/bench.py --parallel --update-readme) -->"
README_END = "<!-- bench-parallel:end -->"
CHAIN_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Settings:
    threshold: float
    epochs: int
    epoch_step: int
    max_attempts: int
    epoch_budget: int
    parallel: tuple[int, ...]
    seeds: tuple[int, ...]
    quick: bool = False


# The budget is far above what a chain needs (the table is about the time to the threshold): a round
# of N trials spends N attempts, and rounds explore more than one trial at a time does (a round's new
# trials are proposed before its promotions report), so a tight attempt budget would end wide rounds
# first. 0.98 with 3-epoch trials: the search table above (one trial at a time: about 10 attempts).
# Seeds far apart: the search seeds each attempt's sampler with seed + trials so far, so seeds 0, 1, 2
# share most of their first trials (seed 1's trial k is seed 0's trial k + 1 while TPE starts up).
# Twenty of them: one seed's chain one trial at a time needs 4 to 20 attempts, so five seeds (the first
# table's) let a few lucky or unlucky searches decide the medians.
FULL = Settings(
    threshold=0.98,
    epochs=3,
    epoch_step=3,
    max_attempts=60,
    epoch_budget=300,
    parallel=(1, 2, 4),
    seeds=tuple(range(0, 2000, 100)),
)
QUICK = Settings(
    threshold=0.5,
    epochs=1,
    epoch_step=1,
    max_attempts=4,
    epoch_budget=8,
    parallel=(1, 2),
    seeds=(0,),
    quick=True,
)


@dataclass
class Chain:
    parallel: int
    seed: int
    reached: bool
    wall_s: float
    epochs_trained: int
    epochs_to_threshold: int | None
    attempts: int
    rounds: list[list[dict[str, float]]] = field(default_factory=list)  # per round, each trial: epochs, s


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chain_config(settings: Settings, space: dict[str, Any], seed: int, state: Path) -> dict[str, Any]:
    return {
        "threshold": settings.threshold,
        "epochs": settings.epochs,
        "epoch_step": settings.epoch_step,
        "max_attempts": settings.max_attempts,
        "max_epochs_total": settings.epoch_budget,
        "code_path": "ml_code",
        "train_command": "python nn.py",
        "backend": "local",
        "strategy": "search",
        "hyperparameters": {},
        "state_dir": str(state),
        "search": {"sampler": "tpe", "seed": seed, "space": space},
    }


def run_chain(
    settings: Settings, space: dict[str, Any], parallel: int, seed: int, *, in_rounds: bool = False
) -> Chain:
    """``keeptraining run --parallel N`` (``--in-rounds``) in its own process, timed from start to end."""
    import yaml  # noqa: PLC0415

    from keeptraining.state import ledger  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix=f"kt-bench-parallel-{parallel}-") as tmp:
        state = Path(tmp) / "state"
        cfg = Path(tmp) / "keeptraining.yml"
        cfg.write_text(yaml.safe_dump(chain_config(settings, space, seed, state)), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "GITHUB_"))}
        start = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "keeptraining",
            "run",
            "--repo",
            str(REPO_ROOT),
            "--config",
            str(cfg),
            "--parallel",
            str(parallel),
            *(["--in-rounds"] if in_rounds else []),
        ]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=CHAIN_TIMEOUT_S, check=False
        )
        wall = time.perf_counter() - start
        if done.returncode not in (0, 3):
            raise RuntimeError(
                f"parallel {parallel} seed {seed}: keeptraining run failed "
                f"({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        book = ledger.load(state)
    rounds: dict[int, list[dict[str, float]]] = {}
    for a in book.attempts:
        rounds.setdefault(a.round or a.attempt, []).append(
            {"epochs": a.epochs_trained, "seconds": a.duration_s, "failed": a.outcome == "failed"}
        )
    reached = any(a.outcome == "reached" for a in book.attempts)
    trained = book.total_epochs_trained()
    log(
        f"  parallel {parallel} seed {seed}: {'reached' if reached else 'not reached'} after "
        f"{len(book.attempts)} attempts in {len(rounds)} rounds, {trained} epochs, {wall:.1f} s"
    )
    return Chain(
        parallel,
        seed,
        reached,
        wall,
        trained,
        trained if reached else None,
        len(book.attempts),
        [rounds[k] for k in sorted(rounds)],
    )


# --------------------------------------------------------------------------- the GitHub model


def fit_training(chains: list[Chain]) -> tuple[float, float]:
    """Seconds a trial takes alone: a + b x epochs, least squares over the parallel-1 attempts."""
    points = [
        (t["epochs"], t["seconds"])
        for c in chains
        if c.parallel == 1
        for r in c.rounds
        for t in r
        if not t["failed"]
    ]
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        mean = statistics.fmean(s for _, s in points) if points else 0.0
        return mean, 0.0
    slope, intercept = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    return max(intercept, 0.0), max(slope, 0.0)


def modelled_wall(chain: Chain, fit: tuple[float, float], costs: dict[str, float]) -> float:
    """GitHub's wall time for this chain's rounds: per round, the slowest trial job plus the merge job."""
    a, b = fit
    total = 0.0
    for trials in chain.rounds:
        slowest = max(a + b * t["epochs"] for t in trials)
        if chain.parallel == 1:
            total += costs["attempt"] + slowest
        else:
            total += costs["trial"] + slowest + costs["merge"]
    return total


def github_chains(
    chains: list[Chain], out: Path, settings: Settings, in_rounds: bool
) -> tuple[list[Chain], str]:
    """The rounds a GitHub chain trains for each (parallel, seed), and where they come from: the local
    chains themselves when they ran in rounds; else ``parallel-search.json`` in ``out``
    (``--search-rounds``: the same planner and settings), when it covers these seeds; else none."""
    if in_rounds:
        return chains, "the rounds of these chains"
    path = out / "parallel-search.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], ""
    if raw.get("meta", {}).get("settings") != json.loads(json.dumps(asdict(settings))) or not set(
        settings.seeds
    ) <= set(raw["meta"].get("seeds", [])):
        log(f"  {path} is from other settings or seeds: no GitHub model")
        return [], ""
    found = []
    for c in raw["chains"]:
        if c["seed"] in settings.seeds and c["parallel"] in settings.parallel:
            rounds = [[{"epochs": e, "seconds": 0.0, "failed": False} for e in r] for r in c["round_epochs"]]
            found.append(
                Chain(
                    c["parallel"],
                    c["seed"],
                    c["reached"],
                    0.0,
                    c["epochs_trained"],
                    None,
                    c["attempts"],
                    rounds,
                )
            )
    return found, f"`--search-rounds` for the same seeds ({raw['meta']['finished']})"


def costs_from_cold(path: Path) -> dict[str, Any] | None:
    """Fixed costs of each kind of job from the cold-runner benchmark (issue 12), if it has run: for
    runners that start cold (GitHub's hosted runners: the image pulled, the environment restored) and
    warm ones (a self-hosted runner that keeps both)."""
    if not path.is_file():
        return None
    jobs = {j["variant"]: j for j in json.loads(path.read_text()).get("jobs", [])}
    scenarios: dict[str, dict[str, float]] = {}
    for variant, name in (("cold", "cold runners"), ("warm", "warm runners")):
        job = jobs.get(variant)
        if job is None:
            continue
        parts = job["parts"]
        steps = ("install", "checkout", "restore", "dispatch", "upload", "other")
        merge = sum(parts.get(k, 0.0) for k in steps)
        scenarios[name] = {
            "attempt": job["fixed_s"],
            "trial": job["fixed_s"] - parts.get("dispatch", 0.0),
            "merge": merge + parts.get("restore", 0.0),
        }  # the merge downloads the trials too
    if not scenarios:
        return None
    return {
        "source": f"{path.name} (issue 12: an attempt 2+ step by step: install, checkout, restore, "
        "image, dispatch, upload; a trial job has no dispatch, a merge job no image and no "
        "training)",
        "scenarios": scenarios,
    }


_STEP = re.compile(
    r"^\[(?P<job>[^\]]*)\]\s+(?:✅\s+Success|❌\s+Failure) - (?:Main|Post|Pre) (?P<name>.+?) "
    r"\[(?P<duration>[^\]]+)\]\s*$"
)
# The jobs' own steps (README's workflows and the reusable one); act also times the action's inner steps,
# which these include.
TOP_STEPS = (
    "Train this trial",
    "Merge the trials, decide, dispatch the next round",
    "Train, check the threshold, dispatch the next attempt",
)


def go_duration(text: str) -> float:
    """Seconds of a Go duration as act prints it: 850µs, 66.28ms, 2.04s, 1m5.3s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
    return sum(float(v) * units[u] for v, u in re.findall(r"([\d.]+)(h|ms|µs|us|ns|m|s)", text))


def job_seconds(log_text: str) -> dict[str, float]:
    """Seconds of every job in an act log: its own steps' pre, main and post parts (act's own set-up of
    the job is not timed)."""
    jobs: dict[str, float] = {}
    for line in log_text.splitlines():
        step = _STEP.match(line)
        if step and step["name"] in TOP_STEPS:
            job = step["job"].rsplit("/", 1)[-1].strip()
            jobs[job] = jobs.get(job, 0.0) + go_duration(step["duration"])
    return jobs


def costs_from_act(work: Path) -> dict[str, Any]:
    """Fixed costs measured under act: one round of README's parallel workflow (two trial jobs and the
    merge job) and one attempt of README's workflow, each with a tiny stand-in script."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from services.act_driver import (  # noqa: PLC0415
        CT_WORKFLOW,
        ActChain,
        consumer_repo,
        init_repo,
        keeptraining_action,
        readme_workflow,
        warm_tool_cache,
    )
    from services.github_box import GitHubBox  # noqa: PLC0415

    script = (REPO_ROOT / "tests" / "fixtures" / "fake_search_train.py").read_text()
    config = (
        "epochs: 20\nmax_attempts: 2\nstrategy: search\nbackend: local\nsearch:\n  seed: 1\n  space:\n"
        "    learning_rate: {type: float, low: 0.02, high: 0.045, log: true}\n"
    )
    action = keeptraining_action(work / "keeptraining")
    warm_tool_cache(work / "keeptraining")
    measured: dict[str, float] = {}
    for kind, section in (("parallel", "### Parallel trials"), ("serial", "## Use it in your repository")):
        repo = consumer_repo(
            work / kind,
            "unused",
            workflow=readme_workflow(section),
            script=script,
            config=config + ("parallel: 2\n" if kind == "parallel" else ""),
        )
        init_repo(repo, "acme/bench")
        token = "ghs_benchParallelToken0123456789"  # noqa: S105 - GitHub in a box's token
        with GitHubBox(
            repo, work / f"box-{kind}", "acme/bench", token, CT_WORKFLOW, called_roots=list(action.values())
        ) as box:
            runner = ActChain(repo, box, work, secrets={"GITHUB_TOKEN": token}, local_actions=action)
            runner.push()
            run = runner.step()
            if run is None or run.returncode != 0:
                raise RuntimeError(f"the {kind} workflow failed under act:\n{run.log[-3000:] if run else ''}")
            seconds = job_seconds(run.log)
            book = _state_ledger(box, run.run_id)
        trained = {(a.get("runner") or {}).get("slot", 1): a["duration_s"] for a in book["attempts"]}
        if kind == "parallel":
            trials = [
                s - trained[int(name.split()[1].split("-")[0])]
                for name, s in seconds.items()
                if name.startswith("Trial ")
            ]
            measured["trial"] = max(trials)
            measured["merge"] = next(s for name, s in seconds.items() if name.startswith("Merge"))
        else:
            measured["attempt"] = sum(seconds.values()) - trained[1]
    return {
        "source": "act on this machine (GitHub in a box, local backend, warm tool cache, a stand-in "
        "script; act's own job set-up not timed): a lower bound",
        "scenarios": {"act": measured},
    }


def _state_ledger(box: Any, run_id: int) -> dict[str, Any]:
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    store = box.results.artifacts
    (artifact,) = store.of_run(run_id, name="keeptraining-state")
    with zipfile.ZipFile(io.BytesIO(store.content(artifact))) as archive:
        data: dict[str, Any] = json.loads(archive.read("ledger.json"))
    return data


# --------------------------------------------------------------------------- tables


def _median(values: list[float]) -> str:
    if not values:
        return "-"
    text = f"{statistics.median(values):.0f}" if max(values) >= 10 else f"{statistics.median(values):.1f}"
    if len(values) > 1:
        low, high = min(values), max(values)
        text += f" [{low:.0f}–{high:.0f}]" if high >= 10 else f" [{low:.1f}–{high:.1f}]"
    return text


def seed_list(seeds: tuple[int, ...]) -> str:
    """``seeds 0, 100, 200`` or, for a long even run, ``20 seeds (0, 100, …, 1900)``."""
    if len(seeds) > 5 and len({b - a for a, b in itertools.pairwise(seeds)}) == 1:
        return f"{len(seeds)} seeds ({seeds[0]}, {seeds[1]}, …, {seeds[-1]})"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def sooner(chains: list[Chain], alone: dict[int, float]) -> str:
    """On how many seeds these chains ended sooner than the same seed's chain one trial at a time."""
    paired = [c for c in chains if c.seed in alone]
    if not paired or all(c.parallel == 1 for c in paired):
        return "-"
    return f"{sum(c.reached and c.wall_s < alone[c.seed] for c in paired)}/{len(paired)}"


def markdown(
    chains: list[Chain],
    settings: Settings,
    fit: tuple[float, float],
    costs: dict[str, Any] | None,
    meta: dict[str, Any],
    github: list[Chain],
    github_source: str,
) -> str:
    m = meta["machine"]
    how = (
        "round after round (`--in-rounds`, as on GitHub)"
        if meta.get("in_rounds")
        else "each slot starting the next trial as soon as it is free"
    )
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, TensorFlow "
        f"{m.get('tensorflow', '?')}; {meta['finished']} ({meta['wall_s'] / 60:.1f} min).",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Sample model on digits, threshold {settings.threshold:g}, the search space of the table "
        f"above (TPE + successive halving), {settings.epochs} epochs per new trial, "
        f"+{settings.epoch_step} per promotion, at most {settings.max_attempts} attempts and "
        f"{settings.epoch_budget} epochs; local backend, each trial its own process, {how}; median over "
        f'{seed_list(settings.seeds)} [min–max], and the mean; "sooner": the seeds whose chain '
        "ended sooner than the same seed's chain one trial at a time.",
        "",
    ]
    scenarios = costs["scenarios"] if costs and github else {}
    header = (
        "| parallel | reached | wall s to the end (this machine) | mean wall s "
        "| sooner than parallel 1 (seeds) | epochs to threshold | epochs trained | attempts |"
        + (" rounds on GitHub |" if github else "")
        + "".join(f" GitHub wall s, {n} (model) |" for n in scenarios)
    )
    lines += [header, "|" + " ---: |" * (8 + bool(github) + len(scenarios))]
    alone = {c.seed: c.wall_s for c in chains if c.parallel == 1}
    for parallel in settings.parallel:
        mine = [c for c in chains if c.parallel == parallel]
        if not mine:
            continue
        to = [float(c.epochs_to_threshold) for c in mine if c.epochs_to_threshold is not None]
        row = (
            f"| {parallel} | {sum(c.reached for c in mine)}/{len(mine)} | "
            f"{_median([c.wall_s for c in mine])} | {statistics.fmean(c.wall_s for c in mine):.1f} | "
            f"{sooner(mine, alone)} | {_median(to) if to else 'not reached'} | "
            f"{_median([float(c.epochs_trained) for c in mine])} | "
            f"{_median([float(c.attempts) for c in mine])} |"
        )
        on_github = [c for c in github if c.parallel == parallel]
        if github:
            row += f" {_median([float(len(c.rounds)) for c in on_github])} |"
        for job_costs in scenarios.values():
            row += f" {_median([modelled_wall(c, fit, job_costs) for c in on_github])} |"
        lines.append(row)
    if costs and github:
        fixed = "; ".join(
            f"{name}: an attempt job {c['attempt']:.1f} s, a trial job {c['trial']:.1f} s, the "
            f"merge job {c['merge']:.1f} s"
            for name, c in scenarios.items()
        )
        lines += [
            "",
            "GitHub model: a GitHub chain trains round after round, the rounds from "
            f"{github_source}; a trial alone trains in {fit[0]:.1f} s + {fit[1]:.2f} s per epoch "
            f"(fitted to the parallel-1 attempts); fixed costs (every step but the training) of "
            f"{fixed}; from {costs['source']}.",
        ]
    elif not github:
        lines += [
            "",
            "No GitHub model: it takes GitHub's rounds from `--search-rounds` (run it first, into "
            "the same `--out`) or from `--in-rounds` chains.",
        ]
    return "\n".join(lines) + "\n"


def main(
    quick: bool,
    out: Path,
    command: str,
    machine: dict[str, Any],
    space: dict[str, Any],
    update_readme: Any,
    *,
    measure_act: bool = True,
    in_rounds: bool = False,
) -> int:
    settings = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    log(f"keeptraining parallel benchmark ({'quick' if quick else 'full'}); results to {out}")
    # TensorFlow's first import after a while reads it all from disk: not a cost of the first chain.
    subprocess.run(
        [sys.executable, "-c", "import keras, tensorflow"], capture_output=True, check=False, timeout=600
    )
    chains = [
        run_chain(settings, space, parallel, seed, in_rounds=in_rounds)
        for seed in settings.seeds
        for parallel in settings.parallel
    ]
    github, github_source = github_chains(chains, out, settings, in_rounds)
    fit = fit_training(chains)
    costs = costs_from_cold(COLD_JSON)
    if costs is None and measure_act and not quick:
        log("  no cold-runner measurements (scripts/bench_results/cold.json): measuring the jobs under act")
        with tempfile.TemporaryDirectory(prefix="kt-bench-parallel-act-") as tmp:
            costs = costs_from_act(Path(tmp))
    meta = {
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.perf_counter() - clock,
        "machine": machine,
        "settings": asdict(settings),
        "training_fit": {"a": fit[0], "b": fit[1]},
        "job_costs": costs,
        "in_rounds": in_rounds,
        "github_rounds": github_source,
    }
    text = markdown(chains, settings, fit, costs, meta, github, github_source)
    (out / "parallel.md").write_text("# keeptraining: parallel trials\n\n" + text, encoding="utf-8")
    modelled = {
        name: {f"{c.parallel}-{c.seed}": modelled_wall(c, fit, job_costs) for c in github}
        for name, job_costs in (costs or {}).get("scenarios", {}).items()
    }
    raw = {"meta": meta, "chains": [asdict(c) for c in chains], "github_wall_s": modelled}
    (out / "parallel.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    if update_readme is not None:
        update_readme(f"{README_BEGIN}\n{text}{README_END}", begin=README_BEGIN, end=README_END)
    print(text)
    return 0 if not math.isnan(fit[0]) else 1
