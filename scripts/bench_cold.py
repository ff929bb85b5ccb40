"""Benchmark section: the whole attempt on a cold runner, side by side with a warm one.

    .venv/bin/python scripts/bench.py --cold --update-readme   # full: the sample model's image, ~10 min
    .venv/bin/python scripts/bench.py --cold --quick           # CI: a tiny image and script, ~2 min

Each attempt is one real run of README's workflow (the real composite action, the official
actions) under act, against GitHub in a box (tests/services/github_box.py: REST API, artifacts, the
actions cache), on the real Docker engine, with a real registry (Debian's docker-registry,
scripts/docker-registry.sh). The consumer repository is the sample model with the
repository's Dockerfile and no ``.dockerignore``; a random label right after ``FROM`` makes
every layer of its image the benchmark's own.

A *cold* runner has no training image and no build cache of it (the benchmark removes the
images it built or pulled, which takes their classic-builder cache with them), no tool cache,
no uv or pip cache (a fresh ``XDG_CACHE_HOME``, where act keeps its tool cache). What a fresh
GitHub runner has and this one keeps: the local base image (``keeptraining-base``, shared with
other users of the engine; on GitHub the base is pulled, a few seconds for a slim image), and
the official actions' copies.

Variants, one chain each (README's workflow, threshold 0.9):

  attempt 1 (build + push)   cold runner, empty registry and actions cache
  attempt 2+ cold (pull)     cold runner: the environment from the actions cache, the image pulled
  attempt 2+ warm (cached)   the same runner again: tool cache and image on it
  today's rebuild            the action before issue 12 (``BASELINE_REF``: pip install, no registry),
                             attempt 2 of its chain on a cold runner (full runs only)
  before issue 28            the action before the lighter install (``BEFORE_LIGHTER_REF``: Optuna
                             and matplotlib in every environment), attempts 1 and 2 of its chain on
                             cold runners, the same registry (full runs only): the install figures
                             the targets compare with, measured in the same run

Each job is timed step by step from act's log: install (locate, restore and save of the
environment, install), checkout (the resume check and the checkout), restore (the chain
state), image (keeptraining's "Training image ... ready" line, or today's "Built ... in" line),
train (the ledger's ``duration_s`` of the attempt), dispatch (the rest of the training step:
ledger, dispatch, summary, status), upload (the chain state), other (act's set-up and the rest).
Writes ``cold.md``, ``cold.json`` (every job's steps, machine-readable) and ``cold.png``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # GitHub in a box, the act driver, the registry

import docker  # noqa: E402

from services.act_driver import (  # noqa: E402
    CHAIN_WORKFLOW,
    CT_WORKFLOW,
    README_ACTION,
    ActChain,
    ActRun,
    init_repo,
    keeptraining_action,
    readme_workflow,
    require_official_actions,
)
from services.github_box import GitHubBox  # noqa: E402
from services.registry_server import RegistryServer  # noqa: E402

#: The last commit before issue 12: "today's" action (pip install, the image built on every runner).
BASELINE_REF = "df2362b"
#: main before issue 28's lighter install: Optuna and matplotlib in every environment of the action.
BEFORE_LIGHTER_REF = "2a41a2a"
TOKEN = "ghs_benchColdToken0123456789abcdef"  # noqa: S105 - GitHub in a box's token
FULL_NAME = "acme/consumer"
README_REGISTRY = "image-registry: ghcr.io/${{ github.repository }}/keeptraining-train"
LABEL = "keeptraining-bench"
STEP_PARTS = (
    ("install", "install"),
    ("checkout", "checkout"),
    ("restore", "restore state"),
    ("image", "image"),
    ("train", "train"),
    ("dispatch", "dispatch, summary"),
    ("upload", "upload state"),
    ("other", "other (act, set-up)"),
)
# The action's steps, by name, and the part of the attempt they belong to.
STEP_OF = {
    "Mask secrets": "install",
    "Locate keeptraining's environment": "install",
    "Restore keeptraining's environment": "install",
    "Install keeptraining": "install",
    "Save keeptraining's environment": "install",
    "Check the chain's commit and the run to resume": "checkout",
    "Check out the chain's commit": "checkout",
    "Restore the chain state": "restore",
    "Train one attempt": "attempt",
    "Save the chain state": "upload",
}
VARIANTS = (
    ("attempt1", "attempt 1 (build + push)"),
    ("cold", "attempt 2+ cold (pull)"),
    ("warm", "attempt 2+ warm (cached)"),
    ("today", "today's rebuild (attempt 2+ cold)"),
    ("before1", "before issue 28: attempt 1"),
    ("before", "before issue 28: attempt 2+ cold"),
)
_STEP = re.compile(
    r"^\[[^\]]*\]\s+(?:✅\s+Success|❌\s+Failure) - (?:Main|Post) (?P<name>.+?) "
    r"\[(?P<duration>[^\]]+)\]\s*$"
)
_READY = re.compile(r"Training image (?P<tag>keeptraining-train:\w+) ready in (?P<s>[\d.]+) s")
_BUILT = re.compile(r"Built (?P<tag>keeptraining-train:\w+) in (?P<s>[\d.]+) s")
_ENV_LINE = re.compile(r"keeptraining's environment: (?P<how>.*)$")

# Targets of issue 12 (reported, never asserted).
TARGET_PULL_VS_BUILD = 0.25  # attempt 2+ cold: image step <= 25 % of attempt 1's build
TARGET_FIXED_VS_TODAY = 0.35  # attempt 2+ cold: fixed cost <= 35 % of today's cold attempt
TARGET_INSTALL_COLD_S = 15.0
TARGET_INSTALL_HIT_S = 3.0
TODAY_IMAGE_CHECK_S = 0.04  # the image check of a warm attempt in the main benchmark before this change

QUICK_DOCKERFILE = """\
ARG BASE_IMAGE={base}
FROM ${{BASE_IMAGE}}
LABEL {label}={nonce}
COPY requirements.txt /opt/requirements.txt
RUN ln -sf /usr/bin/python3 /usr/local/bin/python && useradd --uid 1000 --create-home trainer
USER trainer
"""
QUICK_SCRIPT = '''\
"""A tiny contract script: the quick benchmark times the attempt around it, not TensorFlow."""
import json, os
from pathlib import Path
out = Path(os.environ["KT_OUTPUT_DIR"])
resume = os.environ.get("KT_RESUME_FROM")
start = json.loads(Path(resume).read_text())["epochs"] if resume else 0
target = int(os.environ["KT_EPOCHS"])
history = [1 - 0.6 * 0.95 ** e for e in range(start + 1, target + 1)]
(out / "model.keras").write_text(json.dumps({"epochs": target}))
(out / "metrics.json").write_text(json.dumps({"accuracy": history[-1], "epochs": target,
                                              "history": {"val_accuracy": history}}))
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


@dataclass
class Job:
    """One run of the workflow: one attempt, timed step by step."""

    variant: str
    attempt: int
    run_id: int
    wall_s: float  # act's whole run of the job
    parts: dict[str, float] = field(default_factory=dict)  # STEP_PARTS, adding up to wall_s
    steps: dict[str, float] = field(default_factory=dict)  # every step act timed, by name
    image_tag: str = ""
    image_how: str = ""  # built + pushed, pulled, on the runner, built
    build_s: float | None = None  # the build alone, when this job built
    install_how: str = ""

    @property
    def fixed_s(self) -> float:
        """Everything but the training itself."""
        return self.wall_s - self.parts.get("train", 0.0)


def duration(text: str) -> float:
    """Seconds of a Go duration as act prints it: 850µs, 66.28ms, 2.04s, 1m5.3s."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(h|ms|µs|us|ns|m|s)", text):
        total += (
            float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[unit]
        )
    return total


