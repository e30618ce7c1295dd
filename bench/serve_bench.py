"""Load benchmark of the BentoML service against a naive `model.predict` baseline.

Starts each variant with `bentoml serve` on 127.0.0.1, drives it from this
(separate) process with concurrent aiohttp clients posting 3.5 s 16 kHz WAV
clips to `/predict`, and reports per variant: p50/p99 latency of single
(sequential) requests, sustained requests/s over `--duration` seconds under
`--concurrency` clients with the error count, p50/p99 under load, the
server's RSS (all processes) at start, after warm-up and at the end, with the
growth per request under load, and the server CPU-seconds of the heaviest
requests the limits accept (a 60 s 48 kHz stereo clip; a batch at the
per-request sample budget) against a normal one; then the throughput ratios.

Variants: `batched` (EmotionService, its fair in-process batcher), `unbatched`
(EmotionService, SER_BATCHING=off: one compiled-graph call per request), `batched-glibc-arenas`
(`batched` with glibc's default malloc arenas: SER_MALLOC_ARENAS=0, `ser.serving.malloc`), `batched-no-trim`
(`batched` without giving glibc's free pages back every 5 s: SER_MALLOC_TRIM_S=0), `batched-trim-1s`
(every second), `batched-bentoml-timers`
(`batched` with BentoML's own request timers, which hold each request for 60 s: `ser.serving.timeouts`),
`batched-int8` (`batched` on
model.int8.onnx: SER_PRECISION=int8) and
`naive` (`bench.naive_service`: decode, `logmel`, Keras `model.predict` per
request, the way a first service would be written).

    BENTOML_HOME=... python -m bench.serve_bench --duration 60 --concurrency 16 \
        --out reports/serve_bench.json

`--baseline-model TAG` serves `batched` with another model first (e.g. the default before a change),
so two models are compared in one run; `--baseline-tree DIR` serves `batched` from another checkout's code
(e.g. the Keras engine before the ONNX export) with the same model: `vs_baseline` holds each variant's
throughput over the first of them. Each variant's cold start (process start to /readyz 200) is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from pathlib import Path

import numpy as np

from bench.serve_load import (
    clip_bytes,
    cpu_s,
    drive,
    heavy_requests,
    request_cost,
    rss_mb,
    sample_rss,
    served_version,
)
from ser.io import write_json
from tests.support import Served

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "batched": ("ser.serving.service:EmotionService", {"SER_BATCHING": "inprocess"}),
    "unbatched": ("ser.serving.service:EmotionService", {"SER_BATCHING": "off"}),
    "batched-glibc-arenas": (
        "ser.serving.service:EmotionService",
        {"SER_BATCHING": "inprocess", "SER_MALLOC_ARENAS": "0"},
    ),
    "batched-bentoml-timers": (
        "ser.serving.service:EmotionService",
        {"SER_BATCHING": "inprocess", "SER_BENTOML_TIMERS": "keep"},
    ),
    "batched-no-trim": ("ser.serving.service:EmotionService", {"SER_BATCHING": "inprocess", "SER_MALLOC_TRIM_S": "0"}),
    "batched-trim-1s": ("ser.serving.service:EmotionService", {"SER_BATCHING": "inprocess", "SER_MALLOC_TRIM_S": "1"}),
    "batched-int8": ("ser.serving.service:EmotionService", {"SER_BATCHING": "inprocess", "SER_PRECISION": "int8"}),
    "naive": ("bench.naive_service:NaiveService", {}),
}


def variant_list(text: str) -> list[str]:
    """`--variants`: comma-separated names of VARIANTS, refused (naming the known ones) otherwise."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {unknown or text!r}; expected some of {', '.join(VARIANTS)}"
        )
    return names


