"""The `featurize` stage: split the clips, augment the training split, compute the features.

Reads the manifest (every corpus), assigns speaker-independent splits per corpus, decodes each clip once,
cuts the fixed window and (training split only) adds `augment.copies`
augmented versions (speed, pitch, noise, and with their rates a room and a telephone
line; with `augment.crop`, a random sub-window as a short clip). All windows then go through the one feature function,
`ser.features.extract` (a log-mel, or Whisper-base encoder states with
`features.kind: whisper_base`). The classes are `data.classes`, or the union of the corpora's.
Normalisation statistics come from the training split alone and travel with the features (and
later with the model), with each corpus's record (`data/corpora.json`) and its clip counts per split.

    ser featurize --params params.yaml --manifest data/manifest.csv --corpora data/corpora.json \
        --audio-dir data/raw --out data/features
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ser.audio import fixed_window, load_audio, window_start
from ser.config import AugmentParams, FeatureParams, Params
from ser.data.augment import augment_wave, sub_window
from ser.data.clips import clip_seed
from ser.data.ingest import read_manifest
from ser.data.splits import assign_splits
from ser.features import extract, norm_stats
from ser.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
Mapper = Callable[[Callable, Iterable], Iterator]


class FeaturizeError(ValueError):
    """The manifest holds clips that cannot be featurized."""


@dataclass(frozen=True)
class ClipJob:
    """One clip to window (and, for training clips, augment)."""

    path: str
    clip_id: str
    copies: int
    features: FeatureParams
    augment: AugmentParams


def clip_windows(job: ClipJob) -> list[tuple[np.ndarray, str]]:
    """The clip's fixed window plus `copies` augmented windows, each with its augmentation tag."""
    f = job.features
    wave = load_audio(job.path, f.sample_rate)
    out = [(fixed_window(wave, f.sample_rate, window_start(wave, f.sample_rate, f.offset, f.align), f.duration), "")]
    # Seeded by clip id, not by position, so results do not depend on worker order.
    rng = np.random.default_rng([job.augment.seed, clip_seed(job.clip_id)])
    for _ in range(job.copies):
        aug, applied = augment_wave(wave, f.sample_rate, job.augment, rng)
        window = fixed_window(aug, f.sample_rate, window_start(aug, f.sample_rate, f.offset, f.align), f.duration)
        crop = job.augment.crop
        if crop.rate > 0 and rng.random() < crop.rate:  # no draw when off: earlier runs' copies stay the same
            window = sub_window(window, f.sample_rate, crop.min_duration, rng)
            applied.append("crop")
        out.append((window, "+".join(applied) or "none"))
    return out


