"""Domain calibration on the cross-corpus matrix: the statistics head plain and calibrated on N unlabelled clips.

For every training set (one corpus by default) and speaker fold of `bench.crosscorpus_bench` (the same folds and
roles), the statistics head is fitted as `--head linear` fits it; then each scored corpus is scored plain and with
its standardisation re-estimated (`ser.serving.profiles.estimate`) from N clips drawn from that corpus's clips the model
neither trained nor chose on (labels unused), `--draws` draws per setting. A draw is `balanced` (at random), or
skewed: 70 % of it from one emotion (`one`: neutral) or two (`two`: neutral and sad), the rest at random.

Methods (`METHODS`): the mean alone, unshrunk or shrunk toward the training mean by N / (N + 10); the mean and the
scale, shrunk. The rule, fixed before the first run: the method offered is the one with the best mean UAR on the
`select` role (the validation speakers of the corpus the model did not train on) over N = 10, 30, 100 on balanced
draws, both directions pooled; it is made safe enough to ship if on `select` it is never more than 2 points below
plain at any N and skew, else the larger shrink is taken. Test speakers are reported, never chosen on.
With the whole model (`--runs`), the calibrated head's share of the answer (`calibrate.head_share`) is chosen too,
by the same select-UAR rule, among its own share in the model (1/2), 3/4 and 1 (`SHARES`, with the method chosen on
the head), a share within 0.5 points of the model's own going to the model's own. Written before those runs.

`--runs NAME` scores the whole model instead (its statistics head's share swapped, as a profile does), from the
folds `bench.crosscorpus_bench --head pipeline --out .../NAME` kept.

    python -m bench.calibration_bench --out reports/calibration/linear
    python -m bench.calibration_bench --runs pipe-ravdess-only-s42 --train ravdess --out reports/calibration/pipeline
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from bench.calibration_report import METHODS, SHARES, SIZES, SKEWS
from bench.crosscorpus_bench import CORPORA, FOUR, corpus_arg, restricted, roles_for
from bench.linear_head import probe_stats
from bench.results import ROOT, spread

log = logging.getLogger("calibration_bench")
SKEW_SHARE = 0.7


def draw(pool: np.ndarray, emotion: np.ndarray, n: int, skew: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Row indices of one calibration draw of `n` from `pool` (all of it when smaller); `skew`: 70 % from those."""
    if n >= len(pool):
        return pool
    if not skew:
        return rng.choice(pool, n, replace=False)
    lean = pool[np.isin(emotion[pool], skew)]
    k = min(len(lean), int(round(SKEW_SHARE * n)))
    first = rng.choice(lean, k, replace=False)
    rest = np.setdiff1d(pool, first)
    return np.concatenate([first, rng.choice(rest, n - k, replace=False)])


def cell_scores(probs: np.ndarray, y: np.ndarray, classes: list[str], corpus_classes: list[str]) -> dict:
    """UAR and accuracy on the corpus's classes (the model's whole answer, and restricted to them), and on FOUR."""
    from ser.training.evaluate import score

    own = score(y, probs.argmax(1), classes)
    keep = [c for c in classes if c in corpus_classes]
    out = {"own": own["uar"], "own_acc": own["accuracy"], "restricted": restricted(probs, y, classes, keep)["uar"]}
    if all(c in corpus_classes for c in FOUR):
        out["four"] = restricted(probs, y, classes, FOUR)["uar"]
    return out


def folds(args: argparse.Namespace, params, corpus, stats: np.ndarray):
    """Per training set and fold: (training key, fold, classes, labels, roles, statistics head, {role: (rows, model
    probabilities)}). `--head linear` fits the head here (its whole answer: weight 1); `--runs NAME` reads the
    whole model's folds that `bench.crosscorpus_bench --head pipeline --out .../NAME` kept."""
    import pickle

    from bench.linear_head import linear_fit
    from bench.protocols import fold_speakers
    from ser.serving.profiles import StatsHead

    idx = corpus.index
    names = [r["name"] for r in corpus.records]
    speaker_corpus = dict(zip(corpus.clips["speaker"], corpus.clips["corpus"], strict=True))
    source, original = idx["corpus"].to_numpy().astype(str), (idx["copy"] == 0).to_numpy()
    trainings = [t.split("+") for t in args.train] if args.train else [[n] for n in names]
    for trained in trainings:
        key = "+".join(trained)
        classes = params.data.class_set(corpus.clips.loc[corpus.clips["corpus"].isin(trained), "emotion"])
        y = idx["emotion"].map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(np.int64)
        for f, groups in fold_speakers(corpus.clips, params, args.folds):
            role = idx["speaker"].map(roles_for(groups, speaker_corpus, set(trained))).fillna("unused")
            role = role.to_numpy().astype(str)
            if args.runs is None:
                (mean, scale, kernel, bias), _ = linear_fit(stats, y, role, original, source, params, len(classes))
                head = StatsHead(mean, scale, kernel, bias, 1.0)
                scored = {}
                for r in ("select", "test"):
                    rows = np.flatnonzero(original & (role == r) & (y >= 0))
                    scored[r] = (rows, head.probs(stats[rows]))
            else:
                kept = sorted((args.cache / "done" / args.runs).glob(f"{key}-f{f}-s*.pkl"))
                if not kept:
                    log.warning("%s: no fold %d of %s kept; skipped", args.runs, f, key)
                    continue
                rec = pickle.loads(kept[0].read_bytes())
                head = rec["head_arrays"]
                scored = {r: (rec[f"{r}_rows"], rec[f"{r}_probs"]) for r in ("select", "test") if f"{r}_rows" in rec}
            log.info("train on %s, fold %d", key, f)
            yield key, f, classes, y, role, head, scored


