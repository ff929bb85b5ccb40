"""Security end to end: the consumer workflow of README.md under act, the GitHub emulator, real SMTP.

1. Hostile ``workflow_dispatch`` inputs and a hostile commit message (shell and expression
   metacharacters, newlines, workflow-command lookalikes) are never executed and never forge a
   step output or an annotation; every bad input fails with an ``::error title=...::`` that names
   it, and nothing is dispatched for it. The training script itself prints forged commands too.
2. Every byte a chain produces (act logs, act workspaces and job summaries, every artifact the
   results service holds (unzipped), the git server's repository, every API and Twirp request
   GitHub in a box received, every mail the SMTP server accepted) is searched for the secrets,
   raw and encoded.

act runs with ``--insecure-secrets`` and gets its secrets from a ``--secret-file`` (not from its
environment, which act's host executor would hand on to every step). With that flag act masks
nothing, not even values named by ``::add-mask::`` (it still prints each such command as ``***``):
a secret printed anywhere shows in the clear, so searching the raw log is complete. Masking is
checked apart (3), without the flag, with credentials that act does not know to be secrets.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from keeptraining.backends.docker import registry
from services import act_driver
from services.act_driver import (
    CHAIN_WORKFLOW,
    CT_WORKFLOW,
    REPO_ROOT,
    ActChain,
    ActRun,
    git,
    init_repo,
    keeptraining_action,
    readme_workflow,
    require_official_actions,
)
from services.github_box import GitHubBox
from services.github_emulator import GitHubEmulator
from services.smtp_server import Certs, SmtpTestServer, make_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

FULL_NAME = "acme/keeptraining"
MARKER = ".kt-security-marker"  # a file whose content tells this test's act workspaces from others'
CHAIN_INPUTS = ("epochs", "attempt", "commit", "resume-run-id")

#: Each is tried in each workflow_dispatch input, one run per (input, value).
HOSTILE = (
    "$(touch pwned)",
    "`touch pwned2`",
    "'; touch pwned3; echo '",
    '"; touch pwned4; echo "',
    "1; touch pwned5 #",
    "${{ secrets.SMTP_PASSWORD }}",
    "1\n::set-output name=accuracy::1.0\n::set-output name=threshold-reached::true",
    "::set-output:: threshold-reached=true",  # act's own log format for an output
    "2\n::add-mask::Success",
    "::error::forged",
    "3\r\n::error title=forged::forged annotation\n::warning::forged\n::notice::forged",
)
HOSTILE_MESSAGE = (
    "Tune the model $(touch pwned-msg) `touch pwned-msg2` ${{ secrets.SMTP_PASSWORD }}\n\n"
    + "\n".join(HOSTILE)
    + "\n::set-output name=dispatched::false\n"
)

# A consumer's training script that misbehaves: it dumps its whole environment into its log and
# its output folder, and prints forged workflow commands (a hostile commit could do the same).
SCRIPT = """\
import json, os
from pathlib import Path

out = Path(os.environ["KT_OUTPUT_DIR"])
(out / "environment.json").write_text(json.dumps(dict(os.environ), indent=1))
for name, value in sorted(os.environ.items()):
    print(f"env {name}={value}")
print("::set-output name=threshold-reached::true")
print("::set-output name=accuracy::1.0")
print("::error title=forged::forged by the training script")
print("::add-mask::Success")
start = 0
if os.environ.get("KT_RESUME_FROM"):
    start = json.loads(Path(os.environ["KT_RESUME_FROM"]).read_text())["epochs"]
target = int(os.environ["KT_EPOCHS"])
history = [1 - 0.6 * 0.95 ** e for e in range(start + 1, target + 1)]
(out / "model.keras").write_text(json.dumps({"epochs": target}))
(out / "metrics.json").write_text(json.dumps(
    {"accuracy": history[-1], "epochs": target, "history": {"val_accuracy": history}}))
