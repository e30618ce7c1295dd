"""How the statistics head holds up off RAVDESS's studio recording and its two sentences (issue 29's robustness).

The hidden second corpus of issue 29 differs from RAVDESS in its speakers, its sentences, its clip lengths and its
recording. Speakers are what protocol (a) already holds out and lengths are `bench.length_probe`'s; this bench
measures the other two on RAVDESS itself, with the pipeline's statistics head (`ser.training.stats_head.fit_linear`
on the mean and std of `features.whisper_layers`) over the benchmark's protocol (a) folds:

- **conditions**: the test speakers' windows under white noise (`noise:SNR`), a telephone line (`telephone`), a
  synthetic room (`reverb:RT60`) and a level change (`level:DB`; `ser.data.augment`), scored by a head fitted on
  clean windows (`clean`) and by one fitted on the clean windows plus one copy of each under a random condition
  of the same four families at a random strength (`multi-condition`). C is chosen on the validation speakers'
  clean windows; the two heads are compared on the validation speakers' mean UAR over clean and every condition.
- **sentence**: RAVDESS has two sentences. A head fitted on the training speakers' clips of one of them (C on the
  validation speakers' clips of that one) scores the test speakers' clips of the same sentence and of the other,
  both ways round: the gap is what a sentence never heard costs.

Each condition's windows are encoded once and cached (`--cache`); the per-fold test scores carry the expected
calibration error and the predicted-class share, so a condition that floods one class shows it.

    .venv/bin/python -m bench.robustness_probe --out reports/robustness-probe

Writes `results.md` and `results.json` under --out; without the corpus it prints `skipped: ...` and exits 0.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ser.data.clips import clip_seed

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("noise:20", "noise:10", "telephone", "reverb:0.5", "level:-30")
FAMILIES = ("noise", "telephone", "reverb", "level")
RANDOM = {"noise": (5.0, 30.0), "reverb": (0.2, 0.8), "level": (-40.0, 0.0)}  # the multi-condition copies' range
INDEX = ("clip_id", "corpus", "speaker", "gender", "emotion", "statement")  # the clip index kept in the cache
MIXED = "mixed"  # one random condition per clip: the multi-condition head's training copies
log = logging.getLogger("robustness_probe")


def parse_condition(text: str) -> tuple[str, float]:
    """`noise:10`, `telephone`, `reverb:0.5` or `level:-30` -> (family, strength)."""
    family, _, value = text.partition(":")
    needs_value = family in RANDOM
    try:
        strength = float(value) if needs_value else 0.0
    except ValueError:
        strength = float("nan")
    if family not in FAMILIES or needs_value != bool(value) or not np.isfinite(strength):
        raise ValueError(f"condition: expected noise:SNR_DB, telephone, reverb:RT60_S or level:DB, got {text!r}")
    if family == "reverb" and strength <= 0:
        raise ValueError(f"condition: reverb needs RT60 > 0 seconds, got {text!r}")
    return family, strength


def degrade(wave: np.ndarray, condition: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The window under `condition` (`parse_condition`); `rng` draws the noise and the room."""
    from ser.data.augment import add_noise, change_level, reverberate, telephone_band

    family, strength = parse_condition(condition)
    if family == "noise":
        return add_noise(wave, strength, rng)
    if family == "reverb":
        return reverberate(wave, sample_rate, strength, rng)
    if family == "level":
        return change_level(wave, strength)
    return telephone_band(wave, sample_rate)


def random_condition(rng: np.random.Generator) -> str:
    """A family drawn uniformly, its strength uniformly from `RANDOM`'s range."""
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    return family if family not in RANDOM else f"{family}:{rng.uniform(*RANDOM[family]):.2f}"


def pooled_conditions(
    corpus_dir: Path, params, conditions: list[str], cache: Path, level_db: float | None = None
) -> tuple[dict, Any]:
    """{condition, "clean", MIXED: (clips, 2 x width) statistics} and the clip index; cached in `cache`.

    `level_db`: every window, clean or not, scaled to that gated level (`ser.audio.normalise_level`) after its
    condition and before the encoder.
    """

    from bench.protocols import usable_clips
    from bench.results import load_pooled, save_pooled
    from ser.audio import normalise_level
    from ser.data.featurize import window_clips
    from ser.data.ingest import build_manifest
    from ser.features import extract
    from ser.training.stats_head import clip_stats

    variants = ["clean", *conditions, MIXED]
    if (cached := load_pooled(cache, variants, INDEX)) is not None:
        return cached
    clips, _ = usable_clips(build_manifest(corpus_dir, workers=params.features.workers))
    index, waves = window_clips(clips, corpus_dir, np.zeros(len(clips), int), params.features, params.augment)
    sr = params.features.sample_rate
    seeds = [clip_seed(c) for c in index["clip_id"]]  # each clip's noise and room, whatever the order
    out = {}
    for variant in variants:
        started = time.perf_counter()
        if variant == "clean":
            changed = waves
        else:
            rngs = [np.random.default_rng([29, s]) for s in seeds]
            drawn = [random_condition(r) if variant == MIXED else variant for r in rngs]
            changed = [degrade(w, c, sr, r) for w, c, r in zip(waves, drawn, rngs, strict=True)]
        if level_db is not None:
            changed = list(normalise_level(np.stack(changed), sr, level_db))
        batches = [
            clip_stats(extract(np.stack(changed[i : i + 64]), params.features)) for i in range(0, len(waves), 64)
        ]
        out[variant] = np.concatenate(batches).astype(np.float32)
        log.info("encoded %s: %d windows in %.0f s", variant, len(waves), time.perf_counter() - started)
    return out, save_pooled(cache, out, index, INDEX)


