"""Small builders shared by the engine tests: a repository with a fake training script."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def fake_repo(root: Path, config: str = "") -> Path:
    """A repository with ml/fake_train.py and, optionally, a .keeptraining.yml."""
    code = root / "ml"
    code.mkdir(parents=True)
    shutil.copy(FIXTURES / "fake_train.py", code / "fake_train.py")
    base = "code_path: ml\ntrain_command: python fake_train.py\nbackend: local\n"
    (root / ".keeptraining.yml").write_text(base + config)
    return root


def read_outputs(path: Path) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT file written with heredoc delimiters."""
    outputs: dict[str, str] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        name, _, delimiter = lines[i].partition("<<")
        end = lines.index(delimiter, i + 1)
        outputs[name] = "\n".join(lines[i + 1 : end])
        i = end + 1
    return outputs
