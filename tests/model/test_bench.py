"""The RAVDESS benchmark harness (bench/ravdess_bench.py), run end to end on a tiny synthetic corpus."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, tiny_params

sys.path.insert(0, str(REPO / "bench"))
import ravdess_bench  # noqa: E402


def test_skips_cleanly_without_the_corpus(tmp_path, capsys):
    assert ravdess_bench.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_folds_seeds_article_and_cost(tiny_corpus, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 1})))
    out = tmp_path / "out"
    argv = ["--corpus", str(tiny_corpus), "--params", str(params), "--folds", "2", "--seeds", "2",
            "--out", str(out), "--cache", str(tmp_path / "cache"), "--set", "model.pooling=attention"]  # fmt: skip
    assert ravdess_bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    runs = res["speaker"]["runs"]
    assert len(runs) == 4 and {(r["fold"], r["seed"]) for r in runs} == {(0, 42), (0, 43), (1, 42), (1, 43)}
    tested = sorted(a for r in runs if r["seed"] == 42 for a in r["test_actors"])
    assert tested == [1, 2, 3, 4]  # every actor tested exactly once
    assert all(not set(r["val_actors"]) & set(r["test_actors"]) for r in runs)
    assert res["params"]["model"]["pooling"] == "attention"  # --set reached the model
    for block in (res["speaker"], res["speaker"]["seed_ensemble"]):
        assert 0 <= block["uar"]["mean"] <= 1 and block["uar"]["n"] == 2 if block is not res["speaker"] else 4
    assert set(res["speaker"]["per_class_recall"]) <= set(res["params"]["data"]["classes"] or ["neutral"]) | {
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}  # fmt: skip
    article = res["article"]
    assert len(article["runs"]) == 2 and "calm" not in article["per_class_recall"]
    cost = res["cost"]
    assert cost["features"]["max_abs_db_diff"] <= 1e-3 and cost["features"]["ratio"] > 0
    assert cost["model_parameters"] > 0 and cost["inference_ms_per_clip"]["single"] > 0
    assert cost["training"]["seconds_per_epoch_median"] > 0
    md = (out / "results.md").read_text()
    assert "(a) speaker-independent" in md and "(b) the article's protocol" in md and "(c) cost" in md
    assert res["host"]["cpu_model"] and f"CPUs ({res['host']['cpu_model']})" in md  # timings name their CPU
    # A second run reuses the cached features (same corpus and feature/augment params).
    assert len(list((tmp_path / "cache").glob("features-*.npz"))) == 1
    # --protocols cost re-measures an earlier run's cost on this machine, without training.
    again_argv = ["--corpus", str(tiny_corpus), "--params", str(params), "--protocols", "cost",
                  "--out", str(out), "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert ravdess_bench.main(again_argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["speaker"] == res["speaker"] and again["cost"]["training"] == cost["training"]
    host = again["cost"]["remeasured"]["host"]
    assert f"re-measured at commit {host['commit']} on {host['cpu_model']}" in (out / "results.md").read_text()


def test_speaker_folds_never_train_on_test_actors(tiny_corpus, tmp_path):
    """Every scored clip belongs to the fold's test actors; validation actors come from the rest."""
    from ser.benchmark import prepare, speaker_folds
    from ser.config import override, parse_params

    params = override(parse_params(tiny_params(train={"epochs": 1})), ["augment.copies=0"])
    corpus = prepare(tiny_corpus, params)
    actor_of = dict(zip(corpus.clips["clip_id"], corpus.clips["actor"], strict=True))
    for r in speaker_folds(corpus, params, folds=2, seeds=1):
        assert {actor_of[c] for c in r["test_clips"]} == set(r["test_actors"])
        assert len(r["test_clips"]) == len(set(r["test_clips"])) == int(
            pd.Series(list(actor_of.values())).isin(r["test_actors"]).sum())  # originals only, no augmented copy
        assert not set(r["val_actors"]) & set(r["test_actors"])


