"""Waveform augmentation for training clips: speed perturbation, pitch shift, additive noise, sub-windows;
and the recording conditions `bench.robustness_probe` scores a model under (telephone band, room reverberation,
level).

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


def telephone_band(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The wave as a narrow-band telephone line passes it: 300-3400 Hz, through 8 kHz sampling, same length."""
    from scipy.signal import butter, sosfiltfilt

    narrow = resample(wave, sample_rate, 8000)
    sos = butter(4, (300.0, 3400.0), btype="bandpass", fs=8000, output="sos")
    back = resample(sosfiltfilt(sos, narrow).astype(np.float32), 8000, sample_rate)
    out = np.zeros_like(wave)
    out[: min(len(wave), len(back))] = back[: len(wave)]
    return out


def reverberate(wave: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """The wave in a room whose reverberation decays by 60 dB in `rt60` seconds, at the wave's RMS.

    The room is synthetic (Gaussian noise under an exponential decay after the direct sound), so no impulse
    response files are needed. The microphone is at the critical distance, where the reverberation carries
    as much energy as the direct sound; the tail past the wave's end is cut, as a fixed window would.
    """
    from scipy.signal import fftconvolve

    t = np.arange(1, int(rt60 * sample_rate)) / sample_rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # ln(1000) = 6.9: -60 dB at rt60
    response = np.concatenate([[1.0], tail / np.sqrt(np.sum(tail**2))])
    wet = fftconvolve(wave, response)[: len(wave)]
    rms_in, rms_out = np.sqrt(np.mean(wave**2)), np.sqrt(np.mean(wet**2)) or 1.0
    return (wet * (rms_in / rms_out)).astype(np.float32)


def change_level(wave: np.ndarray, db: float) -> np.ndarray:
    """The wave `db` decibels louder (negative: quieter), clipped to [-1, 1] as a recorder would."""
    return np.clip(wave * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def augment_wave(
    wave: np.ndarray, sample_rate: int, params: AugmentParams, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """Apply speed, pitch, room, noise and telephone line, each with its own rate, and name what was applied.

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
    # The room before the noise and the line after it, as a recording meets them; no draw when a rate is 0, so
    # the copies of runs without them stay the same.
    if params.room.rate > 0 and rng.random() < params.room.rate:
        wave = reverberate(wave, sample_rate, rng.uniform(*params.room.rt60), rng)
        applied.append("room")
    if rng.random() < params.noise.rate:
        wave = add_noise(wave, rng.uniform(*params.noise.snr_db), rng)
        applied.append("noise")
    if params.telephone.rate > 0 and rng.random() < params.telephone.rate:
        wave = telephone_band(wave, sample_rate)
        applied.append("telephone")
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
