"""dispatch_next over real HTTP: PyGithub -> the local GitHub emulator. No mocks.

Every test also checks that the token never shows: not in an exception, not in a log
record (PyGithub and urllib3 at DEBUG), not on stdout/stderr.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator

import pytest

from keeptraining.errors import DispatchError
from keeptraining.github import dispatch as dispatch_module
from keeptraining.github.dispatch import (
    MAX_DISPATCH_TRIES,
    SECONDARY_RATE_LIMIT_WAIT,
    DispatchResult,
    GitHubContext,
    context_from_env,
    dispatch_next,
    workflow_from_ref,
)
from services.github_emulator import (
    EmulatedWorkflow,
    GitHubEmulator,
    OpenAPISubset,
    WorkflowInput,
)

TOKEN = "ghs_Dispatch0Secret1Token2Value3XYZ"
WORKFLOW_FILE = "continuous-training.yml"
INPUTS = {"attempt": "2", "epochs": "20", "chain-commit": "", "resume-run": "123"}


def declared_workflow() -> EmulatedWorkflow:
    return EmulatedWorkflow(
        id=161_335,
        name="Continuous training",
        path=f".github/workflows/{WORKFLOW_FILE}",
        inputs={
            "epochs": WorkflowInput(type="number", default="10"),
            "attempt": WorkflowInput(type="number", default="1"),
            "chain-commit": WorkflowInput(default=""),
            "resume-run": WorkflowInput(default=""),
        },
    )


@pytest.fixture(scope="module")
def subset() -> OpenAPISubset:
    return OpenAPISubset()


@pytest.fixture
def emu(subset: OpenAPISubset) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(subset=subset, workflows=[declared_workflow()], tokens={TOKEN}) as emulator:
        yield emulator
        assert emulator.violations == []


@pytest.fixture(autouse=True)
def token_never_leaks(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)  # PyGithub logs requests (headers masked) and urllib3 retries
    yield
    out, err = capsys.readouterr()
    assert TOKEN not in caplog.text
    assert TOKEN not in out + err
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


def make_ctx(emu: GitHubEmulator, **overrides: str) -> GitHubContext:
    fields: dict[str, str] = {
        "api_url": emu.url,
        "token": TOKEN,
        "repository": emu.full_name,
        "workflow": WORKFLOW_FILE,
        "ref": "main",
        "server_url": emu.server_url,
        "run_id": "1",
    }
    fields.update(overrides)
    return GitHubContext(**fields)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def dispatch(
    emu: GitHubEmulator,
    sleeps: Sleeps | None = None,
    *,
    ctx: GitHubContext | None = None,
    chain_commit: str | None = None,
    next_attempt: int = 2,
    inputs: dict[str, str] | None = None,
) -> DispatchResult:
    return dispatch_next(
        ctx or make_ctx(emu),
        chain_commit=chain_commit or emu.branches["main"],
        next_attempt=next_attempt,
        inputs=dict(INPUTS if inputs is None else inputs),
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def expect_error(
    emu: GitHubEmulator,
    sleeps: Sleeps | None = None,
    *,
    ctx: GitHubContext | None = None,
    chain_commit: str | None = None,
    inputs: dict[str, str] | None = None,
) -> DispatchError:
    with pytest.raises(DispatchError) as caught:
        dispatch(emu, sleeps, ctx=ctx, chain_commit=chain_commit, inputs=inputs)
    error = caught.value
    text = str(error) + repr(error) + repr(error.args)
    assert TOKEN not in text
    # Wrapped, never chained: a raw PyGithub/requests exception could carry request data.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


def posts(emu: GitHubEmulator) -> int:
    return len(emu.calls("dispatch"))


# ---------------------------------------------------------------- the normal path


def test_dispatch_with_run_details_records_one_dispatch_with_the_exact_inputs(emu: GitHubEmulator) -> None:
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    (record,) = emu.dispatches
    assert record.inputs == INPUTS and record.ref == "main" and record.return_run_details is True
    assert result.dispatched and not result.reused
    assert result.run_id == record.run_id
    assert result.run_url == f"{emu.server_url}/{emu.full_name}/actions/runs/{record.run_id}"
    assert "dispatched attempt 2 on main" in result.reason
    assert sleeps == [] and posts(emu) == 1
    (run,) = emu.runs
    assert run.head_sha == emu.branches["main"] and run.display_title == "attempt 2 · 20 epochs"


def test_legacy_enterprise_400_falls_back_to_the_plain_dispatch(emu: GitHubEmulator) -> None:
    emu.legacy_enterprise = True
    result = dispatch(emu)
    (record,) = emu.dispatches
    assert record.return_run_details is None
    assert result.dispatched and result.run_id == record.run_id  # found by listing the runs
    assert [c.status for c in emu.calls("dispatch")] == [400, 204]


def test_a_server_that_ignores_run_details_still_yields_the_run(emu: GitHubEmulator) -> None:
    emu.ignore_run_details = True  # answers 204 although the field was sent
    result = dispatch(emu)
    assert result.dispatched and result.run_id == emu.dispatches[0].run_id and posts(emu) == 1


# ---------------------------------------------------------------- transient failures: exactly one dispatch


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_backoff_and_dispatch_once(emu: GitHubEmulator, status: int) -> None:
    emu.fail_next("dispatch", status)
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    assert result.dispatched and len(emu.dispatches) == 1 and posts(emu) == 2
    assert sleeps == [2.0]
    assert result.run_id == emu.dispatches[0].run_id


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(403, "7"), (429, "3"), (503, "11")],
)
def test_retry_after_is_honoured(emu: GitHubEmulator, status: int, retry_after: str) -> None:
    emu.fail_next("dispatch", status, headers={"Retry-After": retry_after})
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    assert result.dispatched and len(emu.dispatches) == 1
    assert sleeps == [float(retry_after)]


def test_retry_after_is_capped(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 429, headers={"Retry-After": "86400"})
    sleeps = Sleeps()
    dispatch(emu, sleeps)
    assert sleeps == [60.0]


def test_secondary_rate_limit_without_retry_after_waits_a_minute(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 403)  # GitHub's secondary-rate-limit message, no Retry-After
    sleeps = Sleeps()
    assert dispatch(emu, sleeps).dispatched
    assert sleeps == [SECONDARY_RATE_LIMIT_WAIT] and len(emu.dispatches) == 1


def test_exhausted_primary_rate_limit_is_not_waited_for_an_hour(emu: GitHubEmulator) -> None:
    emu.fail_next(
        "dispatch",
        403,
        body={"message": "API rate limit exceeded for installation ID 1.", "documentation_url": "https://x"},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 3600)},
    )
    error = expect_error(emu)
    assert "rate limit is exhausted" in error.message
    assert posts(emu) == 1 and emu.dispatches == []


@pytest.mark.parametrize("drop", [False, True])
def test_accepted_then_failed_dispatch_is_not_sent_again(emu: GitHubEmulator, drop: bool) -> None:
    emu.fail_next("dispatch", 502, after_accept=True, drop=drop)
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    assert posts(emu) == 1 and len(emu.dispatches) == 1
    assert result.dispatched and not result.reused
    assert result.run_id == emu.dispatches[0].run_id
    assert "not sent again" in result.reason
    assert len(sleeps) == 1


def test_dropped_connection_then_success(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", drop=True)
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    assert result.dispatched and len(emu.dispatches) == 1 and posts(emu) == 2
    assert sleeps == [2.0]


def test_persistent_503_gives_up_after_bounded_tries_with_a_clear_message(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 503, times=100)
    sleeps = Sleeps()
    error = expect_error(emu, sleeps)
    assert posts(emu) == MAX_DISPATCH_TRIES and emu.dispatches == []
    assert f"after {MAX_DISPATCH_TRIES} tries" in error.message and "HTTP 503" in error.message
    assert "will not dispatch twice" in error.hint
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]  # exponential, capped


def test_when_the_check_before_a_retry_fails_nothing_is_sent_blindly(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 502)
    # The first listing (before dispatching) goes through; the check before the retry is refused.
    emu.fail_next("list-runs", 403, skip=1, body={"message": "Resource not accessible by integration"})
    error = expect_error(emu)
    assert "could not be checked" in error.message and "HTTP 502" in error.message
    assert "attempt 2" in error.hint
    assert posts(emu) == 1 and emu.dispatches == []


def test_get_requests_are_retried_by_the_client_not_by_our_sleep(emu: GitHubEmulator) -> None:
    emu.fail_next("get-branch", 503)
    emu.fail_next("list-runs", 502)
    sleeps = Sleeps()
    result = dispatch(emu, sleeps)
    assert result.dispatched and len(emu.dispatches) == 1 and sleeps == []
    assert [c.status for c in emu.calls("get-branch")] == [503, 200]


# ---------------------------------------------------------------- refusals: not retried, say what to fix


def test_unknown_workflow_names_the_fix(emu: GitHubEmulator) -> None:
    error = expect_error(emu, ctx=make_ctx(emu, workflow="missing.yml"))
    assert "workflow 'missing.yml' was not found" in error.message
    assert "default branch (main)" in error.hint and "actions: write" in error.hint
    assert posts(emu) == 0


def test_404_from_the_dispatch_itself_is_not_retried(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 404, body={"message": "Not Found", "documentation_url": "https://x"})
    error = expect_error(emu)
    assert "was not found" in error.message and "actions: write" in error.hint
    assert posts(emu) == 1


def test_undeclared_input_gets_422_and_names_it(emu: GitHubEmulator) -> None:
    error = expect_error(emu, inputs={**INPUTS, "learning-rate": "0.1"})
    assert '["learning-rate"]' in error.message
    assert "on.workflow_dispatch.inputs" in error.hint
    assert posts(emu) == 1 and emu.dispatches == []


def test_403_without_rate_limit_asks_for_actions_write(emu: GitHubEmulator) -> None:
    emu.fail_next("dispatch", 403, body={"message": "Resource not accessible by integration"})
    error = expect_error(emu)
    assert "403 Resource not accessible by integration" in error.message
    assert "permissions: actions: write" in error.hint
    assert posts(emu) == 1


def test_a_bad_token_is_reported_without_showing_it(emu: GitHubEmulator) -> None:
    ctx = make_ctx(emu, token=TOKEN + "-revoked")
    error = expect_error(emu, ctx=ctx)
    assert "401" in error.message and "github-token" in error.hint
    assert TOKEN + "-revoked" not in str(error)


def test_missing_branch_is_reported(emu: GitHubEmulator) -> None:
    error = expect_error(emu, ctx=make_ctx(emu, ref="gone"), chain_commit="0" * 40)
    assert "branch 'gone' does not exist" in error.message


def test_unreachable_api_is_a_dispatch_error(emu: GitHubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch_module, "CLIENT_BACKOFF_FACTOR", 0.0)  # the client's GET retries, fast
    ctx = make_ctx(emu, api_url="http://127.0.0.1:9")  # discard port: connection refused
    error = expect_error(emu, ctx=ctx)
    assert "cannot reach the GitHub API at http://127.0.0.1:9" in error.message


# ---------------------------------------------------------------- chain coherence


def chain_run(emu: GitHubEmulator, created_at: str = "2030-01-01T00:00:00Z") -> GitHubContext:
    """The chain's first run (a push run of the current head), and the context of a run in it."""
    run = emu.add_run(161_335, event="push", display_title="Continuous training · attempt 1 · first epochs")
    run.created_at = created_at
    return make_ctx(emu, run_id=str(run.id))


