"""The statistics head alone on the cross-corpus matrix's folds: seconds a fold, for screening levers.

`crosscorpus_bench --head linear` and `calibration_bench` fit it as the pipeline fits its head
(`ser.training.stats_head.fit_linear`, `train.balance` weights, C chosen on the validation speakers) on the clip
statistics `probe_stats` gives.

    (mean, scale, kernel, bias), report = linear_fit(stats, y, role, original, source, params, n_classes)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def probe_stats(feats: np.ndarray, kind: str) -> np.ndarray:
    """The linear head's inputs: each clip's per-channel mean and std (`plain`, the pipeline's head); `std` alone
    (the states' per-utterance mean removed first, as cepstral mean normalisation removes a channel); or mean and
    std of the frames normalised over their channels (`frame`, what `features.frame_norm` does)."""
    from ser.features import frame_normalise
    from ser.training.stats_head import clip_stats

    if kind == "std":
        return clip_stats(feats)[:, feats.shape[-1] :]
    return clip_stats(frame_normalise(feats) if kind == "frame" else feats)


def linear_fit(
    stats: np.ndarray, y: np.ndarray, role: np.ndarray, original: np.ndarray, source: np.ndarray, params, n_classes: int
):
    """The statistics head alone, fitted on the `train` rows (copies included) with `train.balance`, C chosen on the
    `val` originals: (mean, scale, kernel, bias) of `softmax(((stats - mean) / scale) @ kernel + bias)`, and the
    fit's report."""
    from ser.training.fit_loop import balance_weights
    from ser.training.stats_head import class_weights, fit_linear

    train = (y >= 0) & (role == "train")
    val = (y >= 0) & (role == "val") & original
    weights = balance_weights(y[train], source[train], params.train.balance)
    scaler, classifier, report = fit_linear(stats[train], y[train], stats[val], y[val], sample_weight=(weights, None))
    kernel, bias = class_weights(classifier, n_classes)
    head = (scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), kernel, bias)
    return head, report


def linear_run(corpus, stats: np.ndarray, params, classes: list[str], roles: dict[str, str]) -> dict:
    """`run_split` with the statistics head alone (`linear_fit`): probabilities for the originals of every scored
    role."""
    idx = corpus.index
    role = idx["clip_id"].map(roles).fillna("unused").to_numpy().astype(str)
    y = idx["emotion"].map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(np.int64)
    original = (idx["copy"] == 0).to_numpy()
    source = idx["corpus"].to_numpy().astype(str)
    start = time.perf_counter()
    (mean, scale, kernel, bias), report = linear_fit(stats, y, role, original, source, params, len(classes))
    out: dict[str, Any] = {"train_seconds": time.perf_counter() - start, "stats_head": report}
    for r in ("val", "select", "test"):
        sel = (y >= 0) & (role == r) & original
        if sel.any():
            logits = ((stats[sel] - mean) / scale) @ kernel + bias
            e = np.exp(logits - logits.max(1, keepdims=True))
            out |= {f"{r}_probs": e / e.sum(1, keepdims=True), f"{r}_y": y[sel], f"{r}_corpus": source[sel]}
    return out