def run(args: argparse.Namespace, params) -> dict:
    from bench.protocols import prepare
    from ser.serving.profiles import Profile, estimate

    corpus = prepare(list(args.corpus), params, args.cache)
    stats = probe_stats(corpus.feats, "plain")
    idx = corpus.index
    names = [r["name"] for r in corpus.records]
    corpus_classes = {n: params.data.class_set(corpus.clips.loc[corpus.clips["corpus"] == n, "emotion"]) for n in names}
    source, emotion = idx["corpus"].to_numpy().astype(str), idx["emotion"].to_numpy().astype(str)
    original = (idx["copy"] == 0).to_numpy()
    rows_out: list[dict] = []
    one_sided = params.calibrate.one_sided_share
    methods = METHODS if args.runs is None else METHODS | SHARES
    for key, f, classes, y, role, head, scored in folds(args, params, corpus, stats):
        rng = np.random.default_rng(args.seed + f)
        for c in names:
            pool = np.flatnonzero((source == c) & original & ~np.isin(role, ("train", "val")))
            for r, (rows, probs) in scored.items():
                mine = source[rows] == c
                if not mine.any():
                    continue
                at, p_model, y_c = rows[mine], probs[mine], y[rows[mine]]
                base = {"train": key, "corpus": c, "role": r, "fold": f}
                plain = {"method": "plain", "n": 0, "skew": "none", "draw": 0}
                rows_out.append(base | plain | cell_scores(p_model, y_c, classes, corpus_classes[c]))
                for n in SIZES:
                    for skew, lean in SKEWS.items():
                        for d in range(args.draws):
                            cal = draw(pool, emotion, n, lean, rng)
                            for m, how in methods.items():
                                share = how.get("share")
                                mu, sd = estimate(stats[cal], head.mean, head.scale, how["shrink"], how["scale_too"])
                                profile = Profile("bench", mu, sd, head, share=share)
                                p = profile.apply(p_model, stats=stats[at])
                                setting = {"method": m, "n": n, "skew": skew, "draw": d}
                                scores = cell_scores(p, y_c, classes, corpus_classes[c])
                                if args.runs is None:  # what `ser calibrate` reports: its answers on the set itself
                                    own = profile.apply(head.probs(stats[cal]), stats=stats[cal]).argmax(1)
                                    top = np.bincount(own).max() / len(own)
                                    scores |= {"set_top_share": top, "one_sided": float(top > one_sided)}
                                rows_out.append(base | setting | scores)
    return {"rows": rows_out, "corpora": corpus.records}


def summary(rows: list[dict]) -> dict:
    """Mean over folds and draws per (train, corpus, role, method, n, skew) of each score."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    keys = ["train", "corpus", "role", "method", "n", "skew"]
    metrics = [m for m in ("own", "own_acc", "restricted", "four", "set_top_share", "one_sided") if m in frame]
    out = {}
    for k, g in frame.groupby(keys, sort=True):
        per_fold = g.groupby("fold")[metrics].mean()
        out["|".join(map(str, k))] = {
            m: spread(per_fold[m].dropna().tolist()) for m in metrics if per_fold[m].notna().any()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="append", type=corpus_arg, help="a corpus folder or mapping (repeat)")
    ap.add_argument("--train", action="append", help="a training set, corpus names joined by + (repeat)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", help="score the whole model's folds kept by crosscorpus_bench --out .../RUNS instead")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "calibration")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench")
    args = ap.parse_args(argv)
    args.corpus = args.corpus or CORPORA
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    missing = [str(c) for c in args.corpus if not Path(c["path"] if isinstance(c, dict) else c).is_dir()]
    if missing:
        print(f"skipped: corpus folder(s) not found: {', '.join(missing)} (pass --corpus DIR)")
        return 0
    from bench.calibration_report import choose, markdown
    from bench.results import write_reports
    from ser.config import load_params
    from ser.overrides import override

    params = override(load_params(args.params), args.sets)
    start = time.perf_counter()
    res = run(args, params)
    res["summary"] = summary(res.pop("rows"))  # per draw: megabytes; the summary keeps each setting's spread
    res["choice"] = choose(res["summary"])
    res["runs"] = args.runs
    res["one_sided_share"] = params.calibrate.one_sided_share
    res["command"] = " ".join(["python -m bench.calibration_bench", *(argv if argv is not None else sys.argv[1:])])
    res["wall_seconds"] = time.perf_counter() - start
    write_reports(args.out, res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
