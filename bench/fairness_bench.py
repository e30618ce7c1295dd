"""Fairness of the served model under abuse: normal clients alone, beside heavy clients, beside slowloris.

Starts one `bentoml serve` of the model ($SER_MODEL_TAG or `--model`, default ser_emotion:latest) on 127.0.0.1 and
runs, one after the other for `--duration` s each: `alone` (`--clients` normal clients posting a 3.5 s 16 kHz WAV
to /predict back to back), `heavy` (the same plus `--heavy-clients` posting the heaviest request the default limits
accept, honouring a 503's Retry-After) and `slowloris` (the same normal clients plus `--slow-connections` raw
connections: by default half send a POST head and never the body, a quarter drip a header byte and a quarter a body
byte every `--drip-every` s (`--slow-modes`); one the server answers or closes is recorded and reopened). Reports
the normal clients' req/s, p50/p99 and errors per phase, the heavy clients' statuses, the slow connections'
outcomes and seconds held, server CPU-s and RSS per phase, the ratios against `alone` and issue 48's acceptance
checks (reported, not asserted).

    python -m bench.fairness_bench --duration 60 --out reports/serving/fairness.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.serve_bench import ROOT
from bench.serve_load import clip_bytes, cpu_s, drive, heavy_requests, rss_mb
from ser.io import write_json
from tests.support import Served, wav_bytes

PHASES = ("alone", "heavy", "slowloris")
HEAVY = {"clip": "60 s 48 kHz stereo clip", "batch": "batch at the sample budget"}
RETRY_AFTER_CAP_S = 5.0  # a well-behaved client sleeps Retry-After, but no longer than this
HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
REST = b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n\r\n"
BODY = b'--x\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\nRIFF'
MODES = ("bodyless", "drip-head", "drip-body")
SETTINGS = ("duration", "clients", "heavy_clients", "slow_connections", "slow_modes", "drip_every")  # in the report


async def heavy_client(url: str, files: list[tuple[str, bytes]], stop_at: float, timeout: float, seen: dict) -> None:
    """Post the heavy request back to back until `stop_at`; count statuses (`503 overloaded`) in `seen`."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        while time.perf_counter() < stop_at:
            form = aiohttp.FormData()
            for i, (field, data) in enumerate(files):
                form.add_field(field, data, filename=f"{i}.wav", content_type="application/octet-stream")
            wait = 0.0
            try:
                async with session.post(url, data=form) as resp:
                    body = await resp.read()
                    code = _code(body) if resp.status != 200 else ""
                    seen["statuses"][f"{resp.status} {code}".strip()] += 1
                    if resp.status == 503 and resp.headers.get("Retry-After", "").strip().isdigit():
                        wait = min(float(resp.headers["Retry-After"]), RETRY_AFTER_CAP_S)
            except (aiohttp.ClientError, TimeoutError) as err:
                seen["statuses"][type(err).__name__] += 1
            if wait:
                seen["retry_after_s"].append(wait)
                await asyncio.sleep(min(wait, max(0.0, stop_at - time.perf_counter())))


def _code(body: bytes) -> str:
    """The `code` of an answer in the one error shape, or "" for any other body."""
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        return str(answer.get("code", "")) if isinstance(answer, dict) else ""
    return ""


async def _answer(reader: asyncio.StreamReader, first: bytes) -> str:
    """`<status> <code>` of the answer that starts with `first` (read on for up to 1 s), or "closed"."""
    data = first
    while data and len(data) < 65536:
        try:
            more = await asyncio.wait_for(reader.read(65536), 1.0)
        except (TimeoutError, OSError):
            break
        if not more:
            break
        data += more
    if not data:
        return "closed"
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    status = parts[1].decode(errors="replace") if len(parts) > 1 else "garbled"
    return f"{status} {_code(body)}".strip()


