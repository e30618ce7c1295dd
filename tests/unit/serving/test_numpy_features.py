"""The NumPy feature path (`ser.serving.numpy_features`) computes what `ser.features.extract` computes."""

from __future__ import annotations

import numpy as np
import pytest

from ser.config import FeatureParams
from ser.features import extract
from ser.serving.numpy_features import export_features, features
from tests.support import tone


def voice_like(seconds: float, seed: int) -> np.ndarray:
    """Two windows of a tone with noise at 16 kHz (loud and quiet frames, so the dB floor matters)."""
    rng = np.random.default_rng(seed)
    wave = tone(seconds)[:, 0] * np.repeat(rng.uniform(0.01, 1, int(seconds * 10)), 1600)[: int(seconds * 16000)]
    return np.stack([wave, 0.3 * wave[::-1]]) + 1e-3 * rng.standard_normal((2, len(wave))).astype(np.float32)


def test_logmel_matches_the_training_features():
    params = FeatureParams(kind="logmel", duration=1.0, n_fft=512, hop_length=128, n_mels=40, fmax=7000.0)
    spec, arrays = export_features(params)
    waves = voice_like(1.0, 0)
    got, want = features(spec, arrays, waves), extract(waves, params)
    assert got.shape == want.shape == (2, 126, 40)
    assert np.abs(got - want).max() < 5e-3  # dB: the training path's float32 FFT against float64


def test_a_level_set_in_the_params_is_applied_on_both_paths():
    params = FeatureParams(kind="logmel", duration=1.0, n_fft=512, hop_length=128, n_mels=40, level_db=-25.0)
    spec, arrays = export_features(params)
    assert spec["level_db"] == -25.0 and spec["sample_rate"] == 16000
    waves = voice_like(1.0, 3)
    got, want = features(spec, arrays, 0.01 * waves), extract(waves, params)  # 40 dB quieter: the same input
    assert np.abs(got - want).max() < 5e-3
    old = {k: v for k, v in spec.items() if k != "level_db"}  # a model exported before the key: windows as they come
    plain = FeatureParams(**{**params.model_dump(), "level_db": None})
    assert np.abs(features(old, arrays, waves) - extract(waves, plain)).max() < 5e-3


def test_frame_normalisation_is_applied_on_both_paths():
    params = FeatureParams(kind="logmel", duration=1.0, n_fft=512, hop_length=128, n_mels=40, frame_norm=True)
    spec, arrays = export_features(params)
    waves = voice_like(1.0, 4)
    got, want = features(spec, arrays, waves), extract(waves, params)
    assert np.abs(got - want).max() < 1e-3
    assert np.allclose(want.mean(-1), 0, atol=1e-4) and np.allclose(want.std(-1), 1, atol=1e-3)  # every frame
    plain = extract(waves, FeatureParams(**{**params.model_dump(), "frame_norm": False}))
    assert np.abs(plain.mean(-1)).max() > 1  # without it, a frame keeps its own offset
    old = {k: v for k, v in spec.items() if k != "frame_norm"}  # a model exported before the key: as before
    assert np.abs(features(old, arrays, waves) - plain).max() < 5e-3


def test_whisper_states_match_the_tensorflow_encoder():
    from ser.features.whisper import WhisperWeightsError, model_dir

    try:
        model_dir()
    except WhisperWeightsError as err:
        pytest.skip(str(err))
    params = FeatureParams(kind="whisper_base", duration=1.5, whisper_layers=[2, 4])
    spec, arrays = export_features(params)
    assert not any(k.startswith("encoder/layer_4/") for k in arrays)  # only the blocks that are run
    waves = voice_like(1.5, 1)
    got, want = features(spec, arrays, waves), extract(waves, params)
    assert got.shape == want.shape == (2, 75, 1024)
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()  # float32 rounding, ~1e-5 of the scale


def test_whisper_states_with_a_context_match_the_tensorflow_encoder():
    from ser.features.whisper import WhisperWeightsError, model_dir

    try:
        model_dir()
    except WhisperWeightsError as err:
        pytest.skip(str(err))
    params = FeatureParams(kind="whisper_base", duration=1.0, whisper_layers=[1], whisper_context=2.5)
    spec, arrays = export_features(params)
    waves = voice_like(1.0, 2)
    got, want = features(spec, arrays, waves), extract(waves, params)
    assert got.shape == want.shape == (2, 50, 512)  # the window's own frames, not the padding's
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()
    without = features({**spec, "context": 0}, arrays, waves)  # attention reaches the padding: the context matters
    assert np.abs(without - want).mean() > 10 * np.abs(got - want).mean()


def test_a_kind_without_a_numpy_path_is_refused():
    with pytest.raises(ValueError, match="no NumPy path"):
        export_features(FeatureParams.model_construct(kind="mystery"))
