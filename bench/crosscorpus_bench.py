"""The cross-corpus matrix: train on one corpus, the other or both; test on each, on held-out speakers.

Every corpus is split into `--folds` speaker folds (`bench.protocols.fold_speakers`: gender-balanced, each speaker
tested once; validation speakers from the rest, as protocol (a) takes them). Fold f holds out the same test
speakers of every corpus for every training set, so the cells of one fold score the same clips. A training set
(`--train ravdess+emodb`) trains on its corpora's training speakers and chooses on their validation speakers; the
other corpora's validation speakers are scored only (`select`), which is what a lever's rule reads: the UAR on
the validation speakers of a corpus the model never trained on. Each cell is given twice: on the classes the
test corpus has, answered over every class the model knows (what a user gets), and on the classes all corpora
share with the answer restricted to them (the matrix: comparable across training sets). `--head linear` fits
only the statistics head (seconds a fold: for screening levers); `pipeline` the whole model as `ser train`.

    python -m bench.crosscorpus_bench --corpus ../shared/data/ravdess-speech-16k --corpus ../shared/data/emodb-16k \
        --train ravdess --train emodb --train ravdess+emodb --set train.ensemble=1 --out reports/crosscorpus
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.linear_head import linear_run, probe_stats
from bench.results import ROOT, spread

SHARED = ROOT.parent / "shared" / "data"
CORPORA = [SHARED / "ravdess-speech-16k", SHARED / "emodb-16k"]
log = logging.getLogger("crosscorpus_bench")


def roles_for(groups: dict[str, list[str]], speaker_corpus: dict[str, str], trained: set[str]) -> dict[str, str]:
    """speaker -> role for one training set: its corpora's speakers as the fold says; every corpus's test speakers
    `test`; other corpora's validation speakers `select` (scored only) and their training speakers unused."""
    roles = {}
    for role, members in groups.items():
        for s in members:
            own = speaker_corpus[s] in trained
            if role == "test" or (own and role in ("train", "val")):
                roles[s] = role
            elif role == "val":
                roles[s] = "select"
    return roles


def restricted(probs: np.ndarray, y: np.ndarray, classes: list[str], keep: list[str]) -> dict:
    """Scores of the rows labelled with a class in `keep`, the answer restricted to `keep` (renormalised)."""
    from ser.training.evaluate import calibration, score

    cols = [classes.index(c) for c in keep]
    rows = np.isin(y, cols)
    p = probs[rows][:, cols]
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    y_keep = np.searchsorted(cols, y[rows]) if cols == sorted(cols) else np.array([cols.index(v) for v in y[rows]])
    return score(y_keep, p.argmax(1), keep) | calibration(p, y_keep, keep)


# The four classes most corpora label (IEMOCAP's usual set, and what a 4-class corpus is scored on): the matrix's
# cell on them is its estimate for such a corpus.
FOUR = ["neutral", "happy", "sad", "angry"]


def cells(run: dict, classes: list[str], corpus_classes: dict[str, list[str]], shared: list[str]) -> dict:
    """Per scored role and corpus: `own` (the corpus's classes, the model's whole answer), `shared` and `four`
    (the answer restricted to the shared classes, to neutral/happy/sad/angry) scores."""
    from ser.training.evaluate import calibration, score

    out: dict[str, dict] = {}
    for role in ("val", "select", "test"):
        if f"{role}_probs" not in run:
            continue
        probs, y, src = run[f"{role}_probs"], run[f"{role}_y"], run[f"{role}_corpus"]
        for c in np.unique(src):
            rows = src == c
            own = score(y[rows], probs[rows].argmax(1), classes) | calibration(probs[rows], y[rows], classes)
            entry = {"own": slim(own), "shared": slim(restricted(probs[rows], y[rows], classes, shared))}
            four = [k for k in FOUR if k in classes and k in corpus_classes[str(c)]]
            if len(four) == len(FOUR):
                entry["four"] = slim(restricted(probs[rows], y[rows], classes, four))
            out.setdefault(role, {})[str(c)] = entry | {"n": int(rows.sum())}
    return out


