"""Benchmark section: what batching costs the search itself, over many seeds (``--search-rounds N``).

    .venv/bin/python scripts/bench.py --parallel --search-rounds 20   # ~17 min on 2 cores
    .venv/bin/python scripts/bench.py --parallel --search-rounds 1 --quick   # its smoke run (CI)

A seed's search is deterministic: the same seed gives the same trials, results, attempts and rounds,
whatever the machine's speed. So the search's side of the parallel table (how many rounds a chain needs
with parallel N, against the attempts one trial at a time) can be measured apart from the wall time, over
many more seeds than real chains allow. Each chain here runs the real planner (``rounds.plan_round``, or
``search.next_run`` one trial at a time) on the real sample model (``ml_code/nn.py``), trained in this
process with TensorFlow imported once (about 1 s a trial instead of 4), each trial recorded through
``step.new_record`` and ``step.fill_from_result`` from the ``metrics.json`` it wrote. It gives the
same attempts and rounds as ``keeptraining run --parallel N`` for the same seed as long as TensorFlow
computes with the same number of threads: a real trial of a round is pinned to its share of the cores, a
chain one trial at a time uses them all, and a result near the threshold can land on the other side of it
with another thread count (of the 20 seeds of the parallel table, computed on one core each, two chains
one trial at a time came out differently: seeds 600 and 800). The test compares the quick settings'
chains.

Not timed: combine with the measured time of a round (the parallel table) to read a wall time. These are
the rounds a GitHub chain trains (one workflow run each), so ``bench.py --parallel`` takes its GitHub model
from them when ``parallel-search.json`` is in its ``--out`` folder (run this first).
Writes ``parallel-search.md`` and ``parallel-search.json`` to ``--out``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SearchChain:
    parallel: int
    seed: int
    reached: bool
    attempts: int
    rounds: int
    epochs_trained: int
    round_epochs: list[list[int]]  # per round, the epochs each trial trained (input of the GitHub model)


def _train(nn: Any, env: dict[str, str]) -> None:
    """One run of the sample model in this process, with ``env`` as its contract: it leaves its checkpoint
    and ``metrics.json`` in ``KT_OUTPUT_DIR``, as ``python nn.py`` does."""
    for name in [n for n in os.environ if n.startswith("KT_")]:
        del os.environ[name]
    os.environ.update(env)
    cfg = nn.read_config()
    nn.prepare_output_dir(cfg.output_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = nn.train(cfg)
    nn.write_json_atomically(cfg.output_dir / "metrics.json", metrics)


def search_chain(settings: Any, space: dict[str, Any], parallel: int, seed: int, work: Path) -> SearchChain:
    """One chain's search, trial after trial (or round after round), until the threshold or the budget.
    ``settings``: bench_parallel's Settings, whose chain configuration this is."""
    sys.path.insert(0, str(REPO_ROOT / "ml_code"))
    import nn  # noqa: PLC0415 - the sample model, imported once per worker
    from bench_parallel import chain_config  # noqa: PLC0415

    from keeptraining.backends.base import TrainResult  # noqa: PLC0415
    from keeptraining.config import settings as config  # noqa: PLC0415
    from keeptraining.contract import env as kt_env  # noqa: PLC0415
    from keeptraining.engine import rounds, search, step, strategy  # noqa: PLC0415
    from keeptraining.state.ledger import REACHED, Ledger  # noqa: PLC0415

    # The space goes in as the real chain's YAML has it (keys sorted): Optuna draws the values in the
    # order of the space, so another order would be another (equally valid) search.
    values = chain_config(settings, dict(sorted(space.items())), seed, work / "unused")
    cfg = config.resolve({**values, "parallel": parallel}, None, source="bench_search_rounds")
    book = Ledger()
    state = work / f"p{parallel}-s{seed}"
    round_no = 0
    round_epochs: list[list[int]] = []
    while True:
        jobs = rounds.plan_round(cfg, book) if parallel > 1 else [search.next_run(cfg, book)]
        round_no += 1
        first = rounds.first_attempt(book)
        records = []
        for k, job in enumerate(jobs):
            plan = job.plan(first + k)
            out = state / f"attempt-{plan.attempt:03d}"
            resumed = (
                f"attempt-{plan.resume_from.attempt:03d}/{plan.resume_from.checkpoint}"
                if plan.resume_from is not None and plan.resume_from.checkpoint
                else None
            )
            _train(
                nn,
                {
                    **step.contract_env(cfg, plan, job.params),
                    **kt_env.paths(str(out), str(state / resumed) if resumed else ""),
                },
            )
            record = step.new_record(cfg, plan, "local", resumed_from=resumed, job=job)
            step.fill_from_result(
                record,
                TrainResult(exit_code=0, duration=0.0, output=""),
                out,
                cfg,
                plan,
                lambda _line: None,
                book.last,
            )
            record.round = round_no if parallel > 1 else None
            records.append(record)
        book.attempts.extend(records)
        round_epochs.append([r.epochs_trained for r in records])
        verdict = rounds.decide(cfg, book, records) if parallel > 1 else search.decide(cfg, book)
        if verdict.kind != strategy.CONTINUE:
            return SearchChain(
                parallel,
                seed,
                any(r.outcome == REACHED for r in book.attempts),
                len(book.attempts),
                round_no,
                book.total_epochs_trained(),
                round_epochs,
            )


