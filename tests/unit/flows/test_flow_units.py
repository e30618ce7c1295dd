"""Fast checks of the retrain flow's parts: the gate decision, the pipeline reader, overrides, runners."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from prefect.states import Failed

from flows import gate as gates
from flows.features import make_task_runner, parse_featurize_cmd
from flows.pipeline import apply_overrides, gate_last, read_pipeline
from flows.retrain import _transient, main
from ser.config import EvaluateParams, FlowParams, GateParams, ParamsError
from tests.conftest import REPO, run

METRICS = {"accuracy": 0.6, "uar": 0.55, "macro_f1": 0.5, "min_class_recall": 0.2, "per_class": {}}
CANDIDATE = {"model_md5": "new.dir", "split_id": "sha256:abc", "data_version": "d.dir"}


def champion(uar: float, split: str = "sha256:abc") -> dict:
    return {"model_md5": "old.dir", "split_id": split, "metrics": dict(METRICS, uar=uar)}


def test_absolute_gates_name_metric_and_threshold():
    params = EvaluateParams(gates=GateParams(min_uar=0.6, min_class_recall=0.1))
    decision = gates.decide(METRICS, params, None, CANDIDATE)
    assert not decision["accepted"]
    assert decision["reasons"] == ["gate evaluate.gates.min_uar: uar 0.550 is below 0.600"]
    assert decision["notes"] == ["no champion yet: absolute gates only"]


def test_champion_within_tolerance_passes_and_worse_fails():
    params = EvaluateParams(champion_tolerance=0.02)
    assert gates.decide(METRICS, params, champion(0.56), CANDIDATE)["accepted"]
    rejected = gates.decide(METRICS, params, champion(0.60), CANDIDATE)
    assert not rejected["accepted"]
    assert "uar 0.550 trails the champion's 0.600" in rejected["reasons"][0]
    markdown = gates.gate_markdown(rejected)
    assert "REJECTED" in markdown and "| uar | 0.550 | 0.000 | 0.600 | 0.580 |" in markdown


def test_champion_on_another_split_is_not_compared():
    decision = gates.decide(METRICS, EvaluateParams(), champion(0.99, "sha256:other"), CANDIDATE)
    assert decision["accepted"] and "another test split" in decision["notes"][0]


def test_split_id_ignores_order_and_confusion_rows(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"clip_id": ["x", "y"], "actual": ["sad", "calm"], "predicted": ["sad", "sad"]}).to_csv(a)
    pd.DataFrame({"clip_id": ["y", "x"], "actual": ["calm", "sad"], "predicted": ["sad", "sad"]}).to_csv(b)
    assert gates.split_id(a) == gates.split_id(b)
    rows = gates.confusion_rows(a, ["calm", "sad"])
    assert rows == [{"actual": "calm", "calm": 0, "sad": 1}, {"actual": "sad", "calm": 0, "sad": 1}]


def test_featurize_cmd_parsing():
    paths = parse_featurize_cmd("ser featurize --params p.yaml --manifest m.csv --audio-dir raw --out feats")
    want = {"params": "p.yaml", "manifest": "m.csv", "audio_dir": "raw", "out": "feats", "corpora": "data/corpora.json"}
    assert paths == want
    stage = parse_featurize_cmd("ser featurize --manifest m.csv --corpora c.json")  # the dvc.yaml stage's form
    assert stage is not None and stage["corpora"] == "c.json"
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["featurize"]["cmd"]
    assert parse_featurize_cmd(real) is not None  # the flow runs the pipeline's own stage on its task runner
    assert parse_featurize_cmd("ser featurize --out f --exclude reports/bad.csv") is None  # unknown: DVC runs it
    assert parse_featurize_cmd("python other.py") is None


def test_task_runner_choice():
    assert type(make_task_runner(FlowParams())).__name__ == "ThreadPoolTaskRunner"
    assert type(make_task_runner(FlowParams(task_runner="processes"))).__name__ == "ProcessPoolTaskRunner"
    dask = make_task_runner(FlowParams(task_runner="dask", dask_address="tcp://10.0.0.1:8786"))
    assert type(dask).__name__ == "DaskTaskRunner" and dask.address == "tcp://10.0.0.1:8786"


def test_only_network_trouble_is_retried():
    busy = Failed(message="Task run encountered an exception StageFailed: error: HTTP 503 Service Unavailable")
    assert _transient(None, None, busy)
    assert not _transient(None, None, Failed(message="error: data.source: folder /x does not exist"))


def test_overrides_written_like_dvc_exp_run(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(params, ["train.epochs=3", "data.source=ravdess"])
    text = params.read_text()
    assert "epochs: 3" in text and "source: ravdess" in text and "# Every knob" in text  # comments kept
    before = params.read_text()
    with pytest.raises(ParamsError, match="train.epochs"):
        apply_overrides(params, ["train.epochs=0"])
    with pytest.raises(ParamsError):
        apply_overrides(params, ["train.no_such_key=1"])
    assert params.read_text() == before


PIPELINE_YAML = """
stages:
  publish: {cmd: ser publish, deps: [bentos], outs: [published.txt]}
  package: {cmd: ser package, deps: [models, reports/metrics.json], outs: [bentos]}
  ingest: {cmd: ser ingest, outs: [data/raw]}
  validate_raw: {cmd: ser validate raw, deps: [data/raw], outs: [data/validated.csv]}
  featurize:
    cmd: ser featurize --params params.yaml --manifest data/validated.csv --audio-dir data/raw --out data/features
    deps: [data/raw, data/validated.csv]
    outs: [data/features]
  train: {cmd: ser train, deps: [data/features], outs: [models]}
  evaluate:
    cmd: ser evaluate
    deps: [models, data/features]
    metrics: [reports/metrics.json: {cache: false}]
    outs: [reports/predictions.csv: {cache: false}]
