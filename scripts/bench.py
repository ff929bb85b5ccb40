#!/usr/bin/env python3
"""Benchmark: keeptraining's chain against the seed's restart loop, on the sample model.

    .venv/bin/python scripts/bench.py --base-image keeptraining-base:bookworm   # full run, ~12 min
    .venv/bin/python scripts/bench.py --quick --out /tmp/bench                  # smoke run, ~1 min
    .venv/bin/python scripts/bench.py --curve                                   # how thresholds were chosen
    .venv/bin/python scripts/bench.py --search --update-readme    # strategy: search vs Hyperband, ~12 min
    .venv/bin/python scripts/bench.py --search --quick            # its smoke run, ~1 min (CI runs it)
    .venv/bin/python scripts/bench.py --cold --update-readme      # an attempt on a cold runner, ~10 min
    .venv/bin/python scripts/bench.py --cold --quick              # its smoke run, ~2 min (CI runs it)
    .venv/bin/python scripts/bench.py --parallel --update-readme  # parallel 1, 2 and 4, ~15 min
    .venv/bin/python scripts/bench.py --parallel --quick          # its smoke run, ~1 min (CI runs it)
    .venv/bin/python scripts/bench.py --hopeless --update-readme  # stopping hopeless chains, ~3 min
    .venv/bin/python scripts/bench.py --hopeless --quick          # its smoke run, ~30 s (CI runs it)

One invocation runs, on the same machine and with the model's default seed, the same
chain four ways (each in its own temporary state folder, through the real engine:
``config.resolve``, ``backends.select``, ``chain.run_attempt`` in the loop that
``chain.run_chain`` runs):

  (a) seed     ``resume: false`` and no stop inside an attempt: the Jenkins recipe,
               retraining 10, 20, 30 … epochs from scratch;
  (b) resume   each attempt resumes the previous checkpoint, trains all its epochs;
  (c) keeptraining   resume, and stop inside the attempt once the threshold is reached;
  (d) oracle   one uninterrupted run that stops at the first epoch reaching the threshold.

(b) and (a) switch the in-attempt stop off with the sample model's ``early_stop``
hyperparameter (``KT_HP_EARLY_STOP=false``). Each attempt gets a fresh backend, as each
GitHub run does: with docker that includes the image check (engine ping, content
hash, one inspect; the image itself is built, if needed, before anything is timed).

Per attempt: wall time of ``run_attempt`` (plus the image check), seconds inside
epochs (``epoch_seconds`` of metrics.json), and the fixed overhead = wall - epochs,
broken down with metrics.json ``timings`` and the docker backend's stages. Then the
scaling of cost with the number of attempts a threshold needs (2, 4, 8; 5-epoch
attempts, local backend) and the same ``model.fit`` run through each backend and
directly (a tiny script in the same Python / the same image).

Writes ``results.md`` (the tables), ``results.json`` (every attempt), ``chains.png``,
``overhead.png`` and ``scaling.png`` to ``--out`` (default scripts/bench_results), and
with ``--update-readme`` the tables into README.md's Performance section.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("keeptraining") is None:  # not installed (scripts/setup.sh does): the source
    sys.path.insert(0, str(REPO_ROOT / "action"))

from keeptraining.backends import select as backends  # noqa: E402
from keeptraining.backends.base import TrainRequest, TrainResult  # noqa: E402
from keeptraining.backends.docker import image as docker_image  # noqa: E402
from keeptraining.backends.docker import run as backend_docker  # noqa: E402
from keeptraining.config import settings as config  # noqa: E402
from keeptraining.engine import chain, strategy  # noqa: E402
from keeptraining.errors import KeeptrainingError  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "scripts" / "bench_results"
README = REPO_ROOT / "README.md"
README_BEGIN = "<!-- bench:begin (written by scripts/bench.py --update-readme) -->"
README_END = "<!-- bench:end -->"
CODE_PATH = "ml_code"
TRAIN_COMMAND = "python nn.py"
ATTEMPT_TIMEOUT_S = 900.0

# Targets of the issue, checked (and reported, never asserted) at the end.
TARGET_EPOCHS_VS_ORACLE = 1.1  # (c) epochs <= 1.1 x (d) epochs
TARGET_SEED_SPEEDUP = 2.5  # (a) / (c) training seconds >= 2.5 at a 3-attempt threshold
TARGET_OVERHEAD = {"docker": 0.15, "local": 0.10}  # overhead <= this share of an attempt


@dataclass(frozen=True)
class Variant:
    key: str
    name: str
    resume: bool
    early_stop: bool
    oracle: bool = False


VARIANTS = (
    Variant("a", "seed: retrain from scratch", resume=False, early_stop=False),
    Variant("b", "resume", resume=True, early_stop=False),
    Variant("c", "keeptraining: resume + stop", resume=True, early_stop=True),
    Variant("d", "oracle: one run", resume=True, early_stop=True, oracle=True),
)
VARIANT = {v.key: v for v in VARIANTS}


@dataclass(frozen=True)
class Settings:
    threshold: float  # the main comparison's threshold (needs 3 attempts with 10 + 10)
    epochs: int
    epoch_step: int
    max_attempts: int
    oracle_epochs: int  # KT_EPOCHS of the oracle's single run (it stops at the threshold)
    repeats: int
    backends: tuple[str, ...]
    # Scaling: (attempts keeptraining needs, threshold), with its own epochs per attempt.
    scaling: tuple[tuple[int, float], ...]
    scaling_epochs: int
    scaling_max_attempts: int
    scaling_repeats: int
    fit_epochs: int  # epochs of the backend-vs-direct fit comparison
    fit_repeats: int
    base_image: str | None = None
    quick: bool = False


# Thresholds from the sample model's validation curves (`--curve`; digits, seed 1337):
# 0.90 is first reached at epoch 25 uninterrupted and by the resumed chain, so (c) needs
# 3 attempts of 10 epochs. The scaling runs use 5-epoch attempts so that 8 attempts
# (40 epochs) stay in the steep part of the curve; with 10-epoch attempts, 8 attempts
# (80 epochs) lie on the plateau, where 0.002 of accuracy moves the crossing by tens of
# epochs. 0.70, 0.83 and 0.948 need 2, 4 and 8 attempts for (a) and (c) alike, and each is
# first reached in the first epoch of (c)'s last attempt (epochs 6, 16, 36): the same place
# in the attempt, so the points compare (`--curve --curve-epochs 40 --curve-step 5`).
FULL = Settings(
    threshold=0.9,
    epochs=10,
    epoch_step=10,
    max_attempts=10,
    oracle_epochs=200,
    repeats=3,
    backends=("local", "docker"),
    scaling=((2, 0.70), (4, 0.83), (8, 0.948)),
    scaling_epochs=5,
    scaling_max_attempts=12,
    scaling_repeats=1,
    fit_epochs=10,
    fit_repeats=3,
)
# Tiny settings for CI: one repetition, local only, 1-2 epochs per attempt. The chains
# are bounded by max_attempts, so they end whatever the accuracy reached.
QUICK = Settings(
    threshold=0.5,
    epochs=2,
    epoch_step=2,
    max_attempts=3,
    oracle_epochs=6,
    repeats=1,
    backends=("local",),
    scaling=((2, 0.2), (3, 0.4)),
    scaling_epochs=1,
    scaling_max_attempts=3,
    scaling_repeats=1,
    fit_epochs=2,
    fit_repeats=1,
    quick=True,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring


class TimedBackend:
    """The real backend, with the wall time and stages of its last ``run``."""

    def __init__(self, inner: backends.Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.wall_s = 0.0
        self.stages: dict[str, float] = {}

    def run(self, request: TrainRequest) -> TrainResult:
        start = time.perf_counter()
        try:
            result = self.inner.run(request)
        finally:
            self.wall_s = time.perf_counter() - start
        self.stages = dict(result.stages)
        return result


@dataclass
class AttemptRun:
    attempt: int
    epochs: int  # planned: total epochs after this attempt
    initial_epoch: int  # epochs in the checkpoint it resumed (0: from scratch)
    outcome: str
    metric: float | None
    epochs_reached: int | None
    epochs_trained: int
    wall_s: float  # run_attempt (+ image check for docker)
    image_check_s: float  # backends.select + DockerBackend.prepare (0 for local)
    backend_s: float  # backend.run
    duration_s: float  # the ledger's duration_s (process or container run)
    epoch_seconds: list[float]
    timings: dict[str, float]  # nn.py's metrics.json timings
    stages: dict[str, float]  # docker backend stages
    history: list[float] = field(default_factory=list)  # validation metric per epoch trained

    @property
    def train_s(self) -> float:
        return sum(self.epoch_seconds)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.train_s

    @property
    def overhead_share(self) -> float:
        return self.overhead_s / self.wall_s if self.wall_s > 0 else 0.0


# Where the non-epoch time of an attempt goes; the parts add up to overhead_s exactly.
BREAKDOWN = (
    ("image_check", "image check"),
    ("container", "container create/start/remove"),
    ("process", "process start/exit"),
    ("import", "TensorFlow/Keras import"),
    ("data", "dataset load"),
    ("build_or_load", "model build / checkpoint load"),
    ("fit_setup", "fit() outside epochs"),
    ("evaluate", "evaluate"),
    ("save", "checkpoint save"),
    ("script_other", "script: config, output folder"),
    ("bookkeeping", "keeptraining: ledger, metrics, folders"),
)
CONTAINER_STAGES = (
    "engine_check_s",
    "stage_checkpoint_s",
    "container_create_s",
    "container_start_s",
    "cleanup_s",
)


def breakdown(a: AttemptRun) -> dict[str, float]:
    """The attempt's overhead split by BREAKDOWN; the values sum to ``a.overhead_s``."""
    t = a.timings
    laps = {
        key: float(t.get(f"{key}_s", 0.0)) for key in ("import", "data", "build_or_load", "evaluate", "save")
    }
    fit_s = float(t.get("fit_s", a.train_s))
    total_s = float(t.get("total_s", sum(laps.values()) + fit_s))
    container = sum(a.stages.get(name, 0.0) for name in CONTAINER_STAGES)
    parts = {
        "image_check": a.image_check_s,
        "container": container,
        "process": a.backend_s - container - total_s,
        **laps,
        "fit_setup": fit_s - a.train_s,
        "script_other": total_s - sum(laps.values()) - fit_s,
        "bookkeeping": a.wall_s - a.image_check_s - a.backend_s,
    }
    return {key: parts[key] for key, _ in BREAKDOWN}


