"""The windowed, packed float32 FFT behind `ser.features.logmel`, 8 frames at a time in SIMD lanes.

For each frame x (n_fft samples, periodic Hann) it computes what `scipy.fft.fft` gives for
z[n] = x[2n] + i x[2n + 1] (the packing `ser.features.logmel_kernels.packed_mel_kernel` recombines into
the real FFT's bins), bin-major (h = n_fft / 2 bins, frames contiguous), and each frame's
energy. scipy's pocketfft is compiled for SSE2 (4 floats, one transform's values per vector);
here each operation of a radix-8 Stockham FFT acts on one vector holding 8 frames (an explicit
LLVM `<8 x float>`: one AVX register, two SSE ones), ~1.6-1.9x faster a frame including the
windowing (2-core AMD EPYC, AVX-512 and AVX2 builds; README "Benchmark" (c)):

* a clip, zero-padded as librosa centres frames, is cut into rows of `hop` samples and
  transposed (8 x 8 tiles of vector shuffles), so that sample i of 8 consecutive frames
  is one contiguous vector: frame t's sample i is row t + i // hop, column i % hop;
* the first radix-8 stage reads those vectors, applies the window and sums the energy;
  the middle stages run between two (h, 8) buffers; the last writes the 8 frames' bins
  into the bin-major spectrum, real and imaginary parts interleaved as complex64.

Supported where h is a power of 8 (>= 64: n_fft 128, 1024, 8192) and hop a multiple of 8
(`supported`); `ser.features` uses scipy elsewhere. Every frame goes through the same vector
instructions whatever its lane (no fused multiply-adds: LLVM contracts none without fast-math
flags), so a clip's spectrum does not depend on its batch. 16 lanes measured no faster with
AVX-512, and with AVX2 (two registers a vector, 16 registers) no faster than scipy at all.

    lane_fft_clips(waves, hop, window, table_re, table_im, padded, transposed, offsets, spectrum, energy, scratch)
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

from ser.features.lane_kernels import LANES, first_stage, last_stage, middle_stage, transpose_tile


def supported(n_fft: int, hop: int) -> bool:
    """Whether `lane_fft_clips` handles these STFT settings (else use scipy)."""
    h = n_fft // 2
    stages = round(math.log(h, 8)) if h > 0 else 0
    return n_fft % 2 == 0 and stages >= 2 and 8**stages == h and hop % LANES == 0


@lru_cache(maxsize=8)
def stage_tables(h: int) -> tuple[np.ndarray, np.ndarray]:
    """Twiddles of the radix-8 stages but the last: for n = h, h / 8, ..., 64 in turn,
    W_n^{r p} = exp(-2 pi i r p / n) at [p * 7 + r - 1], p < n / 8, r = 1..7; (real, imag) float32."""
    parts = []
    n = h
    while n > 8:
        p = np.arange(n // 8)[:, None]
        r = np.arange(1, 8)[None, :]
        parts.append(np.exp(-2j * np.pi * p * r / n).reshape(-1))
        n //= 8
    table = np.concatenate(parts)
    return table.real.astype(np.float32), table.imag.astype(np.float32)


def columns(frames: int, n_fft: int, hop: int) -> int:
    """Rows of `hop` samples in a clip's padded copy: all its frames' samples, a multiple of LANES."""
    blocks = -(-frames // LANES)
    return -(-(blocks * LANES + n_fft // hop + 1) // LANES) * LANES


def scratch_size(n_fft: int) -> int:
    """Floats of the `scratch` buffer `lane_fft_clips` needs."""
    return 4 * (n_fft // 2) * LANES + LANES


@numba.njit(nogil=True, cache=True, error_model="numpy")
def lane_fft_clips(
    waves, hop, window, table_re, table_im, padded, transposed, offsets, spectrum, energy, scratch
):  # pragma: no cover
    """spectrum[:, 2 (c frames + t) :][:2] = (re, im) of the packed FFT of frame t of clip c; energy[c frames + t].

    waves: (clips, samples) float32; window: (n_fft,) float32; spectrum: (h, 2 x width) float32 (a
    complex64 array's view); padded, transposed: (columns * hop,) float32; offsets: (n_fft,) int64;
    scratch: (scratch_size,) float32. Sizes as `columns` and `scratch_size` give them.
    """
    clips, samples = waves.shape
    n_fft = window.shape[0]
    h = n_fft // 2
    frames = 1 + samples // hop
    cols = padded.shape[0] // hop
    out = spectrum.reshape(spectrum.size)
    width2 = spectrum.shape[1]
    a_re = scratch[: h * LANES]
    a_im = scratch[h * LANES : 2 * h * LANES]
    b_re = scratch[2 * h * LANES : 3 * h * LANES]
    b_im = scratch[3 * h * LANES : 4 * h * LANES]
    total = scratch[4 * h * LANES : 4 * h * LANES + LANES]
    for i in range(n_fft):
        offsets[i] = (i % hop) * cols + i // hop
    for c in range(clips):
        # librosa's centring: n_fft / 2 zeros, the clip, zeros
        padded[:h] = 0.0
        padded[h : h + samples] = waves[c]
        padded[h + samples :] = 0.0
        for i in range(0, cols, LANES):
            for j in range(0, hop, LANES):
                transpose_tile(padded, i * hop + j, hop, transposed, j * cols + i, cols)
        for t0 in range(0, frames, LANES):
            total[:] = 0.0
            for p in range(h // 8):
                first_stage(transposed, offsets, t0, window, p, h // 8, table_re, table_im, a_re, a_im, total)
            lanes = min(LANES, frames - t0)
            row = c * frames + t0
            energy[row : row + lanes] = total[:lanes]
            src_re, src_im, dst_re, dst_im = a_re, a_im, b_re, b_im
            n = h // 8
            at = 7 * (h // 8)  # the first stage's twiddles come first in the table
            while n > 8:
                s = h // n
                m = n // 8
                for p in range(m):
                    for q in range(s):
                        middle_stage(
                            src_re,
                            src_im,
                            (q + s * p) * LANES,
                            s * m * LANES,
                            dst_re,
                            dst_im,
                            (q + 8 * s * p) * LANES,
                            s * LANES,
                            table_re,
                            table_im,
                            at + 7 * p,
                        )
                src_re, src_im, dst_re, dst_im = dst_re, dst_im, src_re, src_im
                at += 7 * m
                n //= 8
            s = h // 8  # the last stage (n = 8): bin q + s r. A clip's last block spills its unused lanes
            # into the next clip's first frames, rewritten when that clip comes (the last one's into the margin)
            for q in range(s):
                last_stage(src_re, src_im, q * LANES, s * LANES, out, q * width2 + 2 * row, s * width2)
