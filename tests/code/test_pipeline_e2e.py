"""The whole pipeline through `dvc repro` on a tiny synthetic corpus: outputs, caching,
selective re-runs, push/pull round trip, gates, and bad params that leave outputs intact."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.conftest import run, tiny_params

pytestmark = pytest.mark.slow


def stages_run(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage")}


def test_dvc_pipeline_end_to_end(project_copy):
    repo = project_copy()
    first = run(["dvc", "repro"], repo)
    assert {"ingest", "validate_raw", "report", "featurize", "validate_features", "train", "evaluate"} <= stages_run(
        first.stdout
    )
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert {"accuracy", "uar", "macro_f1", "per_class", "gates_passed"} <= metrics.keys()
    assert (repo / "models/model.keras").is_file() and (repo / "reports/confusion.png").stat().st_size > 1000
    assert "epoch" in (repo / "reports/train/history.csv").read_text().splitlines()[0]
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert "uar" in shown

    # Nothing changed: nothing runs.
    assert stages_run(run(["dvc", "repro"], repo).stdout) == set()

    # One augmentation parameter: featurize, train, evaluate re-run; ingest does not.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["augment"]["noise"]["rate"] = 0.9
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = stages_run(run(["dvc", "repro"], repo).stdout)
    assert not ran & {"ingest", "validate_raw", "report"}
    assert {"featurize", "validate_features", "train", "evaluate"} <= ran

    # push, wipe cache and outputs, pull: everything comes back and is up to date.
    run(["dvc", "push"], repo)
    for path in ("data/raw", "data/features", "models", ".dvc/cache"):
        shutil.rmtree(repo / path)
    (repo / "data/manifest.csv").unlink()
    run(["dvc", "pull"], repo)
    assert (repo / "models/model.keras").is_file() and len(list((repo / "data/raw").rglob("*.wav"))) == 240
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_gate_and_bad_params_fail_clearly_and_keep_outputs(project_copy):
    repo = project_copy()
    run(["dvc", "repro"], repo)
    features_before = (repo / "data/features/train.npz").read_bytes()

    for section, values, message in [
        ("data", {"classes": ["neutral", "joy"]}, "data.classes: Value error, unknown class(es) ['joy']"),
        ("split", {"val_actors": 2, "test_actors": 2}, "split.val_actors + split.test_actors = 4 leaves no actor"),
        ("features", {"n_mels": -8}, "features.n_mels: Input should be greater than or equal to 8"),
    ]:
        params = tiny_params(**{section: values})
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        failed = run(["dvc", "repro"], repo, check=False)
        assert failed.returncode != 0
        assert message in failed.stderr + failed.stdout
        assert (repo / "data/features/train.npz").read_bytes() == features_before

    params = tiny_params(evaluate={"gates": {"min_uar": 1.0, "min_accuracy": 0, "min_macro_f1": 0,
                                             "min_class_recall": 0}})  # fmt: skip
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(["dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    assert "gate evaluate.gates.min_uar: uar" in failed.stderr + failed.stdout
    assert json.loads((repo / "reports/metrics.json").read_text())["gates_passed"] is False
