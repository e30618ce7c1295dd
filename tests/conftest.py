"""Shared fixtures: the repository root, the real RAVDESS folder (skip when absent),
tiny params for fast end-to-end runs, a tiny synthetic corpus, and a throw-away
copy of the project in which `dvc repro` can run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAVDESS_DIR = REPO.parent / "shared" / "data" / "ravdess-speech-16k"
BIN = str(Path(sys.executable).parent)


def tiny_params(**overrides: dict) -> dict:
    """params.yaml for a run of seconds: 4 synthetic actors, small model, few epochs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["synthetic"]["n_actors"] = 4
    params["split"].update(val_speakers=1, test_speakers=1)
    params["features"].update(n_mels=32, hop_length=512, workers=1)
    params["augment"]["copies"] = 1
    params["augment"]["pitch"]["rate"] = 0.1
    params["model"].update(filters=[16, 16, 16], lstm_units=[16, 16], dense_units=16)
    params["train"].update(epochs=2, patience=2, batch_size=32, ensemble=1)  # one member: tests stay fast
    params["evaluate"]["gates"]["min_uar"] = 0.0
    for section, values in overrides.items():
        params[section].update(values)
    return params


def bench_argv(corpus: Path, params: Path) -> list[str]:
    """The arguments every benchmark script starts with: the corpus and the params file."""
    return ["--corpus", str(corpus), "--params", str(params)]


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH; return the completed process."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def pytest_configure(config: pytest.Config) -> None:
    """Keep the test run's BentoML model store away from the user's ~/bentoml (subprocesses inherit it)."""
    import tempfile

    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="ser-test-bentoml-")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    """The real corpus beside the checkout; tests using it skip cleanly without it."""
    if not (RAVDESS_DIR / "Actor_01").is_dir():
        pytest.skip(f"real RAVDESS not found at {RAVDESS_DIR}")
    return RAVDESS_DIR


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-actor synthetic corpus (240 clips), generated once per session."""
    from ser.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(root, n_actors=4, seed=0)
    return root


@pytest.fixture
def project_copy(tmp_path: Path):
    """Factory: a git+DVC copy of the project with tiny params and its own local remote."""

    def make(params: dict | None = None) -> Path:
        dest = tmp_path / "project"
        files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
        for rel in files:
            if rel.startswith(("tests/", "reports/")) or rel == "dvc.lock":
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
        (dest / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
        run(["git", "init", "-q"], dest)
        run(["dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "remote")], dest)
        return dest

    return make


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (SQLite) for the whole session: it takes ~20 s to start."""
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    quiet = temporary_settings({PREFECT_SERVER_ANALYTICS_ENABLED: False})  # no telemetry attempts offline
    with quiet, prefect_test_harness(server_startup_timeout=180):
        yield
