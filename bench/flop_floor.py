"""The machine's limit for serving the Whisper-feature model: encoder FLOPs per window and sustained GEMM rate.

A request to the Whisper-feature model costs, above all, the frozen encoder on one window: two
convolutions and `max(features.whisper_layers)` transformer blocks of Whisper base. `encoder_flops`
counts their multiply-adds from the shapes (2 FLOPs each: convolutions, the four attention
projections, the attention products, the MLP; norms, GELU and softmax are left out, a few per cent).
`gemm_rate` measures what this CPU sustains on a large float32 matrix product through TensorFlow's
matmul, with the threads the service gives it: an optimistic rate for the encoder's smaller products. The floor
is then `gemm_rate / encoder_flops` requests per second: no implementation of this model on these
cores can serve more, and a service's req/s divided by it is the fraction of the machine it uses.

    python -m bench.flop_floor --duration 3.5 --layers 3,4       # prints GFLOP/window, GFLOP/s, floor req/s
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

WIDTH, MLP, MELS, HOP, RATE = 512, 2048, 80, 160, 16000  # Whisper base


def encoder_flops(seconds: float, deepest_layer: int) -> float:
    """FLOPs of Whisper base's encoder up to block `deepest_layer` on one window of `seconds`."""
    mel_frames = int(round(seconds * RATE)) // HOP  # the STFT's frames less the last, as Whisper
    frames = (mel_frames + 1) // 2  # conv2 has stride 2
    conv = 2 * mel_frames * WIDTH * MELS * 3 + 2 * frames * WIDTH * WIDTH * 3
    projections = 2 * frames * WIDTH * (3 * WIDTH + WIDTH)  # q, k, v and the output projection
    products = 2 * 2 * frames * frames * WIDTH  # q k^T and attention x v, over all heads
    mlp = 2 * 2 * frames * WIDTH * MLP
    return float(conv + min(deepest_layer, 6) * (projections + products + mlp))


def gemm_rate(threads: int, size: int = 2048, blocks: int = 5, block_s: float = 1.0) -> dict:
    """Sustained float32 GEMM GFLOP/s of TensorFlow's matmul on `threads` threads.

    The median rate of each of `blocks` one-second blocks of back-to-back products; the best block is
    the rate (a ceiling should be the most the machine gave, not a dip from a neighbour's load).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised: measure with the pools it has
        pass
    rng = np.random.default_rng(0)
    a, b = (tf.constant(rng.standard_normal((size, size)).astype(np.float32)) for _ in range(2))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()  # compile and warm
    medians = []
    for _ in range(blocks):
        rates: list[float] = []
        stop = time.perf_counter() + block_s
        while time.perf_counter() < stop or len(rates) < 3:
            t0 = time.perf_counter()
            matmul(a, b).numpy()
            rates.append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
        medians.append(round(float(np.median(rates)), 1))
    return {"gflops": max(medians), "block_medians": medians, "size": size, "threads": threads}


def floor(seconds: float, layers: list[int], threads: int | None = None) -> dict:
    """The encoder's FLOPs per window, the GEMM rate and the resulting ceiling in requests per second."""
    flops = encoder_flops(seconds, max(layers))
    gemm = gemm_rate(threads or os.cpu_count() or 1)
    return {
        "window_s": seconds,
        "layers": layers,
        "encoder_gflop_per_window": round(flops / 1e9, 3),
        "gemm": gemm,
        "floor_rps": round(gemm["gflops"] * 1e9 / flops, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.5, help="window length in seconds")
    parser.add_argument("--layers", default="3,4", help="encoder layers the model reads (the deepest counts)")
    args = parser.parse_args()
    result = floor(args.duration, [int(x) for x in args.layers.split(",")])
    print(
        f"encoder {result['encoder_gflop_per_window']} GFLOP per {args.duration:g} s window; GEMM "
        f"{result['gemm']['gflops']} GFLOP/s on {result['gemm']['threads']} threads; floor {result['floor_rps']} req/s"
    )


if __name__ == "__main__":
    main()
