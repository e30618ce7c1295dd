"""Log-mel spectrograms: the one feature function for training, evaluation and serving.

`logmel` takes a batch of equal-length waves and returns (clips, frames, mels) float32 in dB. Per
clip it reproduces `librosa.power_to_db(librosa.feature.melspectrogram(y, sr, n_fft, hop_length,
n_mels, fmin, fmax), ref=1.0, top_db=top_db)` (centred periodic-Hann STFT, zero padding, power 2,
Slaney mel filters) to within 1e-3 dB, at several times a per-clip librosa loop's throughput
(`bench/features_bench.py`; numbers in docs/benchmark.md, the method in docs/features.md). How:

* the batch is cut into chunks of ~500 frames (cache-sized) that the calling thread and helper threads (one
  per further CPU) take in turn; every thread keeps its own buffers between calls;
* each frame's float32 FFT (about half of the work) is the half-length complex FFT
  of its samples packed as (even + i odd), the textbook packing of a real FFT,
  bin-major (the frames of a bin contiguous): `ser.features.lane_fft` computes it 8 frames to
  a SIMD vector, windowing and summing each frame's energy on the way in (where
  n_fft / 2 is a power of 8, as the default 1024, and the hop a multiple of 8);
  elsewhere a compiled pass (numba, `ser.features.logmel_kernels`, cached on disk) windows the
  frames and `scipy.fft` transforms them (its real FFT for an odd n_fft);
* a compiled pass recombines the packed spectrum into each bin's power (bins k and n_fft/2 - k together) and
  adds it into the (at most two) mel triangles the bin feeds, vectorised across frames (not the dense product);
* float32 FFT rounding is ~1e-7 of a frame's energy in every bin, which moves a band 70-90 dB under its own
  frame by up to ~2e-3 dB; frames with such a band above the clip's dB floor (~1% of RAVDESS frames,
  `RISK_LIMIT`) are redone with a float64 window and FFT, batched over a thread's chunks;
* librosa's dB floor (max - top_db, and amin) is applied to the powers before a vectorised float32 log
  (`db_kernel`), which also transposes to (frames, mels).

A clip's features do not depend on its batch, its position in it or the thread count (bit for bit); serving
computes the same log-mel in NumPy (`ser.features.frontend`). `warm_up` loads the compiled
kernels (~1 s; compiling them the first time ever, ~5 s); NaN or inf samples give NaN or inf.

    feats = logmel(np.stack(windows), FeatureParams())
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import scipy.fft

from ser.config import FeatureParams
from ser.features import lane_fft
from ser.features import logmel_kernels as kernels
from ser.features.frontend import Frontend
from ser.features.kinds import FeatureKind, ValueRule, window_phrase
from ser.features.mel_bank import SparseBank, hann_window, sparse_bank, twiddles
from ser.features.threads import WORKSPACE, cpu_count, helper_pool

AMIN = 1e-10  # librosa.power_to_db's default floor on power
CHUNK_FRAMES = 512  # frames per chunk (2 clips of 3.5 s): ~2 MB of windowed frames + ~2 MB of spectrum
SIMD_ROWS = 16  # FFT row counts are rounded up to this (see `_rfft_bin_major`)
REFINE_ROWS = 16384  # float32 rows (~75 clips of 3.5 s) whose float64 redo may wait, to batch it
# A frame is redone in float64 when a mel energy above its clip's dB floor is under
# (frame energy) * (the filter's peak weight) / RISK_LIMIT (a larger limit redoes fewer frames;
# inf: never). Chosen on a sweep of two loud tones over noise 30-90 dB down (the worst case, in
# tests/unit/features/test_features.py) and confirmed on all 1440 RAVDESS clips: at 1e4, 2e4, 4e4 and 6e4
# the largest difference from librosa stays 5.4e-4 dB on the sweep and 6.7e-4 dB on RAVDESS; it
# starts to grow at 1e5 (7.3e-4 and 7.4e-4 dB), and float32 alone is off by 1.45e-3 dB. At 4e4,
# 2.5x under that, 1.0% of RAVDESS frames are redone (2.3% at 2e4, which cost ~10% more time).
RISK_LIMIT = 4e4


def _rfft_bin_major(frames: np.ndarray) -> np.ndarray:
    """Real FFT of each row of `frames` (rows, n_fft), same precision, as (bins, rows): bin-major.

    Callers pass a multiple of `SIMD_ROWS` rows (float32; half that for float64): pocketfft
    transforms rows in SIMD groups and a leftover row takes a scalar path that rounds
    differently, which would make a clip's features depend on its position in the batch.
    """
    # Along axis 0 of the transposed view: the output is (bins, rows) C-order, which is what
    # the mel pass wants, with no transposing copy (~20% of the whole logmel otherwise).
    return scipy.fft.rfft(frames.T, axis=0, workers=1)


def _packed_fft_bin_major(frames: np.ndarray) -> np.ndarray:
    """The (n_fft / 2)-point complex FFT of each float32 row of `frames` read as complex64, i.e. of
    z[n] = x[2n] + i x[2n + 1], as (n_fft / 2, rows): bin-major. `kernels.packed_mel_kernel`
    recombines it into the real FFT's bins; ~23% cheaper than `_rfft_bin_major` (pocketfft, even n_fft).
    """
    return scipy.fft.fft(frames.view(np.complex64).T, axis=0, workers=1)


def _lane_spectrum(waves: np.ndarray, params: FeatureParams, frames: int, frame_energy: np.ndarray) -> np.ndarray:
    """`_packed_fft_bin_major` of the windowed frames of `waves` by `ser.features.lane_fft` (LANES frames per
    vector), as (n_fft / 2, clips * frames) complex64; each frame's energy into `frame_energy`."""
    n_fft, hop = params.n_fft, params.hop_length
    ws = WORKSPACE
    length = lane_fft.columns(frames, n_fft, hop) * hop
    spectrum = ws.array("lane_spectrum", (n_fft // 2, waves.shape[0] * frames + lane_fft.LANES), np.complex64)
    table_re, table_im = lane_fft.stage_tables(n_fft // 2)
    padded = ws.array("lane_padded", (length,), np.float32)
    transposed = ws.array("lane_transposed", (length,), np.float32)
    offsets = ws.array("lane_offsets", (n_fft,), np.int64)
    scratch = ws.array("lane_scratch", (lane_fft.scratch_size(n_fft),), np.float32)
    lane_fft.lane_fft_clips(
        waves,
        hop,
        hann_window(n_fft),
        table_re,
        table_im,
        padded,
        transposed,
        offsets,
        spectrum.view(np.float32),
        frame_energy,
        scratch,
    )
    return spectrum


def _padded(rows: int, multiple: int = SIMD_ROWS) -> int:
    return -(-rows // multiple) * multiple


def _chunk_energy(
    waves: np.ndarray, params: FeatureParams, bank: SparseBank, frames: int, risk_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float32 pass over (clips, samples) C-contiguous `waves`.

    Returns:
        mel energies (n_mels, clips * frames) (a new array), each clip's power floor, and the
        rows (clip * frames + frame) to redo in float64.
    """
    clips = waves.shape[0]
    rows = clips * frames
    n_fft = params.n_fft
    ws = WORKSPACE
    frame_energy = ws.array("frame_energy", (rows,), np.float32)
    power = ws.array("power", (2, rows), np.float32)
    flags = ws.array("flags", (rows,), np.uint8)
    energy = np.empty((params.n_mels, rows), np.float32)
    floors = np.empty(clips, np.float32)
    lanes = lane_fft.supported(n_fft, params.hop_length)
    if lanes:  # windowing and the packed FFT in one pass
        spectrum = _lane_spectrum(waves, params, frames, frame_energy)
    else:
        frame_buf = ws.array("frames", (_padded(rows), n_fft), np.float32)
        kernels.frame_kernel(waves, hann_window(n_fft), params.hop_length, frame_buf[:rows], frame_energy)
    if n_fft % 2 == 0:
        cos_k, sin_k = twiddles(n_fft)
        spectrum = spectrum if lanes else _packed_fft_bin_major(frame_buf)
        kernels.packed_mel_kernel(spectrum, rows, cos_k, sin_k, bank.ptr, bank.mel, bank.weight, power, energy)
    else:
        spectrum = _rfft_bin_major(frame_buf)
        kernels.mel_kernel(spectrum, rows, bank.ptr, bank.mel, bank.weight, bank.first, bank.stop, power[0], energy)
    floor_ratio = 10.0 ** (-params.top_db / 10.0)
    kernels.floor_kernel(energy, frames, floor_ratio, AMIN, risk_scale, frame_energy, floors, flags)
    return energy, floors, np.flatnonzero(flags)


def _refine(waves: np.ndarray, params: FeatureParams, bank: SparseBank, frames: int, rows: np.ndarray) -> np.ndarray:
    """Mel energies (n_mels, len(rows)) float64 of rows `rows` of `waves` with a float64 window and FFT.

    (A view of this thread's buffers: use it before the next call.)
    """
    n_fft, count = params.n_fft, rows.size
    padded = np.empty(_padded(count, SIMD_ROWS // 2), np.int64)  # half as many float64 SIMD lanes
    padded[:count] = rows
    padded[count:] = rows[-1]  # padding rows keep the FFT on its SIMD path (see `_rfft_bin_major`)
    ws = WORKSPACE
    frames64 = ws.array("frames64", (padded.size, n_fft), np.float64)
    kernels.frame_rows_kernel(waves, hann_window(n_fft, np.float64), params.hop_length, frames, padded, frames64)
    spectrum64 = _rfft_bin_major(frames64)
    power64 = ws.array("power64", (count,), np.float64)
    energy64 = ws.array("energy64", (params.n_mels, count), np.float64)
    kernels.mel_kernel(spectrum64, count, bank.ptr, bank.mel, bank.weight64, bank.first, bank.stop, power64, energy64)
    return energy64


def _logmel_chunks(waves: np.ndarray, params: FeatureParams, out: np.ndarray, starts: Iterable[int], size: int) -> None:
    """Log-mels of the chunks `waves[i : i + size]`, i from `starts`, into `out[i : i + size]`.

    The float64 redo is batched over the chunks (up to REFINE_ROWS rows of float32 results
    wait for it), so its fixed costs are paid once rather than per chunk.
    """
    frames = out.shape[1]
    bank = sparse_bank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    with np.errstate(invalid="ignore"):  # RISK_LIMIT = inf (never redo) * 0 (empty filter): NaN, never flags
        risk_scale = (RISK_LIMIT * bank.inverse_peak).astype(np.float32)
    pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    waiting = 0

    def flush() -> None:
        rows = np.concatenate([i * frames + risky for i, _, _, risky in pending])
        refined = _refine(waves, params, bank, frames, rows)
        at = 0
        for i, energy, floors, risky in pending:
            energy[:, risky] = refined[:, at : at + risky.size]
            at += risky.size
            kernels.db_kernel(energy, frames, floors, out[i : i + size])
        pending.clear()

    for i in starts:
        energy, floors, risky = _chunk_energy(waves[i : i + size], params, bank, frames, risk_scale)
        if not risky.size:
            kernels.db_kernel(energy, frames, floors, out[i : i + size])
            continue
        pending.append((i, energy, floors, risky))
        waiting += energy.shape[1]
        if waiting >= REFINE_ROWS:
            flush()
            waiting = 0
    if pending:
        flush()


_WARM = threading.Event()


def warm_up() -> None:
    """Load the compiled kernels now (~1 s; the first time ever, compile them: ~5 s), not in a request.

    `logmel` calls it on first use; a server can call it at start-up. Both paths are loaded (the
    float64 redo too), so no later call pays for a kernel it had not needed before.
    """
    if _WARM.is_set():
        return
    waves = np.zeros((1, 1024), np.float32)
    for n_fft, hop in ((255, 64), (256, 64), (128, 32)):  # the real (odd n_fft), packed and lane FFTs
        params = FeatureParams(sample_rate=4000, n_fft=n_fft, hop_length=hop, n_mels=8)
        frames = 1 + (waves.shape[1] + 2 * (n_fft // 2) - n_fft) // params.hop_length
        _logmel_chunks(waves, params, np.empty((1, frames, params.n_mels), np.float32), [0], 1)
    bank = sparse_bank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    _refine(waves, params, bank, frames, np.zeros(1, np.int64))
    _WARM.set()


def logmel(waves: np.ndarray, params: FeatureParams, threads: int | None = None) -> np.ndarray:
    """Log-mel spectrogram of a batch.

    Args:
        waves: (clips, samples) or (samples,) float audio at `params.sample_rate`.
        params: the `features` section of params.yaml.
        threads: threads to spread the batch's chunks over (default: the usable CPU cores,
            at most one per chunk; a batch of up to 2 clips of 3.5 s runs in the calling thread).

    Returns:
        float32 array (clips, frames, n_mels) in dB (ref 1.0, amin 1e-10, top_db per clip).
    """
    warm_up()
    batch = np.ascontiguousarray(np.atleast_2d(waves), dtype=np.float32)
    if batch.ndim != 2:
        raise ValueError(f"waves must be (samples,) or (clips, samples), got shape {np.shape(waves)}")
    clips, samples = batch.shape
    n_fft, hop = params.n_fft, params.hop_length
    frames = 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop  # librosa's count; n_frames() for even n_fft
    out = np.empty((clips, frames, params.n_mels), np.float32)
    if clips == 0 or frames <= 0:
        return out
    per_chunk = max(1, CHUNK_FRAMES // frames)
    starts = range(0, clips, per_chunk)
    workers = min(len(starts), threads or cpu_count())
    if workers <= 1:
        _logmel_chunks(batch, params, out, starts, per_chunk)
        return out
    jobs = iter(starts)  # shared: each thread takes the next chunk (next() on it is atomic under the GIL)
    pool = helper_pool(workers - 1)
    helpers = [pool.submit(_logmel_chunks, batch, params, out, jobs, per_chunk) for _ in range(workers - 1)]
    _logmel_chunks(batch, params, out, jobs, per_chunk)
    for helper in helpers:
        helper.result()
    return out


class LogMel(FeatureKind):
    """`features.kind: logmel`: the log-mel above, (frames, n_mels) in dB; the default kind."""

    name = "logmel"

    def extract(self, waves: np.ndarray, params: FeatureParams) -> np.ndarray:
        return logmel(waves, params)

    def shape(self, params: FeatureParams) -> tuple[int, int]:
        samples = round(params.duration * params.sample_rate)
        return 1 + (samples + 2 * (params.n_fft // 2) - params.n_fft) // params.hop_length, params.n_mels

    def frontend(self, params: FeatureParams) -> Frontend:
        from ser.features.frontend import Frontend

        mel = params.model_dump(include={"sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "top_db"})
        return Frontend.build("db", mel, params.level_db, 0, self.shape(params)[0])

    def value_rules(self, params: FeatureParams, db_range: tuple[float, float]) -> list[ValueRule]:
        # dB values: inside the plausible range, and no window spans more than top_db (librosa's floor)
        return [
            ValueRule("db_min", "min_db", db_range[0], None),
            ValueRule("db_max", "max_db", None, db_range[1]),
            ValueRule("db_span", "span_db", None, params.top_db + 1e-3),
        ]

    def describe(self, features: dict) -> str:
        f = features
        return (
            f"log-mel spectrogram of {window_phrase(f)}, mono {f.get('sample_rate')} Hz, {f.get('n_mels')} mel "
            f"bands, n_fft {f.get('n_fft')}, "
            f"hop {f.get('hop_length')}, dB with top_db {f.get('top_db')}"
        )

    def warm_up(self, params: FeatureParams) -> None:
        warm_up()
