"""Hostile inputs, round three (issue 25): one or more tests per item, each failing without its fix.

Fast unless marked: real interpreters and real files, no TensorFlow, no Docker engine.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import fake_repo, read_outputs
from keeptraining.backends import local
from keeptraining.backends.base import MAX_LINE_CHARS, MAX_LOG_CHARS, LineSplitter, LogBuffer, TrainRequest
from keeptraining.backends.docker import run as docker_run
from keeptraining.cli import main
from keeptraining.config import settings as config_mod
from keeptraining.config.search_space import Param, SearchSettings, parse
from keeptraining.engine import rounds, search, slices
from keeptraining.errors import ConfigError
from keeptraining.reports import summary
from keeptraining.state import ledger as ledger_mod
from keeptraining.state import lock, orphans
from keeptraining.state.ledger import FAILED, SLICED, Attempt, Ledger


def request(tmp_path: Path, script: str, **kw: object) -> TrainRequest:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(textwrap.dedent(script))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "code_dir": code,
        "command": ["python", "train.py"],
        "output_dir": out,
        "env": {"KT_EPOCHS": "1"},
        "timeout": 60.0,
        **kw,
    }
    return TrainRequest(**fields)  # type: ignore[arg-type]


# --- item 2: registry credentials never reach a local training --------------------------------


def test_registry_credentials_are_withheld_from_a_local_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_REGISTRY_USERNAME", "registry-user-name")
    monkeypatch.setenv("KT_REGISTRY_PASSWORD", "registry-password-123")
    result = local.run(request(tmp_path, "import os\nprint(sorted(os.environ.items()))\n"))
    assert result.exit_code == 0, result.output
    assert "registry-password-123" not in result.output and "registry-user-name" not in result.output


# --- item 4: the log readers are linear and bounded -------------------------------------------


class _Container:
    """Stands in for a docker-py container whose log is one long line without a newline."""

    def __init__(self, chunks: int, size: int = 64 * 1024, end: bytes = b"\nTest accuracy: 0.5\n") -> None:
        self.chunks, self.size, self.end = chunks, size, end

    def logs(self, **options: object) -> Iterator[bytes]:
        block = b"x" * self.size
        for _ in range(self.chunks):
            yield block
        yield self.end


def test_the_docker_log_reader_is_linear_on_a_long_line_without_a_newline() -> None:
    got: list[str] = []
    t = time.monotonic()
    pump = docker_run._LogPump(_Container(chunks=512), lambda line: got.append(line[:10]))  # 32 MB
    pump.run()
    took = time.monotonic() - t
    assert took < 3.0, f"32 MB on one line took {took:.1f} s (it was 14.4 s, quadratic)"
    assert pump.error is None
    # the long line in 1 MiB pieces, the empty rest of it at its newline, the result line
    assert len(got) == 32 * 1024 * 1024 // MAX_LINE_CHARS + 2
    assert got[-1] == "Test accur"
    assert pump.text.endswith("Test accuracy: 0.5\n")


def test_the_docker_log_in_memory_is_capped_like_train_log() -> None:
    pump = docker_run._LogPump(_Container(chunks=1600), None)  # 100 MB
    pump.run()
    text = pump.text
    assert len(text) <= MAX_LOG_CHARS + 200
    assert "characters of the log left out here" in text and text.endswith("Test accuracy: 0.5\n")


def test_the_local_log_in_memory_is_capped_and_keeps_the_result_line(tmp_path: Path) -> None:
    script = """\
        import sys
        block = "y" * (1 << 20)
        for _ in range(100):  # 100 MB on one line, then the result line
            sys.stdout.write(block)
        print()
        print("Test accuracy: 0.75")
    """
    lines: list[int] = []
    result = local.run(request(tmp_path, script, on_line=lambda line: lines.append(len(line))))
    assert result.exit_code == 0
    assert len(result.output) <= MAX_LOG_CHARS + 200
    assert result.output.endswith("Test accuracy: 0.75\n")
    assert max(lines) <= MAX_LINE_CHARS + 1  # the live sink never gets the 100 MB line whole


def test_the_log_buffer_and_line_splitter_keep_every_character_below_the_cap() -> None:
    splitter, log = LineSplitter(max_line=4), LogBuffer(limit=10, head=3)
    got: list[str] = []
    for piece in ("ab", "cdef\ngh", "\n", "ijklmnop", "q"):
        got += splitter.feed(piece)
        log.append(piece)
    got += splitter.flush()
    assert got == ["abcd", "ef", "gh", "ijkl", "mnop", "q"]
    assert log.text() == "abc\n[... 9 characters of the log left out here ...]\nklmnopq"
    small = LogBuffer(limit=100, head=3)
    small.append("hello\nworld")
    assert small.text() == "hello\nworld"


# --- item 8: local processes that outlive their training or their keeptraining ----------------

DAEMON = """\
    import json, os, sys, time
    out = os.environ["KT_OUTPUT_DIR"]
    if os.fork() == 0:  # a daemon that writes a "result" after the training has ended
        if {setsid}:
            os.setsid()
        time.sleep(1.5)
        with open(os.path.join(out, "metrics.json"), "w") as fh:
            json.dump({{"accuracy": 0.99}}, fh)
        os._exit(0)
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump({{"accuracy": 0.3}}, fh)
"""


@pytest.mark.parametrize("setsid", [False, True], ids=["in-its-group", "left-its-group"])
def test_what_a_training_leaves_running_is_stopped_when_it_ends(tmp_path: Path, setsid: bool) -> None:
    t = time.monotonic()
    result = local.run(request(tmp_path, DAEMON.format(setsid=setsid)))
    took = time.monotonic() - t
    time.sleep(2.5)  # the daemon, had it lived, wrote by now
    assert result.exit_code == 0
    assert (tmp_path / "out" / "metrics.json").read_text() == '{"accuracy": 0.3}'
    assert took < 1.4, f"the run waited {took:.1f} s for what the training left behind"


def _marked_process(mark: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, orphans.ENV: mark}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    for _ in range(100):
        if orphans.marked(mark):
            return proc
        time.sleep(0.02)
    raise AssertionError("the marked process did not start")


def test_the_next_holder_of_the_lock_stops_the_trainings_of_a_dead_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    mark = orphans.new_mark()
    assert orphans.record(state, mark) is not None  # what a killed keeptraining leaves behind
    orphan = _marked_process(mark)
    bystander = _marked_process(orphans.new_mark())  # another run's training: not recorded here
    try:
        with lock.hold(state):
            assert orphan.wait(timeout=5) == -signal.SIGTERM
            assert bystander.poll() is None
        assert not (state / orphans.RECORD_DIR / mark).exists()
        assert "outlived its keeptraining" in capsys.readouterr().err
    finally:
        for proc in (orphan, bystander):
            proc.kill()
            proc.wait()


def test_a_record_from_a_restored_state_names_no_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / orphans.RECORD_DIR).mkdir(parents=True)
    (state / orphans.RECORD_DIR / "1").write_text("")  # a pid, not a mark: ignored
    with lock.hold(state):
        pass
    assert (state / orphans.RECORD_DIR / "1").exists()


@pytest.mark.integration
def test_after_kill_9_of_keeptraining_the_orphan_never_writes_into_the_next_run(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "KT_", "FAKE_"))}
    first = subprocess.Popen(
        [sys.executable, "-m", "keeptraining", "run", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "FAKE_MODE": "hang", "PYTHONUNBUFFERED": "1"},
    )
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("fake: epochs"):
            break
    first.kill()  # kill -9: no finally, no clean-up
    first.wait()
    (record,) = (repo / ".keeptraining" / orphans.RECORD_DIR).iterdir()
    assert orphans.marked(record.name), "the training outlived its keeptraining"
    second = subprocess.run(
        [sys.executable, "-m", "keeptraining", "run", "--max-attempts", "1", "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "outlived its keeptraining" in second.stdout + second.stderr
    assert not orphans.marked(record.name)
    assert not (repo / ".keeptraining" / orphans.RECORD_DIR / record.name).exists()


# --- item 6: the search space: sizes worked out, bounds stated, library errors exit 2 ---------

SEARCH = "strategy: search\nsearch:\n  sampler: {sampler}\n  space:\n    {space}\n"


def validate(tmp_path: Path, space: str, sampler: str = "tpe") -> tuple[int, str]:
    repo = fake_repo(tmp_path / "repo", "threshold: 0.9\n" + SEARCH.format(sampler=sampler, space=space))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", "--repo", str(repo)])
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("space", "says"),
    [
        (
            "x: {type: float, low: -1.0e308, high: 1.0e308, step: 1.0}",
            "search.space.x.low = -1e+308 is out of",
        ),
        ("x: {type: float, low: -1.0e308, high: 1.0e308}", "search.space.x.low = -1e+308 is out of range"),
        (
            "x: {type: float, low: 0.0, high: 1.0, step: 5.0e-324}",
            "search.space.x.step = 5e-324 is too small",
        ),
        (
            "x: {type: float, low: 0.0, high: 1.0e15, step: 1.0e-6}",
            "search.space.x.step = 1e-06 is too small",
        ),
    ],
)
def test_ranges_beyond_the_stated_bounds_are_a_config_error(tmp_path: Path, space: str, says: str) -> None:
    code, err = validate(tmp_path, space)
    assert code == 2, err
    assert says in err and "Traceback" not in err


def test_a_huge_grid_is_refused_by_arithmetic_without_listing_it(tmp_path: Path) -> None:
    t = time.monotonic()
    code, err = validate(tmp_path, "n: {type: int, low: 0, high: 1000000000000}", sampler="grid")
    assert code == 2, err
    assert "the grid has 1000000000001 points; at most 10000" in err
    assert time.monotonic() - t < 5.0


def test_a_range_at_the_bound_is_sampled_and_a_library_error_names_the_parameter() -> None:
    wide = parse(
        {
            "space": {
                "x": {"type": "float", "low": -1e15, "high": 1e15},
                "n": {"type": "int", "low": 0, "high": 10**12},
            }
        }
    )
    (point,) = search.propose(wide, [], k=1)
    assert -1e15 <= point["x"] <= 1e15 and 0 <= point["n"] <= 10**12
    broken = SearchSettings("tpe", 3, 0, (Param("rate", "float", low=1.0, high=0.0),))  # past parse
    with pytest.raises(ConfigError, match=r"search\.space\.rate: Optuna refuses this range"):
        search.distributions(broken)


# --- item 7: names that differ only in case, choices that reach the script as the same text ----


@pytest.mark.parametrize(
    ("space", "says"),
    [
        (
            "lr: {type: float, low: 0.1, high: 0.2}\n    LR: {type: float, low: 0.1, high: 0.2}",
            "'lr' and 'LR' differ only in case, and both would be KT_HP_LR",
        ),
        (
            "flag: {type: categorical, choices: [true, 'true']}",
            "True and 'true' reach the script as the same text ('true' in KT_HP_)",
        ),
        ("n: {type: categorical, choices: [1, '1']}", "1 and '1' reach the script as the same text"),
    ],
)
def test_names_and_choices_the_script_cannot_tell_apart_are_refused(
    tmp_path: Path, space: str, says: str
) -> None:
    code, err = validate(tmp_path, space)
    assert code == 2, err
    assert says in err


# --- item 9: the merge applies metrics.json's bounds to a slot's record --------------------------


def _search_config(**values: object) -> config_mod.Config:
    space = {"space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True}}}
    return config_mod.resolve(
        {
            "strategy": "search",
            "search": space,
            "threshold": 0.9,
            "epochs": 2,
            "epoch_step": 2,
            "parallel": 3,
            **values,
        }
    )


@pytest.mark.parametrize(
    ("forge", "says"),
    [
        ({"history": [0.5] * 20_000}, "the history has 20000 values, but this run trained at most 2"),
        ({"epochs_trained": 10**7}, "epochs_trained = 10000000, but this run could train at most 2"),
        ({"epochs_reached": 10**7}, "epochs = 10000000 is outside the 0 -> 2 epochs"),
    ],
)
def test_the_merge_refuses_a_slot_result_beyond_the_metrics_bounds(
    tmp_path: Path, forge: dict[str, object], says: str
) -> None:
    conf = _search_config()
    (job, *_) = rounds.plan_round(conf, Ledger())
    record = Attempt(
        attempt=1,
        epochs=job.epochs,
        initial_epoch=0,
        resumed_from=None,
        outcome="below",
        metric=0.5,
        epochs_reached=job.epochs,
        epochs_trained=job.epochs,
        history=[0.4, 0.5],
        checkpoint="model.keras",
        trial=job.trial,
        rung=job.rung,
        trial_params=dict(job.params),
        round=1,
        runner={"slot": 1},
    )
    for name, value in forge.items():
        setattr(record, name, value)
    rounds.write_result(tmp_path / "slot", record)
    out = ledger_mod.attempt_dir(tmp_path / "slot", 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.keras").write_text("weights")
    book = Ledger()
    merged = rounds.merge_one(
        conf, tmp_path / "state", book, job, tmp_path / "slot", number=1, slot=1, round_no=1
    )
    assert merged.outcome == "failed" and says in (merged.error or ""), merged.error
    assert merged.history == [] and merged.epochs_trained == 0
    assert (tmp_path / "state" / "ledger.json").stat().st_size < 100_000


# --- item 10: slices: the runs of a failed attempt, labels, the run number against the ledger ----


def _run(epochs: int, initial: int, reached: int, outcome: str, run_id: str) -> Attempt:
    history = [0.5] * (reached - initial)
    return Attempt(
        attempt=1,
        epochs=epochs,
        initial_epoch=initial,
        resumed_from=None,
        outcome=outcome,
        metric=0.5,
        epochs_reached=reached,
        epochs_trained=len(history),
        history=history,
        checkpoint="model.keras",
        run={"id": run_id},
    )


def test_an_attempt_that_failed_after_max_slices_runs_counts_them_once() -> None:
    record = slices.merge(None, _run(30, 0, 4, SLICED, "1"), slices.DEADLINE, None)
    record = slices.merge(record, _run(30, 4, 8, SLICED, "2"), slices.DEADLINE, "slice-2")
    failed = _run(30, 8, 12, FAILED, "3")  # its third run stopped too: max_slices = 3 spent
    record = slices.merge(record, failed, slices.DEADLINE, "slice-3")
    assert record.outcome == FAILED and slices.runs(record) == 3
    conf = config_mod.resolve({"threshold": 0.9, "max_slices": 3})
    table = summary.attempts_table(Ledger(attempts=[record]), conf)
    assert "1 (3 runs)" in table and "4 runs" not in table


@pytest.mark.parametrize("text", ["1.0", "1.1", "01.02", "01", "1.05"])
def test_labels_not_written_as_keeptraining_writes_them_are_refused(text: str) -> None:
    assert slices.parse_label(text) is None


def test_the_run_after_the_dot_must_be_the_run_the_ledger_continues() -> None:
    sliced = slices.merge(None, _run(30, 0, 4, SLICED, "1"), slices.DEADLINE, None)
    book = Ledger(attempts=[sliced])
    slices.check_run(book, 1, 2)  # the next run: fine
    with pytest.raises(
        ConfigError,
        match=r"attempt = 1\.5 names run 5 of attempt 1, but the ledger's "
        r"next run is 1\.2",
    ):
        slices.check_run(book, 1, 5)
    done = Ledger(attempts=[_run(30, 0, 30, "below", "1")])
    with pytest.raises(ConfigError, match=r"last attempt \(1\) is not unfinished"):
        slices.check_run(done, 2, 3)


def test_an_attempt_job_with_a_run_the_ledger_does_not_continue_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = fake_repo(tmp_path / "repo", "threshold: 0.9\n")
    monkeypatch.setenv("KT_INPUT_ATTEMPT", "1.5")
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["attempt", "--repo", str(repo)]) == 2
    assert "names run 5 of attempt 1" in capsys.readouterr().err
    assert not (repo / ".keeptraining" / "attempt-001").exists()


# --- item 13: check-resume never fails, whatever GITHUB_API_URL holds ----------------------------


@pytest.mark.parametrize("role", ["attempt", "merge"])
@pytest.mark.parametrize("url", ["http://[::1", "ftp://x", "http://localhost:99999", "https://"])
def test_check_resume_refuses_a_malformed_api_url_without_a_traceback(
    tmp_path: Path, url: str, role: str
) -> None:
    output = tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "KT_", "INPUT_"))}
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_API_URL": url,
            "GITHUB_OUTPUT": str(output),
            "GITHUB_REPOSITORY": "acme/models",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_SHA": "c" * 40,
            "GITHUB_RUN_ID": "1",
            "GITHUB_TOKEN": "ghs_checkResumeToken0123456789",
            "KT_INPUT_RESUME_RUN_ID": "5",
            "KT_INPUT_ROLE": role,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "keeptraining", "check-resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    outputs = read_outputs(output)
    assert outputs["resume"] == "refused"
    assert "GITHUB_API_URL" in outputs["problem"] and "ghs_" not in outputs["problem"]
    if role == "merge":  # the trials are not listed either, and that is no failure
        assert outputs["trial-artifact-ids"] == ""


# --- item 14: messages that say what to do ---------------------------------------------------


def _cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    config: str = "threshold: 0.9\n",
    **env: str,
) -> tuple[int, str]:
    repo = fake_repo(tmp_path / "repo", config)
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main([args[0], "--repo", str(repo), *args[1:]])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ["attempt"],
            {"KT_INPUT_ROLE": "merge"},
            "role = merge is for `keeptraining merge`, but this is `keeptraining attempt`",
        ),
        (
            ["trial"],
            {"KT_INPUT_TRIAL": "1"},
            "`keeptraining trial` is a job of a round of parallel trials, which "
            "needs strategy: search; this configuration has strategy: epochs",
        ),
        (["merge"], {}, "`keeptraining merge` is a job of a round of parallel trials"),
        (["validate", "--gpus", "0"], {}, "gpus = '0' is not valid; expected all, or a count of GPUs from 1"),
        (
            ["validate", "--network", "../x"],
            {},
            "network = '../x' is not valid; expected none, default, host or the name of a Docker network",
        ),
    ],
)
def test_messages_say_what_to_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    says: str,
) -> None:
    code, err = _cli(tmp_path, monkeypatch, capsys, args, **env)
    assert code == 2, err
    assert says in err
    assert "expected text" not in err and "None is not valid" not in err


def test_a_null_step_says_to_give_a_number_or_leave_it_out(tmp_path: Path) -> None:
    code, err = validate(tmp_path, "x: {type: float, low: 0.1, high: 0.2, step: null}")
    assert code == 2, err
    assert "search.space.x.step = None is not valid; expected a number > 0 (or leave it out)" in err
    assert "(oneOf)" not in err


def test_a_model_that_trained_no_epoch_is_not_told_to_compile_a_metric(tmp_path: Path) -> None:
    from keeptraining.adapter import _keeptraining_adapter as inside  # noqa: PLC0415

    adapter = inside.Adapter(
        inside.Settings(
            {
                "KT_EPOCHS": "2",
                "KT_INITIAL_EPOCH": "0",
                "KT_ADAPT": "auto",
                "KT_OUTPUT_DIR": str(tmp_path),
                "KT_METRIC": "accuracy",
            }
        )
    )
    adapter.model = object()
    assert adapter.report() is None
    (note,) = adapter.notes
    assert "trained no epoch and evaluated nothing" in note and "compile it with" not in note


def test_two_runs_that_archive_in_the_same_second_both_keep_their_chain(tmp_path: Path) -> None:
    from keeptraining.engine import chain  # noqa: PLC0415

    state = tmp_path / "state"
    (state / "previous").mkdir(parents=True)
    now = time.time()
    for t in (now, now + 1):  # whatever second the archive falls in, its name is taken
        (state / "previous" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))).mkdir(exist_ok=True)
    (state / "ledger.json").write_text("{}")
    said: list[str] = []
    chain.archive_previous(state, said.append)
    assert not (state / "ledger.json").exists()
    assert said and said[0].endswith("-2.")


# --- the repeat pass (same kinds of inputs, other places) ----------------------------------------


class _StderrContainer(_Container):
    def logs(self, **options: object) -> Iterator[bytes]:
        assert options.get("stream") is True, "stderr is streamed, never read whole"
        yield from super().logs(**options)


def test_the_docker_stderr_tail_is_bounded_however_long_its_lines() -> None:
    text = docker_run._stderr([_StderrContainer(chunks=1600)])  # 100 MB
    assert len(text) <= docker_run.STDERR_KEEP_CHARS + 200
    assert text.endswith("Test accuracy: 0.5\n")


def test_attempt_zero_is_not_a_label() -> None:
    assert slices.parse_label("0.2") is None and slices.parse_label("0") is None


def test_the_merge_refuses_a_slot_record_with_more_runs_than_max_slices(tmp_path: Path) -> None:
    conf = _search_config(max_slices=2)
    (job, *_) = rounds.plan_round(conf, Ledger())
    record = Attempt(
        attempt=1,
        epochs=job.epochs,
        initial_epoch=0,
        resumed_from=None,
        outcome="below",
        metric=0.5,
        epochs_reached=job.epochs,
        epochs_trained=job.epochs,
        history=[0.4, 0.5],
        checkpoint="model.keras",
        trial=job.trial,
        rung=job.rung,
        trial_params=dict(job.params),
        round=1,
        runner={"slot": 1},
        slices=[{"stopped": "deadline", "pad": "x" * 900}] * 500,
    )
    rounds.write_result(tmp_path / "slot", record)
    out = ledger_mod.attempt_dir(tmp_path / "slot", 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.keras").write_text("weights")
    merged = rounds.merge_one(
        conf, tmp_path / "state", Ledger(), job, tmp_path / "slot", number=1, slot=1, round_no=1
    )
    assert merged.outcome == "failed" and "500 runs, more than max_slices = 2" in (merged.error or "")
    assert merged.slices == []


@pytest.mark.parametrize(
    ("space", "says"),
    [
        ("x: {type: categorical, choices: [" + "a" * 5000 + "]}", "has 5000 characters; at most 4096"),
    ],
)
def test_a_choice_too_long_for_an_environment_variable_is_refused(
    tmp_path: Path, space: str, says: str
) -> None:
    code, err = validate(tmp_path, space)
    assert code == 2, err
    assert says in err


def test_a_hyperparameter_too_long_is_refused_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(
        tmp_path,
        monkeypatch,
        capsys,
        ["validate"],
        config="threshold: 0.9\nhyperparameters: {x: " + "a" * 5000 + "}\n",
    )
    assert code == 2, err
    assert "has 5000 characters; at most 4096." in err and "(maxLength)" not in err


def test_an_environment_too_large_to_start_a_process_is_a_training_error(tmp_path: Path) -> None:
    from keeptraining.errors import TrainingError  # noqa: PLC0415

    with pytest.raises(TrainingError, match="could not be started: Argument list too long"):
        local.run(request(tmp_path, "print(1)\n", env={"KT_HP_X": "x" * 200_000}))