def test_select_actors_are_held_out_and_compared_pairwise(tiny_corpus, tmp_path, capsys):
    """--select-actors scores actors that neither training nor early stopping saw; compare_runs pairs runs.

    With model.stats_head, each averaged model is also scored alone."""
    import compare_runs

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 1})))
    out = tmp_path / "out"
    argv = ["--corpus", str(tiny_corpus), "--params", str(params), "--folds", "4", "--only-folds", "0,1",
            "--protocols", "speaker", "--select-actors", "1", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--set", "model.stats_head=true"]  # fmt: skip
    assert ravdess_bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    parts = res["speaker"]["parts"]
    assert list(parts) == ["cnn_lstm", "stats_head"] and all(p["test_uar"]["n"] == 2 for p in parts.values())
    assert all(r["stats_head_C"] > 0 for r in res["speaker"]["runs"])
    assert "| stats_head |" in (out / "results.md").read_text()
    for r in res["speaker"]["runs"]:
        held = [r["test_actors"], r["val_actors"], r["select_actors"]]
        assert [len(h) for h in held] == [1, 1, 1] and len({a for h in held for a in h}) == 3
        assert 0 <= r["select_uar"] <= 1
    assert res["speaker"]["select_uar"]["n"] == 2
    assert "selection UAR (held-out actors" in (out / "results.md").read_text()
    # A run compared with itself: every paired difference is zero, no pair favours either side.
    assert compare_runs.main([str(out / "results.json")] * 2) == 0
    report = capsys.readouterr().out
    assert "2 paired (fold, seed) runs" in report and "| select_uar |" in report and "+0.0 ± 0.0 | 0/0 |" in report
    other = json.loads((out / "results.json").read_text())
    other["speaker"]["runs"][0]["select_uar"] += 0.1
    diff = compare_runs.paired(res, other)["select_uar"]
    assert diff["diff_mean"] == pytest.approx(0.05) and (diff["other_better"], diff["base_better"]) == (1, 0)


def test_select_actors_that_leave_no_training_actor_are_refused(tiny_corpus):
    from ser.benchmark import prepare, speaker_folds
    from ser.config import parse_params

    params = parse_params(tiny_params(train={"epochs": 1}))
    with pytest.raises(ValueError, match=r"split.val_actors \(1\) \+ select actors \(2\)"):
        next(speaker_folds(prepare(tiny_corpus, params), params, folds=4, select_actors=2))


@pytest.mark.slow
def test_parallel_bench_runs_settings_side_by_side_and_compares_them(tiny_corpus, tmp_path, capsys):
    """Two settings x one fold as two processes at once; merged per setting, compared pair by pair."""
    import parallel_bench

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 2})))
    out = tmp_path / "out"
    argv = ["--setting", "P=", "--setting", "C=train.schedule=cosine train.average_last=1", "--folds", "0",
            "--seeds", "42,43", "--select-actors", "1", "--parallel", "4", "--out", str(out), "--",
            "--corpus", str(tiny_corpus), "--params", str(params), "--folds", "4",
            "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert parallel_bench.main(argv) == 0
    p_runs, c_runs = (json.loads((out / f"{n}.json").read_text())["speaker"]["runs"] for n in "PC")
    assert [(r["fold"], r["seed"]) for r in p_runs] == [(r["fold"], r["seed"]) for r in c_runs] == [(0, 42), (0, 43)]
    assert c_runs[0]["epochs_run"] == c_runs[0]["best_epoch"] == 2  # cosine: no early stop, the end kept
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["baseline"] == "P" and comparison["against"]["C"]["pairs"] == 2
    assert comparison["against"]["C"]["select_uar"]["diff_mean"] == pytest.approx(
        np.mean([c["select_uar"] - p["select_uar"] for p, c in zip(p_runs, c_runs, strict=True)]))
    assert not list(out.glob("runs/*/model"))  # per-run models (only `cost` reads them) are not kept
    log = (out / "runner.log").read_text()
    assert "start P-s42-f0" in log and "done C-s43-f0 rc=0" in log
    # The seed ensemble, merged from the separate processes' probs.npz, is their mean probabilities' score.
    from ser.evaluate import score

    members = [ravdess_bench.load_probs(out / "runs" / f"C-s{seed}-f0" / "probs.npz")[0] for seed in (42, 43)]
    classes = json.loads((out / "runs" / "C-s42-f0" / "results.json").read_text())["params"]["data"]["classes"]
    mean = (members[0]["test_probs"] + members[1]["test_probs"]) / 2
    ensemble = json.loads((out / "C.json").read_text())["speaker"]["seed_ensemble"]
    assert ensemble["members"] == {"0": 2} and set(ensemble) == {"select", "test", "members"}
    assert ensemble["test"]["uar"]["mean"] == pytest.approx(score(members[0]["test_y"], mean.argmax(1), classes)["uar"])
    assert comparison["seed_ensembles"]["P"]["members"] == {"0": 2}
    printed = capsys.readouterr().out
    assert "C - P, 2 pairs: select UAR" in printed and "C: mean of each fold's seeds' probabilities (2 runs" in printed


def test_seed_ensemble_averages_saved_probabilities_and_refuses_mismatched_clips(tmp_path):
    """probs.npz round-trips; a fold's runs are averaged only when they scored the same clips."""
    y = np.array([0, 1, 1, 0])
    a = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6]])  # right on clips 0 and 2
    b = np.array([[0.7, 0.3], [0.1, 0.9], [0.3, 0.7], [0.2, 0.8]])  # right on clips 0, 1 and 2
    runs = [{"fold": 0, "seed": s, "test_probs": p, "test_y": y} for s, p in ((42, a), (43, b))]
    ravdess_bench.save_probs(runs, tmp_path / "probs.npz")
    loaded = sorted(ravdess_bench.load_probs(tmp_path / "probs.npz"), key=lambda r: r["seed"])
    assert [(r["fold"], r["seed"]) for r in loaded] == [(0, 42), (0, 43)]
    np.testing.assert_array_equal(loaded[1]["test_probs"], b)
    ens = ravdess_bench.seed_ensemble(loaded, ["neutral", "calm"])
    assert ens["accuracy"]["mean"] == pytest.approx(0.75) and ens["uar"]["n"] == 1  # the mean misses clip 3 only
    assert ravdess_bench.seed_ensemble(loaded[:1], ["neutral", "calm"]) is None  # one run per fold: no ensemble
    loaded[1]["test_y"] = 1 - y  # other clips
    with pytest.raises(ValueError, match="fold 0: its runs scored different test clips"):
        ravdess_bench.seed_ensemble(loaded, ["neutral", "calm"])