print(f"Test accuracy: {history[-1]:.4f}")
"""

# Added to the train job of the reusable workflow README's workflow calls (the test's copy of
# keeptraining.yml), after the action: what the job really saw (outputs, commit message), a secret
# echoed in the clear (act must not mask it), a control file made where steps run, and a copy of
# act's folder for this run (workspace, SUMMARY.md, step scripts), which act deletes at the end of a
# successful job. The caller passes every secret (`secrets: inherit`), so the canary reaches it.
EXTRA_STEP = """
      - name: Show what the workflow saw (test only)
        if: always()
        env:
          SEEN_OUTPUTS: ${{ toJSON(steps.train.outputs) }}
          SEEN_MESSAGE: ${{ github.event.head_commit.message }}
          SEEN_CANARY: ${{ secrets.KT_CANARY }}
        run: |
          echo "canary in clear: $SEEN_CANARY"
          printf '%s' "$SEEN_OUTPUTS" > "$KT_SEEN_DIR/outputs.json"
          printf '%s' "$SEEN_MESSAGE" > "$KT_SEEN_DIR/message.txt"
          touch pwned-control
          cp -a "$(dirname "$GITHUB_WORKSPACE")/." "$(mktemp -d "$KT_SEEN_DIR/act-run.XXXXXX")/"
"""
# For (3): the credentials come from variables, so act does not mask them as secrets; only the
# action's own ::add-mask:: commands can.
MASK_WITH = """          smtp-password: ${{ vars.KT_SMTP_PASSWORD }}
          github-token: ${{ vars.KT_TOKEN }}
"""
MASK_STEP = """
      - name: Echo the credentials after the action (test only)
        if: always()
        env:
          SEEN_PASSWORD: ${{ vars.KT_SMTP_PASSWORD }}
          SEEN_TOKEN: ${{ vars.KT_TOKEN }}
        run: |
          echo "password after the action: $SEEN_PASSWORD"
          echo "token after the action: $SEEN_TOKEN"
"""

_LINE = re.compile(r"^\[[^\]]*\]\s+(?P<mark>\S+)\s+(?P<text>.*)$")
_COMMAND = re.compile(r"^::(?P<name>error|warning|notice)(?: (?P<props>[^:]*))?::(?P<message>.*)$")
_ACT_OUTPUT = re.compile(r"^::set-output:: (?P<name>[\w-]+)=(?P<value>.*)$")
#: Outputs of the action's inner steps (install and its cache, the start time, check, checkout, upload,
#: download, the data cache's plan, restore and record): not the action's.
_INNER_OUTPUTS = {
    "bin",
    "installed",
    "key",
    "venv",
    "found",
    "cache-hit",
    "cache-primary-key",
    "cache-matched-key",
    "commit",
    "resume",
    "problem",
    "ref",
    "artifact-id",
    "artifact-digest",
    "artifact-url",
    "download-path",
    "path",
    "restore-keys",
    "data-cache",
    "started",
    "artifact-suffix",
    "state-artifact-id",
    "trial-artifact-ids",
}
#: actions/checkout logs the header it configures with the credential it has masked itself.
_CHECKOUT_AUTH = re.compile(
    r"^\[command\]/usr/bin/git config --file \S+ http\.\S+\.extraheader "
    r"AUTHORIZATION: basic \*\*\*$"
)
#: Commands act marks like a notice (❓) that are not annotations: the official actions' log groups
#: and problem matchers.
_OTHER_COMMAND = re.compile(r"^(::group::|::endgroup::|::debug::|add-matcher |::remove-matcher )")
_ANNOTATION_MARKS = {"❗", "🚧", "❓"}  # act's marks for an error, warning and notice it obeyed


# --------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Credentials:
    """Distinctive values, new for each test; the password has characters every encoding changes."""

    token: str
    password: str
    username: str  # not a secret to keeptraining: the control, expected where AUTH puts it
    canary: str  # a secret that a step echoes in the clear: proves act masks nothing itself
    marker: str

    @classmethod
    def fresh(cls) -> Credentials:
        n = secrets.token_hex(8)
        return cls(
            token=f"ghs_{secrets.token_hex(18)}",
            password=f'Kt-{n}%25/+= &?"<pw',
            username=f"trainer-{n}@example.org",
            canary=f"canary-{n}",
            marker=n,
        )

    def act_secrets(self, smtp: SmtpTestServer) -> dict[str, str]:
        return {
            "GITHUB_TOKEN": self.token,
            "SMTP_SERVER": "localhost",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USERNAME": self.username,
            "SMTP_PASSWORD": self.password,
            "MAIL_FROM": "keeptraining@example.org",
            "MAIL_TO": "dev1@example.org, dev2@example.org",
            "KT_CANARY": self.canary,
        }


class RecordingEmulator(GitHubEmulator):
    """The emulator, also keeping every authenticated request's headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers: list[tuple[str, list[tuple[str, str]]]] = []

    def _check_auth(self, handler: Any) -> None:
        with self.lock:
            self.headers.append((handler.requestline, list(handler.headers.items())))
        super()._check_auth(handler)