async def slow_connection(host: str, port: int, mode: str, drip_every: float, stop_at: float, slow: dict) -> None:
    """One slowloris slot: open, send `mode`'s bytes, and on an answer or a close record it and open another."""
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as err:
            slow["outcomes"][mode][f"connect {type(err).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        slow["opened"] += 1
        slow["open"] += 1
        drip = {"bodyless": b"", "drip-head": REST, "drip-body": BODY * 1000}[mode]
        read = asyncio.ensure_future(reader.read(65536))
        try:
            writer.write(HEAD if mode == "drip-head" else HEAD + REST)
            sent = 0
            while True:
                done, _ = await asyncio.wait({read}, timeout=drip_every)
                if done:
                    break
                if sent < len(drip):
                    writer.write(drip[sent : sent + 1])
                    sent += 1
            try:
                outcome = await _answer(reader, read.result())
            except OSError as err:
                outcome = type(err).__name__
        except OSError as err:
            outcome = type(err).__name__
        finally:
            slow["open"] -= 1
            read.cancel()
            writer.close()
        held = time.perf_counter() - t0
        slow["outcomes"][mode][outcome] += 1
        slow["held_s"].append(held)
        await asyncio.sleep(max(0.0, 1.0 - held))  # reopen a slot no faster than once a second


async def run_phase(base: str, name: str, data: bytes, heavy: tuple[str, list], args: argparse.Namespace) -> dict:
    """The normal clients for `--duration` s, beside the heavy clients or slow connections that `name` adds."""
    stop_at = time.perf_counter() + args.duration
    seen: dict = {"statuses": Counter(), "retry_after_s": []}
    slow: dict = {"opened": 0, "open": 0, "outcomes": {m: Counter() for m in args.slow_modes}, "held_s": []}
    side = []
    if name == "heavy":
        url = f"{base}/{heavy[0]}"
        side = [heavy_client(url, heavy[1], stop_at, args.request_timeout, seen) for _ in range(args.heavy_clients)]
    elif name == "slowloris":
        host, port = base.removeprefix("http://").split(":")
        side = [
            slow_connection(host, int(port), args.slow_modes[i % len(args.slow_modes)], args.drip_every, stop_at, slow)
            for i in range(args.slow_connections)
        ]
    tasks = [asyncio.ensure_future(s) for s in side]
    snapshot: dict = {}

    async def at_stop() -> None:
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        snapshot["open_at_end"] = slow["open"]

    clock = asyncio.ensure_future(at_stop())
    try:
        normal = await drive(f"{base}/predict", data, args.duration, args.clients, timeout=args.request_timeout)
    finally:
        await clock
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result: dict = {"normal": normal}
    if name == "heavy":
        done, waits = seen["statuses"].get("200", 0), seen["retry_after_s"]
        result["heavy"] = {"requests": done, "rps": round(done / args.duration, 2), "statuses": dict(seen["statuses"])}
        result["heavy"] |= {"retry_after_waits": len(waits), "retry_after_s": round(sum(waits), 1)}
    elif name == "slowloris":
        outcomes, held = {m: dict(c) for m, c in slow["outcomes"].items() if c}, slow["held_s"]
        total: Counter = sum((Counter(c) for c in outcomes.values()), Counter())
        result["slow"] = {
            "opened": slow["opened"],
            "open_at_end": snapshot["open_at_end"],
            "outcomes": dict(total),
            "outcomes_by_mode": outcomes,
            "held_s_median": round(float(np.median(held)), 1) if held else None,
        }
    return result


def phase_line(name: str, phase: dict) -> str:
    """One printed line per phase."""
    n = phase["normal"]
    line = (
        f"{name:9s} normal {n['rps']:6.1f} req/s p50 {n['p50_ms']:.0f} ms p99 {n['p99_ms']:.0f} ms, "
        f"{n['errors']} errors {n['error_kinds']} | server {phase['server_cpu_s']} CPU-s, RSS {phase['rss_end_mb']} MiB"
    )
    if "heavy" in phase:
        line += f" | heavy {phase['heavy']['rps']} req/s {phase['heavy']['statuses']}"
    if "slow" in phase:
        s = phase["slow"]
        line += f" | slow: {s['opened']} opened, {s['open_at_end']} open at the end, {s['held_s_median']} s held "
        line += f"(median) {s['outcomes']}"
    return line


def compare(phases: dict) -> tuple[dict, dict]:
    """Normal clients' rps and p99 over `alone`'s, and issue 48's acceptance points as booleans."""
    if "alone" not in phases:
        return {}, {}
    alone = phases["alone"]["normal"]
    ratios, checks = {}, {}
    for name in ("heavy", "slowloris"):
        if name in phases:
            n = phases[name]["normal"]
            rps = round(n["rps"] / alone["rps"], 3) if alone["rps"] else float("nan")
            p99 = round(n["p99_ms"] / alone["p99_ms"], 3) if alone["p99_ms"] else float("nan")
            ratios[name] = {"rps": rps, "p99": p99}
            if name == "heavy":
                checks[name] = {"rps_ge_0.5x": rps >= 0.5, "p99_le_3x": p99 <= 3.0, "no_normal_errors": not n["errors"]}
            else:
                checks[name] = {"rps_ge_0.8x": rps >= 0.8, "no_normal_errors": not n["errors"]}
    return ratios, checks


def name_list(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An option's type: comma-separated names of `allowed`, refused (naming them) otherwise."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or set(names) - set(allowed):
            raise argparse.ArgumentTypeError(f"unknown name(s) in {text!r}; expected some of {', '.join(allowed)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("SER_MODEL_TAG", "ser_emotion:latest"), help="model tag")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=8, help="normal clients (3.5 s clips)")
    parser.add_argument("--heavy-clients", type=int, default=4, help="clients posting the heavy request")
    parser.add_argument("--heavy", choices=list(HEAVY), default="clip", help=f"the heavy request: {HEAVY}")
    parser.add_argument("--heavy-seconds", type=float, help="post an N-second 48 kHz stereo WAV instead of --heavy")
    parser.add_argument("--slow-connections", type=int, default=512, help="slowloris connections held open")
    parser.add_argument(
        "--slow-modes",
        type=name_list(MODES),
        default=["bodyless", "drip-head", "bodyless", "drip-body"],
        help=f"slow connection i sends the i-th mode of this comma list, cyclically: {', '.join(MODES)}",
    )
    parser.add_argument("--drip-every", type=float, default=5.0, help="seconds between dripped bytes")
    parser.add_argument(
        "--phases",
        type=name_list(PHASES),
        default=list(PHASES),
        help=f"comma-separated, in order: {','.join(PHASES)}",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a request is an error")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def main(argv: list[str] | None = None) -> dict:
    import bentoml
    import requests

    args = parser().parse_args(argv)
    data, tag = clip_bytes(), str(bentoml.models.get(args.model).tag)
    heavy_name = f"{args.heavy_seconds:g} s 48 kHz stereo clip" if args.heavy_seconds else HEAVY[args.heavy]
    clip = [("audio", wav_bytes(args.heavy_seconds, 48000, 2))] if args.heavy_seconds else []
    heavy = ("predict", clip) if clip else heavy_requests()[heavy_name]
    results: dict = {"cpus": os.cpu_count(), "model": tag, "clip": "3.5 s 16 kHz mono WAV", "heavy_request": heavy_name}
    results |= {k: getattr(args, k) for k in SETTINGS}
    results["phases"] = {}
    env = {"SER_MODEL_TAG": tag, **dict(kv.split("=", 1) for kv in args.server_env)}
    served = Served("ser.serving.service:EmotionService", env=env, cwd=ROOT)
    with served as base:
        assert served.proc is not None  # Served.__enter__ started the process
        pid = served.proc.pid
        asyncio.run(drive(f"{base}/predict", data, 2.0, 2))  # warm the model and the allocator
        for name in args.phases:
            for _ in range(20):  # the previous phase's connections are gone: the server answers /readyz
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            cpu0 = cpu_s(pid)
            phase = asyncio.run(run_phase(base, name, data, heavy, args))
            phase |= {"server_cpu_s": round(cpu_s(pid) - cpu0, 1), "rss_end_mb": round(rss_mb(pid))}
            results["phases"][name] = phase
            print(phase_line(name, phase), flush=True)
    results["vs_alone"], results["checks"] = compare(results["phases"])
    if results["vs_alone"]:
        print("normal clients vs alone:", results["vs_alone"], "checks:", results["checks"], flush=True)
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
