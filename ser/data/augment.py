"""Waveform augmentation for training clips: speed perturbation, pitch shift, additive noise, sub-windows.

Applied once per training clip in the `featurize` stage (DVC caches the result,
so the costly pitch shift is paid once); validation and test clips are never
augmented. SpecAugment-style masking lives in the model (`ser.training.model.SpecAugment`)
because it is cheap and should draw new masks every epoch.

    rng = np.random.default_rng(seed)
    wave2, applied = augment_wave(wave, 16000, params.augment, rng)
"""

from __future__ import annotations

import librosa
import numpy as np

from ser.audio import audio_length, resample
from ser.config import AugmentParams


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise at `snr_db` relative to the clip's mean power."""
    power = float(np.mean(wave**2)) or 1e-10
    noise = rng.standard_normal(int(wave.shape[0])).astype(np.float32)
    return (wave + noise * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, as in Kaldi's 3-way perturbation)."""
    return resample(wave, int(round(sample_rate * factor)), sample_rate)


def shift_pitch(wave: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """Shift pitch by `semitones`, keeping duration (phase vocoder + soxr)."""
    shifted = librosa.effects.pitch_shift(wave, sr=sample_rate, n_steps=semitones, res_type="soxr_hq")
    return shifted.astype(np.float32)


def augment_wave(
    wave: np.ndarray, sample_rate: int, params: AugmentParams, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """Apply speed, pitch and noise, each with its own rate, and name what was applied.

    Returns:
        The augmented wave and the list of applied transforms (e.g. ["speed", "noise"]).
    """
    applied: list[str] = []
    if rng.random() < params.speed.rate:
        wave = change_speed(wave, rng.uniform(params.speed.min, params.speed.max), sample_rate)
        applied.append("speed")
    if rng.random() < params.pitch.rate and params.pitch.semitones > 0:
        steps = rng.uniform(-params.pitch.semitones, params.pitch.semitones)
        wave = shift_pitch(wave, steps, sample_rate)
        applied.append("pitch")
    if rng.random() < params.noise.rate:
        wave = add_noise(wave, rng.uniform(*params.noise.snr_db), rng)
        applied.append("noise")
    return wave, applied


def sub_window(window: np.ndarray, sample_rate: int, min_duration: float, rng: np.random.Generator) -> np.ndarray:
    """A random part of the window's audio, moved to the window's start and zero-padded to its length.

    Its length is drawn uniformly from `min_duration` to the window's duration (at most the audio the window
    holds), its start uniformly where it fits: the window as a short clip, which serving zero-pads the same way.
    """
    audio = audio_length(window)
    length = min(audio, round(rng.uniform(min_duration, len(window) / sample_rate) * sample_rate))
    start = int(rng.integers(0, audio - length + 1))
    out = np.zeros_like(window)
    out[:length] = window[start : start + length]
    return out