def test_parallel_bench_refuses_a_nameless_setting(tmp_path, capsys):
    import parallel_bench

    with pytest.raises(SystemExit) as exit_:
        parallel_bench.main(["--setting", "=train.epochs=3", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "expected NAME=key=value" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fold_actors_test_every_actor_once_and_keep_the_groups_apart():
    from ser.benchmark import fold_actors
    from ser.config import parse_params

    params = parse_params({})
    actors = list(range(1, 25))
    tested = []
    for _, groups in fold_actors(actors, params, folds=6, select_actors=2):
        assert sorted(a for group in groups.values() for a in group) == actors  # a partition of the actors
        assert (len(groups["test"]), len(groups["val"]), len(groups["select"])) == (4, params.split.val_actors, 2)
        tested += groups["test"]
    assert sorted(tested) == actors


@pytest.mark.slow
def test_whisper_layer_probe_scores_layers_on_validation_actors(tiny_corpus, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "bench"))
    import whisper_probe

    from ser.stats_head import C_GRID

    assert whisper_probe.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "none")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out and not (tmp_path / "none").exists()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    out = tmp_path / "probe"
    argv = ["--corpus", str(tiny_corpus), "--params", str(params), "--folds", "2", "--specs", "6", "3,4",
            "--out", str(out)]  # fmt: skip
    assert whisper_probe.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["clips"] == 240 and list(res["results"]) == ["6", "3,4"]
    assert res["results"]["3,4"]["layers"] == [3, 4] and len(res["results"]["3,4"]["folds"]) == 2
    assert res["C_grid"] == list(C_GRID)  # the pipeline's statistics head's grid
    for r in res["results"].values():
        assert all(row["C"] in C_GRID for row in r["folds"])
        assert 0 <= r["val_uar_mean"] <= 1 and 0 <= r["uar_mean"] <= 1
        # The tiny corpus's classes are audible tones, not noise: above chance (1/8) on held-out actors.
        assert r["uar_mean"] > 0.2
    assert "| 3,4 |" in (out / "results.md").read_text()
    runs = ravdess_bench.load_probs(out / "probs-3_4.npz")
    assert sorted(r["fold"] for r in runs) == [0, 1]
    assert all(r["test_probs"].shape == (len(r["test_y"]), 8) for r in runs)
    assert whisper_probe.parse_spec("0-6") == list(range(7)) and whisper_probe.parse_spec("2,5") == [2, 5]


