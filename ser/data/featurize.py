"""The `featurize` stage: split the clips, augment the training split, compute log-mels.

Reads the manifest, assigns speaker-independent splits, decodes each clip once,
cuts the fixed window and (training split only) adds `augment.copies`
augmented versions (speed, pitch, noise, and with their rates a room and a telephone
line; with `augment.crop`, a random sub-window as a short clip). All windows then go through the one feature function,
`ser.features.extract` (a log-mel, or Whisper-base encoder states with
`features.kind: whisper_base`). Normalisation statistics come from the training split
alone and travel with the features (and later with the model).

    ser featurize --params params.yaml --manifest data/manifest.csv \
        --audio-dir data/raw --out data/features
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ser.audio import fixed_window, load_audio
from ser.config import AugmentParams, FeatureParams, Params
from ser.data.augment import augment_wave, sub_window
from ser.data.splits import assign_splits
from ser.features import extract, norm_stats
from ser.io import atomic_path, write_json

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
    out = [(fixed_window(wave, f.sample_rate, f.offset, f.duration), "")]
    # Seeded by clip id, not by position, so results do not depend on worker order.
    rng = np.random.default_rng([job.augment.seed, zlib.crc32(job.clip_id.encode())])
    for _ in range(job.copies):
        aug, applied = augment_wave(wave, f.sample_rate, job.augment, rng)
        window = fixed_window(aug, f.sample_rate, f.offset, f.duration)
        crop = job.augment.crop
        if crop.rate > 0 and rng.random() < crop.rate:  # no draw when off: earlier runs' copies stay the same
            window = sub_window(window, f.sample_rate, crop.min_duration, rng)
            applied.append("crop")
        out.append((window, "+".join(applied) or "none"))
    return out


def select_clips(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Rows usable for training: readable, well named, in the class set.

    Raises:
        FeaturizeError: naming the clips that failed to decode or are misnamed.
    """
    bad = manifest[manifest["decode_error"].notna() | ~manifest["name_ok"].astype(bool)]
    if len(bad):
        listing = "; ".join(f"{r.path}: {r.decode_error or 'not a RAVDESS file name'}" for r in bad.itertuples())
        raise FeaturizeError(
            f"{len(bad)} unusable clip(s): {listing}. Fix the corpus or run validate in quarantine mode"
        )
    unknown = manifest[manifest["emotion"].isna()]
    if len(unknown):
        raise FeaturizeError(f"emotion code outside the RAVDESS vocabulary: {unknown['path'].tolist()}")
    return manifest[manifest["emotion"].isin(classes)].reset_index(drop=True)


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
    params: Params, manifest_path: Path, audio_dir: Path, out_dir: Path, mapper: Mapper | None = None
) -> dict:
    """Write train/val/test .npz, index.csv and stats.json under out_dir; return a summary."""
    classes = params.data.classes
    clips = select_clips(pd.read_csv(manifest_path), classes)
    clips["split"] = assign_splits(clips, params.split).values
    missing = {s for s in SPLITS if not (clips["split"] == s).any()}
    if missing:
        raise FeaturizeError(f"split: no clips fall in {sorted(missing)}; check split.* in params.yaml")
    copies = np.where(clips["split"] == "train", params.augment.copies, 0)
    index, waves = window_clips(clips, audio_dir, copies, params.features, params.augment, mapper=mapper)
    index = index[["clip_id", "split", "copy", "augmentation", "emotion", "actor"]]
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
                actor=rows["actor"].to_numpy(np.int64),
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
            },
        )
    summary = {s: int((index["split"] == s).sum()) for s in SPLITS}
    log.info("featurized %s windows of shape %s into %s", summary, feats.shape[1:], out_dir)
    return summary