"""


def test_pipeline_order_is_topological_then_as_declared(tmp_path):
    (tmp_path / "dvc.yaml").write_text(PIPELINE_YAML)
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    stages = read_pipeline(tmp_path)
    assert [s.name for s in stages] == [
        "ingest",
        "validate_raw",
        "featurize",
        "train",
        "evaluate",
        "package",
        "publish",
    ]
    evaluate = stages[4]
    assert [o.path for o in evaluate.outs if o.metric] == ["reports/metrics.json"]
    assert parse_featurize_cmd(stages[2].cmd)["manifest"] == "data/validated.csv"


def test_gate_needing_stages_move_after_the_gate(tmp_path):
    text = PIPELINE_YAML.replace("deps: [models, reports/metrics.json]", "deps: [models]")  # no edge to evaluate
    (tmp_path / "dvc.yaml").write_text(text)
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    stages = read_pipeline(tmp_path)
    head = ["ingest", "validate_raw", "featurize", "train"]
    assert [s.name for s in stages] == [*head, "package", "publish", "evaluate"]  # as declared, where free
    assert [s.name for s in gate_last(stages, gates.GATE_FILE)] == [*head, "evaluate", "package", "publish"]


def test_the_projects_pipeline_runs_core_stages_in_order():
    names = [s.name for s in gate_last(read_pipeline(REPO), gates.GATE_FILE)]
    core = [n for n in names if n in ("ingest", "featurize", "train", "evaluate")]
    assert core == ["ingest", "featurize", "train", "evaluate"]
    assert "package" not in names or names.index("package") > names.index("evaluate")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "-S KEY=VALUE" in out and "serve" in out and "--until" in out


def test_flow_can_be_deployed_on_a_schedule():
    from flows.retrain import retrain

    deployment = retrain.to_deployment(name="weekly", cron="0 3 * * 1", parameters={"repo": "/srv/ser", "push": True})
    assert deployment.entrypoint == "flows/retrain.py:retrain"
    assert deployment.schedules[0].schedule.cron == "0 3 * * 1"