def job_from_log(variant: str, run: ActRun, train_s: float) -> Job:
    """The job's parts from act's log and the attempt's ledger duration."""
    job = Job(variant, int(run.outputs.get("attempt") or 0), run.run_id, run.seconds)
    for line in run.log.splitlines():
        step = _STEP.match(line)
        if step:
            job.steps[step["name"]] = job.steps.get(step["name"], 0.0) + duration(step["duration"])
        ready, built, env = _READY.search(line), _BUILT.search(line), _ENV_LINE.search(line)
        if ready:
            job.image_tag, job.parts["image"] = ready["tag"], float(ready["s"])
        if built:
            job.build_s = float(built["s"])
            job.image_tag = job.image_tag or built["tag"]
        if env:
            job.install_how = env["how"].strip()
    if "image" not in job.parts:  # today's action prints only its build
        job.parts["image"] = job.build_s or 0.0
    text = run.log
    job.image_how = (
        "built + pushed"
        if "Pushed " in text
        else "pulled"
        if "Pulled the training image" in text
        else "built"
        if job.build_s is not None
        else "on the runner"
    )
    for name, seconds in job.steps.items():
        part = STEP_OF.get(name)
        if part and part != "attempt":
            job.parts[part] = job.parts.get(part, 0.0) + seconds
    attempt_s = job.steps.get("Train one attempt", 0.0)
    job.parts["train"] = train_s
    job.parts["dispatch"] = max(0.0, attempt_s - job.parts["image"] - train_s)
    known = sum(job.parts.get(key, 0.0) for key, _ in STEP_PARTS if key != "other")
    job.parts["other"] = max(0.0, job.wall_s - known)
    job.parts = {key: round(job.parts.get(key, 0.0), 3) for key, _ in STEP_PARTS}
    return job


