"""`ser.features.lane_fft`, the 8-frames-a-vector FFT behind `logmel`: the same spectrum and energies as a
float64 FFT of librosa's centred, windowed frames, and a clip's result independent of its batch."""

from __future__ import annotations

import numpy as np
import pytest

from ser.features import lane_fft
from ser.features.mel_bank import hann_window


def _lane_fft(waves: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(bins, rows) complex64 packed spectrum and (rows,) energies of every frame of `waves`."""
    clips, samples = waves.shape
    frames = 1 + samples // hop
    length = lane_fft.columns(frames, n_fft, hop) * hop
    spectrum = np.zeros((n_fft // 2, clips * frames + lane_fft.LANES), np.complex64)
    energy = np.zeros(clips * frames, np.float32)
    table_re, table_im = lane_fft.stage_tables(n_fft // 2)
    buffers = np.zeros(length, np.float32), np.zeros(length, np.float32), np.zeros(n_fft, np.int64)
    scratch = np.zeros(lane_fft.scratch_size(n_fft), np.float32)
    window = hann_window(n_fft)
    lane_fft.lane_fft_clips(
        waves, hop, window, table_re, table_im, *buffers, spectrum.view(np.float32), energy, scratch
    )
    return spectrum[:, : clips * frames], energy


def _reference(waves: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """float64: librosa's centred frames (n_fft / 2 zeros each side), Hann window, FFT of x[2n] + i x[2n + 1]."""
    padded = np.pad(waves.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    windowed = (frames * hann_window(n_fft, np.float64)).reshape(-1, n_fft)
    packed = windowed[:, 0::2] + 1j * windowed[:, 1::2]
    return np.fft.fft(packed, axis=1).T, (windowed**2).sum(axis=1)


def test_supported_settings():
    assert lane_fft.supported(1024, 256) and lane_fft.supported(128, 32) and lane_fft.supported(8192, 8)
    assert not lane_fft.supported(1024, 100)  # hop not a multiple of the lanes
    assert not lane_fft.supported(512, 256)  # 256 bins: not a power of 8
    assert not lane_fft.supported(400, 160) and not lane_fft.supported(1023, 256) and not lane_fft.supported(16, 8)


@pytest.mark.parametrize(
    "n_fft, hop, samples",
    [(1024, 256, 56000), (1024, 256, 1000), (1024, 8, 3001), (128, 32, 5000), (8192, 512, 20000), (1024, 2048, 9000)],
)
def test_lane_fft_matches_a_float64_fft_of_the_windowed_frames(n_fft, hop, samples):
    rng = np.random.default_rng(samples)
    waves = np.stack([0.3 * rng.standard_normal(samples), np.sin(np.arange(samples) * 0.05), np.zeros(samples)]).astype(
        np.float32
    )
    spectrum, energy = _lane_fft(waves, n_fft, hop)
    ref_spectrum, ref_energy = _reference(waves, n_fft, hop)
    assert spectrum.shape == ref_spectrum.shape and energy.shape == ref_energy.shape
    # float32 rounding: a few 1e-7 of the largest bin (scipy's pocketfft: the same order)
    assert np.abs(spectrum - ref_spectrum).max() <= 5e-7 * np.abs(ref_spectrum).max()
    assert np.abs(energy - ref_energy).max() <= 2e-6 * ref_energy.max()
    assert not spectrum[:, -(1 + samples // hop) :].any() and not energy[-(1 + samples // hop) :].any()  # silence


def test_a_clip_gets_the_same_spectrum_alone_or_in_a_batch():
    """Every lane runs the same instructions: a frame's bits do not depend on its lane or clip."""
    rng = np.random.default_rng(3)
    waves = (0.2 * rng.standard_normal((5, 7777))).astype(np.float32)  # 31 frames: the last lane block partial
    spectrum, energy = _lane_fft(waves, 1024, 256)
    frames = 1 + 7777 // 256
    for c in range(5):
        alone, alone_energy = _lane_fft(waves[c : c + 1], 1024, 256)
        assert np.array_equal(alone, spectrum[:, c * frames : (c + 1) * frames])
        assert np.array_equal(alone_energy, energy[c * frames : (c + 1) * frames])
    shifted, _ = _lane_fft(np.ascontiguousarray(waves[:, 256:]), 1024, 256)  # frames move to other lanes
    assert np.array_equal(shifted[:, 2 : frames - 2], spectrum[:, 3 : frames - 1])
