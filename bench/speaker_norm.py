"""Speaker normalisation of clip-level features, for the layer probe (`bench.whisper_probe --speaker-norm`).

Each actor's clip vectors (the encoder states' per-dimension mean and std) are shifted by that actor's own
mean vector, and with `z` also divided by the actor's own std, both taken over the actor's *reference*
clips, training and test actors alike. The test actors' labels are never used, but their audio is: the
reference must come from the same speaker, so this is a transductive setting, not the one a single upload
gets from the service (docs/benchmark.md "Speaker normalisation" says what the numbers can claim).

References:
    all: every clip of the actor. On RAVDESS each actor records every emotion in the same proportions,
        so this reference is emotion-balanced, which a user's own clips need not be.
    calm: the actor's neutral and calm clips only (an enrolment in a calm voice; a label-chosen subset).
    N (an integer): N clips of the actor drawn at random, any emotion (an unlabelled enrolment of N clips).

    x_norm = speaker_normalise(x, actor, reference_mask(index, "8", seed=0), scale=False)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CALM = ("neutral", "calm")
EPS = 1e-5  # keeps a dimension that is constant over a small reference finite


def check_reference(reference: str) -> str:
    """`reference` itself when it is `all`, `calm` or a positive number of clips.

    Raises:
        ValueError: any other string, saying what is expected.
    """
    if reference in ("all", "calm") or (reference.isdigit() and int(reference) > 0):
        return reference
    raise ValueError(f"--reference: expected all, calm or a positive number of clips, got {reference!r}")


def reference_mask(index: pd.DataFrame, reference: str, seed: int = 0) -> np.ndarray:
    """Boolean mask over `index` rows (columns `actor`, `emotion`): the clips each actor's statistics use.

    Raises:
        ValueError: `reference` is not `all`, `calm` or a positive integer, or an actor has no reference clip.
    """
    actor = index["actor"].astype(int).to_numpy()
    if check_reference(reference) == "all":
        mask = np.ones(len(index), bool)
    elif reference == "calm":
        mask = index["emotion"].isin(CALM).to_numpy()
    else:
        rng = np.random.default_rng(seed)
        mask = np.zeros(len(index), bool)
        for a in np.unique(actor):
            rows = np.flatnonzero(actor == a)
            mask[rng.choice(rows, size=min(int(reference), len(rows)), replace=False)] = True
    empty = sorted(set(actor.tolist()) - set(actor[mask].tolist()))
    if empty:
        raise ValueError(f"--reference {reference}: actors {empty} have no reference clip")
    return mask


def speaker_normalise(x: np.ndarray, actor: np.ndarray, reference: np.ndarray, scale: bool) -> np.ndarray:
    """(rows, dims) -> the same, each actor's rows minus the mean (and over the std, `scale`) of its reference rows."""
    out = np.asarray(x, np.float32).copy()
    for a in np.unique(actor):
        rows, ref = actor == a, (actor == a) & reference
        out[rows] -= x[ref].mean(0)
        if scale:
            out[rows] /= x[ref].std(0) + EPS
    return out
