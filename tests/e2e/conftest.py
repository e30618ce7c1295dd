"""The session's tiny-model service: one `bentoml serve` shared by the HTTP and hostile-input tests.

The tiny untrained model (tests/support.py), with an enrolment head, a statistics head and its calibration profile
`studio`, is packaged into a temporary BENTOML_HOME and
served on a free 127.0.0.1 port; after the session the server's log must hold no traceback
(client errors are one line each, `ser.serving.errors`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Served

REPO = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)
PACKAGE = (
    "import sys; from pathlib import Path; from tests.support import package_tiny_model as p; "
    "print(p(Path(sys.argv[1]), enrolment=True, stats_head=True, profile='studio')['tag'])"
)


def env_for(home: Path) -> dict:
    """The environment of a bentoml command on the store `home`."""
    return {
        **os.environ,
        "BENTOML_HOME": str(home),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "BENTOML_DO_NOT_TRACK": "True",
    }


def sh(cmd: list[str], env: dict, cwd: Path = REPO) -> str:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A BENTOML_HOME holding the packaged tiny model, and its tag."""
    work = tmp_path_factory.mktemp("http")
    tag = sh([sys.executable, "-c", PACKAGE, str(work)], env_for(work / "bentoml")).strip().splitlines()[-1]
    return work / "bentoml", tag


@pytest.fixture(scope="session")
def served(home: tuple[Path, str]) -> Iterator[Served]:
    """The running service (its log is `served.log`)."""
    served = Served("ser.serving.service:EmotionService", env={"BENTOML_HOME": str(home[0])}, cwd=REPO)
    with served:
        yield served
    log = served.full_log
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="session")
def server(served: Served) -> str:
    """Base URL of the session's service."""
    return served.url
