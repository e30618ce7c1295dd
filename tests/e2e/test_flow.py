"""End-to-end runs of the retrain flow on a tiny synthetic corpus, against one Prefect test API.

One accepted run (with a stand-in `package` stage and a DVC push) is shared by the checks that
read its results; the rejection test works on a copy of that project.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.features import featurize_flow, make_task_runner
from flows.retrain import retrain
from ser.config import FlowParams
from tests.conftest import REPO, run, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
PIPELINE = ["ingest", "featurize", "train", "evaluate", "package"]
FLOW = {"retries": 2, "retry_delay_s": 0.1, "workers": 2}
# Stand-in for the BentoML stage: refuses a rejected model, like ser/serving/package.py will.
PACKAGE = {
    "cmd": "python -c \"import json, pathlib; assert json.load(open('reports/gate.json'))['accepted'];"
    " pathlib.Path('dist').mkdir(exist_ok=True); pathlib.Path('dist/model.txt').write_text('packaged')\"",
    "deps": ["models", "reports/gate.json"],
    "outs": ["dist"],
}


def make_project(dest: Path, params: dict) -> Path:
    """A git+DVC copy of the project (as the `project_copy` fixture makes), with a stand-in package stage."""
    for rel in run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split():
        if not rel.startswith(("tests/", "reports/")) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((dest / "dvc.yaml").read_text())
    pipeline["stages"]["package"] = PACKAGE
    pipeline["stages"].pop("report", None)  # corpus EDA: off the retrain path, tested on its own; saves ~15 s
    (dest / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(dest.parent / "remote")], dest)
    return dest


@pytest.fixture(scope="module")
def accepted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A project after one full flow run that passed the gate (3 actors, 1 epoch)."""
    # tests the flow, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    fast = {"features": {"kind": "logmel"}, "model": {"stats_head": False}}
    params = tiny_params(train={"epochs": 1, "patience": 1}, flow=FLOW, **fast)
    params["data"]["synthetic"]["n_actors"] = 3
    params["data"]["classes"] = ["neutral", "happy", "sad", "angry"]
    repo = make_project(tmp_path_factory.mktemp("flow") / "project", params)
    state = retrain(repo=repo, push=True, return_state=True)
    return repo, state


def same_features(a: Path, b: Path) -> None:
    """Assert two feature folders hold equal arrays, index and stats."""
    for split in ("train", "val", "test"):
        with np.load(a / f"{split}.npz") as x, np.load(b / f"{split}.npz") as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{split}.{key}")
    pd.testing.assert_frame_equal(pd.read_csv(a / "index.csv"), pd.read_csv(b / "index.csv"))
    assert json.loads((a / "stats.json").read_text()) == json.loads((b / "stats.json").read_text())


def task_runs(state: object) -> list:
    with get_client(sync_client=True) as client:
        ids = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        return client.read_task_runs(flow_run_filter=ids)


def test_full_run_passes_gate_packages_and_pushes(accepted):
    repo, state = accepted
    assert state.is_completed(), state.message
    result = state.result()
    stages = result["stages"]  # validate_* stages may sit between these, as dvc.yaml grows
    assert [s for s in stages if s in PIPELINE] == PIPELINE and stages[-1] == "package"
    assert result["data_version"].endswith(".dir")
    gate = json.loads((repo / "reports/gate.json").read_text())
    assert gate["accepted"] and gate["champion"] is None
    champion = json.loads((repo / "reports/champion.json").read_text())
    assert champion["split_id"] == gate["candidate"]["split_id"] and champion["model_md5"].endswith(".dir")
    assert (repo / "dist/model.txt").read_text() == "packaged"
    assert any((repo.parent / "remote").rglob("*")), "dvc push sent nothing"
    markdown = Artifact.get("retrain-gate").data
    assert "ACCEPTED" in markdown and "| uar |" in markdown
    assert result["data_version"] in Artifact.get("retrain-run").data
    assert {t.name for t in task_runs(state)} >= {"ingest", "train", "evaluate", "package", "dvc-push"}


