"""Audio loading: decode, downmix to mono, resample, and cut the model's window; and each window's speech level.

Used by ingest (measurements), featurize (training features) and serving, so
every path through the project reads audio the same way. `normalise_level` is
`features.level_db`'s step inside `ser.features.extract`.

    wave = load_audio("clip.flac", sample_rate=16000)
    window = fixed_window(wave, 16000, offset=window_start(wave, 16000, 0.5, "speech"), duration=3.5)
    same_level = normalise_level(np.stack([window]), 16000, target_db=-25.0)
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


SPEECH_FRAME_S, SPEECH_HOP_S = 0.025, 0.010  # speech frames: 25 ms, every 10 ms
SPEECH_TOP_DB = 35.0  # a frame this far below the wave's loudest still counts as speech (clean recordings)


def speech_frames(wave: np.ndarray, sample_rate: int, top_db: float = SPEECH_TOP_DB) -> tuple[np.ndarray, np.ndarray]:
    """Centre times (s) of the 25 ms frames of `wave` and whether each is speech (its RMS within `top_db` of the
    loudest frame's)."""
    frame, hop = int(round(SPEECH_FRAME_S * sample_rate)), int(round(SPEECH_HOP_S * sample_rate))
    if wave.shape[0] < frame:
        return np.zeros(0), np.zeros(0, dtype=bool)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wave, np.float64), frame)[::hop]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    centres = (np.arange(rms.shape[0]) * hop + frame / 2) / sample_rate
    loudest = rms.max()
    if loudest <= 0:  # digital silence: no speech at all
        return centres, np.zeros(rms.shape[0], dtype=bool)
    return centres, rms >= loudest * 10 ** (-top_db / 20)


def window_start(wave: np.ndarray, sample_rate: int, offset: float, align: str = "fixed") -> float:
    """Where a clip's model window starts (`features.align`): at `offset` (fixed), or `offset` seconds before the
    first speech frame, never before the clip's start (speech: a corpus whose clips open with speech keeps it)."""
    if align == "fixed":
        return offset
    centres, speech = speech_frames(wave, sample_rate)
    onset = float(centres[speech][0] - SPEECH_FRAME_S / 2) if speech.any() else 0.0
    return max(0.0, onset - offset)


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


GATE_BLOCK_S, GATE_STEP_S = 0.4, 0.1  # ITU-R BS.1770's gating blocks: 400 ms, 75 % overlap
# BS.1770's relative gate; its absolute gate (-70 LUFS) assumes a calibrated level, and a quiet recording's speech
# can sit under it, so here the absolute gate only drops digital silence and zero padding.
ABSOLUTE_GATE_DB, RELATIVE_GATE_DB = -120.0, -10.0


def gated_level(waves: np.ndarray, sample_rate: int) -> np.ndarray:
    """Each wave's speech level in dBFS: the mean power of its 400 ms blocks that pass BS.1770-style gates.

    Blocks under -120 dBFS (digital silence, zero padding) are left out, then those more than 10 dB under the
    remaining blocks' mean power: pauses and a short clip's padding do not lower the level, as they lower a plain
    RMS. No K-weighting (its high shelf barely moves speech). NaN for a silent wave or one shorter than a block.
    """
    waves = np.atleast_2d(np.asarray(waves, np.float64))
    block, step = round(GATE_BLOCK_S * sample_rate), round(GATE_STEP_S * sample_rate)
    if waves.shape[1] < block:
        return np.full(len(waves), np.nan)
    power = np.lib.stride_tricks.sliding_window_view(waves**2, block, axis=1)[:, ::step].mean(axis=2)
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(power)
    out = np.full(len(waves), np.nan)
    for i, (p, d) in enumerate(zip(power, db, strict=True)):
        loud = d > ABSOLUTE_GATE_DB
        if loud.any():
            kept = loud & (d > 10 * np.log10(p[loud].mean()) + RELATIVE_GATE_DB)
            out[i] = 10 * np.log10(p[kept].mean())
    return out


def normalise_level(waves: np.ndarray, sample_rate: int, target_db: float) -> np.ndarray:
    """The waves with their DC offset removed and scaled to `target_db` gated level (`gated_level`), the gain capped
    so no sample passes full scale (a recording with a loud click stays below it rather than being pushed far over
    what training saw); silent or too-short waves are only centred.

    The offset is each wave's mean over its audio, up to its zero padding (`audio_length`), so the padding stays
    zero.
    """
    waves = np.array(waves, np.float32, ndmin=2)
    for wave in waves.reshape(-1, waves.shape[-1]):
        end = audio_length(wave)
        wave[:end] -= wave[:end].mean() if end else 0.0
    gain = 10 ** ((target_db - gated_level(waves, sample_rate)) / 20)
    peak = np.abs(waves.reshape(len(waves), -1)).max(axis=1)
    gain = np.minimum(gain, 1.0 / np.maximum(peak, 1e-9))
    gain = np.where(np.isfinite(gain), gain, 1.0).astype(np.float32)
    return waves * gain.reshape(-1, *([1] * (waves.ndim - 1)))
