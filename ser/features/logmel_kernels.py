"""Compiled (numba) loops behind `ser.features.logmel`; see that module for the method.

Each kernel releases the GIL (`nogil`), so `logmel`'s threads run them in parallel, and is
cached on disk after its first compilation (`cache=True`). Arrays are bin-major or mel-major
(frames contiguous) so the inner loops vectorise across frames. Not meant to be called
directly:

    from ser.features.logmel import logmel
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@numba.njit(nogil=True, cache=True, error_model="numpy")
def fill_frame(wave, start, window, row):  # pragma: no cover - compiled
    """row = window * wave[start : start + n_fft], zeros outside the wave (librosa's centre padding)."""
    n_fft = window.shape[0]
    samples = wave.shape[0]
    if start >= 0 and start + n_fft <= samples:
        seg = wave[start : start + n_fft]
        for i in range(n_fft):
            row[i] = seg[i] * window[i]
    else:
        for i in range(n_fft):
            j = start + i
            row[i] = wave[j] * window[i] if 0 <= j < samples else 0.0


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "nsz"})
def frame_kernel(waves, window, hop, out, energy):  # pragma: no cover - compiled
    """out[c * frames + t] = the windowed frame t of clip c (as `fill_frame`); energy[...] = its sum of squares.

    (reassoc lets the sum vectorise; it only steers the precision check, never the features.)
    """
    clips, samples = waves.shape
    n_fft = window.shape[0]
    frames = 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop
    for c in range(clips):
        wave = waves[c]
        for t in range(frames):
            row = out[c * frames + t]
            start = t * hop - n_fft // 2
            total = np.float32(0.0)
            if start >= 0 and start + n_fft <= samples:
                seg = wave[start : start + n_fft]
                for i in range(n_fft):
                    v = seg[i] * window[i]
                    row[i] = v
                    total += v * v
            else:
                for i in range(n_fft):
                    j = start + i
                    v = wave[j] * window[i] if 0 <= j < samples else np.float32(0.0)
                    row[i] = v
                    total += v * v
            energy[c * frames + t] = total