def test_a_newer_chain_supersedes_this_one(emu: GitHubEmulator) -> None:
    chain = emu.branches["main"]
    ctx = chain_run(emu)
    newer = emu.push("main")
    newer_run = emu.add_run(161_335, event="push", head_sha=newer)  # its push started a chain
    newer_run.created_at = "2030-01-01T00:05:00Z"
    result = dispatch(emu, ctx=ctx, chain_commit=chain)
    assert not result.dispatched and result.run_id is None
    assert (result.superseded_by, result.superseded_run_url) == (newer, newer_run_url(emu, newer_run.id))
    assert result.reason == (
        f"a newer chain took over branch main: commit {newer[:7]} (run {newer_run.id}) "
        f"after {chain[:7]}; not dispatching"
    )
    assert posts(emu) == 0 and emu.dispatches == []


def newer_run_url(emu: GitHubEmulator, run_id: int) -> str:
    return f"{emu.server_url}/{emu.full_name}/actions/runs/{run_id}"


def test_a_push_that_started_no_chain_does_not_stop_it(emu: GitHubEmulator) -> None:
    chain = emu.branches["main"]
    ctx = chain_run(emu)
    skipped = emu.push("main")  # [skip ci]: no run
    result = dispatch(emu, ctx=ctx, chain_commit=chain)
    assert result.dispatched and result.superseded_by is None
    (record,) = emu.dispatches
    assert emu.run(record.run_id).head_sha == skipped  # GitHub gives the run the branch head


