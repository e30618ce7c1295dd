"""Speaker normalisation for the layer probe: each actor shifted by its own reference clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.speaker_norm import reference_mask, speaker_normalise


def clips(per_actor: int = 16) -> pd.DataFrame:
    emotions = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    return pd.DataFrame(
        {"actor": np.repeat([1, 2, 3], per_actor), "emotion": [emotions[i % 8] for i in range(3 * per_actor)]}
    )


def test_every_actor_is_centred_and_scaled_on_its_own_clips():
    index = clips()
    actor = index["actor"].to_numpy()
    rng = np.random.default_rng(0)
    # each actor has its own offset and spread, as voices do
    x = rng.normal(size=(len(index), 5)) * actor[:, None] + 10 * actor[:, None]
    centred = speaker_normalise(x, actor, reference_mask(index, "all"), scale=False)
    scaled = speaker_normalise(x, actor, reference_mask(index, "all"), scale=True)
    for a in (1, 2, 3):
        rows = actor == a
        np.testing.assert_allclose(centred[rows].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(centred[rows].std(0), x[rows].std(0), rtol=1e-4)  # a shift only
        np.testing.assert_allclose(scaled[rows].std(0), 1, atol=1e-3)
    assert centred.dtype == np.float32 and x.dtype == np.float64  # the input is not modified in place


def test_calm_reference_uses_only_neutral_and_calm_clips():
    index = clips()
    actor = index["actor"].to_numpy()
    mask = reference_mask(index, "calm")
    assert set(index.loc[mask, "emotion"]) == {"neutral", "calm"} and mask.sum() == 3 * 4
    x = np.arange(len(index), dtype=float)[:, None] + np.where(mask, 0.0, 100.0)[:, None]
    out = speaker_normalise(x, actor, mask, scale=False)
    for a in (1, 2, 3):
        assert abs(out[(actor == a) & mask].mean()) < 1e-4  # the reference is centred, the rest is not
        assert out[(actor == a) & ~mask].mean() > 50


def test_numeric_reference_draws_that_many_clips_per_actor_reproducibly():
    index = clips()
    first, again, other = (reference_mask(index, "5", seed=s) for s in (0, 0, 1))
    assert all(first[index["actor"] == a].sum() == 5 for a in (1, 2, 3))
    assert (first == again).all() and (first != other).any()
    assert reference_mask(index, "99").all()  # more than an actor has: all of its clips


@pytest.mark.parametrize("reference", ["", "0", "-3", "most", "2.5"])
def test_a_bad_reference_is_refused_with_what_was_expected(reference):
    with pytest.raises(ValueError, match="expected all, calm or a positive number of clips"):
        reference_mask(clips(), reference)


def test_an_actor_without_calm_clips_is_named():
    index = clips()
    index.loc[(index["actor"] == 2) & index["emotion"].isin(["neutral", "calm"]), "emotion"] = "sad"
    with pytest.raises(ValueError, match=r"actors \[2\] have no reference clip"):
        reference_mask(index, "calm")