# --------------------------------------------------------------------------- the consumer and its runners


def consumer(root: Path, base_image: str, nonce: str, workflow: str, *, quick: bool) -> Path:
    """The consumer repository: the sample model (quick: a tiny script), no .dockerignore."""
    (root / CT_WORKFLOW).parent.mkdir(parents=True)
    (root / CT_WORKFLOW).write_text(workflow)
    if quick:
        (root / "ml_code").mkdir()
        (root / "ml_code" / "nn.py").write_text(QUICK_SCRIPT)
        (root / "requirements.txt").write_text("# nothing: the quick benchmark's script needs no package\n")
        (root / "Dockerfile").write_text(QUICK_DOCKERFILE.format(base=base_image, label=LABEL, nonce=nonce))
    else:
        shutil.copytree(
            REPO_ROOT / "ml_code", root / "ml_code", ignore=shutil.ignore_patterns("__pycache__", "output")
        )
        shutil.copy(REPO_ROOT / "requirements.txt", root / "requirements.txt")
        text = (REPO_ROOT / "Dockerfile").read_text()
        text = re.sub(r"^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={base_image}", text, count=1, flags=re.M)
        text = text.replace("FROM ${BASE_IMAGE}\n", f"FROM ${{BASE_IMAGE}}\nLABEL {LABEL}={nonce}\n", 1)
        (root / "Dockerfile").write_text(text)
    init_repo(root, FULL_NAME)
    return root


def remove_images(dc: docker.DockerClient, nonce: str) -> int:
    """The benchmark's images (every tag), with their untagged parents: the build cache of them."""
    removed = 0
    for image in dc.images.list(all=True, filters={"label": f"{LABEL}={nonce}"}):
        for tag in image.tags:
            with contextlib.suppress(docker.errors.NotFound):
                dc.images.remove(tag)
                removed += 1
    leftovers = dc.images.list(all=True, filters={"label": f"{LABEL}={nonce}"})
    for image in sorted(leftovers, key=lambda i: i.attrs["Created"], reverse=True):
        with contextlib.suppress(docker.errors.NotFound):
            dc.images.remove(image.id)
    return removed