def test_an_older_chain_or_a_manual_later_attempt_is_not_a_newer_chain(emu: GitHubEmulator) -> None:
    chain = emu.branches["main"]
    older = emu.add_run(161_335, event="push", head_sha="e" * 40)
    older.created_at = "2029-12-31T00:00:00Z"  # before this chain started
    ctx = chain_run(emu)
    emu.push("main")
    manual = emu.add_run(161_335, event="workflow_dispatch", display_title="attempt 3 · 30 epochs")
    manual.created_at = "2030-01-01T00:05:00Z"
    assert dispatch(emu, ctx=ctx, chain_commit=chain).dispatched


def test_a_manual_first_attempt_on_another_commit_is_a_newer_chain(emu: GitHubEmulator) -> None:
    chain = emu.branches["main"]
    ctx = chain_run(emu)
    newer = emu.push("main")
    manual = emu.add_run(
        161_335,
        event="workflow_dispatch",
        head_sha=newer,
        display_title="Continuous training · attempt 1 · 30 epochs",
    )
    manual.created_at = "2030-01-01T00:05:00Z"
    assert dispatch(emu, ctx=ctx, chain_commit=chain).superseded_by == newer


def test_re_running_the_step_does_not_dispatch_twice(emu: GitHubEmulator) -> None:
    first = dispatch(emu)
    second = dispatch(emu)
    assert len(emu.dispatches) == 1 and posts(emu) == 1
    assert not first.reused and second.reused and second.dispatched
    assert second.run_id == first.run_id and second.run_url == first.run_url
    assert "already dispatched" in second.reason


