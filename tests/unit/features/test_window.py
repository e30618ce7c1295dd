"""Where a clip's window starts (`features.align`), the same in training and serving; the level step's DC removal
and gain cap."""

from __future__ import annotations

import numpy as np

from ser.audio import fixed_window, gated_level, normalise_level, speech_frames, window_start
from ser.config import AugmentParams, FeatureParams
from ser.data.featurize import ClipJob, clip_windows
from ser.serving.predictor import ClipWindows

SR = 16000


def clip(lead_s: float, speech_s: float = 1.5, tail_s: float = 0.5, seed: int = 0) -> np.ndarray:
    """`lead_s` of room tone (-70 dBFS), `speech_s` of noise at -20 dBFS, then `tail_s` of room tone."""
    rng = np.random.default_rng(seed)
    quiet = lambda s: 3e-4 * rng.standard_normal(round(s * SR))  # noqa: E731
    return np.concatenate([quiet(lead_s), 0.1 * rng.standard_normal(round(speech_s * SR)), quiet(tail_s)]).astype(
        np.float32
    )


def test_speech_frames_and_the_window_start():
    wave = clip(1.2)
    centres, speech = speech_frames(wave, SR)
    assert abs(centres[speech][0] - 1.2) < 0.03 and abs(centres[speech][-1] - 2.7) < 0.03
    assert abs(window_start(wave, SR, 0.5, "speech") - 0.7) < 0.03  # offset 0.5 s before the onset
    assert window_start(clip(0.1), SR, 0.5, "speech") == 0.0  # never before the clip's start
    assert window_start(wave, SR, 0.5, "fixed") == 0.5  # fixed: offset, whatever the clip
    assert window_start(np.zeros(SR, np.float32), SR, 0.5, "speech") == 0.0  # silence: the start
    assert window_start(np.zeros(100, np.float32), SR, 0.5, "speech") == 0.0  # shorter than a frame


def test_training_and_serving_cut_the_same_window(tmp_path):
    import soundfile as sf

    features = FeatureParams(kind="logmel", align="speech", offset=0.5, duration=3.5)
    for lead in (0.05, 1.0):  # a corpus that opens with speech, one that opens with a second of silence
        wave = clip(lead, seed=int(lead * 10))
        sf.write(tmp_path / f"{lead}.wav", wave, SR, subtype="FLOAT")
        trained = clip_windows(ClipJob(str(tmp_path / f"{lead}.wav"), f"x:{lead}", 0, features, AugmentParams()))
        served, starts = ClipWindows(features, ["a", "b"]).windows(wave)
        assert len(served) == 1 and np.array_equal(served[0], trained[0][0])
        assert np.isclose(starts[0], window_start(wave, SR, 0.5, "speech"))
        assert np.count_nonzero(fixed_window(wave, SR, starts[0], 3.5)) >= round(1.5 * SR)  # all the speech kept


def test_the_level_step_removes_dc_keeps_padding_zero_and_caps_its_gain():
    rng = np.random.default_rng(1)
    window = np.zeros(3 * SR, np.float32)
    window[: 2 * SR] = 0.01 * rng.standard_normal(2 * SR) + 0.2  # a DC offset 26 dB above the signal
    out = normalise_level(window[None], SR, -25.0)[0]
    assert abs(out[: 2 * SR].mean()) < 1e-6 and not out[2 * SR :].any()
    assert abs(gated_level(out[None], SR)[0] + 25.0) < 0.01  # the level of the signal, not of the offset
    click = (1e-3 * rng.standard_normal(2 * SR)).astype(np.float32)
    click[100] = 0.5  # a quiet recording with one loud click
    capped = normalise_level(click[None], SR, -25.0)[0]
    assert np.isclose(np.abs(capped).max(), 1.0) and gated_level(capped[None], SR)[0] < -25.0