#: The end of the train step in keeptraining.yml: the test's steps go after it.
TRAIN_STEP_END = "          mail-to: ${{ secrets.MAIL_TO }}\n"


def instrument(action: Path, *, masking: bool = False) -> None:
    """The test's steps in the train job of the copy of keeptraining.yml that act serves."""
    path = action / CHAIN_WORKFLOW
    text = path.read_text()
    assert TRAIN_STEP_END in text
    extra = EXTRA_STEP.rstrip("\n") + "\n" + (MASK_STEP if masking else "")
    text = text.replace(TRAIN_STEP_END, TRAIN_STEP_END + extra.lstrip("\n"), 1)
    if masking:
        text = text.replace("          smtp-password: ${{ secrets.SMTP_PASSWORD }}\n", MASK_WITH, 1)
        assert MASK_WITH in text
    path.write_text(text)


def consumer_repo(root: Path, base_image: str, config: str, creds: Credentials) -> Path:
    """A repository that uses the action the way README.md says (by path), with SCRIPT as nn.py."""
    text = readme_workflow()
    secrets_block = re.search(r"^    secrets:\n(?:      .*\n)+", text, re.MULTILINE)
    assert secrets_block, "README's workflow passes the secrets"
    text = text.replace(secrets_block.group(0), "    secrets: inherit\n") + act_driver.readme_follow_up_job()
    act_driver.consumer_repo(root, base_image, workflow=text, script=SCRIPT, config=config)
    (root / MARKER).write_text(creds.marker)
    return root


@pytest.fixture(autouse=True)
def official_actions() -> None:
    require_official_actions()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def creds() -> Credentials:
    return Credentials.fresh()


@pytest.fixture
def smtp(certs: Certs, creds: Credentials) -> Iterator[SmtpTestServer]:
    with SmtpTestServer("starttls", certs=certs, user=creds.username, password=creds.password) as server:
        yield server


@dataclass(frozen=True)
class Bench:
    """What each test here needs: a folder, the base image, a STARTTLS+AUTH SMTP server, credentials."""

    tmp_path: Path
    base_image: str
    smtp: SmtpTestServer
    certs: Certs
    creds: Credentials

    @contextlib.contextmanager
    def chain(
        self, *, config: str = "", message: str | None = None, masking: bool = False
    ) -> Iterator[tuple[ActChain, str]]:
        """A consumer repository, its emulated GitHub and an act driver: (chain, head commit)."""
        creds = self.creds
        repo = consumer_repo(self.tmp_path / "consumer", self.base_image, config, creds)
        head = init_repo(repo, FULL_NAME)
        if message is not None:  # the commit under test carries the hostile message, byte for byte
            git(repo, "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-m", message)
            head = git(repo, "rev-parse", "HEAD")
        action = keeptraining_action(self.tmp_path / "keeptraining")
        for folder in action.values():
            instrument(folder, masking=masking)
        box = GitHubBox(
            repo,
            self.tmp_path / "box",
            FULL_NAME,
            creds.token,
            CT_WORKFLOW,
            emulator_class=RecordingEmulator,
            called_roots=list(action.values()),
        )
        with box:
            seen_dir = self.tmp_path / "work" / "seen"
            seen_dir.mkdir(parents=True)
            act_secrets = creds.act_secrets(self.smtp)
            variables = {}
            if masking:  # not secrets to act: only the action's own ::add-mask:: can hide them
                variables = {
                    "KT_SMTP_PASSWORD": act_secrets.pop("SMTP_PASSWORD"),
                    "KT_TOKEN": act_secrets.pop("GITHUB_TOKEN"),
                }
            chain = ActChain(
                repo,
                box,
                self.tmp_path / "work",
                secrets=act_secrets,
                variables=variables,
                env={"KT_SMTP_CAFILE": str(self.certs.ca_cert), "KT_SEEN_DIR": str(seen_dir)},
                act_args=() if masking else ("--insecure-secrets",),
                secret_file=self.tmp_path / "input" / "secrets.env",
                local_actions=action,
            )
            try:
                yield chain, head
            finally:  # act keeps its folder of a failed run: remove this test's
                for folder in act_folders(creds.marker):
                    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def bench(
    tmp_path: Path, docker_base_image: str, smtp: SmtpTestServer, certs: Certs, creds: Credentials
) -> Bench:
    return Bench(tmp_path, docker_base_image, smtp, certs, creds)