def test_fuse_probs_averages_members_equally_and_refuses_other_clips(tmp_path, capsys):
    import fuse_probs

    y = np.array([0, 1, 2, 3])
    sure = np.eye(8)[[0, 1, 2, 3]]  # right on every clip
    wrong = np.eye(8)[[1, 1, 1, 1]] * 0.9  # wrong on 3 of 4, but less confident
    ravdess_bench.save_probs([{"fold": 0, "seed": 42, "test_probs": sure, "test_y": y}], tmp_path / "a.npz")
    twice = [{"fold": 0, "seed": s, "test_probs": wrong, "test_y": y} for s in (42, 43)]
    ravdess_bench.save_probs(twice, tmp_path / "b.npz")
    assert fuse_probs.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert "equal-weight mean of 2 members over 1 folds" in out and "accuracy: 100.0 ± 0.0 %" in out
    classes = [f"c{i}" for i in range(8)]
    b_alone = fuse_probs.fuse([ravdess_bench.load_probs(tmp_path / "b.npz")], classes)
    assert b_alone["accuracy"]["mean"] == 0.25
    ravdess_bench.save_probs([{"fold": 0, "seed": 42, "test_probs": sure, "test_y": y[::-1]}], tmp_path / "c.npz")
    with pytest.raises(ValueError, match="member 2, fold 0: other test clips"):
        fuse_probs.fuse([ravdess_bench.load_probs(tmp_path / n) for n in ("a.npz", "c.npz")], classes)
    with pytest.raises(SystemExit):
        fuse_probs.main([str(tmp_path / "absent.npz")])
    assert "no such probabilities file" in capsys.readouterr().err


def test_refit_trains_on_the_validation_clips_with_their_augmented_copies():
    from ser.benchmark import Corpus, run_split
    from ser.config import Params

    rng = np.random.default_rng(0)
    clips = pd.DataFrame({"clip_id": [f"c{i}" for i in range(24)], "actor": np.arange(24) % 4 + 1,
                          "emotion": ["neutral", "happy", "sad"] * 8})  # fmt: skip
    index = pd.concat([clips.assign(copy=0), clips.assign(copy=1)], ignore_index=True)  # original + 1 copy each
    corpus = Corpus(index, rng.normal(size=(48, 30, 8)).astype("float32"), clips, [])
    roles = {c: ("train", "train", "val", "test")[i % 4] for i, c in enumerate(clips["clip_id"])}  # 12/6/6 clips
    classes = ["neutral", "happy", "sad"]
    small = {"model": {"filters": [8, 8, 8], "lstm_units": [8, 8], "dense_units": 8}}
    for refit, windows in ((False, 24), (True, 36)):  # training windows: 12 clips x 2, plus 6 x 2 refitted
        params = Params.model_validate(tiny_params(**small, train={"epochs": 1, "refit": refit}))
        record = run_split(corpus, params, classes, roles)
        assert record["train_windows"] == windows
        assert record["val"]["n_test"] == 6 and record["test"]["n_test"] == 6  # scored on originals only
