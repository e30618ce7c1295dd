"""Speaker-independent splits never share a speaker, per corpus and across corpora; random and k-fold splits
behave."""

from __future__ import annotations

import pandas as pd
import pytest

from ser.config import SplitParams
from ser.data.splits import SplitError, assign_splits, speaker_folds, speaker_genders, speaker_split
from ser.labels import EMOTIONS


def manifest(n_speakers: int, corpus: str = "ravdess", gender: bool = True) -> pd.DataFrame:
    """Clips of `n_speakers` speakers (odd male, even female as in RAVDESS; no gender when `gender` is False)."""
    rows = [
        {
            "clip_id": f"{corpus}:{a}-{e}-{r}",
            "corpus": corpus,
            "speaker": f"{corpus}:{a:02d}",
            "gender": ("male" if a % 2 else "female") if gender else None,
            "emotion": e,
        }
        for a in range(1, n_speakers + 1)
        for e in EMOTIONS
        for r in range(4)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("n_speakers", "val", "test"), [(24, 2, 4), (12, 2, 2), (3, 1, 1)])
def test_no_speaker_in_two_splits(n_speakers, val, test):
    m = manifest(n_speakers)
    split = assign_splits(m, SplitParams(val_speakers=val, test_speakers=test))
    per_speaker = m.assign(split=split).groupby("speaker")["split"].nunique()
    assert (per_speaker == 1).all()
    counts = m.assign(split=split).groupby("split")["speaker"].nunique().to_dict()
    assert counts == {"test": test, "val": val, "train": n_speakers - val - test}


def test_speaker_split_is_seeded_and_gender_balanced():
    roles = speaker_split(manifest(24), SplitParams(val_speakers=2, test_speakers=4, seed=3))
    assert roles == speaker_split(manifest(24), SplitParams(val_speakers=2, test_speakers=4, seed=3))
    test = [s for s, r in roles.items() if r == "test"]
    assert sum(int(s[-2:]) % 2 for s in test) == 2  # two male, two female


def test_the_default_ravdess_split_is_unchanged():
    # actors 2 and 11 test, 16 and 23 validate on the default seed, as before speakers replaced actors
    roles = speaker_split(manifest(24), SplitParams())
    assert sorted(s for s, r in roles.items() if r == "test") == ["ravdess:02", "ravdess:11"]
    assert sorted(s for s, r in roles.items() if r == "val") == ["ravdess:16", "ravdess:23"]


def test_each_corpus_gives_speakers_and_adding_one_leaves_the_others_split():
    one = manifest(24)
    both = pd.concat([one, manifest(10, "emodb")], ignore_index=True)
    alone = speaker_split(one, SplitParams())
    together = speaker_split(both, SplitParams())
    assert {s: r for s, r in together.items() if s.startswith("ravdess")} == alone
    emodb = [r for s, r in together.items() if s.startswith("emodb")]
    assert emodb.count("test") == 2 and emodb.count("val") == 2 and emodb.count("train") == 6


def test_train_only_and_test_only_corpora_and_a_small_corpus():
    both = pd.concat([manifest(12), manifest(6, "other"), manifest(3, "tiny")], ignore_index=True)
    roles = speaker_split(both, SplitParams(), {"other": "test"})
    assert {r for s, r in roles.items() if s.startswith("other")} == {"test"}
    assert {r for s, r in roles.items() if s.startswith("tiny")} == {"train"}  # 3 speakers cannot give 2 + 2
    roles = speaker_split(both, SplitParams(), {"ravdess": "train"})
    assert {r for s, r in roles.items() if s.startswith("ravdess")} == {"train"}
    assert {r for s, r in roles.items() if s.startswith("other")} == {"train", "val", "test"}


def test_unknown_genders_are_split_too():
    m = manifest(8, "plain", gender=False)
    assert set(speaker_genders(m).values()) == {None}
    roles = speaker_split(m, SplitParams())
    assert sorted(roles.values()).count("test") == 2 and len(roles) == 8


def test_impossible_split_names_the_keys():
    with pytest.raises(SplitError, match=r"split.val_speakers \+ split.test_speakers = 4 leaves no speaker"):
        speaker_split(manifest(4), SplitParams(val_speakers=2, test_speakers=2))
    with pytest.raises(SplitError, match=r"in corpus a"):  # several corpora, none big enough
        speaker_split(pd.concat([manifest(3, "a"), manifest(3, "b")]), SplitParams())


def test_random_split_is_the_articles_protocol():
    m = manifest(6)
    split = assign_splits(m, SplitParams(method="random", test_fraction=0.2, val_fraction=0.1))
    assert abs((split == "test").mean() - 0.2) < 0.02
    # speakers leak across splits by design of this protocol
    assert m.assign(split=split).groupby("speaker")["split"].nunique().max() == 3


def test_speaker_folds_cover_each_speaker_once():
    genders = speaker_genders(manifest(24))
    folds = list(speaker_folds(genders, k=6))
    assert sorted(s for f in folds for s in f) == sorted(genders)
    assert all(len(f) == 4 and sum(int(s[-2:]) % 2 for s in f) == 2 for f in folds)
    with pytest.raises(SplitError):
        list(speaker_folds(speaker_genders(manifest(3)), k=5))