@numba.njit(nogil=True, cache=True, error_model="numpy")
def frame_rows_kernel(waves, window, hop, frames, rows, out):  # pragma: no cover - compiled
    """out[i] = the windowed frame `rows[i]` (row = clip * frames + frame), in out's dtype."""
    n_fft = window.shape[0]
    for i in range(rows.shape[0]):
        c = rows[i] // frames
        fill_frame(waves[c], (rows[i] - c * frames) * hop - n_fft // 2, window, out[i])


@numba.njit(nogil=True, cache=True, error_model="numpy")
def add_power(power, rows, ptr, mel_index, weight, k, energy):  # pragma: no cover - compiled
    """energy[m, :rows] += weight(k, m) * power[:rows] for the (at most two) mels m bin k feeds."""
    for e in range(ptr[k], ptr[k + 1]):
        acc = energy[mel_index[e]]
        w = weight[e]
        for r in range(rows):
            acc[r] += w * power[r]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def mel_kernel(spectrum, rows, ptr, mel_index, weight, first, stop, power, energy):  # pragma: no cover
    """energy[m, r] = sum_k weight(k, m) * |spectrum[k, r]|^2 for the first `rows` frames.

    Both arrays are bin-major, frames contiguous: each bin's power is computed once and added
    into the (at most two) mel rows it feeds, loops that vectorise across frames.
    """
    energy[:, :rows] = 0.0
    for k in range(first, stop):
        if ptr[k] == ptr[k + 1]:
            continue
        src = spectrum[k]
        for r in range(rows):
            v = src[r]
            power[r] = v.real * v.real + v.imag * v.imag
        add_power(power, rows, ptr, mel_index, weight, k, energy)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def packed_mel_kernel(spectrum, rows, cos_k, sin_k, ptr, mel_index, weight, power, energy):  # pragma: no cover
    """As `mel_kernel` for a real FFT X of even length n = 2h, given `spectrum` = Z, the h-point
    complex FFT of each frame's z[j] = x[2j] + i x[2j + 1] (bin-major, as mel_kernel's).

    With W = exp(-2 pi i / n), E[k] = (Z[k] + conj Z[h - k]) / 2 (the even samples' FFT) and
    O[k] = (Z[k] - conj Z[h - k]) / 2i (the odd ones'): X[k] = E[k] + W^k O[k], and X[h - k]
    from the same two values, so bins k and h - k are done together;
    X[0] = Re Z[0] + Im Z[0], X[h] = Re Z[0] - Im Z[0]. cos_k, sin_k: of 2 pi k / n, k < h.
    `power` is (2, rows).
    """
    h = spectrum.shape[0]
    quarter = np.float32(0.25)
    energy[:, :rows] = 0.0
    src = spectrum[0]
    for k in (0, h):
        if ptr[k] < ptr[k + 1]:
            for r in range(rows):
                v = src[r]
                x = v.real + v.imag if k == 0 else v.real - v.imag
                power[0, r] = x * x
            add_power(power[0], rows, ptr, mel_index, weight, k, energy)
    for k in range(1, h // 2 + 1):
        j = h - k
        if ptr[k] == ptr[k + 1] and ptr[j] == ptr[j + 1]:
            continue
        fwd = spectrum[k]
        rev = spectrum[j]
        c = cos_k[k]
        s = sin_k[k]
        low = power[0]
        high = power[1]
        for r in range(rows):
            a = fwd[r]
            b = rev[r]
            sum_re = a.real + b.real
            dif_re = a.real - b.real
            sum_im = a.imag + b.imag
            dif_im = a.imag - b.imag
            q = c * sum_im - s * dif_re
            t = c * dif_re + s * sum_im
            # 2 X[k] = (sum_re + q) + i (dif_im - t); 2 X[h - k] = (sum_re - q) - i (dif_im + t)
            low[r] = quarter * ((sum_re + q) * (sum_re + q) + (dif_im - t) * (dif_im - t))
            high[r] = quarter * ((sum_re - q) * (sum_re - q) + (dif_im + t) * (dif_im + t))
        add_power(low, rows, ptr, mel_index, weight, k, energy)
        if j != k:
            add_power(high, rows, ptr, mel_index, weight, j, energy)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def floor_kernel(energy, frames, floor_ratio, amin, risk_scale, frame_energy, floors, flags):  # pragma: no cover
    """Per clip c: floors[c] = the power under which librosa's dB floor (max - top_db, and amin) holds;
    NaN if the clip has NaN energies, inf if inf ones. Per frame r: flags[r] = 1 where a mel energy
    above that floor is < frame_energy[r] / risk_scale[m] (float32 FFT rounding may matter: redo)."""
    n_mels = energy.shape[0]
    for c in range(floors.shape[0]):
        j0 = c * frames
        peak = np.float32(0.0)
        nan = 0
        for m in range(n_mels):
            row = energy[m, j0 : j0 + frames]
            for j in range(frames):
                v = row[j]
                peak = v if v > peak else peak
                nan |= v != v
        flag = flags[j0 : j0 + frames]
        for j in range(frames):
            flag[j] = 0
        if nan or peak == np.inf:
            floors[c] = np.nan if nan else np.inf
            continue
        floor = np.float32(max(np.float64(peak) * floor_ratio, amin))
        floors[c] = floor
        total = frame_energy[j0 : j0 + frames]
        for m in range(n_mels):
            row = energy[m, j0 : j0 + frames]
            scale = risk_scale[m]
            for j in range(frames):
                v = row[j]
                flag[j] |= (v > floor) & (v * scale < total[j])


@intrinsic
def _float_bits(typingctx, x):  # pragma: no cover - compiled
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, x):  # pragma: no cover - compiled
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@numba.njit(nogil=True, cache=True, error_model="numpy")
def db_kernel(energy, frames, floors, out):  # pragma: no cover - compiled
    """out[c, t, m] = 10 log10(max(energy[m, c * frames + t], floors[c])), librosa's power_to_db.

    (A NaN floor fills the clip with NaN, an inf one with inf, as librosa's max - top_db does.)
    The log is a vectorised float32 one: x = 2^e * f with f in [sqrt(1/2), sqrt(2)),
    ln f = 2 atanh(s), s = (f - 1) / (f + 1), to 5 terms (|error| < 2e-6 dB).
    """
    n_mels = energy.shape[0]
    db_per_octave = np.float32(10.0 * np.log10(2.0))
    db_per_atanh = np.float32(20.0 / np.log(10.0))
    one = np.float32(1.0)
    for c in range(out.shape[0]):
        floor = floors[c]
        if not floor < np.inf:
            out[c] = floor
            continue
        j0 = c * frames
        for m in range(n_mels):
            row = energy[m, j0 : j0 + frames]
            for j in range(frames):
                v = row[j]
                v = v if v > floor else floor
                bits = _float_bits(v)
                octave = (bits - np.int32(0x3F3504F3)) >> np.int32(23)  # 0x3F3504F3: sqrt(1/2)
                f = _bits_float(bits - (octave << np.int32(23)))
                s = (f - one) / (f + one)
                s2 = s * s
                series = np.float32(1 / 7) + s2 * np.float32(1 / 9)
                series = one + s2 * (np.float32(1 / 3) + s2 * (np.float32(1 / 5) + s2 * series))
                row[j] = np.float32(octave) * db_per_octave + db_per_atanh * s * series
        dst = out[c]
        for j in range(frames):
            d = dst[j]
            for m in range(n_mels):
                d[m] = energy[m, j0 + j]