def _worker(task: tuple[Any, dict[str, Any], int, int, str]) -> SearchChain:
    settings, space, parallel, seed, work = task
    return search_chain(settings, space, parallel, seed, Path(work))


def _median(values: list[int]) -> str:
    return f"{statistics.median(values):g} [{min(values)}–{max(values)}]" if values else "-"


def markdown(
    chains: list[SearchChain], parallel: tuple[int, ...], seeds: list[int], meta: dict[str, Any]
) -> str:
    lines = [
        f"{meta['finished']} ({meta['wall_s'] / 60:.1f} min). Command: `{meta['command']}`",
        "",
        f"The real planner and the sample model (trained in one process, so not timed), threshold "
        f"{meta['settings']['threshold']:g}, {len(seeds)} seeds ({seeds[0]}, …, {seeds[-1]}); median "
        "[min–max]. A round of N costs about as much wall time as one trial alone only when N trials "
        "fit the machine at once (N runners on GitHub; N cores here).",
        "",
        "| parallel | reached | attempts | rounds | mean rounds | fewer rounds than attempts one at a time |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    alone = {c.seed: c.attempts for c in chains if c.parallel == 1}
    for width in parallel:
        mine = [c for c in chains if c.parallel == width]
        fewer = "-" if width == 1 else f"{sum(c.rounds < alone.get(c.seed, 0) for c in mine)}/{len(mine)}"
        lines.append(
            f"| {width} | {sum(c.reached for c in mine)}/{len(mine)} | "
            f"{_median([c.attempts for c in mine])} | {_median([c.rounds for c in mine])} | "
            f"{statistics.fmean(c.rounds for c in mine):.1f} | {fewer} |"
        )
    return "\n".join(lines) + "\n"


def main(
    settings: Any, space: dict[str, Any], parallel: tuple[int, ...], seeds: list[int], out: Path, command: str
) -> str:
    """Every (parallel, seed) chain, spread over the cores; writes parallel-search.md and .json."""
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    print(
        f"keeptraining search rounds: parallel {', '.join(map(str, parallel))}, {len(seeds)} seeds; "
        f"results to {out}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="kt-bench-search-rounds-") as work:
        tasks = [(settings, space, width, seed, work) for seed in seeds for width in parallel]
        workers = min(len(tasks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            chains = []
            for chain in pool.map(_worker, tasks):
                print(
                    f"  parallel {chain.parallel} seed {chain.seed}: {chain.attempts} attempts, "
                    f"{chain.rounds} rounds",
                    file=sys.stderr,
                    flush=True,
                )
                chains.append(chain)
    meta = {
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.perf_counter() - clock,
        "settings": asdict(settings),
        "parallel": list(parallel),
        "seeds": seeds,
    }
    text = markdown(chains, parallel, seeds, meta)
    (out / "parallel-search.md").write_text(
        "# keeptraining: what batching costs the search\n\n" + text, encoding="utf-8"
    )
    (out / "parallel-search.json").write_text(
        json.dumps({"meta": meta, "chains": [asdict(c) for c in chains]}, indent=1) + "\n", encoding="utf-8"
    )
    print(text)
    return text