def push(chain: ActChain) -> ActRun:
    """Push the repository's HEAD and execute the run it starts."""
    assert chain.push() is not None
    run = chain.step()
    assert run is not None
    return run


def dispatched(chain: ActChain, inputs: Mapping[str, str]) -> tuple[ActRun, int]:
    """A person's "Run workflow" with these inputs, executed: (the run, API requests before it ran)."""
    chain.dispatch(inputs)
    before = len(chain.emulator.requests)
    run = chain.step()
    assert run is not None
    return run, before


def seen(chain: ActChain, name: str) -> str:
    """What the test step wrote in the last run (then removed, so that no run reads another's)."""
    path = chain.work / "seen" / name
    text = path.read_bytes().decode() if path.exists() else ""  # keeps \r
    path.unlink(missing_ok=True)
    return text


def seen_outputs(chain: ActChain) -> dict[str, str]:
    text = seen(chain, "outputs.json")
    assert text, "the test step did not run"
    outputs: dict[str, str] = json.loads(text)
    return outputs


def act_captures(chain: ActChain) -> list[Path]:
    """The test step's copies of act's folder, one per run."""
    return sorted((chain.work / "seen").glob("act-run.*"))


def act_folders(marker: str) -> list[Path]:
    """act's own per-run folders (kept for failed runs) of this test."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "act"
    found = []
    for folder in cache.iterdir() if cache.is_dir() else []:
        with contextlib.suppress(OSError):
            if (folder / "hostexecutor" / MARKER).read_text() == marker:
                found.append(folder)
    return sorted(found)


# --------------------------------------------------------------------------- reading act's log


def logged(run: ActRun) -> list[tuple[str, str]]:
    """(mark, text) of each step line act printed, e.g. ("❗", "::error title=...::...")."""
    return [(m["mark"], m["text"]) for m in map(_LINE.match, run.log.splitlines()) if m]


def training_step(run: ActRun) -> list[tuple[str, str]]:
    """The lines of the action's "Train one attempt" step (a training script's text is in it)."""
    lines, inside = [], False
    for mark, text in logged(run):
        if mark == "⭐":
            inside = text == "Run Main Train one attempt"
        elif inside:
            lines.append((mark, text))
    return lines


def obeyed_annotations(run: ActRun) -> list[re.Match[str]]:
    """The ::error/::warning/::notice commands act obeyed (not the ones it only printed)."""
    found = []
    for mark, text in logged(run):
        if mark in _ANNOTATION_MARKS and not _OTHER_COMMAND.match(text):
            match = _COMMAND.match(text)
            assert match, f"act marked {text!r} as an annotation"
            found.append(match)
    return found


def true_accuracy(epochs: int) -> float:
    return 1 - 0.6 * 0.95**epochs  # SCRIPT's accuracy after that many epochs


def assert_nothing_forged(run: ActRun, outputs: Mapping[str, str], creds: Credentials) -> None:
    """No forged output, annotation or mask; no secret, in the clear or masked, where it must not be."""
    for mark, text in logged(run):
        obeyed = _ACT_OUTPUT.match(text)
        if mark == "⚙" and obeyed and obeyed["name"] not in _INNER_OUTPUTS:
            assert outputs.get(obeyed["name"]) == obeyed["value"].strip(), f"forged output: {text!r}"
        if "***" in text:  # act prints each ::add-mask:: command so; nothing else may look masked
            masked_command = (mark, text) == ("⚙", "***")
            assert masked_command or _CHECKOUT_AUTH.match(text), f"a masked value was printed: {text!r}"
    masks = sum(1 for mark, text in training_step(run) if (mark, text) == ("⚙", "***"))
    assert masks <= 2, f"{masks} mask commands in the training step: it issues at most 2 (token, password)"
    assert f"canary in clear: {creds.canary}" in run.log, "act masked a secret by itself"
    for annotation in obeyed_annotations(run):
        title = dict(p.split("=", 1) for p in (annotation["props"] or "").split(",") if "=" in p).get("title")
        assert title and "forged" not in title, f"forged annotation: {annotation.group(0)!r}"
        assert not annotation["message"].startswith("forged"), f"forged annotation: {annotation.group(0)!r}"
    if outputs.get("accuracy"):  # what SCRIPT really reached at that many epochs, else nothing
        assert outputs["accuracy"] == f"{true_accuracy(int(outputs['epochs'])):.4f}", "accuracy forged"
    reached = outputs.get("threshold-reached", "")
    assert reached in ("", "false", "true")
    if reached == "true":  # the README workflow's threshold is 0.9
        assert float(outputs["accuracy"]) >= 0.9, "threshold-reached forged"
    assert ("Model ready with accuracy" in run.log) == (reached == "true")
    for secret in (creds.token, creds.password):
        assert secret not in run.log


def pwned_files(since: float, roots: list[Path]) -> list[str]:
    """Files named pwned* changed since ``since`` under each root (its own file system)."""
    found: set[str] = set()
    for root in roots:
        done = subprocess.run(
            ["find", str(root), "-xdev", "-name", "pwned*", "-print0"],
            capture_output=True,
            check=False,
            timeout=300,
        )
        found.update(p for p in done.stdout.decode("utf-8", "replace").split("\0") if p)
    recent = []
    for name in sorted(found):
        with contextlib.suppress(OSError):
            if os.lstat(name).st_mtime >= since:
                recent.append(name)
    return recent


# --------------------------------------------------------------------------- 1. injection


def test_hostile_inputs_and_commit_message_are_never_executed_and_forge_nothing(bench: Bench) -> None:
    start = time.time() - 1
    tmp_path, creds = bench.tmp_path, bench.creds
    with bench.chain(message=HOSTILE_MESSAGE) as (chain, head):
        emulator = chain.emulator
        # A push whose commit message is hostile, trained by a script that prints forged commands.
        push_run = push(chain)
        assert push_run.returncode == 0, push_run.log[-4000:]
        outputs = seen_outputs(chain)
        assert seen(chain, "message.txt") == HOSTILE_MESSAGE  # it reached the workflow intact
        assert_nothing_forged(push_run, outputs, creds)
        assert outputs["accuracy"] == f"{true_accuracy(10):.4f}"
        assert (outputs["threshold-reached"], outputs["dispatched"], outputs["chain-status"]) == (
            "false",
            "true",
            "continue",
        )
        # The script's ::error was not obeyed. The one warning: README's image-registry, ghcr.io, cannot
        # be reached from here, so the image is built on the runner (registry.py).
        assert [
            a.group(0)
            for a in obeyed_annotations(push_run)
            if f"title={registry.WARNING_TITLE}" not in (a["props"] or "")
        ] == []
        (dispatch,) = emulator.snapshot_dispatches()
        baseline = {k: str(v) for k, v in dispatch.inputs.items()}
        assert baseline == {
            "attempt": "2",
            "epochs": "20",
            "commit": head,
            "resume-run-id": str(push_run.run_id),
        }
        chain.cancel(dispatch.run_id)  # the chain's own attempt 2 is replayed below, after the hostile ones

        # Each hostile value in each input of a dispatch that is otherwise the real next attempt.
        tried = 0
        for name in CHAIN_INPUTS:
            for value in HOSTILE:
                run, before = dispatched(chain, {**baseline, name: value})
                where = f"input {name} = {value!r}"
                assert run.returncode != 0, f"{where} was accepted:\n{run.log[-3000:]}"
                assert_nothing_forged(run, seen_outputs(chain), creds)
                errors = [a for a in obeyed_annotations(run) if a["name"] == "error"]
                assert len(errors) == 1, f"{where}: {[e.group(0) for e in errors]}"
                assert re.match(r"title=[^,]+", errors[0]["props"] or ""), errors[0].group(0)
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", errors[0]["message"]), (
                    f"{where}: the error does not name the input: {errors[0].group(0)!r}"
                )
                assert [a for a in obeyed_annotations(run) if a["name"] != "error"] == []
                assert len(emulator.requests) == before, f"{where}: the GitHub API was called"
                tried += 1
        assert len(emulator.snapshot_dispatches()) == 1 + tried  # the push run's, and the tries' by hand

        # The real next attempt still runs: the rejected runs left the chain's state alone.
        replay, _ = dispatched(chain, baseline)
        assert replay.returncode == 0, replay.log[-4000:]
        outputs = seen_outputs(chain)
        assert_nothing_forged(replay, outputs, creds)
        assert (outputs["attempt"], outputs["epochs"], outputs["dispatched"]) == ("2", "20", "true")
        assert emulator.violations == []
        captures = act_captures(chain)
        assert len(captures) == len(chain.runs)
        # The test step's `touch pwned-control` in each run's workspace proves the search looks where
        # steps run; any other pwned* file is hostile text that was executed.
        found = pwned_files(start, [Path("/"), Path("/tmp"), Path.home(), tmp_path, REPO_ROOT])
        executed = [f for f in found if Path(f).name != "pwned-control"]
        assert executed == [], f"hostile text was executed: {executed}"
        assert all(any(Path(f).is_relative_to(c) for f in found) for c in captures), "a control was missed"
    print(
        f"\nhostile values: {tried} dispatch runs ({len(HOSTILE)} values x {len(CHAIN_INPUTS)} inputs), "
        f"1 push with a {len(HOSTILE_MESSAGE.splitlines())}-line hostile commit message, "
        f"4 forged commands from the training script; {len(chain.runs)} act runs in all"
    )


def test_action_refuses_a_resume_run_id_that_is_not_a_run_id(bench: Bench) -> None:
    """Checked before anything is checked out, downloaded or trained, and before any API call."""
    with bench.chain() as (chain, head):
        inputs = {"attempt": "2", "epochs": "20", "commit": head, "resume-run-id": "12 34"}
        run, before = dispatched(chain, inputs)
        assert run.returncode != 0, "a resume-run-id that is not a run id was accepted"
        (error,) = obeyed_annotations(run)
        assert error.group(0).startswith(
            "::error title=Invalid keeptraining configuration::input resume-run-id is not valid"
        )
        assert "::set-output:: resume=invalid" in run.log
        assert "Downloading single artifact" not in run.log and "Syncing repository" not in run.log
        assert "== Attempt" not in run.log
        assert len(chain.emulator.requests) == before


# --------------------------------------------------------------------------- 2. secrets


def artifact_file(chain: ActChain, run_id: int, name: str) -> bytes:
    """One file of a run's keeptraining-state artifact."""
    store = chain.box.results.artifacts
    (artifact,) = store.of_run(run_id, name="keeptraining-state")
    with zipfile.ZipFile(io.BytesIO(store.content(artifact))) as archive:
        return archive.read(name)