def slim(scores: dict) -> dict:
    """The scores a cell keeps: the headline metrics and predicted shares (no per-class tables or confusions)."""
    keep = ("accuracy", "uar", "macro_f1", "min_class_recall", "ece", "mean_confidence", "predicted_share", "n_test")
    return {k: scores[k] for k in keep if k in scores}


def summarise_cells(runs: list[dict]) -> dict:
    """Mean ± std over folds and seeds of every (role, test corpus, kind, metric), and the predicted shares."""
    out: dict[str, Any] = {}
    for role in ("val", "select", "test"):
        corpora = sorted({c for r in runs for c in r["cells"].get(role, {})})
        for c in corpora:
            got = [r["cells"][role][c] for r in runs if c in r["cells"].get(role, {})]
            entry = {"n": sum(g["n"] for g in got)}
            for kind in [k for k in ("own", "shared", "four") if all(k in g for g in got)]:
                entry[kind] = {m: spread([g[kind][m] for g in got]) for m in ("accuracy", "uar", "macro_f1", "ece")}
                shares = [g[kind]["predicted_share"] for g in got]
                entry[kind]["predicted_share"] = {k: float(np.mean([s[k] for s in shares])) for k in shares[0]}
            out.setdefault(role, {})[c] = entry
    return out


def run_matrix(args: argparse.Namespace, params) -> dict:
    """Every training set x fold x seed; the record `crosscorpus_report` renders."""
    from bench.protocols import fold_speakers, prepare, run_split
    from ser.io import atomic_path
    from ser.overrides import override

    start = time.perf_counter()
    corpus = prepare(list(args.corpus), params, args.cache)
    prepare_s = time.perf_counter() - start
    names = [r["name"] for r in corpus.records]
    corpus_classes = {n: params.data.class_set(corpus.clips.loc[corpus.clips["corpus"] == n, "emotion"]) for n in names}
    shared = [c for c in corpus_classes[names[0]] if all(c in v for v in corpus_classes.values())]
    speaker_corpus = dict(zip(corpus.clips["speaker"], corpus.clips["corpus"], strict=True))
    stats = probe_stats(corpus.feats, args.stats) if args.head == "linear" else None
    trainings = [t.split("+") for t in args.train] if args.train else [[n] for n in names] + [names]
    unknown = sorted({n for t in trainings for n in t} - set(names))
    if unknown:
        raise SystemExit(f"--train names {unknown}; the corpora are {names}")
    res: dict[str, Any] = {"corpora": corpus.records, "shared_classes": shared, "prepare_seconds": prepare_s}
    res["trainings"] = {}
    setting = [params.model_dump(mode="json", by_alias=True), args.head, args.stats, args.folds, corpus.records]
    config = hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()[:12]
    for trained in trainings:
        key = "+".join(trained)
        classes = params.data.class_set(corpus.clips.loc[corpus.clips["corpus"].isin(trained), "emotion"])
        runs = []
        for f, groups in fold_speakers(corpus.clips, params, args.folds):
            if args.only_folds is not None and f not in args.only_folds:
                continue
            by_speaker = roles_for(groups, speaker_corpus, set(trained))
            roles = dict(zip(corpus.clips["clip_id"], corpus.clips["speaker"].map(by_speaker), strict=True))
            for s in range(args.seeds):
                seeded = override(params, {"train.seed": params.train.seed + s})
                done = args.cache / "done" / args.out.name / f"{key}-f{f}-s{seeded.train.seed}-{config}.pkl"
                if done.exists():
                    log.info("train on %s, fold %d, seed %d: done before (%s)", key, f, seeded.train.seed, done)
                    kept = pickle.loads(done.read_bytes())
                    # the test cells again from the kept probabilities: a kind added since is filled in
                    kept["cells"]["test"] = cells(kept, classes, corpus_classes, shared)["test"]
                    runs.append(kept)
                    continue
                log.info("train on %s, fold %d, seed %d", key, f, seeded.train.seed)
                if stats is not None:
                    run = linear_run(corpus, stats, seeded, classes, roles)
                else:
                    run = run_split(corpus, seeded, classes, roles)
                    run |= calibration_inputs(corpus, roles, classes, run["model"])
                runs.append(
                    {
                        "fold": f,
                        "seed": seeded.train.seed,
                        "cells": cells(run, classes, corpus_classes, shared),
                        "train_seconds": run["train_seconds"],
                        **{k: run[k] for k in KEPT if k in run},
                    }
                )
                # Each fold kept as it ends: a pipeline fold is a quarter of an hour on 2 cores, and a run stopped
                # midway resumes from here (keyed by everything that decides the result).
                done.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(done) as tmp:
                    tmp.write_bytes(pickle.dumps(runs[-1]))
        res["trainings"][key] = {
            "classes": classes,
            "cells": summarise_cells(runs),
            "train_seconds_median": float(np.median([r["train_seconds"] for r in runs])),
            "runs": [{k: r[k] for k in ("fold", "seed", "cells", "train_seconds")} for r in runs],
        }
        res["trainings"][key]["_probs"] = runs
    return res


