"""The RAVDESS benchmark harness (bench/ravdess_bench.py), run end to end on a tiny synthetic corpus."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from bench import ravdess_bench
from ser.labels import EMOTIONS
from tests.conftest import bench_argv, tiny_params


def test_skips_cleanly_without_the_corpus(tmp_path, capsys):
    assert ravdess_bench.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_folds_seeds_article_and_cost(tiny_corpus, tmp_path):
    params = tmp_path / "params.yaml"
    # tests the harness, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    fast = {"features": {"kind": "logmel"}, "model": {"stats_head": False}}
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 1}, **fast)))
    out = tmp_path / "out"
    argv = [
        *bench_argv(tiny_corpus, params),
        "--folds",
        "2",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--set",
        "model.pooling=attention",
    ]
    assert ravdess_bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    runs = res["speaker"]["runs"]
    assert len(runs) == 4 and {(r["fold"], r["seed"]) for r in runs} == {(0, 42), (0, 43), (1, 42), (1, 43)}
    tested = sorted(a for r in runs if r["seed"] == 42 for a in r["test_speakers"])
    assert tested == [f"ravdess:{a:02d}" for a in range(1, 5)]  # every speaker tested exactly once
    assert all(not set(r["val_speakers"]) & set(r["test_speakers"]) for r in runs)
    assert res["speaker"]["classes"] == list(EMOTIONS)  # data.classes [] : the corpus's, all eight here
    assert res["params"]["model"]["pooling"] == "attention"  # --set reached the model
    for block in (res["speaker"], res["speaker"]["seed_ensemble"]):
        assert 0 <= block["uar"]["mean"] <= 1 and block["uar"]["n"] == 2 if block is not res["speaker"] else 4
    assert set(res["speaker"]["per_class_recall"]) <= set(EMOTIONS)
    # Calibration and class balance per run, summarised: a model flooding one class shows in the share.
    assert 0 <= res["speaker"]["test_ece"]["mean"] <= 1 and res["speaker"]["test_ece"]["n"] == 4
    assert sum(res["speaker"]["predicted_share"].values()) == pytest.approx(1.0)
    article = res["article"]
    assert len(article["runs"]) == 2 and "calm" not in article["per_class_recall"]
    cost = res["cost"]
    assert cost["features"]["max_abs_db_diff"] <= 1e-3 and cost["features"]["ratio"] > 0
    assert cost["model_parameters"] > 0 and cost["inference_ms_per_clip"]["single"] > 0
    assert cost["training"]["seconds_per_epoch_median"] > 0
    md = (out / "results.md").read_text()
    assert "(a) speaker-independent" in md and "(b) the article's protocol" in md and "(c) cost" in md
    assert "Test ECE " in md and "predicted-class share (%): neutral" in md
    assert res["host"]["cpu_model"] and f"CPUs ({res['host']['cpu_model']})" in md  # timings name their CPU
    # A second run reuses the cached features (same corpus and feature/augment params).
    assert len(list((tmp_path / "cache").glob("features-*.npz"))) == 1
    # --protocols cost re-measures an earlier run's cost on this machine, without training.
    again_argv = [
        *bench_argv(tiny_corpus, params),
        "--protocols",
        "cost",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
    ]
    assert ravdess_bench.main(again_argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["speaker"] == res["speaker"] and again["cost"]["training"] == cost["training"]
    host = again["cost"]["remeasured"]["host"]
    assert f"re-measured at commit {host['commit']} on {host['cpu_model']}" in (out / "results.md").read_text()


def test_speaker_folds_never_train_on_test_speakers(tiny_corpus, tmp_path):
    """Every scored clip belongs to the fold's test speakers; validation speakers come from the rest."""
    from bench.protocols import prepare, speaker_folds
    from ser.config import parse_params
    from ser.overrides import override

    params = override(parse_params(tiny_params(train={"epochs": 1})), ["augment.copies=0"])
    corpus = prepare(tiny_corpus, params)
    speaker_of = dict(zip(corpus.clips["clip_id"], corpus.clips["speaker"], strict=True))
    for r in speaker_folds(corpus, params, folds=2, seeds=1):
        assert {speaker_of[c] for c in r["test_clips"]} == set(r["test_speakers"])
        assert (
            len(r["test_clips"])
            == len(set(r["test_clips"]))
            == int(pd.Series(list(speaker_of.values())).isin(r["test_speakers"]).sum())
        )  # originals only, no augmented copy
        assert not set(r["val_speakers"]) & set(r["test_speakers"])
        assert set(r["test_corpus"]) == {"ravdess"} and len(r["test_corpus"]) == len(r["test_clips"])


