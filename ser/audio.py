"""Audio loading: decode, downmix to mono, resample, and cut the model's window.

Used by ingest (measurements), featurize (training features) and serving, so
every path through the project reads audio the same way.

    wave = load_audio("clip.flac", sample_rate=16000)
    window = fixed_window(wave, 16000, offset=0.5, duration=3.5)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """A file that cannot be decoded as audio, or holds unusable samples."""


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; 1-D input passes through."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr (high quality, fast); no-op when the rates match."""
    if orig_sr == target_sr:
        return wave
    out: np.ndarray = soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32)  # soxr ships no types
    return out


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode a file to float32 mono at `sample_rate`.

    Raises:
        AudioError: naming the file, when it cannot be decoded or is empty.
    """
    try:
        samples, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: cannot decode audio ({err})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples")
    wave = to_mono(samples)
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: holds NaN or infinite samples")
    return resample(wave, sr, sample_rate)


def fixed_window(wave: np.ndarray, sample_rate: int, offset: float, duration: float) -> np.ndarray:
    """Cut `duration` seconds starting at `offset`, zero-padding at the end when short."""
    start = int(round(offset * sample_rate))
    length = int(round(duration * sample_rate))
    segment = wave[start : start + length]
    if segment.shape[0] < length:
        segment = np.pad(segment, (0, length - segment.shape[0]))
    return segment.astype(np.float32, copy=False)


def audio_length(window: np.ndarray) -> int:
    """Samples up to the last non-zero one: the window's length once its zero padding is cut off."""
    nonzero = np.flatnonzero(window)
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


def sliding_windows(wave: np.ndarray, sample_rate: int, duration: float, hop: float) -> np.ndarray:
    """Split a long wave into (n, samples) windows of `duration` every `hop` seconds (last padded)."""
    length = int(round(duration * sample_rate))
    step = max(1, int(round(hop * sample_rate)))
    starts = range(0, max(1, wave.shape[0] - length + step), step)
    windows = [fixed_window(wave[s:], sample_rate, 0.0, duration) for s in starts]
    return np.stack(windows)
