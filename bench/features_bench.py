"""Throughput of `ser.features.logmel` against a plain per-clip librosa loop, and their agreement.

In one process, over the same clips, `repeats` times each: the reference loop (one
`librosa.feature.melspectrogram` + `librosa.power_to_db` per clip, librosa's defaults, as a
first implementation would be written) and `logmel` on batches of `--batch` clips. The two
alternate within each repeat, so both see the same machine load, and each timed pass follows
0.3 s of the same method untimed (CPUs back from idle, warm caches); the garbage collector
is off during each timed pass (as in `timeit`).
Reports, for each, the median clips/s and ms/clip over the repeats, the seconds of every
repeat and the CPU time per clip (all threads: the cost, whatever else the machine runs); the
throughput ratio
(median ours / median librosa; the issue's target is >= 10); and the largest |difference| in dB
between the two feature arrays (the target is <= 1e-3 dB).

Clips are real audio with `--audio-dir` (every FLAC under it, spread evenly over the corpus:
decoded with soundfile, the features window of 3.5 s from 0.5 s, zero-padded when shorter),
otherwise synthetic (white noise, harmonic tones over a noise floor ~40 dB down, silence, at
several levels). Pure tones over a much deeper floor (60 dB down) are the worst case for
`logmel`: nearly every frame then has a band its float32 FFT cannot resolve to 1e-3 dB and is
redone in float64, which costs ~3x (RAVDESS speech: ~1% of frames).

    python -m bench.features_bench --audio-dir ../shared/data/ravdess-speech-16k \\
        [--clips 512] [--repeats 5] [--batch 64] [--out reports/features_bench.json]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy

from ser.config import FeatureParams
from ser.features import lane_fft
from ser.features import logmel as features
from ser.io import write_json

ROOT = Path(__file__).resolve().parents[1]
PAUSE_S = 0.3  # untimed pause before each timed run ...
WARM_S, WARM_CLIPS = 0.3, 64  # ... then untimed runs of the same method (on this many clips) for this long


def librosa_logmel(wave: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The reference for one clip: librosa's mel spectrogram in dB, (frames, n_mels) float32."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=params.sample_rate,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
    )
    return librosa.power_to_db(mel, ref=1.0, top_db=params.top_db).T


def fft_name(params: FeatureParams) -> str:
    """Which FFT `logmel` runs for these settings (scipy also redoes the ~1% of frames checked in float64)."""
    if lane_fft.supported(params.n_fft, params.hop_length):
        import llvmlite.binding
        import numba

        cpu = numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()  # NUMBA_CPU_NAME: built for another
        lanes = f"{lane_fft.LANES} frames a vector, numba {numba.__version__}, {cpu}"
        return f"ser.features.lane_fft ({lanes}), scipy.fft {scipy.__version__}"
    return f"scipy.fft {scipy.__version__}"


def feature_throughput(waves: np.ndarray, params: FeatureParams, repeats: int = 5, batch: int = 64) -> dict:
    """Time the librosa per-clip loop and `logmel` (in batches) over the same waves.

    Args:
        waves: (clips, samples) float32 windows at `params.sample_rate`.
        params: feature parameters for both.
        repeats: timed passes over all the waves, each (librosa loop, then `logmel`).
        batch: clips per `logmel` call.

    Returns:
        n_clips, repeats, batch, fft backend and CPU count; per method the median clips/s and
        ms/clip, the seconds of each repeat and the median CPU ms/clip (process CPU time, every
        thread: what the work costs whatever else runs on the machine); `ratio` (median logmel
        clips/s over median librosa clips/s) and `max_abs_db_diff` between the two outputs.
    """
    waves = np.ascontiguousarray(waves, dtype=np.float32)
    n = len(waves)

    def reference(clips: np.ndarray) -> np.ndarray:
        return np.stack([librosa_logmel(wave, params) for wave in clips])

    def ours(clips: np.ndarray) -> np.ndarray:
        return np.concatenate([features.logmel(clips[i : i + batch], params) for i in range(0, len(clips), batch)])

    seconds: dict[str, list[float]] = {"librosa": [], "logmel": []}
    cpu_seconds: dict[str, list[float]] = {"librosa": [], "logmel": []}
    outputs: dict[str, np.ndarray] = {}
    reference(waves), ours(waves)  # untimed full passes: kernels loaded, allocator and caches settled
    for _ in range(repeats):
        for name, run in (("librosa", reference), ("logmel", ours)):
            # Untimed first: a pause for OpenBLAS's worker threads (librosa's mel product), which
            # spin ~0.1 s after their last call on the cores the next run needs, then WARM_S of
            # the same method, so neither timed run starts on CPUs just back from idle (on this
            # VM a core idle through librosa's single-threaded loop slows logmel's next ~0.2 s
            # by ~30%).
            time.sleep(PAUSE_S)
            warm_until = time.perf_counter() + WARM_S
            while time.perf_counter() < warm_until:
                run(waves[:WARM_CLIPS])
            # The collector off while timing, as `timeit` does: a full collection (~30 ms, made
            # likely by librosa's many small objects) would land in whichever run it hits.
            gc.collect()
            gc.disable()
            try:
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[name] = run(waves)
                seconds[name].append(time.perf_counter() - start)
                cpu_seconds[name].append(time.process_time() - cpu_start)
            finally:
                gc.enable()
    result: dict = {
        "n_clips": n,
        "repeats": repeats,
        "batch": batch,
        "fft": fft_name(params),
        "cpus": os.cpu_count(),
    }
    for name, times in seconds.items():
        median = statistics.median(times)
        result[f"{name}_clips_per_s"] = n / median
        result[f"{name}_ms_per_clip"] = 1e3 * median / n
        result[f"{name}_seconds"] = times
        result[f"{name}_cpu_ms_per_clip"] = 1e3 * statistics.median(cpu_seconds[name]) / n  # all its threads
    result["ratio"] = result["logmel_clips_per_s"] / result["librosa_clips_per_s"]
    result["max_abs_db_diff"] = float(np.abs(outputs["logmel"] - outputs["librosa"]).max())
    return result


def load_clips(audio_dir: Path, n: int, params: FeatureParams) -> np.ndarray:
    """`n` FLACs spread evenly over `audio_dir` (sorted), as (n, samples) float32 feature windows."""
    import soundfile as sf

    files = sorted(audio_dir.rglob("*.flac"))
    if not files:
        raise FileNotFoundError(f"no .flac files under {audio_dir}")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
    start = round(params.offset * params.sample_rate)
    length = round(params.duration * params.sample_rate)
    waves = np.zeros((len(picked), length), np.float32)
    for row, path in zip(waves, picked, strict=True):
        audio, rate = sf.read(path, dtype="float32", start=start, frames=length, always_2d=True)
        if rate != params.sample_rate:
            raise ValueError(f"{path} is {rate} Hz; the features expect {params.sample_rate} Hz")
        row[: len(audio)] = audio.mean(axis=1)
    return waves


def synthetic_clips(n: int, params: FeatureParams, seed: int = 0) -> np.ndarray:
    """(n, samples) float32: white noise, harmonic tones over noise 40 dB down, silence, at random levels."""
    rng = np.random.default_rng(seed)
    length = round(params.duration * params.sample_rate)
    t = np.arange(length) / params.sample_rate
    waves = np.zeros((n, length), np.float32)
    for i, row in enumerate(waves):
        level = 10 ** rng.uniform(-3, -0.5)
        if i % 3 == 0:
            row[:] = level * rng.standard_normal(length)
        elif i % 3 == 1:
            f0 = rng.uniform(100, 300)
            tones = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
            row[:] = level * (tones + 1e-2 * rng.standard_normal(length))  # noise ~40 dB down
        else:
            row[length // 3 :] = level * rng.standard_normal(length - length // 3)  # leading silence
    return waves


def markdown_table(result: dict) -> str:
    """The result as a markdown table (one row per method, then the ratio and the difference)."""
    lines = [
        f"{result['n_clips']} clips, {result['repeats']} repeats, logmel batches of {result['batch']}, "
        f"FFT: {result['fft']}, {result['cpus']} CPUs",
        "",
        "| method | median ms/clip | median clips/s | CPU ms/clip | seconds per repeat |",
        "|---|---:|---:|---:|---|",
    ]
    for name, label in (("librosa", "librosa per-clip loop"), ("logmel", "ser.features.logmel")):
        ms, per_s, cpu = (result[f"{name}_{key}"] for key in ("ms_per_clip", "clips_per_s", "cpu_ms_per_clip"))
        times = ", ".join(f"{s:.3f}" for s in result[f"{name}_seconds"])
        lines.append(f"| {label} | {ms:.3f} | {per_s:.0f} | {cpu:.3f} | {times} |")
    ratio, diff = result["ratio"], result["max_abs_db_diff"]
    lines += ["", f"throughput ratio (median): **{ratio:.1f}x**; max |logmel - librosa|: {diff:.2e} dB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """CLI: measure, print the markdown table, and write the JSON with `--out`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=512, help="clips to featurize (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per method (default 5)")
    parser.add_argument("--batch", type=int, default=64, help="clips per logmel call (default 64)")
    parser.add_argument("--audio-dir", type=Path, help="a folder of 16 kHz FLACs (else synthetic clips)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here (default: print only)")
    parser.add_argument(
        "--blas-threads", type=int, help="cap BLAS threads (librosa's mel product; logmel uses none) to this"
    )
    args = parser.parse_args(argv)
    params = FeatureParams(fmax=8000.0)
    waves = load_clips(args.audio_dir, args.clips, params) if args.audio_dir else synthetic_clips(args.clips, params)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.blas_threads, user_api="blas"):
            result = feature_throughput(waves, params, args.repeats, args.batch)
    else:
        result = feature_throughput(waves, params, args.repeats, args.batch)
    result["source"] = str(args.audio_dir) if args.audio_dir else "synthetic"
    result["blas_threads"] = args.blas_threads
    result["command"] = " ".join(["python -m bench.features_bench", *(sys.argv[1:] if argv is None else argv)])
    print(markdown_table(result))
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