def test_run_leaves_repo_as_dvc_repro_would(accepted, tmp_path):
    repo, state = accepted
    assert state.is_completed(), state.message
    assert "up to date" in run(["dvc", "status"], repo).stdout
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) >= set(PIPELINE)
    assert lock["featurize"]["cmd"].startswith("ser featurize")
    # The featurize stage's own command, run as DVC would, writes the same arrays as the flow did.
    cmd = lock["featurize"]["cmd"].replace("data/features", str(tmp_path / "stage"))
    run(["bash", "-c", cmd], repo)
    same_features(repo / "data/features", tmp_path / "stage")


def test_dask_runner_gives_same_features(accepted, tmp_path):
    repo, _ = accepted
    runner = make_task_runner(FlowParams(task_runner="dask", workers=2), local_processes=False)
    flow = featurize_flow.with_options(task_runner=runner)
    flow(
        repo / "params.yaml",
        repo / "data/manifest.csv",
        repo / "data/raw",
        tmp_path / "dask",
        repo / "data/corpora.json",
    )
    same_features(repo / "data/features", tmp_path / "dask")


def test_rejected_model_fails_run_and_packages_nothing(accepted, tmp_path):
    source, _ = accepted
    repo = tmp_path / "project"
    shutil.copytree(source, repo, symlinks=True)
    gate = json.loads((repo / "reports/gate.json").read_text())
    champion = gate["candidate"] | {"model_md5": "champion.dir", "metrics": dict(gate["metrics"], uar=1.0)}
    (repo / "reports/champion.json").write_text(json.dumps(champion))
    shutil.rmtree(repo / "dist")
    state = retrain(repo=repo, overrides=["evaluate.gates.min_uar=1.0"], return_state=True)
    assert state.is_failed()
    assert "min_uar" in state.message and "trails the champion" in state.message
    decision = json.loads((repo / "reports/gate.json").read_text())
    assert not decision["accepted"] and len(decision["reasons"]) == 2
    markdown = Artifact.get("retrain-gate").data
    assert "REJECTED" in markdown and "gate evaluate.gates.min_uar" in markdown and "trails the champion" in markdown
    assert "min_uar: 1.0" in (repo / "params.yaml").read_text()  # overrides land in params.yaml
    assert not (repo / "dist").exists()
    assert "package" not in {t.name for t in task_runs(state)}
    assert json.loads((repo / "reports/champion.json").read_text()) == champion


def _wav(seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.random.default_rng(seed).standard_normal(16000)).astype("float32"), 16000, format="WAV")
    return buf.getvalue()


def test_transient_download_failure_is_retried(project_copy, monkeypatch):
    import hashlib

    from tests.httpserver import LocalServer

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, name in enumerate(["Actor_01/03-01-05-01-01-01-01.wav", "Actor_02/03-01-01-01-01-01-02.wav"]):
            zf.writestr(name, _wav(i))
    body = buf.getvalue()
    repo = project_copy(tiny_params(data={"source": "ravdess"}, flow=FLOW))
    with LocalServer(fail_first_n=1) as server:
        file_url = server.add("/files/speech.zip", body)
        entry = {
            "key": "Audio_Speech_Actors_01-24.zip",
            "size": len(body),
            "links": {"self": file_url},
            "checksum": "md5:" + hashlib.md5(body).hexdigest(),
        }
        record = server.add("/api/records/1", json.dumps({"files": [entry]}).encode(), "application/json")
        monkeypatch.setenv("SER_ZENODO_RECORD_URL", record)
        state = retrain(repo=repo, until="ingest", return_state=True)
        statuses = [r.status for r in server.requests]
    assert state.is_completed(), state.message
    assert statuses[0] == 503 and 200 in statuses[1:]
    (ingest,) = [t for t in task_runs(state) if t.name == "ingest"]
    assert ingest.run_count == 2 and ingest.state.is_completed()
    assert len(pd.read_csv(repo / "data/manifest.csv")) == 2
    assert "ingest" in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
