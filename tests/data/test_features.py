"""The feature function and the featurize stage: shapes, dtypes, librosa parity, and
augmentation that touches training clips only."""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest

from ser.audio import fixed_window, load_audio, sliding_windows
from ser.augment import add_noise, augment_wave, change_speed
from ser.config import AugmentParams, FeatureParams, parse_params
from ser.features import logmel, n_frames, norm_stats
from ser.featurize import featurize
from ser.ingest import build_manifest
from tests.conftest import tiny_params


def test_logmel_matches_librosa_within_a_millidecibel():
    p = FeatureParams()
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((3, 56000)) * np.array([[0.3], [0.01], [1e-4]])).astype(np.float32)
    ours = logmel(waves, p)
    for wave, mine in zip(waves, ours, strict=True):
        mel = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=1024, hop_length=256, n_mels=64, fmax=8000)
        ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T
        assert np.abs(mine - ref).max() <= 1e-3


def test_logmel_shape_and_dtype():
    p = FeatureParams(n_mels=40, hop_length=160)
    feats = logmel(np.zeros((2, 16000), np.float32), p)
    assert feats.shape == (2, n_frames(16000, 160), 40) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_fixed_window_pads_and_crops():
    wave = np.arange(10, dtype=np.float32)
    assert fixed_window(wave, 2, offset=1, duration=2).tolist() == [2, 3, 4, 5]
    assert fixed_window(wave, 2, offset=4, duration=2).tolist() == [8, 9, 0, 0]
    assert sliding_windows(np.ones(10, np.float32), 2, duration=2, hop=1).shape == (4, 4)


def test_load_audio_downmixes_and_resamples(tmp_path):
    import soundfile as sf

    stereo = np.stack([np.ones(48000), -np.ones(48000)], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 48000)
    wave = load_audio(tmp_path / "s.wav", 16000)
    assert wave.shape == (16000,) and abs(wave).max() < 1e-3


def test_augmentations_change_the_wave_as_intended():
    rng = np.random.default_rng(0)
    wave = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    noisy = add_noise(wave, 10.0, rng)
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert abs(snr - 10) < 0.5
    assert abs(change_speed(wave, 1.25, 16000).shape[0] - 12800) <= 1
    off = AugmentParams(noise={"rate": 0}, pitch={"rate": 0}, speed={"rate": 0})
    same, applied = augment_wave(wave, 16000, off, rng)
    assert applied == [] and np.array_equal(same, wave)


def test_norm_stats_per_mel_bin():
    feats = np.stack([np.full((5, 3), 1.0), np.full((5, 3), 3.0)]).astype(np.float32)
    mean, var = norm_stats(feats)
    assert mean.tolist() == [2, 2, 2] and var.tolist() == [1, 1, 1]


@pytest.fixture(scope="module")
def featurized(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("feat")
    manifest = out / "manifest.csv"
    build_manifest(tiny_corpus).to_csv(manifest, index=False)
    params = parse_params(tiny_params())
    featurize(params, manifest, tiny_corpus, out / "features")
    return params, out / "features", tiny_corpus


def test_featurize_writes_split_arrays(featurized):
    params, features, _ = featurized
    for split in ("train", "val", "test"):
        with np.load(features / f"{split}.npz") as d:
            frames = n_frames(int(params.features.duration * params.features.sample_rate), params.features.hop_length)
            assert d["x"].shape[1:] == (frames, params.features.n_mels) and d["x"].dtype == np.float32
            assert d["y"].dtype == np.int64 and d["y"].max() < 8 and len(d["x"]) == len(d["y"])
    index = pd.read_csv(features / "index.csv")
    assert index.groupby("actor")["split"].nunique().max() == 1


def test_augmentation_touches_only_training_clips(featurized):
    params, features, corpus = featurized
    index = pd.read_csv(features / "index.csv")
    assert (index.loc[index["split"] != "train", "copy"] == 0).all()
    assert (index.loc[index["split"] != "train", "augmentation"].isna()).all()
    train = index[index["split"] == "train"]
    assert (train.groupby("clip_id").size() == 1 + params.augment.copies).all()
    # Test features are exactly the clean feature function of the clean clip.
    with np.load(features / "test.npz") as d:
        clip_id, x = str(d["clip_id"][0]), d["x"][0]
    actor = int(clip_id[-2:])
    f = params.features
    wave = load_audio(corpus / f"Actor_{actor:02d}" / f"{clip_id}.wav", f.sample_rate)
    assert np.array_equal(logmel(fixed_window(wave, f.sample_rate, f.offset, f.duration), f)[0], x)


def test_norm_stats_come_from_training_split(featurized):
    import json

    _, features, _ = featurized
    stats = json.loads((features / "stats.json").read_text())
    with np.load(features / "train.npz") as d:
        mean, _ = norm_stats(d["x"])
    assert np.allclose(stats["mean"], mean, atol=1e-4)
