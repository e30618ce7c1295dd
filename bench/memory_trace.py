"""Where the service's RSS growth under load goes: Python objects, glibc's free lists, or native code.

Starts `EmotionService` (the default, in-process batching) with `SER_MEMORY_TRACE_DIR`
(`ser.serving.memtrace`: tracemalloc plus a sampler of RSS and glibc's `mallinfo2`), warms it, drives
`--concurrency` clients for `--duration` seconds as `bench/serve_bench.py` does, and reports, from the
end of warm-up to the end of the load: growth per request of the RSS, of the Python heap (what
tracemalloc sees), of glibc's bytes in use and of glibc's free-but-held bytes; the curve (every
`SER_MEMORY_TRACE_S` seconds); and the source lines whose Python allocations grew most (a tracemalloc
snapshot diff). tracemalloc slows the service: this measures memory, not speed. A variant's
environment (`--server-env SER_MALLOC_TRIM_S=0`) A/B-tests a fix.

    SER_MODEL_TAG=ser_emotion:latest python -m bench.memory_trace --duration 60 --out reports/memory_trace.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.serve_bench import ROOT, VARIANTS, served_features
from bench.serve_load import clip_bytes, drive
from ser.io import write_json
from tests.support import Served

KB = 1024


def _snapshot(folder: Path, name: str, timeout: float = 300) -> tracemalloc.Snapshot:
    """Ask the service's trace thread for a snapshot called `name` and wait for it."""
    (folder / f"mark-{name}").touch()
    path, until = folder / f"heap-{name}.tracemalloc", time.time() + timeout
    while not path.exists():
        if time.time() > until:
            raise TimeoutError(f"{path}: the service wrote no snapshot in {timeout:g} s (is SER_MEMORY_TRACE_DIR set?)")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def _trace(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trace.jsonl").read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> dict:
    """One traced run; see the module docstring."""
    target, env = VARIANTS[args.variant]
    data = clip_bytes()
    with tempfile.TemporaryDirectory(prefix="ser-memtrace-") as tmp:
        folder = Path(tmp)
        server_env = {**env, "SER_MEMORY_TRACE_DIR": str(folder), "SER_MEMORY_TRACE_S": str(args.every)}
        server_env.update(kv.split("=", 1) for kv in args.server_env)
        with Served(target, env=server_env, cwd=ROOT) as base:
            url = f"{base}/predict"
            asyncio.run(drive(url, data, args.warm, args.concurrency))  # pools, caches, arenas at full size
            warm = _snapshot(folder, "start")  # tracing starts now: the end snapshot holds what was kept since
            t0 = time.time()
            load = asyncio.run(drive(url, data, args.duration, args.concurrency))
            end = _snapshot(folder, "end")
            t1 = time.time()
            collected = _snapshot(folder, "gc-end")  # the same heap after a full garbage collection
            trace = _trace(folder)
    during = [s for s in trace if t0 - args.every <= s["t"] <= t1 + args.every and "gc_collected" not in s]
    after_gc = next(s for s in trace if "gc_collected" in s)
    first, last = during[0], during[-1]
    n = max(1, load["requests"])

    def per_request(key: str) -> float | None:
        if first.get(key) is None or last.get(key) is None:
            return None
        return round((last[key] - first[key]) / KB / n, 2)

    growth = end.compare_to(warm, "lineno")
    top = [
        {"where": str(stat.traceback[0]), "kb": round(stat.size_diff / KB, 1), "blocks": stat.count_diff}
        for stat in growth[: args.top]
    ]
    chains = [
        {"kb": round(stat.size_diff / KB, 1), "blocks": stat.count_diff, "traceback": stat.traceback.format()}
        for stat in end.compare_to(warm, "traceback")[: args.top]
    ]
    result = {
        "variant": args.variant,
        "server_env": args.server_env,
        "model": served_features()["tag"],
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "requests": load["requests"],
        "errors": load["errors"],
        "rps_traced": load["rps"],
        "kb_per_request": {
            **{k: per_request(k) for k in ("rss", "in_use", "free", "mmapped")},
            "python": round(sum(s.size_diff for s in growth) / KB / n, 2),  # kept since tracing started
        },
        "python_growth_kb": round(sum(s.size_diff for s in growth) / KB, 1),
        # what a full gc.collect() frees of it: reference cycles the collector had not reached yet
        "python_growth_after_gc_kb": round(sum(s.size_diff for s in collected.compare_to(warm, "lineno")) / KB, 1),
        "gc_collected_objects": after_gc["gc_collected"],
        "top_python_growth_after_gc": [
            {"where": str(stat.traceback[0]), "kb": round(stat.size_diff / KB, 1), "blocks": stat.count_diff}
            for stat in collected.compare_to(warm, "lineno")[: args.top]
        ],
        "top_python_growth": top,
        "top_python_growth_tracebacks": chains,  # the same growth by whole call chain (innermost last)
        "curve_mb": [
            {k: round(v / 2**20, 2) if k != "t" and v is not None else v for k, v in s.items()}
            | {"t": round(s["t"] - t0, 1)}
            for s in during
        ],
    }
    per = result["kb_per_request"]
    print(
        f"{args.variant} {args.server_env}: {n} requests, {load['errors']} errors; KB/request: RSS {per['rss']}, "
        f"Python {per['python']}, glibc in use {per['in_use']}, free-held {per['free']}, mmapped {per['mmapped']}",
        flush=True,
    )
    for row in top[:5]:
        print(f"  {row['kb']:+9.1f} KB {row['blocks']:+7d} blocks  {row['where']}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load after warm-up")
    parser.add_argument("--warm", type=float, default=10.0, help="seconds of load before the first snapshot")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between trace samples")
    parser.add_argument("--variant", default="batched", choices=[v for v in VARIANTS if v != "naive"])
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=15, help="source lines listed by Python heap growth")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
