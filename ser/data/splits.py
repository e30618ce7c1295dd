"""Speaker-independent and random train/validation/test splits over the clip manifest.

The default split puts whole actors in one split (balanced by gender), so the
test score measures generalisation to unseen voices. `random_split` is the
article's 80/20 protocol (actors leak), kept only for comparison.
`actor_folds` yields k folds by actor for the benchmark.

    splits = assign_splits(manifest, params.split)   # Series: clip -> train|val|test
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from ser.config import SplitParams


class SplitError(ValueError):
    """The split parameters cannot be met by this corpus."""


def gender_balanced_order(actors: list[int], seed: int) -> list[int]:
    """Actors shuffled with a seed, alternating female/male so any prefix is balanced."""
    rng = np.random.default_rng(seed)
    female = [a for a in actors if a % 2 == 0]
    male = [a for a in actors if a % 2 == 1]
    rng.shuffle(female)
    rng.shuffle(male)
    order: list[int] = []
    for i in range(max(len(female), len(male))):
        order += [g[i] for g in (female, male) if i < len(g)]
    return order


def speaker_split(actors: list[int], params: SplitParams) -> dict[int, str]:
    """Map each actor to train/val/test; whole actors only.

    Raises:
        SplitError: naming `split.val_actors`/`split.test_actors` when too few actors remain to train.
    """
    unique = sorted(set(int(a) for a in actors))
    need = params.val_actors + params.test_actors
    if need >= len(unique):
        raise SplitError(
            f"split.val_actors + split.test_actors = {need} leaves no actor to train on "
            f"(the corpus has {len(unique)} actors)"
        )
    order = gender_balanced_order(unique, params.seed)
    roles = ["test"] * params.test_actors + ["val"] * params.val_actors
    roles += ["train"] * (len(order) - len(roles))
    return dict(zip(order, roles, strict=True))


def random_split(manifest: pd.DataFrame, params: SplitParams) -> pd.Series:
    """The article's protocol: clips shuffled regardless of actor, stratified by emotion."""
    rng = np.random.default_rng(params.seed)
    split = pd.Series("train", index=manifest.index)
    for _, idx in manifest.groupby("emotion").groups.items():
        idx = rng.permutation(np.asarray(idx))
        n_test = int(round(len(idx) * params.test_fraction))
        n_val = int(round(len(idx) * params.val_fraction))
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_val]] = "val"
    return split


def assign_splits(manifest: pd.DataFrame, params: SplitParams) -> pd.Series:
    """Split label per manifest row, by the method in params."""
    if params.method == "random":
        return random_split(manifest, params)
    roles = speaker_split(manifest["actor"].tolist(), params)
    return manifest["actor"].map(roles).rename("split")


def actor_folds(actors: list[int], k: int, seed: int = 0) -> Iterator[list[int]]:
    """Yield k disjoint lists of test actors covering every actor once (gender-balanced)."""
    unique = sorted(set(int(a) for a in actors))
    if not 2 <= k <= len(unique):
        raise SplitError(f"k = {k} folds needs 2 <= k <= {len(unique)} actors")
    # Contiguous chunks of the alternating order keep each fold gender-balanced.
    for chunk in np.array_split(np.asarray(gender_balanced_order(unique, seed)), k):
        yield sorted(int(a) for a in chunk)
