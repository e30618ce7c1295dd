"""Speaker enrolment: a linear head on each clip's statistics minus its speaker's mean (`enrolment.*` params).

A single clip cannot tell a speaker's emotion from their voice; several clips of one speaker can: the
emotion is what moves a clip away from that speaker's average. The enrolment head is the statistics
head's linear fit (`ser.training.stats_head.fit_linear`) on clip statistics (`clip_stats`) shifted by
the speaker's mean statistics. The train stage fits it beside the model: each training and validation speaker
shifted by the mean of `enrolment.clips` random original clips of its own (as a user enrols; training
speakers in `TRAIN_DRAWS` draws), C chosen on the validation UAR. It is saved as `enrolment.npz` beside `model.keras`,
and in enrolment mode (the evaluate stage's `enrolment` metrics, the service's `/predict_speaker`) its
probabilities are averaged with the model's. A single upload (`/predict`) never uses it. Test speakers'
labels are never used, but their audio is: this is a transductive mode, reported apart from the
single-clip scores (docs/benchmark.md "Speaker enrolment").

    head, report = fit_enrolment_head(train, val, n_classes=8, clips=4)
    fused = head.fuse(model_probs, stats, speaker_mean=stats[reference].mean(0))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ser.io import atomic_path
from ser.training.stats_head import class_weights, clip_stats, fit_linear

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FILE = "enrolment.npz"  # beside model.keras in the model folder and the packaged model
CALM = ("neutral", "calm")
# Training speakers are shifted by `clips` random originals of theirs, TRAIN_DRAWS times (rows stacked), so the
# head learns from references as noisy as a user's enrolment. Chosen on validation UAR over the 6 folds of
# protocol (a): 0.776 for 3 draws, 0.763 for 1, 0.772 for the mean of all originals (docs/benchmark.md).
TRAIN_DRAWS = 3


class Speakers(NamedTuple):
    """Clip statistics of one split with their labels, speakers and augmentation copies (0 = original)."""

    stats: np.ndarray
    y: np.ndarray
    speaker: np.ndarray  # speaker ids (str, namespaced by corpus)
    copy: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, speaker: np.ndarray, copy: np.ndarray | None = None) -> Speakers:
        """From (clips, frames, channels) features."""
        copy = np.zeros(len(y), np.int64) if copy is None else np.asarray(copy)
        return cls(clip_stats(x), np.asarray(y), np.asarray(speaker).astype(str), copy)


def split_speakers(features_dir: Path, split: str, x: np.ndarray, y: np.ndarray) -> Speakers:
    """`Speakers` of one featurized split: its features and labels (already loaded) with the rows' speakers and copies.

    Raises:
        ValueError: the split's file has no `speaker` array (features written before multi-corpus ingest).
    """
    with np.load(features_dir / f"{split}.npz") as data:
        if "speaker" not in data.files:
            raise ValueError(f"{features_dir / split}.npz: no `speaker` array; run the featurize stage again")
        copy = data["copy"] if "copy" in data.files else None
        return Speakers.of(x, y, data["speaker"], copy)


def check_reference(reference: str) -> str:
    """`reference` itself when it is `all`, `calm` or a positive number of clips.

    Raises:
        ValueError: any other string, saying what is expected.
    """
    if reference in ("all", "calm") or (reference.isdigit() and int(reference) > 0):
        return reference
    raise ValueError(f"--reference: expected all, calm or a positive number of clips, got {reference!r}")


def reference_mask(index: pd.DataFrame, reference: str, seed: int = 0) -> np.ndarray:
    """Boolean mask over `index` rows (columns `speaker`, `emotion`): the clips each speaker's mean uses.

    `all`: every clip; `calm`: the neutral and calm clips (a label-chosen subset); N: N random clips.

    Raises:
        ValueError: `reference` is not `all`, `calm` or a positive integer, or a speaker has no reference clip.
    """
    speaker = index["speaker"].astype(str).to_numpy()
    if check_reference(reference) == "all":
        mask = np.ones(len(index), bool)
    elif reference == "calm":
        mask = index["emotion"].isin(CALM).to_numpy()
    else:
        mask = random_reference(speaker, int(reference), np.random.default_rng(seed))
    empty = sorted(set(speaker.tolist()) - set(speaker[mask].tolist()))
    if empty:
        raise ValueError(f"--reference {reference}: speakers {empty} have no reference clip")
    return mask


def random_reference(speaker: np.ndarray, clips: int, rng: np.random.Generator, eligible=None) -> np.ndarray:
    """Mask of `clips` rows drawn at random per speaker (all its rows when it has fewer), among `eligible`."""
    mask = np.zeros(len(speaker), bool)
    eligible = np.ones(len(speaker), bool) if eligible is None else eligible
    for a in np.unique(speaker):
        rows = np.flatnonzero((speaker == a) & eligible)
        mask[rng.choice(rows, size=min(clips, len(rows)), replace=False)] = True
    return mask


def speaker_normalise(x: np.ndarray, speaker: np.ndarray, reference: np.ndarray, scale: bool = False) -> np.ndarray:
    """(rows, dims) -> the same, each speaker's rows minus the mean (and over the std, `scale`) of its reference."""
    out = np.asarray(x, np.float32).copy()
    for a in np.unique(speaker):
        rows, ref = speaker == a, (speaker == a) & reference
        out[rows] -= x[ref].mean(0)
        if scale:
            out[rows] /= x[ref].std(0) + 1e-5  # keeps a dimension constant over a small reference finite
    return out