def test_attempt_numbers_match_on_word_boundaries(emu: GitHubEmulator) -> None:
    head = emu.branches["main"]
    emu.add_run(161_335, event="workflow_dispatch", head_sha=head, display_title="attempt 10 · 100 epochs")
    emu.add_run(161_335, event="push", head_sha=head, display_title="attempt 1 · 10 epochs")  # not a dispatch
    result = dispatch(emu, next_attempt=1, inputs={**INPUTS, "attempt": "1"})
    assert result.dispatched and not result.reused and len(emu.dispatches) == 1


def test_an_attempt_dispatched_before_this_run_does_not_count(emu: GitHubEmulator) -> None:
    earlier = emu.add_run(
        161_335,
        event="workflow_dispatch",
        display_title="attempt 2 · 20 epochs",
        status="queued",
        conclusion=None,
    )  # an older chain's attempt 2
    earlier.created_at = "2029-12-31T00:00:00Z"
    ctx = chain_run(emu)
    assert not dispatch(emu, ctx=ctx).reused and len(emu.dispatches) == 1


@pytest.mark.parametrize(
    ("status", "conclusion", "counts"),
    [
        ("queued", None, True),
        ("pending", None, True),
        ("in_progress", None, True),
        ("completed", "success", True),
        ("completed", "cancelled", False),
        ("completed", "failure", False),
        ("completed", "timed_out", False),
    ],
)
def test_only_a_live_or_successful_next_run_counts_as_dispatched(
    emu: GitHubEmulator, status: str, conclusion: str | None, counts: bool
) -> None:
    """A cancelled child (a concurrency group, a person) must not stop the re-run of its parent."""
    ctx = chain_run(emu)
    child = emu.add_run(
        161_335,
        event="workflow_dispatch",
        display_title="attempt 2 · 20 epochs",
        status=status,
        conclusion=conclusion,
    )
    child.created_at = "2030-01-01T00:01:00Z"
    result = dispatch(emu, ctx=ctx)
    assert result.dispatched and result.reused == counts
    assert len(emu.dispatches) == (0 if counts else 1)


