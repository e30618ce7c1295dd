"""Speaker enrolment on protocol (a): the pipeline's enrolment head, fitted per fold, fused with saved model runs.

Per fold of protocol (a) (`bench.protocols.row_folds`, the folds and validation speakers every benchmark
uses), the enrolment head is fitted exactly as the train stage fits it (`ser.training.enrolment.
fit_enrolment_head`: training speakers with their augmented copies, each shifted by its original clips'
mean; validation speakers by `enrolment.clips` random clips of their own; C on validation UAR). Its test
probabilities are fused with a saved model's (`probs.npz` from `ravdess_bench.py`; `A+B` pools two runs
into the 2-member `train.ensemble`, as `bench.fuse_probs` does) by `enrolment_probs`, the evaluate stage's
function: `--reference` random clips per test speaker (`all`: every clip), `--draws` times. The CNN-LSTM
part is not retrained here; the files must come from the same corpus and params (features, augmentation,
split seed), which the test labels are checked against. The single-clip scores of the same runs are
reported beside, so every row is a ratio against the baseline in the same run.

    .venv/bin/python -m bench.enrolment_eval    # the default's two 2-member ensembles, references 4, 8, 16, all
    .venv/bin/python -m bench.enrolment_eval --models R/probs.npz+R-seed43/probs.npz --reference 4
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ser.training.enrolment import TRAIN_DRAWS

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reports" / "bench-whisper34-stats-crop"
DEFAULT_MODELS = [f"{RUNS}/probs.npz+{RUNS}-seed43/probs.npz", f"{RUNS}-seed43/probs.npz+{RUNS}-seed44/probs.npz"]


def fold_rows(corpus, params, folds: int) -> list[dict]:
    """Per fold: its number and the row masks of `run_split` (training with copies; validation, test originals)."""
    from bench.protocols import row_folds

    idx = corpus.index
    original = (idx["copy"] == 0).to_numpy()
    known = idx["emotion"].isin(params.data.class_set(corpus.clips["emotion"])).to_numpy()
    return [
        {"fold": r["fold"], "train": known & r["train"], **{k: known & r[k] & original for k in ("val", "test")}}
        for r in row_folds(idx, params, folds)
    ]


def score_fold(
    corpus, params, rows: dict, models: list[list[dict]], references: list[str], draws: int, train_draws: int
) -> dict:
    """Fit the fold's head; score each model alone, the head alone and their fusion per reference size."""
    from ser.training.enrolment import Speakers, enrolment_probs, fit_enrolment_head
    from ser.training.evaluate import score

    classes = params.data.class_set(corpus.clips["emotion"])  # as `bench.protocols.speaker_folds` has them
    y = corpus.index["emotion"].map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(np.int64)
    sets = {}
    for role in ("train", "val", "test"):
        m = rows[role]
        sets[role] = Speakers.of(corpus.feats[m], y[m], corpus.index.loc[m, "speaker"], corpus.index.loc[m, "copy"])
    start = time.perf_counter()
    head, report = fit_enrolment_head(
        sets["train"],
        sets["val"],
        len(classes),
        params.enrolment.clips,
        seed=params.train.seed,
        train_draws=train_draws,
    )
    test, out = sets["test"], {"fold": rows["fold"], "head": report, "fit_seconds": time.perf_counter() - start}
    for m, runs in enumerate(models):
        group = [r for r in runs if r["fold"] == rows["fold"]]
        if not group or any(not np.array_equal(r["test_y"], test.y) for r in group):
            raise ValueError(f"model {m + 1}, fold {rows['fold']}: no run, or other test clips than this corpus's")
        probs = np.mean([r["test_probs"] for r in group], axis=0)
        res = {"single_clip": score(test.y, probs.argmax(1), classes)}
        for ref in references:
            clips = 10**6 if ref == "all" else int(ref)
            fused = enrolment_probs(head, probs, test, clips, 1 if ref == "all" else draws, seed=rows["fold"])
            alone = enrolment_probs(
                head, np.zeros_like(probs), test, clips, 1 if ref == "all" else draws, seed=rows["fold"]
            )
            res[f"fused_{ref}"] = mean_scores([score(test.y, p.argmax(1), classes) for p in fused])
            res[f"head_{ref}"] = mean_scores([score(test.y, p.argmax(1), classes) for p in alone])
        out[f"model_{m + 1}"] = res
    return out


