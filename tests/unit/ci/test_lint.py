"""`make lint`, inside the suite so CI's `.ci/run` runs it too: ruff, the formatter, the import
architecture (layers, no cycles: import-linter on pyproject's contracts) and the type checker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
PATHS = ["ser", "flows", "tests", "bench", "scripts"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PATHS],
        ["ruff", "format", "--check", *PATHS],
        ["lint-imports"],
        ["mypy"],
    ],
    ids=["ruff", "ruff-format", "import-linter", "mypy"],
)
def test_lint(command):
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # lint-imports finds bench (not installed) from the root
    proc = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
