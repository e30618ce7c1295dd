"""Domain calibration (`ser.serving.profiles`, `ser calibrate`) and answering a class subset, on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.cli import app
from ser.serving.profiles import CalibrationError, Profile, StatsHead, class_subset, estimate, load_profiles, restrict
from ser.training.stats_head import clip_stats
from tests.support import make_tiny_model, tiny_profile, tone


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):  # the model's NumPy copy (ser.serving.quick) goes here, not to ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"), stats_head=True)


def recordings(folder, speakers: int = 3, clips: int = 5, gain: float = 1.0, silent: bool = False):
    """`speakers` subfolders of `clips` tones each (one speaker per subfolder, as `ser calibrate` counts them)."""
    for s in range(speakers):
        (folder / f"spk{s}").mkdir(parents=True, exist_ok=True)
        for c in range(clips):
            wave = (
                np.zeros((16000, 1), np.float32) if silent else gain * tone(0.8 + 0.1 * c, freq=150.0 + 40 * s + 9 * c)
            )
            sf.write(folder / f"spk{s}" / f"{c}.wav", wave, 16000)
    return folder


def calibrate(model_dir, folder, *extra):
    argv = ["calibrate", str(folder), "--model-dir", str(model_dir), *extra]
    return CliRunner().invoke(app, argv)


def test_the_mean_moves_by_n_over_n_plus_shrink_and_the_scale_stays():
    rng = np.random.default_rng(0)
    train_mean, train_scale = np.zeros(4, np.float32), np.ones(4, np.float32)
    stats = 5.0 + rng.standard_normal((30, 4))
    mean, scale = estimate(stats, train_mean, train_scale, shrink=10, scale_too=False)
    np.testing.assert_allclose(mean, stats.mean(0) * 30 / 40, rtol=1e-5)
    np.testing.assert_array_equal(scale, train_scale)
    unshrunk, scaled = estimate(stats, train_mean, train_scale, shrink=0, scale_too=True)
    np.testing.assert_allclose(unshrunk, stats.mean(0), rtol=1e-5)
    np.testing.assert_allclose(scaled, stats.std(0), rtol=1e-4)


def test_a_profile_of_the_training_statistics_changes_nothing_and_another_swaps_the_heads_share(model_dir):
    from ser.training.model import load_model

    model = load_model(model_dir / "model.keras")
    head = StatsHead.of(model)
    assert head.weight == 0.5
    # windows like the head's training windows (tests.support), where its answer is not saturated
    rng = np.random.default_rng(1)
    feats = (-40 + 10 * rng.standard_normal((4, *model.input_shape[1:]))).astype(np.float32)
    plain = np.asarray(model(feats))
    same = Profile("same", head.mean, head.scale, head)
    np.testing.assert_allclose(same.apply(plain, feats), plain, atol=1e-5)
    # the NumPy head is the model's own statistics head
    np.testing.assert_allclose(
        head.probs(clip_stats(feats)),
        np.asarray(model.get_layer("stats_head")(feats)),
        atol=1e-5,
    )
    # a deployment whose clips sit toward class 1 of the head's: standardised by them, they look less like class 1
    toward = np.sign(head.kernel[:, 1] - head.kernel[:, 0])
    shifted = Profile("shifted", head.mean + 2 * head.scale * toward, head.scale, head)
    moved = shifted.apply(plain, feats)
    stats = clip_stats(feats)
    expected = plain + 0.5 * (head.probs(stats, shifted.mean, shifted.scale) - head.probs(stats))
    np.testing.assert_allclose(moved, expected, atol=1e-5)
    assert (moved[:, 1] < plain[:, 1] - 0.01).all() and (moved[:, 0] > plain[:, 0]).all()
    np.testing.assert_allclose(moved.sum(1), 1.0, atol=1e-5)
    # the calibrated head's share raised to 1: the answer is the calibrated head alone; to 0, the CNN-LSTM alone
    alone = Profile("alone", shifted.mean, shifted.scale, head, share=1.0).apply(plain, feats)
    np.testing.assert_allclose(alone, head.probs(stats, shifted.mean, shifted.scale), atol=1e-5)
    cnn = np.asarray(model.get_layer("cnn_lstm_0")(feats))
    np.testing.assert_allclose(
        Profile("cnn", head.mean, head.scale, head, share=0.0).apply(plain, feats), cnn, atol=1e-5
    )


def test_a_class_subset_renormalises_and_refuses_unknown_classes():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], np.float32)
    classes = ["neutral", "happy", "sad", "angry"]
    keep = class_subset(classes, "angry,neutral")
    assert keep == [0, 3]  # the model's order, whatever the request's
    np.testing.assert_allclose(restrict(probs, keep), [[0.2, 0.8], [0.5, 0.5]], atol=1e-6)
    assert class_subset(classes, None) is None and restrict(probs, None) is probs
    with pytest.raises(CalibrationError, match=r"unknown class\(es\) \['bored'\]"):
        class_subset(classes, "happy,bored")
    with pytest.raises(CalibrationError, match="at least two"):
        class_subset(classes, ["happy"])


def test_calibrate_is_deterministic_for_a_seed_and_predict_uses_the_profile_only_when_asked(model_dir, tmp_path):
    # Tones are far from the tiny head's training windows (its answer saturates on them): calibrated unshrunk, scale
    # too, on tones, it answers on a tone as it does in its own domain.
    folder = recordings(tmp_path / "rec", speakers=3, clips=6)
    unshrunk = tmp_path / "params.yaml"
    unshrunk.write_text("calibrate:\n  shrink: 0\n  scale: true\n")
    sf.write(tmp_path / "probe.wav", tone(1.0), 16000)
    predict = ["predict", str(tmp_path / "probe.wav"), "--model-dir", str(model_dir), "--json"]
    before = json.loads(CliRunner().invoke(app, predict).output)[0]
    args = ["--params", str(unshrunk), "--clips", "12"]
    first = calibrate(model_dir, folder, "--name", "tones", *args, "--seed", "3")
    assert first.exit_code == 0, first.output
    assert "12 clips (3 speakers)" in first.output and "mean moved 100%" in first.output
    saved = dict(np.load(model_dir / "profiles" / "tones.npz"))
    again = calibrate(model_dir, folder, "--name", "tones", *args, "--seed", "3")
    assert again.exit_code == 0
    for key, value in np.load(model_dir / "profiles" / "tones.npz").items():
        np.testing.assert_array_equal(value, saved[key])
    shrunk = calibrate(model_dir, folder, "--name", "shrunk", "--clips", "12", "--seed", "3")
    assert "mean moved 55%" in shrunk.output  # params.yaml's calibrate.shrink 10: 12 / (12 + 10)
    other = calibrate(model_dir, folder, "--name", "other", *args, "--seed", "4")
    assert other.exit_code == 0
    assert not np.array_equal(np.load(model_dir / "profiles" / "other.npz")["mean"], saved["mean"])
    plain = json.loads(CliRunner().invoke(app, predict).output)[0]
    assert plain["probabilities"] == before["probabilities"]  # a saved profile changes nothing unasked
    got = CliRunner().invoke(app, [*predict, "--profile", "tones"])
    assert got.exit_code == 0, got.output
    calibrated = json.loads(got.output)[0]
    assert calibrated["probabilities"] != pytest.approx(plain["probabilities"], abs=1e-2)
    asked = CliRunner().invoke(app, [*predict, "--classes", "sad,neutral"])
    assert asked.exit_code == 0, asked.output
    subset = json.loads(asked.output)[0]
    assert list(subset["probabilities"]) == ["neutral", "sad"]
    assert sum(subset["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    p = np.array([plain["probabilities"][c] for c in ("neutral", "sad")])
    assert list(subset["probabilities"].values()) == pytest.approx(list(p / p.sum()), abs=1e-4)


def test_predict_names_an_unknown_profile_or_class(model_dir, tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), 16000)
    base = ["predict", str(tmp_path / "a.wav"), "--model-dir", str(model_dir)]
    unknown = CliRunner().invoke(app, [*base, "--profile", "nope"])
    assert unknown.exit_code == 2 and "unknown profile 'nope'" in unknown.output
    bad = CliRunner().invoke(app, [*base, "--classes", "happy,bored"])
    assert bad.exit_code == 2 and "bored" in bad.output


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("few", "4 audio file(s)"),
        ("silent", "0 of 12 clip(s) usable ({'silent': 12}"),
        ("one_speaker", "1 speaker(s)"),
        ("undecodable", "0 of 12 clip(s) usable ({'unsupported_format': 12}"),
        ("bad_name", "profile name '../x'"),
        ("bad_class", "unknown class(es) ['bored']"),
    ],
)
def test_a_calibration_set_that_cannot_serve_says_why_and_writes_nothing(case, message, tmp_path):
    model = make_tiny_model(tmp_path / "model", stats_head=True)
    folder = tmp_path / "rec"
    name, extra = "p", []
    if case == "few":
        recordings(folder, speakers=2, clips=2)
    elif case == "silent":
        recordings(folder, speakers=3, clips=4, silent=True)
    elif case == "one_speaker":
        recordings(folder, speakers=1, clips=12)
    elif case == "undecodable":
        for s in range(3):
            (folder / f"s{s}").mkdir(parents=True)
            for c in range(4):
                (folder / f"s{s}" / f"{c}.wav").write_bytes(b"not audio at all" * 4)
    else:
        recordings(folder)
        name, extra = ("../x", []) if case == "bad_name" else ("p", ["--classes", "happy,bored"])
    result = calibrate(model, folder, "--name", name, *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (model / "profiles").exists() or not any((model / "profiles").iterdir())


def test_a_model_without_a_statistics_head_has_nothing_to_calibrate(tmp_path):
    model = make_tiny_model(tmp_path / "model")
    result = calibrate(model, recordings(tmp_path / "rec"), "--name", "p")
    assert result.exit_code == 2 and "no statistics head" in result.output


def test_a_one_sided_set_is_reported_and_a_flat_folder_has_unknown_speakers(model_dir, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for c in range(12):
        sf.write(folder / f"{c}.wav", tone(1.0, freq=200.0), 16000)  # twelve copies of one sound
    result = calibrate(model_dir, folder, "--name", "flat")
    assert result.exit_code == 0, result.output
    info = Profile.load(model_dir / "profiles" / "flat.npz").info
    assert info["speakers"] is None and any("speakers unknown" in w for w in info["warnings"])
    assert any(w.startswith("one-sided") for w in info["warnings"]) and "warning: one-sided" in result.output


def test_a_profile_of_a_retrained_model_is_left_out(tmp_path, caplog):
    model = make_tiny_model(tmp_path / "model", stats_head=True)
    tiny_profile(model, "old")
    assert set(load_profiles(model)) == {"old"}
    make_tiny_model(model, seed=1, stats_head=True)  # trained again: another model.keras
    assert load_profiles(model) == {} and "estimated for another model" in caplog.text
