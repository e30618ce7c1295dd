"""Paired comparison of two RAVDESS benchmark runs, fold by fold and seed by seed.

Settings are compared on the same folds and seeds, so each (fold, seed) pair is one
paired difference; the mean difference and how many pairs favour each side say more
than two 6-fold means, which move ~4 points from run to run. Compare on `select`
(speakers held out with `--select-speakers`, never trained or stopped on) when both runs
have it; `val` is biased toward early stopping, which picked its epoch on those speakers.

    python -m bench.compare_runs reports/bench-a/results.json reports/bench-b/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

SCORES = ("select_uar", "val_uar", "test_uar", "test_accuracy")


def paired(base: dict, other: dict, protocol: str = "speaker") -> dict:
    """Per-score paired differences (other - base) over the (fold, seed) pairs both runs have.

    Raises:
        ValueError: when the runs share no (fold, seed) pair.
    """
    a = {(r["fold"], r["seed"]): r for r in base[protocol]["runs"]}
    b = {(r["fold"], r["seed"]): r for r in other[protocol]["runs"]}
    keys = sorted(a.keys() & b.keys())
    if not keys:
        raise ValueError(f"the two runs share no (fold, seed) pair in protocol {protocol!r}")
    out: dict[str, Any] = {"pairs": len(keys)}
    for s in SCORES:
        if all(s in a[k] and s in b[k] for k in keys):
            d = np.array([b[k][s] - a[k][s] for k in keys])
            out[s] = {
                "base": float(np.mean([a[k][s] for k in keys])),
                "other": float(np.mean([b[k][s] for k in keys])),
                "diff_mean": float(d.mean()),
                "diff_sem": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0,
                "other_better": int((d > 0).sum()),
                "base_better": int((d < 0).sum()),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path, help="results.json of the baseline run")
    ap.add_argument("other", type=Path, help="results.json of the run compared with it")
    ap.add_argument("--protocol", default="speaker", choices=("speaker", "article"))
    args = ap.parse_args(argv)
    base, other = (json.loads(p.read_text()) for p in (args.base, args.other))
    res = paired(base, other, protocol=args.protocol)
    print(f"{res['pairs']} paired (fold, seed) runs; other - base, in points (mean ± standard error)\n")
    print("| score | base | other | difference | pairs other/base better |\n|---|---|---|---|---|")
    for s in SCORES:
        if s in res:
            r = res[s]
            print(
                f"| {s} | {100 * r['base']:.1f} | {100 * r['other']:.1f} | "
                f"{100 * r['diff_mean']:+.1f} ± {100 * r['diff_sem']:.1f} | {r['other_better']}/{r['base_better']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