def select_clips(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Rows usable for training: readable, well named, labelled with a speaker, in the class set.

    Raises:
        FeaturizeError: naming the clips that failed to decode, are misnamed or lack an emotion or a speaker.
    """
    bad = manifest[manifest["decode_error"].notna() | ~manifest["name_ok"].astype(bool)]
    if len(bad):
        listing = "; ".join(
            f"{r.path}: {r.decode_error if isinstance(r.decode_error, str) else 'name outside its corpus scheme'}"
            for r in bad.itertuples()
        )
        raise FeaturizeError(
            f"{len(bad)} unusable clip(s): {listing}. Fix the corpus or run validate in quarantine mode"
        )
    unknown = manifest[manifest["emotion"].isna() | manifest["speaker"].isna()]
    if len(unknown):
        raise FeaturizeError(f"clips without an emotion of ours or a speaker: {unknown['path'].tolist()[:20]}")
    return manifest[manifest["emotion"].isin(classes)].reset_index(drop=True)


def corpus_counts(index: pd.DataFrame, corpora: list[dict]) -> list[dict]:
    """Each corpus's record with its clips and speakers per split (originals only, not augmented copies)."""
    originals = index[index["copy"] == 0]
    out = []
    for record in corpora:
        own = originals[originals["corpus"] == record["name"]]
        if own.empty:
            continue
        out.append(
            {
                **{k: v for k, v in record.items() if k not in ("clips", "speakers")},
                "clips": {s: int((own["split"] == s).sum()) for s in SPLITS},
                "speakers": {s: int(own.loc[own["split"] == s, "speaker"].nunique()) for s in SPLITS},
            }
        )
    return out


def window_clips(
    clips: pd.DataFrame,
    audio_dir: Path,
    copies: np.ndarray,
    features: FeatureParams,
    augment: AugmentParams,
    mapper: Mapper | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Decode every clip once and cut its window plus `copies[i]` augmented windows.

    Returns:
        An index (one row per window: the clip's manifest columns, `copy`, `augmentation`)
        and the windows in the same order.
    """
    jobs = [
        ClipJob(str(audio_dir / r.path), r.clip_id, int(n), features, augment)
        for r, n in zip(clips.itertuples(), copies, strict=True)
    ]
    workers = features.workers if workers is None else workers
    # A progress bar on a terminal (decoding + augmentation is the slow part); silent in logs.
    bar = dict(total=len(jobs), desc="decode+augment", unit="clip", disable=None, leave=False)
    if mapper is None:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                windows = list(tqdm(pool.map(clip_windows, jobs, chunksize=8), **bar))
        else:
            windows = list(tqdm(map(clip_windows, jobs), **bar))
    else:
        windows = list(tqdm(mapper(clip_windows, jobs), **bar))
    rows, waves = [], []
    for clip, clip_wins in zip(clips.to_dict("records"), windows, strict=True):
        for copy, (wave, tag) in enumerate(clip_wins):
            rows.append({**clip, "copy": copy, "augmentation": tag})
            waves.append(wave)
    return pd.DataFrame(rows), waves


def feature_batches(waves: list[np.ndarray], features: FeatureParams, batch: int = 256) -> np.ndarray:
    """`features.extract` over a list of equal-length windows, in batches that bound the working memory."""
    return np.concatenate([extract(np.stack(waves[i : i + batch]), features) for i in range(0, len(waves), batch)])


def featurize(
    params: Params,
    manifest_path: Path,
    audio_dir: Path,
    out_dir: Path,
    mapper: Mapper | None = None,
    corpora_path: Path | None = None,
) -> dict:
    """Write train/val/test .npz, index.csv and stats.json under out_dir; return a summary.

    `corpora_path`: ingest's `corpora.json`; its `use` makes a corpus train- or test-only, and its records go
    into stats.json (None: every corpus split by speaker, no records).
    """
    manifest = read_manifest(manifest_path)
    corpora = read_json(corpora_path) if corpora_path else []
    classes = params.data.class_set(manifest["emotion"].dropna())
    clips = select_clips(manifest, classes)
    clips["split"] = assign_splits(clips, params.split, {c["name"]: c.get("use", "all") for c in corpora}).values
    missing = {s for s in SPLITS if not (clips["split"] == s).any()}
    if missing:
        raise FeaturizeError(f"split: no clips fall in {sorted(missing)}; check split.* in params.yaml")
    copies = np.where(clips["split"] == "train", params.augment.copies, 0)
    index, waves = window_clips(clips, audio_dir, copies, params.features, params.augment, mapper=mapper)
    index = index[["clip_id", "corpus", "speaker", "split", "copy", "augmentation", "emotion"]]
    feats = feature_batches(waves, params.features)
    labels = index["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    train = (index["split"] == "train").to_numpy()
    mean, var = norm_stats(feats[train])
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        for split in SPLITS:
            sel = (index["split"] == split).to_numpy()
            rows = index[sel]
            np.savez(
                staging / f"{split}.npz",
                x=feats[sel],
                y=labels[sel],
                clip_id=rows["clip_id"].to_numpy(str),
                speaker=rows["speaker"].to_numpy(str),
                corpus=rows["corpus"].to_numpy(str),
                copy=rows["copy"].to_numpy(np.int64),
            )
        index.to_csv(staging / "index.csv", index=False)
        write_json(
            staging / "stats.json",
            {
                "classes": classes,
                "features": params.features.model_dump(),
                "mean": mean.tolist(),
                "variance": var.tolist(),
                "shape": list(feats.shape[1:]),
                "corpora": corpus_counts(index, corpora),
            },
        )
    summary = {s: int((index["split"] == s).sum()) for s in SPLITS}
    log.info("featurized %s windows of shape %s into %s", summary, feats.shape[1:], out_dir)
    return summary