@dataclass
class ChainRun:
    group: str  # "main", "scaling"
    backend: str
    variant: str
    threshold: float
    epochs: int
    epoch_step: int
    repeat: int
    verdict: str = ""
    attempts: list[AttemptRun] = field(default_factory=list)

    @property
    def final_metric(self) -> float | None:
        return self.attempts[-1].metric if self.attempts else None

    @property
    def reached(self) -> bool:
        return self.verdict == strategy.CHAIN_REACHED

    def totals(self) -> dict[str, float]:
        att = self.attempts
        overhead = sum(a.overhead_s for a in att)
        wall = sum(a.wall_s for a in att)
        return {
            "attempts": len(att),
            "epochs_trained": sum(a.epochs_trained for a in att),
            "train_s": sum(a.train_s for a in att),
            "total_s": wall,
            "overhead_per_attempt_s": overhead / len(att) if att else 0.0,
            "overhead_share": statistics.median(a.overhead_share for a in att) if att else 0.0,
            "final_metric": self.final_metric if self.final_metric is not None else math.nan,
        }


class BenchError(Exception):
    pass


def make_config(
    variant: Variant,
    backend: str,
    threshold: float,
    epochs: int,
    step: int,
    max_attempts: int,
    oracle_epochs: int,
    base_image: str | None,
    state_dir: Path,
) -> config.Config:
    """The configuration of one variant; no .keeptraining.yml is read (the bench is self-contained)."""
    overrides: dict[str, Any] = {
        "threshold": threshold,
        "epochs": oracle_epochs if variant.oracle else epochs,
        "epoch_step": step,
        "max_attempts": 1 if variant.oracle else max_attempts,
        "resume": variant.resume,
        "backend": backend,
        "base_image": base_image,
        "code_path": CODE_PATH,
        "train_command": TRAIN_COMMAND,
        "timeout": ATTEMPT_TIMEOUT_S,
        "state_dir": str(state_dir),
        "hyperparameters": {"early_stop": variant.early_stop},
    }
    return config.resolve(overrides, None, source="scripts/bench.py")


def new_backend(cfg: config.Config) -> tuple[backends.Backend, float]:
    """A backend as a fresh ``keeptraining attempt`` process makes it, and the image check's seconds."""
    start = time.perf_counter()
    backend = backends.select(cfg, REPO_ROOT, allow_local_fallback=False, say=log, on_line=None)
    if isinstance(backend, backends.DockerBackend):
        backend.prepare()
    return backend, (time.perf_counter() - start if backend.name == "docker" else 0.0)


def run_variant(
    variant: Variant,
    backend: str,
    threshold: float,
    epochs: int,
    step: int,
    max_attempts: int,
    settings: Settings,
    *,
    group: str,
    repeat: int,
) -> ChainRun:
    """One chain of ``variant`` in a temporary state folder, attempt by attempt."""
    run = ChainRun(group, backend, variant.key, threshold, epochs, step, repeat)
    with tempfile.TemporaryDirectory(prefix=f"kt-bench-{variant.key}-") as tmp:
        state_dir = Path(tmp)
        cfg = make_config(
            variant,
            backend,
            threshold,
            epochs,
            step,
            max_attempts,
            settings.oracle_epochs,
            settings.base_image,
            state_dir,
        )
        while True:
            start = time.perf_counter()
            inner, image_check_s = new_backend(cfg)
            timed = TimedBackend(inner)
            report = chain.run_attempt(cfg, REPO_ROOT, timed, say=lambda _line: None, on_line=None)
            wall = time.perf_counter() - start
            record = report.record
            if report.error is not None:
                raise BenchError(
                    f"{backend} {variant.key} attempt {record.attempt} failed: "
                    f"{report.error.message}\n{report.log_tail}"
                )
            metrics = json.loads(
                (state_dir / f"attempt-{record.attempt:03d}" / "metrics.json").read_text(encoding="utf-8")
            )
            attempt = AttemptRun(
                attempt=record.attempt,
                epochs=record.epochs,
                initial_epoch=record.initial_epoch,
                outcome=record.outcome,
                metric=record.metric,
                epochs_reached=record.epochs_reached,
                epochs_trained=record.epochs_trained,
                wall_s=wall,
                image_check_s=image_check_s,
                backend_s=timed.wall_s,
                duration_s=record.duration_s,
                epoch_seconds=[float(s) for s in metrics["epoch_seconds"]],
                timings={k: float(v) for k, v in metrics["timings"].items()},
                stages=timed.stages,
                history=list(record.history),
            )
            run.attempts.append(attempt)
            log(
                f"  {group} {backend:<6} ({variant.key}) T={threshold:g} rep {repeat}: attempt "
                f"{record.attempt} {record.initial_epoch}->{record.epochs_reached} epochs, "
                f"{record.metric:.4f}, {wall:.2f} s ({attempt.train_s:.2f} s in epochs)"
            )
            if report.decision.kind != strategy.CONTINUE:
                run.verdict = report.decision.kind
                return run


# --------------------------------------------------------------------------- fit: backend vs direct

FIT_DIRECT = textwrap.dedent('''\
    """The sample model's own fit, timed per epoch, outside keeptraining (argv[1]: the code folder)."""
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    os.environ.update(KT_EPOCHS=sys.argv[2], KT_OUTPUT_DIR=os.environ.get("TMPDIR", "/tmp"))
    import nn
    cfg = nn.read_config()
    keras = nn.import_keras()
    x, y, x_val, y_val = nn.load_data(keras, cfg.dataset)
    model, _, _ = nn.start_model(keras, cfg, tuple(x.shape[1:]), int(y.max()) + 1)
    seconds = []
    start = time.perf_counter()
    model.fit(x, y, batch_size=cfg.batch_size, epochs=cfg.epochs, validation_data=(x_val, y_val),
              verbose=2, callbacks=nn.epoch_callbacks(keras, cfg, seconds))
    print("FIT " + json.dumps({"epoch_seconds": seconds, "fit_s": time.perf_counter() - start}))
    sys.stdout.flush()
    os._exit(0)
''')