def secret_forms(secret: str) -> dict[str, bytes]:
    """The secret as it would look raw, URL/JSON/HTML-escaped, or inside base64 at any offset."""
    raw = secret.encode()
    forms = {
        "raw": raw,
        "url": urllib.parse.quote(secret, safe="").encode(),
        "url-plus": urllib.parse.quote_plus(secret).encode(),
        "json": json.dumps(secret)[1:-1].encode(),
        "html": html.escape(secret).encode(),
        "mail-header": secret.replace('"', '\\"').encode(),
    }
    for offset in range(3):  # base64 of a longer text: the characters that depend on the secret only
        first, last = -(-8 * offset // 6), (8 * (offset + len(raw)) - 6) // 6
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            forms[f"{name}+{offset}"] = encode(b"\0" * offset + raw)[first : last + 1]
    unique: dict[str, bytes] = {}
    for name, form in forms.items():
        if form not in unique.values():
            unique[name] = form
    return unique


@dataclass
class Corpus:
    """Every place searched, by name, with its bytes."""

    places: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, where: str, data: bytes | str) -> None:
        self.places.append((where, data if isinstance(data, bytes) else data.encode("utf-8", "replace")))

    def add_tree(self, root: Path, label: str) -> None:
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    self.add(f"{label}/{path.relative_to(root)}", path.read_bytes())

    def add_mail(self, n: int, content: bytes) -> None:
        self.add(f"mail {n} (raw)", content)
        parsed = BytesParser(policy=policy.default).parsebytes(content)
        assert isinstance(parsed, EmailMessage)
        for k, part in enumerate(parsed.walk()):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                self.add(f"mail {n} part {k} (decoded)", payload)

    def hits(self, forms: Mapping[str, bytes]) -> list[str]:
        return [
            f"{where}: {name}" for where, data in self.places for name, form in forms.items() if form in data
        ]

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.places)