# What a fold's record keeps beyond its cells: the scored rows' probabilities, labels, corpora and places in the
# corpus, and the statistics head, from which `bench.calibration_bench --runs` scores the model calibrated.
KEPT = tuple(f"{r}_{k}" for r in ("test", "select") for k in ("probs", "y", "corpus", "rows")) + ("head_arrays",)


def calibration_inputs(corpus, roles: dict[str, str], classes: list[str], model) -> dict:
    """The scored rows' places in the corpus (in `run_split`'s order) and the model's statistics head as arrays
    (`ser.serving.profiles.StatsHead`; none without one)."""
    from ser.serving.profiles import CalibrationError, StatsHead

    try:
        head = StatsHead.of(model)
    except CalibrationError:
        head = None
    idx = corpus.index
    role = idx["clip_id"].map(roles).fillna("unused").to_numpy().astype(str)
    scored = idx["emotion"].isin(classes).to_numpy() & (idx["copy"] == 0).to_numpy()
    return {f"{r}_rows": np.flatnonzero(scored & (role == r)) for r in ("test", "select")} | {"head_arrays": head}


def corpus_arg(text: str) -> Path | dict:
    """`--corpus`: a folder, or a `data.sources` mapping written in YAML (a labelled folder's mapping, a name)."""
    import yaml

    value = yaml.safe_load(text) if text.lstrip().startswith("{") else None
    if isinstance(value, dict):
        if "path" not in value:
            raise argparse.ArgumentTypeError(f"{text}: a corpus mapping needs path:")
        return value
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--corpus",
        action="append",
        type=corpus_arg,
        help="a corpus: a folder, or a data.sources mapping in YAML, e.g. '{path: x, emotions: {ang: angry}}' "
        "(repeat); default RAVDESS and EmoDB beside the checkout",
    )
    ap.add_argument("--train", action="append", help="a training set, corpus names joined by + (repeat)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--head", choices=("pipeline", "linear"), default="pipeline")
    ap.add_argument("--stats", choices=("plain", "std", "frame"), default="plain", help="linear head's inputs")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--only-folds", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "crosscorpus")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench")
    args = ap.parse_args(argv)
    args.corpus = args.corpus or CORPORA
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    missing = [str(c) for c in args.corpus if not Path(c["path"] if isinstance(c, dict) else c).is_dir()]
    if missing:
        print(f"skipped: corpus folder(s) not found: {', '.join(missing)} (pass --corpus DIR)")
        return 0
    from bench.crosscorpus_report import markdown
    from bench.ravdess_bench import host
    from bench.results import save_probs, write_reports
    from ser.config import load_params
    from ser.overrides import override

    params = override(load_params(args.params), args.sets)
    start = time.perf_counter()
    res = run_matrix(args, params)
    runs = {k: v.pop("_probs") for k, v in res["trainings"].items()}
    command = " ".join(["python -m bench.crosscorpus_bench", *(argv if argv is not None else sys.argv[1:])])
    head = args.head if args.head == "pipeline" else f"linear ({args.stats} statistics)"
    res |= {"command": command, "host": host(), "head": head, "params": params.model_dump(by_alias=True)}
    res["wall_seconds"] = time.perf_counter() - start
    write_reports(args.out, res, markdown(res))
    for key, group in runs.items():
        save_probs([dict(r, fold=r["fold"]) for r in group if "test_probs" in r], args.out / f"probs-{key}.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