@contextlib.contextmanager
def runner_cache(root: Path) -> Iterator[None]:
    """A runner's own cache folder (act's tool cache, uv's and pip's caches live under it)."""
    previous = os.environ.get("XDG_CACHE_HOME")
    root.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = previous


def ledger_duration(chain: ActChain, run_id: int) -> float:
    """The attempt's training time (the ledger's duration_s) from the run's state artifact."""
    store = chain.box.results.artifacts
    (artifact,) = store.of_run(run_id, name="keeptraining-state")
    with zipfile.ZipFile(io.BytesIO(store.content(artifact))) as archive:
        ledger = json.loads(archive.read("ledger.json"))
    return float(ledger["attempts"][-1].get("duration_s") or 0.0)


def run_job(chain: ActChain, variant: str, cache_root: Path) -> Job:
    with runner_cache(cache_root):
        run = chain.step()
    if run is None:
        raise BenchError(f"{variant}: no run was queued")
    if run.returncode != 0:
        raise BenchError(f"{variant}: the run failed:\n{run.log[-4000:]}")
    job = job_from_log(variant, run, ledger_duration(chain, run.run_id))
    log(
        f"  {variant:<8} attempt {job.attempt}: {job.wall_s:.1f} s (install {job.parts['install']:.1f}, "
        f"image {job.parts['image']:.1f} {job.image_how}, train {job.parts['train']:.1f}); {job.install_how}"
    )
    return job


def chain_jobs(
    work: Path,
    action: dict[str, Path],
    workflow: str,
    base_image: str,
    nonce: str,
    variants: list[tuple[str, bool]],
    *,
    quick: bool,
) -> list[Job]:
    """One chain in its own GitHub in a box; each run on a cold (fresh) or warm (the last) runner."""
    dc = docker.from_env()
    repo = consumer(work / "consumer", base_image, nonce, workflow, quick=quick)
    jobs: list[Job] = []
    roots = list(action.values())  # where act finds README's reusable workflow
    with GitHubBox(repo, work / "box", FULL_NAME, TOKEN, CT_WORKFLOW, called_roots=roots) as box:
        (work / "act").mkdir()
        chain = ActChain(repo, box, work / "act", secrets={"GITHUB_TOKEN": TOKEN}, local_actions=action)
        chain.push()
        cache = work / "runner"  # the same paths on every runner, as on GitHub's (the tool cache's too)
        for variant, cold in variants:
            if cold:  # a fresh runner: none of the last one's images, caches or tools
                remove_images(dc, nonce)
                shutil.rmtree(cache, ignore_errors=True)
            job = run_job(chain, variant, cache)
            if variant:
                jobs.append(job)
    dc.close()
    return jobs


