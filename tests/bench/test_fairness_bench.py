"""`bench.fairness_bench`: the three phases against one served tiny model, in one run.

Its numbers are measurements, not asserted; what it served and counted is (each phase's normal requests, the
heavy clients' statuses, the slow connections it opened and kept open, ratios computed from the reported numbers).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ser.io import read_json
from tests.support import package_tiny_model


@pytest.mark.slow
def test_fairness_bench_runs_alone_heavy_and_slowloris_and_reports_ratios_against_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import fairness_bench

    tiny = package_tiny_model(tmp_path / "tiny")
    monkeypatch.setenv("SER_MODEL_TAG", tiny["tag"])
    out = tmp_path / "fairness.json"
    argv = ["--duration", "2", "--clients", "2", "--heavy-clients", "1", "--heavy-seconds", "10"]
    results = fairness_bench.main([*argv, "--slow-connections", "16", "--drip-every", "0.5", "--out", str(out)])

    assert results["model"] == tiny["tag"] and results["heavy_request"] == "10 s 48 kHz stereo clip"
    assert list(results["phases"]) == ["alone", "heavy", "slowloris"]
    assert results["phases"]["alone"]["normal"]["requests"] > 0
    for phase in results["phases"].values():  # beside abuse, refusals are counted (errors) as well as answers
        normal = phase["normal"]
        assert normal["requests"] + normal["errors"] > 0 and phase["rss_end_mb"] > 0, phase
        assert set(normal) >= {"requests", "errors", "error_kinds", "rps", "p50_ms", "p99_ms"}
    heavy = results["phases"]["heavy"]["heavy"]
    assert heavy["requests"] == heavy["statuses"].get("200", 0) and sum(heavy["statuses"].values()) > 0
    slow = results["phases"]["slowloris"]["slow"]
    assert slow["opened"] >= 16 and 0 <= slow["open_at_end"] <= 16
    assert sum(slow["outcomes"].values()) == slow["opened"] - slow["open_at_end"]
    assert set(slow["outcomes_by_mode"]) <= {"bodyless", "drip-head", "drip-body"}
    phases = results["phases"]
    for name in ("heavy", "slowloris"):
        ratio = phases[name]["normal"]["rps"] / phases["alone"]["normal"]["rps"]
        assert results["vs_alone"][name]["rps"] == pytest.approx(ratio, abs=1e-3)
        p99 = phases[name]["normal"]["p99_ms"] / phases["alone"]["normal"]["p99_ms"]
        assert results["vs_alone"][name]["p99"] == pytest.approx(p99, abs=1e-3)
        assert results["checks"][name] and all(isinstance(v, bool) for v in results["checks"][name].values())
    assert set(results["checks"]["heavy"]) == {"rps_ge_0.5x", "p99_le_3x", "no_normal_errors"}
    assert read_json(out)["vs_alone"] == results["vs_alone"]


@pytest.mark.parametrize(
    ("sent", "outcome"),
    [
        (
            b'HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\r\n{"error": "x", "code": "timeout"}',
            "408 timeout",
        ),
        (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\r\nslow down", "429"),
        (b"", "closed"),
    ],
)
def test_a_slow_connection_records_the_status_and_code_of_the_answer_or_the_close(sent: bytes, outcome: str) -> None:
    from bench.fairness_bench import _answer

    async def answer() -> str:
        reader = asyncio.StreamReader()
        reader.feed_data(sent[:20])
        reader.feed_data(sent[20:])
        reader.feed_eof()
        return await _answer(reader, await reader.read(20))

    assert asyncio.run(answer()) == outcome