def chain_corpus(chain: ActChain, smtp: SmtpTestServer, creds: Credentials) -> Corpus:
    emulator = chain.emulator
    assert isinstance(emulator, RecordingEmulator)
    corpus = Corpus()
    for n, run in enumerate(chain.runs, start=1):
        corpus.add(f"act log {n}", run.log)
    corpus.add_tree(chain.work, "work")  # events, act-run logs, test step files
    corpus.add_tree(chain.box.git.root, "git server")  # the repository as served
    for artifact in chain.box.results.artifacts.history():  # every artifact ever uploaded, unzipped
        data = chain.box.results.artifacts.content(artifact)
        corpus.add(f"artifact {artifact.id} (zip)", data)
        with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                corpus.add(f"artifact {artifact.id}/{member}", archive.read(member))
    for call in chain.box.results.calls:
        corpus.add(f"twirp {call.method}", json.dumps(asdict(call), default=str))
    corpus.add_tree(chain.repo, "repo")
    assert len(act_captures(chain)) == len(chain.runs)  # in work/: workspace, SUMMARY.md, step scripts
    for folder in act_folders(creds.marker):  # act's own folders that are left (failed runs)
        corpus.add_tree(folder, f"act {folder.name}")
    for request in emulator.requests:
        corpus.add(f"api {request.method} {request.path}", json.dumps(asdict(request), default=str))
    for line, headers in emulator.headers:
        assert [v for k, v in headers if k.lower() == "authorization"] in (
            [f"token {creds.token}"],
            [f"Bearer {creds.token}"],
        ), f"{line}: the token is not where it belongs"
        others = "\n".join(f"{k}: {v}" for k, v in headers if k.lower() != "authorization")
        corpus.add(f"api headers {line}", others)
    for record in emulator.snapshot_dispatches():
        corpus.add(f"dispatch {record.run_id}", json.dumps(asdict(record), default=str))
    for run_record in emulator.runs:
        corpus.add(f"emulated run {run_record.id}", json.dumps(asdict(run_record), default=str))
    for n, mail in enumerate(smtp.messages, start=1):
        corpus.add_mail(n, mail.content)
        corpus.add(f"mail {n} envelope", json.dumps([mail.mail_from, mail.rcpt_tos]))
    assert smtp.authenticator is not None
    corpus.add("smtp AUTH logins", json.dumps(smtp.authenticator.tries))
    assert not any(p.name == "secrets.env" for p in chain.work.rglob("*"))  # the test's input stays out
    return corpus