def baseline_action(target: Path, ref: str = BASELINE_REF) -> dict[str, Path]:
    """An earlier action at `ref` (BASELINE_REF by default) as README's ``OWNER/keeptraining/action@v1``."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", ref, "action"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    # README's workflow calls the reusable keeptraining.yml, which runs the action: today's file, which
    # passes the action only inputs that the baseline's action has too.
    (target / CHAIN_WORKFLOW).parent.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / CHAIN_WORKFLOW, target / CHAIN_WORKFLOW)
    repository, _, ref = README_ACTION.partition("@")
    return {f"{repository.removesuffix('/action')}@{ref}": target}


def run_all(base_image: str, *, quick: bool, work: Path) -> tuple[list[Job], dict[str, Any]]:
    require_official_actions()
    readme = readme_workflow()
    if README_REGISTRY not in readme:
        raise BenchError(f"README's workflow has no `{README_REGISTRY}` line to point at the local registry")
    nonce = uuid.uuid4().hex[:12]
    info: dict[str, Any] = {"nonce": nonce, "base_image": base_image, "baseline_ref": BASELINE_REF}
    dc = docker.from_env()
    jobs: list[Job] = []
    try:
        with RegistryServer(work / "registry") as server:
            repository = server.repository(f"keeptraining-bench-{nonce}")
            workflow = readme.replace(README_REGISTRY, f"image-registry: {repository}")
            log(f"cold-runner benchmark ({'quick' if quick else 'full'}): registry {server.address}")
            # Attempt 1 cold, attempt 2 cold, attempt 3 warm (the runner of attempt 2).
            jobs += chain_jobs(
                work / "new",
                keeptraining_action(work / "action-new"),
                workflow,
                base_image,
                nonce,
                [("attempt1", True), ("cold", True), ("warm", False)],
                quick=quick,
            )
            stored = (p.stat().st_size for p in (work / "registry").rglob("*") if p.is_file())
            info["registry_bytes"] = sum(stored)
            if not quick:  # the install before issue 28, on cold runners, in this same run
                info["before_lighter_ref"] = BEFORE_LIGHTER_REF
                jobs += chain_jobs(
                    work / "before",
                    baseline_action(work / "action-before", BEFORE_LIGHTER_REF),
                    workflow,
                    base_image,
                    nonce,
                    [("before1", True), ("before", True)],
                    quick=quick,
                )
        if not quick:
            remove_images(dc, nonce)
            today = re.sub(rf"^[ \t]*{re.escape(README_REGISTRY)}\n", "", readme, flags=re.MULTILINE)
            jobs += chain_jobs(
                work / "today",
                baseline_action(work / "action-today"),
                today,
                base_image,
                nonce,
                [("", True), ("today", True)],
                quick=quick,
            )
    finally:
        remove_images(dc, nonce)
        dc.close()
    return jobs, info


# --------------------------------------------------------------------------- tables, targets, chart


def of(jobs: list[Job], variant: str) -> Job | None:
    return next((j for j in jobs if j.variant == variant), None)


def targets(jobs: list[Job]) -> list[dict[str, Any]]:
    first, cold, warm, today, before1, before = (of(jobs, v) for v, _ in VARIANTS)
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append(
            {
                "target": target,
                "measured": measured,
                "verdict": "n/a" if met is None else "met" if met else "missed",
            }
        )

    if first and cold and first.build_s:
        share = cold.parts["image"] / first.build_s
        add(
            "attempt 2+ cold: image step <= 25 % of attempt 1's build",
            f"{cold.parts['image']:.1f} s ({cold.image_how}) / {first.build_s:.0f} s = {share:.0%}",
            share <= TARGET_PULL_VS_BUILD,
        )
    if cold and today:
        share = cold.fixed_s / today.fixed_s
        add(
            "attempt 2+ cold: fixed cost <= 35 % of today's cold attempt",
            f"{cold.fixed_s:.1f} s / {today.fixed_s:.1f} s = {share:.0%}",
            share <= TARGET_FIXED_VS_TODAY,
        )
    else:
        add("attempt 2+ cold: fixed cost <= 35 % of today's cold attempt", "(full run only)", None)
    if first:
        how = first.install_how.split(" (")[0]  # "installed with uv 0.13.8 in 25 s"
        add(
            "action install <= 15 s cold",
            f"{first.parts['install']:.1f} s ({how})" + before_issue_28(before1),
            first.parts["install"] <= TARGET_INSTALL_COLD_S,
        )
    if cold:
        add(
            "action install <= 3 s when the cache hits",
            f"{cold.parts['install']:.1f} s (actions cache)" + before_issue_28(before),
            cold.parts["install"] <= TARGET_INSTALL_HIT_S,
        )
    tags = [j.image_tag for j in (first, cold, warm) if j]
    add(
        "image hash identical across a chain's attempts (no .dockerignore)",
        ", ".join(sorted(set(tags))) + f" in {len(tags)} attempts",
        len(set(tags)) == 1 and bool(tags[0]),
    )
    if warm:
        add(
            "warm engine overhead no worse than today: image check",
            f"{warm.parts['image']:.2f} s (today {TODAY_IMAGE_CHECK_S:.2f} s)",
            warm.parts["image"] <= TODAY_IMAGE_CHECK_S + 0.05,
        )
    return rows


def before_issue_28(job: Job | None) -> str:
    """The same figure of the action before issue 28's lighter install, measured in the same run."""
    return f"; before issue 28, same run: {job.parts['install']:.1f} s" if job else ""


