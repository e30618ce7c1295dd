"""The cross-corpus matrix (bench/crosscorpus_bench.py) on two generated corpora: a RAVDESS-layout one and a
labelled folder with its own emotion names, with the linear head and the whole pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from bench import crosscorpus_bench
from bench.crosscorpus_bench import restricted, roles_for
from ser.data.synth_labelled import LABELLED_NAMES, generate_labelled_corpus
from tests.conftest import tiny_params


@pytest.fixture(scope="module")
def two(tiny_corpus, tmp_path_factory):
    """A labelled folder of 4 speakers (beside the tiny RAVDESS-layout corpus) and tiny params."""
    root = tmp_path_factory.mktemp("two")
    generate_labelled_corpus(root / "lab", n_speakers=4, seed=5)
    # tests the harness, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    fast = {"features": {"kind": "logmel"}, "model": {"stats_head": False}}
    params = tiny_params(split={"val_speakers": 1, "test_speakers": 1}, **fast)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_skips_cleanly_without_the_corpora(tmp_path, capsys):
    assert crosscorpus_bench.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: corpus folder(s) not found" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_roles_train_on_the_set_and_score_the_others_validation_speakers():
    groups = {"test": ["a:1", "b:1"], "val": ["a:2", "b:2"], "select": [], "train": ["a:3", "b:3"]}
    corpus_of = {s: s.split(":")[0] for g in groups.values() for s in g}
    roles = roles_for(groups, corpus_of, {"a"})
    assert roles == {"a:1": "test", "b:1": "test", "a:2": "val", "b:2": "select", "a:3": "train"}
    assert roles_for(groups, corpus_of, {"a", "b"})["b:3"] == "train"


def test_a_restricted_answer_renormalises_over_the_kept_classes():
    classes = ["neutral", "calm", "happy"]
    probs = np.array([[0.2, 0.7, 0.1], [0.05, 0.8, 0.15], [0.3, 0.3, 0.4]])  # calm wins unrestricted
    y = np.array([0, 2, 1])  # the calm row is not scored
    m = restricted(probs, y, classes, ["neutral", "happy"])
    assert m["n_test"] == 2 and m["accuracy"] == 1.0 and set(m["predicted_share"]) == {"neutral", "happy"}


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "pipeline"])
def test_the_matrix_on_two_generated_corpora(two, tiny_corpus, tmp_path, head):
    out = tmp_path / "out"
    lab = {"path": str(two / "lab"), "name": "lab", "emotions": LABELLED_NAMES}
    corpora = ["--corpus", str(tiny_corpus), "--corpus", json.dumps(lab)]
    argv = [*corpora, "--params", str(two / "params.yaml"), "--folds", "2", "--head", head]
    argv += ["--out", str(out), "--cache", str(tmp_path / "cache"), "--set", "train.epochs=1"]
    argv += ["--set", "model.stats_head=true"]  # what calibration re-standardises (checked below)
    assert crosscorpus_bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["trainings"]) == {"ravdess", "lab", "ravdess+lab"}
    assert res["shared_classes"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert [c["excluded"] for c in res["corpora"]] == [{}, {"boredom": 16}]  # the mapping's null: left out
    for key, t in res["trainings"].items():
        trained = set(key.split("+"))
        assert len(t["runs"]) == 2 and set(t["cells"]["test"]) == {"ravdess", "lab"}  # every test corpus, always
        # a corpus the model did not train on is scored on its validation speakers, never trained on
        assert set(t["cells"].get("select", {})) == {"ravdess", "lab"} - trained
        assert set(t["cells"]["val"]) == trained
        for cell in t["cells"]["test"].values():
            assert 0 <= cell["shared"]["uar"]["mean"] <= 1 and cell["own"]["uar"]["n"] == 2
            assert 0 <= cell["four"]["uar"]["mean"] <= 1  # both corpora have neutral, happy, sad and angry
    assert res["trainings"]["lab"]["classes"] == res["shared_classes"]  # the labelled corpus has no calm
    md = (out / "results.md").read_text()
    assert "### Test speakers, shared classes" in md and "| ravdess+lab |" in md
    assert (out / "probs-ravdess+lab.npz").is_file() and "### Test speakers, neutral / happy / sad / angry" in md
    # the same command again resumes from the folds kept as they ended: nothing is trained, the same cells
    (out / "results.json").unlink()
    assert crosscorpus_bench.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["trainings"] == res["trainings"]
    if head == "pipeline":  # calibration on the statistics head's folds, and on the whole model's kept above
        calibrated(argv[: argv.index("--head")] + argv[argv.index("--cache") :], tmp_path, "out")


def calibrated(common: list[str], tmp_path, runs: str) -> None:
    """bench.calibration_bench on the same folds: plain and every method at every N and skew, per cell; `--runs` on
    the whole model's folds the matrix kept."""
    from bench import calibration_bench

    for extra in ([], ["--runs", runs, "--train", "ravdess"]):
        out = tmp_path / ("whole" if extra else "head")
        assert calibration_bench.main([*common, "--draws", "1", *extra, "--out", str(out)]) == 0
        res = json.loads((out / "results.json").read_text())
        cells = {tuple(k.split("|")[:3]) for k in res["summary"]}
        assert ("ravdess", "lab", "select") in cells and ("ravdess", "ravdess", "test") in cells
        methods = {**calibration_bench.METHODS, **(calibration_bench.SHARES if extra else {})}
        for n in calibration_bench.SIZES:
            for skew in calibration_bench.SKEWS:
                for method in methods:
                    got = res["summary"][f"ravdess|lab|test|{method}|{n}|{skew}"]["own"]
                    assert got["n"] == 2 and 0 <= got["mean"] <= 1
        assert res["choice"]["chosen"] in calibration_bench.METHODS
        assert ("share_chosen" in res["choice"]) == bool(extra)
        assert "| ravdess → lab | select | 30 | two |" in (out / "results.md").read_text()
