"""Speaker-independent splits never share an actor; random and k-fold splits behave."""

from __future__ import annotations

import pandas as pd
import pytest

from ser.config import SplitParams
from ser.data.splits import SplitError, actor_folds, assign_splits, speaker_split
from ser.labels import EMOTIONS


def manifest(n_actors: int) -> pd.DataFrame:
    rows = [
        {"clip_id": f"{a}-{e}-{r}", "actor": a, "emotion": e}
        for a in range(1, n_actors + 1)
        for e in EMOTIONS
        for r in range(4)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("n_actors", "val", "test"), [(24, 2, 4), (12, 2, 2), (3, 1, 1)])
def test_no_actor_in_two_splits(n_actors, val, test):
    m = manifest(n_actors)
    split = assign_splits(m, SplitParams(val_actors=val, test_actors=test))
    per_actor = m.assign(split=split).groupby("actor")["split"].nunique()
    assert (per_actor == 1).all()
    counts = m.assign(split=split).groupby("split")["actor"].nunique().to_dict()
    assert counts == {"test": test, "val": val, "train": n_actors - val - test}


def test_speaker_split_is_seeded_and_gender_balanced():
    roles = speaker_split(list(range(1, 25)), SplitParams(val_actors=2, test_actors=4, seed=3))
    assert roles == speaker_split(list(range(1, 25)), SplitParams(val_actors=2, test_actors=4, seed=3))
    test = [a for a, r in roles.items() if r == "test"]
    assert sum(a % 2 for a in test) == 2  # two male, two female


def test_impossible_split_names_the_keys():
    with pytest.raises(SplitError, match=r"split.val_actors \+ split.test_actors = 4 leaves no actor"):
        speaker_split([1, 2, 3, 4], SplitParams(val_actors=2, test_actors=2))


def test_random_split_is_the_articles_protocol():
    m = manifest(6)
    split = assign_splits(m, SplitParams(method="random", test_fraction=0.2, val_fraction=0.1))
    assert abs((split == "test").mean() - 0.2) < 0.02
    # actors leak across splits by design of this protocol
    assert m.assign(split=split).groupby("actor")["split"].nunique().max() == 3


def test_actor_folds_cover_each_actor_once():
    folds = list(actor_folds(list(range(1, 25)), k=6))
    assert sorted(a for f in folds for a in f) == list(range(1, 25))
    assert all(len(f) == 4 and sum(a % 2 for a in f) == 2 for f in folds)
    with pytest.raises(SplitError):
        list(actor_folds([1, 2, 3], k=5))