# ---------------------------------------------------------------- the context


def env_for(emu: GitHubEmulator, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_API_URL": emu.url,
        "GITHUB_SERVER_URL": emu.server_url,
        "GITHUB_REPOSITORY": emu.full_name,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_WORKFLOW": "Continuous training",
    }
    env.update(extra)
    return env


def test_workflow_from_github_workflow_ref(emu: GitHubEmulator) -> None:
    env = env_for(
        emu, GITHUB_WORKFLOW_REF=f"{emu.full_name}/.github/workflows/{WORKFLOW_FILE}@refs/heads/main"
    )
    ctx = context_from_env(env, TOKEN)
    assert ctx.workflow == WORKFLOW_FILE and ctx.ref == "main" and ctx.run_id == "4242"
    assert ctx.api_url == emu.url and ctx.server_url == emu.server_url
    assert dispatch(emu, ctx=ctx).dispatched
    assert emu.calls("list-workflows") == []


def test_workflow_from_its_name_only_as_under_act(emu: GitHubEmulator) -> None:
    emu.add_workflow(EmulatedWorkflow(2, "CI", ".github/workflows/ci.yml"))
    ctx = context_from_env(env_for(emu, GITHUB_RUN_ID="1"), TOKEN)
    assert ctx.workflow == "Continuous training"
    result = dispatch(emu, ctx=ctx)
    assert result.dispatched and emu.dispatches[0].workflow_id == 161_335
    assert len(emu.calls("list-workflows")) == 1


def test_an_unknown_workflow_name_lists_the_known_ones(emu: GitHubEmulator) -> None:
    ctx = context_from_env(env_for(emu, GITHUB_WORKFLOW="Nope"), TOKEN)
    error = expect_error(emu, ctx=ctx)
    assert "no workflow named 'Nope'" in error.message and "'Continuous training'" in error.message


def test_explicit_workflow_and_ref_win(emu: GitHubEmulator) -> None:
    ctx = context_from_env(
        env_for(emu, GITHUB_WORKFLOW_REF="o/r/.github/workflows/other.yml@refs/heads/x"),
        TOKEN,
        workflow="161335",
        ref="release/1",
    )
    assert ctx.workflow == "161335" and ctx.ref == "release/1"
    emu.push("release/1")
    result = dispatch(emu, ctx=ctx, chain_commit=emu.branches["release/1"])
    assert result.dispatched and emu.dispatches[0].ref == "release/1"


