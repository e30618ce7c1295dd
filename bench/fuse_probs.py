"""Score an equal-weight average of several benchmark runs' test probabilities (late fusion), fold by fold.

Each member is one `probs.npz` (from `ravdess_bench.py`, `parallel_bench.py` or `whisper_probe.py`), or
several joined with `+`, whose runs are pooled into one member: `A+B` of two single-seed runs is the
2-member `train.ensemble` (its members are the CNN-LSTMs of those seeds). A member's runs in a fold (its
seeds) are averaged first, then the members, each with the same weight, and each fold's mean is scored as
protocol (a) scores a model. With `--apart`, the last member's seeds are not averaged: each is fused on its
own and the scores are averaged over them (a random speaker reference's draws, one reference at a time).
The weights are fixed, so nothing is chosen on the test speakers; the files must cover the same folds and
clips (the same corpora, folds and validation speakers).

    .venv/bin/python -m bench.fuse_probs reports/bench-whisper34/probs.npz reports/bench-seeds2/probs.npz
    .venv/bin/python -m bench.fuse_probs A/probs.npz+B/probs.npz C/probs-3_4-mean-16.npz --apart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fuse(members: list[list[dict]], classes: list[str]) -> dict:
    """Mean ± std over folds of the scores of the members' averaged probabilities.

    Args:
        members: per member, its run records (`load_probs`): fold, seed, test_probs, test_y.

    Raises:
        ValueError: a member lacks a fold another has, or scored other clips in it.
    """
    from bench.results import METRICS, spread
    from ser.training.evaluate import score

    folds = sorted({r["fold"] for r in members[0]})
    scores = []
    for f in folds:
        means, labels = [], None
        for m, runs in enumerate(members):
            group = [r for r in runs if r["fold"] == f]
            if not group:
                raise ValueError(f"member {m + 1} has no run for fold {f}")
            for r in group:
                if labels is None:
                    labels = r["test_y"]
                elif not np.array_equal(labels, r["test_y"]):
                    raise ValueError(f"member {m + 1}, fold {f}: other test clips than member 1's; cannot average")
            means.append(np.mean([r["test_probs"] for r in group], axis=0))
        assert labels is not None  # each member has runs for fold f (checked above), so labels was set
        scores.append(score(labels, np.mean(means, axis=0).argmax(1), classes))
    return {"folds": len(folds), **{k: spread([s[k] for s in scores]) for k in METRICS}}


def fuse_apart(members: list[list[dict]], classes: list[str]) -> list[dict]:
    """`fuse` once per seed of the last member (the others whole): one result per seed, in seed order."""
    *rest, last = members
    return [fuse([*rest, [r for r in last if r["seed"] == s]], classes) for s in sorted({r["seed"] for r in last})]


def load_member(spec: str) -> list[dict]:
    """One member's runs: a probs.npz, or several joined with `+` (their runs pooled)."""
    from bench.results import load_probs

    return [run for part in spec.split("+") for run in load_probs(Path(part))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probs", nargs="+", help="one member each: a probs.npz, or several joined with +")
    ap.add_argument("--apart", action="store_true", help="fuse each seed of the last member on its own")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="for the class names")
    args = ap.parse_args(argv)
    missing = [part for spec in args.probs for part in spec.split("+") if not Path(part).is_file()]
    if missing:
        ap.error(f"no such probabilities file: {', '.join(missing)} (a benchmark run's probs.npz)")
    from ser.config import load_params

    members = [load_member(spec) for spec in args.probs]
    classes = load_params(args.params).data.class_set()  # data.classes, or all eight when [] (the corpora's union)
    results = fuse_apart(members, classes) if args.apart else [fuse(members, classes)]
    apart = f", the last member's {len(results)} seeds apart" if args.apart else ""
    print(f"equal-weight mean of {len(members)} members over {results[0]['folds']} folds{apart}:")
    for key in (k for k in results[0] if k != "folds"):
        if args.apart:  # the mean over the last member's seeds, then each seed's fold mean
            each = [100 * r[key]["mean"] for r in results]
            print(f"  {key}: {np.mean(each):.1f} % (seeds: {', '.join(f'{e:.1f}' for e in each)})")
        else:
            print(f"  {key}: {100 * results[0][key]['mean']:.1f} ± {100 * results[0][key]['std']:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
