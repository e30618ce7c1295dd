"""The real-data benchmark: speaker-independent k-fold and the article's random split.

Everything runs through the pipeline's own code: `ingest.build_manifest` measures
the corpus in place, `featurize.window_clips` cuts and augments the windows
(augmentation is seeded per clip, so a clip's windows are the same whatever
split it falls in, and are computed once for all folds), `features.extract`,
`train.fit`, `evaluate.score`. Per run, hyperparameters and the early-stopping
epoch are chosen on validation actors taken from the training actors; the test
fold is scored once, at the end. `bench/ravdess_bench.py` is the command line.

    corpus = prepare(Path("../shared/data/ravdess-speech-16k"), params, cache_dir)
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

from ser.config import Params
from ser.data.featurize import feature_batches, window_clips
from ser.data.ingest import build_manifest
from ser.data.splits import actor_folds, gender_balanced_order, random_split
from ser.features import norm_stats
from ser.io import atomic_path
from ser.labels import EMOTIONS
from ser.overrides import override
from ser.training.evaluate import calibration, score

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Every window of every usable clip: `index` (clip_id, actor, emotion, copy) and `feats`."""

    index: pd.DataFrame
    feats: np.ndarray
    clips: pd.DataFrame  # one row per clip (the manifest rows used)
    dropped: list[str]  # clips left out, with the reason


