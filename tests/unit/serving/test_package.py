"""`ser.serving.package`: only an accepted model reaches the BentoML store, with its metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser.serving.package import PackageError, build_metadata, check_accepted, dvc_hashes, plain
from tests.support import tiny_params

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
from pathlib import Path
from tests.support import package_tiny_model
import bentoml
work = Path(sys.argv[1])
summary = package_tiny_model(work)
info = bentoml.models.get("ser_emotion:latest").info
print(json.dumps({"summary": summary, "metadata": info.metadata, "labels": info.labels}))
"""


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_refuses_failed_gates(tmp_path: Path) -> None:
    metrics = write(tmp_path / "metrics.json", {"uar": 0.1, "gates_passed": False})
    with pytest.raises(PackageError, match="gates_passed is False"):
        check_accepted(metrics, None)
    with pytest.raises(PackageError, match="metrics not found"):
        check_accepted(tmp_path / "missing.json", None)


def test_refuses_rejected_challenger(tmp_path: Path) -> None:
    metrics = write(tmp_path / "metrics.json", {"uar": 0.6, "gates_passed": True})
    gate = write(tmp_path / "gate.json", {"accepted": False, "reason": "UAR 0.60 trails the champion's 0.70"})
    with pytest.raises(PackageError, match="trails the champion"):
        check_accepted(metrics, gate)
    assert check_accepted(metrics, write(gate, {"accepted": True}))["uar"] == 0.6
    assert check_accepted(metrics, tmp_path / "absent.json")["gates_passed"] is True


def test_dvc_hashes_and_plain(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    outs:\n    - path: data/raw\n      md5: abc.dir\n"
        "  train:\n    outs:\n    - path: models\n      md5: def.dir\n"
    )
    assert dvc_hashes(lock, ("data/raw", "models")) == {"data/raw": "abc.dir", "models": "def.dir"}
    assert dvc_hashes(tmp_path / "none.lock", ("models",)) == {"models": None}
    assert plain({"a": None, "b": [1, None], "c": {"d": None, "e": 2}}) == {"b": [1], "c": {"e": 2}}


def test_metadata_carries_the_corpora_and_the_licence_they_pass_on() -> None:
    corpora = [
        {"name": "ravdess", "kind": "ravdess", "licence": "CC-BY-NC-SA-4.0", "licence_url": None, "use": "all"},
        {"name": "emodb", "kind": "emodb", "licence": "CC0-1.0", "clips": {"train": 300, "val": 40, "test": 40}},
    ]
    preprocess = {"classes": ["sad"], "features": {}, "shape": [1, 1], "mean": [0], "variance": [1], "corpora": corpora}
    meta = build_metadata(tiny_params(), preprocess, {"uar": 0.5, "per_corpus": {"emodb": {"uar": 0.4}}}, {}, None)
    assert [c["name"] for c in meta["corpora"]] == ["ravdess", "emodb"] and "licence_url" not in meta["corpora"][0]
    assert meta["licence"]["licences"] == {"ravdess": "CC BY-NC-SA 4.0", "emodb": "CC0 1.0"}
    assert meta["licence"]["non_commercial"] and meta["licence"]["share_alike"] and not meta["licence"]["permissive"]
    assert "no commercial use" in meta["licence"]["summary"] and meta["metrics"]["per_corpus"]["emodb"]["uar"] == 0.4


def test_package_saves_model_with_metadata(tmp_path: Path) -> None:
    """Runs in a subprocess so BENTOML_HOME (a tmp dir) takes effect whatever this process imported."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    meta, summary = out["metadata"], out["summary"]
    assert summary["tag"].startswith("ser_emotion:") and summary["version"]
    assert json.loads((tmp_path / "package.json").read_text())["tag"] == summary["tag"]
    assert meta["classes"] == ["neutral", "happy", "sad"]
    assert meta["features"]["n_mels"] == 16 and len(meta["norm"]["mean"]) == 16
    assert meta["serve"]["max_duration_s"] == 10
    assert meta["metrics"]["uar"] == 0.5 and meta["params"]["train"]["epochs"] == 40
    assert set(meta["dvc"]) <= {"data/raw", str(tmp_path / "models")}
    assert "git_commit" in meta or summary["git_commit"] is None
    assert out["labels"]["gates"] == "passed" and out["labels"]["licence"] == "permissive"  # synthetic audio
    assert [c["kind"] for c in meta["corpora"]] == ["synthetic"]
    assert meta["licence"]["licences"] == {"synthetic": "generated"}
    stored = list((tmp_path / "bentoml" / "models" / "ser_emotion").glob("*/model.keras"))
    assert len(stored) == 1 and (stored[0].parent / "preprocess.json").is_file()
