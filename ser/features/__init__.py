"""Features: the one function that turns audio windows into the model's input, for every stage.

Training (`ser.data.featurize`), evaluation, serving (`ser.serving.predictor`) and the benchmark all
call `extract`; what it computes is the registered kind named by `features.kind` (`ser.features.kinds`):
`whisper_base` (`ser.features.whisper`, the default) or `logmel` (`ser.features.logmel`), of the windows
scaled to one speech level first when `features.level_db` is set (`ser.audio.normalise_level`), each frame
normalised over its channels after with `features.frame_norm`.

    feats = extract(np.stack(windows), params.features)   # (clips, frames, width) float32
    mean, variance = norm_stats(feats[train])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ser.features.kinds import FeatureKind, feature_kind, kind_names

if TYPE_CHECKING:
    from ser.config import FeatureParams

__all__ = ["FeatureKind", "extract", "feature_kind", "frame_normalise", "kind_names", "norm_stats"]


def extract(waves: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The model's input for a batch of equal-length windows: what training, evaluation and serving call.

    Args:
        waves: (clips, samples) float audio at `params.sample_rate`.
        params: the `features` section of params.yaml (its `kind` picks the representation).

    Returns:
        float32 (clips, frames, width); `feature_kind(params.kind).shape(params)` is (frames, width).
    """
    if params.level_db is not None:  # a recording's gain says nothing of the emotion: every window at one level
        from ser.audio import normalise_level

        waves = normalise_level(waves, params.sample_rate, params.level_db)
    feats = feature_kind(params.kind).extract(waves, params)
    return frame_normalise(feats) if params.frame_norm else feats


def frame_normalise(feats: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Each frame of (clips, frames, width) features centred and scaled over its own width (`features.frame_norm`):
    an offset or gain common to a frame's channels, which a recording or a voice can put there, is removed."""
    out = np.empty(feats.shape, np.float32)
    for start in range(0, len(feats), chunk):
        part = np.asarray(feats[start : start + chunk], np.float32)
        out[start : start + len(part)] = (part - part.mean(-1, keepdims=True)) / (part.std(-1, keepdims=True) + 1e-5)
    return out


def norm_stats(features: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance over every clip and frame of a (clips, frames, width) array.

    Two passes in float64 over `chunk` clips at a time: a float64 copy of a multi-gigabyte array (all 7 Whisper
    layers of a corpus) would not fit in memory.
    """
    width, count = features.shape[-1], features.shape[0] * int(np.prod(features.shape[1:-1]))
    total = np.zeros(width)
    for start in range(0, len(features), chunk):
        total += features[start : start + chunk].reshape(-1, width).sum(axis=0, dtype=np.float64)
    mean = total / count
    squares = np.zeros(width)
    for start in range(0, len(features), chunk):
        squares += np.square(features[start : start + chunk].reshape(-1, width) - mean).sum(axis=0)
    return mean.astype(np.float32), (squares / count).astype(np.float32)