def scores(classifier, scaler, x: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, UAR, ECE and the predicted-class share of a fitted head on rows `x`."""
    from ser.training.evaluate import calibration, score

    probs = np.zeros((len(x), len(classes)))
    probs[:, classifier.classes_] = classifier.predict_proba(scaler.transform(x))
    s = score(y, probs.argmax(1), classes) | calibration(probs, y, classes)
    return {k: s[k] for k in ("accuracy", "uar", "ece", "predicted_share")}


def condition_folds(pooled: dict, y: np.ndarray, folds: list[dict], classes: list[str]) -> dict[str, list[dict]]:
    """Per head (`clean`, `multi-condition`) and fold: C, and validation and test scores under every condition."""
    from ser.training.stats_head import fit_linear

    variants = [v for v in pooled if v != MIXED]
    out: dict[str, list[dict]] = {"clean": [], "multi-condition": []}
    for fold in folds:
        tr, va, te = fold["train"], fold["val"], fold["test"]
        for head, extra in (("clean", []), ("multi-condition", [pooled[MIXED][tr]])):
            x_tr = np.concatenate([pooled["clean"][tr], *extra])
            y_tr = np.concatenate([y[tr]] * (1 + len(extra)))
            scaler, classifier, report = fit_linear(x_tr, y_tr, pooled["clean"][va], y[va])
            by = {
                v: {r: scores(classifier, scaler, pooled[v][m], y[m], classes) for r, m in (("val", va), ("test", te))}
                for v in variants
            }
            choice = float(np.mean([by[v]["val"]["uar"] for v in variants]))
            out[head].append({"fold": fold["fold"], "C": report["C"], "val_uar_all": choice, "conditions": by})
            log.info(
                "fold %d %s: mean validation UAR %.3f, test UAR %s",
                fold["fold"],
                head,
                choice,
                " ".join(f"{v}={by[v]['test']['uar']:.3f}" for v in variants),
            )
    return out


def sentence_folds(
    x: np.ndarray, y: np.ndarray, statement: np.ndarray, folds: list[dict], classes: list[str]
) -> list[dict]:
    """Per fold and sentence fitted on: test scores on the same sentence and on the other."""
    from ser.training.stats_head import fit_linear

    out = []
    for fold in folds:
        for said in (1, 2):
            same = statement == said
            tr, va, te = fold["train"] & same, fold["val"] & same, fold["test"]
            scaler, classifier, report = fit_linear(x[tr], y[tr], x[va], y[va])
            out.append(
                {
                    "fold": fold["fold"],
                    "fitted_on": said,
                    "C": report["C"],
                    "val_uar": report["val_uar"],
                    "same": scores(classifier, scaler, x[te & same], y[te & same], classes),
                    "other": scores(classifier, scaler, x[te & ~same], y[te & ~same], classes),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.results import corpus_missing, probe_parser

    ap = probe_parser(__doc__ or "", "robustness-probe")
    ap.add_argument(
        "--conditions", nargs="+", default=list(CONDITIONS), help="noise:SNR telephone reverb:RT60 level:DB"
    )
    ap.add_argument("--level-db", type=float, help="scale every window to this gated level (dBFS) before the encoder")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench", help="folder of the encodings")
    args = ap.parse_args(argv)
    try:  # before the encoder's minutes, not after
        for condition in args.conditions:
            parse_condition(condition)
    except ValueError as err:
        ap.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if corpus_missing(args.corpus):
        return 0
    from bench.protocols import row_folds
    from bench.ravdess_bench import host
    from bench.results import write_reports
    from bench.robustness_report import report, summary
    from ser.config import load_params

    params = load_params(args.params)
    key = repr((str(args.corpus.resolve()), args.conditions, params.features.model_dump(), RANDOM, args.level_db))
    cache = args.cache / f"robustness-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    start = time.perf_counter()
    pooled, index = pooled_conditions(args.corpus, params, args.conditions, cache, args.level_db)
    encode_s = time.perf_counter() - start
    classes = params.data.class_set(index["emotion"])
    y = index["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds = row_folds(index, params, args.folds)
    heads = condition_folds(pooled, y, folds, classes)
    sentences = sentence_folds(pooled["clean"], y, index["statement"].astype(int).to_numpy(), folds, classes)
    command = " ".join(["python -m bench.robustness_probe", *(argv if argv is not None else sys.argv[1:])])
    res: dict[str, Any] = {
        "command": command,
        "host": host(),
        "clips": len(y),
        "layers": list(params.features.whisper_layers),
        "level_db": args.level_db,
        "encode_seconds": encode_s,
        "conditions": ["clean", *args.conditions],
        "heads": {name: {"folds": rows, **summary(rows, classes)} for name, rows in heads.items()},
        "sentence": {"folds": sentences, **summary(sentences, classes, roles=("same", "other"))},
    }
    res["wall_seconds"] = time.perf_counter() - start
    write_reports(args.out, res, report(res, classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