def markdown(jobs: list[Job], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    load = meta.get("load") or [math.nan, math.nan]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; Docker {m.get('docker', '?')}, act 0.2.89, "
        f"docker-registry 2.8; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (the "
        f"benchmark's own work included); {meta['finished']} ({meta['wall_s'] / 60:.1f} min). Command: "
        f"`{meta['command']}`",
        "",
        "One job per attempt: README's workflow, the real composite action under act against GitHub in "
        "a box, the real engine and registry; seconds per step (act's step times; image from "
        "keeptraining's line; train = the ledger's training time). A cold runner has no image, no build "
        "cache, no tool cache, no uv or pip cache (the local base image stays).",
        "",
        "| variant | attempt | " + " | ".join(name for _, name in STEP_PARTS) + " | total s | fixed s |",
        "| --- | ---: | " + " | ".join("---:" for _ in STEP_PARTS) + " | ---: | ---: |",
    ]
    for variant, name in VARIANTS:
        job = of(jobs, variant)
        if job is None:
            continue
        cells = " | ".join(f"{job.parts[key]:.1f}" for key, _ in STEP_PARTS)
        lines.append(f"| {name} | {job.attempt} | {cells} | {job.wall_s:.1f} | {job.fixed_s:.1f} |")
    lines += ["", "| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in targets(jobs)]
    return "\n".join(lines) + "\n"


def chart(jobs: list[Job], out: Path) -> Path:
    import matplotlib  # noqa: PLC0415 - only when writing charts

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shown = [(name, job) for variant, name in VARIANTS if (job := of(jobs, variant))]
    fig, ax = plt.subplots(figsize=(9, 2.0 + 0.6 * len(shown)))
    left = [0.0] * len(shown)
    for key, label in STEP_PARTS:
        widths = [job.parts[key] for _, job in shown]
        ax.barh([name for name, _ in shown], widths, left=left, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds of the job (act's step times)")
    ax.set_title("One attempt on a cold runner and on a warm one")
    ax.legend(ncol=4, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))  # under the bars
    fig.tight_layout()
    path = out / "cold.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(jobs: list[Job], meta: dict[str, Any], out: Path) -> str:
    text = markdown(jobs, meta)
    (out / "cold.md").write_text("# keeptraining: an attempt on a cold runner\n\n" + text, encoding="utf-8")
    (out / "cold.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "parts": [key for key, _ in STEP_PARTS],
                "jobs": [{**asdict(j), "fixed_s": j.fixed_s} for j in jobs],
                "targets": targets(jobs),
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    chart(jobs, out)
    return text


def main(
    quick: bool, base_image: str | None, out: Path, command: str, machine: dict[str, Any]
) -> tuple[int, str]:
    """Run the section; (exit code, its markdown)."""
    if not base_image:
        raise BenchError("--cold needs --base-image (or KT_BASE_IMAGE): the engine cannot pull a base here")
    clock = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kt-bench-cold-") as tmp:
        try:
            jobs, info = run_all(base_image, quick=quick, work=Path(tmp))
        except BaseException:  # keep act's logs, to see what each job did
            logs = out / "cold-logs"
            for found in Path(tmp).glob("*/act/act-run-*.log"):
                (logs / found.parts[-3]).mkdir(parents=True, exist_ok=True)
                shutil.copy(found, logs / found.parts[-3] / found.name)
            log(f"act's logs of the jobs: {logs}")
            raise
    meta = {
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.perf_counter() - clock,
        "quick": quick,
        "machine": machine,
        "load": [load_before, os.getloadavg()[0]],
        **info,
    }
    return 0, write(jobs, meta, out)
