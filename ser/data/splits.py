"""Speaker-independent and random train/validation/test splits over the clip manifest, any number of corpora.

The default split puts whole speakers in one split: each corpus with enough speakers gives
`split.val_speakers` of them to validation and `split.test_speakers` to test (gender-balanced where the gender
is known, seeded per corpus, so adding a corpus leaves the others' splits as they were), and a corpus can be
train-only or test-only (`use` in `data.sources`). The test score then measures generalisation to unseen
voices. `random_split` is the article's 80/20 protocol (speakers leak), kept only for comparison.
`speaker_folds` yields k folds by speaker, across corpora, for the benchmarks.

    splits = assign_splits(manifest, params.split, uses)   # Series: clip -> train|val|test
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from ser.corpora import SplitParams

log = logging.getLogger(__name__)


class SplitError(ValueError):
    """The split parameters cannot be met by this corpus."""


def speaker_genders(clips: pd.DataFrame) -> dict[str, str | None]:
    """Each speaker's gender (the first known one among its clips; None when unknown)."""
    known = clips.dropna(subset=["gender"]).drop_duplicates("speaker")
    genders: dict[str, str | None] = dict.fromkeys(sorted(clips["speaker"].dropna().unique()))
    genders.update(zip(known["speaker"], known["gender"], strict=True))
    return genders


def gender_balanced_order(genders: Mapping[str, str | None], seed: int) -> list[str]:
    """Speakers shuffled with a seed, alternating female/male so any prefix is balanced; unknown genders last.

    Speakers are taken in sorted order before shuffling, so the order depends on the ids and the seed only.
    """
    rng = np.random.default_rng(seed)
    groups = [sorted(s for s, g in genders.items() if g == want) for want in ("female", "male")]
    unknown = sorted(s for s, g in genders.items() if g not in ("female", "male"))
    for group in (*groups, unknown):
        if group:
            rng.shuffle(group)
    order: list[str] = []
    for i in range(max(len(groups[0]), len(groups[1]))):
        order += [g[i] for g in groups if i < len(g)]
    return order + unknown


def corpus_split(genders: Mapping[str, str | None], params: SplitParams, use: str = "all") -> dict[str, str]:
    """One corpus's speakers -> train/val/test: `use` train or test puts them all there; otherwise the first
    `test_speakers` of the balanced order go to test, the next `val_speakers` to validation, the rest to train.

    Raises:
        SplitError: `use` all and too few speakers to leave one for training (naming `split.val_speakers` and
            `split.test_speakers`).
    """
    if use in ("train", "test"):
        return dict.fromkeys(genders, use)
    need = params.val_speakers + params.test_speakers
    if need >= len(genders):
        raise SplitError(
            f"split.val_speakers + split.test_speakers = {need} leaves no speaker to train on "
            f"(the corpus has {len(genders)} speakers)"
        )
    order = gender_balanced_order(genders, params.seed)
    roles = ["test"] * params.test_speakers + ["val"] * params.val_speakers
    return dict(zip(order, roles + ["train"] * (len(order) - len(roles)), strict=True))


def speaker_split(clips: pd.DataFrame, params: SplitParams, uses: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every speaker of every corpus -> train/val/test (`corpus_split` per corpus, `uses`: corpus -> all/train/test).

    A corpus too small to give validation and test speakers trains only, with a warning, when other corpora give
    them.

    Raises:
        SplitError: no corpus can give validation and test speakers.
    """
    uses = uses or {}
    roles: dict[str, str] = {}
    small: list[tuple[str, SplitError]] = []
    for corpus, group in clips.groupby("corpus", sort=True):
        genders = speaker_genders(group)
        try:
            roles |= corpus_split(genders, params, uses.get(str(corpus), "all"))
        except SplitError as err:
            small.append((str(corpus), err))
            roles |= dict.fromkeys(genders, "train")
    present = set(roles.values())
    if small and not {"val", "test"} <= present:
        name, first = small[0]
        raise SplitError(f"{first} in corpus {name}" if clips["corpus"].nunique() > 1 else str(first))
    for name, problem in small:
        log.warning("corpus %s trains only: %s", name, problem)
    return roles


def random_split(manifest: pd.DataFrame, params: SplitParams) -> pd.Series:
    """The article's protocol: clips shuffled regardless of speaker, stratified by corpus and emotion."""
    rng = np.random.default_rng(params.seed)
    split = pd.Series("train", index=manifest.index)
    for _, idx in manifest.groupby(["corpus", "emotion"]).groups.items():
        idx = rng.permutation(np.asarray(idx))
        n_test = int(round(len(idx) * params.test_fraction))
        n_val = int(round(len(idx) * params.val_fraction))
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_val]] = "val"
    return split


def assign_splits(manifest: pd.DataFrame, params: SplitParams, uses: Mapping[str, str] | None = None) -> pd.Series:
    """Split label per manifest row, by the method in params (`uses`: corpus -> all/train/test, speaker method)."""
    if params.method == "random":
        return random_split(manifest, params)
    roles = speaker_split(manifest, params, uses)
    return manifest["speaker"].map(roles).rename("split")


def speaker_folds(genders: Mapping[str, str | None], k: int, seed: int = 0) -> Iterator[list[str]]:
    """Yield k disjoint lists of test speakers covering every speaker of one corpus once (gender-balanced).

    Raises:
        SplitError: k outside 2..speakers.
    """
    if not 2 <= k <= len(genders):
        raise SplitError(f"k = {k} folds needs 2 <= k <= {len(genders)} speakers")
    # Contiguous chunks of the alternating order keep each fold gender-balanced.
    for chunk in np.array_split(np.asarray(gender_balanced_order(genders, seed), dtype=object), k):
        yield sorted(str(s) for s in chunk)
