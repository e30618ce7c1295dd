"""The real-data benchmarks' protocols: speaker-independent k-fold over one or several corpora, the article's
random split.

Everything runs through the pipeline's own code: `ingest.measure_corpus` measures each corpus in place (any
layout a `data.sources` adapter reads), `featurize.window_clips` cuts and augments the windows (augmentation is
seeded per clip, so a clip's windows are the same whatever split it falls in, and are computed once for all
folds), `features.extract`, `train.fit`, `evaluate.score`. Per run, hyperparameters and the early-stopping
epoch are chosen on validation speakers taken from the training speakers of each corpus; the test fold is
scored once, at the end. `bench/ravdess_bench.py` and `bench/crosscorpus_bench.py` are the command lines.

    corpus = prepare([Path("../shared/data/ravdess-speech-16k")], params, cache_dir)
    runs = speaker_folds(corpus, params, folds=6, seeds=2)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import corpus_scores, layer_weights
from ser.config import Params
from ser.corpora import SourceParams
from ser.data.featurize import feature_batches, window_clips
from ser.data.ingest import measure_corpus
from ser.data.splits import gender_balanced_order, random_split, speaker_genders
from ser.data.splits import speaker_folds as split_folds
from ser.features import norm_stats
from ser.io import atomic_path
from ser.labels import EMOTIONS
from ser.overrides import override
from ser.training.evaluate import calibration, score

log = logging.getLogger(__name__)
INDEX = ("clip_id", "corpus", "speaker", "gender", "emotion", "copy")  # the window index the cache keeps
CACHE_FORMAT = 2  # in the cache key: what the features' code computes beyond their params (2: the level step
# removes DC and caps its gain, augmentation is seeded by the clip's id inside its corpus)


@dataclass
class Corpus:
    """Every window of every usable clip of one or more corpora: `index` (`INDEX` columns) and `feats`."""

    index: pd.DataFrame
    feats: np.ndarray
    clips: pd.DataFrame  # one row per clip (the manifest rows used)
    dropped: list[str]  # clips left out, with the reason
    records: list[dict]  # each corpus's corpora.json entry (name, language, licence, ...)
    roots: dict[str, Path]  # corpus name -> the folder its clips' paths are relative to


def usable_clips(manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Clips that decode, are named per their corpus's scheme, carry a known emotion and a speaker, and are not
    byte-identical repeats."""
    bad = (
        manifest["decode_error"].notna()
        | ~manifest["name_ok"].astype(bool)
        | manifest["emotion"].isna()
        | manifest["speaker"].isna()
    )
    dup = manifest["sha256"].duplicated(keep="first") & ~bad
    dropped = [
        f"{p}: {e or 'bad name, emotion or speaker'}" for p, e in manifest.loc[bad, ["path", "decode_error"]].values
    ]
    dropped += [f"{p}: byte-identical to another clip" for p in manifest.loc[dup, "path"]]
    return manifest[~bad & ~dup].reset_index(drop=True), dropped


def prepare_one(entry: str | Path | dict | SourceParams, params: Params, cache_dir: Path | None = None) -> Corpus:
    """Measure one corpus (a folder or a `data.sources` mapping), then window, augment and featurize every clip
    (cached by content and params)."""
    manifest, record = measure_corpus(entry, workers=params.features.workers)
    where = entry.get("path") if isinstance(entry, dict) else entry.path if isinstance(entry, SourceParams) else entry
    root = Path(str(where))
    clips, dropped = usable_clips(manifest)
    spec = [params.features.model_dump(), params.augment.model_dump(), sorted(clips["sha256"]), record["name"]]
    key = hashlib.sha256(json.dumps([CACHE_FORMAT, *spec]).encode()).hexdigest()[:16]
    cached = cache_dir / f"features-{key}.npz" if cache_dir else None
    if cached and cached.is_file():
        with np.load(cached) as data:
            index, feats = pd.DataFrame({c: data[c] for c in INDEX}), data["x"]
        index["gender"] = index["gender"].replace("", None)
        log.info("%s: features from cache %s", record["name"], cached)
    else:
        copies = np.full(len(clips), params.augment.copies)
        index, waves = window_clips(clips, root, copies, params.features, params.augment)
        index = index[list(INDEX)]
        feats = feature_batches(waves, params.features)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp, tmp.open("wb") as f:
                text = {c: index[c].fillna("").to_numpy(str) for c in INDEX if c != "copy"}
                np.savez(f, x=feats, copy=index["copy"].to_numpy(np.int64), **text)
    return Corpus(index, feats, clips, dropped, [record], {record["name"]: root})