@dataclass
class EnrolmentHead:
    """The fitted head in NumPy: standardise, linear, softmax; `min_clips` is the service's minimum."""

    mean: np.ndarray
    scale: np.ndarray
    kernel: np.ndarray  # (dims, classes)
    bias: np.ndarray
    min_clips: int

    def probs(self, stats: np.ndarray, speaker_mean: np.ndarray) -> np.ndarray:
        """(rows, dims) clip statistics of one speaker and that speaker's mean -> (rows, classes)."""
        z = (np.asarray(stats, np.float32) - speaker_mean - self.mean) / self.scale
        logits = z @ self.kernel + self.bias
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def fuse(self, model_probs: np.ndarray, stats: np.ndarray, speaker_mean: np.ndarray) -> np.ndarray:
        """The enrolment mode's answer: the model's and this head's probabilities, averaged."""
        return (np.asarray(model_probs, np.float32) + self.probs(stats, speaker_mean)) / 2

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, mean=self.mean, scale=self.scale, kernel=self.kernel, bias=self.bias, min_clips=self.min_clips)

    @classmethod
    def load(cls, path: Path) -> EnrolmentHead:
        with np.load(path) as d:
            arrays = {k: d[k].astype(np.float32) for k in ("mean", "scale", "kernel", "bias")}
            return cls(**arrays, min_clips=int(d["min_clips"]))


def fit_enrolment_head(
    train: Speakers,
    val: Speakers,
    n_classes: int,
    clips: int,
    seed: int = 0,
    refit: bool = False,
    train_draws: int = TRAIN_DRAWS,
) -> tuple[EnrolmentHead, dict]:
    """Fit the head: training and validation speakers shifted by the mean of `clips` random original clips of their
    own (training speakers `TRAIN_DRAWS` times over, their rows stacked); C chosen on the validation UAR.

    Args:
        refit: once C is chosen, fit again on the training and validation rows together (`train.refit`).
        train_draws: the training speakers' reference draws; 0 shifts them by the mean of all their originals.

    Returns:
        The head and the fit's report (chosen C, validation UAR, every C's UAR, the reference size).
    """
    rng = np.random.default_rng(seed)
    val_z = speaker_normalise(val.stats, val.speaker, random_reference(val.speaker, clips, rng, eligible=val.copy == 0))
    refs = [random_reference(train.speaker, clips, rng, train.copy == 0) for _ in range(train_draws)]
    train_z = np.concatenate([speaker_normalise(train.stats, train.speaker, ref) for ref in refs or [train.copy == 0]])
    train_y = np.tile(train.y, max(1, train_draws))
    scaler, classifier, report = fit_linear(train_z, train_y, val_z, val.y, refit=(val_z, val.y) if refit else None)
    kernel, bias = class_weights(classifier, n_classes)
    head = EnrolmentHead(scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), kernel, bias, clips)
    log.info("enrolment head: C %g, validation UAR %.3f (%d reference clips)", report["C"], report["val_uar"], clips)
    return head, {**report, "reference_clips": clips, "train_draws": train_draws}


def speaker_probs(head: EnrolmentHead, probs: np.ndarray, stats: np.ndarray, parts: list[int]) -> list[np.ndarray]:
    """Enrolment mode over one speaker's clips, each `parts[i]` consecutive windows of `probs` and `stats`.

    The speaker's mean is the mean over clips of each clip's mean window statistics (a long clip counts once),
    so every clip sent is also the reference. Returns the fused probabilities, one (windows, classes) per clip.
    """
    bounds = np.cumsum([0, *parts])
    means = [stats[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    fused = head.fuse(probs, stats, np.mean(means, axis=0))
    return [fused[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def enrolment_probs(
    head: EnrolmentHead, model_probs: np.ndarray, test: Speakers, clips: int, draws: int, seed: int = 0
) -> list[np.ndarray]:
    """Fused probabilities of every test row, one array per draw of `clips` random reference clips per speaker."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        ref = random_reference(test.speaker, clips, rng, eligible=test.copy == 0)
        fused = np.empty_like(model_probs, dtype=np.float32)
        for a in np.unique(test.speaker):
            rows = test.speaker == a
            fused[rows] = head.fuse(model_probs[rows], test.stats[rows], test.stats[rows & ref].mean(0))
        out.append(fused)
    return out