def bench_variant(
    name: str, data: bytes, args: argparse.Namespace, model_tag: str | None = None, tree: Path | None = None
) -> dict:
    """Start one variant, measure its cold start (process start to /readyz 200), single-request latency, then
    sustained load.

    `model_tag` serves that model instead of $SER_MODEL_TAG (`--baseline-model`); `tree` serves another checkout's
    code (`--baseline-tree`: e.g. the engine before a change) with this environment and model store.
    """
    target, env = VARIANTS[name]
    label = f"{name}, {model_tag or tree}" if model_tag or tree else name
    env = {**env, **dict(kv.split("=", 1) for kv in args.server_env)}
    env |= {"SER_MODEL_TAG": model_tag} if model_tag else {}
    env |= {"PYTHONPATH": str(tree)} if tree else {}
    served = Served(target, env=env, cwd=tree or ROOT)
    started = time.monotonic()
    with served as base:
        cold_start_s = time.monotonic() - started
        proc, url = served.proc, f"{base}/predict"
        assert proc is not None  # Served.__enter__ started the process
        rss_start = rss_mb(proc.pid)
        asyncio.run(drive(url, data, 2.0, 2))  # warm the connection pool and the allocator
        version = served_version(url, data)
        single = asyncio.run(drive(url, data, args.single_seconds, 1))
        rss_warm = rss_mb(proc.pid)
        server0, client0 = cpu_s(proc.pid), sum(os.times()[:2])
        curve: list[tuple[float, float]] = []
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, curve, args.duration), daemon=True)
        sampler.start()
        load = asyncio.run(drive(url, data, args.duration, args.concurrency))
        sampler.join()
        n = max(1, load["requests"])
        load["server_cpu_ms_per_req"] = round((cpu_s(proc.pid) - server0) * 1000 / n, 2)
        load["client_cpu_ms_per_req"] = round((sum(os.times()[:2]) - client0) * 1000 / n, 2)
        rss_end = rss_mb(proc.pid)
        heavy = {}
        if args.heavy_repeats and name != "naive":
            normal = request_cost(proc.pid, url, [("audio", data)], args.heavy_repeats)
            heavy = {"normal 3.5 s clip": normal}
            for what, (endpoint, files) in heavy_requests().items():
                cost = request_cost(proc.pid, f"{base}/{endpoint}", files, args.heavy_repeats)
                heavy[what] = {**cost, "cpu_vs_normal": round(cost["cpu_s"] / max(normal["cpu_s"], 1e-6), 1)}
    growth_kb = (rss_end - rss_warm) * 1024 / n
    late = [(t, m) for t, m in curve if t >= 10.0]  # after the first 10 s of load: the steady slope, not the step
    slope_kb = float("nan")
    if len(late) >= 3:
        times, mib = zip(*late, strict=True)
        slope_kb = float(np.polyfit(times, mib, 1)[0]) * 1024 * args.duration / n
    result = {
        "model_version": version,
        "cold_start_s": round(cold_start_s, 2),
        "single": single,
        "load": load,
        "rss_start_mb": round(rss_start),
        "rss_warm_mb": round(rss_warm),
        "rss_end_mb": round(rss_end),
        "rss_growth_kb_per_request": round(growth_kb, 2),
        "rss_slope_after_10s_kb_per_request": round(slope_kb, 2),  # least squares over the curve past 10 s
        "rss_curve_mb": [[round(t, 1), round(m, 1)] for t, m in curve],  # (seconds into the load, MiB)
        "heavy": heavy,
    }
    print(
        f"{label:8s} single p50 {single['p50_ms']:6.1f} ms p99 {single['p99_ms']:6.1f} ms | "
        f"load {load['rps']:6.1f} req/s, {load['errors']} errors, p50 {load['p50_ms']:.1f} ms "
        f"p99 {load['p99_ms']:.1f} ms, server CPU {load['server_cpu_ms_per_req']} ms/req | "
        f"RSS {rss_start:.0f} -> {rss_warm:.0f} -> {rss_end:.0f} MiB ({growth_kb:+.2f} KB/request, "
        f"{slope_kb:+.2f} after 10 s)",
        flush=True,
    )
    for what, cost in heavy.items():
        print(f"{'':8s} {what}: {cost['cpu_s']} CPU-s, {cost['wall_s']} s ({cost.get('cpu_vs_normal', 1)}x normal)")
    return result


def parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load per variant")
    parser.add_argument("--single-seconds", type=float, default=10.0, help="seconds of sequential single requests")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients under load")
    parser.add_argument(
        "--variants",
        type=variant_list,
        default="batched,unbatched,naive",
        help=f"comma-separated: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment"
    )
    parser.add_argument(
        "--heavy-repeats", type=int, default=3, help="sequential heaviest-accepted requests to time (0: skip)"
    )
    parser.add_argument(
        "--baseline-model",
        default=None,
        metavar="TAG",
        help="also serve `batched` with this model (e.g. the previous default) in the same run, first; "
        "reports each variant's throughput relative to it",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        metavar="DIR",
        help="also serve `batched` from this checkout's code (e.g. `git worktree add DIR <commit>` of the engine "
        "before a change), first, with the same model; reports each variant's throughput relative to it",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def served_features() -> dict:
    """The `features` section of the model the variants serve ($SER_MODEL_TAG, default ser_emotion:latest)."""
    import bentoml

    from ser.io import read_json

    stored = bentoml.models.get(os.environ.get("SER_MODEL_TAG", "ser_emotion:latest"))
    return {"tag": str(stored.tag), **read_json(Path(stored.path) / "preprocess.json")["features"]}


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    data = clip_bytes()
    features = served_features()
    results = {
        "cpus": os.cpu_count(),
        "clip": "3.5 s 16 kHz mono WAV",
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "model": features["tag"],
        "feature_kind": features.get("kind", "logmel"),
        "variants": {},
    }
    if results["feature_kind"] == "whisper_base":  # the machine's ceiling for this model, measured before any load
        from bench.flop_floor import floor

        results["floor"] = floor(float(features["duration"]), list(features["whisper_layers"]))
        print(
            f"floor: encoder {results['floor']['encoder_gflop_per_window']} GFLOP/window, GEMM "
            f"{results['floor']['gemm']['gflops']} GFLOP/s -> {results['floor']['floor_rps']} req/s",
            flush=True,
        )
    runs = [(f"batched, {args.baseline_model}", "batched", args.baseline_model, None)] if args.baseline_model else []
    runs += [(f"batched, {args.baseline_tree}", "batched", None, args.baseline_tree)] if args.baseline_tree else []
    for label, name, tag, tree in [*runs, *((n, n, None, None) for n in args.variants)]:
        results["variants"][label] = bench_variant(name, data, args, model_tag=tag, tree=tree)
        if "floor" in results:
            load = results["variants"][label]["load"]
            load["fraction_of_floor"] = round(load["rps"] / results["floor"]["floor_rps"], 3)
            # server CPU per request over the floor's time per request (the machine's GEMM rate, all cores)
            load["cpu_vs_floor"] = round(load["server_cpu_ms_per_req"] * results["floor"]["floor_rps"] / 1000, 2)
    if "naive" in results["variants"]:
        base = results["variants"]["naive"]["load"]["rps"] or float("nan")
        results["speedup_vs_naive"] = {n: round(v["load"]["rps"] / base, 2) for n, v in results["variants"].items()}
        print("throughput vs naive:", results["speedup_vs_naive"])
    if runs:
        base = results["variants"][runs[0][0]]["load"]["rps"] or float("nan")
        results["baseline"] = runs[0][0]
        results["vs_baseline"] = {n: round(v["load"]["rps"] / base, 3) for n, v in results["variants"].items()}
        print(f"throughput vs {runs[0][0]}:", results["vs_baseline"])
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