def test_defaults_and_context_errors() -> None:
    ctx = context_from_env(
        {"GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/heads/dev", "GITHUB_WORKFLOW": "W"}, TOKEN
    )
    assert ctx.api_url == "https://api.github.com" and ctx.server_url == "https://github.com"
    assert ctx.ref == "dev" and ctx.run_id is None
    assert TOKEN not in repr(ctx) and TOKEN not in str(ctx)
    with pytest.raises(DispatchError, match="no GitHub token"):
        context_from_env({"GITHUB_REPOSITORY": "o/r"}, "")
    with pytest.raises(DispatchError, match="expected 'owner/name'"):
        context_from_env({"GITHUB_REPOSITORY": "nope"}, TOKEN)
    with pytest.raises(DispatchError, match="must be dispatched on a branch"):
        context_from_env(
            {"GITHUB_REPOSITORY": "o/r", "GITHUB_WORKFLOW": "W", "GITHUB_REF": "refs/tags/v1"}, TOKEN
        )
    with pytest.raises(DispatchError, match="which workflow"):
        context_from_env({"GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/heads/main"}, TOKEN)


def test_workflow_from_ref_parsing() -> None:
    assert workflow_from_ref("o/r/.github/workflows/x.yml@refs/heads/main") == "x.yml"
    assert workflow_from_ref("o/r/.github/workflows/x.yaml@refs/pull/1/merge") == "x.yaml"
    assert workflow_from_ref("") is None
    assert workflow_from_ref("something-else") is None


def test_a_new_chain_on_the_same_commit_is_not_mistaken_for_a_rerun(emu: GitHubEmulator) -> None:
    """An older chain's attempt 2 on this commit predates this run: dispatch; a re-run still reuses."""
    head = emu.branches["main"]
    older = emu.add_run(
        161_335, event="workflow_dispatch", head_sha=head, display_title="attempt 2 · 20 epochs"
    )
    older.created_at = "2020-01-01T00:00:00Z"
    parent = emu.add_run(
        161_335,
        event="workflow_dispatch",
        head_sha=head,
        display_title="attempt 1 · 10 epochs",
        status="in_progress",
        conclusion=None,
    )
    parent.created_at = "2020-01-01T01:00:00Z"
    ctx = dataclasses.replace(make_ctx(emu), run_id=str(parent.id))
    first = dispatch(emu, ctx=ctx)
    assert first.dispatched and not first.reused and len(emu.dispatches) == 1
    assert first.run_id != older.id
    again = dispatch(emu, ctx=ctx)  # the job is re-run: same run id, its child exists
    assert again.reused and again.run_id == first.run_id and len(emu.dispatches) == 1


def test_two_chains_on_one_commit_never_take_each_others_next_attempt(emu: GitHubEmulator) -> None:
    """A push chain and a manual new chain train the same commit at once: each one's attempt 2 names
    the run it resumes in its title (the run-name shows resume-run-id), so a re-run of one chain's run
    does not mistake the other chain's attempt 2 for its own."""
    head = emu.branches["main"]
    push = chain_run(emu)
    manual = emu.add_run(
        161_335,
        event="workflow_dispatch",
        head_sha=head,
        display_title="attempt 1 · first epochs · after run none",
    )
    manual.created_at = "2030-01-01T00:00:30Z"
    theirs = emu.add_run(
        161_335,
        event="workflow_dispatch",
        head_sha=head,
        display_title=f"attempt 2 · 20 epochs · after run {manual.id}",
        status="queued",
        conclusion=None,
    )
    theirs.created_at = "2030-01-01T00:01:00Z"
    mine = dispatch(emu, ctx=push)  # the push chain's run does not take the manual chain's attempt 2
    assert mine.dispatched and not mine.reused and mine.run_id != theirs.id and len(emu.dispatches) == 1
    assert mine.run_id is not None
    child = emu.run(mine.run_id)
    child.display_title = f"attempt 2 · 20 epochs · after run {push.run_id}"  # its run-name
    child.created_at = "2030-01-01T00:02:00Z"
    again = dispatch(emu, ctx=push)  # a re-run of the push chain's run finds its own
    assert again.reused and again.run_id == mine.run_id and len(emu.dispatches) == 1
    manual_rerun = dispatch(emu, ctx=dataclasses.replace(push, run_id=str(manual.id)))
    assert manual_rerun.reused and manual_rerun.run_id == theirs.id  # the manual chain's re-run: its own