def usable_clips(manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Clips that decode, are named per RAVDESS, carry a known emotion and are not byte-identical repeats."""
    bad = manifest["decode_error"].notna() | ~manifest["name_ok"].astype(bool) | manifest["emotion"].isna()
    dup = manifest["sha256"].duplicated(keep="first") & ~bad
    dropped = [f"{p}: {e or 'bad name or emotion'}" for p, e in manifest.loc[bad, ["path", "decode_error"]].values]
    dropped += [f"{p}: byte-identical to another clip" for p in manifest.loc[dup, "path"]]
    return manifest[~bad & ~dup].reset_index(drop=True), dropped


def prepare(corpus_dir: Path, params: Params, cache_dir: Path | None = None) -> Corpus:
    """Measure the corpus, then window, augment and featurize every clip (cached by content and params)."""
    clips, dropped = usable_clips(build_manifest(corpus_dir, workers=params.features.workers))
    key = hashlib.sha256(
        json.dumps([params.features.model_dump(), params.augment.model_dump(), sorted(clips["sha256"])]).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"features-{key}.npz" if cache_dir else None
    if cached and cached.is_file():
        with np.load(cached) as data:
            index, feats = pd.DataFrame({c: data[c] for c in ("clip_id", "actor", "emotion", "copy")}), data["x"]
        log.info("features from cache %s", cached)
    else:
        copies = np.full(len(clips), params.augment.copies)
        index, waves = window_clips(clips, corpus_dir, copies, params.features, params.augment)
        index = index[["clip_id", "actor", "emotion", "copy"]]
        feats = feature_batches(waves, params.features)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp, tmp.open("wb") as f:
                np.savez(
                    f,
                    x=feats,
                    clip_id=index["clip_id"].to_numpy(str),
                    emotion=index["emotion"].to_numpy(str),
                    actor=index["actor"].to_numpy(np.int64),
                    copy=index["copy"].to_numpy(np.int64),
                )
    return Corpus(index, feats, clips, dropped)


def run_split(corpus: Corpus, params: Params, classes: list[str], roles: dict[str, str]) -> dict:
    """Train on the `train` clips (all copies), stop on `val`, score `test` (and `select`) originals.

    Args:
        roles: clip_id -> "train" | "val" | "select" | "test"; clips not named, or outside `classes`,
            are unused. `select` clips are scored only: training and early stopping never see them.

    Returns:
        A record: test, validation (and selection) scores, test (and selection) probabilities and labels,
        epochs, seconds, parameters.
    """
    import keras

    from ser.training.train import fit, history_summary

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
    refit = None
    if params.train.refit:  # the validation clips join training as training clips do: with their copies
        both = known & (role == "val").to_numpy()
        refit = (corpus.feats[both], y_all[both])
    model, history, seconds, head, windows = fit(params, stats, x["train"], y["train"], x["val"], y["val"], refit)
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
        **{f"{r}_probs": probs[r] for r in ("test", "select") if r in probs},
        **{f"{r}_y": y[r] for r in ("test", "select") if r in probs},
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


def layer_weights(model) -> list[list[float]]:
    """`model.layer_weighting`: each CNN-LSTM's learned softmax weights over the encoder layers ([] without)."""
    from ser.training.model import LayerMix

    models = [model, *(layer for layer in model.layers if hasattr(layer, "layers"))]
    return [
        layer.weights_by_layer().round(4).tolist() for m in models for layer in m.layers if isinstance(layer, LayerMix)
    ]


def fold_actors(
    actors: list[int], params: Params, folds: int = 6, select_actors: int = 0
) -> Iterator[tuple[int, dict[str, list[int]]]]:
    """Protocol (a)'s actor groups per fold: `test` (every actor once), then `val`, `select`, `train` from the rest.

    Raises:
        ValueError: when the held-out actors leave a fold no actor to train on.
    """
    held = params.split.val_actors + select_actors
    for f, test_actors in enumerate(actor_folds(actors, folds, seed=params.split.seed)):
        rest = gender_balanced_order([a for a in actors if a not in test_actors], params.split.seed + f)
        if len(rest) <= held:
            raise ValueError(
                f"fold {f}: {len(rest)} actors outside the test fold cannot give split.val_actors "
                f"({params.split.val_actors}) + select actors ({select_actors}) and still train"
            )
        yield (
            f,
            {
                "test": test_actors,
                "val": sorted(rest[: params.split.val_actors]),
                "select": sorted(rest[params.split.val_actors : held]),
                "train": sorted(rest[held:]),
            },
        )


def row_folds(actor: np.ndarray, params: Params, folds: int = 6) -> list[dict]:
    """`fold_actors` as boolean row masks over a per-row actor array: [{"fold", "test", "val", "select", "train"}]."""
    return [
        {"fold": f, **{role: np.isin(actor, group) for role, group in roles.items()}}
        for f, roles in fold_actors(sorted(set(actor.tolist())), params, folds)
    ]


def speaker_folds(
    corpus: Corpus,
    params: Params,
    folds: int = 6,
    seeds: int = 1,
    only: list[int] | None = None,
    select_actors: int = 0,
) -> Iterator[dict]:
    """Protocol (a): k folds of whole actors, every actor tested once; validation actors from the rest.

    Args:
        only: run just these fold numbers (0-based), e.g. for a quick look; None runs all.
        select_actors: also hold out this many of the training actors, scored only (`select`): an
            unbiased figure for comparing settings, since early stopping picks its epoch on `val`.

    Raises:
        ValueError: when the held-out actors leave a fold no actor to train on.
    """
    classes = params.data.classes
    actors = sorted(int(a) for a in corpus.clips["actor"].unique())
    for f, groups in fold_actors(actors, params, folds, select_actors):
        if only is not None and f not in only:
            continue
        test_actors, val_actors, select = groups["test"], groups["val"], groups["select"]
        by_actor = {a: role for role, group in groups.items() for a in group}
        roles = dict(zip(corpus.clips["clip_id"], corpus.clips["actor"].astype(int).map(by_actor), strict=True))
        for s in range(seeds):
            seeded = override(params, {"train.seed": params.train.seed + s})
            log.info(
                "fold %d/%d (test actors %s, val actors %s, select actors %s), seed %d",
                f + 1,
                folds,
                test_actors,
                val_actors,
                select,
                seeded.train.seed,
            )
            held_out = {"select_actors": select} if select else {}
            yield {
                "fold": f,
                "seed": seeded.train.seed,
                "test_actors": test_actors,
                "val_actors": val_actors,
                **held_out,
                **run_split(corpus, seeded, classes, roles),
            }


def article_split(corpus: Corpus, params: Params, seeds: int = 1) -> Iterator[dict]:
    """Protocol (b), the article's: seven classes (calm dropped), clips shuffled 80/20 whatever the actor."""
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