def _fit_line(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("FIT "):
            data: dict[str, Any] = json.loads(line[4:])
            return data
    raise BenchError(f"the direct fit printed no result:\n{output[-2000:]}")


def fit_via_backend(backend: backends.Backend, epochs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="kt-bench-fit-") as tmp:
        request = TrainRequest(
            code_dir=REPO_ROOT / CODE_PATH,
            command=shlex.split(TRAIN_COMMAND),
            output_dir=Path(tmp),
            env={"KT_EPOCHS": str(epochs)},
            timeout=ATTEMPT_TIMEOUT_S,
        )
        result = backend.run(request)
        if result.exit_code != 0:
            raise BenchError(f"{backend.name} fit failed ({result.exit_code}):\n{result.log_tail}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text(encoding="utf-8"))
    return [float(s) for s in metrics["epoch_seconds"]]


def fit_direct_local(script: Path, epochs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    done = subprocess.run(
        [sys.executable, str(script), str(REPO_ROOT / CODE_PATH), str(epochs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=ATTEMPT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"the direct local fit failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return [float(s) for s in _fit_line(done.stdout)["epoch_seconds"]]


def fit_direct_docker(script: Path, epochs: int, image: str) -> list[float]:
    """The same fit in a plain container of the same image: ``docker run --rm IMAGE python fit.py``."""
    from docker.types import Mount  # noqa: PLC0415 - docker-py only for this backend

    dc = backend_docker.require_engine()
    mounts = [
        Mount("/workspace/code", str(REPO_ROOT / CODE_PATH), type="bind", read_only=True),
        Mount("/workspace/bench", str(script.parent), type="bind", read_only=True),
    ]
    container = dc.containers.run(
        image,
        ["python", f"/workspace/bench/{script.name}", "/workspace/code", str(epochs)],
        mounts=mounts,
        network_mode="none",
        detach=True,
        labels={"keeptraining": "1", "keeptraining-bench": "1"},
    )
    try:
        status = container.wait(timeout=int(ATTEMPT_TIMEOUT_S))
        output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True)
        dc.close()
    if status.get("StatusCode") != 0:
        raise BenchError(f"the direct docker fit failed:\n{output[-2000:]}")
    return [float(s) for s in _fit_line(output)["epoch_seconds"]]


def fit_comparison(settings: Settings, images: dict[str, str]) -> list[dict[str, Any]]:
    """Per backend and repetition: epoch seconds through keeptraining and directly."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kt-bench-direct-") as tmp:
        script = Path(tmp) / "fit_direct.py"
        script.write_text(FIT_DIRECT, encoding="utf-8")
        Path(tmp).chmod(0o755)
        script.chmod(0o644)
        for backend_name in settings.backends:
            cfg = make_config(
                VARIANT["c"],
                backend_name,
                settings.threshold,
                settings.epochs,
                settings.epoch_step,
                1,
                settings.oracle_epochs,
                settings.base_image,
                Path(tmp),
            )
            for repeat in range(1, settings.fit_repeats + 1):
                backend, _ = new_backend(cfg)
                via = fit_via_backend(backend, settings.fit_epochs)
                if backend_name == "docker":
                    direct = fit_direct_docker(script, settings.fit_epochs, images["docker"])
                else:
                    direct = fit_direct_local(script, settings.fit_epochs)
                rows.append(
                    {"backend": backend_name, "repeat": repeat, "via_keeptraining": via, "direct": direct}
                )
                log(
                    f"  fit {backend_name:<6} rep {repeat}: via keeptraining {sum(via):.2f} s, "
                    f"direct {sum(direct):.2f} s ({settings.fit_epochs} epochs)"
                )
    return rows


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        vals = [v for v in values if not math.isnan(v)]
        if not vals:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))

    def fmt(self, digits: int = 2, *, percent: bool = False) -> str:
        if self.n == 0:
            return "n/a"
        scale, unit = (100.0, " %") if percent else (1.0, "")
        text = f"{self.median * scale:.{digits}f}{unit}"
        if self.n > 1 and (self.high - self.low) * scale >= 0.5 * 10**-digits:
            text += f" [{self.low * scale:.{digits}f}–{self.high * scale:.{digits}f}]"
        return text


def runs_of(
    runs: list[ChainRun], group: str, backend: str, variant: str, threshold: float | None = None
) -> list[ChainRun]:
    return [
        r
        for r in runs
        if r.group == group
        and r.backend == backend
        and r.variant == variant
        and (threshold is None or r.threshold == threshold)
    ]


def stat(runs: list[ChainRun], key: str) -> Stat:
    return Stat.of([float(r.totals()[key]) for r in runs])


def ratio(num: Stat, den: Stat) -> float:
    return num.median / den.median if den.median else math.nan


def summarize(runs: list[ChainRun], fits: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """Every number the tables and charts show, computed once."""
    table: list[dict[str, Any]] = []
    for backend in settings.backends:
        for v in VARIANTS:
            sel = runs_of(runs, "main", backend, v.key)
            table.append(
                {
                    "backend": backend,
                    "variant": v.key,
                    "name": v.name,
                    "reached": all(r.reached for r in sel),
                    **{
                        key: asdict(stat(sel, key))
                        for key in (
                            "attempts",
                            "epochs_trained",
                            "train_s",
                            "total_s",
                            "overhead_per_attempt_s",
                            "overhead_share",
                            "final_metric",
                        )
                    },
                }
            )
    overhead: dict[str, dict[str, Any]] = {}
    for backend in settings.backends:
        attempts = [a for r in runs_of(runs, "main", backend, "c") for a in r.attempts]
        parts = [breakdown(a) for a in attempts]
        first_extra = [
            a.epoch_seconds[0] - statistics.median(a.epoch_seconds[1:])
            for a in attempts
            if len(a.epoch_seconds) > 1
        ]
        overhead[backend] = {
            "parts": {key: asdict(Stat.of([p[key] for p in parts])) for key, _ in BREAKDOWN},
            "overhead_s": asdict(Stat.of([a.overhead_s for a in attempts])),
            "wall_s": asdict(Stat.of([a.wall_s for a in attempts])),
            "train_s": asdict(Stat.of([a.train_s for a in attempts])),
            "share": asdict(Stat.of([a.overhead_share for a in attempts])),
            "first_epoch_extra_s": asdict(Stat.of(first_extra)),
            "attempts": len(attempts),
        }
    fit: dict[str, dict[str, Any]] = {}
    for backend in settings.backends:
        pairs = [f for f in fits if f["backend"] == backend]
        if not pairs:
            continue
        fit[backend] = {}
        for key in ("via_keeptraining", "direct"):
            fit[backend][key] = {
                "total_s": asdict(Stat.of([sum(f[key]) for f in pairs])),
                "first_epoch_s": asdict(Stat.of([f[key][0] for f in pairs])),
                "steady_epoch_s": asdict(
                    Stat.of([statistics.median(f[key][1:]) for f in pairs if len(f[key]) > 1])
                ),
            }
        fit[backend]["ratio"] = (
            fit[backend]["via_keeptraining"]["total_s"]["median"]
            / fit[backend]["direct"]["total_s"]["median"]
        )
    scaling: list[dict[str, Any]] = []
    for needed, threshold in settings.scaling:
        point: dict[str, Any] = {"needed": needed, "threshold": threshold}
        for key in ("a", "c", "d"):
            chains = runs_of(runs, "scaling", "local", key, threshold)
            point[key] = {
                name: asdict(stat(chains, name))
                for name in ("attempts", "epochs_trained", "train_s", "total_s", "final_metric")
            }
            point[key]["reached"] = all(r.reached for r in chains)
        for ratio_key, col in (
            ("train_ratio", "train_s"),
            ("total_ratio", "total_s"),
            ("epochs_ratio", "epochs_trained"),
        ):
            point[ratio_key] = point["a"][col]["median"] / point["c"][col]["median"]
        scaling.append(point)
    return {
        "table": table,
        "overhead": overhead,
        "fit": fit,
        "scaling": scaling,
        "targets": targets(table, overhead, scaling, settings),
    }


def _row(table: list[dict[str, Any]], backend: str, variant: str) -> dict[str, Any]:
    return next(r for r in table if r["backend"] == backend and r["variant"] == variant)


def targets(
    table: list[dict[str, Any]],
    overhead: dict[str, dict[str, Any]],
    scaling: list[dict[str, Any]],
    settings: Settings,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for backend in settings.backends:
        c, d, a = (_row(table, backend, k) for k in ("c", "d", "a"))
        value = c["epochs_trained"]["median"] / d["epochs_trained"]["median"]
        out.append(
            {
                "target": f"epochs (c) / oracle (d) <= {TARGET_EPOCHS_VS_ORACLE}",
                "backend": backend,
                "value": value,
                "text": f"{c['epochs_trained']['median']:g} / "
                f"{d['epochs_trained']['median']:g} = {value:.2f}",
                "met": value <= TARGET_EPOCHS_VS_ORACLE,
            }
        )
        value = a["train_s"]["median"] / c["train_s"]["median"]
        total = a["total_s"]["median"] / c["total_s"]["median"]
        epochs = a["epochs_trained"]["median"] / c["epochs_trained"]["median"]
        attempts = c["attempts"]["median"]
        out.append(
            {
                "target": f"training s seed (a) / keeptraining (c) >= {TARGET_SEED_SPEEDUP} "
                f"({attempts:g} attempts)",
                "backend": backend,
                "value": value,
                "text": f"{value:.2f} (epochs {epochs:.2f}, wall {total:.2f})",
                "met": value >= TARGET_SEED_SPEEDUP,
            }
        )
        share = overhead[backend]["share"]["median"]
        limit = TARGET_OVERHEAD[backend]
        out.append(
            {
                "target": f"overhead per attempt ({backend}) <= {limit:.0%}",
                "backend": backend,
                "value": share,
                "text": f"{share:.0%} ({overhead[backend]['overhead_s']['median']:.2f} s "
                f"of {overhead[backend]['wall_s']['median']:.2f} s)",
                "met": share <= limit,
            }
        )
    if scaling:
        ratios = [p["train_ratio"] for p in scaling]
        growing = all(x < y for x, y in itertools.pairwise(ratios))
        out.append(
            {
                "target": "seed / keeptraining grows with attempts",
                "backend": "local",
                "value": ratios[-1],
                "text": " → ".join(f"{r:.2f}" for r in ratios)
                + " ("
                + ", ".join(f"{p['needed']}" for p in scaling)
                + " attempts)",
                "met": growing,
            }
        )
    return out


# --------------------------------------------------------------------------- output


def _s(d: dict[str, Any], digits: int = 2, *, percent: bool = False) -> str:
    return Stat(**d).fmt(digits, percent=percent)


def runs_text(n: int) -> str:
    return "one run" if n == 1 else f"median of {n} runs [min–max]"


def markdown(summary: dict[str, Any], meta: dict[str, Any], settings: Settings) -> dict[str, str]:
    """The result tables as markdown sections (keys: machine, chains, targets, overhead, fit, scaling)."""
    reps = settings.repeats
    sections: dict[str, str] = {}
    m = meta["machine"]
    docker = f", Docker {m['docker']}" if m.get("docker") else ""
    sections["machine"] = (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB, {m['os']}; Python "
        f"{m['python']}, TensorFlow {m.get('tensorflow')}, Keras {m.get('keras')}{docker}. "
        f"Load average {meta['load_before'][0]:.2f} at the start ({meta['load_after'][0]:.2f} at the end, "
        "the benchmark's own training included); "
        f"{meta['finished']} ({meta['wall_s'] / 60:.1f} min).\n\n"
        f"Command: `{meta['command']}`\n"
    )
    lines = [
        f"Threshold {settings.threshold:g}, {settings.epochs} epochs then +{settings.epoch_step} per "
        f"attempt, sample model on digits, seed 1337; {runs_text(reps)}. Training s = "
        "seconds inside epochs; total s = wall time of all attempts; overhead = total − training, "
        "per attempt.",
        "",
        "| backend | variant | attempts | epochs trained | training s | total s | overhead s / attempt "
        "| overhead % of attempt | final accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["table"]:
        mark = "" if row["reached"] else " (not reached)"
        lines.append(
            f"| {row['backend']} | ({row['variant']}) {row['name']} | {_s(row['attempts'], 0)} | "
            f"{_s(row['epochs_trained'], 0)} | {_s(row['train_s'], 1)} | {_s(row['total_s'], 1)} | "
            f"{_s(row['overhead_per_attempt_s'])} | {_s(row['overhead_share'], 0, percent=True)} | "
            f"{_s(row['final_metric'], 4)}{mark} |"
        )
    sections["chains"] = "\n".join(lines) + "\n"

    lines = ["| target | backend | measured | verdict |", "| --- | --- | --- | --- |"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {t['backend']} | {t['text']} | {'met' if t['met'] else 'missed'} |")
    sections["targets"] = "\n".join(lines) + "\n"

    heads = [label for _, label in BREAKDOWN]
    lines = [
        "Seconds per attempt of (c), median [min–max] over all its attempts; the parts add up "
        "to the overhead.",
        "",
        "| part | " + " | ".join(summary["overhead"]) + " |",
        "| --- |" + " ---: |" * len(summary["overhead"]),
    ]
    for (key, _), label in zip(BREAKDOWN, heads, strict=True):
        cells = " | ".join(_s(o["parts"][key], 3) for o in summary["overhead"].values())
        lines.append(f"| {label} | {cells} |")
    for key, label in (
        ("overhead_s", "**overhead**"),
        ("train_s", "time inside epochs"),
        ("wall_s", "attempt wall time"),
    ):
        lines.append(f"| {label} | " + " | ".join(_s(o[key], 3) for o in summary["overhead"].values()) + " |")
    lines.append(
        "| overhead % of attempt | "
        + " | ".join(_s(o["share"], 0, percent=True) for o in summary["overhead"].values())
        + " |"
    )
    lines.append(
        "| (first epoch's extra, tf.function tracing; counted as training) | "
        + " | ".join(_s(o["first_epoch_extra_s"], 3) for o in summary["overhead"].values())
        + " |"
    )
    sections["overhead"] = "\n".join(lines) + "\n"

    if summary["fit"]:
        lines = [
            f"`{settings.fit_epochs}` epochs of the same `model.fit` (nn.py's functions), "
            f"{runs_text(settings.fit_repeats)}: through the backend vs a tiny script run directly "
            "(same Python for local; `docker run` of the same image for docker).",
            "",
            "| backend | how | seconds in epochs | first epoch | later epochs (median) | ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for backend, f in summary["fit"].items():
            for key, label in (("via_keeptraining", "via keeptraining"), ("direct", "direct")):
                r = f"{f['ratio']:.2f}" if key == "via_keeptraining" else "1.00"
                lines.append(
                    f"| {backend} | {label} | {_s(f[key]['total_s'])} | "
                    f"{_s(f[key]['first_epoch_s'], 3)} | {_s(f[key]['steady_epoch_s'], 3)} | {r} |"
                )
        sections["fit"] = "\n".join(lines) + "\n"

    if summary["scaling"]:
        lines = [
            f"Local backend, {settings.scaling_epochs} epochs then +{settings.scaling_epochs} per "
            f"attempt, {runs_text(settings.scaling_repeats)}.",
            "",
            "| threshold | attempts (a) / (c) | epochs (a) / (c) / oracle | training s (a) / (c) | "
            "total s (a) / (c) | (a) ÷ (c) training | (a) ÷ (c) total |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in summary["scaling"]:
            a, c, d = p["a"], p["c"], p["d"]
            lines.append(
                f"| {p['threshold']:g} | {_s(a['attempts'], 0)} / {_s(c['attempts'], 0)} | "
                f"{_s(a['epochs_trained'], 0)} / {_s(c['epochs_trained'], 0)} / "
                f"{_s(d['epochs_trained'], 0)} | {_s(a['train_s'], 1)} / {_s(c['train_s'], 1)} | "
                f"{_s(a['total_s'], 1)} / {_s(c['total_s'], 1)} | "
                f"{p['train_ratio']:.2f} | {p['total_ratio']:.2f} |"
            )
        sections["scaling"] = "\n".join(lines) + "\n"
    return sections


def results_markdown(sections: dict[str, str]) -> str:
    parts = [
        "# keeptraining benchmark",
        "",
        sections["machine"],
        "## Chains: seed vs keeptraining vs oracle",
        "",
        sections["chains"],
        "![chains](chains.png)",
        "",
        "## Targets",
        "",
        sections["targets"],
        "## Where an attempt's fixed overhead goes",
        "",
        sections["overhead"],
        "![overhead](overhead.png)",
        "",
    ]
    if "fit" in sections:
        parts += ["## Training through keeptraining vs the same fit run directly", "", sections["fit"]]
    if "scaling" in sections:
        parts += [
            "## Cost against the number of attempts",
            "",
            sections["scaling"],
            "![scaling](scaling.png)",
            "",
        ]
    return "\n".join(parts)


def readme_block(sections: dict[str, str]) -> str:
    return "\n".join([README_BEGIN, sections["machine"], sections["chains"], sections["targets"], README_END])


def update_readme(
    block: str, readme: Path = README, *, begin: str = README_BEGIN, end: str = README_END
) -> None:
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise BenchError(f"{readme} has no {begin} ... {end} block to update.")
    readme.write_text(pattern.sub(lambda _m: block, text, count=1), encoding="utf-8")


COLORS = {"a": "#d62728", "b": "#ff7f0e", "c": "#2ca02c", "d": "#1f77b4"}


def charts(summary: dict[str, Any], settings: Settings, out: Path) -> list[Path]:
    """chains.png, overhead.png and (with scaling runs) scaling.png in ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - plotting only here
    from matplotlib.figure import Figure  # noqa: PLC0415

    written: list[Path] = []
    for name, draw in (
        ("chains.png", chains_chart),
        ("overhead.png", overhead_chart),
        ("scaling.png", scaling_chart),
    ):
        fig = Figure()
        if not draw(fig, summary, settings):
            continue
        fig.tight_layout()
        FigureCanvasAgg(fig)
        fig.savefig(out / name, dpi=100)
        written.append(out / name)
    return written


def chains_chart(fig: Any, summary: dict[str, Any], settings: Settings) -> bool:
    backends_ = list(settings.backends)
    fig.set_size_inches(5.2 * len(backends_), 4.2)
    for i, backend in enumerate(backends_):
        ax = fig.add_subplot(1, len(backends_), i + 1)
        rows = [r for r in summary["table"] if r["backend"] == backend]
        xs = range(len(rows))
        train = [r["train_s"]["median"] for r in rows]
        over = [r["total_s"]["median"] - r["train_s"]["median"] for r in rows]
        err = [
            [r["total_s"]["median"] - r["total_s"]["low"] for r in rows],
            [r["total_s"]["high"] - r["total_s"]["median"] for r in rows],
        ]
        ax.bar(xs, train, color=[COLORS[r["variant"]] for r in rows], label="inside epochs")
        ax.bar(xs, over, bottom=train, color="#bbbbbb", label="fixed overhead", yerr=err, capsize=3)
        for x, r, t, o in zip(xs, rows, train, over, strict=True):
            ax.annotate(
                f"{r['epochs_trained']['median']:g} ep\n{r['attempts']['median']:g} att",
                (x, t + o),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(list(xs), [f"({r['variant']}) {r['name'].split(':')[0]}" for r in rows], fontsize=8)
        ax.set_ylabel("seconds (median)")
        ax.set_title(f"{backend}: threshold {settings.threshold:g}")
        ax.margins(y=0.2)
        ax.legend(fontsize=8, loc="upper right")
    return True


def overhead_chart(fig: Any, summary: dict[str, Any], settings: Settings) -> bool:
    fig.set_size_inches(10.5, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    cmap = [f"C{i}" for i in range(10)] + ["#444444"]
    for j, o in enumerate(summary["overhead"].values()):
        left = 0.0
        for (key, label), color in zip(BREAKDOWN, cmap, strict=True):
            width = max(o["parts"][key]["median"], 0.0)
            ax.barh(j, width, left=left, color=color, label=label if j == 0 else None)
            left += width
        ax.annotate(
            f"epochs: {o['train_s']['median']:.2f} s",
            (left, j),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(summary["overhead"])), list(summary["overhead"]))
    ax.set_xlabel("seconds per attempt of (c), median")
    ax.set_title("Fixed overhead of one attempt")
    ax.margins(x=0.25)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return True


def scaling_chart(fig: Any, summary: dict[str, Any], settings: Settings) -> bool:
    if not summary["scaling"]:
        return False
    fig.set_size_inches(11, 4.2)
    pts = summary["scaling"]
    ks = [p["c"]["attempts"]["median"] for p in pts]
    ax1 = fig.add_subplot(1, 2, 1)
    for v, label in (("a", "(a) seed"), ("c", "(c) keeptraining"), ("d", "(d) oracle")):
        ax1.plot(ks, [p[v]["epochs_trained"]["median"] for p in pts], "o-", color=COLORS[v], label=label)
    step = settings.scaling_epochs
    fine = [k / 10 for k in range(10, int(max(ks) * 10) + 1)]
    ax1.plot(fine, [step * k * (k + 1) / 2 for k in fine], ":", color=COLORS["a"], label=f"{step}·k(k+1)/2")
    ax1.set_xlabel("attempts keeptraining needs (k)")
    ax1.set_ylabel("epochs trained")
    ax1.set_title("Epochs trained")
    ax1.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    for v, label in (("a", "(a) seed"), ("c", "(c) keeptraining")):
        ax2.plot(ks, [p[v]["total_s"]["median"] for p in pts], "o-", color=COLORS[v], label=f"{label}, total")
        ax2.plot(
            ks, [p[v]["train_s"]["median"] for p in pts], "s--", color=COLORS[v], label=f"{label}, in epochs"
        )
    ax2.set_xlabel("attempts keeptraining needs (k)")
    ax2.set_ylabel("seconds")
    ax2.set_title("Cost")
    ax2.legend(fontsize=8)
    return True


# --------------------------------------------------------------------------- search (issue 13)
#
# `bench.py --search`: epochs to the threshold on the sample model when its default learning rate
# is poor (SGD at 0.001), for the epochs chain, keeptraining's search (TPE + successive halving,
# and random + successive halving) and KerasTuner's Hyperband, on the same space and the same epoch
# budget, each search with 3 seeds. Every keeptraining attempt is its own `keeptraining attempt`
# process, so the study survives a process restart between attempts; Hyperband runs in one process.


@dataclass(frozen=True)
class SearchSettings:
    threshold: float
    epochs: int  # keeptraining: a new trial's first run; also the epochs chain's first attempt
    epoch_step: int
    max_attempts: int
    epoch_budget: int  # max_epochs_total for keeptraining; the same cap for Hyperband
    hyperband_max_epochs: int
    seeds: tuple[int, ...]
    poor_learning_rate: float = 0.001
    quick: bool = False


SEARCH_FULL = SearchSettings(
    threshold=0.98,
    epochs=3,
    epoch_step=3,
    max_attempts=15,
    epoch_budget=60,
    hyperband_max_epochs=9,
    seeds=tuple(range(10)),
)
SEARCH_QUICK = SearchSettings(
    threshold=0.5,
    epochs=1,
    epoch_step=1,
    max_attempts=3,
    epoch_budget=4,
    hyperband_max_epochs=3,
    seeds=(0,),
    quick=True,
)
# The space of the README's Search section, in the sample model's terms (KT_HP_<NAME>).
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 0.0001, "high": 0.3, "log": True},
    "width": {"type": "int", "low": 8, "high": 64, "step": 8},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
}
SEARCH_METHODS = (
    ("epochs", "epochs chain (learning rate 0.001)"),
    ("tpe", "search: TPE + successive halving"),
    ("random", "search: random + successive halving"),
    ("hyperband", "KerasTuner Hyperband"),
    ("optuna-hyperband", "Optuna TPE + HyperbandPruner, in process"),
)
README_SEARCH_BEGIN = "<!-- bench-search:begin (scripts/bench.py --search --update-readme) -->"
README_SEARCH_END = "<!-- bench-search:end -->"


@dataclass
class SearchRun:
    method: str
    seed: int
    reached: bool
    epochs_to_threshold: int | None  # epochs trained until the first epoch at the threshold
    epochs_trained: int  # all epochs it trained
    attempts: int  # keeptraining attempts (processes) or Hyperband trials
    best: float
    wall_s: float


def search_config(settings: SearchSettings, method: str, seed: int, state: Path) -> dict[str, Any]:
    base: dict[str, Any] = {
        "threshold": settings.threshold,
        "epochs": settings.epochs,
        "epoch_step": settings.epoch_step,
        "max_attempts": settings.max_attempts,
        "max_epochs_total": settings.epoch_budget,
        "code_path": CODE_PATH,
        "train_command": TRAIN_COMMAND,
        "backend": "local",
        "timeout": ATTEMPT_TIMEOUT_S,
        "state_dir": str(state),
    }
    if method == "epochs":
        return {**base, "hyperparameters": {"learning_rate": settings.poor_learning_rate}}
    return {
        **base,
        "strategy": "search",
        "hyperparameters": {},
        "search": {"sampler": method, "seed": seed, "space": SEARCH_SPACE},
    }


def run_search_chain(settings: SearchSettings, method: str, seed: int) -> SearchRun:
    """One chain, one `keeptraining attempt` process per attempt, until its decision ends it."""
    import yaml  # noqa: PLC0415

    from keeptraining.state import ledger  # noqa: PLC0415

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"kt-bench-search-{method}-") as tmp:
        state = Path(tmp) / "state"
        values = search_config(settings, method, seed, state)
        cfg = config.resolve(values, None, source="scripts/bench.py")
        cfg_file = Path(tmp) / "keeptraining.yml"
        cfg_file.write_text(yaml.safe_dump(values), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "GITHUB_"))}
        while True:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "keeptraining",
                    "attempt",
                    "--repo",
                    str(REPO_ROOT),
                    "--config",
                    str(cfg_file),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=ATTEMPT_TIMEOUT_S,
                check=False,
            )
            book = ledger.load(state)
            last = book.last
            if last is None or (done.returncode != 0 and last.outcome != "failed"):
                raise BenchError(
                    f"{method} seed {seed}: the attempt failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                )
            log(
                f"  search {method:<9} seed {seed}: attempt {last.attempt} trial {last.trial} "
                f"rung {last.rung} {last.initial_epoch}->{last.epochs_reached} epochs, "
                f"{last.metric or 0:.4f}"
            )
            if strategy.decide(cfg, book).kind != strategy.CONTINUE:
                break
    reached = last.outcome == "reached"
    trained = book.total_epochs_trained()
    best = book.best()
    return SearchRun(
        method,
        seed,
        reached,
        trained if reached else None,
        trained,
        len(book.attempts),
        best.metric if best and best.metric is not None else math.nan,
        time.perf_counter() - start,
    )


def run_hyperband(settings: SearchSettings, seed: int) -> SearchRun:
    """KerasTuner's Hyperband on the same model, space, threshold and epoch budget, in this process."""
    import keras_tuner  # noqa: PLC0415 - a benchmark tool (.ci/requirements-dev.txt), not shipped

    sys.path.insert(0, str(REPO_ROOT / CODE_PATH))
    import nn  # noqa: PLC0415 - the sample model, for its data and build_model

    keras = nn.import_keras()
    x, y, x_val, y_val = nn.load_data(keras, "digits")
    base = nn.read_config()

    class StopSearch(keras_tuner.errors.FatalError):
        pass

    class Hyperband(keras_tuner.Hyperband):
        def _configure_tensorboard_dir(self, *args: Any, **kwargs: Any) -> None:
            """No TensorBoard callback here. KerasTuner 1.4.8 imports tensorboard in every trial on the
            TensorFlow backend, and tensorflow-cpu 2.21 no longer installs it."""

    callback: Any = keras.callbacks.Callback
    # KerasTuner deep-copies the callbacks of every trial: the tally lives outside the callback.
    tally: dict[str, Any] = {"epochs": 0, "trials": 0, "reached_at": None, "best": 0.0}

    def spent() -> bool:
        return tally["reached_at"] is not None or tally["epochs"] >= settings.epoch_budget

    class Budget(callback):
        def on_train_begin(self, logs: Any = None) -> None:
            if spent():
                raise StopSearch("threshold reached or epoch budget spent")
            tally["trials"] += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            tally["epochs"] += 1
            value = float((logs or {}).get("val_accuracy", 0.0))
            tally["best"] = max(tally["best"], value)
            if value >= settings.threshold and tally["reached_at"] is None:
                tally["reached_at"] = tally["epochs"]
            if spent():
                self.model.stop_training = True

    def build(hp: Any) -> Any:
        values = {}
        for name, spec in SEARCH_SPACE.items():
            if spec["type"] == "float":
                values[name] = hp.Float(
                    name, spec["low"], spec["high"], sampling="log" if spec.get("log") else "linear"
                )
            elif spec["type"] == "int":
                values[name] = hp.Int(name, spec["low"], spec["high"], step=spec.get("step", 1))
            else:
                values[name] = hp.Choice(name, spec["choices"])
        return nn.build_model(keras, replace(base, **values), tuple(x.shape[1:]), int(y.max()) + 1)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kt-bench-hyperband-") as tmp:
        tuner = Hyperband(
            build,
            objective="val_accuracy",
            max_epochs=settings.hyperband_max_epochs,
            factor=3,
            seed=seed,
            directory=tmp,
            project_name="hb",
            overwrite=True,
        )
        with contextlib.suppress(StopSearch):
            tuner.search(
                x,
                y,
                validation_data=(x_val, y_val),
                batch_size=base.batch_size,
                verbose=0,
                callbacks=[Budget()],
            )
    log(
        f"  search hyperband seed {seed}: {tally['trials']} trials, {tally['epochs']} epochs, "
        f"best {tally['best']:.4f}"
    )
    return SearchRun(
        "hyperband",
        seed,
        tally["reached_at"] is not None,
        tally["reached_at"],
        tally["epochs"],
        tally["trials"],
        tally["best"],
        time.perf_counter() - start,
    )


def run_optuna_pruner(settings: SearchSettings, seed: int) -> SearchRun:
    """Optuna's own in-process pruning on the same model, space, threshold and epoch budget: one study in
    this process (TPE, HyperbandPruner with max_resource = Hyperband's max_epochs, factor 3), each trial
    reporting val_accuracy after every epoch and stopped when the pruner says so."""
    import optuna  # noqa: PLC0415

    sys.path.insert(0, str(REPO_ROOT / CODE_PATH))
    import nn  # noqa: PLC0415 - the sample model, for its data and build_model

    keras = nn.import_keras()
    x, y, x_val, y_val = nn.load_data(keras, "digits")
    base = nn.read_config()
    tally: dict[str, Any] = {"epochs": 0, "trials": 0, "reached_at": None, "best": 0.0}

    def spent() -> bool:
        return tally["reached_at"] is not None or tally["epochs"] >= settings.epoch_budget

    def objective(trial: Any) -> float:
        values: dict[str, Any] = {}
        for name, spec in SEARCH_SPACE.items():
            if spec["type"] == "float":
                values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
            elif spec["type"] == "int":
                values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1))
            else:
                values[name] = trial.suggest_categorical(name, spec["choices"])
        tally["trials"] += 1
        model = nn.build_model(keras, replace(base, **values), tuple(x.shape[1:]), int(y.max()) + 1)
        value = 0.0
        for epoch in range(settings.hyperband_max_epochs):
            history = model.fit(
                x,
                y,
                validation_data=(x_val, y_val),
                batch_size=base.batch_size,
                verbose=0,
                initial_epoch=epoch,
                epochs=epoch + 1,
            )
            value = float(history.history["val_accuracy"][-1])
            tally["epochs"] += 1
            tally["best"] = max(tally["best"], value)
            if value >= settings.threshold and tally["reached_at"] is None:
                tally["reached_at"] = tally["epochs"]
            if spent():
                trial.study.stop()
                return value
            trial.report(value, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=settings.hyperband_max_epochs, reduction_factor=3
        ),
    )
    while not spent():
        study.optimize(objective, n_trials=1)
    log(
        f"  search optuna-hyperband seed {seed}: {tally['trials']} trials, {tally['epochs']} epochs, "
        f"best {tally['best']:.4f}"
    )
    return SearchRun(
        "optuna-hyperband",
        seed,
        tally["reached_at"] is not None,
        tally["reached_at"],
        tally["epochs"],
        tally["trials"],
        tally["best"],
        time.perf_counter() - start,
    )


