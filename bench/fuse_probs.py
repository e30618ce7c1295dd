"""Score an equal-weight average of several benchmark runs' test probabilities (late fusion), fold by fold.

Each `probs.npz` (from `ravdess_bench.py`, `parallel_bench.py` or `whisper_probe.py`) is one member: its
seeds are averaged first, then the members, each with the same weight, and each fold's mean is scored as
protocol (a) scores a model. The weights are fixed, so nothing is chosen on the test actors; the files
must cover the same folds and clips (the same corpus, folds and validation actors).

    .venv/bin/python -m bench.fuse_probs reports/bench-whisper34/probs.npz reports/bench-seeds2/probs.npz
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probs", nargs="+", type=Path, help="probs.npz files, one per member")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="for the class names")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.probs if not p.is_file()]
    if missing:
        ap.error(f"no such probabilities file: {', '.join(missing)} (a benchmark run's probs.npz)")
    from bench.results import load_probs
    from ser.config import load_params

    result = fuse([load_probs(p) for p in args.probs], load_params(args.params).data.classes)
    print(f"equal-weight mean of {len(args.probs)} members over {result['folds']} folds:")
    for key, value in result.items():
        if key != "folds":
            print(f"  {key}: {100 * value['mean']:.1f} ± {100 * value['std']:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