def assert_no_secret_anywhere(corpus: Corpus, creds: Credentials) -> int:
    """Assert, print the figures, and return how many forms were searched."""
    token, password = secret_forms(creds.token), secret_forms(creds.password)
    # Controls: the search finds a password inside an AUTH PLAIN blob, the username where AUTH put it,
    # and the canary that a step echoed in the clear.
    blob = base64.b64encode(b"\0" + creds.username.encode() + b"\0" + creds.password.encode())
    assert Corpus([("AUTH PLAIN", blob)]).hits(password)
    assert "smtp AUTH logins: raw" in corpus.hits(secret_forms(creds.username))
    assert any(hit.startswith("act log") for hit in corpus.hits(secret_forms(creds.canary)))
    leaks = corpus.hits(token) + corpus.hits(password)
    assert leaks == [], f"secrets found: {leaks}"
    print(
        f"\nsearched {len(corpus.places)} places, {corpus.size} bytes, for {len(token)} forms of "
        f"GITHUB_TOKEN and {len(password)} forms of SMTP_PASSWORD: none found; username found in: "
        f"{sorted({h.split(':')[0] for h in corpus.hits(secret_forms(creds.username))})}"
    )
    return len(token) + len(password)


def test_no_secret_leaves_a_chain_in_any_byte_it_produces(bench: Bench) -> None:
    smtp, creds = bench.smtp, bench.creds
    with bench.chain(config="epochs: 20\n") as (chain, _head):
        runs = chain.run_chain(max_runs=6)
        for run in runs:
            assert run.returncode == 0, run.log[-4000:]
            assert_nothing_forged(run, run.outputs, creds)
        assert [r.outputs["epochs"] for r in runs] == ["20", "30", "40"]
        assert runs[-1].outputs["threshold-reached"] == "true"
        assert "Model ready with accuracy" in runs[-1].log
        (mail,) = smtp.messages
        assert mail.tls and mail.authenticated
        # The training container saw the training contract, not the credentials.
        env = json.loads(artifact_file(chain, runs[2].run_id, "attempt-003/environment.json"))
        assert not {"KT_SMTP_PASSWORD", "KT_GITHUB_TOKEN", "GITHUB_TOKEN", "SMTP_PASSWORD"} & set(env)
        corpus = chain_corpus(chain, smtp, creds)
    assert_no_secret_anywhere(corpus, creds)