def run_search_bench(settings: SearchSettings) -> list[SearchRun]:
    runs = [run_search_chain(settings, "epochs", settings.seeds[0])]  # deterministic: one run
    for seed in settings.seeds:
        runs += [run_search_chain(settings, "tpe", seed), run_search_chain(settings, "random", seed)]
    for seed in settings.seeds:  # in a child process: TensorFlow stays out of this one
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--hyperband-seed",
                str(seed),
                *(["--quick"] if settings.quick else []),
            ],
            capture_output=True,
            text=True,
            timeout=3 * ATTEMPT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"hyperband seed {seed} failed:\n{done.stderr[-3000:]}")
        sys.stderr.write(done.stderr)
        runs.append(SearchRun(**json.loads(done.stdout.strip().splitlines()[-1])))
    for seed in settings.seeds:  # Optuna's in-process pruning, also in a child process
        done = subprocess.run(
            [sys.executable, __file__, "--optuna-seed", str(seed), *(["--quick"] if settings.quick else [])],
            capture_output=True,
            text=True,
            timeout=3 * ATTEMPT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"optuna-hyperband seed {seed} failed:\n{done.stderr[-3000:]}")
        sys.stderr.write(done.stderr)
        runs.append(SearchRun(**json.loads(done.stdout.strip().splitlines()[-1])))
    return runs


