"""`bench.serve_bench --baseline-model`: two packaged models served one after the other in one run.

The benchmark starts `bentoml serve` on 127.0.0.1 for each, loads it for a second and compares their
throughput. Its numbers are not asserted (they are measurements); what it served and counted is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.io import read_json
from tests.support import package_tiny_model


def test_serve_bench_serves_the_baseline_model_first_and_reports_throughput_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import serve_bench

    one = package_tiny_model(tmp_path / "one")
    pair = package_tiny_model(tmp_path / "pair", members=2)
    monkeypatch.setenv("SER_MODEL_TAG", pair["tag"])
    out = tmp_path / "bench.json"
    argv = ["--duration", "1", "--single-seconds", "0.5", "--concurrency", "2", "--variants", "batched"]
    results = serve_bench.main([*argv, "--heavy-repeats", "0", "--baseline-model", one["tag"], "--out", str(out)])

    baseline = f"batched, {one['tag']}"
    assert list(results["variants"]) == [baseline, "batched"]
    assert results["model"] == pair["tag"] and results["baseline"] == f"batched, {one['tag']}"
    # each server answered with the model it was asked to serve
    assert results["variants"][baseline]["model_version"] == one["tag"]
    assert results["variants"]["batched"]["model_version"] == pair["tag"]
    for variant in results["variants"].values():
        assert variant["load"]["requests"] > 0 and variant["load"]["errors"] == 0 and variant["cold_start_s"] > 0
    ratios = results["vs_baseline"]
    assert ratios[baseline] == 1.0
    rps = {n: v["load"]["rps"] for n, v in results["variants"].items()}
    assert ratios["batched"] == pytest.approx(rps["batched"] / rps[baseline], abs=1e-3)
    assert read_json(out)["vs_baseline"] == ratios
