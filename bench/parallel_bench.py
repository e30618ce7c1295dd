"""Compare settings of the speaker-independent benchmark with many runs at once, pair by pair.

Each (setting, seed, fold) is its own `ravdess_bench.py --only-folds F` process, and up to
`--parallel` run at a time: one small model leaves most of a GPU (or a many-core machine)
idle, so eight runs side by side finish in about the time of two. Jobs start seed by seed,
so a deadline cuts the last seed short rather than a setting. Afterwards every setting's runs
are merged into `<out>/<setting>.json` and each setting is compared with the first one by
`compare_runs.paired` on the selection speakers (`--select-speakers`, never trained or stopped on).
With several seeds, each setting's seed ensemble (the mean of a fold's runs' probabilities,
from their `probs.npz`) is scored too, on the selection and the test speakers.

    python -m bench.parallel_bench --out reports/bench-select --seeds 42,43 --parallel 8 \\
        --setting P= --setting L="train.schedule=cosine train.average_last=10" -- --set features.workers=16
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.compare_runs import paired
from bench.results import load_probs, seed_ensemble

ROOT = Path(__file__).resolve().parents[1]  # the runs import `bench` from the repository root


def setting(text: str) -> tuple[str, list[str]]:
    """`NAME=key=value key=value` -> (NAME, ["--set", "key=value", ...]); `NAME=` is the defaults."""
    name, _, sets = text.partition("=")
    if not name or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--setting {text!r}: expected NAME=key=value ... (NAME a plain word)")
    return name, [a for kv in sets.split() for a in ("--set", kv)]


def run_jobs(jobs: list[tuple[str, list[str]]], out: Path, parallel: int, deadline: float) -> list[str]:
    """Run (name, command) jobs, `parallel` at a time, none started within 60 s of `deadline`; log lines."""
    t0, lines = time.time(), []
    running: list[tuple[subprocess.Popen, str, float]] = []  # (process, job name, start time)
    log = (out / "runner.log").open("a")

    def say(msg: str) -> None:
        lines.append(f"{time.time() - t0:6.0f}s {msg}")
        print(lines[-1], flush=True)
        log.write(lines[-1] + "\n")

    while jobs or running:
        while jobs and len(running) < parallel and deadline - time.time() > 60:
            name, cmd = jobs.pop(0)
            (out / "runs" / name).mkdir(parents=True, exist_ok=True)
            with (out / "runs" / name / "log.txt").open("w") as f:
                limit = [] if math.isinf(deadline) else ["timeout", str(int(deadline - time.time()))]
                proc = subprocess.Popen([*limit, *cmd], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
            running.append((proc, name, time.time()))
            say(f"start {name}")
        if jobs and deadline - time.time() <= 60:
            say(f"{len(jobs)} jobs not started: the deadline is near")
            jobs.clear()
        for item in [r for r in running if r[0].poll() is not None]:
            running.remove(item)
            say(f"done {item[1]} rc={item[0].returncode} in {time.time() - item[2]:.0f}s")
        time.sleep(0.5)
    log.close()
    return lines


def merge_ensembles(runs: list[dict], classes: list[str]) -> dict | None:
    """Seed ensembles of one setting's runs (from their `probs.npz`), on the selection and test speakers.

    Returns:
        {"select": ..., "test": ...} as `ravdess_bench.seed_ensemble` scores them (roles every run
        has), with `members`: {fold: runs averaged}; None when no fold has more than one run.
    """
    roles = [r for r in ("select", "test") if runs and all(f"{r}_probs" in run for run in runs)]
    out = {role: e for role in roles if (e := seed_ensemble(runs, classes, role))}
    if not out:
        return None
    folds = sorted({r["fold"] for r in runs})
    return out | {"members": {f: sum(r["fold"] == f for r in runs) for f in folds}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--setting",
        dest="settings",
        type=setting,
        action="append",
        required=True,
        help="NAME=key=value ... (repeatable; the first is the baseline)",
    )
    ap.add_argument("--seeds", default="42", help="comma-separated training seeds")
    ap.add_argument("--folds", default="0,1,2,3,4,5", help="comma-separated 0-based folds")
    ap.add_argument("--select-speakers", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=float("inf"), help="seconds; later jobs are not started")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("bench_args", nargs="*", help="after --: passed to every ravdess_bench.py run")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = [
        sys.executable,
        "-m",
        "bench.ravdess_bench",
        "--protocols",
        "speaker",
        "--select-speakers",
        str(args.select_speakers),
        *args.bench_args,
    ]
    order = [
        (name, sets, seed, fold)
        for seed in args.seeds.split(",")
        for fold in args.folds.split(",")
        for name, sets in args.settings
    ]
    jobs = [
        (
            f"{name}-s{seed}-f{fold}",
            [
                *base,
                *sets,
                "--set",
                f"train.seed={seed}",
                "--only-folds",
                fold,
                "--out",
                str(args.out / "runs" / f"{name}-s{seed}-f{fold}"),
            ],
        )
        for name, sets, seed, fold in order
    ]
    run_jobs(jobs, args.out, args.parallel, time.time() + args.deadline)
    merged: dict[str, list[dict]] = {name: [] for name, _ in args.settings}
    ensembles: dict[str, dict | None] = {}
    for name, _ in args.settings:
        probs, classes = [], []
        for res in sorted((args.out / "runs").glob(f"{name}-s*-f*/results.json")):
            data = json.loads(res.read_text())
            merged[name] += data["speaker"]["runs"]
            classes = data["speaker"]["classes"]
            if res.with_name("probs.npz").exists():
                probs += load_probs(res.with_name("probs.npz"))
            shutil.rmtree(res.with_name("model"), ignore_errors=True)  # each run's saved model: only `cost` reads it
        ensembles[name] = merge_ensembles(probs, classes)
        (args.out / f"{name}.json").write_text(
            json.dumps(
                {"speaker": {"runs": merged[name]} | ({"seed_ensemble": ensembles[name]} if ensembles[name] else {})},
                indent=1,
            )
        )
    first = args.settings[0][0]
    report = {
        name: paired({"speaker": {"runs": merged[first]}}, {"speaker": {"runs": runs}})
        for name, runs in merged.items()
        if name != first and runs and merged[first]
    }
    (args.out / "comparison.json").write_text(
        json.dumps(
            {"baseline": first, "against": report, "seed_ensembles": {n: e for n, e in ensembles.items() if e}},
            indent=1,
        )
    )
    for name, ens in ensembles.items():
        if ens:
            print(
                f"{name}: mean of each fold's seeds' probabilities ({sum(ens['members'].values())} runs, "
                f"{len(ens['members'])} folds): "
                + ", ".join(
                    f"{role} UAR {100 * e['uar']['mean']:.1f} ± {100 * e['uar']['std']:.1f} %"
                    for role, e in ens.items()
                    if role != "members"
                )
            )
    for name, res in report.items():
        s = res["select_uar"]
        print(
            f"{name} - {first}, {res['pairs']} pairs: select UAR {100 * s['diff_mean']:+.1f} ± "
            f"{100 * s['diff_sem']:.1f} points ({s['other_better']}/{s['base_better']} pairs better/worse)"
        )
    return 0 if report else 1


if __name__ == "__main__":
    raise SystemExit(main())
