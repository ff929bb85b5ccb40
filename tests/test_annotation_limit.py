"""GitHub shows at most 10 warning and 10 error annotations per step: past them, keeptraining prints
plain lines and lists every annotation of that level in the step summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptraining.cli import main
from keeptraining.output import workflow_commands as gha
from workflow_commands import obeyed


def test_past_ten_warnings_the_rest_are_log_lines_and_the_summary_lists_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for number in range(1, 13):
        gha.warn(f"warning number {number}", title="Check")
    gha.warn("a hostile <script>alert(1)</script> | *text*", title="Odd")
    gha.annotate("error", "the one error")
    out, err = capsys.readouterr()
    commands = obeyed(out)
    assert [c.data for c in commands if c.name == "warning"] == [f"warning number {n}" for n in range(1, 11)]
    assert [c.data for c in commands if c.name == "error"] == ["the one error"]
    assert "warning: Check: warning number 11" in err and "warning: Check: warning number 12" in err
    text = summary.read_text()
    assert "### All warnings of this step" in text and "GitHub shows the first 10 warnings" in text
    assert [line for line in text.splitlines() if line.startswith("- ")] == [
        f"- Check\\: warning number {n}" for n in range(1, 13)
    ] + ["- Odd\\: a hostile &lt;script&gt;alert\\(1\\)&lt;/script&gt; \\| \\*text\\*"]
    assert "error" not in text.lower(), "errors stayed under the limit: all of them are annotations"


def test_each_command_is_a_step_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    for _ in range(10):
        gha.warn("before")
    main(["validate", "--config", str(tmp_path / "absent.yml")])  # a new step: counts from zero
    gha.warn("after the command")
    assert [c.data for c in obeyed(capsys.readouterr().out) if c.name == "warning"][-1] == "after the command"
