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