def search_markdown(runs: list[SearchRun], settings: SearchSettings, meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, TensorFlow "
        f"{m.get('tensorflow', '?')}, Keras {m.get('keras', '?')}, Optuna {meta['optuna']}, KerasTuner "
        f"{meta['keras_tuner']}; {meta['finished']} ({meta['wall_s'] / 60:.1f} min).",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Sample model on digits, threshold {settings.threshold:g}; the epochs chain uses plain SGD "
        f"at {settings.poor_learning_rate:g}. Search space: learning_rate 1e-4..0.3 (log), width "
        f"8..64, depth 1..3, dropout 0..0.5, optimizer sgd/adam. Budget for all: "
        f"{settings.epoch_budget} epochs and, for keeptraining, {settings.max_attempts} attempts "
        f"({settings.epochs} epochs per new trial, "
        f"+{settings.epoch_step} per promotion, each attempt a separate process); Hyperband: "
        f"max_epochs "
        f"{settings.hyperband_max_epochs}, factor 3, one process. Median over seeds "
        f"{', '.join(map(str, settings.seeds))} [min–max].",
        "",
        "| method | reached | median epochs to threshold, all seeds | epochs to threshold, seeds that "
        "reached it | epochs trained | attempts / trials | best accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, name in SEARCH_METHODS:
        mine = [r for r in runs if r.method == method]
        if not mine:
            continue
        to = [float(r.epochs_to_threshold) for r in mine if r.epochs_to_threshold is not None]
        to_text = (
            Stat.of(to).fmt(0)
            if len(to) == len(mine)
            else (f"{Stat.of(to).fmt(0)} ({len(to)} of {len(mine)})" if to else "not reached")
        )
        lines.append(
            f"| {name} | {sum(r.reached for r in mine)}/{len(mine)} | "
            f"{median_epochs_text(mine, settings)} | {to_text} | "
            f"{Stat.of([float(r.epochs_trained) for r in mine]).fmt(0)} | "
            f"{Stat.of([float(r.attempts) for r in mine]).fmt(0)} | "
            f"{Stat.of([r.best for r in mine]).fmt(4)} |"
        )
    lines += ["", search_verdict(runs, settings)]
    return "\n".join(lines) + "\n"


def median_epochs_to_threshold(runs: Sequence[SearchRun]) -> float:
    """The median over every seed, a seed that never reached the threshold counted as infinitely many
    epochs: the one figure that ranks methods that reach it on different seeds."""
    return statistics.median(
        float(r.epochs_to_threshold) if r.epochs_to_threshold is not None else math.inf for r in runs
    )


def median_epochs_text(runs: Sequence[SearchRun], settings: SearchSettings) -> str:
    value = median_epochs_to_threshold(runs)
    return f"> {settings.epoch_budget} (budget)" if math.isinf(value) else f"{value:g}"


def search_verdict(runs: Sequence[SearchRun], settings: SearchSettings) -> str:
    """Issue 28's goal, read off the table: keeptraining's search (TPE) needs no more epochs, median over
    all seeds, than Optuna's in-process pruner."""
    ours = [r for r in runs if r.method == "tpe"]
    theirs = [r for r in runs if r.method == "optuna-hyperband"]
    if not ours or not theirs:
        return "Goal (keeptraining's TPE search ≤ Optuna's in-process pruner): not measured in this run."
    a, b = median_epochs_text(ours, settings), median_epochs_text(theirs, settings)
    met = median_epochs_to_threshold(ours) <= median_epochs_to_threshold(theirs)
    return (
        f"Goal (keeptraining's TPE search needs no more epochs, median over all {len(ours)} seeds, than "
        f"Optuna's in-process pruner): {a} against {b}, {'met' if met else 'not met'}."
    )


def search_main(args: argparse.Namespace) -> int:
    settings = SEARCH_QUICK if args.quick else SEARCH_FULL
    if args.hyperband_seed is not None:
        print(json.dumps(asdict(run_hyperband(settings, args.hyperband_seed))))
        return 0
    if args.optuna_seed is not None:
        print(json.dumps(asdict(run_optuna_pruner(settings, args.optuna_seed))))
        return 0
    if args.seeds is not None:
        settings = replace(settings, seeds=tuple(range(args.seeds)))
    out = args.out or (Path(tempfile.mkdtemp(prefix="kt-bench-search-")) if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    log(f"keeptraining search benchmark ({'quick' if settings.quick else 'full'}); results to {out}")
    try:
        runs = run_search_bench(settings)
    except (KeeptrainingError, BenchError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    meta = {
        "command": shlex.join(["python", "scripts/bench.py", *args.argv]),
        "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - clock,
        "machine": machine(False),
        "optuna": metadata.version("optuna"),
        "keras_tuner": metadata.version("keras-tuner"),
        "settings": asdict(settings),
    }
    text = search_markdown(runs, settings, meta)
    (out / "search.md").write_text("# keeptraining search benchmark\n\n" + text, encoding="utf-8")
    (out / "search.json").write_text(
        json.dumps({"meta": meta, "runs": [asdict(r) for r in runs]}, indent=1) + "\n", encoding="utf-8"
    )
    if args.update_readme:
        update_readme(
            f"{README_SEARCH_BEGIN}\n{text}{README_SEARCH_END}",
            begin=README_SEARCH_BEGIN,
            end=README_SEARCH_END,
        )
    print(text)
    return 0


def parallel_main(args: argparse.Namespace) -> int:
    """`bench.py --parallel`: the section lives in bench_parallel.py (issue 14)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_parallel  # noqa: PLC0415

    out = args.out or (Path(tempfile.mkdtemp(prefix="kt-bench-parallel-")) if args.quick else DEFAULT_OUT)
    command = shlex.join(["python", "scripts/bench.py", *args.argv])
    try:
        if args.search_rounds is not None:  # the search's side alone, over many seeds
            import bench_search_rounds  # noqa: PLC0415

            settings = bench_parallel.QUICK if args.quick else bench_parallel.FULL
            bench_search_rounds.main(
                settings,
                SEARCH_SPACE,
                settings.parallel,
                list(range(0, 100 * args.search_rounds, 100)),
                out,
                command,
            )
            return 0
        return bench_parallel.main(
            args.quick,
            out,
            command,
            machine(False),
            SEARCH_SPACE,
            update_readme if args.update_readme else None,
            in_rounds=args.in_rounds,
        )
    except (KeeptrainingError, BenchError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- machine and driver


def machine(with_docker: bool) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) / 1024**2
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }
    for dist, key in (("tensorflow-cpu", "tensorflow"), ("tensorflow", "tensorflow"), ("keras", "keras")):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info.setdefault(key, metadata.version(dist))
    if with_docker:
        with contextlib.suppress(Exception):  # the version is a nicety; the runs already used the engine
            dc = backend_docker.require_engine()
            info["docker"] = dc.version().get("Version")
            dc.close()
    return info


def warm_up(settings: Settings) -> dict[str, Any]:
    """Build (or find) the image and run one short untimed training per backend: page caches warm."""
    images: dict[str, Any] = {}
    for backend_name in settings.backends:
        cfg = make_config(
            VARIANT["c"],
            backend_name,
            settings.threshold,
            settings.epochs,
            settings.epoch_step,
            1,
            settings.oracle_epochs,
            settings.base_image,
            Path(tempfile.gettempdir()),
        )
        start = time.perf_counter()
        backend = backends.select(cfg, REPO_ROOT, allow_local_fallback=False, say=log)
        if isinstance(backend, backends.DockerBackend):
            log("  docker: building or finding the training image (not timed as an attempt)")
            tag, built = docker_image.ensure_image(REPO_ROOT, cfg.dockerfile, cfg.base_image, on_line=None)
            images["docker"] = tag
            images["docker_build"] = {"built": built, "seconds": time.perf_counter() - start}
        fit_via_backend(backend, 1)
        log(f"  warm-up on {backend_name} done")
    return images


def run_all(settings: Settings) -> tuple[list[ChainRun], list[dict[str, Any]], dict[str, Any]]:
    images = warm_up(settings)
    runs: list[ChainRun] = []
    # Repetitions outermost, variants interleaved: a drift in machine load hits all alike.
    for repeat in range(1, settings.repeats + 1):
        for backend in settings.backends:
            for v in VARIANTS:
                runs.append(
                    run_variant(
                        v,
                        backend,
                        settings.threshold,
                        settings.epochs,
                        settings.epoch_step,
                        settings.max_attempts,
                        settings,
                        group="main",
                        repeat=repeat,
                    )
                )
    for repeat in range(1, settings.scaling_repeats + 1):
        for _needed, threshold in settings.scaling:
            for key in ("a", "c", "d"):
                runs.append(
                    run_variant(
                        VARIANT[key],
                        "local",
                        threshold,
                        settings.scaling_epochs,
                        settings.scaling_epochs,
                        settings.scaling_max_attempts,
                        replace(
                            settings, oracle_epochs=settings.scaling_epochs * settings.scaling_max_attempts
                        ),
                        group="scaling",
                        repeat=repeat,
                    )
                )
    fits = fit_comparison(settings, images)
    return runs, fits, images


def curve(settings: Settings, epochs: int, step: int) -> str:
    """Validation accuracy per epoch: uninterrupted, and resumed every ``step`` epochs; and for a
    range of thresholds, how many attempts the seed (a) and keeptraining (c) need."""
    never = 1.0  # val accuracy 1.0 is never reached on digits: nothing stops early
    oracle = run_variant(
        replace(VARIANT["d"], early_stop=False),
        "local",
        never,
        epochs,
        step,
        1,
        replace(settings, oracle_epochs=epochs),
        group="curve",
        repeat=1,
    )
    resumed = run_variant(
        VARIANT["b"], "local", never, step, step, epochs // step, settings, group="curve", repeat=1
    )
    marked = {settings.threshold, *(t for _, t in settings.scaling)}
    return render_curve(history(oracle), history(resumed), step, marked)


def history(run: ChainRun) -> list[float]:
    values: list[float] = []
    for a in run.attempts:
        values.extend(a.history)
    return values


def render_curve(
    uninterrupted: list[float], resumed: list[float], step: int, extra: set[float] | None = None
) -> str:
    lines = ["epoch  uninterrupted  resumed"]
    lines += [
        f"{i + 1:5d}  {u:13.4f}  {r:7.4f}"
        for i, (u, r) in enumerate(zip(uninterrupted, resumed, strict=False))
    ]
    lines += ["", f"threshold  (a) attempts  (c) attempts  (c) epochs  oracle epochs   [step {step}]"]
    thresholds = sorted({round(0.70 + 0.01 * i, 2) for i in range(29)} | (extra or set()))
    for t in thresholds:
        seed = next(
            (k for k in range(1, len(uninterrupted) // step + 1) if uninterrupted[k * step - 1] >= t), None
        )
        c_epoch = next((i + 1 for i, v in enumerate(resumed) if v >= t), None)
        o_epoch = next((i + 1 for i, v in enumerate(uninterrupted) if v >= t), None)
        c_att = math.ceil(c_epoch / step) if c_epoch else None
        lines.append(
            f"{t:9.3f}  {seed or '-':>12}  {c_att or '-':>12}  {c_epoch or '-':>10}  {o_epoch or '-':>13}"
        )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repetition, local backend only, tiny settings (what CI runs)",
    )
    parser.add_argument("--backends", help="comma-separated: local,docker (default: both; --quick: local)")
    parser.add_argument("--repeats", type=int, help="repetitions of the main comparison (default 3)")
    parser.add_argument(
        "--base-image",
        default=os.environ.get("KT_BASE_IMAGE") or None,
        help="BASE_IMAGE for the training image (default $KT_BASE_IMAGE, else the Dockerfile's own default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results folder (default scripts/bench_results; --quick: a new temporary folder)",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling runs")
    parser.add_argument(
        "--update-readme", action="store_true", help="write the tables into README.md's Performance section"
    )
    parser.add_argument(
        "--curve",
        action="store_true",
        help="print the validation curve (uninterrupted and resumed) and the attempts "
        "each threshold needs, then exit",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="the search comparison instead: epochs chain vs TPE and random search with "
        "successive halving vs KerasTuner's Hyperband (writes search.md, search.json)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="the cold-runner section instead: one attempt per job of README's workflow "
        "under act, cold and warm, step by step (writes cold.md, cold.json, cold.png)",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="parallel trials instead: wall time to the threshold with parallel 1, 2, 4 "
        "here, and GitHub's modelled (parallel.md, parallel.json; bench_parallel.py)",
    )
    parser.add_argument(
        "--search-rounds",
        type=int,
        metavar="SEEDS",
        help="with --parallel: only the search's side, over SEEDS seeds (0, 100, ...): the "
        "attempts and rounds each parallel setting needs, the sample model trained in "
        "one process, not timed (parallel-search.md, parallel-search.json)",
    )
    parser.add_argument(
        "--in-rounds",
        action="store_true",
        help="with --parallel: time `keeptraining run --parallel N --in-rounds` (GitHub's "
        "rounds) instead of slots that take the next trial once free",
    )
    parser.add_argument(
        "--hopeless",
        action="store_true",
        help="stopping hopeless chains instead: synthetic unreachable and slow-but-reachable "
        "curves through the real decision code, and the sample model at threshold 0.999 "
        "(hopeless.md, hopeless.json; bench_hopeless.py)",
    )
    parser.add_argument("--hyperband-seed", type=int, help=argparse.SUPPRESS)  # one Hyperband run, as JSON
    parser.add_argument("--optuna-seed", type=int, help=argparse.SUPPRESS)  # one Optuna-pruner run, as JSON
    parser.add_argument("--seeds", type=int, metavar="N", help="with --search: seeds 0..N-1 (default 10)")
    parser.add_argument("--curve-epochs", type=int, default=60)
    parser.add_argument("--curve-step", type=int, default=10)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    settings = QUICK if args.quick else FULL
    if args.backends:
        names = tuple(b.strip() for b in args.backends.split(",") if b.strip())
        if not names or set(names) - {"local", "docker"}:
            parser.error("--backends takes local, docker or local,docker")
        settings = replace(settings, backends=names)
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be at least 1")
        settings = replace(settings, repeats=args.repeats)
    if args.no_scaling:
        settings = replace(settings, scaling=())
    settings = replace(settings, base_image=args.base_image)
    if args.search_rounds is not None and (not args.parallel or args.search_rounds < 1 or args.update_readme):
        parser.error("--search-rounds takes --parallel, a number of seeds >= 1, and no --update-readme")
    if args.in_rounds and (not args.parallel or args.search_rounds is not None):
        parser.error("--in-rounds takes --parallel and no --search-rounds")
    if args.quick and args.update_readme:  # any section
        parser.error("--update-readme takes the full benchmark's tables, not --quick's")
    return args, settings


README_COLD_BEGIN = "<!-- bench-cold:begin (scripts/bench.py --cold --update-readme) -->"
README_COLD_END = "<!-- bench-cold:end -->"


def cold_main(args: argparse.Namespace, settings: Settings) -> int:
    """The cold-runner section (scripts/bench_cold.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cold  # noqa: PLC0415 - needs the tests' GitHub in a box, only for this section

    out = args.out or (Path(tempfile.mkdtemp(prefix="kt-bench-cold-")) if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    try:
        code, text = bench_cold.main(
            settings.quick,
            settings.base_image,
            out,
            shlex.join(["python", "scripts/bench.py", *args.argv]),
            machine(True),
        )
    except (KeeptrainingError, BenchError, bench_cold.BenchError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    if args.update_readme:
        update_readme(
            f"{README_COLD_BEGIN}\n{text}{README_COLD_END}", begin=README_COLD_BEGIN, end=README_COLD_END
        )
    print(text)
    log(f"Results written to {out} (cold.md, cold.json, cold.png).")
    return code


def hopeless_main(args: argparse.Namespace) -> int:
    """Stopping hopeless chains (scripts/bench_hopeless.py): the table, and whether the targets were met."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_hopeless  # noqa: PLC0415

    out = args.out or (Path(tempfile.mkdtemp(prefix="kt-bench-hopeless-")) if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    results, model = bench_hopeless.run(args.quick)
    robustness = [] if args.quick else bench_hopeless.robustness()
    meta = {
        "command": shlex.join(["python", "scripts/bench.py", *args.argv]),
        "seed": 0,
        "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - clock,
        "machine": machine(False),
    }
    text = bench_hopeless.markdown(results, model, meta) + bench_hopeless.robustness_markdown(robustness)
    missed = bench_hopeless.targets(results, model)
    (out / "hopeless.md").write_text(text, encoding="utf-8")
    (out / "hopeless.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "chains": [{**asdict(c), "stopped": c.stopped, "share": c.share} for c in results],
                "sample_model": asdict(model) if model else None,
                "robustness": robustness,
                "missed": missed,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    if args.update_readme:
        update_readme(
            f"{bench_hopeless.README_BEGIN}\n{text}{bench_hopeless.README_END}",
            begin=bench_hopeless.README_BEGIN,
            end=bench_hopeless.README_END,
        )
    print(text)
    for target in missed:
        print(f"bench: target missed: {target}", file=sys.stderr)
    log(f"Results written to {out} (hopeless.md, hopeless.json).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = parse(argv)
    if args.hopeless:
        return hopeless_main(args)
    if args.search or args.hyperband_seed is not None or args.optuna_seed is not None:
        return search_main(args)
    if args.cold:
        return cold_main(args, settings)
    if args.parallel:
        return parallel_main(args)
    try:
        if args.curve:
            print(curve(settings, args.curve_epochs, args.curve_step))
            return 0
        out = args.out or (Path(tempfile.mkdtemp(prefix="kt-bench-quick-")) if args.quick else DEFAULT_OUT)
        out.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.timezone.utc)
        load_before = os.getloadavg()
        clock = time.perf_counter()
        log(
            f"keeptraining benchmark ({'quick' if settings.quick else 'full'}): backends "
            f"{', '.join(settings.backends)}, {settings.repeats} repetition(s); results to {out}"
        )
        runs, fits, images = run_all(settings)
        meta = {
            "command": shlex.join(
                ["python", "scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_s": time.perf_counter() - clock,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "machine": machine("docker" in settings.backends),
            "settings": asdict(settings),
            "images": images,
        }
    except (KeeptrainingError, BenchError) as exc:
        message = exc.message if isinstance(exc, KeeptrainingError) else str(exc)
        hint = f"\nhint: {exc.hint}" if isinstance(exc, KeeptrainingError) and exc.hint else ""
        print(f"bench: error: {message}{hint}", file=sys.stderr)
        return 1
    summary = summarize(runs, fits, settings)
    sections = markdown(summary, meta, settings)
    text = results_markdown(sections)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "summary": summary,
                "runs": [
                    {
                        **{k: v for k, v in asdict(r).items() if k != "attempts"},
                        "totals": r.totals(),
                        "attempts": [
                            {
                                **asdict(a),
                                "train_s": a.train_s,
                                "overhead_s": a.overhead_s,
                                "overhead": breakdown(a),
                            }
                            for a in r.attempts
                        ],
                    }
                    for r in runs
                ],
                "fit_comparison": fits,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    charts(summary, settings, out)
    if args.update_readme:
        update_readme(readme_block(sections))
    print(text)
    log(
        f"Results written to {out} (results.md, results.json, chains.png, overhead.png"
        f"{', scaling.png' if summary['scaling'] else ''})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
