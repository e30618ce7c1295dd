"""Which Whisper-base encoder layers carry emotion: a linear probe per layer on RAVDESS (experiment-log run R).

Each usable clip's model window (`features.offset`, `features.duration`; no augmentation) goes through the
frozen encoder once with every layer kept (`ser.features.extract`, `whisper_layers` 0-6). A set of layers is
reduced to each state dimension's mean and standard deviation over the window, and per fold of protocol (a)
(the benchmark's folds and validation speakers) a logistic regression on standardised inputs, its C chosen on
the validation speakers' UAR, is fitted on the training speakers and scores the test speakers. Choose layers on
the validation column; the test columns are for the record.

    .venv/bin/python -m bench.whisper_probe --specs 6 5 4 3 2 1 0 3,4 2,3,4 --out reports/whisper-probe
    .venv/bin/python -m bench.whisper_probe --specs 3,4 --set features.whisper_context=30 --out reports/probe-context30
    .venv/bin/python -m bench.whisper_probe --specs 3,4 --nap 0 8 0,2,4,8,16 --out reports/probe-nap

Writes `results.md`, `results.json` and each set's test probabilities (`probs-3_4.npz`, in the benchmark's
`probs.npz` layout) under --out; without the corpus it prints `skipped: ...` and exits 0.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def pooled_layers(corpus_dir: Path, params) -> tuple[np.ndarray, pd.DataFrame]:
    """(clips, 7 layers, 2 x 512): each layer's per-dimension mean and std over the window; and the clip index."""
    from bench.protocols import usable_clips
    from ser.config import FeatureParams
    from ser.data.featurize import window_clips
    from ser.data.ingest import build_manifest
    from ser.features import extract
    from ser.features.whisper import WIDTH
    from ser.training.stats_head import clip_stats

    clips, _ = usable_clips(build_manifest(corpus_dir, workers=params.features.workers))
    index, waves = window_clips(clips, corpus_dir, np.zeros(len(clips), int), params.features, params.augment)
    every = FeatureParams(**{**params.features.model_dump(), "kind": "whisper_base", "whisper_layers": list(range(7))})
    pooled = np.empty((len(waves), 7, 2 * WIDTH), np.float32)
    for start in range(0, len(waves), 64):
        states = extract(np.stack(waves[start : start + 64]), every)  # (clips, frames, 7 * WIDTH)
        for layer in range(7):
            pooled[start : start + len(states), layer] = clip_stats(states[..., layer * WIDTH : (layer + 1) * WIDTH])
    return pooled, index


def settings(specs: list[str], norms: list[str], references: list[str]) -> list[tuple[str, str, str]]:
    """(layers, normalisation, reference) to fit: every combination, `none` once per layer set."""
    out = []
    for spec in specs:
        for norm in norms:
            out += [(spec, norm, "all")] if norm == "none" else [(spec, norm, r) for r in references]
    return out


def parse_spec(spec: str) -> list[int]:
    """`3`, `3,4` or `0-6` -> the layers."""
    if "-" in spec:
        first, last = (int(x) for x in spec.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in spec.split(",")]


def parse_nap(grid: str) -> tuple[int, ...]:
    """`8` or `0,4,8` -> the numbers of speaker directions to project out (a grid: chosen on validation)."""
    try:
        dims = tuple(int(d) for d in grid.split(","))
    except ValueError:
        dims = (-1,)
    if min(dims) < 0:
        raise ValueError(f"--nap: expected N or N,M,... (speaker directions, N >= 0), got {grid!r}")
    return dims


