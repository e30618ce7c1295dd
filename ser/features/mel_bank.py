"""The fixed tables behind `ser.features.logmel`: mel filter bank (dense and by bin), Hann window, twiddles.

All are cached per setting, so a batch pays for them once per process.

    bank = sparse_bank(16000, 1024, 64, 0.0, None)
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import librosa
import numpy as np


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Slaney mel filter bank, shape (n_fft // 2 + 1, n_mels), float32, cached."""
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.ascontiguousarray(basis.T, dtype=np.float32)


@lru_cache(maxsize=8)
def hann_window(n_fft: int, dtype: type = np.float32) -> np.ndarray:
    """Periodic Hann window, as librosa's STFT uses."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(dtype)


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames a centred STFT yields for `n_samples` samples."""
    return 1 + n_samples // hop_length


class SparseBank(NamedTuple):
    """The mel filter bank by FFT bin (CSR): bin k feeds mels `mel[ptr[k]:ptr[k+1]]` with `weight[...]`."""

    ptr: np.ndarray  # (n_bins + 1,) int64
    mel: np.ndarray  # (nnz,) int64
    weight: np.ndarray  # (nnz,) float32
    weight64: np.ndarray  # the same, float64 (for refined frames)
    first: int  # first bin with a weight
    stop: int  # one past the last bin with a weight
    inverse_peak: np.ndarray  # (n_mels,) float64: 1 / the filter's peak weight (0 for an empty filter)


@lru_cache(maxsize=8)
def sparse_bank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> SparseBank:
    """`mel_filters` by FFT bin, with each filter's peak, cached."""
    dense = mel_filters(sample_rate, n_fft, n_mels, fmin, fmax)
    bins, mels = np.nonzero(dense)  # row-major: sorted by bin, then mel
    ptr = np.zeros(dense.shape[0] + 1, np.int64)
    np.add.at(ptr, bins + 1, 1)
    first, stop = (int(bins.min()), int(bins.max()) + 1) if bins.size else (0, 0)
    weight = dense[bins, mels].astype(np.float32)
    peak = dense.max(axis=0).astype(np.float64)
    inverse_peak = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0)
    ptr = np.cumsum(ptr)
    return SparseBank(ptr, mels.astype(np.int64), weight, weight.astype(np.float64), first, stop, inverse_peak)


@lru_cache(maxsize=8)
def twiddles(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi k / n_fft, k < n_fft / 2, float32 (to recombine a packed real FFT)."""
    angle = 2 * np.pi * np.arange(n_fft // 2) / n_fft
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
