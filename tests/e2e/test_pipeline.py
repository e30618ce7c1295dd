"""The whole pipeline through `dvc repro` on a tiny synthetic corpus: outputs, caching,
selective re-runs, push/pull round trip, gates, and bad params that leave outputs intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ser.labels import EMOTIONS
from tests.conftest import REPO, run, tiny_params
from tests.e2e.test_readme import dvc_blocks_script

pytestmark = pytest.mark.slow


def stages_run(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage")}


def committed_copy(project_copy, params: dict | None = None) -> Path:
    """A project copy as a fresh clone has it: committed (experiments need a commit), with this `.venv`."""
    repo = project_copy(params)
    (repo / ".venv").symlink_to(REPO / ".venv")
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fresh clone"], repo)
    return repo


def two_corpora(tmp_path: Path) -> dict:
    """tiny_params on two generated corpora: the synthetic RAVDESS-layout one and a labelled folder (its own
    emotion names mapped onto ours, boredom left out), made as a user would with `ser data synth`."""
    from ser.data.synth_labelled import LABELLED_NAMES

    folder = tmp_path / "labelled"
    run(["ser", "data", "synth", "--out", str(folder), "--actors", "4", "--layout", "labelled"], REPO)
    params = tiny_params()
    spec = {"path": str(folder), "name": "lab", "emotions": LABELLED_NAMES, "language": "en"}
    params["data"]["sources"] = ["synthetic", spec]
    return params


def test_dvc_pipeline_end_to_end(project_copy, tmp_path):
    repo = committed_copy(project_copy, two_corpora(tmp_path))
    # The README's main command: the pipeline as a temporary DVC experiment; the checkout stays clean.
    made = run(["make", "-o", "setup", "run"], repo)  # `setup` is this checkout's, already made
    assert {"ingest", "validate_raw", "report", "featurize", "validate_features", "train", "evaluate", "package"} <= (
        stages_run(made.stdout)
    )
    assert "test accuracy" in made.stdout and run(["git", "status", "--porcelain"], repo).stdout == ""
    latest = (repo / "runs" / "latest").resolve()
    assert {"accuracy", "uar", "gates_passed"} <= json.loads((latest / "reports/metrics.json").read_text()).keys()
    assert (latest / "models/model.keras").is_file() and (latest / "reports/eda/index.html").is_file()
    assert json.loads((latest / "reports/package.json").read_text())["tag"].startswith("ser_emotion:")
    assert not (repo / "dvc.lock").exists()  # the run's record is its experiment, not the workspace
    assert latest.name in run(["dvc", "exp", "show", "--json"], repo).stdout

    # The run becomes the workspace's state; then the README's DVC commands as written: dvc repro (nothing
    # left to run), an experiment with one parameter changed, exp show, metrics and plots.
    run(["dvc", "exp", "apply", latest.name], repo)
    readme = run(["bash", "-euo", "pipefail", "-c", dvc_blocks_script()], repo)
    assert "Ran experiment" in readme.stdout and (repo / "dvc_plots/index.html").is_file()
    assert {"train", "evaluate"} <= stages_run(readme.stdout) and "ingest" not in stages_run(readme.stdout)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert {"accuracy", "uar", "macro_f1", "per_class", "gates_passed"} <= metrics.keys()
    # the enrolment head is trained, saved beside the model and scored beside the single-clip metrics
    assert (repo / "models/enrolment.npz").is_file()
    assert metrics["enrolment"]["reference_clips"] == 4 and len(metrics["enrolment"]["per_draw"]) == 5
    assert 0 <= metrics["enrolment"]["uar"] <= 1
    assert (repo / "models/model.keras").is_file() and (repo / "reports/confusion.png").stat().st_size > 1000
    assert "epoch" in (repo / "reports/train/history.csv").read_text().splitlines()[0]
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert "uar" in shown
    # two corpora: one manifest, per-corpus metrics, both in the model card with their licence
    corpora = {c["name"]: c for c in json.loads((repo / "data/corpora.json").read_text())}
    assert set(corpora) == {"synthetic", "lab"} and corpora["lab"]["excluded"] == {"boredom": 16}
    assert set(metrics["per_corpus"]) == {"synthetic", "lab"}
    assert metrics["per_corpus"]["lab"]["classes_in_corpus"] == sorted(
        {"neutral", "happy", "sad", "angry", "fearful", "disgust"}, key=EMOTIONS.index
    )
    card = (repo / "reports/model_card.md").read_text()
    assert "`synthetic`" in card and "`lab`" in card and "unknown" in card

    # Nothing changed: nothing runs.
    assert stages_run(run(["dvc", "repro"], repo).stdout) == set()

    # A corpus's entry changes: ingest runs again but keeps the unchanged corpus as it was.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sources"][1]["language"] = "de"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = run(["dvc", "repro", "ingest"], repo)
    assert "synthetic: unchanged since the last run" in again.stdout + again.stderr
    assert "de" in {c["language"] for c in json.loads((repo / "data/corpora.json").read_text())}
    params["data"]["sources"][1]["language"] = "en"  # and back: the outputs are as the lock has them again
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "ingest"], repo)
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
    assert (repo / "models/model.keras").is_file() and len(list((repo / "data/raw").rglob("*.wav"))) == 240 + 96
    assert "up to date" in run(["dvc", "status"], repo).stdout


def fast_params(**overrides: dict) -> dict:
    """tiny_params on the fast log-mel features without the stats head, then `overrides` (section updates)."""
    params = tiny_params(features={"kind": "logmel"}, model={"stats_head": False})
    for section, values in overrides.items():
        params[section].update(values)
    return params


def test_gate_and_bad_params_fail_clearly_and_keep_outputs(project_copy):
    # tests the stages' failures, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    repo = project_copy(fast_params())
    run(["dvc", "repro"], repo)
    features_before = (repo / "data/features/train.npz").read_bytes()

    for section, values, message in [
        ("data", {"classes": ["neutral", "joy"]}, "data.classes: Value error, unknown class(es) ['joy']"),
        ("split", {"val_speakers": 2, "test_speakers": 2}, "split.val_speakers + split.test_speakers = 4 leaves no"),
        ("features", {"n_mels": -8}, "features.n_mels: Input should be greater than or equal to 8"),
    ]:
        params = fast_params(**{section: values})
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        failed = run(["dvc", "repro"], repo, check=False)
        assert failed.returncode != 0
        assert message in failed.stderr + failed.stdout
        assert (repo / "data/features/train.npz").read_bytes() == features_before

    params = fast_params(
        evaluate={"gates": {"min_uar": 1.0, "min_accuracy": 0, "min_macro_f1": 0, "min_class_recall": 0}}
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(["dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    assert "gate evaluate.gates.min_uar: uar" in failed.stderr + failed.stdout
    assert json.loads((repo / "reports/metrics.json").read_text())["gates_passed"] is False