def probe(
    x: np.ndarray,
    y: np.ndarray,
    folds: list[dict],
    seed: int = 0,
    speakers: np.ndarray | None = None,
    nap_grid: tuple[int, ...] = (0,),
) -> list[dict]:
    """Per fold: C (and the speaker directions projected out) chosen on validation UAR, then test scores.

    The fit is the pipeline's statistics head (`ser.training.stats_head.fit_linear`, `model.stats_head`;
    `nap_grid`'s speaker directions come from the fold's training speakers only); `seed` only labels the rows
    (the fit is deterministic; it numbers a random reference's draws).
    """
    from sklearn.metrics import accuracy_score, recall_score

    from ser.training.stats_head import fit_linear

    rows = []
    for fold in folds:
        tr, va, te = fold["train"], fold["val"], fold["test"]
        spk = None if speakers is None else speakers[tr]
        scaler, classifier, report = fit_linear(x[tr], y[tr], x[va], y[va], speakers=spk, nap_grid=nap_grid)
        probs = classifier.predict_proba(scaler.transform(x[te]))
        pred = classifier.classes_[probs.argmax(1)]
        rows.append(
            {
                "fold": fold["fold"],
                "C": report["C"],
                "nap_dims": report["nap_dims"],
                "val_uar": report["val_uar"],
                "seed": seed,
                "accuracy": accuracy_score(y[te], pred),
                "uar": recall_score(y[te], pred, average="macro"),
                "test_probs": probs,
                "test_y": y[te],
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    """Fold rows (of one or more draws) -> the rows and each score's mean and std over them."""
    from bench.results import spread

    keys = ("val_uar", "accuracy", "uar")
    spreads = {k: spread([r[k] for r in rows]) for k in keys}
    return {
        "folds": rows,
        **{f"{k}_mean": spreads[k]["mean"] for k in keys},
        **{f"{k}_std": spreads[k]["std"] for k in keys},
    }


def main(argv: list[str] | None = None) -> int:
    from bench.results import corpus_missing, probe_parser

    ap = probe_parser(__doc__ or "", "whisper-probe")
    ap.add_argument("--specs", nargs="+", default=["6", "5", "4", "3", "2", "1", "0", "3,4", "2,3,4"])
    ap.add_argument(
        "--speaker-norm",
        nargs="+",
        default=["none"],
        choices=["none", "mean", "z"],
        help="also fit on clip vectors shifted (mean) or standardised (z) per speaker (ser/training/enrolment.py)",
    )
    ap.add_argument("--reference", nargs="+", default=["all"], help="the clips a speaker's statistics use: all|calm|N")
    ap.add_argument("--draws", type=int, default=3, help="random draws of a numeric --reference, pooled")
    ap.add_argument(
        "--nap",
        nargs="+",
        default=["0"],
        help="speaker directions projected out of the head's inputs: N, or a grid N,M,... chosen on validation",
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a params key, as dvc exp run -S"
    )
    args = ap.parse_args(argv)
    from ser.training.enrolment import check_reference, reference_mask, speaker_normalise

    try:  # before the encoder's minutes, not after
        for reference in args.reference:
            check_reference(reference)
        naps = [parse_nap(grid) for grid in args.nap]
    except ValueError as err:
        ap.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if corpus_missing(args.corpus):
        return 0
    from bench.protocols import row_folds
    from bench.ravdess_bench import host
    from bench.results import save_probs, write_reports
    from ser.config import load_params
    from ser.overrides import override
    from ser.training.stats_head import C_GRID

    params = override(load_params(args.params), args.set)
    start = time.perf_counter()
    pooled, index = pooled_layers(args.corpus, params)
    encode_s = time.perf_counter() - start
    classes = params.data.class_set(index["emotion"])
    y = index["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    speaker = index["speaker"].to_numpy().astype(str)
    folds = row_folds(index, params, args.folds)
    results: dict[str, dict[str, Any]] = {}
    for (spec, norm, reference), nap in itertools.product(
        settings(args.specs, args.speaker_norm, args.reference), naps
    ):
        layers = parse_spec(spec)
        x = pooled[:, layers].reshape(len(pooled), -1)
        rows = []
        for draw in range(args.draws if reference.isdigit() else 1):
            x_in = x
            if norm != "none":  # training and test speakers alike: each shifted by its own reference clips
                x_in = speaker_normalise(x, speaker, reference_mask(index, reference, seed=draw), scale=norm == "z")
            rows += probe(x_in, y, folds, seed=draw, speakers=speaker, nap_grid=nap)
        key = (spec if norm == "none" else f"{spec} {norm} {reference}") + (
            f" nap {','.join(map(str, nap))}" if nap != (0,) else ""
        )
        results[key] = {"layers": layers, "speaker_norm": norm, "reference": reference, "nap": list(nap)}
        results[key] |= summarise(rows)
        r = results[key]
        args.out.mkdir(parents=True, exist_ok=True)
        save_probs(r["folds"], args.out / f"probs-{key.replace(',', '_').replace(' ', '-')}.npz")
        r["folds"] = [{k: v for k, v in row.items() if not k.startswith("test_")} for row in r["folds"]]
        logging.info(
            "layers %s: validation UAR %.3f, test accuracy %.3f, UAR %.3f",
            key,
            r["val_uar_mean"],
            r["accuracy_mean"],
            r["uar_mean"],
        )
    command = " ".join(["python -m bench.whisper_probe", *(argv if argv is not None else sys.argv[1:])])
    res: dict[str, Any] = {
        "command": command,
        "host": host(),
        "clips": len(pooled),
        "encode_seconds": encode_s,
        "wall_seconds": time.perf_counter() - start,
        "C_grid": list(C_GRID),
        "results": results,
    }
    lines = [
        "# Whisper-base layers: linear probe on RAVDESS, protocol (a) folds",
        "",
        f"Command: `{command}`  ",
        f"Commit {res['host']['commit']}, {res['host']['cpus']} CPUs "
        f"({res['host']['cpu_model']}); {len(pooled)} clips encoded in {encode_s:.0f} s, "
        f"wall time {res['wall_seconds'] / 60:.1f} min.",
        "",
        "Mean and std of each state dimension over the window; logistic regression, C chosen on each fold's "
        "validation speakers. Choose on the validation column.",
        "",
        "| layers (speaker normalisation, reference) | validation UAR | test accuracy | test UAR |",
        "| - | - | - | - |",
    ]
    for spec, r in results.items():
        lines.append(
            f"| {spec} | {100 * r['val_uar_mean']:.1f} ± {100 * r['val_uar_std']:.1f} | "
            f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | "
            f"{100 * r['uar_mean']:.1f} ± {100 * r['uar_std']:.1f} |"
        )
    write_reports(args.out, res, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
