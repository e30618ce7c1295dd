"""The benchmark tools around the harness: parallel runs, seed ensembles, the Whisper probes, fusion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from bench import results
from tests.conftest import bench_argv, tiny_params


@pytest.mark.slow
def test_parallel_bench_runs_settings_side_by_side_and_compares_them(tiny_corpus, tmp_path, capsys):
    """Two settings x one fold as two processes at once; merged per setting, compared pair by pair."""
    from bench import parallel_bench

    params = tmp_path / "params.yaml"
    # tests the harness, not the default model (Whisper + stats head, tested in test_dvc_pipeline_end_to_end)
    fast = {"features": {"kind": "logmel"}, "model": {"stats_head": False}}
    params.write_text(yaml.safe_dump(tiny_params(train={"epochs": 2}, **fast)))
    out = tmp_path / "out"
    argv = [
        "--setting",
        "P=",
        "--setting",
        "C=train.schedule=cosine train.average_last=1",
        "--folds",
        "0",
        "--seeds",
        "42,43",
        "--select-speakers",
        "1",
        "--parallel",
        "4",
        "--out",
        str(out),
        "--",
        "--corpus",
        str(tiny_corpus),
        "--params",
        str(params),
        "--folds",
        "4",
        "--cache",
        str(tmp_path / "cache"),
    ]
    assert parallel_bench.main(argv) == 0
    p_runs, c_runs = (json.loads((out / f"{n}.json").read_text())["speaker"]["runs"] for n in "PC")
    assert [(r["fold"], r["seed"]) for r in p_runs] == [(r["fold"], r["seed"]) for r in c_runs] == [(0, 42), (0, 43)]
    assert c_runs[0]["epochs_run"] == c_runs[0]["best_epoch"] == 2  # cosine: no early stop, the end kept
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["baseline"] == "P" and comparison["against"]["C"]["pairs"] == 2
    assert comparison["against"]["C"]["select_uar"]["diff_mean"] == pytest.approx(
        np.mean([c["select_uar"] - p["select_uar"] for p, c in zip(p_runs, c_runs, strict=True)])
    )
    assert not list(out.glob("runs/*/model"))  # per-run models (only `cost` reads them) are not kept
    log = (out / "runner.log").read_text()
    assert "start P-s42-f0" in log and "done C-s43-f0 rc=0" in log
    # The seed ensemble, merged from the separate processes' probs.npz, is their mean probabilities' score.
    from ser.training.evaluate import score

    members = [results.load_probs(out / "runs" / f"C-s{seed}-f0" / "probs.npz")[0] for seed in (42, 43)]
    classes = json.loads((out / "runs" / "C-s42-f0" / "results.json").read_text())["speaker"]["classes"]
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
    results.save_probs(runs, tmp_path / "probs.npz")
    loaded = sorted(results.load_probs(tmp_path / "probs.npz"), key=lambda r: r["seed"])
    assert [(r["fold"], r["seed"]) for r in loaded] == [(0, 42), (0, 43)]
    np.testing.assert_array_equal(loaded[1]["test_probs"], b)
    ens = results.seed_ensemble(loaded, ["neutral", "calm"])
    assert ens["accuracy"]["mean"] == pytest.approx(0.75) and ens["uar"]["n"] == 1  # the mean misses clip 3 only
    assert results.seed_ensemble(loaded[:1], ["neutral", "calm"]) is None  # one run per fold: no ensemble
    loaded[1]["test_y"] = 1 - y  # other clips
    with pytest.raises(ValueError, match="fold 0: its runs scored different test clips"):
        results.seed_ensemble(loaded, ["neutral", "calm"])


def test_parallel_bench_refuses_a_nameless_setting(tmp_path, capsys):
    from bench import parallel_bench

    with pytest.raises(SystemExit) as exit_:
        parallel_bench.main(["--setting", "=train.epochs=3", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "expected NAME=key=value" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_whisper_layer_probe_scores_layers_on_validation_speakers(tiny_corpus, tmp_path, capsys):
    from bench import whisper_probe
    from ser.training.stats_head import C_GRID

    assert whisper_probe.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "none")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out and not (tmp_path / "none").exists()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    out = tmp_path / "probe"
    argv = [
        *bench_argv(tiny_corpus, params),
        "--folds",
        "2",
        "--specs",
        "6",
        "3,4",
        "--speaker-norm",
        "none",
        "mean",
        "--reference",
        "5",
        "--draws",
        "2",
        "--out",
        str(out),
    ]
    assert whisper_probe.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["clips"] == 240
    assert list(res["results"]) == ["6", "6 mean 5", "3,4", "3,4 mean 5"]
    assert res["results"]["3,4"]["layers"] == [3, 4] and len(res["results"]["3,4"]["folds"]) == 2
    drawn = res["results"]["3,4 mean 5"]  # a random reference: every fold once per draw
    assert drawn["speaker_norm"] == "mean" and sorted((r["seed"], r["fold"]) for r in drawn["folds"]) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert res["C_grid"] == list(C_GRID)  # the pipeline's statistics head's grid
    for r in res["results"].values():
        assert all(row["C"] in C_GRID for row in r["folds"])
        assert 0 <= r["val_uar_mean"] <= 1 and 0 <= r["uar_mean"] <= 1
        # The tiny corpus's classes are audible tones, not noise: above chance (1/8) on held-out speakers.
        assert r["uar_mean"] > 0.2
    assert "| 3,4 |" in (out / "results.md").read_text() and "| 3,4 mean 5 |" in (out / "results.md").read_text()
    assert len(results.load_probs(out / "probs-3_4-mean-5.npz")) == 4
    runs = results.load_probs(out / "probs-3_4.npz")
    assert sorted(r["fold"] for r in runs) == [0, 1]
    assert all(r["test_probs"].shape == (len(r["test_y"]), 8) for r in runs)
    assert whisper_probe.parse_spec("0-6") == list(range(7)) and whisper_probe.parse_spec("2,5") == [2, 5]
    # speaker directions projected out: a fixed number, or a grid chosen per fold on validation (4 folds of the
    # 4 speakers leave 2 training speakers, so 1 direction at most)
    nap_out = tmp_path / "probe-nap"
    argv = [*bench_argv(tiny_corpus, params), "--folds", "4", "--specs", "3,4", "--nap", "0", "1", "0,1"]
    assert whisper_probe.main([*argv, "--out", str(nap_out)]) == 0
    nap = json.loads((nap_out / "results.json").read_text())["results"]
    assert list(nap) == ["3,4", "3,4 nap 1", "3,4 nap 0,1"]
    assert [row["nap_dims"] for row in nap["3,4"]["folds"]] == [0] * 4  # nap 0 is the plain fit
    assert [row["nap_dims"] for row in nap["3,4 nap 1"]["folds"]] == [1] * 4
    assert {row["nap_dims"] for row in nap["3,4 nap 0,1"]["folds"]} <= {0, 1}
    for row in nap["3,4 nap 0,1"]["folds"]:  # the grid keeps the fixed setting its validation UAR favours
        fixed = {
            d: next(r for r in nap[k]["folds"] if r["fold"] == row["fold"]) for d, k in ((0, "3,4"), (1, "3,4 nap 1"))
        }
        assert row["val_uar"] == max(f["val_uar"] for f in fixed.values())
        assert row["uar"] == fixed[row["nap_dims"]]["uar"]
    with pytest.raises(SystemExit) as exit_:  # refused before the corpus is read or encoded
        whisper_probe.main([*bench_argv(tiny_corpus, params), "--reference", "most", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "expected all, calm or a positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        whisper_probe.main([*bench_argv(tiny_corpus, params), "--nap", "two", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "--nap" in capsys.readouterr().err


def test_robustness_conditions_parse_draw_and_degrade_reproducibly():
    from bench import robustness_probe as rp

    assert rp.parse_condition("noise:10") == ("noise", 10.0) and rp.parse_condition("telephone") == ("telephone", 0.0)
    for bad in ("noise", "telephone:3", "reverb:0", "level:loud", "echo:1", "noise:inf"):
        with pytest.raises(ValueError, match="condition"):
            rp.parse_condition(bad)
    drawn = [rp.random_condition(np.random.default_rng(i)) for i in range(200)]
    assert {d.partition(":")[0] for d in drawn} == set(rp.FAMILIES)
    for d in drawn:  # every draw is a valid condition within its family's range
        family, strength = rp.parse_condition(d)
        assert family not in rp.RANDOM or rp.RANDOM[family][0] <= strength <= rp.RANDOM[family][1]
    wave = np.sin(np.linspace(0, 3000, 16000)).astype(np.float32)
    for condition in ("noise:10", "telephone", "reverb:0.3", "level:-30"):
        a, b = (rp.degrade(wave, condition, 16000, np.random.default_rng(5)) for _ in range(2))
        assert a.shape == wave.shape and np.array_equal(a, b) and not np.allclose(a, wave)


@pytest.mark.slow
def test_robustness_probe_scores_conditions_heads_and_the_unheard_sentence(tiny_corpus, tmp_path, capsys):
    from bench import robustness_probe
    from ser.training.stats_head import C_GRID

    assert robustness_probe.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "none")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out and not (tmp_path / "none").exists()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    with pytest.raises(SystemExit) as exit_:  # refused before the corpus is read or encoded
        robustness_probe.main([*bench_argv(tiny_corpus, params), "--conditions", "noise", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "expected noise:SNR_DB" in capsys.readouterr().err
    cache, out = tmp_path / "cache", tmp_path / "probe"
    argv = [*bench_argv(tiny_corpus, params), "--folds", "2", "--conditions", "telephone", "--cache"]
    assert robustness_probe.main([*argv, str(cache), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["clips"] == 240 and res["layers"] == [3, 4] and res["conditions"] == ["clean", "telephone"]
    assert list(res["heads"]) == ["clean", "multi-condition"]
    for head in res["heads"].values():
        assert [row["fold"] for row in head["folds"]] == [0, 1]
        for row in head["folds"]:
            assert row["C"] in C_GRID and list(row["conditions"]) == res["conditions"]
            # the heads are compared on the validation speakers' mean UAR over clean and every condition
            assert row["val_uar_all"] == pytest.approx(np.mean([c["val"]["uar"] for c in row["conditions"].values()]))
            for scores in row["conditions"].values():
                assert sum(scores["test"]["predicted_share"].values()) == pytest.approx(1.0)
        # The tiny corpus's classes are audible tones: above chance (1/8) on held-out speakers, clean.
        assert head["test_clean"]["uar"]["mean"] > 0.2
    sentence = res["sentence"]["folds"]
    assert sorted((r["fold"], r["fitted_on"]) for r in sentence) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert 0 <= res["sentence"]["other"]["uar"]["mean"] <= 1
    text = (out / "results.md").read_text()
    assert "| telephone |" in text and "| the other sentence |" in text and "chosen: **" in text
    assert len(list(cache.glob("robustness-*.npz"))) == 1  # encoded once; the same run again reads the cache
    assert robustness_probe.main([*argv, str(cache), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["heads"]["clean"]["folds"] == res["heads"]["clean"]["folds"] and again["sentence"] == res["sentence"]


def test_fuse_probs_averages_members_equally_and_refuses_other_clips(tmp_path, capsys):
    from bench import fuse_probs

    y = np.array([0, 1, 2, 3])
    sure = np.eye(8)[[0, 1, 2, 3]]  # right on every clip
    wrong = np.eye(8)[[1, 1, 1, 1]] * 0.9  # wrong on 3 of 4, but less confident
    results.save_probs([{"fold": 0, "seed": 42, "test_probs": sure, "test_y": y}], tmp_path / "a.npz")
    twice = [{"fold": 0, "seed": s, "test_probs": wrong, "test_y": y} for s in (42, 43)]
    results.save_probs(twice, tmp_path / "b.npz")
    assert fuse_probs.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert "equal-weight mean of 2 members over 1 folds" in out and "accuracy: 100.0 ± 0.0 %" in out
    classes = [f"c{i}" for i in range(8)]
    b_alone = fuse_probs.fuse([results.load_probs(tmp_path / "b.npz")], classes)
    assert b_alone["accuracy"]["mean"] == 0.25
    results.save_probs([{"fold": 0, "seed": 42, "test_probs": sure, "test_y": y[::-1]}], tmp_path / "c.npz")
    with pytest.raises(ValueError, match="member 2, fold 0: other test clips"):
        fuse_probs.fuse([results.load_probs(tmp_path / n) for n in ("a.npz", "c.npz")], classes)
    with pytest.raises(SystemExit):
        fuse_probs.main([str(tmp_path / "absent.npz")])
    assert "no such probabilities file" in capsys.readouterr().err


def test_fuse_probs_pools_joined_files_and_scores_the_last_members_seeds_apart(tmp_path, capsys):
    """`a+b` is one member (its runs pooled, as train.ensemble's members are); --apart scores each seed alone."""
    from bench import fuse_probs

    y, classes = np.array([0, 1, 2, 3]), [f"c{i}" for i in range(8)]
    sure, wrong = np.eye(8)[[0, 1, 2, 3]], np.eye(8)[[1, 1, 1, 1]]
    results.save_probs([{"fold": 0, "seed": 42, "test_probs": sure, "test_y": y}], tmp_path / "a.npz")
    results.save_probs([{"fold": 0, "seed": 43, "test_probs": 0.9 * wrong, "test_y": y}], tmp_path / "b.npz")
    joined = fuse_probs.load_member(f"{tmp_path / 'a.npz'}+{tmp_path / 'b.npz'}")
    assert sorted(r["seed"] for r in joined) == [42, 43]
    assert fuse_probs.fuse([joined, joined], classes)["accuracy"]["mean"] == 1.0  # (sure + 0.9 wrong) / 2
    draws = [{"fold": 0, "seed": s, "test_probs": p, "test_y": y} for s, p in ((0, sure), (1, wrong))]
    results.save_probs(draws, tmp_path / "d.npz")
    members = [results.load_probs(tmp_path / n) for n in ("a.npz", "d.npz")]
    # whole, draw 0 outweighs draw 1; apart, draw 1 ties sure on clips 0, 2, 3 and argmax takes the lower class
    assert fuse_probs.fuse(members, classes)["accuracy"]["mean"] == 1.0
    assert [r["accuracy"]["mean"] for r in fuse_probs.fuse_apart(members, classes)] == [1.0, 0.5]
    assert fuse_probs.main([str(tmp_path / "a.npz"), str(tmp_path / "d.npz"), "--apart"]) == 0
    out = capsys.readouterr().out
    assert "the last member's 2 seeds apart" in out and "accuracy: 75.0 % (seeds: 100.0, 50.0)" in out
    with pytest.raises(SystemExit):
        fuse_probs.main([f"{tmp_path / 'a.npz'}+{tmp_path / 'absent.npz'}"])
    assert "no such probabilities file: " + str(tmp_path / "absent.npz") in capsys.readouterr().err


def test_serve_bench_default_variants_exist_and_unknown_ones_are_refused(capsys):
    from bench import serve_bench

    assert serve_bench.parser().parse_args([]).variants == ["batched", "unbatched", "naive"]
    with pytest.raises(SystemExit):
        serve_bench.parser().parse_args(["--variants", "batched,direct"])
    assert "unknown variant(s) ['direct']" in capsys.readouterr().err


def test_serve_bench_heavy_requests_are_accepted_and_at_the_default_limits(tmp_path):
    """The 'heaviest accepted' requests must pass the default limits, and sit right at them."""
    from bench import serve_bench
    from ser.config import ServeParams
    from ser.serving.uploads import Limits, SampleBudget, decode_upload, header_cost, probe

    serve = ServeParams()
    limits = Limits.from_serve(serve.model_dump())
    for what, (endpoint, files) in serve_bench.heavy_requests().items():
        assert len(files) <= (1 if endpoint == "predict" else serve.max_batch_files), what
        assert sum(len(d) for _, d in files) <= serve.max_upload_mb * 2**20, what
        paths = []
        for i, (_, data) in enumerate(files):
            paths.append(tmp_path / f"{what[:5]}{i}")
            paths[-1].write_bytes(data)
        cost = sum(header_cost(probe(p, limits)) for p in paths)
        assert cost == (serve.max_samples_per_file if endpoint == "predict" else serve.max_samples_per_request)
        budget = SampleBudget(serve.max_samples_per_request)
        assert all(decode_upload(p, 16000, limits, budget).duration_s == 60.0 for p in paths)


def test_length_probe_scores_each_length_and_setting_on_validation_chosen_fits(tiny_corpus, tmp_path, capsys):
    from bench import length_probe

    assert length_probe.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "none")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out and not (tmp_path / "none").exists()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    out, cache = tmp_path / "lengths", tmp_path / "cache" / "pooled.npz"
    settings = ["layers 3-4 (today's head)", "layers 3-4, crops", "weighted 0-6, masked + crops"]
    argv = [*bench_argv(tiny_corpus, params), "--folds", "2", "--seeds", "1", "--cache", str(cache)]
    assert length_probe.main([*argv, "--settings", *settings, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["clips"] == 240 and list(res["results"]) == settings and cache.is_file()
    for r in res["results"].values():
        assert len(r["runs"]) == 2  # 2 folds x 1 seed
        for length in ("1s", "1.5s", "2s", "3.5s"):
            cell = r[f"test_{length}"]
            assert 0 <= cell["uar"]["mean"] <= 1 and 0 <= cell["ece"]["mean"] <= 1
            assert sum(cell["predicted_share"].values()) == pytest.approx(1.0)
        # Full windows of audible tones: above chance (1/8) on held-out speakers.
        assert r["test_3.5s"]["uar"]["mean"] > 0.2
    weights = res["results"]["weighted 0-6, masked + crops"]["runs"][0]["layer_weights"]
    assert len(weights) == 7 and sum(weights) == pytest.approx(1.0, abs=1e-3)
    assert "| layers 3-4, crops |" in (out / "results.md").read_text()
    # A second run reads the cached encoder statistics instead of encoding again.
    assert length_probe.main([*argv, "--settings", settings[0], "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["encode_seconds"] < res["encode_seconds"]


def test_length_probe_cuts_keep_the_start_and_crops_are_the_pipelines(tmp_path):
    from bench import length_probe
    from ser.audio import audio_length

    wave = np.arange(1, 56001, dtype=np.float32)  # 3.5 s at 16 kHz, no padding
    short = length_probe.cut(wave, 1.5, 16000)
    assert audio_length(short) == 24000 and np.array_equal(short[:24000], wave[:24000])
    crop = length_probe.random_crop(wave, "03-01-01-01-01-01-01", 16000)
    assert np.array_equal(crop, length_probe.random_crop(wave, "03-01-01-01-01-01-01", 16000))  # seeded by clip id
    n = audio_length(crop)
    assert 16000 <= n <= 56000 and np.array_equal(crop[:n], wave[int(crop[0]) - 1 : int(crop[0]) - 1 + n])
    # one encoder state per 320 samples that hold audio, rounded up; a silent window keeps one, a full one all
    frames = length_probe.valid_frames(np.array([0, 1, 320, 321, 24000, 56000]), 175)
    assert frames.tolist() == [1, 1, 1, 2, 75, 175]


def test_length_eval_scores_a_model_on_its_test_clips_cut_short(tiny_corpus, tmp_path):
    import soundfile as sf

    from bench import length_eval
    from ser.config import FeatureParams
    from ser.data.ingest import build_manifest
    from tests.support import CLASSES, make_tiny_model

    model = make_tiny_model(tmp_path / "model")
    manifest = build_manifest(tiny_corpus)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    index = manifest[["clip_id", "emotion", "speaker"]].assign(copy=0, augmentation="")
    index["split"] = np.where(index["speaker"] == "ravdess:04", "test", "train")
    index.to_csv(tmp_path / "index.csv", index=False)
    clips = index[index["split"] == "test"].merge(manifest[["clip_id", "path"]], on="clip_id")
    folder = tmp_path / "cut"
    folder.mkdir()
    features = FeatureParams(offset=0.5)
    labels = length_eval.cut_clips(clips.head(3), tiny_corpus, folder, 1.5, features)
    assert len(labels.read_text().splitlines()) == 4  # header + 3 clips
    for row in clips.head(3).itertuples():
        assert sf.info(folder / f"{row.clip_id}.flac").frames == 24000  # 1.5 s from the window's start
    out = tmp_path / "lengths"
    argv = ["--model-dir", str(model), "--corpus", str(tiny_corpus), "--manifest", str(tmp_path / "manifest.csv")]
    assert (
        length_eval.main([*argv, "--index", str(tmp_path / "index.csv"), "--lengths", "1", "3.5", "--out", str(out)])
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["clips"] == len(clips) == 60 and res["speakers"] == ["ravdess:04"]
    for name in ("1s", "3.5s"):
        assert sum(res[name]["predicted_share"].values()) == pytest.approx(1.0) and 0 <= res[name]["uar"] <= 1
        known = int(clips["emotion"].isin(CLASSES).sum())  # the tiny model's classes; the others are counted out
        assert len(pd.read_csv(out / f"{name}-predictions.csv")) == known > 0
    assert "| 1s |" in (out / "results.md").read_text()
    # After `make run` only the evaluate stage's predictions name the test clips; the manifest is rebuilt.
    clips[["clip_id"]].to_csv(tmp_path / "predictions.csv", index=False)
    again = ["--model-dir", str(model), "--corpus", str(tiny_corpus), "--index", str(tmp_path / "predictions.csv")]
    assert length_eval.main([*again, "--lengths", "1", "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "results.json").read_text())["1s"] == res["1s"]
    # Recording conditions: the whole window under each, one row each, seeded per clip (a rerun scores the same).
    phone = tmp_path / "phone"
    phone.mkdir()
    length_eval.cut_clips(clips.head(2), tiny_corpus, phone, 3.5, features, "telephone")
    plain = length_eval.cut_clips(clips.head(2), tiny_corpus, folder, 3.5, features).parent
    for row in clips.head(2).itertuples():
        line, studio = sf.read(phone / f"{row.clip_id}.flac")[0], sf.read(plain / f"{row.clip_id}.flac")[0]
        assert len(line) == len(studio) and not np.allclose(line, studio)
    conditions = ["--lengths", "3.5", "--conditions", "noise:10", "level:-30", "--out"]
    for run in ("cond", "cond-again"):
        assert length_eval.main([*again, *conditions, str(tmp_path / run)]) == 0
    res = json.loads((tmp_path / "cond" / "results.json").read_text())
    assert [k for k in res if k in ("3.5s", "noise:10", "level:-30")] == ["3.5s", "noise:10", "level:-30"]
    assert (tmp_path / "cond" / "noise_10-predictions.csv").is_file() and "| level:-30 |" in (
        tmp_path / "cond" / "results.md"
    ).read_text()
    assert json.loads((tmp_path / "cond-again" / "results.json").read_text())["noise:10"] == res["noise:10"]
    with pytest.raises(SystemExit):  # refused before the model loads
        length_eval.main([*again, "--conditions", "hum:50", "--out", str(tmp_path / "x")])


def test_enrolment_eval_fits_the_head_per_fold_and_fuses_it_with_saved_runs(tiny_corpus, tmp_path, capsys):
    """A saved "model" that knows nothing (uniform probabilities): fused with it, the enrolment head decides
    every clip alone, so the fused and head-alone rows agree; a file of other clips is refused."""
    from bench import enrolment_eval
    from bench.protocols import prepare
    from bench.results import save_probs
    from ser.config import load_params

    assert enrolment_eval.main(["--corpus", str(tmp_path / "absent"), "--out", str(tmp_path / "none")]) == 0
    assert "skipped: the RAVDESS corpus is not at" in capsys.readouterr().out
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params(features={"kind": "logmel"}, model={"stats_head": False})))
    params, cache = load_params(params_path), tmp_path / "cache"
    corpus = prepare(tiny_corpus, params, cache)
    classes = params.data.class_set(corpus.clips["emotion"])
    y = corpus.index["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    runs = [
        {"fold": r["fold"], "seed": 42, "test_probs": np.full((r["test"].sum(), 8), 1 / 8), "test_y": y[r["test"]]}
        for r in enrolment_eval.fold_rows(corpus, params, 2)
    ]
    save_probs(runs, tmp_path / "probs.npz")
    out = tmp_path / "enrol"
    argv = [*bench_argv(tiny_corpus, params_path), "--folds", "2", "--cache", str(cache), "--out", str(out)]
    argv += ["--models", str(tmp_path / "probs.npz"), "--reference", "4", "all", "--draws", "2"]
    assert enrolment_eval.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [0, 1] and res["train_draws"] == 3
    for fold in res["folds"]:
        scores = fold["model_1"]
        assert scores["fused_4"] == scores["head_4"] and scores["fused_all"] == scores["head_all"]
        assert scores["single_clip"]["uar"] == pytest.approx(1 / 8)  # uniform: always the first class
        assert fold["head"]["reference_clips"] == params.enrolment.clips
    assert "| fused_all |" in (out / "results.md").read_text()
    runs[0]["test_y"] = np.roll(runs[0]["test_y"], 1)
    save_probs(runs, tmp_path / "probs.npz")
    with pytest.raises(ValueError, match=r"model 1, fold 0: no run, or other test clips"):
        enrolment_eval.main(argv)


def test_ravdess_report_names_speakers_by_corpus_and_reads_runs_written_with_actors():
    """Run tables name speakers per corpus; results.json files from before speakers (`test_actors`) still render."""
    from bench.ravdess_report import speakers

    run = {"test_speakers": ["ravdess:02", "ravdess:11", "emodb:03"], "val_speakers": ["ravdess:05"]}
    assert speakers(run, "test") == "ravdess 02, 11; emodb 03" and speakers(run, "val") == "ravdess 05"
    assert speakers({"test_actors": [2, 11, 16, 23]}, "test") == "[2, 11, 16, 23]"  # as those reports print it
    assert speakers({"fold": 0}, "test", "random 20 %") == "random 20 %"  # the article's split names none