def prepare(entries, params: Params, cache_dir: Path | None = None) -> Corpus:
    """`prepare_one` for each corpus (a folder, a `data.sources` entry, or a list of them), concatenated."""
    entries = entries if isinstance(entries, list | tuple) else [entries]
    parts = [prepare_one(e, params, cache_dir) for e in entries]
    if len(parts) == 1:
        return parts[0]
    names = [r["name"] for p in parts for r in p.records]
    if len(set(names)) < len(names):
        raise ValueError(f"two corpora of one name among {names}; give each a distinct name")
    return Corpus(
        pd.concat([p.index for p in parts], ignore_index=True),
        np.concatenate([p.feats for p in parts]),
        pd.concat([p.clips for p in parts], ignore_index=True),
        [d for p in parts for d in p.dropped],
        [r for p in parts for r in p.records],
        {k: v for p in parts for k, v in p.roots.items()},
    )


def run_split(corpus: Corpus, params: Params, classes: list[str], roles: dict[str, str]) -> dict:
    """Train on the `train` clips (all copies), stop on `val`, score `test` (and `select`) originals.

    Args:
        roles: clip_id -> "train" | "val" | "select" | "test"; clips not named, or outside `classes`,
            are unused. `select` clips are scored only: training and early stopping never see them.

    Returns:
        A record: test, validation (and selection) scores, pooled and per corpus (`per_corpus`: role -> corpus ->
        scores over the classes that corpus has); test (and selection) probabilities, labels and corpora;
        epochs, seconds, parameters.
    """
    import keras

    from ser.training.train import fit, history_summary

    # The previous run's models and graphs go before this one builds its own: a 6-fold pipeline benchmark of two
    # corpora reached 16.5 GB resident by its last fold, growing fold by fold (what this saves is not measured yet).
    keras.backend.clear_session()
    idx = corpus.index
    role = idx["clip_id"].map(roles)
    known = idx["emotion"].isin(classes).to_numpy()
    y_all = idx["emotion"].map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(np.int64)
    sel = {
        r: (known & (role == r).to_numpy() & ((idx["copy"] == 0).to_numpy() | (r == "train")))
        for r in ("train", "val", "select", "test")
    }
    x = {r: corpus.feats[m] for r, m in sel.items()}
    mean, var = norm_stats(x["train"])  # from the copy: a second one of every training window may not fit
    stats = {
        "classes": classes,
        "features": params.features.model_dump(),
        "shape": list(corpus.feats.shape[1:]),
        "mean": mean.tolist(),
        "variance": var.tolist(),
    }
    y = {r: y_all[m] for r, m in sel.items()}
    source = idx["corpus"].to_numpy().astype(str)
    refit, refit_corpus = None, None
    if params.train.refit:  # the validation clips join training as training clips do: with their copies
        both = known & (role == "val").to_numpy()
        refit, refit_corpus = (corpus.feats[both], y_all[both]), source[both]
    model, history, seconds, head, windows = fit(
        params, stats, x["train"], y["train"], x["val"], y["val"], refit, corpus=(source[sel["train"]], refit_corpus)
    )
    scored = [r for r in ("val", "select", "test") if len(y[r])]
    probs = {r: model.predict(x[r], batch_size=64, verbose=0) for r in scored}
    parts = {}
    if head:  # the averaged models alone too, to show what the statistics head adds
        for part in (layer for layer in model.layers if isinstance(layer, keras.Model)):
            parts[part.name] = {
                r: score(y[r], part.predict(x[r], batch_size=64, verbose=0).argmax(1), classes) for r in scored
            }
    return {
        **{r: score(y[r], probs[r].argmax(1), classes) | calibration(probs[r], y[r], classes) for r in scored},
        "per_corpus": {r: corpus_scores(probs[r], y[r], source[sel[r]], classes) for r in scored},
        **{f"{r}_probs": probs[r] for r in ("test", "select", "val") if r in probs},
        **{f"{r}_y": y[r] for r in ("test", "select", "val") if r in probs},
        **{f"{r}_corpus": source[sel[r]] for r in ("test", "select", "val") if r in probs},
        "test_clips": idx.loc[sel["test"], "clip_id"].tolist(),
        **history_summary(history, params.train.schedule),
        "train_seconds": seconds,
        "train_windows": windows,
        "params": int(model.count_params()),
        "model": model,
        "stats": stats,
        **({"stats_head": head, "parts": parts} if head else {}),
        **({"layer_weights": mixes} if (mixes := layer_weights(model)) else {}),
    }


