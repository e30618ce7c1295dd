"""The load generator and process meters of the serving benchmarks (`serve_bench`, `memory_trace`).

Concurrent aiohttp clients posting one clip back to back, a served model's version from one answer, RSS and
CPU-seconds of a server's process tree (psutil), and the costliest requests the default `serve` limits accept.
Not run on its own: `.venv/bin/python -m bench.serve_bench --help`.
"""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np

from tests.support import wav_bytes


def clip_bytes(seconds: float = 3.5, rate: int = 16000) -> bytes:
    """A WAV of a noisy tone, the shape of a RAVDESS clip."""
    return wav_bytes(seconds, rate)


def _tree(pid: int) -> list:
    import psutil

    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    return sum(p.memory_info().rss for p in _tree(pid)) / 2**20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    return sum(sum(p.cpu_times()[:2]) for p in _tree(pid))


async def drive(url: str, data: bytes, seconds: float, concurrency: int, timeout: float = 60.0) -> dict:
    """`concurrency` clients posting back to back for `seconds`; latencies (ms), count and errors (a request
    unanswered after `timeout` s is one)."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            form = aiohttp.FormData()
            form.add_field("audio", data, filename="clip.wav", content_type="audio/wav")
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=form) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors.append(str(resp.status))
                        continue
            except (aiohttp.ClientError, TimeoutError) as err:
                errors.append(type(err).__name__)
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies or [np.nan])
    p50, p99 = (round(float(np.percentile(lat, q)), 1) for q in (50, 99))
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": round(elapsed, 1),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": p50,
        "p99_ms": p99,
    }


def served_version(url: str, data: bytes) -> str | None:
    """The `model_version` a variant's answer names, so the results show which model each one served."""
    import requests

    answer = requests.post(url, files={"audio": ("clip.wav", data, "audio/wav")}, timeout=60).json()
    return answer.get("model_version") if isinstance(answer, dict) else None


def sample_rss(pid: int, curve: list[tuple[float, float]], seconds: float, every: float = 2.0) -> None:
    """Append (seconds, RSS MiB) of the server every `every` seconds for `seconds`."""
    t0 = time.perf_counter()
    while (t := time.perf_counter() - t0) <= seconds + every / 2:
        curve.append((t, rss_mb(pid)))
        time.sleep(every)


def heavy_requests() -> dict[str, tuple[str, list[tuple[str, bytes]]]]:
    """The costliest requests the default limits accept: name -> (endpoint, files)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    long_clip = io.BytesIO()  # 60 s x 48 kHz x 2 channels = serve.max_samples_per_file, 11 MB of noise
    sf.write(long_clip, (0.1 * rng.standard_normal((60 * 48000, 2))).astype(np.float32), 48000, format="WAV")
    quiet = io.BytesIO()  # the same cost in a tiny FLAC: 4 of them fill serve.max_samples_per_request
    sf.write(quiet, np.zeros((60 * 48000, 2), np.float32), 48000, format="FLAC")
    return {
        "60 s 48 kHz stereo clip": ("predict", [("audio", long_clip.getvalue())]),
        "batch at the sample budget": ("predict_batch", [("audios", quiet.getvalue())] * 4),
    }


def request_cost(pid: int, url: str, files: list[tuple[str, bytes]], repeats: int) -> dict:
    """Server CPU-seconds and wall seconds per request, over `repeats` sequential requests (median wall)."""
    import requests

    walls, cpu0 = [], cpu_s(pid)
    for _ in range(repeats):
        t0 = time.perf_counter()
        resp = requests.post(url, files=[(f, (f"{i}.bin", d)) for i, (f, d) in enumerate(files)], timeout=120)
        walls.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text[:300]
    return {"cpu_s": round((cpu_s(pid) - cpu0) / repeats, 3), "wall_s": round(float(np.median(walls)), 3)}
