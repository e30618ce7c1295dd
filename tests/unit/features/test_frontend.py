"""The serving front end (NumPy) computes what training's feature code computes before the exported graph."""

from __future__ import annotations

import numpy as np

from ser.config import FeatureParams
from ser.features import feature_kind
from ser.features.frontend import Frontend
from tests.support import FEATURES, tone


def windows(seconds: float) -> np.ndarray:
    return np.stack([tone(seconds, freq=f)[:, 0] * g for f, g in ((150.0, 1.0), (310.0, 0.05), (90.0, 0.4))])


def test_the_log_mel_front_end_is_training_s_log_mel(tmp_path):
    from ser.audio import normalise_level
    from ser.features.logmel import logmel

    params = FeatureParams(**{**FEATURES, "level_db": -25.0})
    front = feature_kind("logmel").frontend(params)
    front.save(tmp_path / "frontend.npz")
    loaded = Frontend.load(tmp_path)
    x = windows(float(FEATURES["duration"]))
    expected = logmel(normalise_level(x, params.sample_rate, -25.0), params)
    got = loaded(x)
    assert got.shape == (3, *front.shape) == expected.shape
    assert np.abs(got - expected).max() < 2e-3  # dB: the float32 kernels' documented bound


def test_the_whisper_front_end_is_whisper_s_log_mel_and_pads_to_the_context():
    from ser.features.whisper import whisper_logmel

    params = FeatureParams(kind="whisper_base", duration=1.5, whisper_context=2.0, level_db=None)
    front = feature_kind("whisper_base").frontend(params)
    x = windows(1.5)
    got = front(x)
    expected = whisper_logmel(np.pad(x, ((0, 0), (0, 8000)))).transpose(0, 2, 1)  # 2 s of context: zeros after
    assert got.shape == (3, 200, 80) == (3, *front.shape)
    assert np.abs(got - expected).max() < 1e-4