def test_a_rerun_matches_the_run_id_its_first_try_dispatched_whatever_the_titles(emu: GitHubEmulator) -> None:
    """The dispatch answered with the new run's id and the ledger kept it: a re-run matches that id
    (and only a run of the same attempt label), not a title."""
    ctx = chain_run(emu)
    child = emu.add_run(
        161_335,
        event="workflow_dispatch",
        display_title="Continuous training",
        status="pending",
        conclusion=None,
    )  # a run-name without any marker
    child.created_at = "2030-01-01T00:01:00Z"
    decoy = emu.add_run(
        161_335,
        event="workflow_dispatch",
        display_title="attempt 2 · 20 epochs",
        status="queued",
        conclusion=None,
    )  # a title that would match, of another chain
    decoy.created_at = "2030-01-01T00:02:00Z"
    found = dispatch_next(
        ctx,
        chain_commit=emu.branches["main"],
        next_attempt=2,
        inputs=dict(INPUTS),
        sleep=Sleeps(),
        known_runs={child.id: "2"},
    )
    assert found.reused and found.run_id == child.id and len(emu.dispatches) == 0
    other_label = dispatch_next(
        ctx,
        chain_commit=emu.branches["main"],
        next_attempt=2,
        inputs=dict(INPUTS),
        sleep=Sleeps(),
        known_runs={child.id: "2.2"},
    )  # dispatched another run
    assert other_label.reused and other_label.run_id == decoy.id  # then the titles decide
    emu.set_run(child.id, status="completed", conclusion="cancelled")
    again = dispatch_next(
        ctx,
        chain_commit=emu.branches["main"],
        next_attempt=2,
        inputs=dict(INPUTS),
        sleep=Sleeps(),
        known_runs={child.id: "2"},
    )
    assert again.dispatched and not again.reused and len(emu.dispatches) == 1  # the known one was cancelled


# ---------------------------------------------------------------- a chain in a called (reusable) workflow


def test_in_a_called_workflow_the_callers_file_is_dispatched(subset: OpenAPISubset) -> None:
    """GitHub sets GITHUB_WORKFLOW_REF to the caller's file in a called workflow: that file is dispatched.
    act sets no GITHUB_WORKFLOW_REF and names the called workflow in GITHUB_WORKFLOW: the reusable
    keeptraining.yml cannot be dispatched, and the error says what to pass."""
    caller = declared_workflow()
    reusable = EmulatedWorkflow(
        id=161_336, name="keeptraining", path=".github/workflows/keeptraining.yml", dispatchable=False
    )
    with GitHubEmulator(subset=subset, workflows=[caller, reusable], tokens={TOKEN}) as emu:
        env = {
            "GITHUB_REPOSITORY": emu.full_name,
            "GITHUB_API_URL": emu.url,
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_WORKFLOW": "keeptraining",
            "GITHUB_RUN_ID": "1",
            "GITHUB_WORKFLOW_REF": f"{emu.full_name}/.github/workflows/{WORKFLOW_FILE}@refs/heads/main",
        }
        ctx = context_from_env(env, TOKEN)
        assert ctx.workflow == WORKFLOW_FILE
        dispatch(emu, ctx=ctx)
        assert [d.workflow_id for d in emu.dispatches] == [caller.id]
        under_act = context_from_env({k: v for k, v in env.items() if k != "GITHUB_WORKFLOW_REF"}, TOKEN)
        error = expect_error(emu, ctx=under_act)
        assert "cannot be dispatched" in error.message
        assert "--env GITHUB_WORKFLOW_REF=" in error.hint
        assert emu.violations == []
