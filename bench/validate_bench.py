"""Benchmark of the data contract on the real corpus (../shared/data/ravdess-speech-16k).

Times, each as the median of `--runs` runs: the ingest measurement
(`build_manifest`: one decode per clip, RMS/peak/clipping/checksum), and
`validate_raw` three ways: in a fresh Python process as the DVC stage runs it
(interpreter start and the Great Expectations import included), the same with a
warm bytecode cache (PYTHONPYCACHEPREFIX, for environments that set
PYTHONDONTWRITEBYTECODE), and in-process once GX is imported. Then prints what
the contract flagged. Skips with a message when the corpus is absent.

    python -m bench.validate_bench [--runs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "ravdess-speech-16k"
CHILD = """
import sys, time, yaml
from pathlib import Path
from ser.config import parse_params
from ser.data.validate import validate_raw
raw = yaml.safe_load(Path("params.yaml").read_text())
raw["validate"].update(mode="quarantine", min_rms_dbfs=-70.0)
out = Path(sys.argv[1])
validate_raw(parse_params(raw), out / "manifest.csv", out / "accepted.csv", out / "quarantine.csv",
             out / "raw.json", out / "raw.html")
"""


def median_time(func, runs: int) -> float:
    """Median wall time of `runs` calls of func(), in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(out: Path, env: dict) -> None:
    """validate_raw in a fresh interpreter, as `dvc repro` runs the stage."""
    subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=ROOT, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="decode threads for build_manifest")
    args = parser.parse_args()
    if not (CORPUS / "Actor_01").is_dir():
        print(f"skipped: real RAVDESS not found at {CORPUS} (needs ../shared/data/ravdess-speech-16k)")
        return
    logging.getLogger("ser").setLevel(logging.ERROR)  # "skipped 2 non-audio file(s)" (README, MANIFEST) each run
    from ser.data.ingest import build_manifest

    out = Path(tempfile.mkdtemp(prefix="validate_bench-"))
    manifest = build_manifest(CORPUS, args.workers)
    manifest.to_csv(out / "manifest.csv", index=False)
    rows = [
        (
            f"ingest measurement (build_manifest, {len(manifest)} clips, {args.workers} threads)",
            median_time(lambda: build_manifest(CORPUS, args.workers), args.runs),
        )
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows.append(
        (
            "validate_raw, fresh process (as the DVC stage; GX import included)",
            median_time(lambda: child(out, env), args.runs),
        )
    )
    cached = {**env, "PYTHONPYCACHEPREFIX": str(out / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
    child(out, cached)  # warms the bytecode cache
    warm = median_time(lambda: child(out, cached), args.runs)
    rows.append(("validate_raw, fresh process, warm bytecode cache", warm))
    from ser.config import load_params
    from ser.data.validate import validate_raw

    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(
        update={"contract": params.contract.model_copy(update={"mode": "quarantine", "min_rms_dbfs": -70.0})}
    )
    paths = [out / n for n in ("accepted.csv", "quarantine.csv", "raw.json", "raw.html")]
    validate_raw(params, out / "manifest.csv", *paths)  # imports GX once
    rows.append(
        (
            "validate_raw, in-process (GX already imported)",
            median_time(lambda: validate_raw(params, out / "manifest.csv", *paths), args.runs),
        )
    )
    print(f"\nmedian of {args.runs} runs on {os.cpu_count()} cores, corpus {CORPUS}\n")
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"  {name:<{width}}  {seconds:6.2f} s")
    result = json.loads((out / "raw.json").read_text())
    print(f"\nflagged: {result['failed'] or 'nothing'}; quarantined {result['quarantined']} of {result['clips']}:")
    for check in (c for c in result["checks"] if not c["success"]):
        print(f"  [{check['key']}] {check['expectation']}: {check['offending']}")
    print(f"outputs under {out}")


if __name__ == "__main__":
    main()