def test_select_speakers_are_held_out_and_compared_pairwise(tiny_corpus, tmp_path, capsys):
    """--select-speakers scores speakers that neither training nor early stopping saw; compare_runs pairs runs.

    With model.stats_head, each averaged model is also scored alone."""
    from bench import compare_runs

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 1})))
    out = tmp_path / "out"
    argv = [
        *bench_argv(tiny_corpus, params),
        "--folds",
        "4",
        "--only-folds",
        "0,1",
        "--protocols",
        "speaker",
        "--select-speakers",
        "1",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--set",
        "model.stats_head=true",
    ]
    assert ravdess_bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    parts = res["speaker"]["parts"]
    assert list(parts) == ["cnn_lstm", "stats_head"] and all(p["test_uar"]["n"] == 2 for p in parts.values())
    assert all(r["stats_head_C"] > 0 for r in res["speaker"]["runs"])
    assert "| stats_head |" in (out / "results.md").read_text()
    for r in res["speaker"]["runs"]:
        held = [r["test_speakers"], r["val_speakers"], r["select_speakers"]]
        assert [len(h) for h in held] == [1, 1, 1] and len({a for h in held for a in h}) == 3
        assert 0 <= r["select_uar"] <= 1
    assert res["speaker"]["select_uar"]["n"] == 2
    md = (out / "results.md").read_text()
    assert "selection UAR (held-out speakers" in md and "| select speakers | select UAR |" in md
    # the run table names each run's speakers by corpus
    run = res["speaker"]["runs"][0]
    assert f"| ravdess {run['test_speakers'][0].split(':')[1]} | ravdess {run['val_speakers'][0].split(':')[1]} |" in md
    # A run compared with itself: every paired difference is zero, no pair favours either side.
    assert compare_runs.main([str(out / "results.json")] * 2) == 0
    report = capsys.readouterr().out
    assert "2 paired (fold, seed) runs" in report and "| select_uar |" in report and "+0.0 ± 0.0 | 0/0 |" in report
    other = json.loads((out / "results.json").read_text())
    other["speaker"]["runs"][0]["select_uar"] += 0.1
    diff = compare_runs.paired(res, other)["select_uar"]
    assert diff["diff_mean"] == pytest.approx(0.05) and (diff["other_better"], diff["base_better"]) == (1, 0)


def test_select_speakers_that_leave_no_training_speaker_are_refused(tiny_corpus):
    from bench.protocols import prepare, speaker_folds
    from ser.config import parse_params

    params = parse_params(tiny_params(train={"epochs": 1}))
    with pytest.raises(ValueError, match=r"speakers of ravdess .* split.val_speakers \(1\) \+ select speakers \(2\)"):
        next(speaker_folds(prepare(tiny_corpus, params), params, folds=4, select_speakers=2))


def test_fold_speakers_test_every_speaker_once_and_keep_the_groups_apart():
    from bench.protocols import fold_speakers
    from ser.config import parse_params

    params = parse_params({})
    speakers = [f"ravdess:{a:02d}" for a in range(1, 25)]
    clips = pd.DataFrame(
        {"corpus": "ravdess", "speaker": speakers, "gender": ["male", "female"] * 12}  # RAVDESS: odd actors male
    )
    tested = []
    for _, groups in fold_speakers(clips, params, folds=6, select_speakers=2):
        assert sorted(a for group in groups.values() for a in group) == speakers  # a partition of the speakers
        assert (len(groups["test"]), len(groups["val"]), len(groups["select"])) == (4, params.split.val_speakers, 2)
        tested.append(groups["test"])
    assert sorted(a for fold in tested for a in fold) == speakers
    # the folds of the actor-numbered protocol, unchanged (every report before speakers replaced actors used them)
    folds = [[2, 11, 16, 23], [5, 9, 14, 20], [8, 15, 19, 24], [3, 6, 12, 17], [10, 13, 21, 22], [1, 4, 7, 18]]
    assert tested == [[f"ravdess:{a:02d}" for a in fold] for fold in folds]


def test_refit_trains_on_the_validation_clips_with_their_augmented_copies():
    from bench.protocols import Corpus, run_split
    from ser.config import Params

    rng = np.random.default_rng(0)
    clips = pd.DataFrame(
        {
            "clip_id": [f"c:{i}" for i in range(24)],
            "corpus": "c",
            "speaker": [f"c:{i % 4 + 1}" for i in range(24)],
            "gender": None,
            "emotion": ["neutral", "happy", "sad"] * 8,
        }
    )
    index = pd.concat([clips.assign(copy=0), clips.assign(copy=1)], ignore_index=True)  # original + 1 copy each
    corpus = Corpus(index, rng.normal(size=(48, 30, 8)).astype("float32"), clips, [], [{"name": "c"}], {})
    roles = {c: ("train", "train", "val", "test")[i % 4] for i, c in enumerate(clips["clip_id"])}  # 12/6/6 clips
    classes = ["neutral", "happy", "sad"]
    small = {"model": {"filters": [8, 8, 8], "lstm_units": [8, 8], "dense_units": 8}}
    for refit, windows in ((False, 24), (True, 36)):  # training windows: 12 clips x 2, plus 6 x 2 refitted
        params = Params.model_validate(tiny_params(**small, train={"epochs": 1, "refit": refit}))
        record = run_split(corpus, params, classes, roles)
        assert record["train_windows"] == windows
        assert record["val"]["n_test"] == 6 and record["test"]["n_test"] == 6  # scored on originals only
