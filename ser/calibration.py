"""Domain calibration: the statistics head's standardisation re-estimated from a deployment's own unlabelled clips.

A model trained in studios meets other microphones, rooms and voices; much of what it then gets wrong is a shift
of its clip statistics (each clip's per-channel mean and std of the encoder states, `clip_stats`) that the
deployment's own audio shows without any label. A profile replaces the statistics head's training-set mean
(and, where chosen, scale) of those statistics by the deployment's, shrunk toward the training values by the
number of clips it saw (`estimate`): N clips move the mean by N / (N + `shrink`). The CNN-LSTM is left as it
is: it already removes each clip's own channel means (`model.utterance_norm`) and each frame's offset and gain
(`features.frame_norm`). Labels are never read.

    mean, scale = estimate(stats, head.mean, head.scale, shrink=10, scale_too=False)
"""

from __future__ import annotations

import numpy as np


def estimate(
    stats: np.ndarray, train_mean: np.ndarray, train_scale: np.ndarray, shrink: float, scale_too: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The standardisation (mean, scale) of clip statistics for a deployment, from its clips' `stats` (N, dims).

    The mean moves from the training mean toward the clips' by N / (N + shrink); with `scale_too`, the variance
    likewise (by N / (N + 3 shrink): a variance needs more clips than a mean for the same error).
    """
    stats = np.asarray(stats, np.float64)
    n = len(stats)
    w = n / (n + shrink) if shrink > 0 else 1.0
    mean = (1 - w) * np.asarray(train_mean, np.float64) + w * stats.mean(0)
    scale = np.asarray(train_scale, np.float64)
    if scale_too and n > 1:
        ws = n / (n + 3 * shrink) if shrink > 0 else 1.0
        scale = np.sqrt((1 - ws) * scale**2 + ws * np.maximum(stats.var(0), 1e-12))
    return mean.astype(np.float32), scale.astype(np.float32)