def mean_scores(scores: list[dict]) -> dict:
    return {k: float(np.mean([s[k] for s in scores])) for k in ("accuracy", "uar", "macro_f1")}


def table(folds: list[dict], n_models: int, references: list[str]) -> list[str]:
    """Markdown rows: each setting's accuracy / UAR, mean over folds, per model and over models."""
    rows = ["single_clip", *(f"fused_{r}" for r in references), *(f"head_{r}" for r in references)]
    lines = [
        "| setting | " + " | ".join(f"model {m + 1}" for m in range(n_models)) + " | mean |",
        "| - |" + " - |" * (n_models + 1),
    ]
    for key in rows:
        cells = []
        for m in range(n_models):
            acc = np.mean([f[f"model_{m + 1}"][key]["accuracy"] for f in folds])
            uar = np.mean([f[f"model_{m + 1}"][key]["uar"] for f in folds])
            cells.append((acc, uar))
        mean = np.mean(cells, axis=0)
        lines.append(f"| {key} | " + " | ".join(f"{100 * a:.1f} / {100 * u:.1f}" for a, u in [*cells, mean]) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess-speech-16k")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="probs.npz files, A+B pooled")
    ap.add_argument("--reference", nargs="+", default=["4", "8", "16", "all"], help="test reference clips: N|all")
    ap.add_argument("--draws", type=int, default=5, help="random reference draws per test speaker")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument(
        "--train-draws", type=int, default=TRAIN_DRAWS, help="training speakers' reference draws (0: all originals)"
    )
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "enrolment-eval")
    args = ap.parse_args(argv)
    bad = [r for r in args.reference if r != "all" and not (r.isdigit() and int(r) > 0)]
    if bad:
        ap.error(f"--reference: expected all or a positive number of clips, got {bad}")
    from bench.results import corpus_missing, write_reports

    if corpus_missing(args.corpus):
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from bench.fuse_probs import load_member
    from bench.protocols import prepare
    from bench.ravdess_bench import host
    from ser.config import load_params

    params = load_params(args.params)
    models = [load_member(spec) for spec in args.models]
    start = time.perf_counter()
    corpus = prepare(args.corpus, params, args.cache)
    folds = [
        score_fold(corpus, params, rows, models, args.reference, args.draws, args.train_draws)
        for rows in fold_rows(corpus, params, args.folds)
    ]
    command = " ".join(["python -m bench.enrolment_eval", *(argv if argv is not None else sys.argv[1:])])
    res = {
        "command": command,
        "host": host(),
        "models": args.models,
        "enrolment": params.enrolment.model_dump(),
        "draws": args.draws,
        "train_draws": args.train_draws,
        "wall_seconds": time.perf_counter() - start,
        "folds": folds,
    }
    lines = [
        "# Speaker enrolment on protocol (a): the enrolment head fused with saved model runs",
        "",
        f"Command: `{command}`  ",
        f"Commit {res['host']['commit']}, {res['host']['cpus']} CPUs; wall time {res['wall_seconds'] / 60:.1f} min. "
        f"Validation reference {params.enrolment.clips} clips, training references drawn {args.train_draws} times "
        f"(0: all originals); test references drawn {args.draws} times (all: once).",
        "",
        "Accuracy / UAR (%), mean over folds; models: "
        + ", ".join(f"{m + 1} = `{s}`" for m, s in enumerate(args.models)),
        "",
        *table(folds, len(models), args.reference),
        "",
        f"The enrolment head's validation UAR (what chooses its settings), mean over folds: "
        f"{100 * np.mean([f['head']['val_uar'] for f in folds]):.1f} %.",
    ]
    write_reports(args.out, res, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