def fold_speakers(
    clips: pd.DataFrame, params: Params, folds: int = 6, select_speakers: int = 0
) -> Iterator[tuple[int, dict[str, list[str]]]]:
    """Protocol (a)'s speaker groups per fold, across corpora: `test` (every speaker of every corpus once, each
    corpus in `folds` gender-balanced groups), then `val`, `select`, `train` from each corpus's rest.

    Args:
        clips: rows with `corpus`, `speaker` and `gender` (a manifest, or a window index).

    Raises:
        ValueError: when the held-out speakers leave a corpus's fold no speaker to train on.
    """
    held = params.split.val_speakers + select_speakers
    corpora = {str(c): speaker_genders(g) for c, g in clips.groupby("corpus", sort=True)}
    groups = {c: list(split_folds(genders, folds, seed=params.split.seed)) for c, genders in corpora.items()}
    for f in range(folds):
        roles: dict[str, list[str]] = {"test": [], "val": [], "select": [], "train": []}
        for c, genders in corpora.items():
            test = groups[c][f]
            rest = gender_balanced_order({s: g for s, g in genders.items() if s not in test}, params.split.seed + f)
            if len(rest) <= held:
                raise ValueError(
                    f"fold {f}: {len(rest)} speakers of {c} outside the test fold cannot give split.val_speakers "
                    f"({params.split.val_speakers}) + select speakers ({select_speakers}) and still train"
                )
            roles["test"] += test
            roles["val"] += sorted(rest[: params.split.val_speakers])
            roles["select"] += sorted(rest[params.split.val_speakers : held])
            roles["train"] += sorted(rest[held:])
        yield f, roles


def row_folds(index: pd.DataFrame, params: Params, folds: int = 6) -> list[dict]:
    """`fold_speakers` as boolean row masks over `index` (rows with corpus, speaker, gender):
    [{"fold", "test", "val", "select", "train"}]."""
    speaker = index["speaker"].to_numpy()
    return [
        {"fold": f, **{role: np.isin(speaker, group) for role, group in roles.items()}}
        for f, roles in fold_speakers(index, params, folds)
    ]


def speaker_folds(
    corpus: Corpus,
    params: Params,
    folds: int = 6,
    seeds: int = 1,
    only: list[int] | None = None,
    select_speakers: int = 0,
) -> Iterator[dict]:
    """Protocol (a): k folds of whole speakers, every speaker tested once; validation speakers from the rest.

    Args:
        only: run just these fold numbers (0-based), e.g. for a quick look; None runs all.
        select_speakers: also hold out this many of each corpus's training speakers, scored only (`select`): an
            unbiased figure for comparing settings, since early stopping picks its epoch on `val`.

    Raises:
        ValueError: when the held-out speakers leave a fold no speaker to train on.
    """
    classes = params.data.class_set(corpus.clips["emotion"])
    for f, groups in fold_speakers(corpus.clips, params, folds, select_speakers):
        if only is not None and f not in only:
            continue
        by_speaker = {s: role for role, group in groups.items() for s in group}
        roles = dict(zip(corpus.clips["clip_id"], corpus.clips["speaker"].map(by_speaker), strict=True))
        for s in range(seeds):
            seeded = override(params, {"train.seed": params.train.seed + s})
            log.info(
                "fold %d/%d (test speakers %s, val speakers %s, select speakers %s), seed %d",
                f + 1,
                folds,
                groups["test"],
                groups["val"],
                groups["select"],
                seeded.train.seed,
            )
            held_out = {"select_speakers": groups["select"]} if groups["select"] else {}
            yield {
                "fold": f,
                "seed": seeded.train.seed,
                "test_speakers": groups["test"],
                "val_speakers": groups["val"],
                **held_out,
                **run_split(corpus, seeded, classes, roles),
            }


def article_split(corpus: Corpus, params: Params, seeds: int = 1) -> Iterator[dict]:
    """Protocol (b), the article's: seven classes (calm dropped), clips shuffled 80/20 whatever the speaker."""
    classes = [e for e in EMOTIONS if e != "calm"]
    clips = corpus.clips[corpus.clips["emotion"].isin(classes)].reset_index(drop=True)
    for s in range(seeds):
        seeded = override(
            params,
            {
                "train.seed": params.train.seed + s,
                "split.method": "random",
                "split.test_fraction": 0.2,
                "split.seed": params.split.seed + s,
            },
        )
        roles = dict(zip(clips["clip_id"], random_split(clips, seeded.split), strict=True))
        log.info("article protocol (random 80/20, 7 classes), seed %d", seeded.train.seed)
        # Each seed draws its own split, so runs are not ensembled (their test sets differ).
        yield {"fold": s, "seed": seeded.train.seed, **run_split(corpus, seeded, classes, roles)}