def test_local_backend_does_not_hand_the_credentials_to_the_training_script(bench: Bench) -> None:
    config = "backend: local\nepochs: 40\n"  # one attempt reaches the threshold and mails
    smtp, creds = bench.smtp, bench.creds
    with bench.chain(config=config) as (chain, _head):
        (run,) = chain.run_chain(max_runs=2)
        assert run.returncode == 0, run.log[-4000:]
        assert run.outputs["threshold-reached"] == "true"
        assert_nothing_forged(run, run.outputs, creds)
        env = json.loads(artifact_file(chain, run.run_id, "attempt-001/environment.json"))
        assert "KT_EPOCHS" in env
        handed = {
            "KT_SMTP_PASSWORD",
            "KT_GITHUB_TOKEN",
            "GITHUB_TOKEN",
            "INPUT_GITHUB-TOKEN",
            "INPUT_SMTP-PASSWORD",
        }  # act exports a composite's inputs
        assert not handed & set(env), f"the training script got {sorted(handed & set(env))}"
        (mail,) = smtp.messages
        assert mail.tls and mail.authenticated
        corpus = chain_corpus(chain, smtp, creds)
    assert_no_secret_anywhere(corpus, creds)


# --------------------------------------------------------------------------- 3. masking


def test_the_action_masks_the_credentials_it_is_given(bench: Bench) -> None:
    """Without --insecure-secrets, the password and token passed from variables (act does not mask
    those): only the action's ``::add-mask::`` commands can hide them from a later step's echo. The
    password holds ``%25``, text that the runner unescapes in a command's value."""
    creds = bench.creds
    with bench.chain(masking=True) as (chain, _head):
        run = push(chain)
        assert run.returncode == 0, run.log[-4000:]
        assert run.outputs["dispatched"] == "true"  # the chain goes on: no mail, so no mail-time mask
        lines = [text for mark, text in logged(run) if mark == "|"]
        assert "password after the action: ***" in lines, "the action did not mask the SMTP password"
        assert "token after the action: ***" in lines, "the action did not mask the token"
        assert creds.password not in run.log and creds.token not in run.log
        assert "%25" in creds.password
